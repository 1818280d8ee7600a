"""The compiled Produce codec (kafkaprod._native.produce_codec) against the schema codec, its reference.

Requests: the same bytes as the schema codec for every version and body shape, records handed through as the
caller's own objects, and every body it does not take left to the schema codec (so errors stay the schema's).
Responses: the same dict as the schema decoder, tagged fields included, and ProtocolError -- never another
exception -- for a truncated or corrupted frame.
"""
from __future__ import annotations

import array
import struct
import types
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkaprod._native import produce_codec
from kafkaprod._native.varint import encode_unsigned_varint
from kafkaprod.errors import ProtocolError, UnsupportedVersionError
from kafkaprod.protocol import ApiKey, decode_request, decode_response, encode_request, encode_response
from kafkaprod.protocol.framing import schema_decode_response, schema_encode_request
from kafkaprod.protocol.messages import PRODUCE
from protocol_bodies import message_body

VERSIONS = list(range(PRODUCE.min_version, PRODUCE.max_version + 1))
FLEXIBLE = [v for v in VERSIONS if v >= PRODUCE.flexible_from]
INT16 = st.integers(-(2**15), 2**15 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)

_BIG = bytes(range(256)) * 64  # a larger buffer that records are slices of


def _joined(chunks: list[Any]) -> bytes:
    return b"".join(chunks)


def _compiled(version: int, body: dict, client_id: str | None = "producer-1", correlation_id: int = 7) -> list:
    chunks = produce_codec.encode_produce_request(version, correlation_id, client_id, body)
    assert chunks is not None, "the compiled encoder left a body it should take to the schema codec"
    return chunks


def _schema(version: int, body: dict, client_id: str | None = "producer-1", correlation_id: int = 7) -> list:
    return schema_encode_request(ApiKey.PRODUCE, version, correlation_id, client_id, body)


def _body(topic_data: list, acks: int = -1, **extra: Any) -> dict:
    return {"acks": acks, "timeout_ms": 30000, "topic_data": topic_data, **extra}


def _partitions(records: list) -> list[dict]:
    return [{"index": i, "records": r} for i, r in enumerate(records)]


def _mixed_records() -> list:
    return [None, b"", b"batch-0", bytearray(b"batch-1" * 3), memoryview(_BIG)[100:164],
            memoryview(_BIG).toreadonly()[1000:1001], array.array("i", [1, 2, 3])]


BODIES = {
    "no-topics": lambda: _body([]),
    "one-partition": lambda: _body([{"name": "t", "partition_data": _partitions([b"x" * 100])}]),
    "topic-without-partitions": lambda: _body([{"name": "t", "partition_data": []}]),
    "null-records": lambda: _body([{"name": "t", "partition_data": _partitions([None, None])}]),
    "empty-records": lambda: _body([{"name": "t", "partition_data": _partitions([b"", bytearray()])}]),
    "mixed-records": lambda: _body([{"name": "topic-a", "partition_data": _partitions(_mixed_records())}]),
    "several-topics": lambda: _body(acks=1, topic_data=[
        {"name": "orders", "partition_data": _partitions([b"a", b"bb", None])},
        {"name": "zählung-✓", "partition_data": _partitions([memoryview(_BIG)[5:50]])},
        {"name": "", "partition_data": _partitions([bytearray(b"x" * 300)])},
        {"name": "日本語のトピック", "partition_data": []},
    ]),
    "acks-0": lambda: _body(acks=0, topic_data=[{"name": "t", "partition_data": _partitions([b"r"])}]),
    "transactional": lambda: _body(transactional_id="txn-ü", topic_data=[
        {"name": "t", "partition_data": _partitions([b"r", b"s"])}]),
    "transactional-none": lambda: _body(transactional_id=None, topic_data=[
        {"name": "t", "partition_data": _partitions([b"r"])}]),
    "tuples": lambda: _body(tuple([{"name": "t", "partition_data": tuple(_partitions([b"r", None]))}])),
    "extreme-ints": lambda: {"acks": -(2**15), "timeout_ms": 2**31 - 1, "topic_data": [
        {"name": "t", "partition_data": [{"index": -(2**31), "records": b"a"},
                                         {"index": 2**31 - 1, "records": b"b"}]}]},
    "1000-partitions": lambda: _body([{"name": "big", "partition_data": [
        {"index": p, "records": memoryview(_BIG)[p:p + 10 + p % 7]} for p in range(1000)]}]),
    "1000-partitions-100-topics": lambda: _body([{"name": f"topic-{t}", "partition_data": [
        {"index": p, "records": None if p == 3 else memoryview(_BIG)[p:p + 20]} for p in range(10)]}
        for t in range(100)]),
    "long-names": lambda: _body([{"name": "n" * 32767, "partition_data": _partitions([b"r"])}],
                                transactional_id="t" * 200),
}


