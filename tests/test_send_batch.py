"""KafkaProducer.send_batch(): many records in one compiled call, one BatchFuture.

Against real peers: what a call writes is read back with confluent-kafka's Consumer (assign() from the beginning,
no group) from Tansu or librdkafka's mock cluster; keyed partitions are checked against kafka-python's murmur2.
The BatchFuture's bookkeeping (runs over batches, splits, failures) is also checked without a broker, on a bare
RecordAccumulator whose batches the test completes itself.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import numpy as np
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from kafkaprod import KafkaProducer, RecordMetadata
from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.bulk import append_batch
from kafkaprod.splitter import split_batch
from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod.errors import (
    BatchSendError, BufferExhaustedError, KafkaError, KafkaTimeoutError, RecordTooLargeError,
)
from kafkaprod.record_reader import read_batch
from mock_cluster import ALL_BROKERS

WAIT_S = 30.0
PRODUCE = 0
MESSAGE_TOO_LARGE = 10


def _producer(bootstrap: str, **options) -> KafkaProducer:
    settings = dict(acks=1, enable_idempotence=False, linger_ms=2, max_block_ms=10_000)
    settings.update(options)
    return KafkaProducer(bootstrap, **settings)


def _read_back(bootstrap: str, topic: str, partitions: int, expected: int) -> list:
    """Every record of the topic as (partition, offset, key, value, headers, timestamp), in partition/offset order."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "send-batch-" + uuid.uuid4().hex[:8],  # required by the client; assign() uses no group
        "enable.auto.commit": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "check.crcs": True,  # librdkafka verifies every batch's CRC-32C
    })
    out = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + WAIT_S
        while len(out) < expected:
            assert time.monotonic() < deadline, f"read {len(out)} of {expected} records within {WAIT_S} s"
            for message in consumer.consume(10_000, 0.5):
                assert message.error() is None, message.error()
                out.append((message.partition(), message.offset(), message.key(), message.value(),
                            message.headers(), message.timestamp()[1]))
    finally:
        consumer.close()
    assert len(out) == expected
    return sorted(out, key=lambda r: (r[0], r[1]))


def _values(n: int, size: int = 0) -> list[bytes]:
    # Different sizes and contents per record, so that a mix-up of records or offsets shows.
    return [(b"value-%06d-" % i) + bytes([i % 251]) * (size or i % 37) for i in range(n)]


def _by_value(records: list) -> dict[bytes, tuple]:
    return {r[3]: r for r in records}


def _assert_metadata_matches(metadata: Sequence[RecordMetadata], values: Sequence[bytes], records: list,
                             keys: Sequence[bytes | None] | None = None, timestamps: bool = True) -> None:
    """Item i of the future's metadata is where the consumer found values[i] (values are unique)."""
    found = _by_value(records)
    assert len(metadata) == len(values)
    for i, value in enumerate(values):
        partition, offset, key, _, _, timestamp = found[value]
        md = metadata[i]
        assert (md.partition, md.offset) == (partition, offset), i
        if timestamps:
            assert md.timestamp == timestamp, i
        assert md.serialized_value_size == len(value)
        assert md.serialized_key_size == (-1 if keys is None or keys[i] is None else len(keys[i]))


# ---------------------------------------------------------------------------------------------------- Tansu


@pytest.mark.parametrize("shape", ["list", "tuple", "numpy-object"])
def test_sequence_inputs_round_trip_byte_exact_with_per_record_metadata(tansu, tansu_topic, shape) -> None:
    topic = tansu_topic(partitions=3)
    values = _values(3000)
    given = {"list": list, "tuple": tuple, "numpy-object": lambda v: np.array(v, dtype=object)}[shape](values)
    with _producer(tansu.bootstrap_servers, batch_size=16_384) as producer:
        future = producer.send_batch(topic, given, timestamp_ms=1_700_000_000_000)
        assert len(future) == 3000
        metadata = future.get(WAIT_S)
        assert future.done() and future.exception() is None
    records = _read_back(tansu.bootstrap_servers, topic, 3, 3000)
    assert sorted(r[3] for r in records) == sorted(values)
    assert all(r[2] is None and r[5] == 1_700_000_000_000 for r in records)
    assert future.batch_count > 3  # 16 KiB batches: the call spans several batches per partition
    _assert_metadata_matches(metadata, values, records)


