"""The sending loops of a run over several topics (``spec["topics"]``): record i goes to topic i % len(topics).

Loaded by path by :mod:`kafkaprod.tools.runners` (standard library only). The one-topic loops there stay as they
are, so that the numbers of one-topic workloads do not move; these are the same loops with the topic taken from a
cycle. Only kafkaprod ``send()`` and confluent-kafka ``produce()`` have them: the bulk APIs take one topic per call.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

#: The clients that can run over several topics.
CLIENTS = ("kafkaprod", "confluent")


def topic_stream(topics: list[str], n: int) -> Iterator[str]:
    """The n records' topics in sending order."""
    return itertools.islice(itertools.cycle(topics), n)


def expected_per_topic(topics: list[str], n: int) -> dict[str, int]:
    """Records each topic receives from a run of n (without the warm-up records)."""
    return {topic: n // len(topics) + (1 if i < n % len(topics) else 0) for i, topic in enumerate(topics)}


def kafkaprod_loop(send: Callable[..., Any], records: Any, topics: list[str], mode: str,
                   callback: Callable[..., Any]) -> list[Any]:
    """kafkaprod ``send()`` of every record; with mode ``future`` the futures, else an empty list."""
    value, n = records.value, records.n
    held: list[Any] = []
    hold = held.append
    if records.keys is None:
        if mode == "none":
            for topic in topic_stream(topics, n):
                send(topic, value)
        elif mode == "future":
            for topic in topic_stream(topics, n):
                hold(send(topic, value))
        else:
            for topic in topic_stream(topics, n):
                send(topic, value, callback=callback)
    elif mode == "none":
        for topic, key in zip(topic_stream(topics, n), records.key_stream()):
            send(topic, value, key)
    elif mode == "future":
        for topic, key in zip(topic_stream(topics, n), records.key_stream()):
            hold(send(topic, value, key))
    else:
        for topic, key in zip(topic_stream(topics, n), records.key_stream()):
            send(topic, value, key, callback=callback)
    return held


def confluent_loop(produce: Callable[..., Any], poll: Callable[..., Any], records: Any, topics: list[str],
                   on_delivery: Callable[..., Any] | None) -> None:
    """confluent-kafka ``produce()`` of every record, serving delivery reports with ``poll()`` whenever
    librdkafka's queue is full (as the one-topic loop does); ``on_delivery`` None for mode ``none``."""
    value, n = records.value, records.n
    if records.keys is None:
        if on_delivery is None:
            for topic in topic_stream(topics, n):
                while True:
                    try:
                        produce(topic, value)
                        break
                    except BufferError:
                        poll(0.0005)
        else:
            for topic in topic_stream(topics, n):
                while True:
                    try:
                        produce(topic, value, on_delivery=on_delivery)
                        break
                    except BufferError:
                        poll(0.0005)
    elif on_delivery is None:
        for topic, key in zip(topic_stream(topics, n), records.key_stream()):
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    poll(0.0005)
    else:
        for topic, key in zip(topic_stream(topics, n), records.key_stream()):
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.0005)
