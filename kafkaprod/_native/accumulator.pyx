# cython: language_level=3
"""RecordAccumulator: per-partition queues of batches that send() appends to and the Sender drains (Java's
RecordAccumulator).

send() makes exactly one call into this module per record: partition choice (murmur2 or uniform sticky), append
into the partition's open batch (memory from the BufferPool), and the record's future. The Sender's per-loop
work -- ready(), drain(), expiry, retries -- also runs here, so that no step touches each record from Python.
send_batch() appends through the same state from bulk.pyx. With idempotence, each partition's sequence numbers
are given out here, as batches are drained, beside the queue they number (the rules for when numbering restarts
are the Sender's TransactionManager's).

Shared state is guarded by `cython.critical_section(self)`: a per-object lock on free-threaded Python, and on
GIL builds free, because the guarded code never releases the GIL. The one way another thread can run inside it
there is a garbage collection triggered by an allocation; that can only interleave whole appends to a batch
whose state is consistent at every allocation point, or create one extra batch for a partition.
"""
cimport cython
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport int16_t, int64_t

from kafkaprod._native.batch cimport (
    BATCH_FAILED, BATCH_PENDING, ProducerBatch, batch_is_full, batch_record_count, batch_size_in_bytes,
)
from kafkaprod._native.buffer_pool cimport BufferPool
from kafkaprod._native.checks cimport bytes_view, check_callback, check_in_range, timestamp_of
from kafkaprod._native.clock cimport mono_s, wall_ms
from kafkaprod._native.future cimport FutureRecordMetadata, ProduceRequestResult
from kafkaprod._native.murmur2 cimport murmur2, partition_for
from kafkaprod._native.partition_state cimport PartitionState, TopicState, TXN_ADDED, TXN_NONE, TXN_PENDING
from kafkaprod._native.records cimport (
    MemoryRecordsBuilder, builder_capacity, builder_size, builder_write_limit, estimate_size_upper_bound_raw,
)

import time

# Buffer bytes of a partition's first batch (or batch_size if smaller); later batches start with about what the
# partition's last batch held (learn_size). Small, so that a producer writing to thousands of partitions does not
# reserve batch_size bytes of buffer_memory for each before it knows how much each gets.
cdef enum:
    _FIRST_BATCH_BYTES = 1024

from kafkaprod.errors import ProducerClosedError, RecordTooLargeError, TransactionStateError



def monotonic():
    """The clock batches are timed with (seconds); the Sender uses the same one."""
    return mono_s()


