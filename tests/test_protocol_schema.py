"""The schema codec's behaviour: records passed through uncopied, defaults, errors that name the field, tagged
fields (defaults not written, unknown ones skipped, sizes enforced)."""
from __future__ import annotations

import uuid

import pytest

from kafkaprod.errors import ProtocolError, UnsupportedVersionError
from kafkaprod.protocol import ApiKey, decode_request, decode_response, encode_request, encode_response
from kafkaprod.protocol.schema import Array, Field, Sink, Struct, encode_struct


def _produce_body(records) -> dict:
    return {"acks": -1, "timeout_ms": 30000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}]}


def _frame(chunks) -> bytes:
    return b"".join(chunks)[4:]


@pytest.mark.parametrize("version", [3, 8, 9, 11])
def test_record_batch_is_its_own_chunk_and_not_copied(version):
    batch = bytearray(b"R" * 100_000)
    view = memoryview(batch)
    chunks = encode_request(ApiKey.PRODUCE, version, 7, "me", _produce_body(view))
    assert any(c is view for c in chunks)
    assert chunks[0][:4] == (sum(memoryview(c).nbytes for c in chunks) - 4).to_bytes(4, "big")
    # the batch is referenced, not copied: a change to it shows in what would be sent
    batch[0:1] = b"X"
    assert decode_request(_frame(chunks)).body["topic_data"][0]["partition_data"][0]["records"][:2] == b"XR"


def test_records_given_as_a_list_of_buffers_are_sent_back_to_back_under_one_length():
    parts = [b"a" * 10, memoryview(b"b" * 20), bytearray(b"c" * 5)]
    chunks = encode_request(ApiKey.PRODUCE, 9, 1, None, _produce_body(parts))
    for p in parts:
        assert any(c is p for c in chunks)
    assert int.from_bytes(chunks[0][:4], "big") == sum(memoryview(c).nbytes for c in chunks) - 4
    records = decode_request(_frame(chunks)).body["topic_data"][0]["partition_data"][0]["records"]
    assert records == b"a" * 10 + b"b" * 20 + b"c" * 5


def test_records_of_wider_items_are_sized_in_bytes_not_items():
    import array

    arr = array.array("i", [1, 2, 3])  # 12 bytes, len() == 3
    chunks = encode_request(ApiKey.PRODUCE, 3, 1, None, _produce_body(arr))
    records = decode_request(_frame(chunks)).body["topic_data"][0]["partition_data"][0]["records"]
    assert records == arr.tobytes()


def test_null_records_are_encoded_as_null():
    chunks = encode_request(ApiKey.PRODUCE, 9, 1, None, _produce_body(None))
    assert decode_request(_frame(chunks)).body["topic_data"][0]["partition_data"][0]["records"] is None


def test_request_without_records_is_a_single_chunk_with_the_size_prefix_first():
    chunks = encode_request(ApiKey.API_VERSIONS, 3, 1, "cid", {})
    assert len(chunks) == 1
    assert int.from_bytes(chunks[0][:4], "big") == len(chunks[0]) - 4


def test_missing_required_field_is_named_with_its_path():
    body = _produce_body(b"x")
    del body["topic_data"][0]["partition_data"][0]["index"]
    with pytest.raises(ValueError, match=r"ProduceRequest v9: field topic_data\[0\]\.partition_data\[0\]\.index: "
                                         r"required but missing"):
        encode_request(ApiKey.PRODUCE, 9, 1, None, body)


def test_out_of_range_value_is_named_with_its_path():
    body = _produce_body(b"x")
    body["acks"] = 70000
    with pytest.raises(ValueError, match=r"ProduceRequest v3: field acks: "):
        encode_request(ApiKey.PRODUCE, 3, 1, None, body)
    body = {"topics": [{"name": None}]}
    with pytest.raises(ValueError, match=r"MetadataRequest v9: field topics\[0\]\.name: null given"):
        encode_request(ApiKey.METADATA, 9, 1, None, body)


def test_wrong_container_type_is_refused():
    with pytest.raises(ValueError, match="field topics: expected a list, got str"):
        encode_request(ApiKey.METADATA, 9, 1, None, {"topics": "my-topic"})
    with pytest.raises(ValueError, match=r"topic_data\[0\]: TopicProduceData must be a dict"):
        encode_request(ApiKey.PRODUCE, 9, 1, None, {"acks": 1, "timeout_ms": 1, "topic_data": [("t", [])]})


def test_fields_the_version_lacks_are_ignored_and_defaults_fill_in():
    body = {"transaction_timeout_ms": 1000, "producer_id": 42, "producer_epoch": 3}
    v0 = decode_request(_frame(encode_request(ApiKey.INIT_PRODUCER_ID, 0, 1, None, body))).body
    assert v0 == {"transactional_id": None, "transaction_timeout_ms": 1000, "producer_id": -1, "producer_epoch": -1}
    v3 = decode_request(_frame(encode_request(ApiKey.INIT_PRODUCER_ID, 3, 1, None, body))).body
    assert v3["producer_id"] == 42 and v3["producer_epoch"] == 3


def test_decoded_response_holds_defaults_for_fields_the_version_lacks():
    body = {"responses": [{"name": "t", "partition_responses": [
        {"index": 2, "error_code": 0, "base_offset": 10, "log_start_offset": 5}]}]}
    v3 = decode_response(ApiKey.PRODUCE, 3, _frame(encode_response(ApiKey.PRODUCE, 3, 1, body)))
    part = v3["responses"][0]["partition_responses"][0]
    assert part["log_start_offset"] == -1  # v5+, so not sent at v3
    assert part["record_errors"] == [] and part["error_message"] is None and part["current_leader"] is None
    assert v3["throttle_time_ms"] == 0


