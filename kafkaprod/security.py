"""TLS and SASL for broker connections: what the security options become, and the pieces the NetworkClient uses.

- :func:`ssl_context_for` builds the ``ssl.SSLContext`` that ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_password`` and ``ssl_check_hostname`` describe (or takes ``ssl_context`` as given).
- :class:`TlsTransport` is one connection's TLS over memory BIOs: the socket stays non-blocking under the
  selector, ciphertext goes through ``ssl.MemoryBIO`` in both directions, and the queued request pieces are
  encrypted in one batch per write opportunity (small pieces coalesced into one TLS record) and sent with as
  few ``send`` calls as the socket allows.
- :class:`SaslMechanism` and its kinds (PLAIN, SCRAM-SHA-256/512 through ``scramp``, OAUTHBEARER) produce the
  tokens of one authentication: ``first_message()``, then ``respond(challenge)`` until it returns None;
  :mod:`kafkaprod.sasl_authenticator` carries them to the broker.
- :class:`Security` bundles what a NetworkClient needs; :func:`from_config` makes it from the producer's options
  (None for PLAINTEXT, so a plaintext client carries nothing of this).

Nothing here runs unless the options ask for it: the plaintext path never touches this module after start.
"""
from __future__ import annotations

import collections
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafkaprod._native import sockio
from kafkaprod.errors import SaslAuthenticationError

#: ``security_protocol`` values, and whether each uses TLS and SASL.
PROTOCOLS: dict[str, tuple[bool, bool]] = {
    "PLAINTEXT": (False, False),
    "SSL": (True, False),
    "SASL_PLAINTEXT": (False, True),
    "SASL_SSL": (True, True),
}
#: ``sasl_mechanism`` values kafkaprod speaks.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")

# Plaintext bytes encrypted per write opportunity before the ciphertext is handed to the socket, and the size
# under which queued pieces are copied together so that headers and small fields share one TLS record.
_ENCRYPT_BATCH = 1024 * 1024
_COALESCE_BELOW = 16 * 1024
# Writes that keep the GIL, as NetworkClient's (kafkaprod._native.sockio).
_HELD_IO = sockio.supported()


# ---- TLS ------------------------------------------------------------------------------------------------------------

def ssl_context_for(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The client SSLContext the ``ssl_*`` options describe; ``ssl_context`` itself when it is given.

    Certificate and key files are read here, so a missing file or a wrong ``ssl_password`` is refused when the
    producer is made (ValueError naming the option), not at the first connection.
    """
    given: ssl.SSLContext | None = options.get("ssl_context")  # an SSLContext: config.resolve() checked it
    if given is not None:
        return given
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = bool(options.get("ssl_check_hostname", True))
    cafile = options.get("ssl_cafile")
    if cafile is not None:
        try:
            ctx.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"option 'ssl_cafile': cannot load CA certificates from {cafile!r}: {exc}") from exc
    certfile = options.get("ssl_certfile")
    if certfile is not None:
        keyfile = options.get("ssl_keyfile")
        try:
            ctx.load_cert_chain(certfile, keyfile, options.get("ssl_password"))
        except (OSError, ssl.SSLError) as exc:
            what = "'ssl_certfile'/'ssl_keyfile'" if keyfile is not None else "'ssl_certfile'"
            raise ValueError(f"option {what}: cannot load the client certificate and key from "
                             f"{certfile!r}{'' if keyfile is None else ' and ' + repr(keyfile)} "
                             f"(wrong 'ssl_password', or the key does not match the certificate?): {exc}") from exc
    return ctx


def describe_ssl_error(exc: BaseException) -> str:
    """What a TLS failure refused, in words: the verification message for certificate errors, else the reason."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        msg = exc.verify_message or exc.reason or str(exc)
        return f"certificate verify failed: {msg}"
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").lower().replace("_", " ")
        if reason:
            if "alert" in reason:
                return f"the broker refused the handshake ({reason})"
            return reason
    return str(exc) or type(exc).__name__


class TlsTransport:
    """TLS for one connection over memory BIOs; the NetworkClient moves bytes between them and the socket."""

    __slots__ = ("obj", "incoming", "outgoing", "pending")

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=server_hostname)
        self.pending = memoryview(b"")  # ciphertext taken from `outgoing` that the socket has not accepted yet

    def handshake(self) -> bool:
        """One step of the handshake with what has arrived; True once it is complete. Raises ssl.SSLError."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def has_output(self) -> bool:
        return bool(self.pending) or self.outgoing.pending > 0

    def flush(self, sock: Any) -> bool:
        """Hands ciphertext to the socket until it is all written (True) or the socket is full (False)."""
        while True:
            if not self.pending:
                if not self.outgoing.pending:
                    return True
                self.pending = memoryview(self.outgoing.read())
            try:
                if _HELD_IO:
                    sent = sockio.send_pieces(sock.fileno(), (self.pending,))
                    if sent < 0:
                        return False
                else:
                    sent = sock.send(self.pending)
            except (BlockingIOError, InterruptedError):
                return False
            self.pending = self.pending[sent:]

    def encrypt(self, pieces: collections.deque[memoryview]) -> int:
        """Encrypts the queued plaintext pieces, up to about 1 MiB, into the outgoing BIO without removing them;
        returns the bytes encrypted (the caller drops that many from the queue). Pieces under 16 KiB are copied
        together first, so a request's small header and field pieces share TLS records instead of one each."""
        write = self.obj.write
        total = 0
        small = bytearray()
        for piece in pieces:
            n = len(piece)
            if n < _COALESCE_BELOW:
                small += piece
            else:
                if small:
                    write(small)
                    small = bytearray()
                write(piece)
            total += n
            if total >= _ENCRYPT_BATCH:
                break
        if small:
            write(small)
        return total

    def decrypt(self, data: bytes) -> list[bytes]:
        """Feeds ciphertext in and returns the plaintext it completes. Raises ssl.SSLError (ssl.SSLZeroReturnError
        when the broker closed the TLS session)."""
        self.incoming.write(data)
        out = []
        read = self.obj.read
        while True:
            try:
                chunk = read(256 * 1024)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            out.append(chunk)
        return out