# ---- requests ---------------------------------------------------------------------------------------------------

def test_compiled_versions_are_the_produce_versions_the_schema_describes():
    # A version the schema gains later must not be encoded by the compiled codec as if it were an older one.
    assert (produce_codec.MIN_VERSION, produce_codec.MAX_VERSION) == (PRODUCE.min_version, PRODUCE.max_version)
    assert produce_codec.encode_produce_request(PRODUCE.min_version - 1, 1, None, BODIES["one-partition"]()) is None
    assert produce_codec.encode_produce_request(PRODUCE.max_version + 1, 1, None, BODIES["one-partition"]()) is None
    with pytest.raises(ValueError, match="v12 is not one this codec decodes"):
        produce_codec.decode_produce_response(12, b"\0\0\0\1", False)


@pytest.mark.parametrize("client_id", [None, "", "producer-ünïcödé-✓"], ids=["null", "empty", "non-ascii"])
@pytest.mark.parametrize("shape", list(BODIES))
@pytest.mark.parametrize("version", VERSIONS)
def test_request_bytes_are_the_schema_codecs(version, shape, client_id):
    body = BODIES[shape]()
    compiled = _compiled(version, body, client_id, correlation_id=0x12345678)
    assert _joined(compiled) == _joined(_schema(version, body, client_id, correlation_id=0x12345678))


@pytest.mark.parametrize("version", VERSIONS)
def test_size_prefix_and_chunks_are_what_the_network_client_sends(version):
    body = BODIES["mixed-records"]()
    chunks = _compiled(version, body)
    sizes = [memoryview(c).nbytes for c in chunks]
    assert int.from_bytes(bytes(memoryview(chunks[0])[:4]), "big") == sum(sizes) - 4
    assert all(sizes), "no empty chunks"
    # NetworkClient._enqueue turns every piece into a flat byte view.
    assert b"".join(memoryview(c).cast("B") for c in chunks) == _joined(chunks)


@pytest.mark.parametrize("version", VERSIONS)
def test_records_are_the_callers_own_buffers_in_order(version):
    body = BODIES["mixed-records"]()
    given = [p["records"] for p in body["topic_data"][0]["partition_data"]]
    non_empty = [r for r in given if r is not None and memoryview(r).nbytes]
    chunks = _compiled(version, body)
    passed = [c for c in chunks if any(c is r for r in given)]
    assert len(passed) == len(non_empty) and all(c is r for c, r in zip(passed, non_empty))
    # The schema codec hands over the same objects in the same order.
    assert [c for c in _schema(version, body) if any(c is r for r in given)] == passed
    # Everything else is a slice of one bytearray.
    others = [c for c in chunks if not any(c is r for r in given)]
    assert all(isinstance(c, memoryview) for c in others)
    assert len({id(c.obj) for c in others}) == 1 and isinstance(others[0].obj, bytearray)


@pytest.mark.parametrize("version", VERSIONS)
def test_records_are_not_copied(version):
    batch = bytearray(b"R" * 1000)
    backing = bytearray(b"S" * 500)
    view = memoryview(backing)[100:200]
    body = _body([{"name": "t", "partition_data": _partitions([batch, view])}])
    chunks = _compiled(version, body)
    assert any(c is batch for c in chunks) and any(c is view for c in chunks)
    assert any(isinstance(c, memoryview) and c.obj is backing for c in chunks)
    batch[0:1] = b"X"
    backing[100:101] = b"Y"
    records = [p["records"] for p in decode_request(_joined(chunks)[4:]).body["topic_data"][0]["partition_data"]]
    assert records == [b"X" + b"R" * 999, b"Y" + b"S" * 99]


