"""kafkaprod.compression: every codec round-trips, and what it writes reads back with kafka-python's codecs and
record reader (an implementation we did not write), as what kafka-python writes reads back with ours."""
from __future__ import annotations

import os
import struct

import kafka.codec
import pytest
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords

from kafkaprod import compression
from kafkaprod._native.records import MemoryRecordsBuilder
from kafkaprod.compression import COMPRESSION_TYPES, Codec, check_available, compress, decompress
from kafkaprod.errors import ProtocolError
from kafkaprod.record_reader import read_batch

CODECS = list(Codec)
COMPRESSED = [c for c in Codec if c != Codec.NONE]
# kafka-python's own decoder of each codec: snappy_decode takes xerial framing and bare blocks alike.
KAFKA_PYTHON_DECODE = {Codec.GZIP: kafka.codec.gzip_decode, Codec.SNAPPY: kafka.codec.snappy_decode,
                       Codec.LZ4: kafka.codec.lz4_decode, Codec.ZSTD: kafka.codec.zstd_decode}
KAFKA_PYTHON_ENCODE = {Codec.GZIP: kafka.codec.gzip_encode, Codec.SNAPPY: kafka.codec.snappy_encode,
                       Codec.LZ4: kafka.codec.lz4_encode, Codec.ZSTD: kafka.codec.zstd_encode}


def payloads() -> dict[str, bytes]:
    text = b"".join(b'{"id":%d,"event":"click","ok":true}\n' % i for i in range(40_000))  # ~1.4 MiB
    return {
        "empty": b"",
        "one byte": b"x",
        "text": text[:100_000],
        "over 1 MiB": text,  # two xerial chunks, many lz4 blocks
        "random": os.urandom(200_000),  # incompressible: output larger than input
    }


PAYLOADS = payloads()


def test_the_table_names_ids_and_packages():
    assert COMPRESSION_TYPES == {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    assert compression.CODEC_NAMES == {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
    assert [c.package for c in Codec] == [None, None, "python-snappy", "lz4", "zstandard"]
    assert [compression.compression_name(c) for c in Codec] == list(COMPRESSION_TYPES)
    assert all(compression.parse_compression_type(c.name.lower()) == c for c in Codec)


@pytest.mark.parametrize("name", list(PAYLOADS))
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_every_codec_round_trips(codec, name):
    data = PAYLOADS[name]
    for src in (data, bytearray(data), memoryview(data)):
        assert decompress(codec, compress(codec, -1, src)) == data


# Not snappy of 0 bytes: kafka-python takes a bare xerial header for a snappy block (a builder never compresses
# an empty records section).
@pytest.mark.parametrize("codec,name", [(c, n) for c in COMPRESSED for n in PAYLOADS
                                        if not (c == Codec.SNAPPY and n == "empty")])
def test_kafka_python_decodes_what_we_compress(codec, name):
    data = PAYLOADS[name]
    assert KAFKA_PYTHON_DECODE[codec](bytes(compress(codec, -1, data))) == data


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name.lower())
def test_we_decompress_what_kafka_python_compresses(codec):
    data = PAYLOADS["over 1 MiB"]
    assert decompress(codec, KAFKA_PYTHON_ENCODE[codec](data)) == data


def test_bare_snappy_blocks_decompress_too():
    data = PAYLOADS["text"]
    assert decompress(Codec.SNAPPY, kafka.codec.snappy_encode(data, xerial_compatible=False)) == data


def test_output_formats_are_those_kafka_readers_take():
    data = PAYLOADS["over 1 MiB"]
    assert bytes(compress(Codec.GZIP, -1, data))[:2] == b"\x1f\x8b"  # the gzip container, not bare zlib
    snappy = bytes(compress(Codec.SNAPPY, -1, data))
    assert snappy[:16] == b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
    (first_chunk,) = struct.unpack_from(">i", snappy, 16)
    assert 16 + 4 + first_chunk < len(snappy), "1.4 MiB is two xerial chunks of at most 1 MiB"
    lz4 = bytes(compress(Codec.LZ4, -1, data))
    assert struct.unpack_from("<I", lz4)[0] == 0x184D2204
    flg, bd = lz4[4], lz4[5]
    assert flg & 0x20 and not flg & 0x08 and not flg & 0x04  # independent blocks, no size, no checksum
    assert (bd >> 4) & 7 == 4  # 64 KiB blocks
    assert struct.unpack_from("<I", bytes(compress(Codec.ZSTD, -1, data)))[0] == 0xFD2FB528


def test_levels_are_passed_to_the_codec_and_minus_one_is_its_default():
    data = PAYLOADS["over 1 MiB"]
    for codec, default in ((Codec.GZIP, 6), (Codec.ZSTD, 3)):
        assert bytes(compress(codec, -1, data)) == bytes(compress(codec, default, data))
        assert bytes(compress(codec, 1, data)) != bytes(compress(codec, 9, data))
    assert len(compress(Codec.GZIP, 1, data)) > len(compress(Codec.GZIP, 9, data))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name.lower())
