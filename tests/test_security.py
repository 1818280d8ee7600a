"""Secured clusters: TLS, mutual TLS, SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512 / OAUTHBEARER, SASL over TLS.

The peers (tests/secure_peers.py): stunnel4 in front of Tansu for TLS, a SASL-terminating front of our own for
SASL (its SCRAM server is scramp's), each with Tansu advertising the front's port so that every connection goes
through it. What kafkaprod wrote is read back by a reader we did not write (confluent-kafka's consumer) over the
same security; every SASL test first passes a confluent-kafka client through the same front, so the front is
proved against a client we did not write before kafkaprod is judged by it.

Failures must be prompt: every bad case runs with max_block_ms and delivery_timeout_ms at 120 s and expects the
named error well before that (the test's own limit, 30 s, only stops a hang).
"""
from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from kafkaprod import (AuthenticationError, KafkaProducer, SaslAuthenticationError, SslAuthenticationError,
                       UnsupportedSaslMechanismError)
from kafkaprod import protocol
from kafkaprod.protocol.messages import SASL_AUTHENTICATE, SASL_HANDSHAKE
from kafkaprod.security import Security
from kafkaprod.tools.broker import TansuBroker
from secure_peers import LOOPBACK, SaslFront, Stunnel, free_port

WAIT_S = 30.0
LONG = {"max_block_ms": 120_000, "delivery_timeout_ms": 120_000, "request_timeout_ms": 30_000}
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
GOOD_TOKEN = "good-token-" + uuid.uuid4().hex


# ---- certificates and peers ------------------------------------------------------------------------------------------

@dataclass
class Pki:
    dir: Path
    ca: Path  # the CA that signed the brokers' and the client's certificates
    rogue_ca: Path  # a CA nobody here uses
    server: Path  # key + chain for 127.0.0.1 / localhost
    wrong_name_server: Path  # key + chain for another host name
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    paths = Pki(d, d / "ca.pem", d / "rogue-ca.pem", d / "server.pem", d / "wrong-name.pem", d / "client.pem",
                d / "client.key")
    ca.cert_pem.write_to_path(str(paths.ca))
    rogue.cert_pem.write_to_path(str(paths.rogue_ca))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(paths.server))
    ca.issue_cert("broker.other.example").private_key_and_cert_chain_pem.write_to_path(str(paths.wrong_name_server))
    client = ca.issue_cert("kafkaprod-client@example")
    with open(paths.client_cert, "wb") as f:
        for blob in client.cert_chain_pems:
            f.write(blob.bytes())
    client.private_key_pem.write_to_path(str(paths.client_key))
    return paths


@dataclass
class Cluster:
    """A Tansu broker behind fronts; ``bootstrap`` is the front every client uses."""

    bootstrap: str
    client_config: dict[str, Any]  # confluent-kafka's security settings for this front
    broker: TansuBroker
    fronts: list[Any] = field(default_factory=list)
    sasl: SaslFront | None = None

    def stop(self) -> None:
        for front in reversed(self.fronts):
            front.stop()
        self.broker.stop()

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, **self.client_config})

    def topic(self, partitions: int = 1) -> str:
        name = f"sec-{uuid.uuid4().hex[:12]}"
        admin = self.admin()  # kept alive until the futures are done
        for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            fut.result(WAIT_S)
        return name


def _tls_cluster(pki: Pki, verify_clients: bool) -> Cluster:
    front = free_port()
    broker = TansuBroker(advertised_port=front).start()
    tunnel = Stunnel(pki.dir, front, broker.port, pki.server, pki.ca if verify_clients else None)
    config: dict[str, Any] = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}
    if verify_clients:
        config.update({"ssl.certificate.location": str(pki.client_cert), "ssl.key.location": str(pki.client_key)})
    return Cluster(f"{LOOPBACK}:{front}", config, broker, [tunnel])