@cython.final
cdef class RecordAccumulator:
    """Batches per partition, memory from the pool, and the ready/drain/expire steps of the Sender loop."""

    def __cinit__(self, BufferPool pool, int batch_size, int compression_type, int linger_ms,
                  int retry_backoff_ms, int delivery_timeout_ms, int max_block_ms, bint idempotent,
                  object wakeup=None, int max_request_size=1048576, bint transactional=False):
        self.pool = pool
        self.batch_size = batch_size
        self.compression_type = compression_type
        self.linger = linger_ms / 1000.0
        self.retry_backoff = retry_backoff_ms / 1000.0
        self.retry_backoff_max = self.retry_backoff
        self.delivery_timeout = delivery_timeout_ms / 1000.0
        self.max_block_ms = max_block_ms
        self.max_request_size = max_request_size
        self.buffer_memory = pool.total_memory
        self.size_fast_limit = min(max_request_size, self.buffer_memory)
        self.idempotent = idempotent
        self.wakeup = wakeup
        self.slow_send = None
        self.acknowledge = None
        self.topics = {}
        self.active = []
        self.last_ready_visits = 0
        self.oldest_queued = -1e18  # unknown: the first expiry check looks
        self.sender_wakes_at = 1e18
        self.drain_index = {}
        self.incomplete = set()
        self.flushes_in_progress = 0
        self.closed = False
        self.fatal_error = None
        self.producer_id = -1
        self.producer_epoch = -1
        # Transactional: appends wait for the first begin_transaction() (the TransactionManager opens the gate).
        self.transactional = transactional
        self.appends_gated = transactional
        self.txn_refusal = None
        self.txn_new = []

    # ---- metadata --------------------------------------------------------------------------------------------
    def update_topic(self, str topic, list leaders):
        """The Sender calls this after each metadata update: one leader broker id (or -1) per partition."""
        cdef TopicState st
        cdef int p
        with cython.critical_section(self):
            st = self.topics.get(topic)
            if st is None:
                st = TopicState(topic)
                self.topics[topic] = st
            st.resize(len(leaders))
            for p in range(len(leaders)):
                (<PartitionState>st.partitions[p]).leader = leaders[p]
            st.available = [p for p in range(len(leaders)) if <int>leaders[p] >= 0]
            if st.sticky_partition >= st.num_partitions or (
                    st.sticky_partition >= 0 and <int>leaders[st.sticky_partition] < 0):
                st.sticky_partition = -1

    def partition_count(self, str topic):
        """Known partition count of a topic, or 0 if its metadata has not arrived yet."""
        cdef TopicState st = self.topics.get(topic)
        return 0 if st is None else st.num_partitions

    cdef PartitionState _partition_of(self, ProducerBatch batch):
        return (<TopicState>self.topics[batch.topic]).partitions[batch.partition]

    # ---- idempotence: sequence numbers per partition ---------------------------------------------------------
    def set_producer_id(self, int64_t producer_id, int epoch):
        self.producer_id = producer_id
        self.producer_epoch = <int16_t>epoch

    def restart_sequences(self, partitions, bint new_producer_id):
        """Each (topic, partition) of `partitions` numbers its batches from 0 again -- those waiting for a retry
        too, in queue order -- once nothing of it is in flight; with new_producer_id, under a producer id still to
        be fetched, and every other partition too once its older batches are answered.

        When and under which id numbering restarts is the TransactionManager's decision (_request_restart).
        """
        cdef TopicState st
        with cython.critical_section(self):
            if new_producer_id:
                self.producer_id = -1
                self.producer_epoch = -1
            for topic, p in partitions:
                st = self.topics.get(topic)
                if st is not None and p < st.num_partitions:
                    (<PartitionState>st.partitions[p]).restart = True

    cdef bint _number(self, PartitionState ps, ProducerBatch batch):
        # Whether the head batch of the partition may be drained now, giving it the next sequence of the current
        # producer id and epoch where it needs one. Call inside the critical section.
        cdef bint current = ps.seq_owner == (self.producer_id, self.producer_epoch)
        if batch.base_sequence >= 0:
            if batch.producer_id == self.producer_id and batch.producer_epoch == self.producer_epoch:
                return True
            if not ps.restart and not current:
                return True  # a retry, under the numbering its partition still has at the broker
        if self.producer_id < 0:
            return False  # InitProducerId must answer first
        if not current:
            if ps.in_flight:
                # Batches numbered under the old producer id or epoch are still on the wire: a batch starting
                # the new numbering must not overtake them.
                return False
            ps.seq_owner = (self.producer_id, self.producer_epoch)
            ps.next_sequence = 0
            ps.restart = False
        # A renumbered retry keeps its place in the queue's sequence order: the new numbers start at 0 and rise
        # in queue order, so each is at most the old number it replaces.
        batch.set_producer_state(self.producer_id, self.producer_epoch, ps.next_sequence, self.transactional)
        ps.next_sequence = (ps.next_sequence + batch_record_count(batch)) & 0x7FFFFFFF
        return True

    def has_earlier_pending(self, ProducerBatch batch):
        """Whether a batch of the same partition numbered under the same producer id and epoch with a lower
        sequence is not done yet: in flight, or back in the queue for a retry."""
        cdef ProducerBatch other
        cdef PartitionState ps
        with cython.critical_section(self):
            ps = self._partition_of(batch)
            for source in (ps.in_flight, ps.queue):
                for other in source:
                    if (other is not batch and 0 <= other.base_sequence < batch.base_sequence
                            and other.final_state == BATCH_PENDING and other.producer_id == batch.producer_id
                            and other.producer_epoch == batch.producer_epoch):
                        return True
        return False

    # ---- send() --------------------------------------------------------------------------------------------------
    def send(self, topic, value=None, key=None, *, partition=None, timestamp_ms=None, headers=None,
             callback=None):
        """KafkaProducer.send() when no serializer, interceptor or custom partitioner is configured.

        The producer installs this bound method as its `send`, so the common call -- a known topic, bytes in --
        costs one call into compiled code; everything else (unknown topic, validation that needs Python) goes to
        the producer's own path, `slow_send`.
        """
        cdef FutureRecordMetadata fut = self.try_send(topic, value, key, partition, timestamp_ms, headers, callback)
        if fut is not None:
            return fut
        return self.slow_send(topic, value, key, partition, timestamp_ms, headers, callback)

    cdef FutureRecordMetadata try_send(self, object topic, object value, object key, object partition,
                                       object timestamp_ms, object headers, object callback):
        cdef TopicState st
        if type(topic) is str and not self.closed and not self.appends_gated:
            st = self.topics.get(topic)
            if st is not None and st.num_partitions > 0:
                if partition is None:
                    return self._append_record(st, -1, key, value, headers, timestamp_ms, callback)
                if type(partition) is int and 0 <= partition <= 0x7fffffff:
                    return self._append_record(st, <int>partition, key, value, headers, timestamp_ms, callback)
        return None

    cpdef FutureRecordMetadata append(self, str topic, int partition, object key, object value, object headers,
                                      object timestamp_ms, object callback):
        """Appends one record; partition -1 lets the built-in partitioner choose. Returns the record's future.

        Raises ValueError for a partition out of range, TypeError for wrong key/value/header types,
        BufferExhaustedError if no memory frees up within max_block_ms.
        """
        return self._append_record(self.topic_for_append(topic, "send()"), partition, key, value, headers,
                                   timestamp_ms, callback)

    cdef TopicState topic_for_append(self, str topic, str what):
        cdef TopicState st = self.topics.get(topic)
        if self.appends_gated:
            raise self.refusal(what)
        if self.closed:
            raise self.closed_error(f"{what} after the producer was closed")
        if st is None or st.num_partitions == 0:
            raise KeyError(topic)  # the producer fetches metadata first; reaching here is a bug
        return st

    cdef FutureRecordMetadata _append_record(self, TopicState st, int partition, object key, object value,
                                             object headers, object timestamp_ms, object callback):
        cdef Py_buffer kview, vview
        cdef const unsigned char* kptr
        cdef const unsigned char* vptr
        cdef Py_ssize_t klen, vlen
        cdef int krel = 0, vrel = 0
        cdef int64_t ts = wall_ms() if timestamp_ms is None else timestamp_of(timestamp_ms)
        cdef FutureRecordMetadata fut
        check_callback(callback)
        krel = bytes_view(key, &kview, &kptr, &klen, "key")
        try:
            vrel = bytes_view(value, &vview, &vptr, &vlen, "value")
            try:
                self._check_size(klen, vlen, headers)
                if partition < 0:
                    if kptr != NULL:
                        partition = partition_for(murmur2(kptr, klen), st.num_partitions)
                    else:
                        partition = st.sticky_for(klen, vlen, self.batch_size)
                else:
                    check_in_range(partition, st.topic, st.num_partitions)
                fut = self._append(st, partition, ts, kptr, klen, vptr, vlen, headers, callback)
            finally:
                if vrel:
                    PyBuffer_Release(&vview)
        finally:
            if krel:
                PyBuffer_Release(&kview)
        return fut

    cdef int _check_size(self, Py_ssize_t klen, Py_ssize_t vlen, object headers) except -1:
        if headers is None and (klen if klen > 0 else 0) + (vlen if vlen > 0 else 0) + 128 <= self.size_fast_limit:
            return 0  # 128 bytes cover the batch header and a record's own overhead without headers
        return self.check_record_size(estimate_size_upper_bound_raw(klen, vlen, headers), "the record")

    cdef int check_record_size(self, Py_ssize_t size, str which) except -1:
        if size > self.max_request_size:
            raise RecordTooLargeError(f"{which} is {size} bytes when serialized, larger than max_request_size "
                                      f"({self.max_request_size})")
        if size > self.buffer_memory:
            raise RecordTooLargeError(f"{which} is {size} bytes when serialized, larger than buffer_memory "
                                      f"({self.buffer_memory})")
        return 0

    cdef FutureRecordMetadata _append(self, TopicState st, int partition, int64_t ts,
                                      const unsigned char* kptr, Py_ssize_t klen,
                                      const unsigned char* vptr, Py_ssize_t vlen,
                                      object headers, object callback):
        cdef PartitionState ps = st.partitions[partition]
        cdef ProducerBatch last, batch
        cdef FutureRecordMetadata fut
        cdef Py_ssize_t size
        # Java's RecordAccumulator.append: try the partition's open batch; if it has no room, get memory and
        # start a batch.
        with cython.critical_section(self):
            if self.appends_gated:
                # Checked where the record joins a batch: a transaction that closed after send() began never
                # receives it (commit_transaction() closes the gate, then flushes).
                raise self.refusal("send()")
            last = ps.open_batch
            if last is not None:
                fut = last.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                if fut is None and self.grow(last, estimate_size_upper_bound_raw(klen, vlen, headers)):
                    fut = last.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                if fut is not None:
                    if batch_is_full(last):
                        self.wake()
                    return fut
        # Memory for a new batch comes from outside the critical section, since the pool may block.
        size = max(estimate_size_upper_bound_raw(klen, vlen, headers), self.first_size(ps))
        buf = self.allocate(size, "send()")
        cdef bint handed_over = False
        try:
            with cython.critical_section(self):
                if self.appends_gated:
                    raise self.refusal("send()")
                if self.closed:
                    raise self.closed_error("the producer was closed while send() waited for memory")
                last = ps.open_batch
                if last is not None:
                    fut = last.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                    if fut is not None:
                        return fut  # another thread made a batch meanwhile; our buffer goes back below
                batch = self.new_batch(st, partition, buf, size)
                fut = batch.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                if fut is None:
                    raise RecordTooLargeError(
                        f"record of {klen} key bytes and {vlen} value bytes does not fit a batch of {size} bytes")
                self.add_batch(st, batch)
                handed_over = True
        finally:
            if not handed_over:
                self.free(buf, size)
        self.wake_for(batch)
        return fut

    cdef object allocate(self, Py_ssize_t size, str what):
        try:
            return self.pool.allocate_raw(size, self.max_block_ms)
        except ProducerClosedError:
            # close() woke us (see close()); say so, and name the fatal error if that is what stopped the producer.
            raise self.closed_error(f"the producer was closed while {what} waited for memory") from None

    cdef void free(self, object buf, Py_ssize_t size):
        self.pool.deallocate_raw(buf, size)

    cdef ProducerBatch new_batch(self, TopicState st, int p, object buf, Py_ssize_t size):
        cdef ProducerBatch batch = ProducerBatch(st.topic, p, MemoryRecordsBuilder(buf, self.compression_type,
                                                                                   self.batch_size),
                                                 buf, size, mono_s())
        batch.result.ack = self.acknowledge
        return batch

    cdef void add_batch(self, TopicState st, ProducerBatch batch):
        cdef PartitionState ps = st.partitions[batch.partition]
        if ps.open_batch is not None:
            ps.open_batch.closed_for_append = True
        ps.queue.append(batch)
        self.enqueued(ps, batch)
        ps.open_batch = batch
        self.incomplete.add(batch)

    cdef void enqueued(self, PartitionState ps, ProducerBatch batch):
        # Call whenever a batch joins a partition's queue. The Sender's loop visits only the partitions on the
        # active list, so its work grows with the partitions that have something to send, not with every
        # partition the producer ever wrote to (ready() drops those whose queue has emptied); and expiry looks
        # only once the oldest queued batch could have expired.
        if not ps.active:
            ps.active = True
            self.active.append(ps)
        if batch.created < self.oldest_queued:
            self.oldest_queued = batch.created

    cdef Py_ssize_t first_size(self, PartitionState ps):
        if ps.alloc_hint <= 0:
            return _FIRST_BATCH_BYTES if _FIRST_BATCH_BYTES < self.batch_size else self.batch_size
        return ps.alloc_hint

    cdef void learn_size(self, PartitionState ps, ProducerBatch batch):
        # The next batch starts with about what this one held. Rounded up to a power of two so that a steady
        # stream rarely grows a batch; within a factor of two of batch_size it is batch_size, the size the
        # pool's free list recycles.
        cdef Py_ssize_t used = batch_size_in_bytes(batch), hint = _FIRST_BATCH_BYTES
        while hint < used:
            hint *= 2
        if hint * 2 > self.batch_size:
            hint = self.batch_size
        ps.alloc_hint = hint

    cdef bint grow(self, ProducerBatch batch, Py_ssize_t record_bound):
        """Moves an open batch that started below batch_size into a buffer large enough for one more record of at
        most record_bound bytes (doubling, up to batch_size), if the pool has that memory free now; False when
        the batch is closed, already at batch_size, or the memory is not free (the caller starts a new batch,
        waiting for memory as Java's append does). Call inside the critical section."""
        cdef MemoryRecordsBuilder b = batch.builder
        cdef Py_ssize_t cap = builder_capacity(b), limit = builder_write_limit(b), want
        if batch.closed_for_append or cap >= limit or batch.buffer is None:
            return False
        want = cap * 2
        if want < builder_size(b) + record_bound:
            want = builder_size(b) + record_bound
        if want > limit:
            want = limit
        buf = self.pool.try_allocate_raw(want)
        if buf is None:
            return False
        try:
            b.move_to(buf)
        except BaseException:
            self.pool.deallocate_raw(buf, want)
            raise
        old, old_size = batch.buffer, batch.buffer_size
        batch.buffer = buf
        batch.buffer_size = want
        self.pool.deallocate_raw(old, old_size)
        return True

    cdef void wake(self):
        if self.wakeup is not None:
            self.wakeup()

    cdef void wake_for(self, ProducerBatch batch):
        # A new batch needs the Sender awake only if it is sendable already or the Sender sleeps past its linger
        # (Java wakes the Sender for every new batch; at thousands of partitions nearly every record starts one,
        # and each wake-up is a loop over every partition with queued batches).
        if batch_is_full(batch) or batch.created + self.linger < self.sender_wakes_at:
            self.wake()

    # ---- Sender: ready / drain / expire / retry ------------------------------------------------------------------
    def ready(self, double now):
        """(ready node ids, seconds until the next check, topics whose leader is unknown): Java's ready()."""
        cdef set ready_nodes = set()
        cdef set unknown = set()
        cdef double next_delay = 3600.0
        cdef bint exhausted = self.pool.queued > 0
        cdef PartitionState ps
        cdef ProducerBatch batch
        cdef double waited, time_to_wait, left
        cdef bint backing_off, full, sendable
        cdef list still_active
        cdef double oldest = 1e18
        with cython.critical_section(self):
            # Only the partitions with queued batches (see enqueued()); those whose queue emptied leave the list.
            self.last_ready_visits = len(self.active)
            still_active = []
            for ps in self.active:
                if not ps.queue:
                    ps.active = False
                    continue
                still_active.append(ps)
                batch = ps.queue[0]
                if batch.created < oldest:
                    oldest = batch.created
                if self.transactional and ps.txn_state != TXN_ADDED:
                    # Nothing of it is sent before AddPartitionsToTxn added it to the transaction; the
                    # TransactionManager takes the partitions found here (take_new_txn_partitions).
                    if ps.txn_state == TXN_NONE:
                        ps.txn_state = TXN_PENDING
                        self.txn_new.append((ps.topic, ps.partition))
                    continue
                if ps.leader < 0:
                    unknown.add(ps.topic)
                    continue
                if ps.leader in ready_nodes or self._held(ps, ps.leader):
                    continue
                waited = now - batch.last_attempt
                backing_off = batch.attempts > 0 and waited < self._backoff(batch)
                time_to_wait = self._backoff(batch) if backing_off else self.linger
                full = len(ps.queue) > 1 or batch_is_full(batch)
                sendable = (full or waited >= time_to_wait or exhausted or self.closed
                            or self.flushes_in_progress > 0)
                if sendable and not backing_off:
                    ready_nodes.add(ps.leader)
                else:
                    left = time_to_wait - waited
                    if left < next_delay:
                        next_delay = left if left > 0 else 0
            self.active = still_active
            self.oldest_queued = oldest
        return ready_nodes, next_delay, unknown

    @property
    def active_partitions(self):
        """(topic, partition) of every partition the Sender's next loop visits: those with queued batches, and
        those whose queue emptied since the last ready()."""
        with cython.critical_section(self):
            return [((<PartitionState>ps).topic, (<PartitionState>ps).partition) for ps in self.active]

    @property
    def partitions_visited_by_last_ready(self):
        """How many partitions the last ready() looked at."""
        return self.last_ready_visits

    cdef bint _held(self, PartitionState ps, object node):
        # Whether the partition sends nothing to `node` now, because batches of it are in flight. With idempotence
        # the order of a partition in the log must not rest on the broker refusing a batch that comes after one
        # that failed: a broker that checks sequences answers it OUT_OF_ORDER_SEQUENCE_NUMBER, but one that does
        # not -- librdkafka's mock, for a non-transactional producer -- writes it ahead of the earlier batch's
        # retry. A batch already on the wire behind one that fails cannot be called back; so:
        # - After a leader change, nothing goes to the new leader while batches are in flight to the old one,
        #   which is about to refuse them (librdkafka's producer also waits for them before it moves a partition).
        # - After an error (`serial` set in reenqueue / reenqueue_split), nothing is sent, neither the retry nor a
        #   new batch, until every batch of the partition in flight is answered; then the retries go in sequence
        #   order, one in flight at a time, since a retry may fail again. This is librdkafka's
        #   rd_kafka_idemp_drain_toppar (a partition drains its in-flight requests before it retries) with the
        #   Java client's RecordAccumulator.shouldStopDrainBatchesForPartition (a batch with a sequence is drained
        #   only when it is TransactionManager.firstInFlightSequence of its partition) -- stricter than Java for
        #   new batches, which Java leaves to a checking broker to refuse.
        # - After the partition was idle -- nothing queued or in flight for longer than linger, so its records
        #   stopped coming as a stream (`serial` set in _drain_node; and at the start) -- its first batch goes
        #   alone: it is the one that meets whatever changed meanwhile -- a leader that moved, a broker that
        #   restarted, errors that began -- and the batches behind it wait for its answer. Our own rule, not
        #   librdkafka's or Java's; it costs one round trip per partition after a pause. The pause must be longer
        #   than linger because, when the producer keeps up with send(), the sticky partitioner (KIP-794) leaves a
        #   partition empty between two of its batches all the time, and a stream must pipeline through those
        #   short gaps.
        # A partition pipelines again (`serial` cleared in deallocate) once a batch it sent alone is written with
        # only never-sent batches queued behind it -- and, after an error, not before retry_backoff_max has
        # passed since the last one: errors come in runs (a broker in trouble refuses request after request, and
        # the backlog a partition sends once it is back is where the next one lands), so for as long as the
        # producer would still be backing off between retries, the partition keeps one batch in flight. Also
        # our own rule; it is bounded in time, so a partition fed faster than one batch per round trip is slowed
        # for at most that long after its last error. A steady stream without errors never goes idle and keeps
        # up to max_in_flight_requests_per_connection batches of a partition in flight. What this does not
        # cover is an error that begins while several are: a checking broker refuses the ones behind the failed
        # batch and they are retried after it (TransactionManager.can_retry); a broker that checks nothing
        # writes them.
        if not self.idempotent or not ps.in_flight:
            return False
        return ps.serial or (<ProducerBatch>ps.in_flight[0]).sent_to != <int>node

    cdef double _backoff(self, ProducerBatch batch):
        # Exponential backoff per attempt, as retry.backoff.ms .. retry.backoff.max.ms in the Java client.
        cdef double b = self.retry_backoff
        cdef int i
        for i in range(1, batch.attempts):
            b *= 2
            if b >= self.retry_backoff_max:
                return self.retry_backoff_max
        return b

    def set_retry_backoff_max(self, int ms):
        self.retry_backoff_max = ms / 1000.0

    def drain(self, ready_nodes, int max_request_size, double now):
        """Per ready node, the batches for one ProduceRequest of at most max_request_size bytes."""
        cdef dict out = {}
        with cython.critical_section(self):
            for node in ready_nodes:
                batches = self._drain_node(node, max_request_size, now)
                if batches:
                    out[node] = batches
        return out

    cdef list _drain_node(self, object node, int max_size, double now):
        cdef list parts = self.active
        cdef list out = []
        cdef Py_ssize_t size = 0, n, i, start, est
        cdef int leader = node
        cdef PartitionState ps
        cdef ProducerBatch batch
        if not parts:
            return out
        n = len(parts)
        start = self.drain_index.get(node, 0) % n
        # The next drain starts where this one stops for want of request space (Java's drainIndex), so that every
        # partition gets its turn when more are ready than one request holds; starting one partition further
        # each time would give most of every request to the same run of partitions.
        self.drain_index[node] = (start + 1) % n
        for i in range(n):
            ps = parts[(start + i) % n]
            if (ps.leader != leader or not ps.queue or self._held(ps, node)
                    or (self.transactional and ps.txn_state != TXN_ADDED)):
                continue
            batch = ps.queue[0]
            if batch.attempts > 0 and now - batch.last_attempt < self._backoff(batch):
                continue
            est = batch_size_in_bytes(batch)
            if out and size + est > max_size:
                self.drain_index[node] = (start + i) % n
                break
            if self.idempotent and not self._number(ps, batch):
                continue
            if ps.idle_since >= 0:
                # The partition's first batch since it was last empty (see _held): after a pause longer than
                # linger, it goes alone.
                if batch.created - ps.idle_since > self.linger:
                    ps.serial = True
                ps.idle_since = -1
            ps.queue.popleft()
            batch.closed_for_append = True
            if ps.open_batch is batch:
                self.learn_size(ps, batch)
                # Not kept past its drain: a partition left idle must not keep its last batch (and the buffer
                # its sealed bytes point into) alive outside buffer_memory.
                ps.open_batch = None
            batch.sent_to = node
            ps.in_flight.append(batch)
            size += est
            out.append(batch)
        return out

    def expired_batches(self, double now):
        """Removes and returns queued batches older than delivery_timeout_ms (the caller fails them)."""
        cdef list out = []
        cdef PartitionState ps
        cdef ProducerBatch batch
        cdef double oldest = 1e18
        with cython.critical_section(self):
            # Queues are in creation order (a retry goes back in front of younger batches), so no batch is older
            # than the oldest head, which ready() and this scan keep: most loops need no scan at all.
            if now - self.oldest_queued < self.delivery_timeout:
                return out
            for ps in self.active:
                dq = ps.queue
                while dq:
                    batch = dq[0]
                    if now - batch.created < self.delivery_timeout:
                        if batch.created < oldest:
                            oldest = batch.created
                        break
                    dq.popleft()
                    batch.closed_for_append = True
                    out.append(batch)
            self.oldest_queued = oldest
        return out

    def reenqueue(self, ProducerBatch batch, double now):
        """Puts a batch that will be retried back at the head of its queue (it keeps its sequence)."""
        cdef PartitionState ps
        with cython.critical_section(self):
            ps = self._partition_of(batch)
            ps.release(batch)
            batch.attempts += 1
            batch.last_attempt = now
            batch.retry = True
            ps.serial = True
            ps.last_error = now
            ps.insert_for_retry(batch)
            self.enqueued(ps, batch)

    def reenqueue_split(self, ProducerBatch batch, list halves):
        """Puts the halves of a batch the broker found too large at the head of its queue in the batch's place
        (Java's splitAndReenqueue; splitter.py makes them). halves: (first relative offset, ProducerBatch) in
        order; the original's futures follow their records into them."""
        cdef PartitionState ps
        cdef ProducerBatch child
        with cython.critical_section(self):
            ps = self._partition_of(batch)
            ps.serial = True
            ps.last_error = mono_s()
            for _, child in reversed(halves):
                # In sequence order, not simply at the head: another batch of the partition may have been split
                # (or re-queued) before this one, and the halves of this later batch must not overtake it.
                ps.insert_for_retry(child)
                self.enqueued(ps, child)
                self.incomplete.add(child)
        batch.final_state = BATCH_FAILED
        batch.result.split([(start, (<ProducerBatch>child).result) for start, child in halves])
        self.deallocate(batch)

    def deallocate(self, ProducerBatch batch, bint succeeded=False):
        """The batch is finished (succeeded: written): return its memory and forget it."""
        cdef PartitionState ps
        with cython.critical_section(self):
            ps = self._partition_of(batch)
            ps.release(batch)
            if ps.open_batch is batch:
                ps.open_batch = None  # expired or aborted before its drain
            if not ps.in_flight:
                # One batch at a time or not (see _held): empty, the partition is idle from now (its next batch
                # decides, in _drain_node); a batch sent alone succeeded with no retry left behind it (the head was
                # never sent) and its last error is retry_backoff_max old, it pipelines again.
                if not ps.queue:
                    ps.idle_since = mono_s()
                elif (succeeded and ps.serial and (<ProducerBatch>ps.queue[0]).base_sequence < 0
                      and mono_s() - ps.last_error >= self.retry_backoff_max):
                    ps.serial = False
            self.incomplete.discard(batch)
        if batch.buffer is not None and batch.buffer_size > 0:
            buf = batch.buffer
            batch.buffer = None
            self.free(buf, batch.buffer_size)

    def has_incomplete(self):
        """Whether any batch is not finished yet: queued, in flight, or waiting for a retry."""
        with cython.critical_section(self):
            return len(self.incomplete) > 0

    def incomplete_batches(self):
        with cython.critical_section(self):
            return list(self.incomplete)

    # ---- flush / close ------------------------------------------------------------------------------------------------
    def begin_flush(self):
        with cython.critical_section(self):
            self.flushes_in_progress += 1
        self.wake()

    def end_flush(self):
        with cython.critical_section(self):
            self.flushes_in_progress -= 1

    def await_flush_completion(self, timeout=None):
        """Waits for every batch incomplete at the call; False if timeout (seconds) ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cdef ProduceRequestResult result
        cdef list pending = [(<ProducerBatch>batch).result for batch in self.incomplete_batches()]
        while pending:
            result = pending.pop()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not result.wait(left):
                return False
            if result.children is not None:
                # Split (MESSAGE_TOO_LARGE): the result is released, but its records now travel in the halves,
                # which were not incomplete yet when the flush began.
                pending.extend([child for _, child in result.children])
        return True

    def close(self, error=None):
        """No more appends; queued batches become ready at once so close() can flush them.

        error: the fatal error that stopped the producer, if that is why; later appends name it.
        """
        if error is not None and self.fatal_error is None:
            self.fatal_error = error
        self.closed = True
        # A send() blocked for memory could only fail once the producer is closed: wake it now instead of after
        # close(timeout) ran out or max_block_ms passed. Splits never take pool memory, so the Sender can still
        # finish what is queued; buffers can still be returned to a closed pool.
        self.pool.close()
        self.wake()

    def refuse_appends(self, error):
        """Every later append is refused (error names why) -- and nothing else: no pool, no wake-up, no lock.

        For a forked child, whose copies of the parent's locks may be held by threads that do not exist there: the
        compiled send() then hands every record to slow_send, which raises.
        """
        self.fatal_error = error
        self.closed = True

    cdef object refusal(self, str what):
        if self.txn_refusal is not None:
            return self.txn_refusal(what)
        return TransactionStateError(f"{what} on a transactional producer outside a transaction")

    cdef object closed_error(self, str what):
        if self.fatal_error is None:
            return ProducerClosedError(what)
        err = ProducerClosedError(f"the producer stopped after a fatal error: {self.fatal_error}")
        err.__cause__ = self.fatal_error
        return err

    def abort_undrained(self, error, bint unnumbered_only=False):
        """Fails every queued (not in-flight) batch with error; returns them (the caller deallocates).

        unnumbered_only: only batches never sent -- those without a sequence number. A batch waiting for a retry
        keeps its place: it may have been written already, so it must be sent until its fate is known, or the
        partition's sequences would break (Java's abortUndrainedBatches with a TransactionManager)."""
        cdef list out = []
        cdef TopicState st
        cdef PartitionState ps
        cdef ProducerBatch batch
        with cython.critical_section(self):
            for st in self.topics.values():
                for ps in st.partitions:
                    dq = ps.queue
                    if unnumbered_only:
                        kept = [b for b in dq if (<ProducerBatch>b).base_sequence >= 0]
                        if len(kept) == len(dq):
                            continue
                        for batch in dq:
                            if batch.base_sequence < 0:
                                batch.closed_for_append = True
                                out.append(batch)
                        dq.clear()
                        dq.extend(kept)
                        continue
                    while dq:
                        batch = dq.popleft()
                        batch.closed_for_append = True
                        out.append(batch)
        for batch in out:
            batch.done(-1, -1, error)
        return out

    # ---- transactions (the TransactionManager's side) ----------------------------------------------------------------
    def open_transaction(self):
        """begin_transaction(): appends are taken again."""
        with cython.critical_section(self):
            self.appends_gated = False

    def close_transaction(self):
        """No more appends (commit or abort under way, or an error): they raise txn_refusal(what). An append that
        got into a batch before this call is part of the transaction being completed."""
        with cython.critical_section(self):
            self.appends_gated = self.transactional

    def take_new_txn_partitions(self):
        """The (topic, partition)s with queued batches that ready() found outside the transaction since the last
        call: the TransactionManager adds them with one AddPartitionsToTxn."""
        with cython.critical_section(self):
            out = self.txn_new
            self.txn_new = []
        return out

    def has_new_txn_partitions(self):
        return len(self.txn_new) > 0

    def add_txn_partitions(self, partitions):
        """AddPartitionsToTxn succeeded for these (topic, partition)s: their batches drain from now on."""
        cdef TopicState st
        with cython.critical_section(self):
            for topic, p in partitions:
                st = self.topics.get(topic)
                if st is not None and p < st.num_partitions:
                    (<PartitionState>st.partitions[p]).txn_state = TXN_ADDED

    def end_transaction(self):
        """The transaction is over (committed or aborted): every partition must be added to the next one again."""
        cdef TopicState st
        cdef PartitionState ps
        with cython.critical_section(self):
            for st in self.topics.values():
                for ps in st.partitions:
                    ps.txn_state = TXN_NONE
            self.txn_new = []
