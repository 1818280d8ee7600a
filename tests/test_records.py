"""MemoryRecordsBuilder: batches it builds are read back by kafka-python's RecordBatch v2 reader (the oracle)."""
from __future__ import annotations

import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.memory_records import MemoryRecords

from kafkaprod._native.records import RECORD_BATCH_HEADER_SIZE, MemoryRecordsBuilder, estimate_size_upper_bound
from kafkaprod.compression import COMPRESSION_TYPES, compression_name, parse_compression_type

CODECS = list(COMPRESSION_TYPES)

header_values = st.one_of(st.none(), st.binary(max_size=40))
headers_st = st.lists(st.tuples(st.text(max_size=12), header_values), max_size=4)
record_st = st.tuples(
    st.integers(min_value=0, max_value=2**45),  # timestamp
    st.one_of(st.none(), st.binary(max_size=64)),  # key
    st.one_of(st.none(), st.binary(max_size=300)),  # value
    st.one_of(st.none(), headers_st),
)
producer_state_st = st.tuples(
    st.integers(min_value=-1, max_value=2**63 - 1),
    st.integers(min_value=-1, max_value=2**15 - 1),
    st.integers(min_value=-1, max_value=2**31 - 1),
    st.booleans(),
)


def read_single_batch(view: memoryview) -> DefaultRecordBatch:
    """The one batch in view, read the way a consumer would: MemoryRecords slices by batchLength."""
    records = MemoryRecords(bytes(view))
    batch = records.next_batch()
    assert batch is not None, "no batch could be read"
    assert records.next_batch() is None, "batchLength does not cover exactly the batch"
    assert isinstance(batch, DefaultRecordBatch)
    return batch


def build(records, codec="none", state=(-1, -1, -1, False), capacity=1 << 20, write_limit=None):
    pid, epoch, seq, txn = state
    builder = MemoryRecordsBuilder(bytearray(capacity), codec, write_limit, pid, epoch, seq, txn)
    for i, (ts, key, value, headers) in enumerate(records):
        assert builder.append(ts, key, value, headers) == i
    return builder


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record_st, min_size=1, max_size=30), state=producer_state_st)
def test_batches_of_every_codec_decode_with_kafka_python_reader(codec, records, state):
    builder = build(records, codec, state)
    batch = read_single_batch(builder.close())

    assert batch.validate_crc()
    assert batch.magic == 2
    assert batch.base_offset == 0
    assert batch.leader_epoch == -1
    assert batch.compression_type == COMPRESSION_TYPES[codec]
    assert batch.timestamp_type == 0
    assert not batch.is_control_batch
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.is_transactional) == state
    assert batch.records_count == len(records)
    assert batch.last_offset_delta == len(records) - 1
    assert batch.first_timestamp == records[0][0]
    assert batch.max_timestamp == max(r[0] for r in records)

    decoded = list(batch)
    assert len(decoded) == len(records)
    for offset, (rec, (ts, key, value, headers)) in enumerate(zip(decoded, records)):
        assert rec.offset == offset
        assert rec.timestamp == ts
        assert rec.key == key
        assert rec.value == value
        assert rec.headers == list(headers or [])


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=30, deadline=None)
@given(before=producer_state_st, after=producer_state_st)
def test_rewrite_producer_state_gives_valid_crc_and_new_fields(codec, before, after):
    builder = build([(1000, b"k", b"v" * 50, [("h", b"x")]), (1001, None, b"w" * 50, None)], codec, before)
    builder.close()
    builder.rewrite_producer_state(*after)
    batch = read_single_batch(builder.close())
    assert batch.validate_crc()
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.is_transactional) == after
    assert [(r.key, r.value) for r in batch] == [(b"k", b"v" * 50), (None, b"w" * 50)]


def test_set_producer_state_before_close_is_written_into_the_batch():
    builder = build([(5, b"k", b"v", None)])
    builder.set_producer_state(42, 7, 1000, True)
    batch = read_single_batch(builder.close())
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.is_transactional) == (
        42, 7, 1000, True)
    assert batch.validate_crc()


def test_producer_state_calls_in_the_wrong_phase_raise():
    builder = build([(5, b"k", b"v", None)])
    with pytest.raises(RuntimeError, match="rewrite_producer_state"):
        builder.rewrite_producer_state(1, 1, 1, False)
    builder.close()
    with pytest.raises(RuntimeError, match="set_producer_state|closed"):
        builder.set_producer_state(1, 1, 1, False)