@pytest.mark.parametrize("shape", ["several-topics", "mixed-records", "transactional", "1000-partitions"])
@pytest.mark.parametrize("version", VERSIONS)
def test_request_round_trips_through_the_schema_decoder(version, shape):
    body = BODIES[shape]()
    got = decode_request(_joined(_compiled(version, body, "cid", 99))[4:])
    assert (got.api_key, got.api_version, got.correlation_id, got.client_id) == (0, version, 99, "cid")
    expected = {
        "transactional_id": body.get("transactional_id"), "acks": body["acks"], "timeout_ms": body["timeout_ms"],
        "topic_data": [{"name": t["name"], "partition_data": [
            {"index": p["index"], "records": None if p["records"] is None else memoryview(p["records"]).tobytes()}
            for p in t["partition_data"]]} for t in body["topic_data"]],
    }
    assert got.body == expected


def test_framing_sends_produce_through_the_compiled_encoder():
    chunks = encode_request(ApiKey.PRODUCE, 9, 1, "c", BODIES["one-partition"]())
    assert isinstance(chunks[0], memoryview) and isinstance(chunks[0].obj, bytearray)
    # The schema codec's chunks are bytearrays of their own.
    assert isinstance(_schema(9, BODIES["one-partition"]())[0], bytearray)


_records_strategy = st.one_of(
    st.none(),
    st.binary(max_size=48),
    st.binary(max_size=48).map(bytearray),
    st.binary(max_size=48).map(lambda b: memoryview(b"<<" + b + b">>")[2:2 + len(b)]),
)
_request_bodies = st.fixed_dictionaries(
    {"acks": INT16, "timeout_ms": INT32, "topic_data": st.lists(st.fixed_dictionaries({
        "name": st.text(max_size=16),
        "partition_data": st.lists(st.fixed_dictionaries({"index": INT32, "records": _records_strategy}),
                                   max_size=5),
    }), max_size=4)},
    optional={"transactional_id": st.none() | st.text(max_size=16)},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(VERSIONS), correlation_id=INT32, client_id=st.none() | st.text(max_size=16),
       body=_request_bodies)
def test_random_requests_match_the_schema_codec(version, correlation_id, client_id, body):
    compiled = _compiled(version, body, client_id, correlation_id)
    assert _joined(compiled) == _joined(_schema(version, body, client_id, correlation_id))
    got = decode_request(_joined(compiled)[4:])
    assert got.correlation_id == correlation_id and got.client_id == client_id
    assert [[(p["index"], p["records"]) for p in t["partition_data"]] for t in got.body["topic_data"]] == [
        [(p["index"], None if p["records"] is None else bytes(p["records"])) for p in t["partition_data"]]
        for t in body["topic_data"]]


# ---- what the compiled encoder leaves to the schema codec -----------------------------------------------------

class _Acks(IntEnum):
    ALL = -1


def _one(partition: dict | None = None, topic: dict | None = None, **body: Any) -> dict:
    part = {"index": 0, "records": b"r"} if partition is None else partition
    top = {"name": "t", "partition_data": [part]} if topic is None else topic
    return {"acks": -1, "timeout_ms": 30000, "topic_data": [top], **body}


# (body, client_id, correlation_id): bodies that encode, by the schema codec, to what it always gave.
ENCODED_BY_THE_SCHEMA = {
    "records-as-a-list": (_one({"index": 0, "records": [b"ab", memoryview(b"cd"), bytearray(b"ef")]}), "c", 1),
    "records-as-a-tuple": (_one({"index": 0, "records": (b"ab", b"")}), "c", 1),
    "bool-index": (_one({"index": True, "records": b"r"}), "c", 1),
    "intenum-acks": (_one(acks=_Acks.ALL), "c", 1),
    "mapping-body": (types.MappingProxyType(_one()), "c", 1),
    "mapping-partition": (_one(types.MappingProxyType({"index": 1, "records": b"r"})), "c", 1),
    "str-subclass-name": (_one(topic={"name": type("Name", (str,), {})("t"), "partition_data": []}), "c", 1),
}

