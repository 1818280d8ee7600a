"""Kafka's primitive types: known encodings, null handling, and refusal of truncated or nonsensical input."""
from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaprod.errors import ProtocolError
from kafkaprod.protocol import types as t


def _write(fn, value) -> bytes:
    out = bytearray()
    fn(out, value)
    return bytes(out)


def _read(fn, data: bytes, pos: int = 0):
    return fn(memoryview(data), pos)


@pytest.mark.parametrize(
    "value, encoded",
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
     (2**32 - 1, b"\xff\xff\xff\xff\x0f")],
)
def test_unsigned_varint_matches_kafka_encoding(value, encoded):
    assert _write(t.write_uvarint, value) == encoded
    assert _read(t.read_uvarint, encoded) == (value, len(encoded))
    assert t.uvarint_size(value) == len(encoded)


@pytest.mark.parametrize(
    "value, encoded",
    [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01"),
     (2**31 - 1, b"\xfe\xff\xff\xff\x0f"), (-(2**31), b"\xff\xff\xff\xff\x0f")],
)
def test_varint_is_zigzag_encoded(value, encoded):
    assert _write(t.write_varint, value) == encoded
    assert _read(t.read_varint, encoded) == (value, len(encoded))


@settings(max_examples=200)
@given(st.integers(-(2**63), 2**63 - 1))
def test_varlong_round_trips_over_the_whole_int64_range(value):
    data = _write(t.write_varlong, value)
    assert len(data) <= 10
    assert _read(t.read_varlong, data) == (value, len(data))


def test_varint_longer_than_five_bytes_is_refused():
    with pytest.raises(ProtocolError, match="longer than 5 bytes"):
        _read(t.read_uvarint, b"\x80\x80\x80\x80\x80\x01")


def test_varint_cut_off_mid_way_is_a_truncation():
    with pytest.raises(ProtocolError, match="truncated"):
        _read(t.read_uvarint, b"\x80\x80")


@pytest.mark.parametrize("value", [-1, 2**32])
def test_unsigned_varint_out_of_range_is_refused_on_write(value):
    with pytest.raises(ValueError):
        _write(t.write_uvarint, value)


def test_fixed_width_reads_stop_at_the_end_of_the_view():
    data = b"\x00\x01\x02\x03\x04\x05\x06\x07"
    assert _read(t.read_int64, data) == (0x0001020304050607, 8)
    with pytest.raises(ProtocolError, match="int64 at offset 1 needs 8 bytes, only 7 remain"):
        _read(t.read_int64, data, 1)
    # a view cut short is the frame end, even though the underlying bytes continue
    with pytest.raises(ProtocolError):
        t.read_int32(memoryview(data)[:3], 0)


def test_strings_take_int16_length_and_null_is_minus_one():
    assert _write(t.write_string, "héllo") == b"\x00\x06h\xc3\xa9llo"
    assert _write(t.write_nullable_string, None) == b"\xff\xff"
    assert _read(t.read_nullable_string, b"\xff\xff") == (None, 2)
    assert _read(t.read_string, b"\x00\x06h\xc3\xa9llo") == ("héllo", 8)


def test_compact_strings_take_length_plus_one_and_null_is_zero():
    assert _write(t.write_compact_string, "ab") == b"\x03ab"
    assert _write(t.write_compact_nullable_string, None) == b"\x00"
    assert _read(t.read_compact_nullable_string, b"\x00") == (None, 1)
    assert _read(t.read_compact_string, b"\x01") == ("", 1)


def test_null_in_a_non_nullable_string_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="null in a non-nullable"):
        _read(t.read_string, b"\xff\xff")
    with pytest.raises(ProtocolError, match="null in a non-nullable"):
        _read(t.read_compact_string, b"\x00")


def test_negative_lengths_other_than_minus_one_are_refused():
    with pytest.raises(ProtocolError, match="negative string length -2"):
        _read(t.read_nullable_string, b"\xff\xfe")
    with pytest.raises(ProtocolError, match="negative bytes length"):
        _read(t.read_nullable_bytes, b"\x80\x00\x00\x00")


def test_length_running_past_the_frame_is_refused_before_reading():
    with pytest.raises(ProtocolError, match="runs past the end"):
        _read(t.read_bytes, b"\x7f\xff\xff\xff" + b"x" * 10)
    with pytest.raises(ProtocolError, match="runs past the end"):
        _read(t.read_compact_string, b"\x05abc")


def test_invalid_utf8_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        _read(t.read_string, b"\x00\x02\xc3\x28")


def test_string_over_32767_bytes_is_refused_on_write():
    with pytest.raises(ValueError, match="32767"):
        _write(t.write_string, "x" * 32768)
    with pytest.raises(ValueError, match="32767"):
        _write(t.write_compact_string, "x" * 32768)


def test_null_for_non_nullable_is_refused_on_write():
    with pytest.raises(ValueError, match="non-nullable"):
        _write(t.write_string, None)
    with pytest.raises(ValueError, match="non-nullable"):
        _write(t.write_bytes, None)


def test_bytes_accept_any_buffer_and_are_copied_out_on_read():
    assert _write(t.write_bytes, memoryview(b"abc")) == b"\x00\x00\x00\x03abc"
    assert _write(t.write_compact_nullable_bytes, bytearray(b"ab")) == b"\x03ab"
    value, pos = _read(t.read_compact_bytes, b"\x03ab")
    assert (value, pos) == (b"ab", 3) and type(value) is bytes


def test_uuid_is_16_raw_bytes():
    u = uuid.UUID("01a21383-f8ba-7453-927d-ce6388117b29")
    assert _write(t.write_uuid, u) == u.bytes
    assert _write(t.write_uuid, u.bytes) == u.bytes
    assert _read(t.read_uuid, u.bytes) == (u, 16)
    with pytest.raises(ValueError, match="16 bytes"):
        _write(t.write_uuid, b"short")
    with pytest.raises(ProtocolError):
        _read(t.read_uuid, u.bytes[:15])


def test_array_count_that_cannot_fit_in_the_remaining_bytes_is_refused():
    # 1000 elements of at least 4 bytes cannot follow in 8 bytes: refused before any allocation
    with pytest.raises(ProtocolError, match="array count 1000"):
        t.read_array_count(memoryview(b"\x00\x00\x03\xe8" + b"\x00" * 8), 0, False, 4)
    assert t.read_array_count(memoryview(b"\x00\x00\x00\x02" + b"\x00" * 8), 0, False, 4) == (2, 4)
    assert t.read_array_count(memoryview(b"\xff\xff\xff\xff"), 0, False, 4) == (-1, 4)
    assert t.read_array_count(memoryview(b"\x00"), 0, True, 4) == (-1, 1)
    with pytest.raises(ProtocolError, match="negative array count"):
        t.read_array_count(memoryview(b"\xff\xff\xff\xfe"), 0, False, 4)
