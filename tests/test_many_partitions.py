"""Producing to thousands of partitions: the Sender's loop visits only partitions with something queued, a batch
holds buffer memory for what it carries (starting small and moving to a larger buffer as it fills, up to
batch_size), and keyed records still land where the Java client's murmur2 puts them.

The accumulator tests drive RecordAccumulator directly (no broker); the batch bytes are read with kafka-python's
record-batch reader. The producer tests run against noida-db, which takes 10,000 partitions in its stride (Tansu's
memory storage spends time per written batch that grows with the partitions holding data, bench/matrix.py).
"""
from __future__ import annotations

import time

from kafka.record.default_records import DefaultRecordBatch

from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.buffer_pool import BufferPool
from producer_support import WAIT_S, make_producer, murmur2_partition

NODE = 0
BATCH = 16384


MEMORY = 32 << 20


def _accumulator(partitions: int, total_memory: int = MEMORY,
                 batch_size: int = BATCH) -> tuple[RecordAccumulator, BufferPool]:
    pool = BufferPool(total_memory, batch_size)
    # not idempotent: these tests are about memory and the loop's bookkeeping, not sequences
    acc = RecordAccumulator(pool, batch_size, 0, 0, 100, 120_000, 1000, False, None, 1 << 20)
    acc.update_topic("t", [NODE] * partitions)
    return acc, pool


def _drain_all(acc: RecordAccumulator) -> list:
    out = []
    while True:
        got = acc.drain([NODE], 1 << 30, monotonic()).get(NODE, [])
        if not got:
            return out
        out.extend(got)


def _complete(acc: RecordAccumulator, batches: list) -> None:
    for b in batches:
        b.done(0, -1, None)
        acc.deallocate(b, succeeded=True)


def _records(batch) -> list[bytes]:
    read = DefaultRecordBatch(bytes(batch.close()))
    assert read.validate_crc()
    return [r.value for r in read]


def test_a_partition_written_once_and_left_idle_is_not_visited_by_later_sender_loops() -> None:
    acc, _ = _accumulator(10_000)
    for p in range(10_000):
        acc.append("t", p, None, b"once", None, None, None)
    acc.ready(monotonic())
    assert acc.partitions_visited_by_last_ready == 10_000
    _complete(acc, _drain_all(acc))
    acc.ready(monotonic())  # the loop that finds their queues empty lets them go
    assert acc.active_partitions == []

    for p in range(10):
        acc.append("t", p * 997, None, b"again", None, None, None)
    for _ in range(3):
        ready, _, _ = acc.ready(monotonic())
        assert ready == {NODE}
        assert acc.partitions_visited_by_last_ready == 10
    assert sorted(acc.active_partitions) == [("t", p * 997) for p in range(10)]
    drained = _drain_all(acc)
    assert sorted(b.partition for b in drained) == [p * 997 for p in range(10)]


def test_each_drain_starts_where_the_last_one_ran_out_of_request_space() -> None:
    acc, _ = _accumulator(3_000)

    def fill() -> None:
        for p in range(3_000):
            acc.append("t", p, None, b"r" * 900, None, None, None)

    fill()
    request = 1_000 * 1_000  # about 1,000 of these ~1 KB batches
    first = acc.drain([NODE], request, monotonic())[NODE]
    fill()  # every partition has a batch again, those just drained included
    second = acc.drain([NODE], request, monotonic())[NODE]
    taken_first = {b.partition for b in first}
    taken_second = {b.partition for b in second}
    # (the partitions the first drain left have ~2 KB batches by now, so fewer fit the second request)
    assert len(taken_first) > 900 and len(taken_second) > 400
    # Java's drainIndex: the second request goes on with the partitions the first had no room for.
    assert taken_first.isdisjoint(taken_second)


def test_open_batches_of_many_partitions_take_memory_for_what_they_hold_not_batch_size_each() -> None:
    acc, pool = _accumulator(2_000)
    for p in range(2_000):
        acc.append("t", p, None, b"x" * 100, None, None, None)
    # 2,000 x 16 KiB would be all of buffer_memory; each first batch takes 1 KiB
    assert MEMORY - pool.available_memory == 2_000 * 1024
    _complete(acc, _drain_all(acc))
    assert pool.available_memory == MEMORY


def test_a_batch_that_starts_small_moves_to_larger_buffers_up_to_batch_size_keeping_every_record() -> None:
    acc, pool = _accumulator(1)
    values = [b"v%05d-" % i + b"y" * 90 for i in range(400)]
    for v in values:
        acc.append("t", 0, None, v, None, None, None)
    batches = _drain_all(acc)
    # 400 records of ~100 bytes: the first batch grew from 1 KiB to batch_size and the rest went on in more
    assert len(batches) >= 3
    assert batches[0].estimated_size <= BATCH
    assert batches[0].estimated_size > BATCH - 200  # it filled to batch_size, not to its first buffer
    assert [v for b in batches for v in _records(b)] == values
    _complete(acc, batches)
    assert pool.available_memory == MEMORY


def test_the_next_batch_of_a_partition_starts_at_about_the_size_its_last_batch_reached() -> None:
    acc, pool = _accumulator(1)
    for _ in range(30):  # ~3.3 KB
        acc.append("t", 0, None, b"z" * 100, None, None, None)
    _complete(acc, _drain_all(acc))
    acc.append("t", 0, None, b"z" * 100, None, None, None)
    assert MEMORY - pool.available_memory == 4096  # the power of two above what the last batch held