@pytest.mark.parametrize(
    "field,args", [("producer_epoch", (1, 2**15, 0, False)), ("base_sequence", (1, 0, 2**31, False)),
                   ("producer_id", (2**63, 0, 0, False))])
def test_out_of_range_producer_state_raises_value_error_naming_the_field(field, args):
    builder = build([(5, b"k", b"v", None)])
    with pytest.raises(ValueError, match=field):
        builder.set_producer_state(*args)


def test_null_keys_values_and_empty_headers_round_trip():
    builder = build([(1, None, None, None), (2, b"", b"", []), (3, None, b"v", [("empty", b""), ("null", None)])])
    decoded = list(read_single_batch(builder.close()))
    assert [(r.key, r.value, r.headers) for r in decoded] == [
        (None, None, []), (b"", b"", []), (None, b"v", [("empty", b""), ("null", None)])]


def test_bytes_like_keys_values_and_header_values_are_accepted():
    builder = MemoryRecordsBuilder(bytearray(4096))
    builder.append(1, bytearray(b"key"), memoryview(b"xxvaluexx")[2:7], [("h", bytearray(b"hv")),
                                                                         ("m", memoryview(b"mv"))])
    (rec,) = read_single_batch(builder.close())
    assert (rec.key, rec.value, rec.headers) == (b"key", b"value", [("h", b"hv"), ("m", b"mv")])


def test_unicode_header_keys_are_written_as_utf8():
    builder = MemoryRecordsBuilder(bytearray(4096))
    builder.append(1, None, b"v", [("clé-ß-😀", b"x")])
    (rec,) = read_single_batch(builder.close())
    assert rec.headers == [("clé-ß-😀", b"x")]


def test_batch_accepts_records_until_write_limit_then_reports_full():
    builder = MemoryRecordsBuilder(bytearray(4096), "none", 1000)
    value = b"x" * 100
    appended = 0
    while builder.has_room_for(1, None, value):
        assert not builder.is_full
        assert builder.append(1, None, value) == appended
        appended += 1
    assert appended > 1
    assert builder.append(1, None, value) == -1
    assert builder.uncompressed_bytes <= 1000
    assert builder.record_count == appended
    # A record small enough for the space left is still accepted: full means "no room for this one".
    if not builder.is_full:
        assert builder.has_room_for(1, None, b"")
    assert len(list(read_single_batch(builder.close()))) == appended


def test_is_full_once_records_reach_the_write_limit():
    builder = MemoryRecordsBuilder(bytearray(4096), "none", 200)
    builder.append(1, None, b"x" * 200)  # the first record is accepted past the limit
    assert builder.is_full
    assert not builder.has_room_for(1, None, b"")
    assert builder.append(1, None, b"") == -1


def test_first_record_is_accepted_beyond_write_limit_when_the_buffer_fits_it():
    builder = MemoryRecordsBuilder(bytearray(1000), "none", 100)
    assert builder.has_room_for(1, None, b"x" * 500)
    assert builder.append(1, None, b"x" * 500) == 0
    assert builder.append(1, None, b"y") == -1


def test_first_record_larger_than_the_buffer_raises_value_error_naming_sizes():
    builder = MemoryRecordsBuilder(bytearray(200))
    assert not builder.has_room_for(1, None, b"x" * 500)
    with pytest.raises(ValueError, match="does not fit"):
        builder.append(1, None, b"x" * 500)
    assert builder.is_empty


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(-1, 300), st.integers(-1, 600)), min_size=1, max_size=40),
       write_limit=st.integers(61, 3000), ts=st.lists(st.integers(0, 2**40), min_size=1, max_size=40))
def test_has_room_for_agrees_with_append(sizes, write_limit, ts):
    builder = MemoryRecordsBuilder(bytearray(8192), "none", write_limit)
    for i, (klen, vlen) in enumerate(sizes):
        key = None if klen < 0 else b"k" * klen
        value = None if vlen < 0 else b"v" * vlen
        t = ts[i % len(ts)]
        room = builder.has_room_for(t, key, value)
        result = builder.append(t, key, value)
        assert (result >= 0) == room
    if builder.record_count > 1:
        assert builder.uncompressed_bytes <= write_limit


