cimport cython
from libc.stdint cimport int16_t, int64_t

from cpython.object cimport PyObject
from libc.stdint cimport int32_t

from kafkaprod._native.buffer_pool cimport BufferPool
from kafkaprod._native.bulk cimport Source
from kafkaprod._native.future cimport BatchFuture, FutureRecordMetadata, ProduceRequestResult
from kafkaprod._native.records cimport MemoryRecordsBuilder


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
    cdef public double drained
    cdef public int attempts
    cdef public bint retry
    cdef public int final_state          # 0 pending, 1 succeeded, 2 failed
    cdef public int64_t producer_id
    cdef public int16_t producer_epoch
    cdef public int base_sequence
    cdef readonly object records         # the sealed batch bytes once closed
    cdef public bint closed_for_append
    cdef public int sent_to              # broker id of the request carrying it, -1 when not in flight

    cdef FutureRecordMetadata try_append(self, int64_t timestamp, const unsigned char* key, Py_ssize_t klen,
                                         const unsigned char* value, Py_ssize_t vlen, object headers,
                                         object callback)


cdef class TopicState:
    cdef readonly str topic
    cdef readonly int num_partitions
    cdef list queues
    cdef list open_batches               # per partition: the batch appends go to, or None
    cdef list leaders
    cdef list available
    cdef list next_sequence
    cdef list seq_owner                  # per partition: (producer id, epoch) its sequence numbers belong to
    cdef list restart                    # per partition: renumber its batches from 0 (a gap or lost state)
    cdef list in_flight                  # per partition: batches drained and not yet answered
    cdef list in_flight_node             # per partition: the broker those batches went to
    cdef int sticky_partition
    cdef Py_ssize_t sticky_bytes

    cdef void resize(self, int n)
    cdef int next_sticky(self, int current)


cdef class RecordAccumulator:
    cdef BufferPool pool
    cdef readonly int batch_size
    cdef readonly int compression_type
    cdef double linger
    cdef double retry_backoff
    cdef double retry_backoff_max
    cdef double delivery_timeout
    cdef int max_block_ms
    cdef int max_request_size
    cdef Py_ssize_t size_fast_limit
    cdef bint idempotent
    cdef object wakeup
    cdef public object slow_send
    cdef dict topics
    cdef dict node_partitions
    cdef dict drain_index
    cdef set incomplete
    cdef set muted
    cdef int flushes_in_progress
    cdef readonly bint closed
    cdef readonly object fatal_error     # why appends stopped, when it was not a plain close()
    cdef readonly int64_t producer_id
    cdef readonly int16_t producer_epoch

    cdef void _rebuild_node_map(self)
    cpdef FutureRecordMetadata append(self, str topic, int partition, object key, object value, object headers,
                                      object timestamp_ms, object callback)
    cdef FutureRecordMetadata _append_record(self, TopicState st, int partition, object key, object value,
                                             object headers, object timestamp_ms, object callback)
    cdef int _check_size(self, Py_ssize_t klen, Py_ssize_t vlen, object headers) except -1
    cdef bint _open_builder(self, list open_batches, int p, PyObject** cur_builder, PyObject** cur_result) noexcept
    cdef int _check_batch(self, Source* vsrc, Source* ksrc, Py_ssize_t n, Py_ssize_t hpart,
                          BatchFuture fut) except -1
    cdef BatchFuture _append_batch(self, TopicState st, BatchFuture fut, Source* vsrc, Source* ksrc,
                                   Py_ssize_t n, int nparts, int fixed, int32_t* parr, int64_t ts,
                                   const unsigned char* hp, Py_ssize_t hlen)
    cdef int _sticky(self, TopicState st, Py_ssize_t klen, Py_ssize_t vlen)
    cdef FutureRecordMetadata _append(self, TopicState st, int partition, int64_t ts,
                                      const unsigned char* kptr, Py_ssize_t klen,
                                      const unsigned char* vptr, Py_ssize_t vlen,
                                      object headers, object callback)
    cdef void _wake(self)
    cdef object _closed_error(self, str what)
    cdef double _backoff(self, ProducerBatch batch)
    cdef list _drain_node(self, object node, int max_size, double now)
    cdef bint _number(self, TopicState st, int p, ProducerBatch batch)
    cdef void _release_in_flight(self, ProducerBatch batch)
