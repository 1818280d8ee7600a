"""Helpers shared by the producer's end-to-end tests (tests/test_producer_*.py).

What kafkaprod wrote is always checked with a reader kafkaprod did not write: confluent-kafka's Consumer, by
assign() (no group), reading up to an end marker appended after the producer finished -- so a duplicate fails a
test as surely as a missing record. Waits have generous limits only so that a broken producer
fails a test instead of hanging it; no assertion depends on how fast anything happens.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from kafkaprod import KafkaProducer

PRODUCE = 0
METADATA = 3

# Limits that only stop a broken producer or peer from hanging the run.
WAIT_S = 30.0

# Options that keep the tests quick without changing what they check: short backoffs so retries happen soon,
# and a bounded max_block_ms so a producer that cannot find a topic fails instead of blocking for a minute.
FAST = {"retry_backoff_ms": 20, "reconnect_backoff_ms": 20, "reconnect_backoff_max_ms": 200, "max_block_ms": 20_000}

#: A fault scenario runs once in CI and nine more times in soak mode (``-m soak``, or ``-m "soak or not soak"`` for
#: all ten): apply as ``@REPEATED`` and take an ``attempt`` argument.
REPEATED = pytest.mark.parametrize(
    "attempt", [0, *(pytest.param(n, marks=pytest.mark.soak) for n in range(1, 10))])


def make_producer(bootstrap_servers: str, **options: Any) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers, **{**FAST, **options})


@dataclass(frozen=True)
class Stored:
    """One record as the reader saw it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int

    @classmethod
    def of(cls, message: Message) -> Stored:
        _, timestamp = message.timestamp()
        return cls(message.partition(), message.offset(), message.key(), message.value(),
                   list(message.headers() or []), timestamp)


def _consumer(bootstrap_servers: str) -> Consumer:
    return Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": "kafkaprod-producer-tests-unused",  # required by the client; assign() never joins it
        "enable.auto.commit": False,
        "enable.metrics.push": False,  # the mock cluster does not answer telemetry requests
        "enable.partition.eof": False,
    })


SENTINEL = b"kafkaprod-tests-end-of-partition"


def _write_sentinels(bootstrap_servers: str, topic: str, partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.metrics.push": False, "acks": "all",
                         "linger.ms": 0})
    errors: list[Any] = []
    for p in range(partitions):
        producer.produce(topic, SENTINEL, partition=p, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(WAIT_S) == 0, "the end-of-partition markers were not delivered"
    assert errors == [None] * partitions, errors


def read_back(bootstrap_servers: str, topic: str, partitions: int, expected: int | None,
              *, exact: bool = True) -> dict[int, list[Stored]]:
    """Every record of the topic, per partition in offset order; asserts there are exactly ``expected``.

    ``expected=None`` (only with ``exact``) reads everything up to the markers without asserting a count, for
    callers that audit the log themselves (counting duplicates a peer is known to write).

    With ``exact`` (call it once the producer under test has finished), confluent-kafka's producer appends a
    marker to every partition and the topic is read up to the markers: a duplicate fails as surely as a
    missing record. (Watermarks would be simpler, but Tansu reports the high watermark as the last batch's
    base offset + 1, not the end of the log.) Without ``exact``, reading stops after ``expected`` records.
    """
    if expected is None and not exact:
        raise ValueError("read_back(expected=None) needs exact=True: without markers it would not know when to stop")
    if exact:
        _write_sentinels(bootstrap_servers, topic, partitions)
    consumer = _consumer(bootstrap_servers)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        by_partition: dict[int, list[Stored]] = {p: [] for p in range(partitions)}
        ended: set[int] = set()
        received = 0
        empty_polls = 0
        while (len(ended) < partitions) if exact else (received < expected):
            message = consumer.poll(1.0)
            if message is None:
                empty_polls += 1
                assert empty_polls < WAIT_S, f"read {received} records of {topic}, then nothing (expected {expected})"
                continue
            assert message.error() is None, message.error()
            if exact and message.value() == SENTINEL and message.partition() not in ended:
                ended.add(message.partition())
                continue
            if message.partition() in ended:
                continue
            by_partition[message.partition()].append(Stored.of(message))
            received += 1
        counts = {p: len(v) for p, v in by_partition.items()}
        assert expected is None or received == expected, f"{topic} holds {counts} records per partition, expected {expected} in all"
        return by_partition
    finally:
        consumer.close()


class CallbackLog:
    """A send() callback that records every call, keyed by the record it was given for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[Any, list[tuple[Any, BaseException | None]]] = {}
        self.threads: set[str] = set()
        self._all = threading.Condition(self._lock)

    def for_record(self, record_id: Any):
        def callback(metadata: Any, exception: BaseException | None) -> None:
            with self._lock:
                self.calls.setdefault(record_id, []).append((metadata, exception))
                self.threads.add(threading.current_thread().name)
                self._all.notify_all()

        return callback

    def wait_for(self, record_ids: Iterable[Any], timeout: float = WAIT_S) -> None:
        wanted = set(record_ids)
        with self._lock:
            ok = self._all.wait_for(lambda: wanted <= set(self.calls), timeout)
        assert ok, f"no callback within {timeout} s for {sorted(wanted - set(self.calls), key=repr)[:10]}"

    def counts(self) -> dict[Any, int]:
        with self._lock:
            return {k: len(v) for k, v in self.calls.items()}


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The Java client's partition for a key, by kafka-python's murmur2 (an implementation we did not write)."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions
