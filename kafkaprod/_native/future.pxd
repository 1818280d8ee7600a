# C-level interface of the per-batch result and the per-record future (Java's ProduceRequestResult and
# FutureRecordMetadata), for the accumulator and the send_batch() future.
cimport cython
from libc.stdint cimport int64_t

from kafkaprod._native.record_metadata cimport RecordMetadata


cdef class Completion:
    # Something that completes once and that threads wait for -- a batch's result, a send_batch() call's future.
    # The flag is read without a lock, and a threading.Event is made only once a thread actually has to wait
    # (most results are never waited for).
    cdef bint _done
    cdef object _event
    # Blocks until completed (True) or until timeout seconds (None: no limit) ran out (False).
    cdef bint await_done(self, object timeout)
    # Marks it completed and wakes every waiter.
    cdef void open(self)
    # A batch result this one listens to completed (send_batch() futures count their batches down this way).
    cdef void on_result(self, ProduceRequestResult result)


@cython.final
cdef class ProduceRequestResult(Completion):
    cdef readonly str topic
    cdef readonly int partition
    cdef readonly int64_t base_offset
    cdef readonly int64_t log_append_time
    cdef readonly object error
    cdef list _listeners
    # After a split (MESSAGE_TOO_LARGE): (first relative offset, ProduceRequestResult) of each half, ascending.
    cdef readonly list children
    # The interceptors' on_acknowledgement(metadata, exception), called for each of the batch's records; or None.
    cdef public object ack

    cpdef bint done(self)
    # listener: a FutureRecordMetadata with callbacks, or a Completion (a send_batch() future).
    cdef void add_listener(self, object listener)
    cpdef bint wait(self, object timeout=*)
    cpdef complete(self, int64_t base_offset, int64_t log_append_time, object error)
    cpdef split(self, list children)
    cdef void _release(self)


# The result that holds the record at relative offset `rel` of `result` now, following splits; `rel` becomes
# its offset there.
cdef ProduceRequestResult follow_splits(ProduceRequestResult result, int* rel)


@cython.final
cdef class FutureRecordMetadata:
    # Small on purpose (a service may hold a million): 64 bytes, and not tracked by the cyclic GC.
    cdef ProduceRequestResult _result
    cdef object _callbacks               # None, the send() callback, or a list of (kind, fn, args, kwargs)
    cdef int64_t _timestamp
    cdef int _relative_offset
    cdef int _key_size
    cdef int _value_size

    @staticmethod
    cdef FutureRecordMetadata create(ProduceRequestResult result, int relative_offset, int64_t timestamp,
                                     int key_size, int value_size)
    cdef ProduceRequestResult _final_result(self)
    cdef bint _wait(self, object timeout)
    cdef RecordMetadata _metadata(self)
    cdef void _attach(self, int kind, object fn, tuple args, dict kwargs)
    cdef void listen(self, object callback)
    cdef void on_result(self, ProduceRequestResult result)
    cdef void _run(self, tuple entry, object metadata, object error)


# The result that holds the record now, following splits (the batch it waits for).
cdef inline ProduceRequestResult record_result(FutureRecordMetadata record):
    return record._final_result()
