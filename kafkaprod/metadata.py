"""What the producer knows of the cluster: brokers, topics, partitions and their leaders.

``Cluster`` is an immutable snapshot (the Java client's Cluster), made from a Metadata answer by
``Cluster.from_metadata_response`` (Java's MetadataResponse.buildCluster); ``Metadata`` holds the current one,
its version, and the refresh bookkeeping that the Sender thread acts on and that ``send()`` waits on (Java's
Metadata with requestUpdate()/awaitUpdate()).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

from kafkaprod.errors import AuthenticationError, ErrorCode, KafkaTimeoutError, ProducerClosedError

log = logging.getLogger("kafkaprod")


class Node(NamedTuple):
    id: int
    host: str
    port: int
    rack: str | None = None


class PartitionInfo(NamedTuple):
    topic: str
    partition: int
    leader: int  # broker id; -1 when the partition has no leader right now
    leader_epoch: int = -1
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()


class Cluster:
    """An immutable view of brokers and partitions, with the lookups the send path needs precomputed.

    A custom ``partitioner`` gets the current one: ``partitions_for_topic``, ``available_partitions_for_topic`` and
    ``partition_count`` are the lookups the Java client's own partitioners make.
    """

    def __init__(
        self,
        nodes: Iterable[Node],
        partitions: Iterable[PartitionInfo],
        unauthorized_topics: Iterable[str] = (),
        invalid_topics: Iterable[str] = (),
        cluster_id: str | None = None,
        controller_id: int = -1,
    ) -> None:
        self.nodes: dict[int, Node] = {n.id: n for n in nodes}
        self.cluster_id = cluster_id
        self.controller_id = controller_id
        self.unauthorized_topics = frozenset(unauthorized_topics)
        self.invalid_topics = frozenset(invalid_topics)
        by_topic: dict[str, list[PartitionInfo]] = {}
        for info in partitions:
            by_topic.setdefault(info.topic, []).append(info)
        self._by_topic = {t: tuple(sorted(ps, key=lambda p: p.partition)) for t, ps in by_topic.items()}
        self._available = {
            t: tuple(p for p in ps if p.leader >= 0 and p.leader in self.nodes) for t, ps in self._by_topic.items()
        }

    @classmethod
    def bootstrap(cls, servers: Iterable[tuple[str, int]]) -> Cluster:
        # Bootstrap brokers get negative ids, as in the Java client, so they never collide with real broker ids.
        return cls([Node(-(i + 1), host, port) for i, (host, port) in enumerate(servers)], [])

    @classmethod
    def from_metadata_response(cls, body: dict[str, Any]) -> Cluster:
        """The cluster a decoded Metadata answer describes (Java's MetadataResponse.buildCluster).

        Topics answered with an error have no partitions here; those refused as TOPIC_AUTHORIZATION_FAILED or
        INVALID_TOPIC_EXCEPTION are listed in ``unauthorized_topics`` / ``invalid_topics``, the others (say
        LEADER_NOT_AVAILABLE while a topic is being created) are simply asked for again at the next refresh.
        """
        nodes = [Node(b["node_id"], b["host"], b["port"], b.get("rack")) for b in body.get("brokers", ())]
        parts: list[PartitionInfo] = []
        unauthorized, invalid = [], []
        for t in body.get("topics", ()):
            code, name = t.get("error_code", ErrorCode.NONE), t.get("name")
            if code == ErrorCode.TOPIC_AUTHORIZATION_FAILED:
                unauthorized.append(name)
                continue
            if code == ErrorCode.INVALID_TOPIC_EXCEPTION:
                invalid.append(name)
                continue
            if code != ErrorCode.NONE or name is None:
                log.debug("metadata for topic %r: error %d", name, code)
                continue
            for p in t.get("partitions", ()):
                parts.append(PartitionInfo(name, p["partition_index"], p["leader_id"], p.get("leader_epoch", -1),
                                           tuple(p.get("replica_nodes", ())), tuple(p.get("isr_nodes", ()))))
        return cls(nodes, parts, unauthorized, invalid, body.get("cluster_id"), body.get("controller_id", -1))

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self._by_topic)

    def partitions_for_topic(self, topic: str) -> tuple[PartitionInfo, ...] | None:
        return self._by_topic.get(topic)

    def available_partitions_for_topic(self, topic: str) -> tuple[PartitionInfo, ...]:
        return self._available.get(topic, ())

    def partition_count(self, topic: str) -> int | None:
        ps = self._by_topic.get(topic)
        return None if ps is None else len(ps)

    def leaders(self, topic: str) -> list[int]:
        """The topic's leader broker ids by partition index, -1 where a partition has no leader among this
        cluster's brokers (or was not in the answer): what RecordAccumulator.update_topic takes."""
        infos = self._by_topic.get(topic, ())
        leaders = [-1] * (max((p.partition for p in infos), default=-1) + 1)
        for p in infos:
            leaders[p.partition] = p.leader if p.leader in self.nodes else -1
        return leaders

    def __repr__(self) -> str:
        return f"Cluster(nodes={sorted(self.nodes)}, topics={sorted(self._by_topic)})"


class Metadata:
    """The current Cluster plus the refresh state shared between caller threads and the Sender thread."""

    def __init__(self, bootstrap: Iterable[tuple[str, int]], refresh_backoff_ms: int, metadata_max_age_ms: int) -> None:
        self._cond = threading.Condition()
        self._cluster = Cluster.bootstrap(bootstrap)
        self._version = 0
        self._need_update = True
        self._topics: dict[str, float] = {}  # topic -> last time a send asked for it (monotonic s)
        self._last_refresh = 0.0
        self._last_success = 0.0
        self._refresh_backoff = refresh_backoff_ms / 1000.0
        self._max_age = metadata_max_age_ms / 1000.0
        self._closed = False
        self._fatal: Exception | None = None
        # A failed TLS handshake or authentication, until a connection authenticates again (Java's
        # Metadata.fatalError for an AuthenticationException): send() and metadata waiters raise it meanwhile.
        self.auth_error: AuthenticationError | None = None

    # -- read side (any thread) --------------------------------------------------------------------------------
    @property
    def cluster(self) -> Cluster:
        return self._cluster

    def topics(self) -> list[str]:
        with self._cond:
            return list(self._topics)

    # -- caller side ----------------------------------------------------------------------------------------
    def add_topic(self, topic: str) -> bool:
        """Track a topic; True if it was new (then an update is requested)."""
        with self._cond:
            new = topic not in self._topics
            self._topics[topic] = time.monotonic()
            if new:
                self._need_update = True
            return new

    def request_update(self) -> int:
        """Ask the Sender for fresh metadata; returns the version to wait past."""
        with self._cond:
            self._need_update = True
            return self._version

    def await_update(self, last_version: int, timeout_s: float, what: str) -> None:
        """Block until a version newer than last_version arrives, or raise KafkaTimeoutError naming `what`."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._version <= last_version:
                if self._closed:
                    raise ProducerClosedError("the producer was closed while waiting for metadata")
                if self._fatal is not None:
                    raise self._fatal
                if self.auth_error is not None:
                    raise self.auth_error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(f"metadata for {what} not available after {timeout_s * 1000:.0f} ms (max_block_ms)")
                self._cond.wait(remaining)

    # -- Sender side ----------------------------------------------------------------------------------------
    def time_to_next_update(self, now: float) -> float:
        """Seconds until the Sender should fetch metadata (0 = now), honouring the refresh backoff."""
        with self._cond:
            expire = 0.0 if self._need_update else max(0.0, self._last_success + self._max_age - now)
            backoff = max(0.0, self._last_refresh + self._refresh_backoff - now)
            return max(expire, backoff)

    def update(self, cluster: Cluster, now: float) -> None:
        with self._cond:
            self._cluster = cluster
            self._need_update = False
            self._version += 1
            self._last_refresh = self._last_success = now
            self._cond.notify_all()
        log.debug("metadata updated to version %d: %r", self._version, cluster)

    def failed_update(self, now: float) -> None:
        with self._cond:
            self._last_refresh = now

    def fail_waiters(self, error: Exception) -> None:
        """A fatal error (e.g. authorization) reaches every thread waiting for metadata."""
        with self._cond:
            self._fatal = error
            self._cond.notify_all()

    def set_auth_error(self, error: AuthenticationError | None) -> None:
        """An authentication failure (waiters raise it, and so does send() until it is cleared), or None."""
        with self._cond:
            self.auth_error = error
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

