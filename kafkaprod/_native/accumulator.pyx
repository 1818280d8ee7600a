# cython: language_level=3
"""RecordAccumulator: per-partition queues of batches that send() appends to and the Sender drains.

This is the seed's RecordAccumulator/RecordBatch pair. send() makes exactly one call into this module per
record: partition choice (murmur2 or uniform sticky), append into the partition's open batch (memory from the
BufferPool), and the record's future. send_batch() makes one call for a whole list or array of records
(append_batch): every record is checked first, then partitioned and encoded in C, with one BatchFuture for all.
The Sender's per-loop work -- ready(), drain(), expiry -- also runs here, so that no step touches each record
from Python.

Shared state is guarded by `cython.critical_section(self)`: a per-object lock on free-threaded Python, and on
GIL builds free, because the guarded code never releases the GIL. The one way another thread can run inside it
there is a garbage collection triggered by an allocation; that can only interleave whole appends to a batch
whose state is consistent at every allocation point, or create one extra batch for a partition.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from libc.stdint cimport INT32_MAX

from kafkaprod._native.buffer_pool cimport BufferPool
from kafkaprod._native.bulk cimport (
    SRC_LIST, SRC_NONE, SRC_ROWS, SRC_TUPLE, Source, close_source, open_source, read_item,
)
from kafkaprod._native.future cimport BatchFuture, FutureRecordMetadata, ProduceRequestResult
from kafkaprod._native.murmur2 cimport murmur2, partition_for
from kafkaprod._native.records cimport MemoryRecordsBuilder, encode_headers, estimate_size_upper_bound_raw
from kafkaprod._native.varint cimport varint_size

import collections
import logging
import random
import threading
import time

from kafkaprod.errors import (
    KafkaTimeoutError, ProducerClosedError, RecordTooLargeError,
)

log = logging.getLogger("kafkaprod")

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec* tp)
    enum:
        CLOCK_REALTIME
        CLOCK_MONOTONIC

cdef extern from "Python.h":
    PyObject* _list_get "PyList_GET_ITEM" (object lst, Py_ssize_t i) noexcept
    PyObject** _fast_items "PySequence_Fast_ITEMS" (object seq) noexcept
    PyObject* _type_of "(PyObject*)Py_TYPE" (PyObject* o) noexcept
    PyObject* _bytes_type "((PyObject*)&PyBytes_Type)"
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE" (PyObject* o) noexcept
    char* _bytes_str "PyBytes_AS_STRING" (PyObject* o) noexcept
    Py_ssize_t _fast_size_of "PySequence_Fast_GET_SIZE" (PyObject* o) noexcept
    PyObject* _none "Py_None"

cdef object _deque = collections.deque
cdef object _random = random.Random()

cdef enum:
    BATCH_HEADER_SIZE = 61


cdef inline bint builder_full(MemoryRecordsBuilder b) noexcept:
    return b._appends_closed or (b._count > 0 and b._pos >= b._write_limit)


cdef inline Py_ssize_t builder_size(MemoryRecordsBuilder b) noexcept:
    return b._built_size if b._closed else b._pos


cdef inline Py_ssize_t bulk_upper_bound(Py_ssize_t klen, Py_ssize_t vlen, Py_ssize_t headers_part) noexcept nogil:
    # estimate_size_upper_bound_raw for headers already encoded (headers_part bytes, count varint included).
    return (BATCH_HEADER_SIZE + 5 + 1 + 10 + 5 + varint_size(klen) + (klen if klen > 0 else 0)
            + varint_size(vlen) + (vlen if vlen > 0 else 0) + headers_part)


cdef inline int64_t wall_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


cdef inline double mono_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


def monotonic():
    """The clock batches are timed with (seconds); the Sender uses the same one."""
    return mono_s()


cdef inline int view_of(object obj, Py_buffer* view, const unsigned char** ptr, Py_ssize_t* length,
                        str what) except -1:
    """Points at the bytes of a key or value without copying; returns 1 if a buffer view must be released."""
    if obj is None:
        ptr[0] = NULL
        length[0] = -1
        return 0
    if PyBytes_CheckExact(obj):
        ptr[0] = <const unsigned char*>PyBytes_AS_STRING(obj)
        length[0] = PyBytes_GET_SIZE(obj)
        return 0
    if isinstance(obj, str):
        raise TypeError(f"{what} must be bytes (or set a {what}_serializer), got str {obj[:40]!r}")
    try:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"{what} must be bytes-like or None (or set a {what}_serializer), got {type(obj).__name__}") from None
    except (BufferError, ValueError) as exc:
        # A strided memoryview or a non-contiguous array: its bytes are not one run, so they cannot be copied as is.
        raise TypeError(f"{what} must be a contiguous bytes-like object, got a non-contiguous "
                        f"{type(obj).__name__} ({exc})") from None
    ptr[0] = <const unsigned char*>view.buf
    length[0] = view.len
    return 1


cdef inline PyObject** _items_of(Source* src, Py_ssize_t n) noexcept:
    """The item array of a list or tuple input still holding n items, else NULL (read through read_item)."""
    if (src.kind == SRC_LIST or src.kind == SRC_TUPLE) and _fast_size_of(src.obj) >= n:
        return _fast_items(<object>src.obj)
    return NULL


cdef inline int _read_fast(Source* src, PyObject** items, Py_ssize_t i, const unsigned char** ptr,
                           Py_ssize_t* length) except -1:
    # read_item, with the common item -- exact bytes in a list or tuple -- read straight from the item array.
    cdef PyObject* o
    if items != NULL:
        o = items[i]
        if _type_of(o) == _bytes_type:
            ptr[0] = <const unsigned char*>_bytes_str(o)
            length[0] = _bytes_size(o)
            return 0
    return read_item(src, i, ptr, length)


cdef Py_ssize_t _scan_sizes(Source* src, Py_ssize_t n, BatchFuture fut, bint keys) except -1:
    """Checks every item of a send_batch() input (bytes or None) and records the sizes in the future: one size
    for all, or an array once they differ. Returns the largest size (0 for none)."""
    cdef Py_ssize_t i, j, length, largest = 0
    cdef int32_t first = -1
    cdef int32_t* sizes = NULL
    cdef const unsigned char* ptr
    cdef PyObject* o
    cdef PyObject** items = NULL
    if src.kind == SRC_ROWS:
        first = <int32_t>src.row_size
        largest = src.row_size
    elif src.kind != SRC_NONE:
        if src.kind == SRC_LIST or src.kind == SRC_TUPLE:
            if len(<object>src.obj) < n:  # Python code ran since the input was opened (a buffer export, say)
                raise RuntimeError(f"{'keys' if keys else 'values'} was changed by another thread during send_batch()")
            items = _fast_items(<object>src.obj)
        for i in range(n):
            # Exact bytes, the common item, without the general reader; everything else through it.
            o = items[i] if items != NULL else NULL
            if o != NULL and _type_of(o) == _bytes_type:
                length = _bytes_size(o)
            else:
                read_item(src, i, &ptr, &length)
            if i == 0:
                first = <int32_t>length
            if sizes != NULL:
                sizes[i] = <int32_t>length
            elif length != first:
                sizes = fut.sizes_array(keys)
                for j in range(i):
                    sizes[j] = first
                sizes[i] = <int32_t>length
            if length > largest:
                largest = length
    if keys:
        fut._key_size = first
    else:
        fut._value_size = first
    return largest


@cython.final
cdef class ProducerBatch:
    """The records of one partition that travel together: the seed's RecordBatch."""

    def __cinit__(self, str topic, int partition, MemoryRecordsBuilder builder, object buffer,
                  Py_ssize_t buffer_size, double now):
        self.topic = topic
        self.partition = partition
        self.tp = (topic, partition)
        self.builder = builder
        self.buffer = buffer
        self.buffer_size = buffer_size
        self.result = ProduceRequestResult(topic, partition)
        self.created = now
        self.last_attempt = now
        self.drained = 0.0
        self.attempts = 0
        self.retry = False
        self.final_state = 0
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self.records = None
        self.closed_for_append = False
        self.sent_to = -1

    @property
    def record_count(self):
        return self.builder.record_count

    @property
    def estimated_size(self):
        return self.builder.estimated_size_in_bytes

    @property
    def is_done(self):
        return self.final_state != 0

    @property
    def has_sequence(self):
        return self.base_sequence >= 0

    cdef FutureRecordMetadata try_append(self, int64_t timestamp, const unsigned char* key, Py_ssize_t klen,
                                         const unsigned char* value, Py_ssize_t vlen, object headers,
                                         object callback):
        if self.closed_for_append:
            return None
        cdef int delta = self.builder.append_raw(timestamp, key, klen, value, vlen, headers)
        if delta < 0:
            return None
        cdef FutureRecordMetadata fut = FutureRecordMetadata.create(
            self.result, delta, timestamp, <int>klen if klen >= 0 else -1, <int>vlen if vlen >= 0 else -1)
        if callback is not None:
            fut.set_send_callback(callback)
        return fut

    def close(self):
        """Seals the batch for the wire (compression, header, CRC); idempotent. Returns the batch bytes."""
        self.closed_for_append = True
        if self.records is None:
            self.records = self.builder.close()
        return self.records

    def set_producer_state(self, int64_t producer_id, int producer_epoch, int base_sequence,
                           bint transactional=False):
        self.producer_id = producer_id
        self.producer_epoch = <int16_t>producer_epoch
        self.base_sequence = base_sequence
        if self.records is None:
            self.builder.set_producer_state(producer_id, producer_epoch, base_sequence, transactional)
        else:
            self.builder.rewrite_producer_state(producer_id, producer_epoch, base_sequence, transactional)
            self.records = self.builder.close()

    def done(self, int64_t base_offset, int64_t log_append_time, object error):
        """Completes every record of the batch once; returns False if it was already completed."""
        if self.final_state != 0:
            if error is None and self.final_state == 2:
                log.debug("batch %s[%d] succeeded after it had already failed", self.topic, self.partition)
            return False
        self.final_state = 1 if error is None else 2
        self.result.complete(base_offset, log_append_time, error)
        return True

    def __repr__(self):
        return (f"<ProducerBatch {self.topic}[{self.partition}] records={self.builder.record_count} "
                f"attempts={self.attempts} seq={self.base_sequence}>")