def test_uint8_rows_round_trip_byte_exact(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=2)
    rows = np.arange(500 * 24, dtype=np.uint32).astype(np.uint8).reshape(500, 24)
    rows[:, 0] = np.arange(500) % 256
    rows[:, 1] = np.arange(500) // 256  # every row distinct
    with _producer(tansu.bootstrap_servers) as producer:
        metadata = producer.send_batch(topic, rows, partition=1).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 2, 500)
    assert [r[3] for r in records] == [row.tobytes() for row in rows]  # one partition: offsets in call order
    assert {r[0] for r in records} == {1}
    _assert_metadata_matches(metadata, [row.tobytes() for row in rows], records)


def test_keyed_records_land_on_murmur2_partition(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=6)
    values = _values(2000)
    keys = [b"key-%d" % (i * 7919 % 613) for i in range(2000)]
    keys[5] = None  # a null key in a keyed call: the sticky partitioner picks its partition
    with _producer(tansu.bootstrap_servers, batch_size=4096) as producer:
        metadata = producer.send_batch(topic, values, keys=keys).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 6, 2000)
    found = _by_value(records)
    for value, key in zip(values, keys):
        partition, _, stored_key, *_ = found[value]
        assert stored_key == key
        if key is not None:
            assert partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 6, key
    _assert_metadata_matches(metadata, values, records, keys)


def test_keys_as_uint8_rows_partition_like_bytes_keys(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=4)
    keys = np.frombuffer(b"".join(b"k%07d" % i for i in range(300)), dtype=np.uint8).reshape(300, 8)
    values = _values(300)
    with _producer(tansu.bootstrap_servers) as producer:
        producer.send_batch(topic, values, keys=keys).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 4, 300)
    for partition, _, key, *_ in records:
        assert partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 4


def test_headers_and_timestamp_apply_to_every_record(tansu, tansu_topic) -> None:
    topic = tansu_topic()
    headers = [("trace", b"abc"), ("empty", None), ("u", "é".encode())]
    with _producer(tansu.bootstrap_servers) as producer:
        producer.send_batch(topic, [b"a", b"b", None], headers=headers, timestamp_ms=1234).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 1, 3)
    assert [r[3] for r in records] == [b"a", b"b", None]
    assert all(r[4] == headers and r[5] == 1234 for r in records)


def test_call_larger_than_buffer_memory_completes(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=2)
    # 6,000 x ~1 KiB through a 256 KiB pool: the call must wait for the Sender to free batches several times over.
    values = _values(6000, size=1000)
    with _producer(tansu.bootstrap_servers, buffer_memory=256 * 1024, batch_size=32 * 1024) as producer:
        future = producer.send_batch(topic, values)
        metadata = future.get(WAIT_S)
        assert producer.metrics()["bufferpool-wait-time-total"] > 0  # it really had to wait for memory
    records = _read_back(tansu.bootstrap_servers, topic, 2, 6000)
    _assert_metadata_matches(metadata, values, records)


def test_threads_sharing_a_producer_get_their_own_records_back(tansu, tansu_topic) -> None:
    import threading

    topic = tansu_topic(partitions=2)
    # A small pool makes the calls wait for memory often, so they interleave in the same batches.
    results: dict[int, tuple[list[bytes], Sequence[RecordMetadata]]] = {}
    with _producer(tansu.bootstrap_servers, buffer_memory=96 * 1024, batch_size=16 * 1024) as producer:
        def work(t: int) -> None:
            values = [b"thread-%d-%05d" % (t, i) + b"." * (i % 50) for i in range(4000)]
            future = producer.send_batch(topic, values)
            producer.send(topic, b"single-%d" % t)
            results[t] = (values, future.get(WAIT_S))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 2, 3 * 4001)
    for values, metadata in results.values():
        _assert_metadata_matches(metadata, values, records)


def test_idempotent_producer_with_default_settings_sends_batches(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=3)
    values = _values(5000)
    with KafkaProducer(tansu.bootstrap_servers, linger_ms=2) as producer:  # acks=all, idempotence on
        metadata = producer.send_batch(topic, values, keys=[v[-3:] for v in values]).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 3, 5000)
    _assert_metadata_matches(metadata, values, records, [v[-3:] for v in values])


def test_unknown_topic_waits_for_metadata_like_send(tansu) -> None:
    topic = "auto-" + uuid.uuid4().hex[:10]  # Tansu creates it on the metadata request
    with _producer(tansu.bootstrap_servers) as producer:
        metadata = producer.send_batch(topic, [b"x", b"y"]).get(WAIT_S)
    assert [md.topic for md in metadata] == [topic, topic]