# (body, client_id, correlation_id): bodies the schema codec refuses, with an error that names the field.
REFUSED_BY_THE_SCHEMA = {
    "missing-index": (_one({"records": b"r"}), "c", 1),
    "missing-records": (_one({"index": 0}), "c", 1),
    "missing-acks": ({"timeout_ms": 1, "topic_data": []}, "c", 1),
    "missing-topic-data": ({"acks": 1, "timeout_ms": 1}, "c", 1),
    "missing-name": (_one(topic={"partition_data": []}), "c", 1),
    "acks-out-of-range": (_one(acks=70000), "c", 1),
    "timeout-out-of-range": (_one(timeout_ms=2**31), "c", 1),
    "index-out-of-range": (_one({"index": -(2**31) - 1, "records": b"r"}), "c", 1),
    "index-a-str": (_one({"index": "0", "records": b"r"}), "c", 1),
    "records-a-str": (_one({"index": 0, "records": "text"}), "c", 1),
    "records-an-int": (_one({"index": 0, "records": 5}), "c", 1),
    "null-name": (_one(topic={"name": None, "partition_data": []}), "c", 1),
    "name-not-a-str": (_one(topic={"name": b"t", "partition_data": []}), "c", 1),
    "name-too-long": (_one(topic={"name": "n" * 32768, "partition_data": []}), "c", 1),
    "name-with-a-lone-surrogate": (_one(topic={"name": "t\ud800", "partition_data": []}), "c", 1),
    "topic-data-a-str": ({"acks": 1, "timeout_ms": 1, "topic_data": "t"}, "c", 1),
    "partition-data-a-dict": (_one(topic={"name": "t", "partition_data": {"index": 0}}), "c", 1),
    "topic-a-tuple": ({"acks": 1, "timeout_ms": 1, "topic_data": [("t", [])]}, "c", 1),
    "body-a-list": ([("acks", 1)], "c", 1),
    "transactional-id-an-int": (_one(transactional_id=5), "c", 1),
    "client-id-too-long": (_one(), "c" * 40000, 1),
    "client-id-an-int": (_one(), 5, 1),
    "correlation-id-out-of-range": (_one(), "c", 2**31),
}


@pytest.mark.parametrize("case", list(ENCODED_BY_THE_SCHEMA))
@pytest.mark.parametrize("version", [3, 8, 9, 11])
def test_bodies_the_compiled_encoder_leaves_alone_are_encoded_by_the_schema_codec(version, case):
    body, client_id, cid = ENCODED_BY_THE_SCHEMA[case]
    assert produce_codec.encode_produce_request(version, cid, client_id, body) is None
    assert _joined(encode_request(ApiKey.PRODUCE, version, cid, client_id, body)) == \
        _joined(_schema(version, body, client_id, cid))


@pytest.mark.parametrize("case", list(REFUSED_BY_THE_SCHEMA))
@pytest.mark.parametrize("version", [3, 9])
def test_bad_bodies_get_the_schema_codecs_error(version, case):
    body, client_id, cid = REFUSED_BY_THE_SCHEMA[case]
    assert produce_codec.encode_produce_request(version, cid, client_id, body) is None
    with pytest.raises((ValueError, TypeError)) as schema_error:
        _schema(version, body, client_id, cid)
    with pytest.raises(type(schema_error.value)) as framing_error:
        encode_request(ApiKey.PRODUCE, version, cid, client_id, body)
    assert str(framing_error.value) == str(schema_error.value)


def test_errors_still_name_the_field():
    with pytest.raises(ValueError, match=r"ProduceRequest v9: field topic_data\[0\]\.partition_data\[0\]\.index: "
                                         r"required but missing"):
        encode_request(ApiKey.PRODUCE, 9, 1, None, REFUSED_BY_THE_SCHEMA["missing-index"][0])
    with pytest.raises(ValueError, match=r"ProduceRequest v3: field acks: "):
        encode_request(ApiKey.PRODUCE, 3, 1, None, REFUSED_BY_THE_SCHEMA["acks-out-of-range"][0])
    with pytest.raises(UnsupportedVersionError, match=r"Produce v12 .* v3-v11"):
        encode_request(ApiKey.PRODUCE, 12, 1, None, _one())