def test_a_builder_batch_of_each_codec_reads_back_in_kafka_python_and_our_reader(codec):
    values = [PAYLOADS["text"][i:i + 300] for i in range(0, 60_000, 300)] + [None, b""]
    builder = MemoryRecordsBuilder(bytearray(1 << 20), codec.name.lower())
    for i, value in enumerate(values):
        assert builder.append(1_700_000_000_000 + i, b"k%d" % i, value, [("h", b"v")]) == i
    batch_bytes = bytes(builder.close())

    records = MemoryRecords(batch_bytes)
    batch = records.next_batch()
    assert isinstance(batch, DefaultRecordBatch) and records.next_batch() is None
    assert batch.validate_crc() and batch.compression_type == codec
    assert [(r.key, r.value, r.headers) for r in batch] == [
        (b"k%d" % i, v, [("h", b"v")]) for i, v in enumerate(values)]
    assert [(r.key, r.value) for r in read_batch(batch_bytes)] == [(b"k%d" % i, v) for i, v in enumerate(values)]


def test_python_snappy_alone_writes_and_reads_the_same_format(monkeypatch):
    with_cramjam = bytes(compress(Codec.SNAPPY, -1, PAYLOADS["over 1 MiB"]))
    monkeypatch.setattr(compression, "_cramjam", None)
    without = bytes(compress(Codec.SNAPPY, -1, PAYLOADS["over 1 MiB"]))
    assert kafka.codec.snappy_decode(without) == PAYLOADS["over 1 MiB"]
    assert decompress(Codec.SNAPPY, with_cramjam) == PAYLOADS["over 1 MiB"]


@pytest.mark.parametrize("codec,attr", [(Codec.LZ4, "_lz4_frame"), (Codec.ZSTD, "_zstd")])
def test_a_missing_codec_package_is_named(monkeypatch, codec, attr):
    monkeypatch.setattr(compression, attr, None)
    message = f"compression_type '{codec.name.lower()}' needs the {codec.package} package, which is not installed"
    for call in (lambda: check_available(codec), lambda: compress(codec, -1, b"x"),
                 lambda: decompress(codec, b"x"), lambda: MemoryRecordsBuilder(bytearray(100), codec)):
        with pytest.raises(ImportError) as info:
            call()
        assert str(info.value) == message


def test_snappy_needs_one_of_its_two_libraries(monkeypatch):
    monkeypatch.setattr(compression, "_cramjam", None)
    check_available(Codec.SNAPPY)
    monkeypatch.setattr(compression, "_snappy", None)
    with pytest.raises(ImportError, match="needs the python-snappy package"):
        check_available(Codec.SNAPPY)


def test_unknown_codec_ids_are_refused():
    with pytest.raises(ValueError, match="unknown compression codec id 5"):
        compress(5, -1, b"x")
    with pytest.raises(ProtocolError, match="unknown compression codec 5"):
        decompress(5, b"x")
    with pytest.raises(ValueError, match="unknown compression codec id 7"):
        compression.compression_name(7)