def test_done_callback_runs_once_with_the_future(tansu, tansu_topic) -> None:
    topic = tansu_topic()
    seen = []
    with _producer(tansu.bootstrap_servers) as producer:
        future = producer.send_batch(topic, _values(100))
        future.add_done_callback(seen.append)
        future.get(WAIT_S)
        future.add_done_callback(seen.append)  # already done: runs at once
    assert seen == [future, future]


def test_empty_call_is_an_empty_done_future(tansu, tansu_topic) -> None:
    topic = tansu_topic()
    with _producer(tansu.bootstrap_servers) as producer:
        future = producer.send_batch(topic, [])
        assert future.done() and len(future) == 0 and list(future.get(0)) == []


BAD_INPUTS = [
    (dict(values=[b"a", "b"]), TypeError, r"values\[1\] must be bytes or None, got str"),
    (dict(values=[b"a", bytearray(b"b")]), TypeError, r"values\[1\].*bytearray"),
    (dict(values=[b"a", b"b"], keys=[b"k"]), ValueError, "keys has 1 items but values has 2"),
    (dict(values=[b"a", b"b"], keys=[b"k", 7]), TypeError, r"keys\[1\] must be bytes or None, got int"),
    (dict(values=[b"a"], partition=3), ValueError, "partition 3 is out of range"),
    (dict(values=[b"a"], partition=-1), ValueError, "partition must be an int >= 0 or None, got -1"),
    (dict(values=[b"a"], partition="0"), TypeError, "partition must be an int"),
    (dict(values=[b"a"], timestamp_ms=-5), ValueError, r"timestamp_ms must be in \[0, 2\*\*63-1\].*got -5"),
    (dict(values=[b"a"], timestamp_ms=2**63), ValueError, r"timestamp_ms must be in \[0, 2\*\*63-1\].*got 9223372036854775808"),
    (dict(values=b"abc"), TypeError, "values must be .*one bytes object"),
    (dict(values=None), TypeError, "values must be"),
    (dict(values=np.zeros(4, dtype=np.uint8)), ValueError, "values: a uint8 array must be 2-D"),
    (dict(values=np.zeros((2, 2, 2), dtype=np.uint8)), ValueError, "must be 2-D .* got 3-D"),
    (dict(values=np.zeros((3, 4), dtype=np.float32)), TypeError, "format 'f'"),
    (dict(values=np.zeros((4, 3), dtype=np.uint8)[:, ::2]), ValueError, "rows .* must be contiguous"),
    (dict(values=np.array([[b"a"], [b"b"]], dtype=object)), ValueError, "object array must be 1-D"),
    (dict(values=np.array([b"a", 3], dtype=object)), TypeError, r"values\[1\] must be bytes or None, got int"),
    (dict(values=[b"a"], headers=[("h", 1)]), TypeError, "header"),
    (dict(values=[b"x" * 2_000_000]), RecordTooLargeError, "record 0 is .* larger than max_request_size"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_INPUTS)
def test_bad_input_raises_before_any_record_is_queued(tansu, tansu_topic, kwargs, error, message) -> None:
    topic = tansu_topic(partitions=3)
    with _producer(tansu.bootstrap_servers) as producer:
        producer.send_batch(topic, [b"first"]).get(WAIT_S)  # metadata known, so validation is what fails
        with pytest.raises(error, match=message):
            producer.send_batch(topic, **kwargs)
        # Nothing of the bad call was queued, and the producer still works.
        producer.send_batch(topic, [b"last"]).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 3, 2)
    assert sorted(r[3] for r in records) == [b"first", b"last"]


def test_serializers_run_per_record(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=3)
    with _producer(tansu.bootstrap_servers, value_serializer=lambda v: str(v).encode(),
                   key_serializer=lambda k: k.encode()) as producer:
        keys = [f"k{i}" for i in range(50)]
        metadata = producer.send_batch(topic, list(range(50)), keys=keys).get(WAIT_S)
    records = _read_back(tansu.bootstrap_servers, topic, 3, 50)
    found = _by_value(records)
    for i in range(50):
        partition, offset, key, *_ = found[str(i).encode()]
        assert key == keys[i].encode()
        assert partition == (kafka_python_murmur2(key) & 0x7FFFFFFF) % 3
        assert (metadata[i].partition, metadata[i].offset) == (partition, offset)