@pytest.fixture(scope="module")
def tls(pki: Pki) -> Iterator[Cluster]:
    cluster = _tls_cluster(pki, verify_clients=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def mtls(pki: Pki) -> Iterator[Cluster]:
    cluster = _tls_cluster(pki, verify_clients=True)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def wrong_name_front(pki: Pki, tls: Cluster) -> Iterator[str]:
    """A TLS front whose certificate names another host (only the bootstrap connection ever reaches it)."""
    port = free_port()
    tunnel = Stunnel(pki.dir, port, tls.broker.port, pki.wrong_name_server)
    yield f"{LOOPBACK}:{port}"
    tunnel.stop()


def _sasl_cluster(over_tls: Pki | None = None, session_lifetime_ms: int = 0) -> Cluster:
    front = free_port()
    tls_port = free_port() if over_tls is not None else None
    broker = TansuBroker(advertised_port=tls_port or front).start()
    sasl = SaslFront(front, broker.port, USERS, {GOOD_TOKEN}, session_lifetime_ms=session_lifetime_ms)
    if over_tls is None:
        return Cluster(f"{LOOPBACK}:{front}", {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("PLAIN")},
                       broker, [sasl], sasl)
    tunnel = Stunnel(over_tls.dir, tls_port, front, over_tls.server)
    return Cluster(f"{LOOPBACK}:{tls_port}", {"security.protocol": "SASL_SSL", "ssl.ca.location": str(over_tls.ca),
                                              **_ck_sasl("SCRAM-SHA-512")}, broker, [sasl, tunnel], sasl)


def _ck_sasl(mechanism: str) -> dict[str, Any]:
    """confluent-kafka's settings for a mechanism with alice's credentials (or the good token)."""
    if mechanism == "OAUTHBEARER":
        return {"sasl.mechanism": "OAUTHBEARER", "oauth_cb": lambda _cfg: (GOOD_TOKEN, time.time() + 3600)}
    return {"sasl.mechanism": mechanism, "sasl.username": "alice", "sasl.password": USERS["alice"]}


@pytest.fixture(scope="module")
def sasl() -> Iterator[Cluster]:
    cluster = _sasl_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def sasl_ssl(pki: Pki) -> Iterator[Cluster]:
    cluster = _sasl_cluster(over_tls=pki)
    yield cluster
    cluster.stop()


# ---- helpers ---------------------------------------------------------------------------------------------------------

def read_values(cluster: Cluster, topic: str, count: int, config: dict[str, Any] | None = None) -> list[bytes]:
    """The first ``count`` values of partition 0, read by confluent-kafka's consumer over the same security."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         **(config or cluster.client_config)})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values: list[bytes] = []
        deadline = time.monotonic() + WAIT_S
        while len(values) < count:
            assert time.monotonic() < deadline, f"read {len(values)} of {count} records of {topic}"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            values.append(msg.value())
        return values
    finally:
        consumer.close()


def confluent_control(cluster: Cluster, topic: str, config: dict[str, Any]) -> None:
    """confluent-kafka's producer delivers one record through the same front: the front is right."""
    reports: list[Any] = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap, **config, "linger.ms": 0})
    producer.produce(topic, b"control", on_delivery=lambda err, _msg: reports.append(err))
    assert producer.flush(WAIT_S) == 0, "confluent-kafka could not deliver through the front"
    assert reports == [None], reports


def produce_and_check(cluster: Cluster, topic: str, options: dict[str, Any], skip: int = 0, n: int = 200) -> None:
    values = [f"{topic}-{i}".encode() for i in range(n)]
    with KafkaProducer(cluster.bootstrap, **options) as producer:
        futures = [producer.send(topic, v) for v in values]
        producer.flush(WAIT_S)
        offsets = [f.get(WAIT_S).offset for f in futures]
    assert offsets == list(range(skip, skip + n))
    assert read_values(cluster, topic, skip + n)[skip:] == values


