"""Records sent by kafkaprod read back byte-exact by confluent-kafka's Consumer, for every codec and both peers.

Each record set mixes what a record can carry: keys, null keys, null values, empty keys and values, headers
(several, repeated names, null header values, none at all), explicit timestamps and binary content, so a
codec or framing mistake in any field shows up as a mismatch against an independent reader.
"""
from __future__ import annotations

import pytest

from producer_support import WAIT_S, make_producer, read_back

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_TS = 1_700_000_000_000


def sample_records(count: int = 24) -> list[dict]:
    records = []
    for i in range(count):
        kind = i % 6
        key = None if kind in (1, 4) else (b"" if kind == 5 else b"key-%d-\x00\xff" % i)
        value = None if kind == 2 else (b"" if kind == 3 else bytes((i * 7 + j) % 256 for j in range(i * 13 % 200)))
        if kind == 0:
            headers = [("trace", b"t-%d" % i), ("trace", b"again"), ("empty", b""), ("null", None)]
        elif kind == 3:
            headers = [("\u00e9t\u00e9", bytes(range(256)))]
        else:
            headers = None
        records.append({"key": key, "value": value, "headers": headers, "timestamp_ms": BASE_TS + i * 1001})
    return records


def send_all(producer, topic: str, records: list[dict], partitions: int) -> list:
    futures = []
    for i, r in enumerate(records):
        futures.append(producer.send(topic, r["value"], r["key"], partition=i % partitions,
                                     headers=r["headers"], timestamp_ms=r["timestamp_ms"]))
    producer.flush(WAIT_S)
    return [f.get(WAIT_S) for f in futures]


def assert_read_back_exact(bootstrap: str, topic: str, records: list[dict], metadata: list, partitions: int,
                           *, check_metadata_timestamp: bool = True) -> None:
    stored = read_back(bootstrap, topic, partitions, len(records))
    by_offset = {(s.partition, s.offset): s for ss in stored.values() for s in ss}
    for i, (r, md) in enumerate(zip(records, metadata)):
        assert md.topic == topic and md.partition == i % partitions
        s = by_offset.get((md.partition, md.offset))
        assert s is not None, f"record {i}: RecordMetadata says offset {md.offset} of partition {md.partition}, " \
                              f"which the consumer did not see"
        assert s.key == r["key"], f"record {i} key"
        assert s.value == r["value"], f"record {i} value"
        assert s.headers == list(r["headers"] or []), f"record {i} headers"
        assert s.timestamp == r["timestamp_ms"], f"record {i} timestamp"
        assert md.serialized_key_size == (-1 if r["key"] is None else len(r["key"]))
        assert md.serialized_value_size == (-1 if r["value"] is None else len(r["value"]))
        if check_metadata_timestamp:
            assert md.timestamp == r["timestamp_ms"]
    # Within a partition, send order is offset order.
    for p in range(partitions):
        offsets = [md.offset for i, md in enumerate(metadata) if i % partitions == p]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


@pytest.mark.parametrize("codec", CODECS)
def test_records_round_trip_byte_exact_through_tansu(tansu, tansu_topic, codec):
    topic = tansu_topic(partitions=3)
    records = sample_records()
    with make_producer(tansu.bootstrap_servers, compression_type=codec, linger_ms=50) as producer:
        metadata = send_all(producer, topic, records, 3)

    assert_read_back_exact(tansu.bootstrap_servers, topic, records, metadata, 3)


@pytest.mark.parametrize("codec", CODECS)
def test_records_round_trip_byte_exact_through_mock_cluster(mock_cluster, mock_topic, codec):
    topic = mock_topic(partitions=3)
    records = sample_records()
    with make_producer(mock_cluster.bootstrap_servers, compression_type=codec, linger_ms=50) as producer:
        metadata = send_all(producer, topic, records, 3)

    # The mock answers every Produce with log_append_time 1234 (a constant in librdkafka's mock handler), which
    # the Java client -- and so kafkaprod -- reports as the record's timestamp; the stored create time is
    # still checked through the consumer.
    assert all(md.timestamp == 1234 for md in metadata)
    assert_read_back_exact(mock_cluster.bootstrap_servers, topic, records, metadata, 3,
                           check_metadata_timestamp=False)


def test_records_without_explicit_timestamp_get_the_send_time(tansu, tansu_topic):
    import time

    topic = tansu_topic(partitions=1)
    before = int(time.time() * 1000)
    with make_producer(tansu.bootstrap_servers) as producer:
        md = producer.send(topic, b"now").get(WAIT_S)
    after = int(time.time() * 1000)

    [stored] = read_back(tansu.bootstrap_servers, topic, 1, 1)[0]
    assert before <= stored.timestamp <= after
    assert md.timestamp == stored.timestamp


def test_large_records_spanning_many_batches_round_trip(tansu, tansu_topic):
    topic = tansu_topic(partitions=2)
    values = [bytes([i % 251]) * (1000 + i * 3000) for i in range(12)]  # up to ~34 KB, bigger than batch_size
    with make_producer(tansu.bootstrap_servers, compression_type="lz4", batch_size=8192) as producer:
        futures = [producer.send(topic, v, partition=i % 2) for i, v in enumerate(values)]
        metadata = [f.get(WAIT_S) for f in futures]

    stored = read_back(tansu.bootstrap_servers, topic, 2, len(values))
    for i, md in enumerate(metadata):
        [s] = [s for s in stored[md.partition] if s.offset == md.offset]
        assert s.value == values[i]


def test_bytearray_and_memoryview_keys_values_and_headers_round_trip(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    backing = bytearray(b"0123456789abcdef")
    with make_producer(mock_cluster.bootstrap_servers) as producer:
        md = producer.send(topic, memoryview(backing)[4:12], key=bytearray(b"ba-key"),
                           headers=[("ba", bytearray(b"hv")), ("mv", memoryview(b"xyz")[1:])]).get(WAIT_S)

    assert (md.serialized_key_size, md.serialized_value_size) == (6, 8)
    [s] = read_back(mock_cluster.bootstrap_servers, topic, 1, 1)[0]
    assert (s.key, s.value, s.headers) == (b"ba-key", b"456789ab", [("ba", b"hv"), ("mv", b"yz")])


def test_many_records_from_several_threads_arrive_once_and_in_send_order(mock_cluster, mock_topic):
    import threading

    topic = mock_topic(partitions=12)
    per_thread, threads_n = 5000, 4
    with make_producer(mock_cluster.bootstrap_servers, compression_type="lz4", linger_ms=5) as producer:
        def run(t: int) -> None:
            for i in range(per_thread):
                # Each thread has its own keys, so per key the send order is this thread's order.
                producer.send(topic, b"t%d-%06d" % (t, i), key=b"thread-%d-key-%d" % (t, i % 7))

        threads = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        producer.flush(WAIT_S)
        sent = producer.metrics()["record-send-total"]

    assert sent == per_thread * threads_n
    stored = read_back(mock_cluster.bootstrap_servers, topic, 12, per_thread * threads_n)
    by_key: dict[bytes, list[bytes]] = {}
    for ss in stored.values():
        for s in ss:
            by_key.setdefault(s.key, []).append(s.value)
    assert len(by_key) == threads_n * 7
    for key, values in by_key.items():
        assert values == sorted(values), key  # zero-padded sequence numbers: sorted == send order