class _Recorder:
    def __init__(self) -> None:
        self.sent = []
        self.acked = []

    def on_send(self, record):
        self.sent.append(record.value)
        return record._replace(value=record.value.upper())

    def on_acknowledgement(self, metadata, exception):
        self.acked.append((metadata.offset if metadata else None, exception))

    def close(self):
        pass


def test_interceptors_and_partitioner_see_every_record(tansu, tansu_topic) -> None:
    topic = tansu_topic(partitions=3)
    recorder = _Recorder()
    with _producer(tansu.bootstrap_servers, interceptors=[recorder],
                   partitioner=lambda topic, key, value, cluster: 2) as producer:
        producer.send_batch(topic, [b"a", b"b", b"c"]).get(WAIT_S)
        producer.flush()
    records = _read_back(tansu.bootstrap_servers, topic, 3, 3)
    assert [(r[0], r[3]) for r in records] == [(2, b"A"), (2, b"B"), (2, b"C")]
    assert recorder.sent == [b"a", b"b", b"c"]
    assert sorted(recorder.acked) == [(records[i][1], None) for i in range(3)]


# ------------------------------------------------------------------------------------- librdkafka mock cluster


def test_max_block_ms_raises_when_nothing_drains(mock_cluster, mock_topic) -> None:
    topic = mock_topic(partitions=1)
    producer = _producer(mock_cluster.bootstrap_servers, buffer_memory=64 * 1024, batch_size=16 * 1024,
                         max_block_ms=500, request_timeout_ms=60_000)
    try:
        producer.send_batch(topic, [b"warm-up"]).get(WAIT_S)
        mock_cluster.broker_down(ALL_BROKERS)  # batches stay queued or in flight: no memory comes back
        values = _values(1000, size=200)  # ~200 KiB: more than the 64 KiB pool
        started = time.monotonic()
        with pytest.raises(BufferExhaustedError) as info:
            producer.send_batch(topic, values)
        assert time.monotonic() - started < 10
        appended = info.value.records_appended
        assert 0 < appended < 1000
        assert len(info.value.future) == appended  # the queued part has its own future
        assert not info.value.future.done()
        # The producer still takes calls that fit (here: none does, so it times out the same way).
        with pytest.raises(BufferExhaustedError):
            producer.send_batch(topic, _values(200, size=200))
    finally:
        producer.close(0)
    assert info.value.future.done()  # close(0) failed what was queued
    with pytest.raises(KafkaError):
        info.value.future.get(0)


def test_future_follows_batches_split_after_message_too_large(mock_cluster, mock_topic) -> None:
    topic = mock_topic(partitions=2)
    values = _values(400)
    with _producer(mock_cluster.bootstrap_servers, linger_ms=50) as producer:
        producer.send_batch(topic, [b"warm-up"], partition=0).get(WAIT_S)
        mock_cluster.start_request_tracking()
        mock_cluster.push_request_errors(PRODUCE, [MESSAGE_TOO_LARGE])
        metadata = producer.send_batch(topic, values, partition=1).get(WAIT_S)
        # One refused request, then the halves (one request or two): the batch really was split.
        assert len(mock_cluster.requests(PRODUCE)) >= 2
        mock_cluster.stop_request_tracking()
    records = _read_back(mock_cluster.bootstrap_servers, topic, 2, 401)
    assert [r[3] for r in records if r[0] == 1] == values
    # The mock answers every produce with log_append_time 1234, so only positions are compared here.
    _assert_metadata_matches(metadata, values, [r for r in records if r[0] == 1], timestamps=False)


# ------------------------------------------------------------------ the future's bookkeeping, without a broker


def _accumulator(partitions: int, batch_size: int = 1024) -> RecordAccumulator:
    pool = BufferPool(1 << 22, batch_size)
    acc = RecordAccumulator(pool, batch_size, 0, 0, 100, 120_000, 1000, False, None, 1 << 20)
    acc.update_topic("t", [0] * partitions)
    return acc


def _drain_all(acc: RecordAccumulator) -> list:
    out = []
    while True:
        batches = acc.drain([0], 1 << 30, monotonic()).get(0, [])
        if not batches:
            return out
        out += batches