def test_non_contiguous_records_are_left_to_the_schema_codec():
    strided = memoryview(b"abcdef")[::2]
    assert produce_codec.encode_produce_request(9, 1, None, _one({"index": 0, "records": strided})) is None


# ---- responses --------------------------------------------------------------------------------------------------

def _response_frame(version: int, body: dict, correlation_id: int = 42) -> bytes:
    return _joined(encode_response(ApiKey.PRODUCE, version, correlation_id, body))[4:]


def _assert_same_decode(version: int, frame: Any, allow_trailing: bool = False) -> dict:
    compiled = produce_codec.decode_produce_response(version, frame, allow_trailing)
    reference = schema_decode_response(ApiKey.PRODUCE, version, frame, allow_trailing=allow_trailing)
    assert compiled == reference
    _assert_same_key_order(compiled, reference)
    return compiled


def _assert_same_key_order(a: Any, b: Any) -> None:
    # Not a contract, but a repr or a JSON dump of a decoded response reads the same whichever codec made it.
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same_key_order(a[k], b[k])
    elif isinstance(a, list):
        for x, y in zip(a, b):
            _assert_same_key_order(x, y)


def _partition(index: int, **fields: Any) -> dict:
    return {"index": index, "error_code": 0, "base_offset": 1_000_000 + index, "log_append_time_ms": -1,
            "log_start_offset": 17, **fields}


RESPONSES = {
    "no-topics": lambda v: {"responses": []},
    "one-partition": lambda v: {"responses": [{"name": "t", "partition_responses": [_partition(0)]}]},
    "topic-without-partitions": lambda v: {"responses": [{"name": "t", "partition_responses": []}]},
    "several-topics": lambda v: {"throttle_time_ms": 250, "responses": [
        {"name": "orders", "partition_responses": [_partition(p, log_append_time_ms=1_700_000_000_000 + p)
                                                   for p in range(4)]},
        {"name": "zählung-✓", "partition_responses": [_partition(0, base_offset=-1, log_start_offset=-1)]},
        {"name": "", "partition_responses": [_partition(2**31 - 1, base_offset=2**63 - 1)]},
    ]},
    "errors": lambda v: {"responses": [{"name": "t", "partition_responses": [
        _partition(0, error_code=6, base_offset=-1, error_message="not the leader: ✗"),
        _partition(1, error_code=-1, error_message=""),
        _partition(2, error_code=87, record_errors=[
            {"batch_index": 0, "batch_index_error_message": "bad record"},
            {"batch_index": 7, "batch_index_error_message": None},
            {"batch_index": -1, "batch_index_error_message": "ünïcödé"}], error_message="INVALID_RECORD"),
    ]}]},
    "leader-hints": lambda v: {"throttle_time_ms": 3, "responses": [{"name": "t", "partition_responses": [
        _partition(0, error_code=6, current_leader={"leader_id": 3, "leader_epoch": 9}),
        _partition(1, current_leader={"leader_id": -1, "leader_epoch": 4}),
        _partition(2)]}],
        "node_endpoints": [{"node_id": 3, "host": "broker-3.example", "port": 9092, "rack": "rack-ä"},
                           {"node_id": 4, "host": "", "port": 1, "rack": None}]},
    "1000-partitions": lambda v: {"responses": [{"name": f"topic-{t}", "partition_responses": [
        _partition(p, error_code=p % 3) for p in range(100)]} for t in range(10)]},
}


@pytest.mark.parametrize("shape", list(RESPONSES))
@pytest.mark.parametrize("version", VERSIONS)
def test_response_decodes_to_the_schema_decoders_dict(version, shape):
    _assert_same_decode(version, _response_frame(version, RESPONSES[shape](version)))


@pytest.mark.parametrize("version", VERSIONS)
def test_fields_a_version_lacks_hold_their_defaults(version):
    got = _assert_same_decode(version, _response_frame(version, RESPONSES["errors"](version)))
    part = got["responses"][0]["partition_responses"][2]
    assert part["log_start_offset"] == (17 if version >= 5 else -1)
    assert part["error_message"] == ("INVALID_RECORD" if version >= 8 else None)
    assert len(part["record_errors"]) == (3 if version >= 8 else 0)
    assert part["current_leader"] is None
    assert got["node_endpoints"] == []
    hints = _assert_same_decode(version, _response_frame(version, RESPONSES["leader-hints"](version)))
    leader = hints["responses"][0]["partition_responses"][0]["current_leader"]
    assert leader == ({"leader_id": 3, "leader_epoch": 9} if version >= 10 else None)
    assert len(hints["node_endpoints"]) == (2 if version >= 10 else 0)
    assert hints["throttle_time_ms"] == 3


