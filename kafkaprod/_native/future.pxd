from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t


cdef class ProduceRequestResult:
    cdef readonly str topic
    cdef readonly int partition
    cdef readonly int64_t base_offset
    cdef readonly int64_t log_append_time
    cdef readonly object error
    cdef object _event
    cdef list _listeners
    cdef list _children
    cdef bint _done

    cpdef bint done(self)
    cdef void add_listener(self, FutureRecordMetadata future)
    cdef void add_batch_listener(self, BatchFuture future)
    cdef void _listen(self, object future)
    cpdef bint wait(self, object timeout=*)
    cpdef complete(self, int64_t base_offset, int64_t log_append_time, object error)
    cpdef split(self, list children)
    cdef void _release(self)


cdef class FutureRecordMetadata:
    cdef ProduceRequestResult _result
    cdef int _relative_offset
    cdef int64_t _timestamp
    cdef int _key_size
    cdef int _value_size
    cdef list _callbacks

    @staticmethod
    cdef FutureRecordMetadata create(ProduceRequestResult result, int relative_offset, int64_t timestamp,
                                     int key_size, int value_size)
    cdef ProduceRequestResult _final_result(self)
    cdef void _rebase(self)
    cdef bint _wait(self, object timeout)
    cdef object _metadata(self)
    cdef void _attach(self, int kind, object fn, tuple args, dict kwargs)
    cdef void set_send_callback(self, object callback)
    cdef void _fire(self)
    cdef void _run(self, tuple entry)


cdef class BatchFuture:
    cdef readonly str topic
    cdef Py_ssize_t _n
    cdef Py_ssize_t _count
    cdef int64_t _timestamp
    # Key/value sizes: one for all records, unless the per-record arrays exist.
    cdef int32_t _key_size
    cdef int32_t _value_size
    cdef int32_t* _key_sizes
    cdef int32_t* _value_sizes
    # Runs of records that went into one batch at consecutive offsets: first record index, its offset in the
    # batch, and the batch's index in _results.
    cdef Py_ssize_t* _run_start
    cdef int32_t* _run_rel
    cdef int32_t* _run_res
    cdef Py_ssize_t _nruns
    cdef Py_ssize_t _runs_cap
    cdef list _results
    # While records are added: the last result per partition (borrowed; _results holds it) and its index.
    cdef int _num_partitions
    cdef PyObject** _part_res
    cdef int32_t* _part_idx
    # Completion.
    cdef Py_ssize_t _pending
    cdef bint _done
    cdef bint _any_failed
    cdef object _event
    cdef list _callbacks
    cdef Py_ssize_t _failed
    cdef Py_ssize_t _first_failed
    cdef object _first_error
    cdef object _error

    @staticmethod
    cdef BatchFuture create(str topic, Py_ssize_t n, int64_t timestamp, int num_partitions)
    cdef int32_t* sizes_array(self, bint keys) except NULL
    cdef int _grow_runs(self) except -1
    cdef int add_record(self, int partition, ProduceRequestResult result, int32_t rel) except -1
    cdef int arm(self) except -1
    cdef void _on_result(self, ProduceRequestResult r)
    cdef void _complete(self)
    cdef void _run_callback(self, object fn)
    cdef bint _wait(self, object timeout)
    cdef int _find_run(self, Py_ssize_t i) noexcept
    cdef ProduceRequestResult _locate(self, Py_ssize_t i, int32_t* rel)
    cdef object record_metadata(self, Py_ssize_t i)
    cdef int _walk(self, ProduceRequestResult r, int32_t lo, int32_t hi, Py_ssize_t first_index, list out) except -1
    cdef list _scan_failures(self, bint want_indices)
    cdef object _error_of(self)


cdef class BatchMetadata:
    cdef BatchFuture _future

    @staticmethod
    cdef BatchMetadata _make(BatchFuture future)