def test_records_of_one_call_map_to_their_batch_and_offset_across_partitions() -> None:
    acc = _accumulator(partitions=5, batch_size=512)
    append_batch(acc, "t", [b"x"], keys=[b"warm"])  # a record already in a batch: offsets do not start at 0 there
    values = [b"v%04d" % i for i in range(3000)]
    keys = [b"k%d" % (i % 97) for i in range(3000)]
    future = append_batch(acc, "t", values, keys)
    assert future.batch_count > 5 and not future.done()
    # Where each record really is, from the batches' own bytes: record j of the n-th batch gets offset 1000n + j.
    where = {}
    for n, batch in enumerate(_drain_all(acc)):
        for j, record in enumerate(read_batch(batch.close())):
            where[record.value] = (batch.partition, 1000 * n + j)
        batch.done(1000 * n, -1, None)
    assert future.done()
    metadata = future.get(0)
    assert [(md.partition, md.offset) for md in metadata] == [where[v] for v in values]
    assert [md.partition for md in metadata] == [(kafka_python_murmur2(k) & 0x7FFFFFFF) % 5 for k in keys]
    assert metadata[-1] == metadata[2999] and metadata[0:2] == [metadata[0], metadata[1]]
    with pytest.raises(IndexError):
        metadata[3000]


def test_partial_failure_names_how_many_and_which_records_failed() -> None:
    acc = _accumulator(partitions=1, batch_size=256)
    future = append_batch(acc, "t", [b"r%03d" % i for i in range(100)])
    batches = _drain_all(acc)
    assert len(batches) > 2
    for n, batch in enumerate(batches):
        batch.done(n * 1000, -1, KafkaTimeoutError("expired") if n == 1 else None)
    failed = future.failed_indices()
    assert failed == list(range(batches[0].record_count, batches[0].record_count + batches[1].record_count))
    error = future.exception()
    assert isinstance(error, BatchSendError)
    assert (error.failed, error.total, error.first_failed_index) == (len(failed), 100, failed[0])
    assert isinstance(error.__cause__, KafkaTimeoutError)
    with pytest.raises(BatchSendError, match=f"{len(failed)} of 100 records failed"):
        future.get(0)
    assert future.record_outcome(failed[0])[1] is error.first_error
    assert future.record_outcome(0)[0].offset == 0


def test_when_every_record_fails_get_raises_the_records_error() -> None:
    acc = _accumulator(partitions=2)
    future = append_batch(acc, "t", [b"a", b"b"], [b"k1", b"k2"])
    error = KafkaTimeoutError("all expired")
    for batch in _drain_all(acc):
        batch.done(-1, -1, error)
    with pytest.raises(KafkaTimeoutError, match="all expired"):
        future.get(0)


def test_future_follows_a_split_batch_to_its_halves() -> None:
    acc = _accumulator(partitions=1, batch_size=1 << 16)
    future = append_batch(acc, "t", [b"s%03d" % i for i in range(101)])
    [batch] = _drain_all(acc)
    batch.close()
    halves = split_batch(acc, batch, monotonic())
    assert not future.done()  # the halves are pending
    halves[0].done(500, -1, None)
    assert not future.done()
    halves[1].done(900, -1, None)
    assert future.done()
    offsets = [md.offset for md in future.get(0)]
    first = halves[0].record_count
    assert offsets == list(range(500, 500 + first)) + list(range(900, 900 + 101 - first))


def test_get_times_out_while_batches_are_pending() -> None:
    acc = _accumulator(partitions=1)
    future = append_batch(acc, "t", [b"a"])
    with pytest.raises(KafkaTimeoutError):
        future.get(0.01)
    assert "pending" in repr(future)


def _stored_crc_is_right(batch_bytes: bytes) -> bool:
    import crc32c  # the PyPI package: an implementation we did not write

    return int.from_bytes(batch_bytes[17:21], "big") == crc32c.crc32c(batch_bytes[21:])


def test_batches_written_in_bulk_carry_a_valid_crc_also_after_a_producer_state_rewrite() -> None:
    acc = _accumulator(partitions=1, batch_size=1 << 16)
    append_batch(acc, "t", [b"run-%04d" % i for i in range(500)])  # checksummed as written
    acc.append("t", 0, b"key", b"single", [("h", b"v")], None, None)  # appended after, checksummed at close
    append_batch(acc, "t", [b"more"] * 10, keys=[b"k"] * 10, partition=0)
    [batch] = _drain_all(acc)
    batch.set_producer_state(7, 1, 0, False)
    first = bytes(batch.close())
    assert _stored_crc_is_right(first)
    assert [r.value for r in read_batch(first)][-12:] == [b"run-0499", b"single"] + [b"more"] * 10
    batch.set_producer_state(7, 2, 100, False)  # an idempotent retry after an epoch bump rewrites the header
    second = bytes(batch.close())
    assert second[21:] != first[21:] and _stored_crc_is_right(second)