def test_decoded_lists_are_fresh_each_time():
    frame = _response_frame(7, RESPONSES["one-partition"](7))
    first = produce_codec.decode_produce_response(7, frame, False)
    first["node_endpoints"].append("x")
    first["responses"][0]["partition_responses"][0]["record_errors"].append("x")
    second = produce_codec.decode_produce_response(7, frame, False)
    assert second["node_endpoints"] == [] and second["responses"][0]["partition_responses"][0]["record_errors"] == []


@pytest.mark.parametrize("version", [3, 9, 11])
def test_any_buffer_type_decodes_alike(version):
    frame = _response_frame(version, RESPONSES["several-topics"](version))
    expected = _assert_same_decode(version, frame)
    padded = b"\xee" * 3 + frame + b"\xee" * 5
    for form in (bytearray(frame), memoryview(frame), memoryview(padded)[3:3 + len(frame)]):
        assert produce_codec.decode_produce_response(version, form, False) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_trailing_bytes_raise_unless_allowed(version):
    frame = _response_frame(version, RESPONSES["one-partition"](version)) + b"\x00\x01"
    with pytest.raises(ProtocolError, match=r"2 unexpected bytes after the end of ProduceResponse"):
        produce_codec.decode_produce_response(version, frame, False)
    with pytest.raises(ProtocolError):
        decode_response(ApiKey.PRODUCE, version, frame)
    _assert_same_decode(version, frame, allow_trailing=True)


def test_framing_sends_produce_responses_through_the_compiled_decoder():
    frame = _response_frame(11, RESPONSES["one-partition"](11))
    assert decode_response(ApiKey.PRODUCE, 11, frame) == produce_codec.decode_produce_response(11, frame, False)
    with pytest.raises(ProtocolError, match=r"truncated frame: throttle_time_ms at offset \d+ needs 4 bytes"):
        decode_response(ApiKey.PRODUCE, 11, frame[:-3])  # the compiled decoder's message, not the schema's


# -- tagged fields, built by hand (the schema encoder only writes the tags it knows) --

def _uvarint(n: int) -> bytes:
    return encode_unsigned_varint(n)


def _tags(fields: list[tuple[int, bytes]]) -> bytes:
    return _uvarint(len(fields)) + b"".join(_uvarint(tag) + _uvarint(len(data)) + data for tag, data in fields)


