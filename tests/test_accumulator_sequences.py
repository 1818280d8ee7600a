"""Idempotent sequence numbering in the accumulator's drain, without a broker: what each batch carries on the wire
when the Sender restarts a partition's numbering under a new producer id (the recovery from lost producer state or
a sequence gap), and when a partition may have more than one batch in flight (RecordAccumulator._held). The batch
bytes are read with kafka-python's record-batch reader, which also checks the CRC of every rewritten header.
"""
from __future__ import annotations

import time

from kafka.record.default_records import DefaultRecordBatch

from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.buffer_pool import BufferPool

NODE = 0


def _accumulator(partitions: int = 2, linger_ms: int = 0) -> RecordAccumulator:
    pool = BufferPool(1 << 22, 4096)
    # idempotent; every partition led by NODE.
    acc = RecordAccumulator(pool, 4096, 0, linger_ms, 0, 120_000, 1000, True, None, 1 << 20)
    acc.update_topic("t", [NODE] * partitions)
    return acc


def _batch(acc: RecordAccumulator, partition: int, records: int) -> None:
    for i in range(records):
        acc.append("t", partition, None, b"p%d-%d" % (partition, i), None, None, None)


def _drain(acc: RecordAccumulator) -> dict[int, object]:
    """One drain: the batch it takes per partition (the head of each queue), by partition."""
    return {b.partition: b for b in acc.drain([NODE], 1 << 30, monotonic()).get(NODE, [])}


def _on_wire(batch) -> tuple[int, int, int]:
    read = DefaultRecordBatch(bytes(batch.close()))
    assert read.validate_crc()
    return read.producer_id, read.producer_epoch, read.base_sequence


def _answered(acc: RecordAccumulator, batch) -> None:
    batch.done(0, -1, None)
    acc.deallocate(batch, succeeded=True)


def test_sequences_count_records_per_partition_under_the_producer_id() -> None:
    acc = _accumulator()
    _batch(acc, 0, 3)
    assert _drain(acc) == {}  # no producer id yet: nothing leaves
    acc.set_producer_id(7, 0)
    first = _drain(acc)[0]
    _batch(acc, 0, 2)
    assert _drain(acc) == {}  # the partition's first batch after idle goes alone
    wire = [_on_wire(first)]
    _answered(acc, first)  # written, with a batch behind it: the partition pipelines from here on
    second = _drain(acc)[0]
    _batch(acc, 0, 1)
    third = _drain(acc)[0]
    assert wire + [_on_wire(second), _on_wire(third)] == [(7, 0, 0), (7, 0, 3), (7, 0, 5)]


def test_restarted_partition_renumbers_its_retries_from_zero_once_nothing_of_it_is_in_flight() -> None:
    acc = _accumulator()
    acc.set_producer_id(7, 0)
    _batch(acc, 0, 1)
    lead = _drain(acc)[0]  # the partition's first batch goes alone ...
    _batch(acc, 0, 3)
    _answered(acc, lead)  # ... and once it is written with a batch behind it, the partition pipelines
    a = _drain(acc)[0]
    _batch(acc, 0, 2)
    b = _drain(acc)[0]  # a and b in flight, sequences 1 and 4
    acc.restart_sequences([("t", 0)], True)  # a came back UNKNOWN_PRODUCER_ID
    assert acc.producer_id == -1
    acc.reenqueue(a, monotonic())
    assert _drain(acc) == {}  # no producer id
    acc.set_producer_id(8, 0)
    assert _drain(acc) == {}  # b, numbered under the old id, is still in flight
    acc.reenqueue(b, monotonic())
    assert _drain(acc)[0] is a
    assert _drain(acc) == {}  # retries go one at a time
    wire = [_on_wire(a)]
    _answered(acc, a)
    assert _drain(acc)[0] is b
    wire.append(_on_wire(b))
    _answered(acc, b)
    _batch(acc, 0, 4)
    c = _drain(acc)[0]
    assert wire + [_on_wire(c)] == [(8, 0, 0), (8, 0, 3), (8, 0, 5)]


