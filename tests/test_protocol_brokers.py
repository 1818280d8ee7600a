"""kafkaprod's protocol codec and record batches, spoken over a plain blocking socket to real Kafka peers.

Nothing of kafkaprod's network stack is used: a ``socket.create_connection``, ``sendall`` of the buffers
``encode_request`` returns, and :class:`FrameSplitter` on what ``recv`` gives. The peers are Tansu (one broker,
id 111) and librdkafka's mock cluster (3 brokers); confluent-kafka's Consumer is the independent reader that
must see every record byte for byte as the batch carried it. Waits have generous limits only so a broken peer
fails a test instead of hanging it; nothing is timed.
"""
from __future__ import annotations

import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, Message, TopicPartition

from kafkaprod._native.records import MemoryRecordsBuilder, estimate_size_upper_bound
from kafkaprod.errors import ProtocolError
from kafkaprod.protocol import (
    APIS,
    ApiKey,
    FrameSplitter,
    api_versions_fallback,
    decode_response,
    encode_request,
    expects_response,
    negotiate_version,
    negotiate_versions,
    read_correlation_id,
)
from kafkaprod.protocol.messages import API_VERSIONS, METADATA, PRODUCE

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PEERS = ["tansu", "mock"]

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
NOT_COORDINATOR = 16
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
TANSU_BROKER_ID = 111

# Limits that only stop a broken peer from hanging the run.
IO_TIMEOUT_S = 15.0
READ_BACK_TIMEOUT_S = 30.0

Headers = Sequence[tuple[str, bytes | None]]


# -- a blocking Kafka connection --------------------------------------------------------------------------------


