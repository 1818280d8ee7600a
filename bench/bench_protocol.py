"""Cost of the protocol layer per request: encoding a ProduceRequest (records passed through) and decoding the
responses a producer reads. Run: python -m pytest bench/bench_protocol.py --benchmark-only -p no:cacheprovider
-o python_files='bench_*.py'"""
from __future__ import annotations

import pytest

from kafkaprod.protocol import ApiKey, decode_response, encode_request, encode_response

_BATCH = memoryview(bytes(1024 * 1024))  # a 1 MiB record batch: encoding must not touch it


def _produce_body(topics: int, partitions: int) -> dict:
    return {"acks": -1, "timeout_ms": 30000, "topic_data": [
        {"name": f"topic-{t}", "partition_data": [{"index": p, "records": _BATCH} for p in range(partitions)]}
        for t in range(topics)]}


def _frame(chunks) -> bytes:
    return b"".join(chunks)[4:]


@pytest.mark.parametrize("version", [7, 11])
@pytest.mark.parametrize("shape", [(1, 1), (4, 16)], ids=["1x1", "4x16"])
def test_encode_produce_request(benchmark, version, shape):
    body = _produce_body(*shape)
    chunks = benchmark(encode_request, ApiKey.PRODUCE, version, 1, "bench", body)
    assert sum(c is _BATCH for c in chunks) == shape[0] * shape[1]


@pytest.mark.parametrize("version", [7, 11])
def test_decode_produce_response_64_partitions(benchmark, version):
    body = {"responses": [{"name": f"topic-{t}", "partition_responses": [
        {"index": p, "error_code": 0, "base_offset": 1000 * p, "log_append_time_ms": -1, "log_start_offset": 0}
        for p in range(16)]} for t in range(4)], "throttle_time_ms": 0}
    frame = _frame(encode_response(ApiKey.PRODUCE, version, 1, body))
    got = benchmark(decode_response, ApiKey.PRODUCE, version, frame)
    assert len(got["responses"]) == 4


@pytest.mark.parametrize("version", [8, 12])
def test_decode_metadata_response_100_topics_x_10_partitions(benchmark, version):
    body = {"brokers": [{"node_id": i, "host": f"broker-{i}", "port": 9092, "rack": None} for i in range(3)],
            "cluster_id": "c", "controller_id": 0, "topics": [
                {"error_code": 0, "name": f"topic-{t}", "is_internal": False, "partitions": [
                    {"error_code": 0, "partition_index": p, "leader_id": p % 3, "leader_epoch": 1,
                     "replica_nodes": [0, 1, 2], "isr_nodes": [0, 1, 2], "offline_replicas": []}
                    for p in range(10)]} for t in range(100)]}
    frame = _frame(encode_response(ApiKey.METADATA, version, 1, body))
    got = benchmark(decode_response, ApiKey.METADATA, version, frame)
    assert len(got["topics"]) == 100
