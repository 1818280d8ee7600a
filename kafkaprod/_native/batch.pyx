# cython: language_level=3
"""ProducerBatch (Java's ProducerBatch): one partition's records in a MemoryRecordsBuilder, the shared result their
futures point at, and the batch's delivery state (attempts, retries, producer id and sequence)."""
cimport cython
from libc.stdint cimport int16_t, int64_t

from kafkaprod._native.future cimport FutureRecordMetadata, ProduceRequestResult
from kafkaprod._native.records cimport MemoryRecordsBuilder

import logging

log = logging.getLogger("kafkaprod")


@cython.final
cdef class ProducerBatch:
    """The records of one partition that travel together (Java's ProducerBatch), their outcome, and where they
    are in the Sender's hands: attempts, retry backoff, the broker they were sent to, their sequence numbers."""

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
        self.attempts = 0
        self.retry = False
        self.final_state = BATCH_PENDING
        self.producer_id = -1
        self.producer_epoch = -1
        self.base_sequence = -1
        self.records = None
        self.closed_for_append = False
        self.sent_to = -1

    @property
    def record_count(self):
        return batch_record_count(self)

    @property
    def estimated_size(self):
        return batch_size_in_bytes(self)

    @property
    def is_done(self):
        return self.final_state != BATCH_PENDING

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
        if callback is not None or self.result.ack is not None:
            fut.listen(callback)
        return fut

    def close(self):
        """Seals the batch for the wire (compression, header, CRC); idempotent. Returns the batch bytes."""
        self.closed_for_append = True
        if self.records is None:
            self.records = self.builder.close()
        return self.records

    def set_producer_state(self, int64_t producer_id, int producer_epoch, int base_sequence,
                           bint transactional):
        # transactional has no default: every caller says whether the batch belongs to a transaction.
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
        if self.final_state != BATCH_PENDING:
            if error is None and self.final_state == BATCH_FAILED:
                log.debug("batch %s[%d] succeeded after it had already failed", self.topic, self.partition)
            return False
        self.final_state = BATCH_SUCCEEDED if error is None else BATCH_FAILED
        self.result.complete(base_offset, log_append_time, error)
        return True

    def __repr__(self):
        return (f"<ProducerBatch {self.topic}[{self.partition}] records={batch_record_count(self)} "
                f"attempts={self.attempts} seq={self.base_sequence}>")