def test_other_partitions_retry_under_their_old_numbering_and_start_new_batches_at_zero() -> None:
    acc = _accumulator()
    acc.set_producer_id(7, 0)
    _batch(acc, 0, 1)
    _batch(acc, 1, 2)
    drained = _drain(acc)
    p0, d = drained[0], drained[1]
    _batch(acc, 1, 1)
    acc.restart_sequences([("t", 0)], True)  # partition 0 lost its state; partition 1 did not
    acc.set_producer_id(8, 0)
    acc.reenqueue(d, monotonic())  # a plain retry (say NOT_LEADER_OR_FOLLOWER)
    assert _drain(acc)[1] is d
    assert _on_wire(d) == (7, 0, 0)  # the broker knows partition 1 under id 7: the retry keeps its number
    assert 1 not in _drain(acc)  # the new batch must not overtake d, still in flight under id 7
    _answered(acc, d)
    e = _drain(acc)[1]
    assert _on_wire(e) == (8, 0, 0)
    _answered(acc, p0)


def test_restart_without_a_new_producer_id_renumbers_only_that_partition() -> None:
    # A batch numbered under an id that was already replaced failed: its partition restarts under the current
    # id, no further new id is needed.
    acc = _accumulator()
    acc.set_producer_id(7, 0)
    _batch(acc, 0, 2)
    _batch(acc, 1, 2)
    drained = _drain(acc)
    acc.set_producer_id(8, 0)
    acc.restart_sequences([("t", 1)], False)
    assert acc.producer_id == 8
    acc.reenqueue(drained[0], monotonic())
    acc.reenqueue(drained[1], monotonic())
    again = _drain(acc)
    assert (_on_wire(again[0]), _on_wire(again[1])) == ((7, 0, 0), (8, 0, 0))


def test_after_an_error_a_partition_keeps_one_batch_in_flight_for_retry_backoff_max() -> None:
    acc = _accumulator()
    acc.set_retry_backoff_max(60_000)
    acc.set_producer_id(7, 0)
    _batch(acc, 0, 1)
    lead = _drain(acc)[0]
    _batch(acc, 0, 1)
    _answered(acc, lead)  # no error yet: written with a batch behind it, the partition pipelines
    a = _drain(acc)[0]
    _batch(acc, 0, 1)
    b = _drain(acc)[0]
    acc.reenqueue(a, monotonic() - 1)  # came back with a retriable error (its backoff already over)
    _batch(acc, 0, 1)
    assert _drain(acc) == {}  # b is still out: nothing, neither the retry nor the new batch
    _answered(acc, b)
    assert _drain(acc)[0] is a  # then the retry, alone
    assert _drain(acc) == {}
    _answered(acc, a)
    c = _drain(acc)[0]  # retries through, but the error is recent: new batches go one at a time too
    _batch(acc, 0, 1)
    assert _drain(acc) == {}
    _answered(acc, c)
    assert 0 in _drain(acc)


def test_a_partition_empty_for_longer_than_linger_sends_its_next_batch_alone() -> None:
    # The sticky partitioner leaves a partition empty between two of its batches all the time: a gap shorter than
    # linger keeps it pipelining; after a longer pause its first batch goes alone.
    for linger_ms, alone in ((0, True), (60_000, False)):
        acc = _accumulator(linger_ms=linger_ms)
        acc.set_producer_id(7, 0)
        _batch(acc, 0, 1)
        lead = _drain(acc)[0]
        _batch(acc, 0, 1)
        _answered(acc, lead)  # written with a batch behind it: the partition pipelines
        _answered(acc, _drain(acc)[0])  # nothing queued or in flight now
        time.sleep(0.002)
        _batch(acc, 0, 1)
        assert 0 in _drain(acc)
        _batch(acc, 0, 1)
        assert (_drain(acc) == {}) is alone, linger_ms


def test_the_halves_of_a_split_transactional_batch_stay_transactional_with_its_sequences() -> None:
    from kafkaprod.splitter import split_batch

    pool = BufferPool(1 << 22, 4096)
    acc = RecordAccumulator(pool, 4096, 0, 0, 0, 120_000, 1000, True, None, 1 << 20, True)  # transactional
    acc.update_topic("t", [NODE])
    acc.set_producer_id(7, 3)
    acc.open_transaction()
    _batch(acc, 0, 6)
    acc.ready(monotonic())  # finds the partition outside the transaction
    acc.add_txn_partitions(acc.take_new_txn_partitions())
    batch = _drain(acc)[0]
    original = DefaultRecordBatch(bytes(batch.close()))
    assert original.is_transactional and (original.producer_id, original.base_sequence) == (7, 0)
    halves = [DefaultRecordBatch(bytes(half.close())) for half in split_batch(acc, batch, monotonic())]
    assert all(h.validate_crc() for h in halves)
    assert [(h.is_transactional, h.producer_id, h.producer_epoch, h.base_sequence) for h in halves] == \
        [(True, 7, 3, 0), (True, 7, 3, 3)]
