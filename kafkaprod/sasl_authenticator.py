"""SaslClientAuthenticator: one connection's SASL authentication, between ApiVersions and READY.

Follows Java's SaslClientAuthenticator: SaslHandshake v1 names the mechanism, then SaslAuthenticate requests carry
the tokens of a :class:`kafkaprod.security.SaslMechanism` until it has nothing more to say. The authenticator only
decides -- which request goes next, that authentication is complete, or the AuthenticationError that ends it --
so that the NetworkClient keeps the sockets, queues and connection states, and a plaintext connection carries
none of this. A broker that gives the session a lifetime (SaslAuthenticate v1+) is authenticated again on the
same connection before it ends (KIP-368); ``reauth_at`` says when.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from kafkaprod import protocol
from kafkaprod.errors import (AuthenticationError, ErrorCode, SaslAuthenticationError, UnsupportedSaslMechanismError,
                              broker_error)
from kafkaprod.protocol.messages import SASL_AUTHENTICATE, SASL_HANDSHAKE
from kafkaprod.protocol.schema import Api
from kafkaprod.security import SaslMechanism, Security

#: A request for the NetworkClient to send: (api, version, body).
SaslRequest = tuple[Api, int, dict[str, Any]]


class SaslClientAuthenticator:
    """The SASL state of one connection: the exchange under way and when its session must be renewed."""

    __slots__ = ("mechanism", "_new_exchange", "_where", "_versions", "_exchange", "reauth_at")

    def __init__(self, security: Security, node_id: int, host: str, port: int) -> None:
        assert security.new_sasl is not None and security.sasl_mechanism is not None
        self.mechanism = security.sasl_mechanism
        self._new_exchange = security.new_sasl
        self._where = f"SASL authentication with broker {node_id} at {host}:{port} failed"
        self._versions: Mapping[int, tuple[int, int]] = {}  # the broker's, from ApiVersions
        self._exchange: SaslMechanism | None = None
        self.reauth_at = 0.0  # when to authenticate again (KIP-368); 0: never

    def start(self, api_versions: Mapping[int, tuple[int, int]]) -> SaslRequest:
        """The SaslHandshake that begins an authentication, the first on a connection or a renewal.
        Raises AuthenticationError."""
        for api in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            if api.key not in api_versions:
                raise SaslAuthenticationError(
                    f"{self._where}: the broker does not speak {api.name} (is its listener SASL?)")
        self._versions = api_versions
        self.reauth_at = 0.0
        # A fresh exchange each time: OAUTHBEARER asks its provider for a new token, SCRAM makes a new nonce.
        self._exchange = self._new_exchange()
        return SASL_HANDSHAKE, self._version(SASL_HANDSHAKE), {"mechanism": self.mechanism}

    def on_response(self, api: int, body: Mapping[str, Any], now: float) -> SaslRequest | None:
        """The next request for the broker's answer to the last one, or None once authenticated.
        Raises AuthenticationError."""
        code = body.get("error_code", 0)
        if api == SASL_HANDSHAKE.key:
            if code == ErrorCode.UNSUPPORTED_SASL_MECHANISM:
                raise UnsupportedSaslMechanismError(
                    f"{self._where}: the broker does not enable {self.mechanism} (it lists: "
                    f"{', '.join(body.get('mechanisms') or ()) or 'none'})")
            if code != 0:
                raise self._refused(code, "SaslHandshake")
            return self._step(None)
        if code != 0:
            detail = body.get("error_message") or ""
            refusal = getattr(self._exchange, "refusal", None)
            if refusal and refusal not in detail:
                detail = f"{detail} ({refusal})" if detail else refusal
            raise self._refused(code, detail)
        lifetime_ms = body.get("session_lifetime_ms", 0)
        if lifetime_ms > 0:
            # Java's client renews at 85-95% of the session's lifetime, spread so that a fleet of clients does not
            # come back at once.
            self.reauth_at = now + lifetime_ms / 1000.0 * random.uniform(0.85, 0.95)
        return self._step(body.get("auth_bytes") or b"")

    def _step(self, challenge: bytes | None) -> SaslRequest | None:
        exchange = self._exchange
        assert exchange is not None  # answers come only to the requests of an exchange under way
        try:
            message = exchange.first_message() if challenge is None else exchange.respond(challenge)
        except SaslAuthenticationError as exc:
            raise SaslAuthenticationError(f"{self._where}: {exc.args[0] if exc.args else exc}") from None
        if message is None:
            self._exchange = None  # a renewal starts a new one
            return None
        return SASL_AUTHENTICATE, self._version(SASL_AUTHENTICATE), {"auth_bytes": message}

    def _version(self, api: Api) -> int:
        low, high = self._versions[api.key]
        return protocol.negotiate_version(api.key, low, high)

    def _refused(self, code: int, detail: str) -> AuthenticationError:
        text = f"{self._where}: {self.mechanism}: {detail or 'refused'}"
        err = broker_error(code, text)
        return err if isinstance(err, AuthenticationError) else SaslAuthenticationError(f"{text} (error {code})")
