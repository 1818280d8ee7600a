"""Splitting a batch that a broker refused as MESSAGE_TOO_LARGE (Java's ProducerBatch.split and
RecordAccumulator.splitAndReenqueue). A rare path, so plain Python: the records are read back from the sealed batch
and written into two halves that take the original's place, sequence numbers and futures."""
from __future__ import annotations

from kafkaprod._native.accumulator import RecordAccumulator
from kafkaprod._native.batch import ProducerBatch
from kafkaprod._native.records import RECORD_BATCH_HEADER_SIZE, MemoryRecordsBuilder, estimate_size_upper_bound
from kafkaprod.record_reader import Record, read_batch


def split_batch(accumulator: RecordAccumulator, batch: ProducerBatch, now: float) -> list[ProducerBatch]:
    """Puts two half-size batches in the batch's place in its queue; returns them."""
    if batch.records is None:
        raise ValueError(f"{batch!r} was never sealed (sent); only a sent batch can be split")
    records = read_batch(batch.records)
    middle = (len(records) + 1) // 2
    halves = [(start, _half(accumulator, batch, start, group, now))
              for start, group in ((0, records[:middle]), (middle, records[middle:])) if group]
    accumulator.reenqueue_split(batch, halves)
    return [half for _, half in halves]


def _half(accumulator: RecordAccumulator, batch: ProducerBatch, start: int, records: list[Record],
          now: float) -> ProducerBatch:
    # Memory outside the pool, as the Java client's split batches: splitting never blocks the Sender.
    size = RECORD_BATCH_HEADER_SIZE + sum(estimate_size_upper_bound(r.key, r.value, r.headers or None)
                                          for r in records)
    buf = bytearray(size)
    half = ProducerBatch(batch.topic, batch.partition, MemoryRecordsBuilder(buf, accumulator.compression_type, size),
                         buf, 0, batch.created)
    for r in records:
        if half.builder.append(r.timestamp, r.key, r.value, r.headers or None) < 0:
            raise RuntimeError("a split batch could not take back its own records")
    if batch.base_sequence >= 0:
        # The halves take over the original's sequence range exactly, so no gap opens for the broker, and, in a
        # transaction, stay part of it.
        half.set_producer_state(batch.producer_id, batch.producer_epoch, batch.base_sequence + start,
                                accumulator.transactional)
    half.closed_for_append = True
    half.attempts = batch.attempts
    half.last_attempt = now
    return half