def test_version_kafkaprod_does_not_speak_is_refused():
    with pytest.raises(UnsupportedVersionError, match=r"Produce v2 .* v3-v11"):
        encode_request(ApiKey.PRODUCE, 2, 1, None, _produce_body(b""))
    with pytest.raises(UnsupportedVersionError):
        decode_response(ApiKey.METADATA, 13, b"\x00\x00\x00\x01")
    with pytest.raises(ValueError, match="api_key 1 is not one kafkaprod speaks"):
        encode_request(1, 0, 1, None, {})


def test_metadata_request_null_topics_means_all_and_empty_means_none():
    header_v1 = 2 + 2 + 4 + 2  # api_key, api_version, correlation_id, null client_id
    null = _frame(encode_request(ApiKey.METADATA, 1, 1, None, {"topics": None}))
    empty = _frame(encode_request(ApiKey.METADATA, 1, 1, None, {"topics": []}))
    assert null[header_v1:] == b"\xff\xff\xff\xff" and empty[header_v1:] == b"\x00\x00\x00\x00"
    # v9: compact null (0), allow_auto_topic_creation (default true), two authorized-ops flags, no tags
    flexible = _frame(encode_request(ApiKey.METADATA, 9, 1, None, {"topics": None}))
    assert flexible[header_v1 + 1:] == b"\x00\x01\x00\x00\x00"


def test_metadata_v12_request_may_name_topics_by_id_only():
    tid = uuid.uuid4()
    body = {"topics": [{"topic_id": tid, "name": None}]}
    got = decode_request(_frame(encode_request(ApiKey.METADATA, 12, 1, None, body))).body
    assert got["topics"] == [{"topic_id": tid, "name": None}]


def test_produce_v10_leader_hints_round_trip():
    body = {
        "responses": [{"name": "t", "partition_responses": [
            {"index": 0, "error_code": 6, "base_offset": -1,
             "current_leader": {"leader_id": 3, "leader_epoch": 9}}]}],
        "node_endpoints": [{"node_id": 3, "host": "b3", "port": 9092, "rack": "r1"}],
    }
    got = decode_response(ApiKey.PRODUCE, 10, _frame(encode_response(ApiKey.PRODUCE, 10, 1, body)))
    assert got["responses"][0]["partition_responses"][0]["current_leader"] == {"leader_id": 3, "leader_epoch": 9}
    assert got["node_endpoints"] == [{"node_id": 3, "host": "b3", "port": 9092, "rack": "r1"}]


# ---- tagged fields, on a toy schema ------------------------------------------------------------------------------

_WITH_TAGS = Struct("T", [
    Field("a", "int32", "0+"),
    Field("note", "string", "0+", tag=5, default=""),
    Field("big", "int64", "0+", tag=9, default=-1),
])
_WITHOUT_TAGS = Struct("T", [Field("a", "int32", "0+")])


def _encode(struct: Struct, value: dict) -> bytes:
    sink = Sink()
    encode_struct(struct.codec(0, True, True), sink, value, "T")
    return sink.joined()


def test_tagged_fields_at_their_default_are_not_written():
    assert _encode(_WITH_TAGS, {"a": 1, "note": "", "big": -1}) == b"\x00\x00\x00\x01\x00"
    assert _encode(_WITH_TAGS, {"a": 1}) == b"\x00\x00\x00\x01\x00"


def test_tagged_fields_are_written_in_tag_order_with_their_size():
    data = _encode(_WITH_TAGS, {"a": 1, "big": 7, "note": "hi"})
    assert data == b"\x00\x00\x00\x01" + b"\x02" + b"\x05\x03\x03hi" + b"\x09\x08" + (7).to_bytes(8, "big")
    value, pos = _WITH_TAGS.codec(0, True, True).decode(memoryview(data), 0)
    assert value == {"a": 1, "note": "hi", "big": 7} and pos == len(data)


def test_unknown_tagged_fields_are_skipped():
    data = _encode(_WITH_TAGS, {"a": 1, "big": 7, "note": "hi"})
    value, pos = _WITHOUT_TAGS.codec(0, True, True).decode(memoryview(data), 0)
    assert value == {"a": 1} and pos == len(data)


def test_tagged_field_whose_value_overruns_its_declared_size_is_refused():
    # tag 9 declares 4 bytes but an int64 needs 8: the read must stop at the declared end
    data = b"\x00\x00\x00\x01" + b"\x01" + b"\x09\x04" + b"\x00" * 8
    with pytest.raises(ProtocolError):
        _WITH_TAGS.codec(0, True, True).decode(memoryview(data), 0)


def test_tagged_field_whose_value_underfills_its_declared_size_is_refused():
    data = b"\x00\x00\x00\x01" + b"\x01" + b"\x09\x0a" + b"\x00" * 10
    with pytest.raises(ProtocolError, match="declared 10 bytes but its value took 8"):
        _WITH_TAGS.codec(0, True, True).decode(memoryview(data), 0)


def test_arrays_of_fixed_width_items_round_trip():
    s = Struct("A", [Field("xs", Array("int32"), "0+"), Field("ys", Array("int64"), "0+", nullable="0+")])
    for compact in (False, True):
        sink = Sink()
        encode_struct(s.codec(0, compact, compact), sink, {"xs": [1, -2, 3], "ys": None}, "A")
        value, _ = s.codec(0, compact, compact).decode(memoryview(sink.joined()), 0)
        assert value == {"xs": [1, -2, 3], "ys": None}


def test_schema_refuses_unknown_types_and_duplicate_fields():
    with pytest.raises(ValueError, match="unknown type"):
        Field("x", "int31", "0+")
    with pytest.raises(ValueError, match="duplicate field"):
        Struct("D", [Field("x", "int8", "0+"), Field("x", "int8", "1+")])