def within(limit: float, fn: Callable[[], Any]) -> Any:
    """fn's result or exception, on another thread; fails the test if it has neither after ``limit`` s."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting after {limit} s"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def assert_refused(bootstrap: str, error: type[AuthenticationError], *words: str, **options: Any) -> None:
    """send() fails with ``error`` naming ``words`` while max_block_ms/delivery_timeout_ms are 120 s, keeps
    failing while the condition lasts, and close() leaves no thread or socket behind."""
    before = {t.ident for t in threading.enumerate()}
    producer = KafkaProducer(bootstrap, reconnect_backoff_max_ms=500, **LONG, **options)
    try:
        with pytest.raises(error) as first:
            within(WAIT_S, lambda: producer.send("any-topic", b"x"))
        for word in words:
            assert word in str(first.value), (word, str(first.value))
        with pytest.raises(error):  # still refused: the condition lasts
            within(WAIT_S, lambda: producer.send("any-topic", b"y"))
    finally:
        producer.close(WAIT_S)
    assert not producer._sender.is_alive()
    assert all(conn.sock is None for conn in producer._client._conns.values())
    # The producer's own threads are gone (the SASL front's per-connection threads are the peer's, not ours).
    assert not [t.name for t in threading.enumerate()
                if t.ident not in before and t.is_alive() and t.name.startswith("kafkaprod")]


# ---- options ---------------------------------------------------------------------------------------------------------

def test_inconsistent_options_are_refused_naming_the_option(pki: Pki) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256"}, "sasl_plain_username"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_plain_username": "u"}, "sasl_plain_password"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "sasl_oauth_token_provider"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SSL", "ssl_certfile": str(pki.client_cert)}, "ssl_certfile"),
        ({"security_protocol": "SSL", "ssl_keyfile": str(pki.client_key)}, "ssl_keyfile"),
        ({"security_protocol": "SSL", "ssl_cafile": str(pki.dir / "missing.pem")}, "ssl_cafile"),
        ({"ssl_cafile": str(pki.ca)}, "ssl_cafile"),  # TLS options with PLAINTEXT: a forgotten security_protocol
        ({"sasl_plain_username": "u", "sasl_plain_password": "p"}, "sasl_plain_username"),
        ({"security_protocol": "SSL", "ssl_context": "not a context"}, "ssl_context"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "OAUTHBEARER",
          "sasl_oauth_token_provider": object()}, "sasl_oauth_token_provider"),
    ]
    for options, name in cases:
        with pytest.raises((ValueError, TypeError)) as info:
            KafkaProducer("127.0.0.1:9", **options)
        assert name in str(info.value), (options, str(info.value))


def test_java_and_librdkafka_names_are_accepted(pki: Pki) -> None:
    from kafkaprod.config import resolve

    cfg = resolve({"security.protocol": "sasl_ssl", "ssl.ca.location": str(pki.ca), "sasl.mechanism": "scram-sha-512",
                   "sasl.username": "u", "sasl.password": "p"})
    assert (cfg.security_protocol, cfg.ssl_cafile, cfg.sasl_mechanism, cfg.sasl_plain_username,
            cfg.sasl_plain_password) == ("SASL_SSL", str(pki.ca), "SCRAM-SHA-512", "u", "p")
    cfg = resolve({"security.protocol": "SSL", "ssl.certificate.location": str(pki.client_cert),
                   "ssl.key.location": str(pki.client_key)})
    assert (cfg.ssl_certfile, cfg.ssl_keyfile) == (str(pki.client_cert), str(pki.client_key))


def test_sasl_messages_round_trip() -> None:
    for version in range(SASL_AUTHENTICATE.min_version, SASL_AUTHENTICATE.max_version + 1):
        frame = b"".join(protocol.encode_request(SASL_AUTHENTICATE.key, version, 5, "c", {"auth_bytes": b"\0u\0p"}))
        assert protocol.decode_request(frame[4:]).body == {"auth_bytes": b"\0u\0p"}
        answer = {"error_code": 58, "error_message": "no", "auth_bytes": b"", "session_lifetime_ms": 9000}
        frame = b"".join(protocol.encode_response(SASL_AUTHENTICATE.key, version, 5, answer))
        decoded = protocol.decode_response(SASL_AUTHENTICATE.key, version, frame[4:])
        assert decoded["session_lifetime_ms"] == (9000 if version >= 1 else 0)
    frame = b"".join(protocol.encode_request(SASL_HANDSHAKE.key, 1, 6, "c", {"mechanism": "PLAIN"}))
    assert protocol.decode_request(frame[4:]).body == {"mechanism": "PLAIN"}


# ---- TLS -------------------------------------------------------------------------------------------------------------

def test_tls_delivers(tls: Cluster, pki: Pki) -> None:
    # Read back by confluent-kafka's consumer over TLS. (Debian's kcat links librdkafka 2.0.2, whose ApiVersions
    # exchange Tansu 0.6.0 answers in a way it cannot read -- "Read underflow" -- with or without TLS.)
    topic = tls.topic()
    produce_and_check(tls, topic, {"security_protocol": "SSL", "ssl_cafile": str(pki.ca)})


def test_tls_with_a_ready_ssl_context_and_java_names(tls: Cluster, pki: Pki) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    topic = tls.topic()
    produce_and_check(tls, topic, {"security_protocol": "SSL", "ssl_context": ctx, "compression_type": "lz4"})
    produce_and_check(tls, topic, {"config": {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}}, skip=200)


def test_tls_large_batches_cross_intact(tls: Cluster, pki: Pki) -> None:
    # Batches far larger than one TLS record (16 KiB) and than one encryption round (1 MiB).
    topic = tls.topic()
    values = [bytes([i % 251]) * 300_000 for i in range(12)]
    with KafkaProducer(tls.bootstrap, security_protocol="SSL", ssl_cafile=str(pki.ca), batch_size=4_000_000,
                       max_request_size=8_000_000, linger_ms=50, acks=1) as producer:
        futures = [producer.send(topic, v) for v in values]
        producer.flush(WAIT_S)
        assert [f.get(WAIT_S).offset for f in futures] == list(range(12))
    assert read_values(tls, topic, 12) == values


def test_mutual_tls_delivers(mtls: Cluster, pki: Pki) -> None:
    topic = mtls.topic()
    produce_and_check(mtls, topic, {"security_protocol": "SSL", "ssl_cafile": str(pki.ca),
                                    "ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)})


def test_mutual_tls_with_an_encrypted_key_and_ssl_password(mtls: Cluster, pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted = pki.dir / "client-encrypted.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"key-pass")))
    options = {"security_protocol": "SSL", "ssl_cafile": str(pki.ca), "ssl_certfile": str(pki.client_cert),
               "ssl_keyfile": str(encrypted)}
    with pytest.raises(ValueError, match="ssl_password"):
        KafkaProducer(mtls.bootstrap, ssl_password="wrong", **options)
    produce_and_check(mtls, mtls.topic(), {**options, "ssl_password": "key-pass"})


def test_unknown_ca_fails_promptly(tls: Cluster, pki: Pki) -> None:
    assert_refused(tls.bootstrap, SslAuthenticationError, "TLS handshake with broker", "certificate verify failed",
                   tls.bootstrap, security_protocol="SSL", ssl_cafile=str(pki.rogue_ca))


def test_the_asyncio_producer_refuses_an_unknown_ca_promptly_too(tls: Cluster, pki: Pki,
                                                                 run_async: Callable[..., Any]) -> None:
    from kafkaprod.aio import AIOKafkaProducer

    async def main() -> None:
        async with AIOKafkaProducer(tls.bootstrap, security_protocol="SSL", ssl_cafile=str(pki.rogue_ca),
                                    **LONG) as producer:
            for _ in range(2):  # while the condition lasts, every send() raises it
                with pytest.raises(SslAuthenticationError, match="certificate verify failed"):
                    await producer.send(tls.topic(), b"v")

    run_async(main())


def test_hostname_mismatch_fails_promptly(wrong_name_front: str, pki: Pki) -> None:
    assert_refused(wrong_name_front, SslAuthenticationError, "certificate verify failed", "mismatch",
                   security_protocol="SSL", ssl_cafile=str(pki.ca))


def test_hostname_check_can_be_turned_off(wrong_name_front: str, tls: Cluster, pki: Pki) -> None:
    # Only the bootstrap connection goes to the wrongly named front; metadata then points at the right one.
    topic = tls.topic()
    with KafkaProducer(wrong_name_front, security_protocol="SSL", ssl_cafile=str(pki.ca), ssl_check_hostname=False,
                       **LONG) as producer:
        assert producer.send(topic, b"v").get(WAIT_S).offset == 0


def test_missing_client_certificate_fails_promptly(mtls: Cluster, pki: Pki) -> None:
    assert_refused(mtls.bootstrap, SslAuthenticationError, "TLS handshake with broker",
                   security_protocol="SSL", ssl_cafile=str(pki.ca))


def test_a_tls_failure_fails_pending_records_and_clears_when_fixed(tls: Cluster, pki: Pki) -> None:
    # The leader's connection fails its handshake after metadata is known (the trusted CAs change under a ready
    # SSLContext): queued records fail with the error, send() raises it, and once the CA is trusted again the
    # producer reconnects by itself and sends go through.
    topic = tls.topic()
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    producer = KafkaProducer(tls.bootstrap, security_protocol="SSL", ssl_context=ctx, reconnect_backoff_max_ms=300,
                             **LONG)
    try:
        assert producer.send(topic, b"first").get(WAIT_S).offset == 0
        strict = ssl.create_default_context(cafile=str(pki.rogue_ca))
        producer._client.security = Security("SSL", strict, None, None)
        _drop_connections(producer)
        future = producer.send(topic, b"queued")
        with pytest.raises(SslAuthenticationError, match="certificate verify failed"):
            future.get(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        with pytest.raises(SslAuthenticationError):
            while time.monotonic() < deadline:
                producer.send(topic, b"refused")
                time.sleep(0.05)
        producer._client.security = Security("SSL", ctx, None, None)
        assert _send_when_accepted(producer, topic, b"after").get(WAIT_S).offset >= 1
    finally:
        producer.close(WAIT_S)


def _drop_connections(producer: KafkaProducer) -> None:
    done = threading.Event()

    def drop() -> None:
        client = producer._client
        for conn in list(client._conns.values()):
            if conn.sock is not None:
                client._close(conn, "test drops it")
        done.set()

    # On the I/O thread, which owns the connections: through a wrapped poll() call.
    client = producer._client
    original = client.poll

    def poll(timeout: float) -> Any:
        client.poll = original  # type: ignore[method-assign]
        drop()
        return original(0)

    client.poll = poll  # type: ignore[method-assign]
    client.wakeup()
    assert done.wait(WAIT_S)


def _send_when_accepted(producer: KafkaProducer, topic: str, value: bytes) -> Any:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return producer.send(topic, value)
        except AuthenticationError:
            assert time.monotonic() < deadline, "send() kept raising after the condition cleared"
            time.sleep(0.05)


# ---- SASL ------------------------------------------------------------------------------------------------------------

def _sasl_options(mechanism: str, user: str = "alice", password: str | None = None,
                  protocol: str = "SASL_PLAINTEXT") -> dict[str, Any]:
    if mechanism == "OAUTHBEARER":
        return {"security_protocol": protocol, "sasl_mechanism": mechanism,
                "sasl_oauth_token_provider": StaticToken(GOOD_TOKEN)}
    return {"security_protocol": protocol, "sasl_mechanism": mechanism, "sasl_plain_username": user,
            "sasl_plain_password": USERS.get(user, "x") if password is None else password}


class StaticToken:
    def __init__(self, token: str) -> None:
        self.value = token
        self.calls = 0

    def token(self) -> str:
        self.calls += 1
        return self.value


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"])
def test_sasl_plaintext_delivers(sasl: Cluster, mechanism: str) -> None:
    topic = sasl.topic()
    confluent_control(sasl, topic, {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl(mechanism)})
    assert sasl.sasl is not None
    user = "oauth" if mechanism == "OAUTHBEARER" else "alice"
    before = sasl.sasl.get(f"ok:{mechanism}:{user}")
    produce_and_check(sasl, topic, _sasl_options(mechanism), skip=1)
    assert sasl.sasl.get(f"ok:{mechanism}:{user}") > before  # kafkaprod authenticated with that mechanism


def test_sasl_ssl_scram_sha_512_delivers(sasl_ssl: Cluster) -> None:
    topic = sasl_ssl.topic()
    confluent_control(sasl_ssl, topic, sasl_ssl.client_config)
    assert sasl_ssl.sasl is not None
    before = sasl_ssl.sasl.get("ok:SCRAM-SHA-512:alice")
    options = {**_sasl_options("SCRAM-SHA-512", protocol="SASL_SSL"), "ssl_cafile": str(Path(sasl_ssl.client_config["ssl.ca.location"]))}
    produce_and_check(sasl_ssl, topic, options, skip=1)
    assert sasl_ssl.sasl.get("ok:SCRAM-SHA-512:alice") > before


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_password_fails_promptly(sasl: Cluster, mechanism: str) -> None:
    confluent_control(sasl, sasl.topic(), {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl(mechanism)})
    assert_refused(sasl.bootstrap, SaslAuthenticationError, "SASL authentication with broker", mechanism,
                   **_sasl_options(mechanism, password="wrong"))


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_unknown_user_fails_promptly(sasl: Cluster, mechanism: str) -> None:
    confluent_control(sasl, sasl.topic(), {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl(mechanism)})
    assert_refused(sasl.bootstrap, SaslAuthenticationError, "SASL authentication with broker", mechanism,
                   **_sasl_options(mechanism, user="mallory", password="whatever"))


def test_rejected_token_fails_promptly(sasl: Cluster) -> None:
    confluent_control(sasl, sasl.topic(), {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("OAUTHBEARER")})
    assert_refused(sasl.bootstrap, SaslAuthenticationError, "OAUTHBEARER", "invalid_token",
                   security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                   sasl_oauth_token_provider=StaticToken("forged"))


def test_a_token_provider_that_raises_fails_promptly(sasl: Cluster) -> None:
    confluent_control(sasl, sasl.topic(), {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("OAUTHBEARER")})

    class Broken:
        def token(self) -> str:
            raise RuntimeError("identity provider unreachable")

    assert_refused(sasl.bootstrap, SaslAuthenticationError, "identity provider unreachable",
                   security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                   sasl_oauth_token_provider=Broken())


def test_a_mechanism_the_broker_does_not_enable_fails_promptly(pki: Pki) -> None:
    cluster = _sasl_cluster()
    assert cluster.sasl is not None
    try:
        topic = cluster.topic()
        cluster.sasl.mechanisms = {"SCRAM-SHA-512"}
        confluent_control(cluster, topic, {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("SCRAM-SHA-512")})
        assert_refused(cluster.bootstrap, UnsupportedSaslMechanismError, "does not enable PLAIN", "SCRAM-SHA-512",
                       **_sasl_options("PLAIN"))
    finally:
        cluster.stop()


def test_sasl_to_a_listener_without_sasl_fails_promptly(tansu: TansuBroker) -> None:
    # Tansu lists SaslHandshake but enables no mechanism on its plaintext listener.
    assert_refused(tansu.bootstrap_servers, AuthenticationError, "SASL authentication with broker", "PLAIN",
                   **_sasl_options("PLAIN"))


def test_revoked_credentials_fail_pending_records_and_clear_when_restored() -> None:
    cluster = _sasl_cluster()
    front = cluster.sasl
    assert front is not None
    try:
        topic = cluster.topic()
        confluent_control(cluster, topic, {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("SCRAM-SHA-256")})
        producer = KafkaProducer(cluster.bootstrap, reconnect_backoff_max_ms=300, **LONG,
                                 **_sasl_options("SCRAM-SHA-256", user="bob"))
        try:
            assert producer.send(topic, b"before").get(WAIT_S).offset == 1
            del front.users["bob"]
            front.drop_connections()
            future = producer.send(topic, b"queued")  # the topic is known: queued without waiting
            with pytest.raises(SaslAuthenticationError, match="SCRAM-SHA-256"):
                future.get(WAIT_S)
            with pytest.raises(SaslAuthenticationError):
                within(WAIT_S, lambda: producer.send(topic, b"refused"))
            front.users["bob"] = USERS["bob"]
            assert _send_when_accepted(producer, topic, b"after").get(WAIT_S).offset == 2
        finally:
            producer.close(WAIT_S)
        assert read_values(cluster, topic, 3, {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl("PLAIN")}) == \
            [b"control", b"before", b"after"]
    finally:
        cluster.stop()


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "SCRAM-SHA-512"])
def test_reauthentication_before_the_session_expires(mechanism: str) -> None:
    # Sessions of 1.5 s and records sent without pause for about 4.5 s through a front that holds each answer
    # 20 ms, so that requests are in flight when a session is due (re-authentication waits for their answers): the producer re-authenticates on its connections before each session expires (the front
    # closes a connection that sends a request after expiry), never reconnects, loses and reorders nothing, and
    # OAUTHBEARER asks its provider for a token each time.
    cluster = _sasl_cluster(session_lifetime_ms=1500)
    front = cluster.sasl
    assert front is not None
    try:
        topic = cluster.topic()
        front.answer_delay_s = 0.02  # answers lag, so requests are in flight when a session is due
        confluent_control(cluster, topic, {"security.protocol": "SASL_PLAINTEXT", **_ck_sasl(mechanism)})
        expired_before, connections_before = front.get("expired_closes"), front.get("connections")
        reauth_before = front.get("reauthentications")
        options = _sasl_options(mechanism)
        futures = []
        with KafkaProducer(cluster.bootstrap, linger_ms=1, **LONG, **options) as producer:
            deadline = time.monotonic() + 4.5
            while time.monotonic() < deadline:
                futures.extend(producer.send(topic, f"r{len(futures)}".encode()) for _ in range(200))
                time.sleep(0.01)
            producer.flush(WAIT_S)
            assert [f.get(WAIT_S).offset for f in futures] == list(range(1, len(futures) + 1))
        assert front.get("reauthentications") - reauth_before >= 2
        assert front.get("expired_closes") == expired_before
        assert front.get("connections") - connections_before <= 2  # bootstrap and leader, never reconnected
        if mechanism == "OAUTHBEARER":
            assert options["sasl_oauth_token_provider"].calls >= 4  # two connections, then again per session
        assert read_values(cluster, topic, len(futures) + 1)[1:] == [f"r{i}".encode() for i in range(len(futures))]
    finally:
        cluster.stop()


# ---- kafkaprod-perf --------------------------------------------------------------------------------------------------

def test_perf_tool_takes_the_security_options(tls: Cluster, sasl_ssl: Cluster, pki: Pki,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from kafkaprod.tools import perf

    # snake_case names, the topic created by the tool's admin client over TLS
    status = perf.main(["--num-records", "3000", "--topic", f"perf-{uuid.uuid4().hex[:8]}", "--create-topic",
                        "--bootstrap-servers", tls.bootstrap, "--json",
                        "-X", "security_protocol=SSL", "-X", f"ssl_cafile={pki.ca}"])
    assert status == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["records"], report["failed"]) == (3000, 0)
    # Java / librdkafka names, SASL over TLS. The control: --create-topic's admin client is confluent-kafka's,
    # authenticating through the same front before kafkaprod does.
    status = perf.main(["--num-records", "3000", "--topic", f"perf-{uuid.uuid4().hex[:8]}", "--create-topic",
                        "--bootstrap-servers", sasl_ssl.bootstrap, "--json",
                        "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki.ca}",
                        "-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=alice",
                        "-X", f"sasl.password={USERS['alice']}"])
    assert status == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["records"], report["failed"]) == (3000, 0)
