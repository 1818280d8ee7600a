"""Completing records, without a broker: a bare accumulator whose batches the test drains and answers as the Sender
would. What a record's callback, its future, the interceptors' acknowledgement and a send_batch() future see when
its batch completes, fails or is split; RecordMetadata as the named tuple it stands for; futures the cyclic GC
does not track.
"""
from __future__ import annotations

import gc
import logging
import pickle

import pytest

from kafkaprod import FutureRecordMetadata, RecordMetadata
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod._native.bulk import append_batch
from kafkaprod.errors import NotLeaderOrFollowerError
from kafkaprod.splitter import split_batch

NODE = 0


def _accumulator(partitions: int = 1, batch_size: int = 1 << 16) -> RecordAccumulator:
    pool = BufferPool(1 << 24, batch_size)
    acc = RecordAccumulator(pool, batch_size, 0, 0, 100, 120_000, 1000, False, None, 1 << 22)
    acc.update_topic("t", [NODE] * partitions)
    return acc


def _answer(acc: RecordAccumulator, base_offset: int = 100, error: Exception | None = None) -> list:
    """Drains every batch and completes it with base_offset (the next batch continuing after it) or error."""
    done = []
    while True:
        batches = acc.drain([NODE], 1 << 30, monotonic()).get(NODE, [])
        if not batches:
            return done
        for batch in batches:
            batch.close()
            batch.done(base_offset, -1, error)
            acc.deallocate(batch)
            base_offset += batch.record_count
            done.append(batch)


def test_record_metadata_behaves_like_the_named_tuple_it_replaces() -> None:
    md = RecordMetadata("t", 1, 42, 1_700_000_000_000, -1, 100)
    assert md._fields == ("topic", "partition", "offset", "timestamp", "serialized_key_size",
                          "serialized_value_size")
    assert (md.topic, md.partition, md.offset, md.timestamp) == ("t", 1, 42, 1_700_000_000_000)
    assert (md.serialized_key_size, md.serialized_value_size) == (-1, 100)
    topic, partition, offset, timestamp, key_size, value_size = md
    assert (topic, offset, value_size) == ("t", 42, 100)
    assert len(md) == 6 and md[2] == 42 and md[-1] == 100 and md[:2] == ("t", 1)
    assert md == ("t", 1, 42, 1_700_000_000_000, -1, 100) and md != ("t", 1, 43, 1_700_000_000_000, -1, 100)
    assert md == RecordMetadata("t", 1, 42, 1_700_000_000_000, -1, 100)
    assert hash(md) == hash(tuple(md)) and {md: 1}[tuple(md)] == 1
    assert repr(md) == ("RecordMetadata(topic='t', partition=1, offset=42, timestamp=1700000000000, "
                        "serialized_key_size=-1, serialized_value_size=100)")
    assert md._asdict()["offset"] == 42 and md._replace(offset=7).offset == 7
    assert pickle.loads(pickle.dumps(md)) == md
    with pytest.raises(AttributeError):
        md.offset = 1  # a value, as the tuple was


def test_futures_are_small_and_not_tracked_by_the_cyclic_gc() -> None:
    acc = _accumulator()
    plain = acc.append("t", 0, None, b"v", None, None, None)
    with_callback = acc.append("t", 0, None, b"v", None, None, lambda md, exc: None)
    assert not gc.is_tracked(plain) and not gc.is_tracked(with_callback)
    assert FutureRecordMetadata.__basicsize__ <= 64
    _answer(acc)
    assert not gc.is_tracked(plain.get(0))


def test_every_callback_runs_once_with_its_metadata_and_a_raising_one_does_not_stop_the_others(caplog) -> None:
    acc = _accumulator()
    seen: list[tuple[int, object]] = []

    def callback(i):
        def on_completion(md, exc):
            seen.append((i, md))
            if i % 10 == 3:
                raise RuntimeError(f"callback {i} failed")
        return on_completion

    futures = [acc.append("t", 0, b"k" if i % 2 else None, b"v%d" % i, None, 1000 + i, callback(i))
               for i in range(50)]
    with caplog.at_level(logging.ERROR, logger="kafkaprod"):
        _answer(acc, base_offset=100)
    assert [i for i, _ in seen] == list(range(50))
    assert [md.offset for _, md in seen] == list(range(100, 150))
    assert seen[1][1] == ("t", 0, 101, 1001, 1, 2) and seen[0][1].serialized_key_size == -1
    assert [f.get(0) for f in futures] == [md for _, md in seen]
    assert sum("a record callback raised" in r.getMessage() for r in caplog.records) == 5


def test_an_error_reaches_the_callback_and_the_future_of_every_record() -> None:
    acc = _accumulator()
    error = NotLeaderOrFollowerError("t[0]")
    seen = []
    futures = [acc.append("t", 0, None, b"v", None, None, lambda md, exc: seen.append((md, exc)))
               for _ in range(5)]
    _answer(acc, error=error)
    assert seen == [(None, error)] * 5
    for future in futures:
        assert future.done() and future.failed() and future.exception(0) is error
        with pytest.raises(NotLeaderOrFollowerError):
            future.get(0)


def test_callbacks_added_to_a_future_run_after_its_send_callback_and_at_once_when_it_is_done() -> None:
    acc = _accumulator()
    order = []
    future = acc.append("t", 0, None, b"v", None, None, lambda md, exc: order.append(("send", md.offset)))
    future.add_callback(lambda md: order.append(("success", md.offset)))
    future.add_errback(lambda exc: order.append(("error", exc)))
    future.add_done_callback(lambda f: order.append(("done", f is future)))
    _answer(acc, base_offset=7)
    assert order == [("send", 7), ("success", 7), ("done", True)]
    future.add_callback(lambda md: order.append(("late", md.offset)))
    assert order[-1] == ("late", 7)


def test_interceptor_acknowledgement_runs_for_every_record_before_its_callback() -> None:
    acc = _accumulator()
    events = []
    acc.acknowledge = lambda md, exc: events.append(("ack", md.offset if md else exc))
    acc.append("t", 0, None, b"a", None, None, None)  # no callback: acknowledged all the same
    acc.append("t", 0, None, b"b", None, None, lambda md, exc: events.append(("callback", md.offset)))
    _answer(acc, base_offset=10)
    assert events == [("ack", 10), ("ack", 11), ("callback", 11)]


def test_send_batch_acknowledges_every_record_to_the_interceptors() -> None:
    acc = _accumulator(partitions=2)
    acked = []
    acc.acknowledge = lambda md, exc: acked.append((md.partition, md.offset))
    future = append_batch(acc, "t", [b"r%d" % i for i in range(20)], partition=1)
    _answer(acc, base_offset=500)
    assert future.done()
    assert acked == [(1, 500 + i) for i in range(20)]


def test_a_callback_follows_its_record_into_the_halves_of_a_split_batch() -> None:
    acc = _accumulator()
    seen = {}
    for i in range(9):
        acc.append("t", 0, None, b"v%d" % i, None, None, lambda md, exc, i=i: seen.setdefault(i, md.offset))
    [batch] = acc.drain([NODE], 1 << 30, monotonic())[NODE]
    batch.close()
    first, second = split_batch(acc, batch, monotonic())
    assert seen == {}
    second.done(900, -1, None)
    first.done(500, -1, None)
    assert seen == {**{i: 500 + i for i in range(5)}, **{i: 900 + i - 5 for i in range(5, 9)}}
