"""kafkaprod._native.varint against a plain Python zig-zag LEB128 reference and kafka-python's varint helpers."""
from __future__ import annotations

import random

import pytest
from kafka.record import util as kafka_util

from kafkaprod._native.varint import (
    decode_unsigned_varint, decode_varint, decode_varlong, encode_unsigned_varint, encode_varint, encode_varlong,
    size_of_unsigned_varint, size_of_varint, size_of_varlong,
)

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def ref_uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def ref_zigzag(value: int, bits: int) -> int:
    return ((value << 1) ^ (value >> (bits - 1))) & ((1 << bits) - 1)


def kafka_python_encode(value: int) -> bytes:
    out = bytearray()
    kafka_util.encode_varint(value, out.append)
    return bytes(out)


def edge_values(lo: int, hi: int) -> list[int]:
    values = {0, -1, 1, lo, hi, lo + 1, hi - 1}
    for shift in range(1, hi.bit_length() + 1, 7):  # values whose encodings change length
        for v in ((1 << shift) - 1, 1 << shift, -(1 << shift), -(1 << shift) - 1):
            if lo <= v <= hi:
                values.add(v)
    return sorted(values)


def random_values(lo: int, hi: int, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    # Spread over magnitudes, not just uniformly (which would almost always give the longest encoding).
    return [max(lo, min(hi, rng.choice((-1, 1)) * rng.getrandbits(rng.randint(0, hi.bit_length()))))
            for _ in range(count)]


INT32_VALUES = edge_values(INT32_MIN, INT32_MAX) + random_values(INT32_MIN, INT32_MAX, 3000, 32)
INT64_VALUES = edge_values(INT64_MIN, INT64_MAX) + random_values(INT64_MIN, INT64_MAX, 3000, 64)
UINT32_VALUES = [v for v in edge_values(0, 0xFFFFFFFF) if v >= 0] + [
    abs(v) for v in random_values(0, 0xFFFFFFFF, 3000, 33)]


def test_varint_encodes_like_reference_and_kafka_python():
    for v in INT32_VALUES:
        expected = ref_uvarint(ref_zigzag(v, 32))
        assert encode_varint(v) == expected == kafka_python_encode(v), v
        assert size_of_varint(v) == len(expected) == kafka_util.size_of_varint(v), v


def test_varlong_encodes_like_reference_and_kafka_python():
    for v in INT64_VALUES:
        expected = ref_uvarint(ref_zigzag(v, 64))
        assert encode_varlong(v) == expected == kafka_python_encode(v), v
        assert size_of_varlong(v) == len(expected) == kafka_util.size_of_varint(v), v


def test_unsigned_varint_encodes_like_reference():
    for v in UINT32_VALUES:
        expected = ref_uvarint(v)
        assert encode_unsigned_varint(v) == expected, v
        assert size_of_unsigned_varint(v) == len(expected), v


def test_edge_values_have_the_known_encodings():
    assert encode_varint(0) == b"\x00"
    assert encode_varint(-1) == b"\x01"
    assert encode_varint(1) == b"\x02"
    assert encode_varint(INT32_MAX) == b"\xfe\xff\xff\xff\x0f"
    assert encode_varint(INT32_MIN) == b"\xff\xff\xff\xff\x0f"
    assert encode_varlong(INT64_MAX) == b"\xfe" + b"\xff" * 8 + b"\x01"
    assert encode_varlong(INT64_MIN) == b"\xff" * 9 + b"\x01"
    assert encode_unsigned_varint(0xFFFFFFFF) == b"\xff\xff\xff\xff\x0f"


def test_decoders_invert_the_encoders_and_agree_with_kafka_python():
    for v in INT32_VALUES:
        data = b"\x99" + encode_varint(v) + b"\x7f"  # surrounded, to check positions
        assert decode_varint(data, 1) == (v, len(data) - 1) == kafka_util.decode_varint(data, 1), v
    for v in INT64_VALUES:
        data = b"\x99" + encode_varlong(v) + b"\x7f"
        assert decode_varlong(data, 1) == (v, len(data) - 1) == kafka_util.decode_varint(data, 1), v
    for v in UINT32_VALUES:
        data = encode_unsigned_varint(v)
        assert decode_unsigned_varint(data) == (v, len(data)), v


def test_decoders_read_any_bytes_like_object():
    data = encode_varint(-300) + encode_varlong(1 << 40)
    for buf in (bytearray(data), memoryview(data)):
        value, pos = decode_varint(buf)
        assert value == -300
        assert decode_varlong(buf, pos) == (1 << 40, len(data))


@pytest.mark.parametrize("decode", [decode_varint, decode_varlong, decode_unsigned_varint])
@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff", b"\x81\x80\x80"])
def test_truncated_input_raises_value_error(decode, data):
    with pytest.raises(ValueError, match="truncated or malformed"):
        decode(data)


def test_over_long_encodings_raise_value_error():
    with pytest.raises(ValueError):
        decode_varint(b"\x80\x80\x80\x80\x80\x00")  # 6 bytes: more than an int32 varint can take
    with pytest.raises(ValueError):
        decode_varint(b"\xff\xff\xff\xff\x1f")  # 5 bytes, but over 32 bits of payload
    with pytest.raises(ValueError):
        decode_unsigned_varint(b"\x80\x80\x80\x80\x80\x00")
    with pytest.raises(ValueError):
        decode_unsigned_varint(b"\xff\xff\xff\xff\x10")
    with pytest.raises(ValueError):
        decode_varlong(b"\x80" * 10 + b"\x00")  # 11 bytes


def test_decode_position_outside_the_buffer_raises_value_error():
    with pytest.raises(ValueError, match="position 5 is outside the buffer of 2 bytes"):
        decode_varint(b"\x00\x00", 5)
    with pytest.raises(ValueError):
        decode_varlong(b"\x00", -1)
    with pytest.raises(ValueError):
        decode_varint(b"\x00\x00", 2)  # the end itself: nothing left to read


@pytest.mark.parametrize("encode, size, bad", [
    (encode_varint, size_of_varint, [INT32_MAX + 1, INT32_MIN - 1]),
    (encode_varlong, size_of_varlong, [INT64_MAX + 1, INT64_MIN - 1]),
    (encode_unsigned_varint, size_of_unsigned_varint, [-1, 1 << 32]),
])
def test_values_out_of_range_raise_overflow_error(encode, size, bad):
    for v in bad:
        with pytest.raises(OverflowError, match=str(v)):
            encode(v)
        with pytest.raises(OverflowError, match=str(v)):
            size(v)