cdef void _insert_for_retry(object dq, ProducerBatch batch):
    # A batch going back into its queue (retry or split half): at the head, except that with sequences it goes
    # after the queued batches of lower sequence, so the queue stays in sequence order whatever order the
    # answers that sent them back arrived in.
    cdef Py_ssize_t i = 0
    cdef ProducerBatch other
    if batch.base_sequence < 0:
        dq.appendleft(batch)
        return
    for other in dq:
        if other.base_sequence < 0 or other.base_sequence > batch.base_sequence:
            break
        i += 1
    dq.insert(i, batch)


@cython.final
cdef class TopicState:
    """A topic's partitions as the accumulator sees them: queues, leaders, sticky choice, sequences."""

    def __cinit__(self, str topic):
        self.topic = topic
        self.num_partitions = 0
        self.queues = []
        self.open_batches = []
        self.leaders = []
        self.available = []
        self.next_sequence = []
        self.seq_owner = []
        self.restart = []
        self.in_flight = []
        self.in_flight_node = []
        self.sticky_partition = -1
        self.sticky_bytes = 0

    cdef void resize(self, int n):
        while len(self.queues) < n:
            self.queues.append(_deque())
            self.open_batches.append(None)
            self.leaders.append(-1)
            self.next_sequence.append(0)
            self.seq_owner.append(None)
            self.restart.append(False)
            self.in_flight.append(0)
            self.in_flight_node.append(-1)
        self.num_partitions = n

    cdef int next_sticky(self, int current):
        # Uniform sticky (KIP-794): move to another partition, chosen at random among those with a leader.
        cdef list avail = self.available
        cdef int n = len(avail)
        if n == 0:
            return <int>(_random.random() * self.num_partitions) if self.num_partitions else -1
        if n == 1:
            return <int>avail[0]
        cdef int p = current
        while p == current:
            p = <int>avail[<int>(_random.random() * n)]
        return p