@settings(max_examples=100, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=300)), value=st.one_of(st.none(), st.binary(max_size=3000)),
       headers=st.one_of(st.none(), headers_st), ts=st.integers(0, 2**62))
def test_estimate_size_upper_bound_always_fits_the_record(key, value, headers, ts):
    size = estimate_size_upper_bound(key, value, headers)
    builder = MemoryRecordsBuilder(bytearray(size), "none", 1)
    assert builder.append(ts, key, value, headers) == 0
    assert builder.uncompressed_bytes <= size


def test_append_after_close_raises_and_close_is_idempotent():
    builder = build([(1, b"k", b"v", None)], "gzip")
    first = bytes(builder.close())
    assert builder.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        builder.append(2, None, b"v")
    with pytest.raises(RuntimeError, match="closed"):
        builder.append_values([b"v"], 2)
    assert bytes(builder.close()) == first


def test_close_for_appends_refuses_records_but_still_builds():
    builder = build([(1, b"k", b"v", None)])
    builder.close_for_appends()
    assert builder.is_full and not builder.is_closed
    assert not builder.has_room_for(1, None, b"")
    with pytest.raises(RuntimeError, match="closed for appends"):
        builder.append(1, None, b"v")
    assert read_single_batch(builder.close()).records_count == 1


def test_empty_builder_closes_to_an_empty_view():
    builder = MemoryRecordsBuilder(bytearray(100), "zstd")
    assert builder.is_empty
    assert len(builder.close()) == 0
    assert builder.is_closed


@pytest.mark.parametrize(
    "headers,match",
    [
        ([("ok", b"v"), (5, b"v")], "header 1 key must be str"),
        ([("ok", b"v"), ("bad", "a str")], r"header 1 \('bad'\) value"),
        ([("ok", b"v"), ("bad", 12)], r"header 1 \('bad'\) value"),
        ([("a", b"v", "extra")], "header 0 must be a"),
        (["just-a-string"], "header 0 must be a"),
        (5, "headers must be a sequence"),
    ],
)
def test_bad_header_types_raise_type_error_naming_the_header(headers, match):
    builder = MemoryRecordsBuilder(bytearray(4096))
    with pytest.raises(TypeError, match=match):
        builder.append(1, None, b"v", headers)
    assert builder.is_empty  # nothing half-written counts as a record


@pytest.mark.parametrize("what,args", [("key", ("k", b"v")), ("value", (None, 12))])
def test_non_bytes_key_or_value_raises_type_error_naming_it(what, args):
    builder = MemoryRecordsBuilder(bytearray(4096))
    with pytest.raises(TypeError, match=what):
        builder.append(1, *args)


def test_timestamps_before_minus_one_are_rejected():
    builder = MemoryRecordsBuilder(bytearray(4096))
    with pytest.raises(ValueError, match="timestamp"):
        builder.append(-2, None, b"v")


def test_unknown_codec_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="'brotli'"):
        parse_compression_type("brotli")
    with pytest.raises(ValueError, match="'brotli'"):
        MemoryRecordsBuilder(bytearray(100), "brotli")
    with pytest.raises(ValueError, match="7"):
        parse_compression_type(7)