# ---- SASL -----------------------------------------------------------------------------------------------------------

class SaslMechanism:
    """One authentication exchange of a SASL mechanism: ``first_message()``, then ``respond()`` to each answer
    of the broker until it returns None (done). Raises SaslAuthenticationError when the broker's answer proves
    something wrong (SCRAM's server signature)."""

    name = ""

    def first_message(self) -> bytes:
        raise NotImplementedError

    def respond(self, challenge: bytes) -> bytes | None:
        raise NotImplementedError


class PlainMechanism(SaslMechanism):
    """PLAIN (RFC 4616): authorization id (empty), user name and password, NUL-separated, in one message."""

    name = "PLAIN"

    def __init__(self, username: str, password: str) -> None:
        self._message = b"\0" + username.encode() + b"\0" + password.encode()

    def first_message(self) -> bytes:
        return self._message

    def respond(self, challenge: bytes) -> bytes | None:
        return None  # the broker's success answer ends it


class ScramMechanism(SaslMechanism):
    """SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677) through ``scramp``'s client: client-first, then the
    client-final proof for the server-first message, then the check of the server's signature."""

    def __init__(self, name: str, username: str, password: str) -> None:
        import scramp  # the one SCRAM implementation used; imported only when SCRAM is configured

        self.name = name
        self._scramp = scramp
        self._client = scramp.ScramClient([name], username, password)
        self._step = 0

    def first_message(self) -> bytes:
        self._step = 1
        first: str = self._client.get_client_first()
        return first.encode()

    def respond(self, challenge: bytes) -> bytes | None:
        try:
            if self._step == 1:
                self._step = 2
                self._client.set_server_first(challenge.decode())
                final: str = self._client.get_client_final()
                return final.encode()
            if self._step == 2:
                self._step = 3
                self._client.set_server_final(challenge.decode())
                return None
        except (self._scramp.ScramException, UnicodeDecodeError) as exc:
            raise SaslAuthenticationError(f"{self.name}: the broker's answer does not check out: {exc}") from exc
        raise SaslAuthenticationError(f"{self.name}: the broker asked for more after the exchange was complete")


class OAuthBearerMechanism(SaslMechanism):
    """OAUTHBEARER (RFC 7628): the token from ``token_provider.token()``, asked for at every authentication (a
    new connection, or a re-authentication before the session the last token opened expires), plus the
    provider's ``extensions()`` when it has them."""

    name = "OAUTHBEARER"

    def __init__(self, token_provider: Any) -> None:
        self._provider = token_provider
        self.refusal: str | None = None

    def first_message(self) -> bytes:
        try:
            token = self._provider.token()
            extensions = self._provider.extensions() if callable(getattr(self._provider, "extensions", None)) else {}
        except Exception as exc:
            raise SaslAuthenticationError(f"OAUTHBEARER: sasl_oauth_token_provider.token() failed: "
                                          f"{type(exc).__name__}: {exc}") from exc
        if isinstance(token, bytes):
            token = token.decode()
        if not isinstance(token, str) or not token:
            raise SaslAuthenticationError(f"OAUTHBEARER: sasl_oauth_token_provider.token() returned {token!r}, "
                                          f"not a token string")
        extra = "".join(f"\x01{k}={v}" for k, v in (extensions or {}).items())
        return f"n,,\x01auth=Bearer {token}{extra}\x01\x01".encode()

    def respond(self, challenge: bytes) -> bytes | None:
        if challenge:
            # A refusal comes as a JSON error challenge; RFC 7628 has the client answer it with a lone ^A, after
            # which the broker fails the authentication. Keep what it said for the error.
            self.refusal = challenge.decode(errors="replace")
            return b"\x01"
        return None


@dataclass(frozen=True)
class Security:
    """What a NetworkClient needs for secured connections."""

    protocol: str
    ssl_context: ssl.SSLContext | None
    sasl_mechanism: str | None
    new_sasl: Callable[[], SaslMechanism] | None  # a fresh exchange per authentication


def from_config(values: Mapping[str, Any]) -> Security | None:
    """The Security that resolved producer options describe; None for PLAINTEXT."""
    protocol = values["security_protocol"]
    use_tls, use_sasl = PROTOCOLS[protocol]
    if not use_tls and not use_sasl:
        return None
    context = ssl_context_for(values) if use_tls else None
    new_sasl: Callable[[], SaslMechanism] | None = None
    mechanism = values["sasl_mechanism"] if use_sasl else None
    if mechanism is not None:
        user, password = values["sasl_plain_username"], values["sasl_plain_password"]
        if mechanism == "PLAIN":
            def new_sasl() -> SaslMechanism:
                return PlainMechanism(user, password)
        elif mechanism.startswith("SCRAM-"):
            def new_sasl() -> SaslMechanism:
                return ScramMechanism(mechanism, user, password)
        else:
            provider = values["sasl_oauth_token_provider"]

            def new_sasl() -> SaslMechanism:
                return OAuthBearerMechanism(provider)
    return Security(protocol, context, mechanism, new_sasl)
