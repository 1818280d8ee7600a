"""Secured peers for tests/test_security.py: certificates, a stunnel4 TLS front, and a SASL-terminating front.

Nothing here ships a Kafka broker with TLS or SASL, so the secured cluster is built from real parts:

- **TLS**: Debian's stunnel4 (:class:`kafkaprod.tools.tls_front.Stunnel`, shared with the TLS benchmark) in
  front of a Tansu broker that advertises stunnel's port, so every connection a client makes (bootstrap and
  leader) goes through TLS; a client CA makes it mutual TLS. Certificates come from ``trustme``.
- **SASL**: :class:`SaslFront`, a small server of our own in front of Tansu. It answers ApiVersions (Tansu's
  list plus SaslHandshake and SaslAuthenticate), SaslHandshake and SaslAuthenticate itself, then relays every
  other frame to Tansu over its own connection. Its SCRAM server side is ``scramp``'s; PLAIN and OAUTHBEARER
  are one comparison each. Every SASL test first passes confluent-kafka (librdkafka) through the same front, so
  the front is proved against a client kafkaprod's authors did not write. It also speaks KIP-368: a session
  lifetime in SaslAuthenticate v1+, re-authentication on the same connection, and closing a connection whose
  session expired when a request other than SASL's arrives (as Kafka's brokers do).

Each peer runs until ``stop()`` and is killed (stunnel) or closed (front) at teardown.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import scramp

from kafkaprod import protocol
from kafkaprod.protocol.messages import API_VERSIONS, SASL_AUTHENTICATE, SASL_HANDSHAKE
from kafkaprod.tools.broker import fetch_api_versions, free_port, recv_exactly
from kafkaprod.tools.tls_front import Stunnel

__all__ = ["LOOPBACK", "SaslFront", "Stunnel", "free_port"]

LOOPBACK = "127.0.0.1"


# ---- SASL: the front -------------------------------------------------------------------------------------------------

def _read_frame(sock: socket.socket) -> bytes | None:
    """One size-prefixed Kafka frame; None once the client is gone (or sends a nonsense size)."""
    try:
        (size,) = struct.unpack(">i", recv_exactly(sock, 4))
        if not 0 < size <= 100 * 1024 * 1024:
            return None
        return recv_exactly(sock, size)
    except OSError:  # ConnectionError included: closed midway
        return None


class _Session:
    """One client connection through the front."""

    def __init__(self, front: SaslFront, client: socket.socket) -> None:
        self.front = front
        self.client = client
        self.upstream: socket.socket | None = None
        self.write_lock = threading.Lock()
        self.mechanism: str | None = None
        self.exchange: Any = None  # per mechanism: a scramp server, or a step marker
        self.step = 0
        self.user: str | None = None
        self.authenticated = False
        self.expires_at = 0.0
        self.closed = False

    # -- plumbing ------------------------------------------------------------------------------------------------
    def send_to_client(self, frame_chunks: list[Any]) -> None:
        data = b"".join(bytes(c) for c in frame_chunks)
        with self.write_lock:
            self.client.sendall(data)

    def close(self) -> None:
        self.closed = True
        for sock in (self.client, self.upstream):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def run(self) -> None:
        try:
            while not self.closed:
                frame = _read_frame(self.client)
                if frame is None:
                    return
                api_key, api_version, cid = struct.unpack_from(">hhi", frame, 0)
                if api_key == API_VERSIONS.key:
                    self.api_versions(api_version, cid)
                elif api_key == SASL_HANDSHAKE.key:
                    if not self.handshake(frame):
                        return
                elif api_key == SASL_AUTHENTICATE.key:
                    if not self.authenticate(frame):
                        return
                else:
                    if not self.authenticated:
                        self.front.count("unauthenticated_requests")
                        return  # Kafka closes a connection that sends requests before authenticating
                    if self.front.session_lifetime_ms and time.monotonic() > self.expires_at:
                        self.front.count("expired_closes")
                        return  # KIP-368: the session expired and the client did not re-authenticate
                    assert self.upstream is not None
                    self.upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            return
        finally:
            self.close()

    def relay_answers(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        try:
            while not self.closed:
                frame = _read_frame(upstream)
                if frame is None:
                    return
                if self.front.answer_delay_s:
                    time.sleep(self.front.answer_delay_s)  # keeps requests in flight longer
                with self.write_lock:
                    self.client.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            return
        finally:
            self.close()

    # -- the three APIs the front answers itself -----------------------------------------------------------------
    def api_versions(self, version: int, cid: int) -> None:
        keys = dict(self.front.upstream_versions)
        keys[SASL_HANDSHAKE.key] = (SASL_HANDSHAKE.min_version, SASL_HANDSHAKE.max_version)
        keys[SASL_AUTHENTICATE.key] = (SASL_AUTHENTICATE.min_version, SASL_AUTHENTICATE.max_version)
        if version > API_VERSIONS.max_version:
            body: dict[str, Any] = {"error_code": 35, "api_keys": [
                {"api_key": API_VERSIONS.key, "min_version": 0, "max_version": API_VERSIONS.max_version}]}
            version = 0
        else:
            body = {"error_code": 0, "api_keys": [
                {"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in sorted(keys.items())]}
        self.send_to_client(protocol.encode_response(API_VERSIONS.key, version, cid, body))

    def handshake(self, frame: bytes) -> bool:
        req = protocol.decode_request(frame)
        mechanism = req.body["mechanism"]
        enabled = sorted(self.front.mechanisms)
        if self.authenticated and mechanism != self.mechanism:
            return False  # a re-authentication must use the same mechanism (KIP-368)
        if mechanism not in self.front.mechanisms:
            self.send_to_client(protocol.encode_response(SASL_HANDSHAKE.key, req.api_version, req.correlation_id,
                                                         {"error_code": 33, "mechanisms": enabled}))
            return True
        self.mechanism = mechanism
        self.step = 0
        self.exchange = None
        self.send_to_client(protocol.encode_response(SASL_HANDSHAKE.key, req.api_version, req.correlation_id,
                                                     {"error_code": 0, "mechanisms": enabled}))
        return True

    def authenticate(self, frame: bytes) -> bool:
        req = protocol.decode_request(frame)
        token: bytes = req.body["auth_bytes"]
        if self.mechanism is None:
            return False
        try:
            reply, done = self.front.evaluate(self, token)
        except _Refused as exc:
            self.front.count("failures")
            self.answer(req, 58, str(exc), b"", 0)
            return False  # Kafka closes the connection after a failed authentication
        lifetime = self.front.session_lifetime_ms if done else 0
        if done:
            reauth = self.authenticated
            self.authenticated = True
            self.expires_at = time.monotonic() + lifetime / 1000.0
            self.front.count("reauthentications" if reauth else "authentications")
            self.front.count(f"ok:{self.mechanism}:{self.user}")
            if self.upstream is None:
                self.upstream = socket.create_connection((LOOPBACK, self.front.upstream_port))
                self.front.start_thread(self.relay_answers)
        self.answer(req, 0, None, reply, lifetime)
        return True

    def answer(self, req: protocol.DecodedRequest, code: int, message: str | None, auth: bytes, lifetime: int) -> None:
        self.send_to_client(protocol.encode_response(SASL_AUTHENTICATE.key, req.api_version, req.correlation_id, {
            "error_code": code, "error_message": message, "auth_bytes": auth, "session_lifetime_ms": lifetime}))


class _Refused(Exception):
    pass


class SaslFront:
    """A SASL-terminating front on ``port`` relaying to a Kafka broker on ``upstream_port`` (see the module doc).

    ``users``: user name -> password (PLAIN and both SCRAMs); ``tokens``: OAUTHBEARER tokens accepted.
    ``session_lifetime_ms`` > 0 makes sessions expire (KIP-368). ``counts`` records authentications,
    re-authentications, failures and connections closed for an expired session. ``answer_delay_s`` holds every
    answer relayed from the broker that long, so that requests are in flight when a session is due.
    """

    def __init__(self, port: int, upstream_port: int, users: Mapping[str, str], tokens: set[str] | None = None,
                 mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"),
                 session_lifetime_ms: int = 0, answer_delay_s: float = 0.0) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.mechanisms = set(mechanisms)
        self.session_lifetime_ms = session_lifetime_ms
        self.answer_delay_s = answer_delay_s
        self.users = dict(users)
        self.tokens = set(tokens or ())
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._scram = {name: scramp.ScramMechanism(name) for name in ("SCRAM-SHA-256", "SCRAM-SHA-512")}
        self._scram_auth: dict[tuple[str, str], Any] = {}
        self.upstream_versions = fetch_api_versions(LOOPBACK, upstream_port)
        self._sessions: list[_Session] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((LOOPBACK, port), reuse_port=False)
        self._stopped = False
        self.start_thread(self._accept)

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def get(self, what: str) -> int:
        with self._lock:
            return self.counts.get(what, 0)

    def start_thread(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name="sasl-front")
        thread.start()
        with self._lock:
            self._threads.append(thread)

    def drop_connections(self) -> None:
        """Closes every client connection, so clients must connect (and authenticate) again."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        self.drop_connections()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.count("connections")
            session = _Session(self, client)
            with self._lock:
                self._sessions.append(session)
            self.start_thread(session.run)

    # -- the mechanisms' server sides ----------------------------------------------------------------------------
    def evaluate(self, session: _Session, token: bytes) -> tuple[bytes, bool]:
        """The answer to one SaslAuthenticate token and whether the exchange is complete; _Refused to fail it."""
        mechanism = session.mechanism
        if mechanism == "PLAIN":
            parts = token.split(b"\0")
            if len(parts) != 3:
                raise _Refused("Authentication failed: malformed PLAIN message")
            user, password = parts[1].decode(), parts[2].decode()
            if self.users.get(user) != password:
                raise _Refused("Authentication failed: Invalid username or password")
            session.user = user
            return b"", True
        if mechanism in self._scram:
            return self._scram_step(session, mechanism, token)
        if mechanism == "OAUTHBEARER":
            if session.step == 1:  # the client's ^A after our error challenge
                raise _Refused(f"Authentication failed during authentication due to invalid credentials with SASL "
                               f"mechanism OAUTHBEARER: {session.exchange}")
            text = token.decode(errors="replace")
            fields = dict(kv.split("=", 1) for kv in text.split("\x01")[1:] if "=" in kv)
            auth = fields.get("auth", "")
            bearer = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
            if bearer not in self.tokens:
                session.step = 1
                session.exchange = '{"status":"invalid_token"}'
                return session.exchange.encode(), False
            session.user = "oauth"
            return b"", True
        raise _Refused(f"unknown mechanism {mechanism}")

    def _scram_step(self, session: _Session, mechanism: str, token: bytes) -> tuple[bytes, bool]:
        try:
            if session.step == 0:
                users: list[str] = []

                def auth_fn(user: str) -> Any:
                    users.append(user)
                    return self._auth_info(mechanism, user)

                server = self._scram[mechanism].make_server(auth_fn)
                server.set_client_first(token.decode())
                session.exchange = server
                session.user = users[0] if users else None
                session.step = 1
                return server.get_server_first().encode(), False
            server = session.exchange
            server.set_client_final(token.decode())
            session.step = 2
            return server.get_server_final().encode(), True
        except (scramp.ScramException, KeyError) as exc:
            raise _Refused(f"Authentication failed during authentication due to invalid credentials with SASL "
                           f"mechanism {mechanism}") from exc

    def _auth_info(self, mechanism: str, user: str) -> Any:
        password = self.users.get(user)
        if password is None:
            raise KeyError(user)  # unknown user: scramp fails the exchange
        key = (mechanism, user)
        with self._lock:
            if key not in self._scram_auth or self._scram_auth[key][0] != password:
                self._scram_auth[key] = (password, self._scram[mechanism].make_auth_info(password))
            return self._scram_auth[key][1]
