# C-level interface of the send_batch() future, for the bulk append engine (bulk.pyx) to record where each record
# went without a Python call per record.
cimport cython
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t

from kafkaprod._native.future cimport Completion, ProduceRequestResult
from kafkaprod._native.record_metadata cimport RecordMetadata


@cython.final
cdef class BatchFuture(Completion):
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
    cdef bint _any_failed
    cdef list _callbacks
    cdef object _ack                     # the interceptors' on_acknowledgement, called per record on completion
    cdef Py_ssize_t _failed
    cdef Py_ssize_t _first_failed
    cdef object _first_error
    cdef object _error

    @staticmethod
    cdef BatchFuture create(str topic, Py_ssize_t n, int64_t timestamp, int num_partitions, object ack)
    # Per-record key (keys True) or value sizes, for calls whose sizes differ; the caller fills all n of them.
    cdef int32_t* sizes_array(self, bint keys) except NULL
    # The call's first key (keys True) or value size, which every record has unless sizes_array() was made.
    cdef void set_common_size(self, bint keys, int32_t size) noexcept
    cdef int _grow_runs(self) except -1
    # Record number `count` (records arrive in index order) went to `result` at offset `rel`.
    cdef int add_record(self, int partition, ProduceRequestResult result, int32_t rel) except -1
    # The next `count` records went to `result` at consecutive offsets from `rel`.
    cdef int add_run(self, int partition, ProduceRequestResult result, int32_t rel, Py_ssize_t count) except -1
    # Every record is in (or the call stopped early): start listening for the batches' completion.
    cdef int arm(self) except -1
    cdef void _complete(self)
    cdef void _run_callback(self, object fn)
    cdef int _find_run(self, Py_ssize_t i) noexcept
    cdef ProduceRequestResult _locate(self, Py_ssize_t i, int32_t* rel)
    cdef RecordMetadata record_metadata(self, Py_ssize_t i)
    cdef RecordMetadata _metadata_at(self, Py_ssize_t i, ProduceRequestResult r, int32_t rel)
    cdef void _acknowledge(self)
    cdef int _walk(self, ProduceRequestResult r, int32_t lo, int32_t hi, Py_ssize_t first_index, list out) except -1
    cdef list _scan_failures(self, bint want_indices)
    cdef object _error_of(self)


cdef inline bint extend_runs(BatchFuture f, int partition, PyObject* result, Py_ssize_t i, int32_t rel) noexcept:
    """add_record for record i without a call in the common cases: it extends the last run (same batch, next
    offset), or starts a run in a batch the future already knows while the run arrays have room. False: call
    add_record."""
    cdef Py_ssize_t k = f._nruns - 1
    cdef int32_t idx
    if f._part_res[partition] != result:
        return False
    idx = f._part_idx[partition]
    if k >= 0 and f._run_res[k] == idx and f._run_rel[k] + (i - f._run_start[k]) == rel:
        f._count = i + 1
        return True
    if k + 1 < f._runs_cap:
        f._run_start[k + 1] = i
        f._run_rel[k + 1] = rel
        f._run_res[k + 1] = idx
        f._nruns = k + 2
        f._count = i + 1
        return True
    return False


@cython.final
cdef class BatchMetadata:
    cdef BatchFuture _future

    @staticmethod
    cdef BatchMetadata _make(BatchFuture future)
