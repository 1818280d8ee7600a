"""kafkaprod._native.murmur2 against Java's Utils.murmur2 (its own test vectors) and kafka-python's port of it."""
from __future__ import annotations

import random
from array import array

import numpy as np
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2  # unsigned result

from kafkaprod._native.murmur2 import murmur2, partition_for_key, partitions_for_keys, to_positive

# From Apache Kafka's UtilsTest.testMurmur2 (Java's signed int results).
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


def as_signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


@pytest.fixture(scope="module")
def random_keys() -> list[bytes]:
    rng = random.Random(20240521)
    return [rng.randbytes(rng.randint(0, 300)) for _ in range(10_000)]


@pytest.mark.parametrize("key, expected", JAVA_VECTORS)
def test_murmur2_matches_java_utils_test_vectors(key, expected):
    assert kafka_python_murmur2(key) == expected & 0xFFFFFFFF  # the vector checks the oracle too
    assert murmur2(key) == expected


def test_murmur2_matches_kafka_python_on_random_keys(random_keys):
    mismatches = [k for k in random_keys if murmur2(k) != as_signed32(kafka_python_murmur2(k))]
    assert mismatches == []


def test_murmur2_covers_every_tail_length_and_high_bytes():
    # Tail bytes >= 0x80 are where a port that forgets Java's `& 0xff` goes wrong.
    for length in range(0, 16):
        for fill in (0x00, 0x7F, 0x80, 0xFF):
            key = bytes([fill]) * length
            assert murmur2(key) == as_signed32(kafka_python_murmur2(key)), (length, fill)


def test_murmur2_is_signed_32_bit(random_keys):
    hashes = [murmur2(k) for k in random_keys]
    assert min(hashes) < 0 <= max(hashes)
    assert all(-(1 << 31) <= h < (1 << 31) for h in hashes)


def test_murmur2_hashes_bytes_like_objects_as_their_bytes():
    data = bytes(range(256)) * 2
    for start in range(8):
        key = data[start:start + 37]
        expected = murmur2(key)
        assert murmur2(bytearray(key)) == expected
        assert murmur2(memoryview(data)[start:start + 37]) == expected
        assert murmur2(array("B", key)) == expected


def test_to_positive_clears_the_sign_bit_of_signed_and_unsigned_forms():
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(1 << 31)) == 0
    assert to_positive(0x7FFFFFFF) == 0x7FFFFFFF
    assert to_positive(0) == 0
    for key, signed in JAVA_VECTORS:
        assert to_positive(signed) == to_positive(signed & 0xFFFFFFFF) == signed & 0x7FFFFFFF


@pytest.mark.parametrize("num_partitions", [1, 2, 3, 6, 7, 100, 1021, 2**31 - 1])
def test_partition_for_key_is_positive_hash_modulo_partition_count(random_keys, num_partitions):
    for key in random_keys[:2000]:
        expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % num_partitions
        assert partition_for_key(key, num_partitions) == expected


def test_partitions_for_keys_equals_per_key(random_keys):
    for n in (1, 5, 64):
        got = partitions_for_keys(random_keys, n)
        assert isinstance(got, array) and got.typecode == "i"
        assert list(got) == [partition_for_key(k, n) for k in random_keys]


def test_partitions_for_keys_accepts_tuples_and_mixed_bytes_like_keys():
    raw = [b"", b"a", b"key-1", bytes(range(200))]
    keys = (raw[0], bytearray(raw[1]), memoryview(b"xx" + raw[2])[2:], raw[3])
    assert list(partitions_for_keys(keys, 12)) == [partition_for_key(k, 12) for k in raw]
    assert list(partitions_for_keys([], 3)) == []


def test_partitions_for_keys_writes_into_given_int32_buffers(random_keys):
    keys = random_keys[:500]
    expected = [partition_for_key(k, 9) for k in keys]
    out = array("i", [-1]) * 500
    assert partitions_for_keys(keys, 9, out) is out
    assert list(out) == expected

    out_np = np.full(600, -1, dtype=np.int32)
    assert partitions_for_keys(keys, 9, out=out_np) is out_np
    assert out_np[:500].tolist() == expected
    assert (out_np[500:] == -1).all()  # only len(keys) items are written


@pytest.mark.parametrize("num_partitions", [0, -1, 2**31])
def test_partition_count_out_of_range_is_rejected(num_partitions):
    with pytest.raises(ValueError, match="num_partitions"):
        partition_for_key(b"k", num_partitions)
    with pytest.raises(ValueError, match="num_partitions"):
        partitions_for_keys([b"k"], num_partitions)


def test_partition_count_must_be_an_int():
    with pytest.raises(TypeError, match="num_partitions"):
        partition_for_key(b"k", 3.0)


@pytest.mark.parametrize("bad", ["text", None, 42, [1, 2]])
def test_non_bytes_keys_are_type_errors(bad):
    with pytest.raises(TypeError, match="data must be a bytes-like"):
        murmur2(bad)
    with pytest.raises(TypeError, match="key must be a bytes-like"):
        partition_for_key(bad, 3)
    with pytest.raises(TypeError, match=r"keys\[1\] must be a bytes-like"):
        partitions_for_keys([b"ok", bad], 3)


def test_partitions_for_keys_rejects_a_non_sequence():
    with pytest.raises(TypeError, match="keys must be a sequence"):
        partitions_for_keys(42, 3)


@pytest.mark.parametrize("out", [array("d", [0.0] * 4), np.zeros(4, dtype=np.int64), bytearray(16)])
def test_partitions_for_keys_rejects_output_of_the_wrong_item_type(out):
    with pytest.raises(TypeError, match="out must be a writable buffer of native int32"):
        partitions_for_keys([b"a", b"b"], 3, out)


def test_partitions_for_keys_rejects_a_short_or_read_only_output():
    with pytest.raises(ValueError, match="out holds 1 items but there are 2 keys"):
        partitions_for_keys([b"a", b"b"], 3, array("i", [0]))
    with pytest.raises(BufferError):
        partitions_for_keys([b"a"], 3, memoryview(array("i", [0])).toreadonly())
