# C-level interface of the RecordAccumulator, for send()'s fast path and the send_batch() engine (bulk.pyx).
cimport cython
from libc.stdint cimport int16_t, int64_t

from kafkaprod._native.batch cimport ProducerBatch
from kafkaprod._native.buffer_pool cimport BufferPool
from kafkaprod._native.future cimport FutureRecordMetadata
from kafkaprod._native.partition_state cimport PartitionState, TopicState

@cython.final
cdef class RecordAccumulator:
    cdef BufferPool pool
    cdef readonly int batch_size
    cdef readonly int compression_type
    cdef double linger
    cdef double retry_backoff
    cdef double retry_backoff_max
    cdef double delivery_timeout
    cdef readonly int max_block_ms
    cdef readonly int max_request_size
    cdef readonly Py_ssize_t buffer_memory
    # Records whose key + value + 128 bytes stay under this fit any request and the pool: no size check needed.
    cdef readonly Py_ssize_t size_fast_limit
    cdef bint idempotent
    cdef object wakeup
    cdef public object slow_send
    # The interceptors' on_acknowledgement(metadata, exception), or None: every batch and send_batch() future
    # made calls it for each of its records as it completes.
    cdef public object acknowledge
    cdef dict topics
    # PartitionStates with queued batches (each once, `PartitionState.active`): the only partitions ready(),
    # drain() and expiry visit. A partition joins when a batch enters its queue and leaves in the first ready()
    # that finds the queue empty.
    cdef list active
    cdef Py_ssize_t last_ready_visits    # partitions the last ready() looked at
    # No queued batch was created before this (monotonic seconds; lower when unknown): expiry scans only when it
    # is older than delivery_timeout_ms.
    cdef double oldest_queued
    # When the Sender's poll will return at the latest (monotonic seconds; far ahead while it is not polling):
    # the Sender sets it, and a new batch wakes the Sender only if its linger ends before then.
    cdef public double sender_wakes_at
    cdef dict drain_index
    cdef set incomplete
    cdef int flushes_in_progress
    cdef readonly bint closed
    cdef readonly object fatal_error     # why appends stopped, when it was not a plain close()
    cdef readonly int64_t producer_id
    cdef readonly int16_t producer_epoch
    # Transactions (the TransactionManager opens and closes the gate, and adds partitions):
    cdef readonly bint transactional     # batches carry the transactional bit; partitions drain once added
    cdef bint appends_gated              # transactional and no transaction open: appends raise txn_refusal(what)
    # txn_refusal(what) -> the exception an append refused by the gate raises; set by the TransactionManager.
    cdef public object txn_refusal
    cdef list txn_new                    # (topic, partition) found by ready() that the transaction must add

    # ---- the interface of the append paths (send() here, send_batch() in bulk.pyx)
    # The topic's state for an append; raises the closed error naming `what`, or KeyError while its metadata
    # is unknown (the producer fetches it first).
    cdef TopicState topic_for_append(self, str topic, str what)
    # RecordTooLargeError naming `which` ("the record", "record 7") when size bytes cannot fit a request or the
    # whole buffer memory (Java's ensureValidRecordSize).
    cdef int check_record_size(self, Py_ssize_t size, str which) except -1
    # Memory for a new batch of `size` bytes, blocking up to max_block_ms; raises the closed error naming `what`.
    cdef object allocate(self, Py_ssize_t size, str what)
    cdef void free(self, object buf, Py_ssize_t size)
    # A new batch for partition p in `buf` (from allocate()), not yet in the accumulator.
    cdef ProducerBatch new_batch(self, TopicState st, int p, object buf, Py_ssize_t size)
    # Call inside the critical section, once the batch holds its first record: it becomes its partition's open
    # batch, queued for the Sender.
    cdef void add_batch(self, TopicState st, ProducerBatch batch)
    cdef void wake(self)
    # Wakes the Sender for a batch just queued, if the batch is full or the Sender sleeps past its linger.
    cdef void wake_for(self, ProducerBatch batch)
    # A batch just joined the partition's queue: the partition goes on the active list, and expiry learns the
    # batch's age.
    cdef void enqueued(self, PartitionState ps, ProducerBatch batch)
    # Buffer bytes for a new batch of the partition (before the record's own size is considered).
    cdef Py_ssize_t first_size(self, PartitionState ps)
    cdef void learn_size(self, PartitionState ps, ProducerBatch batch)
    # Moves an open batch that started small into a larger buffer, for one more record of at most record_bound
    # bytes, when the pool has the memory free now. Call inside the critical section.
    cdef bint grow(self, ProducerBatch batch, Py_ssize_t record_bound)
    cdef object closed_error(self, str what)
    # The error an append refused by the transaction gate raises, naming `what` ("send()", "send_batch()").
    cdef object refusal(self, str what)

    # send()'s compiled path: the record's future, or None when the record needs the producer's Python path
    # (a topic without metadata yet, a closed producer, a partition that is not a plain int).
    cdef FutureRecordMetadata try_send(self, object topic, object value, object key, object partition,
                                       object timestamp_ms, object headers, object callback)
    cpdef FutureRecordMetadata append(self, str topic, int partition, object key, object value, object headers,
                                      object timestamp_ms, object callback)
    cdef FutureRecordMetadata _append_record(self, TopicState st, int partition, object key, object value,
                                             object headers, object timestamp_ms, object callback)
    cdef int _check_size(self, Py_ssize_t klen, Py_ssize_t vlen, object headers) except -1
    cdef FutureRecordMetadata _append(self, TopicState st, int partition, int64_t ts,
                                      const unsigned char* kptr, Py_ssize_t klen,
                                      const unsigned char* vptr, Py_ssize_t vlen,
                                      object headers, object callback)
    cdef double _backoff(self, ProducerBatch batch)
    cdef bint _held(self, PartitionState ps, object node)
    cdef list _drain_node(self, object node, int max_size, double now)
    cdef bint _number(self, PartitionState ps, ProducerBatch batch)
    cdef PartitionState _partition_of(self, ProducerBatch batch)