def _cstr(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    data = s.encode()
    return _uvarint(len(data) + 1) + data


def _leader(leader_id: int, epoch: int, tags: bytes = b"\x00") -> bytes:
    return struct.pack(">ii", leader_id, epoch) + tags


def _endpoints(nodes: list[tuple[int, str, int, str | None]], tags: bytes = b"\x00") -> bytes:
    return _uvarint(len(nodes) + 1) + b"".join(
        struct.pack(">i", n) + _cstr(h) + struct.pack(">i", p) + _cstr(r) + tags for n, h, p, r in nodes)


def _flexible_frame(header_tags: bytes = b"\x00", partition_tags: bytes = b"\x00", topic_tags: bytes = b"\x00",
                    body_tags: bytes = b"\x00", record_error_tags: bytes | None = None) -> bytes:
    """A flexible ProduceResponse: one topic "t" with one partition, each tag section as given."""
    record_errors = b"\x01" if record_error_tags is None else b"\x02" + struct.pack(">i", 4) + _cstr("e") + \
        record_error_tags
    partition = struct.pack(">ihqqq", 3, 0, 100, -1, 7) + record_errors + _cstr(None) + partition_tags
    topic = _cstr("t") + b"\x02" + partition + topic_tags
    return struct.pack(">i", 42) + header_tags + b"\x02" + topic + struct.pack(">i", 5) + body_tags


UNKNOWN = _tags([(1, b"abc"), (99, b""), (300, b"\xff" * 130)])
TAGGED_FRAMES = {
    "unknown-in-header": _flexible_frame(header_tags=UNKNOWN),
    "unknown-in-partition": _flexible_frame(partition_tags=UNKNOWN),
    "unknown-in-topic": _flexible_frame(topic_tags=UNKNOWN),
    "unknown-in-body": _flexible_frame(body_tags=UNKNOWN),
    "unknown-in-record-error": _flexible_frame(record_error_tags=UNKNOWN),
    "leader": _flexible_frame(partition_tags=_tags([(0, _leader(2, 5))])),
    "leader-and-unknown": _flexible_frame(partition_tags=_tags([(5, b"zz"), (0, _leader(2, 5)), (9, b"")])),
    "leader-with-unknown-inside": _flexible_frame(partition_tags=_tags([(0, _leader(2, 5, UNKNOWN))])),
    "leader-twice": _flexible_frame(partition_tags=_tags([(0, _leader(1, 1)), (0, _leader(2, 2))])),
    "endpoints": _flexible_frame(body_tags=_tags([(0, _endpoints([(1, "h1", 9092, None), (2, "h2", 1, "r")]))])),
    "endpoints-none": _flexible_frame(body_tags=_tags([(0, _endpoints([]))])),
    "endpoints-with-unknown-inside": _flexible_frame(body_tags=_tags([(0, _endpoints([(1, "h", 2, "r")], UNKNOWN))])),
    "endpoints-and-unknown": _flexible_frame(body_tags=_tags([(3, b"q"), (0, _endpoints([(1, "h", 2, None)]))])),
    "long-varints": _flexible_frame(partition_tags=b"\x81\x00" + b"\x80\x00" + b"\x89\x80\x00" + _leader(1, 2)),
}
BAD_TAGGED_FRAMES = {
    "leader-declared-too-long": _flexible_frame(partition_tags=b"\x01\x00\x0b" + _leader(1, 2) + b"\x00\x00"),
    "leader-declared-too-short": _flexible_frame(partition_tags=b"\x01\x00\x05" + _leader(1, 2)),
    "endpoints-declared-too-short": _flexible_frame(
        body_tags=b"\x01\x00\x03" + _endpoints([(1, "h", 2, None)])),
    "tag-runs-past-the-end": _flexible_frame(body_tags=b"\x01\x07\x7f"),
    "tag-count-too-large": _flexible_frame(body_tags=b"\x7f\x07\x00"),
    "varint-too-long": _flexible_frame(body_tags=b"\x80\x80\x80\x80\x80\x01"),
    "varint-over-32-bits": _flexible_frame(body_tags=b"\xff\xff\xff\xff\x7f"),
}


@pytest.mark.parametrize("case", list(TAGGED_FRAMES))
@pytest.mark.parametrize("version", FLEXIBLE)
def test_tagged_fields_decode_as_the_schema_decoder_does(version, case):
    got = _assert_same_decode(version, TAGGED_FRAMES[case])
    if case.startswith("leader") and version >= 10:
        assert got["responses"][0]["partition_responses"][0]["current_leader"] is not None
    if case == "endpoints" and version >= 10:
        assert got["node_endpoints"][1] == {"node_id": 2, "host": "h2", "port": 1, "rack": "r"}


@pytest.mark.parametrize("case", list(BAD_TAGGED_FRAMES))
@pytest.mark.parametrize("version", FLEXIBLE)
def test_bad_tagged_fields_raise_protocol_error(version, case):
    frame = BAD_TAGGED_FRAMES[case]
    compiled = _outcome(lambda: produce_codec.decode_produce_response(version, frame, False))
    assert compiled == _outcome(lambda: schema_decode_response(ApiKey.PRODUCE, version, frame))
    if version >= 10 or "declared" not in case:  # v9 has no tag 0 and skips it whatever it holds
        assert compiled[0] == "ProtocolError"


# -- truncated and corrupted frames --

def _cases_for_damage() -> list[Any]:
    return [
        pytest.param(3, _response_frame(3, RESPONSES["several-topics"](3)), id="v3-several-topics"),
        pytest.param(7, _response_frame(7, RESPONSES["errors"](7)), id="v7-errors"),
        pytest.param(8, _response_frame(8, RESPONSES["errors"](8)), id="v8-record-errors"),
        pytest.param(9, _response_frame(9, RESPONSES["errors"](9)), id="v9-record-errors"),
        pytest.param(11, _response_frame(11, RESPONSES["leader-hints"](11)), id="v11-leader-hints"),
        pytest.param(11, TAGGED_FRAMES["leader-with-unknown-inside"], id="v11-leader-with-unknown-tags"),
        pytest.param(10, TAGGED_FRAMES["endpoints-and-unknown"], id="v10-endpoints-and-unknown-tags"),
    ]


@pytest.mark.parametrize("version,frame", _cases_for_damage())
def test_every_truncation_raises_protocol_error(version, frame):
    for cut in range(len(frame)):
        for allow_trailing in (False, True):
            with pytest.raises(ProtocolError):
                produce_codec.decode_produce_response(version, frame[:cut], allow_trailing)


def _outcome(decode: Any) -> tuple[str, Any]:
    try:
        return "ok", decode()
    except ProtocolError:
        return "ProtocolError", None


@pytest.mark.parametrize("version,frame", _cases_for_damage())
def test_corrupted_bytes_give_the_schema_decoders_outcome(version, frame):
    # Every byte set to values that make lengths and counts null, negative, huge, or varints continue.
    for pos in range(len(frame)):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            damaged = frame[:pos] + bytes([value]) + frame[pos + 1:]
            compiled = _outcome(lambda: produce_codec.decode_produce_response(version, damaged, True))
            reference = _outcome(lambda: schema_decode_response(ApiKey.PRODUCE, version, damaged,
                                                                allow_trailing=True))
            assert compiled == reference, (pos, value)


@pytest.mark.parametrize("version", [3, 9])
def test_null_and_negative_counts_and_lengths_are_refused(version):
    frame = _response_frame(version, RESPONSES["one-partition"](version))
    body_at = 5 if version >= 9 else 4
    null_count = b"\x00" if version >= 9 else b"\xff\xff\xff\xff"
    with pytest.raises(ProtocolError, match="null in the non-nullable array responses"):
        produce_codec.decode_produce_response(version, frame[:body_at] + null_count + frame[body_at + len(null_count):],
                                              True)
    if version < 9:
        with pytest.raises(ProtocolError, match="negative responses count -2"):
            produce_codec.decode_produce_response(version, frame[:4] + b"\xff\xff\xff\xfe" + frame[8:], True)
        with pytest.raises(ProtocolError, match="null in the non-nullable string responses name"):
            produce_codec.decode_produce_response(version, frame[:8] + b"\xff\xff" + frame[10:], True)
        with pytest.raises(ProtocolError, match="responses count 1000 at offset 4 cannot fit"):
            produce_codec.decode_produce_response(version, frame[:4] + struct.pack(">i", 1000) + frame[8:], True)


def test_invalid_utf8_is_a_protocol_error():
    frame = _response_frame(3, {"responses": [{"name": "ab", "partition_responses": []}]})
    with pytest.raises(ProtocolError, match="responses name at offset 8 is not valid UTF-8"):
        produce_codec.decode_produce_response(3, frame.replace(b"ab", b"a\xff"), False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), version=st.sampled_from(VERSIONS))
def test_random_responses_decode_to_the_schema_decoders_dict(data, version):
    body = data.draw(message_body(ApiKey.PRODUCE, version, request=False))
    _assert_same_decode(version, _response_frame(version, body))


@settings(max_examples=200, deadline=None)
@given(version=st.sampled_from(FLEXIBLE),
       sections=st.lists(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=20)), max_size=3),
                         min_size=5, max_size=5))
def test_random_tag_sections_decode_as_the_schema_decoder_does(version, sections):
    # Tag 0 can carry garbage here, which the known fields (current_leader, node_endpoints) must refuse alike.
    frame = _flexible_frame(*[_tags(s) for s in sections])
    compiled = _outcome(lambda: produce_codec.decode_produce_response(version, frame, False))
    reference = _outcome(lambda: schema_decode_response(ApiKey.PRODUCE, version, frame))
    assert compiled == reference
