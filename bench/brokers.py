"""The broker side of the benchmarks: start Tansu, make and drop topics, count what landed."""
from __future__ import annotations

import time
import uuid
from contextlib import AbstractContextManager
from typing import Any


def start_broker() -> AbstractContextManager[Any]:
    """A context manager for a local Tansu broker; entering it gives an object with ``.bootstrap_servers``."""
    from kafkaprod.broker import TansuBroker

    return TansuBroker()


def create_topics(bootstrap_servers: str, topics: dict[str, int]) -> None:
    from kafkaprod.broker import create_topics as create

    create(bootstrap_servers, topics)


def delete_topic(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> None:
    # Tansu's memory storage keeps every record in RAM; dropping each run's topic keeps the broker's footprint
    # (and so its speed) the same for the first and the last run.
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for future in admin.delete_topics([topic], operation_timeout=timeout, request_timeout=timeout).values():
        future.result(timeout)


def fresh_topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def broker_pid(broker: Any) -> int | None:
    """The broker process id when the launcher exposes it (for its CPU time), else None."""
    for path in (("pid",), ("process", "pid"), ("proc", "pid"), ("_proc", "pid"), ("_process", "pid")):
        obj = broker
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, int):
            return obj
    return None


def count_records(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> int:
    """Records in ``topic``: the sum over partitions of (last offset + 1), read from the records themselves.

    Not the ListOffsets high watermark: Tansu 0.6.0's memory storage answers with the base offset of the last
    batch rather than the offset after the last record (seen here: 185,002 reported for 200,000 records that a
    consumer reads back in full). So each partition is read from just below the reported watermark to its end; on
    a broker whose watermark is right that reads one record, on Tansu the last batch. Offsets in a partition
    written without transactions are contiguous from 0, so the last offset + 1 is the record count.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        "group.id": "bench-count-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.max.bytes": 64 * 1024 * 1024,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions)
        if not partitions:
            raise KafkaException(f"topic {topic!r} has no partitions")
        starts = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if low != 0:
                raise KafkaException(f"{topic}[{partition}] starts at offset {low}, not 0; cannot count by offsets")
            starts.append(TopicPartition(topic, partition, max(high - 1, 0)))
        consumer.assign(starts)
        last = {p: -1 for p in partitions}
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise KafkaException(f"counting {topic}: partitions {sorted(set(partitions) - at_end)} did not reach "
                                     f"their end within {timeout}s")
            for msg in consumer.consume(10000, 0.5):
                err = msg.error()
                if err is None:
                    last[msg.partition()] = max(last[msg.partition()], msg.offset())
                elif err.code() == err._PARTITION_EOF:
                    at_end.add(msg.partition())
                else:
                    raise KafkaException(err)
        return sum(offset + 1 for offset in last.values())
    finally:
        consumer.close()