def test_codec_names_and_ids_map_both_ways():
    assert {name: parse_compression_type(name) for name in CODECS} == {
        "none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
    assert parse_compression_type(None) == 0
    assert parse_compression_type("LZ4") == 3
    assert [compression_name(i) for i in range(5)] == CODECS


@pytest.mark.parametrize("kwargs,match", [({"buffer": bytearray(10)}, "header"),
                                          ({"buffer": b"x" * 100}, "writable"),
                                          ({"buffer": bytearray(100), "write_limit": 0}, "write_limit")])
def test_bad_construction_arguments_raise_naming_them(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MemoryRecordsBuilder(**kwargs)


def semi_compressible_values(n: int, size: int = 100) -> list[bytes]:
    """Values like JSON-ish log lines: a random id plus repeated structure, so codecs get a realistic ratio."""
    out = []
    for i in range(n):
        head = os.urandom(12).hex().encode()
        body = b'{"id":%d,"user":"%s","event":"click","ok":true}' % (i, head)
        out.append((body + b" " * size)[:size])
    return out


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batch_is_built_in_the_pooled_buffer(codec):
    buf = bytearray(64 * 1024)
    builder = MemoryRecordsBuilder(buf, codec, len(buf))
    values = semi_compressible_values(1000)
    appended = builder.append_values(values, 1_700_000_000_000)
    view = builder.close()
    assert view.obj is buf
    assert builder.compression_ratio < 1.0
    assert len(view) < builder.uncompressed_bytes
    batch = read_single_batch(view)
    assert batch.validate_crc()
    assert [r.value for r in batch] == values[:appended]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_incompressible_records_that_outgrow_the_buffer_are_built_in_a_fresh_one(codec):
    value = os.urandom(2000)
    buf = bytearray(estimate_size_upper_bound(None, value))
    builder = MemoryRecordsBuilder(buf, codec)
    builder.append(1, None, value)
    view = builder.close()
    batch = read_single_batch(view)
    assert batch.validate_crc()
    assert [r.value for r in batch] == [value]
    if len(view) > len(buf):
        assert view.obj is not buf


def test_lz4_frames_use_independent_64k_blocks_as_java_requires():
    builder = MemoryRecordsBuilder(bytearray(1 << 20), "lz4")
    builder.append_values(semi_compressible_values(3000), 1)
    frame = bytes(builder.close())[RECORD_BATCH_HEADER_SIZE:]
    assert struct.unpack("<I", frame[:4])[0] == 0x184D2204  # LZ4 frame magic
    flg, bd = frame[4], frame[5]
    assert flg & 0x20, "block independence flag must be set: Java rejects dependent blocks"
    assert (bd >> 4) & 0x7 == 4, "64 KiB max block size, as Java writes"


def test_snappy_uses_xerial_framing_as_java_writes():
    builder = MemoryRecordsBuilder(bytearray(1 << 20), "snappy")
    builder.append_values(semi_compressible_values(3000), 1)
    payload = bytes(builder.close())[RECORD_BATCH_HEADER_SIZE:]
    assert payload[:8] == b"\x82SNAPPY\x00"
    assert struct.unpack(">ii", payload[8:16]) == (1, 1)


def test_snappy_batches_over_a_mebibyte_are_several_xerial_chunks_that_read_back():
    values = semi_compressible_values(15000)  # about 1.5 MiB of records: two chunks of at most 1 MiB
    builder = MemoryRecordsBuilder(bytearray(3 << 20), "snappy")
    assert builder.append_values(values, 1) == len(values)
    batch = bytes(builder.close())
    payload = batch[RECORD_BATCH_HEADER_SIZE:]
    chunks, pos = 0, 16
    while pos < len(payload):
        (length,) = struct.unpack_from(">i", payload, pos)
        pos += 4 + length
        chunks += 1
    assert pos == len(payload) and chunks == 2
    assert [r.value for r in read_single_batch(batch)] == values


def test_append_values_appends_until_full_and_returns_the_count():
    buf = bytearray(2048)
    builder = MemoryRecordsBuilder(buf, "none", 2048)
    values = [b"v" * 100] * 50
    keys = [b"k%d" % i for i in range(50)]
    n = builder.append_values(values, 7, keys)
    assert 0 < n < 50
    assert builder.record_count == n
    decoded = list(read_single_batch(builder.close()))
    assert [(r.key, r.value, r.timestamp) for r in decoded] == [(keys[i], values[i], 7) for i in range(n)]


def test_append_values_accepts_none_and_bytes_like_values():
    builder = MemoryRecordsBuilder(bytearray(2048))
    assert builder.append_values([b"a", None, bytearray(b"b"), memoryview(b"c")], 3, [None, b"k", None, None]) == 4
    assert [(r.key, r.value) for r in read_single_batch(builder.close())] == [
        (None, b"a"), (b"k", None), (None, b"b"), (None, b"c")]


def test_append_values_rejects_keys_of_another_length():
    builder = MemoryRecordsBuilder(bytearray(2048))
    with pytest.raises(ValueError, match="keys has 1 items but values has 2"):
        builder.append_values([b"a", b"b"], 1, [b"k"])


def test_builder_tracks_base_and_max_timestamps_and_sizes():
    builder = build([(500, None, b"a", None), (400, None, b"b", None), (900, None, b"c", None)])
    assert (builder.base_timestamp, builder.max_timestamp, builder.last_offset_delta) == (500, 900, 2)
    size_before = builder.estimated_size_in_bytes
    assert size_before == builder.uncompressed_bytes
    view = builder.close()
    assert builder.estimated_size_in_bytes == len(view) == size_before  # no codec: same bytes
