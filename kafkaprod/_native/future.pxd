from libc.stdint cimport int64_t


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
