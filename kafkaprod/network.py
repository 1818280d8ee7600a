"""NetworkClient: non-blocking connections to brokers under `selectors`, driven by the Sender thread.

One connection per broker. A connection goes CONNECTING (TCP) -> HANDSHAKING (TLS, only with SSL/SASL_SSL) ->
NEGOTIATING (ApiVersions, falling back to v0 when a broker rejects the newer request) -> AUTHENTICATING
(only with SASL: the requests of the connection's SaslClientAuthenticator) -> READY; nothing else is sent before
READY. When the SASL session is due for renewal (KIP-368) the connection takes no new requests, the ones in flight
are answered, then it authenticates again. A failed TLS handshake or a refused authentication closes the
connection and is reported through ``on_auth`` (an AuthenticationError); the next success reports None.

Requests go out with one sendmsg() over the encoded pieces (record batches are never copied into a request
buffer; with TLS the pieces are encrypted into a memory BIO, one batch per write opportunity), at most
`max_in_flight_requests_per_connection` unanswered per connection; answers are matched by correlation id;
a request unanswered after `request_timeout_ms` closes its connection and fails everything in flight on it.
Only the Sender thread calls into this class, except `wakeup()`. The non-blocking reads and writes, and the
zero-timeout poll, keep the GIL (kafkaprod._native.sockio); only a poll that waits releases it.
"""
from __future__ import annotations

import collections
import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafkaprod import __version__, protocol
from kafkaprod._native import sockio
from kafkaprod.protocol.messages import API_VERSIONS
from kafkaprod.protocol.schema import Api
from kafkaprod.errors import (AuthenticationError, ErrorCode, ProtocolError, SslAuthenticationError,
                              UnsupportedVersionError)
from kafkaprod.sasl_authenticator import SaslClientAuthenticator
from kafkaprod.security import Security, TlsTransport, describe_ssl_error

log = logging.getLogger("kafkaprod")

DISCONNECTED, CONNECTING, NEGOTIATING, READY = "disconnected", "connecting", "negotiating", "ready"
HANDSHAKING, AUTHENTICATING = "handshaking", "authenticating"
_RECV_SIZE = 256 * 1024
# Socket calls that keep the GIL (kafkaprod._native.sockio: each release costs the Sender up to a switch interval
# while send() keeps the caller's thread busy); Python's socket methods where the platform lacks them.
_HELD_IO = sockio.supported()
_EPOLL_IN, _EPOLL_OUT = 0x001, 0x004


@dataclass
class ClientResponse:
    """The outcome of one request: a decoded body, or the reason there is none."""

    node_id: int
    api_key: int
    api_version: int
    request: Any  # what the caller attached to the request (e.g. the batches of a ProduceRequest)
    body: dict[str, Any] | None = None
    disconnected: bool = False  # the connection closed (or timed out) before an answer came
    timed_out: bool = False
    error: Exception | None = None
    latency: float = 0.0


@dataclass
class _InFlight:
    correlation_id: int
    api_key: int
    api_version: int
    request: Any
    sent_at: float
    deadline: float
    expect_response: bool
    on_done: Callable[[ClientResponse], None] | None
    internal: bool = False


@dataclass
class _Connection:
    node_id: int
    host: str
    port: int
    sock: socket.socket | None = None
    state: str = DISCONNECTED
    out: collections.deque[memoryview] = field(default_factory=collections.deque)  # pieces still to write
    # (end_marker_piece_count, inflight)
    out_requests: collections.deque[tuple[int, _InFlight]] = field(default_factory=collections.deque)
    # corr id -> _InFlight
    in_flight: collections.OrderedDict[int, _InFlight] = field(default_factory=collections.OrderedDict)
    splitter: protocol.FrameSplitter | None = None
    api_versions: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Correlation ids of recent requests sent without expecting an answer (Produce with acks=0). Some brokers
    # (Tansu, librdkafka's mock) answer them anyway; those answers are dropped instead of breaking the connection.
    noreply: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=1024))
    last_attempt: float = 0.0
    failures: int = 0
    registered_events: int = 0
    tls: TlsTransport | None = None  # only with SSL / SASL_SSL
    sasl: SaslClientAuthenticator | None = None  # only with SASL, from ApiVersions until the connection closes
    reauth_pending: bool = False  # re-authentication is due: waiting for the requests in flight to be answered


