"""The broker side of the benchmarks: start Tansu, make and drop topics, count what landed."""
from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any


def start_broker() -> AbstractContextManager[Any]:
    """A context manager for a local Tansu broker; entering it gives an object with ``.bootstrap_servers``."""
    from kafkaprod.tools.broker import TansuBroker

    return TansuBroker()


def create_topics(bootstrap_servers: str, topics: dict[str, int]) -> None:
    from kafkaprod.tools.broker import create_topics as create

    create(bootstrap_servers, topics)


def delete_topic(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> None:
    # Tansu's memory storage keeps every record in RAM; dropping each run's topic keeps the broker's footprint
    # (and so its speed) the same for the first and the last run.
    from kafkaprod.tools.broker import delete_topics

    delete_topics(bootstrap_servers, [topic], timeout)


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
    """Records in ``topic``, read from the records themselves (see kafkaprod.tools.broker.count_records for why)."""
    from kafkaprod.tools.broker import count_records as count

    return count(bootstrap_servers, topic, timeout)