class Connection:
    """One broker connection: requests go out as encode_request's buffers, responses come back as whole frames."""

    def __init__(self, host: str, port: int, *, extra_tag_section: bool = False) -> None:
        self.extra_tag_section = extra_tag_section
        #: The version of each API to speak, once negotiated (see Peer.connect).
        self.versions: dict[int, int] = {}
        self.sock = socket.create_connection((host, port), timeout=IO_TIMEOUT_S)
        # A request is several buffers; without NODELAY the later ones may wait for the peer's delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.splitter = FrameSplitter()
        self.frames: deque[bytes] = deque()
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, api_key: int, version: int, body: dict[str, Any]) -> int:
        self.correlation_id += 1
        for chunk in encode_request(api_key, version, self.correlation_id, "kafkaprod-itest", body):
            self.sock.sendall(chunk)
        return self.correlation_id

    def send_raw(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def receive_frame(self) -> bytes:
        while not self.frames:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"the peer closed the connection ({self.splitter.buffered} bytes pending)")
            self.frames.extend(self.splitter.feed(data))
        return self.frames.popleft()

    def request(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        correlation_id = self.send(api_key, version, body)
        frame = self.receive_frame()
        assert read_correlation_id(frame) == correlation_id
        try:
            return decode_response(api_key, version, frame)
        except ProtocolError:
            # librdkafka's mock (2.16) ends flexible Metadata answers with a second empty tag section: its handler
            # writes one and its send routine adds another. Exactly that one byte is forgiven, nothing else.
            forgivable = api_key == ApiKey.METADATA and APIS[api_key].is_flexible(version) and frame[-1:] == b"\x00"
            if not (self.extra_tag_section and forgivable):
                raise
            return decode_response(api_key, version, frame[:-1])


def api_versions_handshake(conn: Connection) -> tuple[int, dict[str, Any]]:
    """ApiVersions from kafkaprod's newest version down, as the fallback directs: (version answered, body)."""
    version = API_VERSIONS.max_version
    for _ in range(API_VERSIONS.max_version + 1):
        body = conn.request(ApiKey.API_VERSIONS, version, {})
        retry = api_versions_fallback(body, version)
        if retry is None:
            assert body["error_code"] == NONE
            return version, body
        assert retry < version
        version = retry
    raise AssertionError("the ApiVersions fallback did not converge")


# -- the peers --------------------------------------------------------------------------------------------------


def addresses(bootstrap_servers: str) -> list[tuple[str, int]]:
    return [(host, int(port)) for host, port in (a.rsplit(":", 1) for a in bootstrap_servers.split(","))]


@dataclass
class Peer:
    name: str
    bootstrap_servers: str
    new_topic: Callable[[int], str]
    connections: dict[tuple[str, int], Connection] = field(default_factory=dict)

    @property
    def bootstrap(self) -> tuple[str, int]:
        return addresses(self.bootstrap_servers)[0]

    def connect(self, address: tuple[str, int] | None = None) -> Connection:
        """The connection to a broker (the first bootstrap broker by default), versions negotiated."""
        address = address or self.bootstrap
        conn = self.connections.get(address)
        if conn is None:
            conn = self.connections[address] = Connection(*address, extra_tag_section=self.name == "mock")
            _, body = api_versions_handshake(conn)
            conn.versions = negotiate_versions(body)
        return conn

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    if request.param == "tansu":
        tansu = request.getfixturevalue("tansu")
        make = request.getfixturevalue("tansu_topic")
        peer = Peer("tansu", tansu.bootstrap_servers, lambda partitions: make(partitions=partitions))
    else:
        cluster = request.getfixturevalue("mock_cluster")
        make = request.getfixturevalue("mock_topic")
        peer = Peer("mock", cluster.bootstrap_servers, lambda partitions: make(partitions=partitions))
    try:
        yield peer
    finally:
        peer.close()


def topic_metadata(conn: Connection, topic: str, version: int | None = None,
                   ) -> tuple[dict[int, tuple[str, int]], dict[int, int]]:
    """Metadata for one topic (at the negotiated version by default): (brokers by node id, leader by partition)."""
    version = conn.versions[ApiKey.METADATA] if version is None else version
    body = conn.request(ApiKey.METADATA, version, {"topics": [{"name": topic}]})
    brokers = {b["node_id"]: (b["host"], b["port"]) for b in body["brokers"]}
    [answer] = body["topics"]
    assert (answer["error_code"], answer["name"]) == (NONE, topic)
    leaders = {}
    for partition in answer["partitions"]:
        assert partition["error_code"] == NONE
        leaders[partition["partition_index"]] = partition["leader_id"]
    return brokers, leaders


def leader_connection(peer: Peer, topic: str, partition: int = 0) -> Connection:
    """The negotiated connection to the partition's leader, found from Metadata."""
    brokers, leaders = topic_metadata(peer.connect(), topic)
    return peer.connect(brokers[leaders[partition]])


# -- records ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rec:
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


BASE_TS = 1_700_000_000_000


def sample_records() -> list[Rec]:
    """Records with every shape a record can take, and enough bytes for several compression blocks."""
    rng = random.Random(20240611)
    text = b"".join(b"record %d of a compressible run; " % i for i in range(4000))  # ~130 KiB
    noise = rng.randbytes(70_000)  # incompressible: compressed output larger than its input
    records = [
        Rec(BASE_TS, b"key-0", b"value-0"),
        Rec(BASE_TS + 1, None, b"null key", [("h", b"x")]),
        Rec(BASE_TS + 2, b"null value", None, [("same", b""), ("same", b"twice"), ("null", None)]),
        # Earlier than the first record: a negative timestamp delta.
        Rec(BASE_TS - 3_000, None, None),
        Rec(BASE_TS + 4, b"\x00\xff" * 10, bytes(range(256)), [("utf-8 \u00e9\u4e2d", bytes(range(256)))]),
        Rec(BASE_TS + 3_600_000, b"big text", text),
        Rec(BASE_TS + 6, b"noise", noise, [("k", noise[:1000])]),
        Rec(BASE_TS + 7, b"", b"empty value", []),
    ]
    records += [Rec(BASE_TS + 100 + i, b"k%d" % (i % 7), b"small value %d" % i) for i in range(200)]
    return records


def build_batch(records: Sequence[Rec], codec: str, *, producer_id: int = -1, producer_epoch: int = -1,
                base_sequence: int = -1, buffer_size: int | None = None) -> bytes:
    if buffer_size is None:
        buffer_size = 61 + sum(estimate_size_upper_bound(r.key, r.value, list(r.headers)) for r in records)
    builder = MemoryRecordsBuilder(bytearray(buffer_size), codec, producer_id=producer_id,
                                   producer_epoch=producer_epoch, base_sequence=base_sequence)
    for r in records:
        builder.append(r.timestamp, r.key, r.value, list(r.headers))
    return bytes(builder.close())


def produce_body(topic: str, batches: dict[int, bytes], acks: int = -1,
                 transactional_id: str | None = None) -> dict[str, Any]:
    partition_data = [{"index": p, "records": b} for p, b in batches.items()]
    return {"transactional_id": transactional_id, "acks": acks, "timeout_ms": 10_000,
            "topic_data": [{"name": topic, "partition_data": partition_data}]}


def produce(conn: Connection, topic: str, batches: dict[int, bytes], *, version: int | None = None, acks: int = -1,
            transactional_id: str | None = None) -> dict[int, dict]:
    """One Produce request with a batch per partition: the partition responses by partition."""
    version = conn.versions[ApiKey.PRODUCE] if version is None else version
    answer = conn.request(ApiKey.PRODUCE, version, produce_body(topic, batches, acks, transactional_id))
    [topic_answer] = answer["responses"]
    assert topic_answer["name"] == topic
    return {r["index"]: r for r in topic_answer["partition_responses"]}


def read_back(peer: Peer, topic: str, partitions: Sequence[int], count: int) -> dict[int, list[Message]]:
    """Read ``count`` records from the start of the partitions, by assign() (no group), or fail after a limit.

    Waits for the count rather than trusting the high watermark, which Tansu may report as the base offset of the
    last batch.
    """
    consumer = Consumer({
        "bootstrap.servers": peer.bootstrap_servers,
        "group.id": "kafkaprod-itest-unused",  # required by the client even though assign() never joins it
        "enable.auto.commit": False,
        "enable.metrics.push": False,
        # librdkafka skips the CRC-32C of fetched batches unless asked: an independent check of our checksum.
        "check.crcs": True,
    })
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        got: dict[int, list[Message]] = {p: [] for p in partitions}
        received = 0
        deadline = time.monotonic() + READ_BACK_TIMEOUT_S
        while received < count:
            assert time.monotonic() < deadline, f"read {received} of {count} records from {topic}, then nothing"
            for message in consumer.consume(count - received, 0.5):
                assert message.error() is None, message.error()
                got[message.partition()].append(message)
                received += 1
        return got
    finally:
        consumer.close()


def as_read(message: Message) -> Rec:
    kind, timestamp = message.timestamp()
    assert kind == TIMESTAMP_CREATE_TIME
    return Rec(timestamp, message.key(), message.value(), message.headers() or [])


def expected_as_read(records: Sequence[Rec]) -> list[Rec]:
    return [Rec(r.timestamp, r.key, r.value, list(r.headers)) for r in records]


# -- tests ------------------------------------------------------------------------------------------------------

#: What each peer speaks of kafkaprod's APIs, negotiated down to kafkaprod's own ranges.
NEGOTIATED = {
    # Tansu lists the SASL APIs too (it enables no mechanism on a plaintext listener); the mock does not.
    "tansu": {ApiKey.PRODUCE: 11, ApiKey.METADATA: 12, ApiKey.API_VERSIONS: 3, ApiKey.INIT_PRODUCER_ID: 4,
              ApiKey.SASL_HANDSHAKE: 1, ApiKey.SASL_AUTHENTICATE: 2,
              ApiKey.FIND_COORDINATOR: 3, ApiKey.ADD_PARTITIONS_TO_TXN: 3, ApiKey.ADD_OFFSETS_TO_TXN: 3,
              ApiKey.END_TXN: 3, ApiKey.TXN_OFFSET_COMMIT: 3},
    "mock": {ApiKey.PRODUCE: 10, ApiKey.METADATA: 12, ApiKey.API_VERSIONS: 2, ApiKey.INIT_PRODUCER_ID: 4,
             ApiKey.FIND_COORDINATOR: 3, ApiKey.ADD_PARTITIONS_TO_TXN: 1, ApiKey.ADD_OFFSETS_TO_TXN: 1,
             ApiKey.END_TXN: 1, ApiKey.TXN_OFFSET_COMMIT: 3},
}


def test_api_versions_negotiates_every_producer_api_with_the_peer(peer: Peer) -> None:
    conn = Connection(*peer.bootstrap, extra_tag_section=peer.name == "mock")
    try:
        answered_version, body = api_versions_handshake(conn)
        versions = negotiate_versions(body)

        assert versions == NEGOTIATED[peer.name]
        # Tansu answers kafkaprod's newest ApiVersions; the mock refuses it and the fallback lands on v0.
        assert answered_version == {"tansu": API_VERSIONS.max_version, "mock": 0}[peer.name]
        # The negotiated ApiVersions version is then answered too, with the same ranges.
        again = conn.request(ApiKey.API_VERSIONS, versions[ApiKey.API_VERSIONS], {})
        assert again["error_code"] == NONE
        assert negotiate_versions(again) == versions
    finally:
        conn.close()


def test_mock_refuses_api_versions_v3_and_the_fallback_picks_a_version_it_answers(mock_cluster) -> None:
    conn = Connection(*addresses(mock_cluster.bootstrap_servers)[0])
    try:
        refused = conn.request(ApiKey.API_VERSIONS, 3, {})
        assert refused["error_code"] == UNSUPPORTED_VERSION

        retry = api_versions_fallback(refused, 3)
        assert retry is not None and retry < 3
        answer = conn.request(ApiKey.API_VERSIONS, retry, {})

        assert answer["error_code"] == NONE
        assert api_versions_fallback(answer, retry) is None
        ranges = {k["api_key"]: (k["min_version"], k["max_version"]) for k in answer["api_keys"]}
        assert ranges[ApiKey.API_VERSIONS] == (0, 2)
        assert negotiate_version(ApiKey.API_VERSIONS, *ranges[ApiKey.API_VERSIONS]) == 2
    finally:
        conn.close()


def test_tansu_answers_api_versions_beyond_its_range_as_if_supported(tansu) -> None:
    # Tansu speaks ApiVersions v0-v4 and kafkaprod v0-v3, so only a hand-made v5 is too new for it. Tansu answers
    # that with no error, shaped like v3/v4, instead of refusing it: the fallback must then ask for no retry.
    frame = bytearray(b"".join(encode_request(ApiKey.API_VERSIONS, 3, 7, "kafkaprod-itest", {})))
    frame[6:8] = (5).to_bytes(2, "big")  # the api_version of the request header (v4+ bodies equal v3's)
    conn = Connection(tansu.host, tansu.port)
    try:
        conn.send_raw(bytes(frame))
        reply = conn.receive_frame()

        assert read_correlation_id(reply) == 7
        body = decode_response(ApiKey.API_VERSIONS, 3, reply)
        assert body["error_code"] == NONE
        assert api_versions_fallback(body, 5) is None
        assert negotiate_versions(body) == NEGOTIATED["tansu"]
    finally:
        conn.close()


def test_metadata_of_every_version_lists_the_topic_partitions_and_leaders(peer: Peer) -> None:
    topic = peer.new_topic(6)
    conn = peer.connect()
    if peer.name == "tansu":
        expected_brokers = {TANSU_BROKER_ID: peer.bootstrap}
        expected_leaders = {p: TANSU_BROKER_ID for p in range(6)}
    else:
        expected_brokers = {i + 1: address for i, address in enumerate(addresses(peer.bootstrap_servers))}
        expected_leaders = {p: p % 3 + 1 for p in range(6)}  # how the mock_topic fixture spreads them

    for version in range(METADATA.min_version, METADATA.max_version + 1):
        brokers, leaders = topic_metadata(conn, topic, version)

        assert (version, brokers) == (version, expected_brokers)
        assert (version, leaders) == (version, expected_leaders)


def test_metadata_creates_an_unknown_topic_only_when_allowed(peer: Peer) -> None:
    conn = peer.connect()
    version = conn.versions[ApiKey.METADATA]
    name = f"auto-{random.getrandbits(48):012x}"

    refused = conn.request(ApiKey.METADATA, version, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
    created = conn.request(ApiKey.METADATA, version, {"topics": [{"name": name}], "allow_auto_topic_creation": True})

    assert [(t["name"], t["error_code"], t["partitions"]) for t in refused["topics"]] == [
        (name, UNKNOWN_TOPIC_OR_PARTITION, [])]
    [topic] = created["topics"]
    assert (topic["name"], topic["error_code"]) == (name, NONE)
    node_ids = {b["node_id"] for b in created["brokers"]}
    assert topic["partitions"] and all(p["leader_id"] in node_ids for p in topic["partitions"])


@pytest.mark.parametrize("codec", CODECS)
def test_batches_produced_to_each_leader_read_back_byte_exact(peer: Peer, codec: str) -> None:
    topic = peer.new_topic(3)
    records = sample_records()
    batch = build_batch(records, codec)
    # Random bytes in a buffer of exactly their uncompressed size: compressed, they outgrow it.
    rng = random.Random(7)
    incompressible = [Rec(BASE_TS + i, rng.randbytes(8), rng.randbytes(40_000), [("r", rng.randbytes(9))])
                      for i in range(2)]
    tight_batch = build_batch(incompressible, codec, buffer_size=len(build_batch(incompressible, "none")))
    if codec != "none":
        assert len(tight_batch) > len(build_batch(incompressible, "none"))
    brokers, leaders = topic_metadata(peer.connect(), topic)

    by_leader: dict[int, list[int]] = {}
    for partition, leader in leaders.items():
        by_leader.setdefault(leader, []).append(partition)
    for leader, partitions in by_leader.items():
        conn = peer.connect(brokers[leader])
        first = produce(conn, topic, {p: batch for p in partitions})
        second = produce(conn, topic, {p: tight_batch for p in partitions})
        assert {p: (a["error_code"], a["base_offset"]) for p, a in first.items()} == {p: (NONE, 0) for p in partitions}
        assert {p: (a["error_code"], a["base_offset"]) for p, a in second.items()} == {
            p: (NONE, len(records)) for p in partitions}

    expected = records + incompressible
    got = read_back(peer, topic, sorted(leaders), len(expected) * len(leaders))

    for partition in sorted(leaders):
        assert [m.offset() for m in got[partition]] == list(range(len(expected)))
        assert [as_read(m) for m in got[partition]] == expected_as_read(expected)


# librdkafka's mock (2.16) writes LogStartOffset into Produce answers from v6, but the field exists from v5: its
# v5 answer is 8 bytes short and does not decode. kafkaprod negotiates v10 with it, so this never bites in use.
_MOCK_PRODUCE_V5 = pytest.mark.xfail(raises=ProtocolError, strict=True,
                                     reason="the mock's Produce v5 answer lacks LogStartOffset")


def _produce_versions() -> list[Any]:
    return [pytest.param(name, version, id=f"{name}-v{version}",
                         marks=[_MOCK_PRODUCE_V5] if (name, version) == ("mock", 5) else [])
            for name in PEERS
            for version in range(PRODUCE.min_version, NEGOTIATED[name][ApiKey.PRODUCE] + 1)]


@pytest.mark.parametrize(("peer", "version"), _produce_versions(), indirect=["peer"])
def test_every_produce_version_appends_batches_that_read_back(peer: Peer, version: int) -> None:
    topic = peer.new_topic(1)
    conn = leader_connection(peer, topic)
    codec = CODECS[version % len(CODECS)]  # every codec through some version, each version cheaply
    first = [Rec(BASE_TS + i, b"k%d" % i, b"v%d via Produce v%d" % (i, version), [("v", b"%d" % version)])
             for i in range(5)]
    second = [Rec(BASE_TS + 10, None, None), Rec(BASE_TS + 11, b"last", b"")]

    answer_1 = produce(conn, topic, {0: build_batch(first, codec)}, version=version)
    answer_2 = produce(conn, topic, {0: build_batch(second, codec)}, version=version, acks=1)

    assert (answer_1[0]["error_code"], answer_1[0]["base_offset"]) == (NONE, 0)
    assert (answer_2[0]["error_code"], answer_2[0]["base_offset"]) == (NONE, len(first))
    got = read_back(peer, topic, [0], len(first) + len(second))
    assert [as_read(m) for m in got[0]] == expected_as_read(first + second)


def test_produce_with_acks_0_appends_without_the_client_awaiting_an_answer(peer: Peer) -> None:
    topic = peer.new_topic(1)
    conn = leader_connection(peer, topic)
    records = [Rec(BASE_TS + i, b"fire", b"and forget %d" % i) for i in range(3)]
    body = produce_body(topic, {0: build_batch(records, "lz4")}, acks=0)
    assert not expects_response(ApiKey.PRODUCE, body)

    produce_id = conn.send(ApiKey.PRODUCE, conn.versions[ApiKey.PRODUCE], body)
    metadata_id = conn.send(ApiKey.METADATA, conn.versions[ApiKey.METADATA], {"topics": [{"name": topic}]})
    # A Kafka broker sends nothing back for acks=0, but Tansu and the mock (2.16) both answer it anyway; whatever
    # arrives before the Metadata answer may only be that.
    early = []
    while read_correlation_id(frame := conn.receive_frame()) != metadata_id:
        early.append(read_correlation_id(frame))
    assert early in ([], [produce_id])

    got = read_back(peer, topic, [0], len(records))
    assert [as_read(m) for m in got[0]] == expected_as_read(records)


def init_producer(peer: Peer) -> tuple[str | None, int, int]:
    """An idempotent producer's (transactional id to put in Produce requests, producer id, epoch).

    The mock checks sequences only for Produce requests that name a transactional id (librdkafka's
    rd_kafka_mock_validate_records), and registers one only at its transaction coordinator: whichever broker
    does not answer NOT_COORDINATOR. Tansu checks plain idempotent producers, and answers InitProducerId only
    from v3 (v0-v2 get error -1): the negotiated version is v4.
    """
    transactional_id = None if peer.name == "tansu" else "kafkaprod-itest"
    errors = []
    for address in addresses(peer.bootstrap_servers):
        conn = peer.connect(address)
        answer = conn.request(ApiKey.INIT_PRODUCER_ID, conn.versions[ApiKey.INIT_PRODUCER_ID],
                              {"transactional_id": transactional_id, "transaction_timeout_ms": 60_000})
        if answer["error_code"] == NONE:
            return transactional_id, answer["producer_id"], answer["producer_epoch"]
        errors.append(answer["error_code"])
        assert answer["error_code"] == NOT_COORDINATOR
    raise AssertionError(f"no {peer.name} broker gave a producer id: InitProducerId errors {errors}")


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_resent_idempotent_batch_is_refused_as_duplicate_and_logged_once(peer: Peer, codec: str) -> None:
    topic = peer.new_topic(1)
    transactional_id, producer_id, epoch = init_producer(peer)
    assert producer_id >= 0 and epoch >= 0
    conn = leader_connection(peer, topic)
    first = [Rec(BASE_TS + i, b"idem", b"first %d" % i) for i in range(4)]
    second = [Rec(BASE_TS + 10 + i, b"idem", b"second %d" % i) for i in range(3)]

    def send(records: list[Rec], base_sequence: int) -> tuple[int, int]:
        batch = build_batch(records, codec, producer_id=producer_id, producer_epoch=epoch,
                            base_sequence=base_sequence)
        answer = produce(conn, topic, {0: batch}, transactional_id=transactional_id)[0]
        return answer["error_code"], answer["base_offset"]

    assert send(first, 0) == (NONE, 0)
    # Both peers refuse the resent batch; a Kafka broker would ack it again with its first offset. Either way
    # it must not be written twice, which the read-back below checks.
    assert send(first, 0)[0] == DUPLICATE_SEQUENCE_NUMBER
    assert send(second, len(first)) == (NONE, len(first))
    assert send(second, 100)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER

    got = read_back(peer, topic, [0], len(first) + len(second))
    assert [as_read(m) for m in got[0]] == expected_as_read(first + second)
