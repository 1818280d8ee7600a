# cython: language_level=3
"""The accumulator's state per partition and per topic (the fields of Java's RecordAccumulator and
ProducerBatch deques, TopicInfo and the built-in partitioner's sticky state): each partition's queue of batches,
open batch, leader, batches in flight and sequence numbering, and each topic's uniform sticky partition (KIP-794).

The RecordAccumulator (accumulator.pyx) and the send_batch() engine (bulk.pyx) read and change these fields
directly, at C level, under the accumulator's critical section; this module only creates them and keeps the
few rules that belong to one partition or one topic.
"""
cimport cython

from kafkaprod._native.batch cimport ProducerBatch

import collections
import random

cdef object _deque = collections.deque
cdef object _random = random.Random()


@cython.final
cdef class PartitionState:
    """One partition: its queue of batches, open batch, leader, batches in flight and sequence numbering."""

    def __cinit__(self, str topic, int partition):
        self.topic = topic
        self.partition = partition
        self.queue = _deque()
        self.open_batch = None
        self.leader = -1
        self.in_flight = []
        self.serial = True  # its very first batch goes alone (RecordAccumulator._held)
        self.last_error = -1e18
        self.idle_since = -1
        self.next_sequence = 0
        self.seq_owner = None
        self.restart = False
        self.txn_state = TXN_NONE
        self.active = False
        self.alloc_hint = 0  # the accumulator's first-batch size until its first batch is drained

    cdef void insert_for_retry(self, ProducerBatch batch):
        # A batch going back into the queue (retry or split half): at the head, except that with sequences it goes
        # after the queued batches of lower sequence, so the queue stays in sequence order whatever order the
        # answers that sent them back arrived in.
        cdef Py_ssize_t i = 0
        cdef ProducerBatch other
        if batch.base_sequence < 0:
            self.queue.appendleft(batch)
            return
        for other in self.queue:
            if other.base_sequence < 0 or other.base_sequence > batch.base_sequence:
                break
            i += 1
        self.queue.insert(i, batch)

    cdef void release(self, ProducerBatch batch):
        # The batch's request was answered (or failed): it no longer holds back its partition.
        if batch.sent_to >= 0:
            batch.sent_to = -1
            self.in_flight.remove(batch)


@cython.final
cdef class TopicState:
    """A topic's partitions as the accumulator sees them, and its uniform sticky partition."""

    def __cinit__(self, str topic):
        self.topic = topic
        self.num_partitions = 0
        self.partitions = []
        self.available = []
        self.sticky_partition = -1
        self.sticky_bytes = 0

    cdef void resize(self, int n):
        while len(self.partitions) < n:
            self.partitions.append(PartitionState(self.topic, len(self.partitions)))
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

    cdef int sticky_for(self, Py_ssize_t klen, Py_ssize_t vlen, int batch_size):
        cdef int p = self.sticky_partition
        if p < 0:
            p = self.next_sticky(-1)
            self.sticky_partition = p
        # Switch after about batch_size bytes went to the partition, so batches fill evenly (KIP-794).
        self.sticky_bytes += (vlen if vlen > 0 else 0) + (klen if klen > 0 else 0) + 8
        if self.sticky_bytes >= batch_size:
            self.sticky_bytes = 0
            self.sticky_partition = self.next_sticky(p)
        return p