@cython.final
cdef class RecordAccumulator:
    """Batches per partition, memory from the pool, and the ready/drain/expire steps of the Sender loop."""

    def __cinit__(self, BufferPool pool, int batch_size, int compression_type, int linger_ms,
                  int retry_backoff_ms, int delivery_timeout_ms, int max_block_ms, bint idempotent,
                  object wakeup=None, int max_request_size=1048576):
        self.pool = pool
        self.batch_size = batch_size
        self.compression_type = compression_type
        self.linger = linger_ms / 1000.0
        self.retry_backoff = retry_backoff_ms / 1000.0
        self.delivery_timeout = delivery_timeout_ms / 1000.0
        self.max_block_ms = max_block_ms
        self.idempotent = idempotent
        self.wakeup = wakeup
        self.slow_send = None
        self.max_request_size = max_request_size
        self.size_fast_limit = min(max_request_size, pool._total)
        self.retry_backoff_max = self.retry_backoff
        self.topics = {}
        self.node_partitions = {}
        self.drain_index = {}
        self.incomplete = set()
        self.muted = set()
        self.flushes_in_progress = 0
        self.closed = False
        self.fatal_error = None
        self.producer_id = -1
        self.producer_epoch = -1

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
                st.leaders[p] = leaders[p]
            st.available = [p for p in range(len(leaders)) if <int>leaders[p] >= 0]
            if st.sticky_partition >= st.num_partitions or (
                    st.sticky_partition >= 0 and <int>st.leaders[st.sticky_partition] < 0):
                st.sticky_partition = -1
            self._rebuild_node_map()

    cdef void _rebuild_node_map(self):
        cdef dict out = {}
        cdef TopicState st
        cdef int p, leader
        for st in self.topics.values():
            for p in range(st.num_partitions):
                leader = st.leaders[p]
                if leader >= 0:
                    lst = out.get(leader)
                    if lst is None:
                        out[leader] = [(st, p)]
                    else:
                        lst.append((st, p))
        self.node_partitions = out

    def partition_count(self, str topic):
        """Known partition count of a topic, or 0 if its metadata has not arrived yet."""
        cdef TopicState st = self.topics.get(topic)
        return 0 if st is None else st.num_partitions

    def set_producer_id(self, int64_t producer_id, int epoch):
        self.producer_id = producer_id
        self.producer_epoch = <int16_t>epoch

    def restart_sequences(self, partitions, bint new_producer_id):
        """Recovery from a sequence gap or from a broker that lost this producer's state, by the Java client's
        rules for an idempotent producer.

        new_producer_id: the producer id is dropped, and the Sender fetches a new one (InitProducerId), under
        which every partition numbers from 0 -- librdkafka's reset. Java bumps the epoch on its own instead,
        which Tansu refuses (PRODUCER_FENCED); and neither Tansu nor librdkafka's mock takes KIP-360's bump
        through InitProducerId for a producer without a transactional id. Each (topic, partition) of
        `partitions` numbers its batches from 0 again under the current producer id -- those waiting for a retry
        too, in queue order -- once nothing of it is in flight. Other partitions keep the numbering their brokers
        know for batches already numbered, and start new batches at 0 under the new id once their older batches
        are answered.
        """
        cdef TopicState st
        with cython.critical_section(self):
            if new_producer_id:
                self.producer_id = -1
                self.producer_epoch = -1
            for topic, p in partitions:
                st = self.topics.get(topic)
                if st is not None and p < st.num_partitions:
                    st.restart[p] = True

    cdef bint _number(self, TopicState st, int p, ProducerBatch batch):
        # Idempotence: whether the head batch of partition p may be drained now, giving it the next sequence of
        # the current producer id and epoch where it needs one. Call inside the critical section.
        cdef bint current = st.seq_owner[p] == (self.producer_id, self.producer_epoch)
        if batch.base_sequence >= 0:
            if batch.producer_id == self.producer_id and batch.producer_epoch == self.producer_epoch:
                return True
            if not st.restart[p] and not current:
                return True  # a retry, under the numbering its partition still has at the broker
        if self.producer_id < 0:
            return False  # InitProducerId must answer first
        if not current:
            if <int>st.in_flight[p] > 0:
                # Batches numbered under the old producer id or epoch are still on the wire: a batch starting
                # the new numbering must not overtake them.
                return False
            st.seq_owner[p] = (self.producer_id, self.producer_epoch)
            st.next_sequence[p] = 0
            st.restart[p] = False
        # A renumbered retry keeps its place in the queue's sequence order: the new numbers start at 0 and rise
        # in queue order, so each is at most the old number it replaces.
        batch.set_producer_state(self.producer_id, self.producer_epoch, st.next_sequence[p], False)
        st.next_sequence[p] = (<int>st.next_sequence[p] + batch.builder._count) & 0x7FFFFFFF
        return True

    # ---- send() ------------------------------------------------------------------------------------------------
    def send(self, topic, value=None, key=None, *, partition=None, timestamp_ms=None, headers=None,
             callback=None):
        """KafkaProducer.send() when no serializer, interceptor or custom partitioner is configured.

        The producer installs this bound method as its `send`, so the common call -- a known topic, bytes in --
        costs one call into compiled code; everything else (unknown topic, validation that needs Python) goes to
        the producer's own path, `slow_send`.
        """
        cdef TopicState st
        cdef int p = -1
        if type(topic) is str and not self.closed:
            st = self.topics.get(topic)
            if st is not None and st.num_partitions > 0:
                if partition is None:
                    return self._append_record(st, -1, key, value, headers, timestamp_ms, callback)
                if type(partition) is int and 0 <= partition <= 0x7fffffff:
                    return self._append_record(st, <int>partition, key, value, headers, timestamp_ms, callback)
        return self.slow_send(topic, value, key, partition, timestamp_ms, headers, callback)

    cpdef FutureRecordMetadata append(self, str topic, int partition, object key, object value, object headers,
                                      object timestamp_ms, object callback):
        """Appends one record; partition -1 lets the built-in partitioner choose. Returns the record's future.

        Raises ValueError for a partition out of range, TypeError for wrong key/value/header types,
        BufferExhaustedError if no memory frees up within max_block_ms.
        """
        cdef TopicState st = self.topics.get(topic)
        if self.closed:
            raise self._closed_error("send() after the producer was closed")
        if st is None or st.num_partitions == 0:
            raise KeyError(topic)  # the producer fetches metadata first; reaching here is a bug
        return self._append_record(st, partition, key, value, headers, timestamp_ms, callback)

    cdef FutureRecordMetadata _append_record(self, TopicState st, int partition, object key, object value,
                                             object headers, object timestamp_ms, object callback):
        cdef Py_buffer kview, vview
        cdef const unsigned char* kptr
        cdef const unsigned char* vptr
        cdef Py_ssize_t klen, vlen
        cdef int krel = 0, vrel = 0
        cdef int64_t ts
        cdef FutureRecordMetadata fut
        if timestamp_ms is None:
            ts = wall_ms()
        else:
            # Exactly the slow path's rule: a float would be truncated silently and True taken as 1 ms.
            if not isinstance(timestamp_ms, int) or isinstance(timestamp_ms, bool):
                raise TypeError(
                    f"timestamp_ms must be an int (ms since the epoch) or None, got {type(timestamp_ms).__name__} "
                    f"{timestamp_ms!r}")
            # Compared as Python ints first: a value beyond int64 would otherwise surface as a bare OverflowError.
            if timestamp_ms < 0 or timestamp_ms > 0x7fffffffffffffff:
                raise ValueError(f"timestamp_ms must be in [0, 2**63-1] (ms since the epoch), got {timestamp_ms}")
            ts = timestamp_ms
        if callback is not None and not callable(callback):
            # Found now rather than on the I/O thread, where calling it would fail long after send() returned.
            raise TypeError(f"callback must be callable (metadata, exception) or None, got {callback!r}")
        krel = view_of(key, &kview, &kptr, &klen, "key")
        try:
            vrel = view_of(value, &vview, &vptr, &vlen, "value")
            try:
                self._check_size(klen, vlen, headers)
                if partition < 0:
                    if kptr != NULL:
                        partition = partition_for(murmur2(kptr, klen), st.num_partitions)
                    else:
                        partition = self._sticky(st, klen, vlen)
                elif partition >= st.num_partitions:
                    raise ValueError(
                        f"partition {partition} is out of range for topic {st.topic!r}, which has "
                        f"{st.num_partitions} partitions (0-{st.num_partitions - 1})")
                fut = self._append(st, partition, ts, kptr, klen, vptr, vlen, headers, callback)
            finally:
                if vrel:
                    PyBuffer_Release(&vview)
        finally:
            if krel:
                PyBuffer_Release(&kview)
        return fut

    # ---- send_batch() ---------------------------------------------------------------------------------------------
    def append_batch(self, str topic, values, keys=None, partition=None, timestamp_ms=None, headers=None,
                     partitions=None):
        """Appends a whole send_batch() call and returns its BatchFuture; the topic's metadata must be known.

        values/keys: see KafkaProducer.send_batch. partitions (for the producer's slow path): None, or one int
        (or None: built-in partitioner) per record. Everything is checked before the first record is appended;
        a failure after that (no buffer memory within max_block_ms, the producer closed) raises with
        `records_appended` and `future` (for those records) set on the error.
        """
        cdef TopicState st = self.topics.get(topic)
        cdef Source vsrc, ksrc
        cdef Py_ssize_t n, i, kl, vl, size, hlen = 0
        cdef int nparts, fixed = -1, p
        cdef int32_t* parr = NULL
        cdef int64_t ts
        cdef const unsigned char* hp = NULL
        cdef bytes hblob = None
        cdef BatchFuture fut
        if self.closed:
            raise ProducerClosedError("send_batch() after the producer was closed")
        if st is None or st.num_partitions == 0:
            raise KeyError(topic)  # the producer fetches metadata first; reaching here is a bug
        # The partition count is fixed for the call, so that every key of one call is hashed over the same count.
        nparts = st.num_partitions
        if partition is not None:
            if type(partition) is not int:
                raise TypeError(f"partition must be an int or None, got {type(partition).__name__} {partition!r}")
            if not 0 <= partition < nparts:
                raise ValueError(f"partition {partition} is out of range for topic {topic!r}, which has {nparts} "
                                 f"partitions (0-{nparts - 1})")
            fixed = partition
        if timestamp_ms is None:
            ts = wall_ms()
        else:
            if type(timestamp_ms) is not int:
                raise TypeError(f"timestamp_ms must be an int (ms since the epoch) or None, got "
                                f"{type(timestamp_ms).__name__}")
            if timestamp_ms < 0:
                raise ValueError(f"timestamp_ms must be >= 0, got {timestamp_ms}")
            ts = timestamp_ms
        if headers is not None:
            hblob = encode_headers(headers)
            if len(hblob) > 1:  # b"\x00" (no headers) needs no copy per record
                hp = <const unsigned char*>PyBytes_AS_STRING(hblob)
                hlen = len(hblob)
        vsrc.has_view = False
        ksrc.has_view = False
        try:
            open_source(&vsrc, values, False)
            open_source(&ksrc, keys, True)
            n = vsrc.n
            if ksrc.n >= 0 and ksrc.n != n:
                raise ValueError(f"keys has {ksrc.n} items but values has {n}; give one key per value, or None")
            if partitions is not None:
                if len(partitions) != n:
                    raise ValueError(f"partitions has {len(partitions)} items but values has {n}")
                parr = <int32_t*>PyMem_Malloc((n if n > 0 else 1) * sizeof(int32_t))
                if parr == NULL:
                    raise MemoryError()
                for i in range(n):
                    q = partitions[i]
                    if q is None:
                        parr[i] = -1
                    elif type(q) is not int or not 0 <= q < nparts:
                        raise ValueError(f"partition {q!r} chosen for record {i} is out of range for topic {topic!r}, "
                                         f"which has {nparts} partitions (0-{nparts - 1})")
                    else:
                        parr[i] = q
            fut = BatchFuture.create(topic, n, ts, nparts)
            self._check_batch(&vsrc, &ksrc, n, hlen if hp != NULL else 1, fut)
            return self._append_batch(st, fut, &vsrc, &ksrc, n, nparts, fixed, parr, ts, hp, hlen)
        finally:
            PyMem_Free(parr)
            close_source(&ksrc)
            close_source(&vsrc)

    cdef bint _open_builder(self, list open_batches, int p, PyObject** cur_builder, PyObject** cur_result) noexcept:
        """Whether partition p has a batch open for appends; caches its builder and result for the section."""
        cdef PyObject* ob
        if cur_builder[p] != NULL:
            return True
        ob = _list_get(open_batches, p)
        if ob == _none or (<ProducerBatch>ob).closed_for_append:
            return False
        cur_builder[p] = <PyObject*>(<ProducerBatch>ob).builder
        cur_result[p] = <PyObject*>(<ProducerBatch>ob).result
        return True

    cdef int _check_batch(self, Source* vsrc, Source* ksrc, Py_ssize_t n, Py_ssize_t hpart,
                          BatchFuture fut) except -1:
        # Every record is checked before the first is appended: types, sizes against max_request_size and
        # buffer_memory. Sizes go into the future (arrays only when they differ between records).
        cdef Py_ssize_t i, kl = -1, vl = -1, size
        cdef Py_ssize_t vmax = _scan_sizes(vsrc, n, fut, False)
        cdef Py_ssize_t kmax = _scan_sizes(ksrc, n, fut, True)
        cdef const unsigned char* kp
        cdef const unsigned char* vp
        if kmax + vmax + hpart + 128 <= self.size_fast_limit:
            return 0  # 128 bytes cover the batch header and a record's own overhead: even the largest fits
        for i in range(n):
            read_item(vsrc, i, &vp, &vl)
            read_item(ksrc, i, &kp, &kl)
            size = bulk_upper_bound(kl, vl, hpart)
            if size > self.max_request_size or size > self.pool._total:
                raise RecordTooLargeError(
                    f"record {i} is {size} bytes when serialized, larger than "
                    + (f"max_request_size ({self.max_request_size})" if size > self.max_request_size
                       else f"buffer_memory ({self.pool._total})"))
        return 0

    cdef BatchFuture _append_batch(self, TopicState st, BatchFuture fut, Source* vsrc, Source* ksrc,
                                   Py_ssize_t n, int nparts, int fixed, int32_t* parr, int64_t ts,
                                   const unsigned char* hp, Py_ssize_t hlen):
        cdef Py_ssize_t i = 0, kl = -1, vl = -1, size, k
        cdef const unsigned char* kp
        cdef const unsigned char* vp
        cdef int p, q, pending_p = -1, d
        cdef bint wake, handed_over
        cdef ProducerBatch batch
        cdef list open_batches = st.open_batches
        cdef Py_ssize_t hpart = hlen if hp != NULL else 1
        cdef PyObject* ob
        cdef PyObject* last = NULL
        cdef bint run_ok = fixed >= 0 or (ksrc.kind == SRC_NONE and parr == NULL)
        cdef PyObject** vitems
        cdef PyObject** kitems
        cdef Py_ssize_t budget, cnt
        cdef int32_t d0
        cdef int why
        # Per partition, the open batch's builder and result while inside one critical section: borrowed from
        # open_batches, which nothing can change before the section ends, so the loop takes no references.
        cdef PyObject** cur_builder = <PyObject**>PyMem_Malloc(nparts * sizeof(PyObject*))
        cdef PyObject** cur_result = <PyObject**>PyMem_Malloc(nparts * sizeof(PyObject*))
        if cur_builder == NULL or cur_result == NULL:
            PyMem_Free(cur_builder)
            PyMem_Free(cur_result)
            raise MemoryError()
        try:
            while i < n:
                wake = False
                d = -1
                with cython.critical_section(self):
                    if self.closed:
                        raise ProducerClosedError("the producer was closed during send_batch()")
                    for q in range(nparts):
                        cur_builder[q] = NULL
                    # Item arrays of list/tuple inputs, for this section (Python code may run between sections).
                    vitems = _items_of(vsrc, n)
                    kitems = _items_of(ksrc, n)
                    while i < n:
                        if run_ok and pending_p < 0:
                            # One partition for a stretch of records (fixed, or keyless and sticky): append them
                            # in one builder call. What it cannot take goes through the per-record code below.
                            p = fixed if fixed >= 0 else st.sticky_partition
                            if p >= 0 and self._open_builder(open_batches, p, cur_builder, cur_result):
                                budget = self.batch_size - st.sticky_bytes
                                d0 = (<MemoryRecordsBuilder>cur_builder[p])._count
                                cnt = (<MemoryRecordsBuilder>cur_builder[p]).append_run(
                                    ts, vsrc, ksrc, i, n, hp, hlen, NULL if fixed >= 0 else &budget, &why)
                                if cnt > 0:
                                    fut.add_record(p, <ProduceRequestResult>cur_result[p], d0)
                                    fut._count = i + cnt  # the rest extend that run: consecutive offsets
                                    i += cnt
                                    last = cur_builder[p]
                                if fixed < 0:
                                    if why == 2:
                                        st.sticky_bytes = 0
                                        st.sticky_partition = st.next_sticky(p)
                                    else:
                                        st.sticky_bytes = self.batch_size - budget
                                if why == 0 or why == 2:
                                    continue
                        _read_fast(vsrc, vitems, i, &vp, &vl)
                        _read_fast(ksrc, kitems, i, &kp, &kl)
                        if pending_p >= 0:
                            p = pending_p  # chosen before this record had to wait for a new batch
                        elif fixed >= 0:
                            p = fixed
                        elif parr != NULL and parr[i] >= 0:
                            p = parr[i]
                        elif kp != NULL:
                            p = partition_for(murmur2(kp, kl), nparts)
                        elif st.sticky_partition >= 0:
                            # _sticky, inline (a call per record costs as much as the rest of the choice).
                            p = st.sticky_partition
                            st.sticky_bytes += (vl if vl > 0 else 0) + (kl if kl > 0 else 0) + 8
                            if st.sticky_bytes >= self.batch_size:
                                st.sticky_bytes = 0
                                st.sticky_partition = st.next_sticky(p)
                        else:
                            p = self._sticky(st, kl, vl)
                        if not self._open_builder(open_batches, p, cur_builder, cur_result):
                            pending_p = p
                            break
                        d = (<MemoryRecordsBuilder>cur_builder[p]).append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                        if d < 0:
                            pending_p = p
                            break
                        # Most records extend the future's last run (same batch, next offset) or, keyed, start a
                        # run in a batch the future already knows: no call for those.
                        k = fut._nruns - 1
                        if fut._part_res[p] == cur_result[p]:
                            if (k >= 0 and fut._run_res[k] == fut._part_idx[p]
                                    and fut._run_rel[k] + (i - fut._run_start[k]) == d):
                                fut._count = i + 1
                            elif k + 1 < fut._runs_cap:
                                fut._run_start[k + 1] = i
                                fut._run_rel[k + 1] = d
                                fut._run_res[k + 1] = fut._part_idx[p]
                                fut._nruns = k + 2
                                fut._count = i + 1
                            else:
                                fut.add_record(p, <ProduceRequestResult>cur_result[p], d)
                        else:
                            fut.add_record(p, <ProduceRequestResult>cur_result[p], d)
                        pending_p = -1
                        last = cur_builder[p]
                        i += 1
                    # A batch filled up without the next record having to start another: the Sender should know.
                    if last != NULL and builder_full(<MemoryRecordsBuilder>last):
                        wake = True
                    last = NULL
                if wake:
                    self._wake()
                if i >= n:
                    break
                # Record i needs a new batch on partition pending_p. Memory comes from outside the critical
                # section, since the pool may block (with the GIL released) until the Sender frees batches.
                read_item(vsrc, i, &vp, &vl)
                read_item(ksrc, i, &kp, &kl)
                size = bulk_upper_bound(kl, vl, hpart)
                if size < self.batch_size:
                    size = self.batch_size
                buf = self.pool.allocate_raw(size, self.max_block_ms)
                handed_over = False
                try:
                    with cython.critical_section(self):
                        if self.closed:
                            raise ProducerClosedError("the producer was closed while send_batch() waited for memory")
                        # The wait may have let other threads run: read the record again.
                        read_item(vsrc, i, &vp, &vl)
                        read_item(ksrc, i, &kp, &kl)
                        p = pending_p
                        batch = open_batches[p]
                        d = -1
                        if batch is not None and not batch.closed_for_append:
                            d = batch.builder.append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                            if d < 0:
                                batch.closed_for_append = True
                        if d < 0:
                            batch = ProducerBatch(st.topic, p,
                                                  MemoryRecordsBuilder(buf, self.compression_type, self.batch_size),
                                                  buf, size, mono_s())
                            d = batch.builder.append_bulk(ts, kp, kl, vp, vl, hp, hlen)
                            if d < 0:
                                raise RuntimeError(f"record {i} does not fit a new batch of {size} bytes (was the "
                                                   f"values/keys sequence changed during send_batch()?)")
                            st.queues[p].append(batch)
                            open_batches[p] = batch
                            self.incomplete.add(batch)
                            handed_over = True
                        # else: another thread made a batch meanwhile; our buffer goes back below
                        fut.add_record(p, batch.result, d)
                        pending_p = -1
                        i += 1
                finally:
                    if not handed_over:
                        self.pool.deallocate_raw(buf, size)
                self._wake()
        except BaseException as exc:
            # Out of memory for max_block_ms, closed, interrupted, or an input changed by another thread meanwhile:
            # records 0..i-1 are in batches and will be sent, and the error says so.
            fut.arm()
            try:
                exc.records_appended = i
                exc.future = fut
            except AttributeError:  # an exception type without a __dict__
                pass
            raise
        finally:
            PyMem_Free(cur_builder)
            PyMem_Free(cur_result)
        fut.arm()
        return fut

    cdef int _check_size(self, Py_ssize_t klen, Py_ssize_t vlen, object headers) except -1:
        # As Java's ensureValidRecordSize: a record that cannot fit a request or the whole buffer fails at once.
        cdef Py_ssize_t size
        if headers is None and (klen if klen > 0 else 0) + (vlen if vlen > 0 else 0) + 128 <= self.size_fast_limit:
            return 0  # 128 bytes cover the batch header and a record's own overhead without headers
        size = estimate_size_upper_bound_raw(klen, vlen, headers)
        if size > self.max_request_size:
            raise RecordTooLargeError(
                f"the record is {size} bytes when serialized, larger than max_request_size ({self.max_request_size})")
        if size > self.pool._total:
            raise RecordTooLargeError(
                f"the record is {size} bytes when serialized, larger than buffer_memory ({self.pool._total})")
        return 0

    cdef int _sticky(self, TopicState st, Py_ssize_t klen, Py_ssize_t vlen):
        cdef int p = st.sticky_partition
        if p < 0:
            p = st.next_sticky(-1)
            st.sticky_partition = p
        # Switch after about batch_size bytes went to the partition, so batches fill evenly (KIP-794).
        st.sticky_bytes += (vlen if vlen > 0 else 0) + (klen if klen > 0 else 0) + 8
        if st.sticky_bytes >= self.batch_size:
            st.sticky_bytes = 0
            st.sticky_partition = st.next_sticky(p)
        return p

    cdef FutureRecordMetadata _append(self, TopicState st, int partition, int64_t ts,
                                      const unsigned char* kptr, Py_ssize_t klen,
                                      const unsigned char* vptr, Py_ssize_t vlen,
                                      object headers, object callback):
        cdef ProducerBatch last
        cdef FutureRecordMetadata fut
        cdef Py_ssize_t size
        # The seed's append: try the partition's open batch; if it has no room, get memory and start a batch.
        with cython.critical_section(self):
            last = st.open_batches[partition]
            if last is not None:
                fut = last.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                if fut is not None:
                    if builder_full(last.builder):
                        self._wake()
                    return fut
        # Memory for a new batch comes from outside the critical section, since the pool may block.
        size = estimate_size_upper_bound_raw(klen, vlen, headers)
        if size < self.batch_size:
            size = self.batch_size
        try:
            buf = self.pool.allocate_raw(size, self.max_block_ms)
        except ProducerClosedError:
            # close() woke us (see close()); say so, and name the fatal error if that is what stopped the producer.
            raise self._closed_error("the producer was closed while send() waited for memory") from None
        cdef bint handed_over = False
        try:
            with cython.critical_section(self):
                if self.closed:
                    raise self._closed_error("the producer was closed while send() waited for memory")
                last = st.open_batches[partition]
                if last is not None:
                    fut = last.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                    if fut is not None:
                        return fut  # another thread made a batch meanwhile; our buffer goes back below
                    last.closed_for_append = True
                batch = ProducerBatch(st.topic, partition,
                                      MemoryRecordsBuilder(buf, self.compression_type, self.batch_size),
                                      buf, size, mono_s())
                fut = batch.try_append(ts, kptr, klen, vptr, vlen, headers, callback)
                if fut is None:
                    raise RecordTooLargeError(
                        f"record of {klen} key bytes and {vlen} value bytes does not fit a batch of {size} bytes")
                st.queues[partition].append(batch)
                st.open_batches[partition] = batch
                self.incomplete.add(batch)
                handed_over = True
        finally:
            if not handed_over:
                self.pool.deallocate_raw(buf, size)
        self._wake()
        return fut

    cdef inline void _wake(self):
        if self.wakeup is not None:
            self.wakeup()

    # ---- Sender: ready / drain / expire ---------------------------------------------------------------------------
    def ready(self, double now):
        """(ready node ids, seconds until the next check, topics whose leader is unknown): the seed's ready()."""
        cdef set ready_nodes = set()
        cdef set unknown = set()
        cdef double next_delay = 3600.0
        cdef bint exhausted = self.pool.queued > 0
        cdef TopicState st
        cdef ProducerBatch batch
        cdef int p, leader
        cdef double waited, time_to_wait, left
        cdef bint backing_off, full, sendable
        with cython.critical_section(self):
            for st in self.topics.values():
                for p in range(st.num_partitions):
                    dq = st.queues[p]
                    if not dq:
                        continue
                    batch = dq[0]
                    leader = st.leaders[p]
                    if leader < 0:
                        unknown.add(st.topic)
                        continue
                    if leader in ready_nodes or (st.topic, p) in self.muted:
                        continue
                    waited = now - batch.last_attempt
                    backing_off = batch.attempts > 0 and waited < self._backoff(batch)
                    time_to_wait = self._backoff(batch) if backing_off else self.linger
                    full = len(dq) > 1 or batch.closed_for_append or builder_full(batch.builder)
                    sendable = (full or waited >= time_to_wait or exhausted or self.closed
                                or self.flushes_in_progress > 0)
                    if sendable and not backing_off:
                        ready_nodes.add(leader)
                    else:
                        left = time_to_wait - waited
                        if left < next_delay:
                            next_delay = left if left > 0 else 0
        return ready_nodes, next_delay, unknown

    cdef inline double _backoff(self, ProducerBatch batch):
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
        cdef list parts = self.node_partitions.get(node)
        cdef list out = []
        cdef Py_ssize_t size = 0, n, i, start
        cdef TopicState st
        cdef ProducerBatch batch
        cdef int p, est
        if not parts:
            return out
        n = len(parts)
        start = self.drain_index.get(node, 0) % n
        # Rotate the starting partition so a busy partition cannot starve the others of request space.
        self.drain_index[node] = (start + 1) % n
        for i in range(n):
            st, p = parts[(start + i) % n]
            if (st.topic, p) in self.muted:
                continue
            dq = st.queues[p]
            if not dq:
                continue
            if self.idempotent and <int>st.in_flight[p] > 0 and st.in_flight_node[p] != node:
                # The leader moved while batches of this partition are still in flight to the old one. Sending
                # more to the new leader now could land them before those batches, which are about to fail
                # and be retried; wait for their answers so the partition stays in sequence order. (A broker
                # that checks sequences would refuse the later batch, but not every broker does -- librdkafka's
                # mock does not for non-transactional producers -- and librdkafka's producer waits the same way.)
                continue
            batch = dq[0]
            if batch.attempts > 0 and now - batch.last_attempt < self._backoff(batch):
                continue
            est = builder_size(batch.builder)
            if out and size + est > max_size:
                break
            if self.idempotent and not self._number(st, p, batch):
                continue
            dq.popleft()
            batch.closed_for_append = True
            batch.drained = now
            batch.sent_to = node
            st.in_flight[p] = <int>st.in_flight[p] + 1
            st.in_flight_node[p] = node
            size += est
            out.append(batch)
        return out

    cdef void _release_in_flight(self, ProducerBatch batch):
        # Call inside the critical section: the batch's request was answered (or failed), so it no longer pins
        # its partition to the broker it went to.
        cdef TopicState st
        if batch.sent_to < 0:
            return
        batch.sent_to = -1
        st = self.topics.get(batch.topic)
        if st is not None and batch.partition < st.num_partitions:
            st.in_flight[batch.partition] = <int>st.in_flight[batch.partition] - 1

    def expired_batches(self, double now):
        """Removes and returns queued batches older than delivery_timeout_ms (the caller fails them)."""
        cdef list out = []
        cdef TopicState st
        cdef ProducerBatch batch
        cdef int p
        with cython.critical_section(self):
            for st in self.topics.values():
                for p in range(st.num_partitions):
                    dq = st.queues[p]
                    while dq:
                        batch = dq[0]
                        if now - batch.created < self.delivery_timeout:
                            break
                        dq.popleft()
                        batch.closed_for_append = True
                        out.append(batch)
        return out

    def reenqueue(self, ProducerBatch batch, double now):
        """Puts a batch that will be retried back at the head of its queue (it keeps its sequence)."""
        cdef TopicState st
        cdef Py_ssize_t i
        with cython.critical_section(self):
            self._release_in_flight(batch)
            batch.attempts += 1
            batch.last_attempt = now
            batch.retry = True
            st = self.topics[batch.topic]
            _insert_for_retry(st.queues[batch.partition], batch)

    def split_and_reenqueue(self, ProducerBatch batch, list records, double now):
        """Replaces a batch the broker found too large by two halves at the head of its queue.

        records: the batch's (timestamp, key, value, headers), read back from its bytes. The halves live in
        memory outside the pool, as the Java client's split batches do, so splitting never blocks the Sender;
        the original's futures follow their records into the halves.
        """
        cdef Py_ssize_t n = len(records), half = (len(records) + 1) // 2
        cdef TopicState st
        cdef list children = [], made = []
        cdef ProducerBatch child
        for start, group in ((0, records[:half]), (half, records[half:])):
            if not group:
                continue
            size = BATCH_HEADER_SIZE
            for ts, key, value, headers in group:
                size += estimate_size_upper_bound_raw(-1 if key is None else len(key), -1 if value is None else len(value),
                                                      headers or None)
            buf = bytearray(size)
            child = ProducerBatch(batch.topic, batch.partition,
                                  MemoryRecordsBuilder(buf, self.compression_type, size), buf, 0, batch.created)
            for ts, key, value, headers in group:
                if child.builder.append(ts, key, value, headers or None) < 0:
                    raise RuntimeError("a split batch could not take back its own records")
            if batch.base_sequence >= 0:
                # The halves take over the original's sequence range exactly, so no gap opens for the broker.
                child.set_producer_state(batch.producer_id, batch.producer_epoch, batch.base_sequence + start)
            child.closed_for_append = True
            child.attempts = batch.attempts
            child.last_attempt = now
            children.append((start, child.result))
            made.append(child)
        with cython.critical_section(self):
            st = self.topics[batch.topic]
            dq = st.queues[batch.partition]
            for child in reversed(made):
                # In sequence order, not simply at the head: another batch of the partition may have been split
                # (or re-queued) before this one, and the halves of this later batch must not overtake it.
                _insert_for_retry(dq, child)
                self.incomplete.add(child)
        batch.final_state = 2
        batch.result.split(children)
        self.deallocate(batch)
        return made

    def deallocate(self, ProducerBatch batch):
        """The batch is finished: return its memory and forget it."""
        with cython.critical_section(self):
            self._release_in_flight(batch)
            self.incomplete.discard(batch)
        if batch.buffer is not None and batch.buffer_size > 0:
            buf = batch.buffer
            batch.buffer = None
            self.pool.deallocate_raw(buf, batch.buffer_size)

    def mute(self, tp):
        self.muted.add(tp)

    def unmute(self, tp):
        self.muted.discard(tp)

    def has_undrained(self):
        cdef TopicState st
        with cython.critical_section(self):
            for st in self.topics.values():
                for dq in st.queues:
                    if dq:
                        return True
        return False

    # ---- flush / close ------------------------------------------------------------------------------------------------
    def begin_flush(self):
        with cython.critical_section(self):
            self.flushes_in_progress += 1
        self._wake()

    def end_flush(self):
        with cython.critical_section(self):
            self.flushes_in_progress -= 1

    def incomplete_batches(self):
        with cython.critical_section(self):
            return list(self.incomplete)

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
            if result._children is not None:
                # Split (MESSAGE_TOO_LARGE): the result is released, but its records now travel in the halves,
                # which were not incomplete yet when the flush began.
                pending.extend([child for _, child in result._children])
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
        self._wake()

    cdef object _closed_error(self, str what):
        if self.fatal_error is None:
            return ProducerClosedError(what)
        err = ProducerClosedError(f"the producer stopped after a fatal error: {self.fatal_error}")
        err.__cause__ = self.fatal_error
        return err

    def abort_undrained(self, error):
        """Fails every queued (not in-flight) batch with error; returns them (the caller deallocates)."""
        cdef list out = []
        cdef TopicState st
        with cython.critical_section(self):
            for st in self.topics.values():
                for dq in st.queues:
                    while dq:
                        batch = dq.popleft()
                        (<ProducerBatch>batch).closed_for_append = True
                        out.append(batch)
        for batch in out:
            (<ProducerBatch>batch).done(-1, -1, error)
        return out

    # ---- what the Sender asks -----------------------------------------------------------------------------------------
    def has_incomplete(self):
        """Whether any batch was created and not yet deallocated: queued, in flight, or waiting for a retry."""
        with cython.critical_section(self):
            return bool(self.incomplete)

    def has_earlier_pending(self, ProducerBatch batch):
        """Whether a batch of the same partition, numbered under the same producer id and epoch with a lower base
        sequence, is not done yet (in flight, or queued for a retry). The Java client asks the converse,
        TransactionManager.isNextSequence: whether the batch directly follows the last acknowledged sequence.

        Rare path (OUT_OF_ORDER_SEQUENCE_NUMBER only), so a scan of the incomplete batches is fine.
        """
        cdef ProducerBatch b
        with cython.critical_section(self):
            for b in self.incomplete:
                if (b is not batch and b.partition == batch.partition and b.topic == batch.topic
                        and 0 <= b.base_sequence < batch.base_sequence and b.final_state == 0
                        and b.producer_id == batch.producer_id and b.producer_epoch == batch.producer_epoch):
                    return True
        return False