def test_a_batch_that_cannot_grow_for_want_of_memory_is_closed_and_the_next_record_starts_a_batch() -> None:
    # 3 KiB in all, partition 1's batch holding 1 KiB: partition 0's first batch (1 KiB) cannot move to 2 KiB,
    # since a move needs the new buffer before the old one goes back and only 1 KiB is free; the record that did
    # not fit starts the partition's next batch, in that last free KiB, as Java's append does when a batch is full.
    acc, _ = _accumulator(2, total_memory=3072, batch_size=2048)
    acc.append("t", 1, None, b"other", None, None, None)
    values = [b"w%03d" % i + b"q" * 60 for i in range(20)]  # ~1.4 KB: more than a 1 KiB batch holds
    for v in values:
        acc.append("t", 0, None, v, None, None, None)
    batches = [b for b in _drain_all(acc) if b.partition == 0]
    assert len(batches) == 2
    assert all(b.estimated_size <= 1024 for b in batches)
    assert [v for b in batches for v in _records(b)] == values


def test_keyed_records_over_10000_partitions_land_on_their_murmur2_partition(noida, noida_topic) -> None:
    partitions = 10_000
    topic = noida_topic(partitions=partitions)
    keys = [b"user-%d" % i for i in range(30_000)]
    with make_producer(noida.bootstrap_servers) as producer:
        futures = [producer.send(topic, b"v", key) for key in keys]
        producer.flush()
        metadata = [f.get(WAIT_S) for f in futures]
        assert producer.metrics()["record-send-total"] == len(keys)

        expected = [murmur2_partition(key, partitions) for key in keys]
        assert [md.partition for md in metadata] == expected
        assert len(set(expected)) > 9_000
        # Every partition's records took the offsets 0..n-1, each once: nothing lost, nothing written twice.
        offsets: dict[int, list[int]] = {}
        for md in metadata:
            offsets.setdefault(md.partition, []).append(md.offset)
        assert {p: sorted(o) for p, o in offsets.items()} == {p: list(range(len(o))) for p, o in offsets.items()}

        # Then the producer writes to ten partitions only: its Sender's loop looks at those, not at 10,000.
        again = [producer.send(topic, b"w", partition=p * 999) for p in range(10)]
        producer.flush()
        assert [f.get(WAIT_S).partition for f in again] == [p * 999 for p in range(10)]
        assert producer._accumulator.partitions_visited_by_last_ready <= 10


def test_send_batch_over_1000_partitions_grows_batches_in_place_and_keeps_every_record(noida, noida_topic) -> None:
    partitions = 1_000
    topic = noida_topic(partitions=partitions)
    keys = [b"k%d" % (i % 5_000) for i in range(60_000)]
    values = [b"%06d" % i + b"v" * 94 for i in range(60_000)]  # ~70 records, ~8 KB per partition: past 1 KiB
    with make_producer(noida.bootstrap_servers, linger_ms=50) as producer:
        metadata = producer.send_batch(topic, values, keys=keys).get(WAIT_S)
        assert [md.partition for md in metadata] == [murmur2_partition(k, partitions) for k in keys]
        offsets: dict[int, list[int]] = {}
        for md in metadata:
            offsets.setdefault(md.partition, []).append(md.offset)
        # In send order within each partition, at 0..n-1: no record lost, reordered or written twice.
        assert {p: o for p, o in offsets.items()} == {p: list(range(len(o))) for p, o in offsets.items()}
        assert producer.metrics()["batch-size-avg"] > 1024  # batches went past their first buffer


def test_a_new_batch_wakes_the_sender_only_when_it_would_sleep_past_the_batch_linger() -> None:
    wakes: list[int] = []
    pool = BufferPool(MEMORY, BATCH)
    acc = RecordAccumulator(pool, BATCH, 0, 5, 100, 120_000, 1000, False, lambda: wakes.append(1), 1 << 20)
    acc.update_topic("t", [NODE] * 3)
    acc.append("t", 0, None, b"a", None, None, None)
    assert len(wakes) == 1  # the Sender is not polling yet: it must look
    acc.sender_wakes_at = monotonic() + 60  # asleep for a minute
    acc.append("t", 1, None, b"b", None, None, None)
    assert len(wakes) == 2
    acc.sender_wakes_at = monotonic() + 0.001  # back before this batch's 5 ms linger ends
    acc.append("t", 2, None, b"c", None, None, None)
    acc.append("t", 2, None, b"d", None, None, None)  # joins the open batch: no new batch, no wake-up
    assert len(wakes) == 2


def test_a_batch_past_delivery_timeout_expires_though_the_scan_is_skipped_while_none_can_be() -> None:
    pool = BufferPool(MEMORY, BATCH)
    acc = RecordAccumulator(pool, BATCH, 0, 0, 100, 50, 1000, False, None, 1 << 20)  # 50 ms delivery timeout
    acc.update_topic("t", [NODE] * 2)
    acc.append("t", 0, None, b"old", None, None, None)
    now = monotonic()
    acc.ready(now)
    assert acc.expired_batches(now) == []
    time.sleep(0.03)
    acc.append("t", 1, None, b"young", None, None, None)  # created at least 30 ms after the old one
    later = now + 0.06
    assert [b.partition for b in acc.expired_batches(later)] == [0]
    assert [b.partition for b in acc.expired_batches(later + 0.05)] == [1]
