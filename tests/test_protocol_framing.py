"""Framing: size prefixes, headers (and ApiVersions' exceptions to them), the stream splitter, and version
negotiation."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaprod.errors import ProtocolError, UnsupportedVersionError
from kafkaprod.protocol import (
    SUPPORTED_VERSIONS,
    ApiKey,
    FrameSplitter,
    api_versions_fallback,
    decode_response,
    decode_response_header,
    encode_request,
    encode_response,
    expects_response,
    negotiate_version,
    negotiate_versions,
    read_correlation_id,
)


def _frame(chunks) -> bytes:
    return b"".join(chunks)[4:]


def _api_versions_body(error_code: int, ranges: dict[int, tuple[int, int]]) -> dict:
    return {"error_code": error_code, "throttle_time_ms": 0,
            "api_keys": [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in ranges.items()]}


# ---- headers ----------------------------------------------------------------------------------------------------

def test_request_header_v1_then_v2_with_empty_tag_section():
    v1 = _frame(encode_request(ApiKey.API_VERSIONS, 2, 0x01020304, "ab", {}))
    assert v1 == b"\x00\x12\x00\x02\x01\x02\x03\x04\x00\x02ab"
    v2 = _frame(encode_request(ApiKey.API_VERSIONS, 3, 1, "ab", {"client_software_name": "x",
                                                                 "client_software_version": "1"}))
    # client_id keeps its int16 length in header v2; the header ends with an empty tagged-field section
    assert v2 == b"\x00\x12\x00\x03\x00\x00\x00\x01\x00\x02ab\x00" + b"\x02x\x021\x00"


def test_null_client_id_is_minus_one_length():
    assert _frame(encode_request(ApiKey.API_VERSIONS, 0, 1, None, {})) == b"\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff"


def test_flexible_response_header_carries_a_tag_section_but_api_versions_never_does():
    produce = _frame(encode_response(ApiKey.PRODUCE, 9, 42, {"responses": []}))
    assert produce[:5] == b"\x00\x00\x00\x2a\x00"
    assert decode_response_header(ApiKey.PRODUCE, 9, produce) == (42, 5)
    assert decode_response_header(ApiKey.PRODUCE, 8, _frame(encode_response(ApiKey.PRODUCE, 8, 42,
                                                                            {"responses": []}))) == (42, 4)
    api_versions = _frame(encode_response(ApiKey.API_VERSIONS, 3, 42, _api_versions_body(0, {18: (0, 3)})))
    assert decode_response_header(ApiKey.API_VERSIONS, 3, api_versions) == (42, 4)
    assert api_versions[4:6] == b"\x00\x00"  # the body's error code straight after the correlation id


def test_only_produce_with_acks_zero_goes_unanswered():
    assert not expects_response(ApiKey.PRODUCE, {"acks": 0})
    assert expects_response(ApiKey.PRODUCE, {"acks": -1}) and expects_response(ApiKey.PRODUCE, {"acks": 1})
    assert expects_response(ApiKey.METADATA, {"topics": None})


def test_correlation_id_is_read_from_any_header_version():
    assert read_correlation_id(b"\xff\xff\xff\xfe\x00") == -2
    with pytest.raises(ProtocolError):
        read_correlation_id(b"\x00\x01")


def test_trailing_bytes_after_a_response_are_refused_unless_allowed():
    frame = _frame(encode_response(ApiKey.INIT_PRODUCER_ID, 4, 1, {"error_code": 0, "producer_id": 5,
                                                                    "producer_epoch": 0})) + b"\x00\x00"
    with pytest.raises(ProtocolError, match="2 unexpected bytes after the end of InitProducerIdResponse v4"):
        decode_response(ApiKey.INIT_PRODUCER_ID, 4, frame)
    assert decode_response(ApiKey.INIT_PRODUCER_ID, 4, frame, allow_trailing=True)["producer_id"] == 5


def test_response_frames_may_be_bytearray_or_memoryview():
    frame = _frame(encode_response(ApiKey.INIT_PRODUCER_ID, 1, 1, {"error_code": 0, "producer_id": 5,
                                                                    "producer_epoch": 2}))
    for form in (bytearray(frame), memoryview(frame)):
        assert decode_response(ApiKey.INIT_PRODUCER_ID, 1, form)["producer_epoch"] == 2


# ---- ApiVersions and UNSUPPORTED_VERSION --------------------------------------------------------------------------

@pytest.mark.parametrize("asked", [1, 2, 3])
def test_unsupported_version_answer_is_read_as_v0_whatever_version_was_asked(asked):
    # what a broker sends to a too-new ApiVersions request: header v0, body v0, error 35, its own ranges
    frame = _frame(encode_response(ApiKey.API_VERSIONS, 0, 9, _api_versions_body(35, {18: (0, 2), 0: (3, 9)})))
    body = decode_response(ApiKey.API_VERSIONS, asked, frame)
    assert body["error_code"] == 35
    assert body["api_keys"] == [{"api_key": 18, "min_version": 0, "max_version": 2},
                                {"api_key": 0, "min_version": 3, "max_version": 9}]


def test_unsupported_version_answer_from_kafka_python_is_read_as_v0():
    from protocol_bodies import kp_new_class

    KpResponse = kp_new_class(ApiKey.API_VERSIONS, request=False)

    av = KpResponse.ApiVersion
    theirs = KpResponse[0](error_code=35, api_keys=[av(api_key=18, min_version=0, max_version=1)])
    theirs.with_header(correlation_id=3)
    frame = bytes(theirs.encode(header=True, framed=True))[4:]
    body = decode_response(ApiKey.API_VERSIONS, 3, frame)
    assert api_versions_fallback(body, 3) == 1


def test_api_versions_body_that_only_parses_as_v0_falls_back_to_v0():
    # an old broker answering v0-shaped without an error: v2 expects a throttle time that is not there
    frame = _frame(encode_response(ApiKey.API_VERSIONS, 0, 9, _api_versions_body(0, {0: (3, 7)})))
    body = decode_response(ApiKey.API_VERSIONS, 2, frame)
    assert body["api_keys"] == [{"api_key": 0, "min_version": 3, "max_version": 7}]


def test_unsupported_version_answer_in_no_known_shape_still_directs_a_v0_retry():
    # librdkafka's mock cluster (2.16) refusing ApiVersions v3: error 35, a one-byte count of 1, the ApiVersions
    # range 0-2 without a tag section, throttle time 0 -- neither v0 nor v3 parses it.
    frame = bytes.fromhex("00000001" "0023" "01" "0012" "0000" "0002" "00000000")
    body = decode_response(ApiKey.API_VERSIONS, 3, frame)
    assert (body["error_code"], body["api_keys"]) == (35, [])
    assert api_versions_fallback(body, 3) == 0


def test_api_versions_garbage_reports_the_error_of_the_version_asked():
    frame = b"\x00\x00\x00\x01" + b"\x00\x00\x05"
    with pytest.raises(ProtocolError):
        decode_response(ApiKey.API_VERSIONS, 3, frame)


def test_api_versions_fallback_picks_the_brokers_highest_older_version():
    assert api_versions_fallback(_api_versions_body(35, {18: (0, 2)}), 3) == 2
    assert api_versions_fallback(_api_versions_body(35, {18: (0, 5)}), 3) == 2  # never the version refused
    assert api_versions_fallback(_api_versions_body(35, {}), 3) == 0  # pre-KIP-511 brokers list nothing
    assert api_versions_fallback(_api_versions_body(35, {18: (1, 0)}), 3) == 0  # nonsense range: v0
    assert api_versions_fallback(_api_versions_body(0, {18: (0, 3)}), 3) is None
    with pytest.raises(UnsupportedVersionError):
        api_versions_fallback(_api_versions_body(35, {}), 0)


# ---- negotiation ----------------------------------------------------------------------------------------------------

def test_negotiation_picks_highest_common_version():
    assert negotiate_version(ApiKey.PRODUCE, 0, 7) == 7
    assert negotiate_version(ApiKey.PRODUCE, 5, 20) == SUPPORTED_VERSIONS[ApiKey.PRODUCE][1]
    with pytest.raises(UnsupportedVersionError, match=r"Produce .* v0-v2, kafkaprod v3-v11"):
        negotiate_version(ApiKey.PRODUCE, 0, 2)


@pytest.mark.parametrize("broker, expected", [
    # Tansu 0.6.0 and librdkafka's mock cluster, as they advertise themselves
    ({0: (0, 11), 3: (0, 12), 18: (0, 4), 22: (0, 5)}, {0: 11, 3: 12, 18: 3, 22: 4}),
    ({0: (0, 10), 3: (0, 13), 18: (0, 2), 22: (0, 4)}, {0: 10, 3: 12, 18: 2, 22: 4}),
])
def test_negotiation_against_the_reference_brokers(broker, expected):
    broker = {**broker, 1: (0, 16), 75: (0, 0)}  # APIs kafkaprod does not speak are ignored
    assert negotiate_versions(_api_versions_body(0, broker)) == expected


# ---- frame splitter ---------------------------------------------------------------------------------------------------

def _stream(frames: list[bytes]) -> bytes:
    return b"".join(len(f).to_bytes(4, "big") + f for f in frames)


def test_splitter_yields_frames_fed_one_byte_at_a_time():
    frames = [b"abc", b"", b"x" * 300]
    sp = FrameSplitter()
    out = []
    for b in _stream(frames):
        out += sp.feed(bytes([b]))
    assert out == frames and sp.buffered == 0


def test_splitter_yields_several_frames_from_one_read_and_keeps_the_rest():
    sp = FrameSplitter()
    data = _stream([b"one", b"two", b"three"])
    assert sp.feed(data[:-2]) == [b"one", b"two"]
    assert sp.buffered == len(data) - 2 - 14
    assert sp.feed(data[-2:]) == [b"three"]


@settings(max_examples=100, deadline=None)
@given(frames=st.lists(st.binary(max_size=50), max_size=6), data=st.data())
def test_splitter_output_does_not_depend_on_how_reads_are_cut(frames, data):
    stream = _stream(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    sp = FrameSplitter()
    out = []
    prev = 0
    for c in cuts + [len(stream)]:
        out += sp.feed(memoryview(stream)[prev:c])
        prev = c
    assert out == frames


@pytest.mark.parametrize("prefix", [b"\xff\xff\xff\xff", b"\x80\x00\x00\x00"])
def test_splitter_refuses_a_negative_size(prefix):
    with pytest.raises(ProtocolError, match="outside 0..100"):
        FrameSplitter(max_frame_size=100).feed(prefix)


def test_splitter_refuses_a_size_above_the_maximum_before_buffering_it():
    sp = FrameSplitter(max_frame_size=1000)
    assert sp.feed((1000).to_bytes(4, "big") + b"x" * 10) == []
    sp = FrameSplitter(max_frame_size=1000)
    with pytest.raises(ProtocolError, match="1001"):
        sp.feed((1001).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="size prefix"):
        FrameSplitter().feed((200 * 1024 * 1024).to_bytes(4, "big"))


def test_splitter_refuses_a_bad_size_that_follows_good_frames():
    sp = FrameSplitter(max_frame_size=10)
    with pytest.raises(ProtocolError):
        sp.feed(_stream([b"ok"]) + (11).to_bytes(4, "big"))


def test_splitter_refuses_a_negative_maximum():
    with pytest.raises(ValueError, match="max_frame_size"):
        FrameSplitter(max_frame_size=-1)
