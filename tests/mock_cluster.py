"""librdkafka's mock cluster, driven through ctypes: a real multi-broker Kafka-protocol peer with fault injection.

The mock cluster lives inside the librdkafka shared library that the confluent-kafka wheel ships. It runs its
brokers on loopback ports in librdkafka threads and answers the Kafka protocol (Produce, Metadata,
ApiVersions, InitProducerId, ...) like a broker, while the test steers it: take brokers down, add latency, move
partition leaders, make the next requests fail with chosen error codes.

A ``rd_kafka_t`` handle is needed for the cluster's bookkeeping; this module creates a producer handle that
never connects anywhere (no ``bootstrap.servers``) and keeps its log quiet.

C API (librdkafka src/rdkafka_mock.h, checked against the 2.16 library this wheel ships) -- every function
bound below has its argtypes/restype declared in :func:`_bind`.

The mock does not implement the CreateTopics admin API; create topics with :meth:`MockCluster.create_topic`.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from ctypes import POINTER, c_char_p, c_int, c_int16, c_int32, c_int64, c_size_t, c_void_p
from typing import NamedTuple

#: Broker id meaning "every broker" for broker_down/broker_up/set_rtt.
ALL_BROKERS = -1
#: Error code that makes the mock broker close the connection instead of answering (RD_KAFKA_RESP_ERR__TRANSPORT).
TRANSPORT_ERROR = -195

_RD_KAFKA_PRODUCER = 0
_RD_KAFKA_CONF_OK = 0
_ERRSTR_SIZE = 512


class MockClusterError(RuntimeError):
    """A mock-cluster call failed, or librdkafka could not be found or loaded."""


class MockRequest(NamedTuple):
    """One request the mock cluster received while request tracking was on."""

    broker_id: int
    api_key: int
    #: librdkafka's monotonic clock, microseconds.
    timestamp_us: int


def _candidate_library_paths() -> list[str]:
    try:
        import confluent_kafka
    except ImportError as exc:
        raise MockClusterError(
            f"the mock cluster lives in the librdkafka of the confluent-kafka wheel, which is not importable "
            f"({exc}); install it with `pip install confluent-kafka` (part of kafkaprod's `test` extra)"
        ) from exc
    package_dir = os.path.dirname(os.path.abspath(confluent_kafka.__file__))
    site_dir = os.path.dirname(package_dir)
    patterns = [
        os.path.join(site_dir, "confluent_kafka.libs", "librdkafka*.so*"),  # auditwheel (Linux)
        os.path.join(package_dir, ".dylibs", "librdkafka*.dylib"),  # delocate (macOS)
        os.path.join(package_dir, "librdkafka*"),
    ]
    found = [path for pattern in patterns for path in sorted(glob.glob(pattern))]
    if not found and sys.platform.startswith("linux"):
        # Whatever librdkafka confluent_kafka's extension actually loaded (e.g. a system one in a source build).
        import confluent_kafka.cimpl  # noqa: F401  (loads librdkafka into this process)

        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if line.strip() else ""
                if "librdkafka" in os.path.basename(path) and path not in found:
                    found.append(path)
    return found


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _bind(lib: ctypes.CDLL) -> None:
    signatures: dict[str, tuple[object, list[object]]] = {
        # librdkafka core
        "rd_kafka_version_str": (c_char_p, []),
        "rd_kafka_err2name": (c_char_p, [c_int]),
        "rd_kafka_conf_new": (c_void_p, []),
        "rd_kafka_conf_set": (c_int, [c_void_p, c_char_p, c_char_p, c_char_p, c_size_t]),
        "rd_kafka_conf_destroy": (None, [c_void_p]),
        "rd_kafka_new": (c_void_p, [c_int, c_void_p, c_char_p, c_size_t]),
        "rd_kafka_destroy": (None, [c_void_p]),
        # rdkafka_mock.h
        "rd_kafka_mock_cluster_new": (c_void_p, [c_void_p, c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [c_void_p]),
        "rd_kafka_mock_cluster_bootstraps": (c_char_p, [c_void_p]),
        "rd_kafka_mock_topic_create": (c_int, [c_void_p, c_char_p, c_int, c_int]),
        "rd_kafka_mock_broker_set_down": (c_int, [c_void_p, c_int32]),
        "rd_kafka_mock_broker_set_up": (c_int, [c_void_p, c_int32]),
        "rd_kafka_mock_broker_set_rtt": (c_int, [c_void_p, c_int32, c_int]),
        "rd_kafka_mock_partition_set_leader": (c_int, [c_void_p, c_char_p, c_int32, c_int32]),
        "rd_kafka_mock_topic_set_error": (None, [c_void_p, c_char_p, c_int]),
        "rd_kafka_mock_push_request_errors_array": (None, [c_void_p, c_int16, c_size_t, POINTER(c_int)]),
        "rd_kafka_mock_clear_request_errors": (None, [c_void_p, c_int16]),
        "rd_kafka_mock_broker_error_stack_cnt": (c_int, [c_void_p, c_int32, c_int16, POINTER(c_size_t)]),
        "rd_kafka_mock_start_request_tracking": (None, [c_void_p]),
        "rd_kafka_mock_stop_request_tracking": (None, [c_void_p]),
        "rd_kafka_mock_clear_requests": (None, [c_void_p]),
        "rd_kafka_mock_get_requests": (POINTER(c_void_p), [c_void_p, POINTER(c_size_t)]),
        "rd_kafka_mock_request_id": (c_int32, [c_void_p]),
        "rd_kafka_mock_request_api_key": (c_int16, [c_void_p]),
        "rd_kafka_mock_request_timestamp": (c_int64, [c_void_p]),
        "rd_kafka_mock_request_destroy_array": (None, [POINTER(c_void_p), c_size_t]),
    }
    missing = [name for name in signatures if not hasattr(lib, name)]
    if missing:
        raise MockClusterError(f"{lib._name} lacks mock-cluster symbols {missing}; is it librdkafka >= 2.4?")
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def load_librdkafka() -> ctypes.CDLL:
    """The librdkafka shared library of the installed confluent-kafka wheel, with mock-cluster bindings."""
    global _lib
    with _lib_lock:
        if _lib is None:
            paths = _candidate_library_paths()
            if not paths:
                raise MockClusterError(
                    "could not find librdkafka next to the confluent_kafka package (looked for "
                    "confluent_kafka.libs/librdkafka*.so*, confluent_kafka/.dylibs/librdkafka*.dylib); "
                    "reinstall the confluent-kafka wheel"
                )
            try:
                lib = ctypes.CDLL(paths[0])
            except OSError as exc:
                raise MockClusterError(f"could not load librdkafka from {paths[0]}: {exc}") from exc
            _bind(lib)
            _lib = lib
        return _lib


# The ApiKey -> name table is only for error messages.
_API_NAMES = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions", 22: "InitProducerId"}


class MockCluster:
    """A librdkafka mock cluster of ``broker_count`` brokers (ids 1..N) on loopback ports.

    Faults set here are cluster state: they persist until undone or until :meth:`close`, so a test that
    shares a cluster must restore what it changed (the test fixtures give each test a fresh cluster).
    """

    def __init__(self, broker_count: int = 3) -> None:
        if isinstance(broker_count, bool) or not isinstance(broker_count, int) or not 1 <= broker_count <= 64:
            raise ValueError(f"broker_count must be an int in 1..64, got {broker_count!r}")
        self._lib = load_librdkafka()
        self.broker_count = broker_count
        self._rk = self._new_host_handle()
        self._mcluster = self._lib.rd_kafka_mock_cluster_new(self._rk, broker_count)
        if not self._mcluster:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
            raise MockClusterError(f"rd_kafka_mock_cluster_new({broker_count} brokers) failed")
        self._bootstraps = self._lib.rd_kafka_mock_cluster_bootstraps(self._mcluster).decode()

    def _new_host_handle(self) -> int:
        lib = self._lib
        errstr = ctypes.create_string_buffer(_ERRSTR_SIZE)
        conf = lib.rd_kafka_conf_new()
        # Errors only: the handle has no brokers of its own, and the mock's info/debug lines are noise in tests.
        if lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, _ERRSTR_SIZE) != _RD_KAFKA_CONF_OK:
            lib.rd_kafka_conf_destroy(conf)
            raise MockClusterError(f"rd_kafka_conf_set(log_level) failed: {errstr.value.decode()}")
        rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, _ERRSTR_SIZE)
        if not rk:
            lib.rd_kafka_conf_destroy(conf)  # rd_kafka_new only takes ownership of conf on success
            raise MockClusterError(f"rd_kafka_new failed: {errstr.value.decode()}")
        return rk

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """Comma-separated ``host:port`` of every mock broker, for a client's ``bootstrap.servers``."""
        return self._bootstraps

    @property
    def broker_ids(self) -> list[int]:
        return list(range(1, self.broker_count + 1))

    @property
    def librdkafka_version(self) -> str:
        return self._lib.rd_kafka_version_str().decode()

    @property
    def closed(self) -> bool:
        return self._mcluster is None

    def _handle(self) -> int:
        if self._mcluster is None:
            raise MockClusterError("the mock cluster is closed")
        return self._mcluster

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            name = self._lib.rd_kafka_err2name(err).decode()
            raise MockClusterError(f"{what} failed: {name} ({err})")

    def _broker(self, broker_id: int, *, allow_all: bool = False) -> int:
        if isinstance(broker_id, bool) or not isinstance(broker_id, int):
            raise TypeError(f"broker_id must be an int, got {broker_id!r}")
        if allow_all and broker_id == ALL_BROKERS:
            return broker_id
        if not 1 <= broker_id <= self.broker_count:
            extra = " or -1 for all" if allow_all else ""
            raise ValueError(f"broker_id must be in 1..{self.broker_count}{extra}, got {broker_id}")
        return broker_id

    # -- topics -----------------------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int, replication_factor: int = 1, *, leaders: Sequence[int] | None = None
    ) -> None:
        """Create a topic; ``leaders[p]``, if given, becomes partition p's leader (the mock picks at random)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"topic name must be a non-empty string, got {name!r}")
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
        if not 1 <= replication_factor <= self.broker_count:
            raise ValueError(
                f"replication_factor must be in 1..{self.broker_count} (the broker count), got {replication_factor}"
            )
        if leaders is not None and len(leaders) != partitions:
            raise ValueError(f"leaders must name one broker per partition ({partitions}), got {len(leaders)}")
        err = self._lib.rd_kafka_mock_topic_create(self._handle(), name.encode(), partitions, replication_factor)
        self._check(err, f"creating topic {name!r} ({partitions} partitions)")
        for partition, broker_id in enumerate(leaders or ()):
            self.set_partition_leader(name, partition, broker_id)

    def round_robin_leaders(self, partitions: int) -> list[int]:
        """Leaders 1, 2, .., N, 1, 2, .. for ``partitions`` partitions: every broker leads some partition."""
        return [partition % self.broker_count + 1 for partition in range(partitions)]

    def set_partition_leader(self, topic: str, partition: int, broker_id: int) -> None:
        """Make ``broker_id`` lead the partition (-1: no leader). Clients see it at their next metadata refresh."""
        if broker_id != -1:
            self._broker(broker_id)
        err = self._lib.rd_kafka_mock_partition_set_leader(self._handle(), topic.encode(), partition, broker_id)
        self._check(err, f"setting the leader of {topic}[{partition}] to broker {broker_id}")

    def set_topic_error(self, topic: str, error_code: int) -> None:
        """Metadata answers for the topic carry this error (0 clears it); the topic is created if missing.

        UNKNOWN_TOPIC_OR_PARTITION (3) also hides the topic's partitions: to clients the cluster does not have
        it, and since it exists in the mock, Metadata requests cannot auto-create it either.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"topic name must be a non-empty string, got {topic!r}")
        self._lib.rd_kafka_mock_topic_set_error(self._handle(), topic.encode(), int(error_code))

    def set_partition_leaders(self, topic: str, leaders: dict[int, int]) -> None:
        """Move several partitions' leaders at once (``{partition: broker_id}``).

        Each mock command waits for the mock cluster's thread, which now and then picks a command up only at its
        next one-second poll tick; issued one after another, a dozen moves can take seconds. Issued from
        parallel threads (ctypes releases the GIL), they share those waits.
        """
        errors: list[BaseException] = []

        def move(partition: int, broker_id: int) -> None:
            try:
                self.set_partition_leader(topic, partition, broker_id)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=move, args=item) for item in leaders.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    # -- broker faults ----------------------------------------------------------------------------------------

    def broker_down(self, broker_id: int) -> None:
        """Disconnect the broker's clients and refuse new connections. Leadership does not move."""
        err = self._lib.rd_kafka_mock_broker_set_down(self._handle(), self._broker(broker_id, allow_all=True))
        self._check(err, f"taking broker {broker_id} down")

    def broker_up(self, broker_id: int) -> None:
        """Accept connections on the broker again."""
        err = self._lib.rd_kafka_mock_broker_set_up(self._handle(), self._broker(broker_id, allow_all=True))
        self._check(err, f"bringing broker {broker_id} up")

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        """Delay every response of the broker by ``rtt_ms`` milliseconds (0 restores)."""
        if isinstance(rtt_ms, bool) or not isinstance(rtt_ms, int) or rtt_ms < 0:
            raise ValueError(f"rtt_ms must be an int >= 0, got {rtt_ms!r}")
        err = self._lib.rd_kafka_mock_broker_set_rtt(self._handle(), self._broker(broker_id, allow_all=True), rtt_ms)
        self._check(err, f"setting broker {broker_id}'s RTT to {rtt_ms} ms")

    # -- request errors ---------------------------------------------------------------------------------------

    def push_request_errors(self, api_key: int, errors: Iterable[int]) -> None:
        """The next ``len(errors)`` requests of ``api_key`` to any broker fail with these error codes, in order.

        ``TRANSPORT_ERROR`` makes the broker drop the connection instead of answering.
        """
        codes = [int(code) for code in errors]
        if not codes:
            raise ValueError("errors must list at least one error code")
        array = (c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._handle(), api_key, len(codes), array)

    def clear_request_errors(self, api_key: int) -> None:
        """Drop the cluster-wide errors still queued for ``api_key``."""
        self._lib.rd_kafka_mock_clear_request_errors(self._handle(), api_key)

    def broker_push_request_error_rtts(self, broker_id: int, api_key: int, entries: Iterable[tuple[int, int]]) -> None:
        """The next requests of ``api_key`` to ``broker_id`` get ``(error_code, rtt_ms)`` each, in order.

        Error 0 with an RTT delays a response without failing it. Broker errors take precedence over
        cluster-wide ones from :meth:`push_request_errors`.
        """
        pairs = [(int(code), int(rtt)) for code, rtt in entries]
        if not pairs:
            raise ValueError("entries must list at least one (error_code, rtt_ms) pair")
        if any(rtt < 0 for _, rtt in pairs):
            raise ValueError(f"rtt_ms must be >= 0, got {pairs}")
        # The C function is variadic (cnt, then err, rtt, err, rtt, ...). ctypes has no variadic prototypes, so
        # build one with exactly this call's arguments; both value types are int, which variadic promotion
        # leaves unchanged, so the fixed-argument call lays them out as the callee reads them.
        prototype = ctypes.CFUNCTYPE(c_int, c_void_p, c_int32, c_int16, c_size_t, *([c_int] * (2 * len(pairs))))
        function = prototype(ctypes.cast(self._lib.rd_kafka_mock_broker_push_request_error_rtts, c_void_p).value)
        flat = [value for pair in pairs for value in pair]
        err = function(self._handle(), self._broker(broker_id), api_key, len(pairs), *flat)
        self._check(err, f"pushing {len(pairs)} errors for {_API_NAMES.get(api_key, api_key)} on broker {broker_id}")

    def broker_error_stack_count(self, broker_id: int, api_key: int) -> int:
        """How many errors pushed with :meth:`broker_push_request_error_rtts` the broker has not used yet."""
        count = c_size_t(0)
        err = self._lib.rd_kafka_mock_broker_error_stack_cnt(
            self._handle(), self._broker(broker_id), api_key, ctypes.byref(count)
        )
        self._check(err, f"reading broker {broker_id}'s error stack")
        return count.value

    # -- request tracking -------------------------------------------------------------------------------------

    def start_request_tracking(self) -> None:
        """Record every request the brokers receive from now on (read with :meth:`requests`)."""
        self._lib.rd_kafka_mock_start_request_tracking(self._handle())

    def stop_request_tracking(self) -> None:
        self._lib.rd_kafka_mock_stop_request_tracking(self._handle())

    def clear_requests(self) -> None:
        self._lib.rd_kafka_mock_clear_requests(self._handle())

    def requests(self, api_key: int | None = None) -> list[MockRequest]:
        """Requests received since tracking started (or was cleared), oldest first; optionally one ApiKey."""
        count = c_size_t(0)
        array = self._lib.rd_kafka_mock_get_requests(self._handle(), ctypes.byref(count))
        if not array:
            return []
        try:
            found = [
                MockRequest(
                    self._lib.rd_kafka_mock_request_id(array[i]),
                    self._lib.rd_kafka_mock_request_api_key(array[i]),
                    self._lib.rd_kafka_mock_request_timestamp(array[i]),
                )
                for i in range(count.value)
            ]
        finally:
            self._lib.rd_kafka_mock_request_destroy_array(array, count.value)
        return [request for request in found if api_key is None or request.api_key == api_key]

    # -- lifecycle --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Destroy the cluster (its listeners close) and then its host handle. Safe to call twice."""
        if self._mcluster is not None:
            self._lib.rd_kafka_mock_cluster_destroy(self._mcluster)
            self._mcluster = None
        if self._rk is not None:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None

    def __enter__(self) -> MockCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A cluster left open would keep librdkafka threads and listening sockets until interpreter exit.
        if getattr(self, "_mcluster", None) is not None or getattr(self, "_rk", None) is not None:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self._bootstraps
        return f"<MockCluster {self.broker_count} brokers {state}>"