class NetworkClient:
    def __init__(
        self,
        client_id: str,
        request_timeout_ms: int,
        reconnect_backoff_ms: int,
        reconnect_backoff_max_ms: int,
        max_in_flight: int,
        max_frame_size: int = 100 * 1024 * 1024,
        security: Security | None = None,
    ) -> None:
        self.client_id = client_id
        self.request_timeout = request_timeout_ms / 1000.0
        self.reconnect_backoff = reconnect_backoff_ms / 1000.0
        self.reconnect_backoff_max = reconnect_backoff_max_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.max_frame_size = max_frame_size
        self._selector = selectors.DefaultSelector()
        # A zero-timeout poll (the Sender's loop right after it sent) reads the epoll set with the GIL kept.
        self._epoll_fd = self._selector.fileno() if (isinstance(self._selector, getattr(selectors, "EpollSelector", ()))
                                                     and sockio.epoll_supported()) else -1
        self._recv_buffer = bytearray(_RECV_SIZE)
        self._conns: dict[int, _Connection] = {}
        self._correlation = 0
        self._completed: list[ClientResponse] = []
        # Connections with requests queued since the last poll(), written at its start (see _write_soon).
        self._write_soon_conns: list[_Connection] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._woken = False
        self._closed = False
        self.security = security
        # Told of every failed TLS handshake or authentication (node id, error), and of the first success after
        # one (node id, None); set by the Sender.
        self.on_auth: Callable[[int, AuthenticationError | None], None] | None = None
        self.auth_error: AuthenticationError | None = None  # the last failure, until a connection authenticates

    # ---- nodes and connections -----------------------------------------------------------------------------------
    def set_node(self, node_id: int, host: str, port: int) -> None:
        """Where a broker lives; a changed address closes the old connection."""
        conn = self._conns.get(node_id)
        if conn is not None and (conn.host, conn.port) == (host, port):
            return
        if conn is not None:
            self._close(conn, "address changed")
        self._conns[node_id] = _Connection(node_id, host, port)

    def is_ready(self, node_id: int) -> bool:
        conn = self._conns.get(node_id)
        return conn is not None and conn.state == READY and len(conn.in_flight) + self._queued(conn) < self.max_in_flight

    def is_connected(self, node_id: int) -> bool:
        conn = self._conns.get(node_id)
        return conn is not None and conn.state == READY

    @staticmethod
    def _queued(conn: _Connection) -> int:
        return sum(1 for _, inf in conn.out_requests if not inf.internal and not inf.expect_response)

    def ready(self, node_id: int, now: float) -> bool:
        """True if a request can go to node_id now; otherwise starts connecting when the backoff allows."""
        conn = self._conns.get(node_id)
        if conn is None:
            return False
        if conn.state == DISCONNECTED and now >= conn.last_attempt + self._backoff(conn):
            self._connect(conn, now)
        return self.is_ready(node_id)

    def connection_delay(self, node_id: int, now: float) -> float:
        """Seconds before node_id is worth trying again (0 if now)."""
        conn = self._conns.get(node_id)
        if conn is None or conn.state != DISCONNECTED:
            return 0.0 if conn is None or conn.state == READY else self.request_timeout
        return max(0.0, conn.last_attempt + self._backoff(conn) - now)

    def _backoff(self, conn: _Connection) -> float:
        if conn.failures == 0:
            return 0.0
        backoff: float = min(self.reconnect_backoff * (2 ** (conn.failures - 1)), self.reconnect_backoff_max)
        return backoff

    def least_loaded_node(self, now: float, candidates: Iterable[int] | None = None) -> int | None:
        """A broker to ask for metadata: ready with fewest in flight, else connectable soonest."""
        best, best_key = None, None
        for node_id in candidates if candidates is not None else list(self._conns):
            conn = self._conns.get(node_id)
            if conn is None:
                continue
            if conn.state == READY:
                key = (0, len(conn.in_flight))
            elif conn.state in (CONNECTING, HANDSHAKING, NEGOTIATING, AUTHENTICATING):
                key = (1, 0)
            elif now >= conn.last_attempt + self._backoff(conn):
                key = (2, conn.failures)
            else:
                continue
            if best_key is None or key < best_key:
                best, best_key = node_id, key
        return best

    def _connect(self, conn: _Connection, now: float) -> None:
        conn.last_attempt = now
        try:
            infos = socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            conn.failures += 1
            log.warning("cannot resolve broker %d at %s:%d: %s", conn.node_id, conn.host, conn.port, exc)
            return
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024 * 1024)
        except OSError:
            pass
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            conn.failures += 1
            log.info("connection to broker %d at %s:%d failed: %s", conn.node_id, conn.host, conn.port, errno.errorcode.get(err, err))
            return
        conn.sock = sock
        conn.state = CONNECTING
        conn.splitter = protocol.FrameSplitter(self.max_frame_size)
        conn.registered_events = selectors.EVENT_WRITE
        self._selector.register(sock, selectors.EVENT_WRITE, conn)
        log.debug("connecting to broker %d at %s:%d", conn.node_id, conn.host, conn.port)
        if err == 0:
            self._on_connected(conn, now)

    def _on_connected(self, conn: _Connection, now: float) -> None:
        security = self.security
        if security is not None and security.ssl_context is not None:
            try:
                conn.tls = TlsTransport(security.ssl_context, conn.host)
            except (ssl.SSLError, ValueError) as exc:
                self._auth_failed(conn, SslAuthenticationError(self._tls_failure(conn, exc)))
                return
            conn.state = HANDSHAKING
            self._tls_handshake(conn, 0, now)
            return
        conn.state = NEGOTIATING
        self._send_api_versions(conn, API_VERSIONS.max_version, now)

    # ---- TLS ------------------------------------------------------------------------------------------------------
    def _tls_handshake(self, conn: _Connection, mask: int, now: float) -> None:
        """Drives the TLS handshake with what the socket has; then ApiVersions, over TLS."""
        sock, tls = conn.sock, conn.tls
        if sock is None or tls is None:
            return
        try:
            if mask & selectors.EVENT_READ:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    self._close(conn, "closed by the broker during the TLS handshake", failed=True)
                    return
                tls.incoming.write(data)
            done = tls.handshake()
            tls.flush(sock)
        except (BlockingIOError, InterruptedError):
            return
        except ssl.SSLError as exc:
            self._auth_failed(conn, SslAuthenticationError(self._tls_failure(conn, exc)))
            return
        except OSError as exc:
            self._close(conn, f"TLS handshake failed: {exc}", failed=True)
            return
        if not done:
            self._set_events(conn, selectors.EVENT_READ | (selectors.EVENT_WRITE if tls.has_output() else 0))
            return
        log.debug("TLS with broker %d at %s:%d: %s, %s", conn.node_id, conn.host, conn.port,
                  tls.obj.version(), tls.obj.cipher())
        conn.state = NEGOTIATING
        self._send_api_versions(conn, API_VERSIONS.max_version, now)
        self._want_write(conn, True)

    @staticmethod
    def _tls_failure(conn: _Connection, exc: BaseException) -> str:
        return (f"TLS handshake with broker {conn.node_id} at {conn.host}:{conn.port} failed: "
                f"{describe_ssl_error(exc)}")

    def _set_events(self, conn: _Connection, events: int) -> None:
        if conn.sock is not None and conn.registered_events != events:
            self._selector.modify(conn.sock, events, conn)
            conn.registered_events = events

    # ---- SASL: SaslClientAuthenticator decides, this keeps the connection ----------------------------------------
    def _authenticate(self, conn: _Connection, answer: ClientResponse | None, now: float) -> None:
        """Sends the authenticator's next request (the first when answer is None), or makes the connection READY
        when it has none; its refusal closes the connection, as Java's Selector does with an authenticator's."""
        auth = conn.sasl
        if auth is None:  # SASL requests go out only on connections that have an authenticator
            return
        try:
            request = auth.start(conn.api_versions) if answer is None else \
                auth.on_response(answer.api_key, answer.body or {}, now)
        except AuthenticationError as exc:
            # Kept and raised later by send() in the application's threads: without this thread's frames.
            self._auth_failed(conn, exc.with_traceback(None))
            return
        if request is None:
            self._set_ready(conn, f"authenticated ({auth.mechanism}) with")
            return
        api, version, body = request
        self._enqueue(conn, api.key, version, body, None, True, None, now, internal=True)

    def _set_ready(self, conn: _Connection, how: str) -> None:
        conn.state = READY
        conn.failures = 0
        if self.auth_error is not None:  # a connection got through after failed ones
            self.auth_error = None
            if self.on_auth is not None:
                self.on_auth(conn.node_id, None)
        log.info("%s broker %d at %s:%d", how, conn.node_id, conn.host, conn.port)

    def _auth_failed(self, conn: _Connection, err: AuthenticationError) -> None:
        # Logged as a warning when it is new; the same refusal at every reconnect attempt after it only at INFO.
        repeated = self.auth_error is not None and str(self.auth_error) == str(err)
        log.log(logging.INFO if repeated else logging.WARNING, "%s", err)
        self._close(conn, str(err), failed=True)
        self.auth_error = err
        if self.on_auth is not None:
            self.on_auth(conn.node_id, err)

    def _maybe_reauthenticate(self, conn: _Connection, now: float) -> None:
        """KIP-368: a READY connection whose session is about to expire stops taking requests; once nothing is in
        flight or queued on it, it authenticates again (a new token from OAUTHBEARER's provider)."""
        if conn.state == READY:
            log.debug("re-authenticating with broker %d once its %d request(s) in flight are answered",
                      conn.node_id, len(conn.in_flight))
            conn.state = AUTHENTICATING
            conn.reauth_pending = True
        if not conn.in_flight and not conn.out:
            conn.reauth_pending = False
            self._authenticate(conn, None, now)

    def _send_api_versions(self, conn: _Connection, version: int, now: float) -> None:
        body = {"client_software_name": "kafkaprod", "client_software_version": __version__}
        self._enqueue(conn, API_VERSIONS.key, version, body, None, True, None, now, internal=True)

    def _on_api_versions(self, conn: _Connection, resp: ClientResponse, now: float) -> None:
        body = resp.body or {}
        code = body.get("error_code", 0)
        try:
            retry = protocol.api_versions_fallback(body, resp.api_version) if code == ErrorCode.UNSUPPORTED_VERSION else None
        except UnsupportedVersionError as exc:
            self._close(conn, str(exc), failed=True)
            return
        if retry is not None:
            # The broker does not know this ApiVersions version: retry with the highest it listed, or v0.
            log.debug("broker %d rejected ApiVersions v%d; retrying with v%d", conn.node_id, resp.api_version, retry)
            self._send_api_versions(conn, retry, now)
            return
        if code != 0:
            self._close(conn, f"ApiVersions error {code}")
            return
        conn.api_versions = {k["api_key"]: (k["min_version"], k["max_version"]) for k in body.get("api_keys", ())}
        security = self.security
        if security is not None and security.new_sasl is not None:
            conn.sasl = SaslClientAuthenticator(security, conn.node_id, conn.host, conn.port)
            conn.state = AUTHENTICATING
            self._authenticate(conn, None, now)
            return
        self._set_ready(conn, "connected to")

    def api_version(self, node_id: int, api: Api) -> int:
        """Highest version of api that both this client and the broker support."""
        theirs = self._conns[node_id].api_versions.get(api.key)
        if theirs is None:
            raise UnsupportedVersionError(f"broker {node_id} does not support {api.name}")
        return protocol.negotiate_version(api.key, theirs[0], theirs[1])

    # ---- requests -----------------------------------------------------------------------------------------------
    def send(
        self,
        node_id: int,
        api: Api,
        body: Mapping[str, Any],
        request: Any = None,
        expect_response: bool = True,
        on_done: Callable[[ClientResponse], None] | None = None,
        now: float | None = None,
        version: int | None = None,
    ) -> int:
        """Queues a request to a ready node; returns its correlation id. The answer arrives through poll()."""
        conn = self._conns[node_id]
        if conn.state != READY:
            raise RuntimeError(f"send() to broker {node_id} which is not ready ({conn.state})")
        v = self.api_version(node_id, api) if version is None else version
        return self._enqueue(conn, api.key, v, body, request, expect_response, on_done,
                             time.monotonic() if now is None else now)

    def _enqueue(self, conn: _Connection, api_key: int, version: int, body: Mapping[str, Any], request: Any,
                 expect_response: bool, on_done: Callable[[ClientResponse], None] | None, now: float,
                 internal: bool = False) -> int:
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        cid = self._correlation
        pieces = protocol.encode_request(api_key, version, cid, self.client_id, body)
        inf = _InFlight(cid, api_key, version, request, now, now + self.request_timeout, expect_response, on_done, internal)
        out = conn.out
        for piece in pieces:
            # Memoryviews here are flat byte views already (the Produce codec's slices, every record batch that
            # MemoryRecordsBuilder.close() gives): a new view each is two objects per partition of a request, which
            # at a thousand partitions cost as much as encoding it.
            if type(piece) is not memoryview:
                piece = memoryview(piece).cast("B")
            out.append(piece)
        conn.out_requests.append((len(conn.out), inf))
        if expect_response:
            conn.in_flight[cid] = inf
        else:
            conn.noreply.append(cid)
        self._write_soon(conn)
        return cid

    def _write_soon(self, conn: _Connection) -> None:
        # A connected socket is written at the start of the next poll() instead of after a write event: asking
        # epoll for write events and back is an epoll_ctl each way, and epoll_ctl releases the GIL -- with send()
        # keeping the caller's thread busy, each release costs the I/O thread up to the GIL switch interval, twice
        # per request. Write events are asked for only when the socket is full.
        if conn.state in (READY, NEGOTIATING, AUTHENTICATING) and conn.sock is not None:
            if conn not in self._write_soon_conns:
                self._write_soon_conns.append(conn)
        else:
            self._want_write(conn, True)

    def _write_queued(self) -> None:
        conns, self._write_soon_conns = self._write_soon_conns, []
        now = time.monotonic()
        for conn in conns:
            if conn.sock is None or not conn.out or conn.registered_events & selectors.EVENT_WRITE:
                continue  # closed meanwhile, nothing left, or already waiting for a write event
            self._write(conn, now)
            if conn.sock is not None and conn.out:
                self._want_write(conn, True)  # the socket is full

    def _want_write(self, conn: _Connection, on: bool) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if on else 0)
        if conn.sock is not None and conn.registered_events != events and conn.state != CONNECTING \
                and conn.state != HANDSHAKING:
            self._selector.modify(conn.sock, events, conn)
            conn.registered_events = events

    # ---- I/O ------------------------------------------------------------------------------------------------------
    def wakeup(self) -> None:
        """Interrupts a poll() in progress (any thread); cheap when a wakeup is already pending."""
        if not self._woken:
            self._woken = True
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def poll(self, timeout: float) -> list[ClientResponse]:
        """Waits up to timeout seconds for I/O, does it, and returns every request completed meanwhile."""
        if self._write_soon_conns:
            self._write_queued()
        if self._completed:
            timeout = 0.0
        else:
            # Wake up for the earliest request or connect deadline: otherwise a broker that never answers keeps
            # the Sender asleep for the whole timeout (up to metadata_max_age_ms) and request_timeout_ms is
            # only noticed once something else happens.
            timeout = min(timeout, self._time_to_next_deadline(time.monotonic()))
        try:
            events = self._ready_now() if timeout <= 0.0 and self._epoll_fd >= 0 else self._selector.select(max(0.0, timeout))
        except InterruptedError:
            events = []
        now = time.monotonic()
        for key, mask in events:
            conn = key.data
            if conn is None:
                self._drain_wakeups()
                continue
            if conn.sock is None:
                continue
            if conn.state == CONNECTING:
                self._finish_connect(conn, now)
                continue
            if conn.state == HANDSHAKING:
                self._tls_handshake(conn, mask, now)
                continue
            if mask & selectors.EVENT_READ:
                self._read(conn, now)
            if conn.sock is not None and mask & selectors.EVENT_WRITE:
                self._write(conn, now)
        self._expire_requests(now)
        done, self._completed = self._completed, []
        return done

    def _ready_now(self) -> list[tuple[selectors.SelectorKey, int]]:
        # selectors.EpollSelector.select(0), translated the same way, without releasing the GIL.
        ready = []
        for fd, ev in sockio.epoll_ready(self._epoll_fd):
            mask = (selectors.EVENT_WRITE if ev & ~_EPOLL_IN else 0) | (selectors.EVENT_READ if ev & ~_EPOLL_OUT else 0)
            try:
                key = self._selector.get_key(fd)
            except KeyError:
                continue
            ready.append((key, mask & key.events))
        return ready

    def _time_to_next_deadline(self, now: float) -> float:
        earliest = float("inf")
        for conn in self._conns.values():
            if conn.sock is None:
                continue
            if conn.state == CONNECTING or conn.state == HANDSHAKING:
                earliest = min(earliest, conn.last_attempt + self.request_timeout)
            elif conn.sasl is not None and conn.sasl.reauth_at and conn.state == READY:
                earliest = min(earliest, conn.sasl.reauth_at)
            for inf in conn.in_flight.values():
                if inf.deadline < earliest:
                    earliest = inf.deadline
        return max(0.0, earliest - now)

    def _read_wake(self) -> bytes | None:
        # One read of the wake socket: what was there, or b""/None when it is empty.
        if _HELD_IO:
            return sockio.recv_bytes(self._wake_r.fileno(), self._recv_buffer)
        return self._wake_r.recv(4096)

    def _drain_wakeups(self) -> None:
        try:
            while self._read_wake():
                pass
        except (BlockingIOError, InterruptedError):
            pass
        # Cleared only after the bytes are read: a wakeup() that lands during the read must not leave the flag
        # set with no byte pending, or every later wakeup() would be skipped and poll() would sleep its full time.
        self._woken = False

    def _finish_connect(self, conn: _Connection, now: float) -> None:
        if conn.sock is None:  # poll() calls this for connecting sockets only
            return
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            log.info("connection to broker %d at %s:%d failed: %s", conn.node_id, conn.host, conn.port, errno.errorcode.get(err, err))
            self._close(conn, "connect failed", failed=True)
            return
        conn.registered_events = 0
        self._on_connected(conn, now)
        if conn.state != HANDSHAKING:
            self._want_write(conn, bool(conn.out))

    def _write(self, conn: _Connection, now: float) -> None:
        sock = conn.sock
        if sock is None:  # poll() calls this for open sockets only
            return
        if conn.tls is not None:
            self._write_tls(conn, sock, conn.tls, now)
            return
        while conn.out:
            try:
                if _HELD_IO:
                    sent = sockio.send_pieces(sock.fileno(), conn.out)
                    if sent < 0:
                        return  # the socket is full: wait for the next write event
                else:
                    sent = sock.sendmsg(list(conn.out)[:512])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(conn, f"send failed: {exc}")
                return
            self._consume(conn, sent, now)
        self._want_write(conn, False)

    def _write_tls(self, conn: _Connection, sock: socket.socket, tls: TlsTransport, now: float) -> None:
        # Batched: the queued pieces are encrypted together (up to 1 MiB per round) and the ciphertext goes out in
        # as few send() calls as the socket takes; a request counts as sent once it is encrypted.
        try:
            while True:
                if not tls.flush(sock):
                    return  # the socket is full: wait for the next write event
                if not conn.out:
                    break
                self._consume(conn, tls.encrypt(conn.out), now)
        except ssl.SSLError as exc:
            self._close(conn, f"TLS error while sending: {describe_ssl_error(exc)}")
            return
        except OSError as exc:
            self._close(conn, f"send failed: {exc}")
            return
        self._want_write(conn, False)

    def _consume(self, conn: _Connection, sent: int, now: float) -> None:
        out = conn.out
        removed = 0
        while sent and out:
            head = out[0]
            if len(head) <= sent:
                sent -= len(head)
                out.popleft()
                removed += 1
            else:
                out[0] = head[sent:]
                sent = 0
        # Shift request end markers by the pieces written; requests whose last piece is gone are on the wire.
        if removed:
            reqs = conn.out_requests
            shifted: collections.deque[tuple[int, _InFlight]] = collections.deque()
            for end, inf in reqs:
                end -= removed
                if end <= 0:
                    inf.sent_at = now
                    inf.deadline = now + self.request_timeout
                    if not inf.expect_response:
                        self._completed.append(ClientResponse(conn.node_id, inf.api_key, inf.api_version, inf.request))
                        self._finish(inf, self._completed[-1])
                else:
                    shifted.append((end, inf))
            conn.out_requests = shifted

    def _read(self, conn: _Connection, now: float) -> None:
        sock, splitter = conn.sock, conn.splitter
        if sock is None or splitter is None:  # poll() calls this for open sockets only, which have a splitter
            return
        if conn.tls is not None:
            self._read_tls(conn, sock, conn.tls, splitter, now)
            return
        while True:
            data = self._recv(conn, sock)
            if not data or not self._feed(conn, splitter, data, now) or len(data) < _RECV_SIZE:
                return

    def _recv(self, conn: _Connection, sock: socket.socket) -> bytes | None:
        """One recv: its bytes; b"" when there is nothing more to read now; None when the connection failed or
        the broker closed it (it is closed then)."""
        try:
            if _HELD_IO:
                held = sockio.recv_bytes(sock.fileno(), self._recv_buffer)
                if held is None:
                    return b""
                data = held
            else:
                data = sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._close(conn, f"receive failed: {exc}")
            return None
        if not data:
            self._close(conn, "closed by the broker")
            return None
        return data

    def _feed(self, conn: _Connection, splitter: protocol.FrameSplitter, data: bytes, now: float) -> bool:
        """Plaintext bytes into the frame splitter, and each whole frame handled; False once the connection is
        closed (a bad frame, or an answer that closed it)."""
        try:
            frames = splitter.feed(data)
        except ProtocolError as exc:
            self._close(conn, f"bad frame: {exc}")
            return False
        for frame in frames:
            if not self._handle_frame(conn, frame, now):
                return False
        return True

    def _read_tls(self, conn: _Connection, sock: socket.socket, tls: TlsTransport, splitter: protocol.FrameSplitter,
                  now: float) -> None:
        while True:
            data = self._recv(conn, sock)
            if data is None:
                return
            if not data:
                break
            try:
                chunks = tls.decrypt(data)
            except ssl.SSLZeroReturnError:
                self._close(conn, "closed by the broker (TLS close_notify)")
                return
            except ssl.SSLError as exc:
                if conn.state == NEGOTIATING:
                    # With TLS 1.3 the broker checks the client's certificate after the client has finished its
                    # side of the handshake: its refusal arrives as an alert in place of the first answer.
                    self._auth_failed(conn, SslAuthenticationError(self._tls_failure(conn, exc)))
                else:
                    self._close(conn, f"TLS error while receiving: {describe_ssl_error(exc)}")
                return
            for chunk in chunks:
                if not self._feed(conn, splitter, chunk, now):
                    return
            if len(data) < _RECV_SIZE:
                break
        if tls.has_output():  # TLS's own messages (a key update, say) to send back
            self._want_write(conn, True)

    def _handle_frame(self, conn: _Connection, frame: bytes, now: float) -> bool:
        try:
            cid = protocol.read_correlation_id(frame)
        except ProtocolError as exc:
            self._close(conn, f"bad frame: {exc}")
            return False
        inf = conn.in_flight.pop(cid, None)
        if inf is None:
            if cid in conn.noreply:
                return True  # an answer to an acks=0 request that the broker sent anyway
            self._close(conn, f"response with unknown correlation id {cid}")
            return False
        try:
            # The correlation id already ties the frame to its request and the body parsed whole, so bytes after
            # it are ignored, as the Java client and librdkafka do: librdkafka's mock cluster ends flexible
            # Metadata answers with a second empty tag section, and refusing that would refuse all its metadata.
            body = protocol.decode_response(inf.api_key, inf.api_version, frame, allow_trailing=True)
        except ProtocolError as exc:
            conn.in_flight[cid] = inf  # failed below with the others on this connection
            self._close(conn, f"undecodable {inf.api_key} v{inf.api_version} response: {exc}")
            return False
        resp = ClientResponse(conn.node_id, inf.api_key, inf.api_version, inf.request, body=body, latency=now - inf.sent_at)
        if inf.internal:
            if inf.api_key == API_VERSIONS.key:
                self._on_api_versions(conn, resp, now)
            else:
                self._authenticate(conn, resp, now)
            return conn.sock is not None
        self._completed.append(resp)
        self._finish(inf, resp)
        return True

    @staticmethod
    def _finish(inf: _InFlight, resp: ClientResponse) -> None:
        if inf.on_done is not None:
            inf.on_done(resp)

    def _expire_requests(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if conn.sock is None:
                continue
            if (conn.state == CONNECTING or conn.state == HANDSHAKING) and now - conn.last_attempt > self.request_timeout:
                self._close(conn, "connect timed out" if conn.state == CONNECTING else "TLS handshake timed out",
                            failed=True)
                continue
            auth = conn.sasl
            if conn.reauth_pending or (auth is not None and 0 < auth.reauth_at <= now and conn.state == READY):
                self._maybe_reauthenticate(conn, now)
            for inf in conn.in_flight.values():
                if inf.deadline <= now:
                    self._close(conn, f"request (api {inf.api_key}) timed out after {self.request_timeout * 1000:.0f} ms", timed_out=True)
                    break

    def _close(self, conn: _Connection, reason: str, failed: bool = False, timed_out: bool = False) -> None:
        if conn.sock is not None:
            try:
                self._selector.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
            conn.sock = None
        was = conn.state
        conn.state = DISCONNECTED
        conn.tls = None
        conn.sasl = None
        conn.reauth_pending = False
        if failed or was != READY:
            conn.failures += 1
        log.info("disconnected from broker %d at %s:%d: %s", conn.node_id, conn.host, conn.port, reason)
        pending = list(conn.in_flight.values())
        pending += [inf for _, inf in conn.out_requests if not inf.expect_response]
        conn.in_flight.clear()
        conn.out.clear()
        conn.out_requests.clear()
        conn.registered_events = 0
        for inf in pending:
            if inf.internal:
                continue
            resp = ClientResponse(conn.node_id, inf.api_key, inf.api_version, inf.request, disconnected=True,
                                  timed_out=timed_out, error=ConnectionError(f"broker {conn.node_id}: {reason}"))
            self._completed.append(resp)
            self._finish(inf, resp)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns.values():
            if conn.sock is not None:
                self._close(conn, "client closed")
        self._completed.clear()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
