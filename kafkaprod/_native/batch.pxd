# C-level interface of ProducerBatch (Java's ProducerBatch): the records of one partition that travel together.
cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t

from kafkaprod._native.future cimport FutureRecordMetadata, ProduceRequestResult
from kafkaprod._native.records cimport MemoryRecordsBuilder, builder_count, builder_is_full, builder_size

cdef enum:
    # final_state
    BATCH_PENDING = 0
    BATCH_SUCCEEDED = 1
    BATCH_FAILED = 2


@cython.final
cdef class ProducerBatch:
    cdef readonly str topic
    cdef readonly int partition
    cdef readonly tuple tp
    cdef readonly MemoryRecordsBuilder builder
    cdef public object buffer
    cdef readonly Py_ssize_t buffer_size
    cdef readonly ProduceRequestResult result
    cdef readonly double created
    cdef public double last_attempt
    cdef public int attempts
    cdef public bint retry
    cdef public int final_state          # BATCH_PENDING, BATCH_SUCCEEDED or BATCH_FAILED
    cdef public int64_t producer_id
    cdef public int16_t producer_epoch
    cdef public int base_sequence
    cdef readonly object records         # the sealed batch bytes once closed
    cdef public bint closed_for_append
    cdef public int sent_to              # broker id of the request carrying it, -1 when not in flight

    # Appends a record; None when the batch is closed for appends or has no room for it.
    cdef FutureRecordMetadata try_append(self, int64_t timestamp, const unsigned char* key, Py_ssize_t klen,
                                         const unsigned char* value, Py_ssize_t vlen, object headers,
                                         object callback)


cdef inline bint batch_is_full(ProducerBatch b) noexcept:
    return b.closed_for_append or builder_is_full(b.builder)


cdef inline Py_ssize_t batch_size_in_bytes(ProducerBatch b) noexcept:
    return builder_size(b.builder)


cdef inline int32_t batch_record_count(ProducerBatch b) noexcept:
    return builder_count(b.builder)
