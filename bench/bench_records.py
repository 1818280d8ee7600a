"""Micro-benchmarks of the RecordBatch builder and the buffer pool.

Run: python -m pytest bench/bench_records.py --benchmark-only -p no:cacheprovider -o python_files='bench_*.py'

Per-record costs are reported in extra_info (ns_per_record) and close() throughput in MB/s of uncompressed
batch; the pytest-benchmark table shows the time per round.
"""
from __future__ import annotations

import os
import random

import pytest

from kafkaprod._native.buffer_pool import BufferPool, _bench_allocate_deallocate
from kafkaprod._native.records import MemoryRecordsBuilder

RECORDS_PER_ROUND = 10_000
VALUE_SIZE = 100
TS = 1_700_000_000_000


def semi_compressible_values(n: int, size: int = VALUE_SIZE, seed: int = 1) -> list[bytes]:
    """JSON-like events: structure repeats, ids and a random token do not (roughly 2-4x compressible)."""
    rng = random.Random(seed)
    words = [b"click", b"view", b"purchase", b"scroll", b"login", b"logout"]
    out = []
    for i in range(n):
        token = rng.getrandbits(64).to_bytes(8, "big").hex().encode()
        body = b'{"id":%d,"user":%d,"event":"%s","token":"%s","ok":true}' % (
            i, rng.randrange(10**6), rng.choice(words), token)
        out.append((body + b"x" * size)[:size])
    return out


VALUES = semi_compressible_values(RECORDS_PER_ROUND)
BUFFER = bytearray(4 << 20)


def _report(benchmark, per_round_items: int, key: str = "ns_per_record") -> None:
    median_s = benchmark.stats.stats.median
    benchmark.extra_info[key] = round(median_s / per_round_items * 1e9, 2)


def test_append_from_compiled_code(benchmark):
    """append_values(): the per-record loop runs in C, as the accumulator's append will."""
    def run():
        builder = MemoryRecordsBuilder(BUFFER, 0, len(BUFFER))
        n = builder.append_values(VALUES, TS)
        assert n == RECORDS_PER_ROUND

    benchmark.pedantic(run, rounds=200, iterations=1, warmup_rounds=5)
    _report(benchmark, RECORDS_PER_ROUND)


def test_append_from_python(benchmark):
    """append() called once per record from Python: includes the Python call overhead."""
    def run():
        builder = MemoryRecordsBuilder(BUFFER, 0, len(BUFFER))
        append = builder.append
        for v in VALUES:
            append(TS, None, v)

    benchmark.pedantic(run, rounds=30, iterations=1, warmup_rounds=2)
    _report(benchmark, RECORDS_PER_ROUND)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_close_one_mib_batch(benchmark, codec):
    """close() of a 1 MiB batch of 100-byte records: compression + header + CRC-32C."""
    batch_size = 1 << 20
    values = semi_compressible_values(12_000, seed=2)
    buf = bytearray(batch_size)
    info = {}

    def setup():
        builder = MemoryRecordsBuilder(buf, codec, batch_size)
        builder.append_values(values, TS)
        info["uncompressed"] = builder.uncompressed_bytes
        return (builder,), {}

    def close(builder):
        info["built"] = len(builder.close())
        info["ratio"] = builder.compression_ratio

    benchmark.pedantic(close, setup=setup, rounds=20 if codec != "gzip" else 8, iterations=1)
    median_s = benchmark.stats.stats.median
    benchmark.extra_info["MB_per_s"] = round(info["uncompressed"] / median_s / 1e6, 1)
    benchmark.extra_info["compression_ratio"] = round(info["ratio"], 3)
    benchmark.extra_info["batch_bytes"] = info["built"]


def test_pool_allocate_deallocate_from_compiled_code(benchmark):
    """A pooled-buffer allocate + deallocate pair through the C entry points the accumulator uses."""
    pool = BufferPool(32 << 20, 16384)
    n = 100_000
    benchmark.pedantic(_bench_allocate_deallocate, args=(pool, 16384, n), rounds=20, iterations=1)
    _report(benchmark, n, "ns_per_pair")


def test_pool_allocate_deallocate_from_python(benchmark):
    pool = BufferPool(32 << 20, 16384)
    n = 10_000

    def run():
        allocate, deallocate = pool.allocate, pool.deallocate
        for _ in range(n):
            deallocate(allocate(16384, 0))

    benchmark.pedantic(run, rounds=20, iterations=1)
    _report(benchmark, n, "ns_per_pair")


if __name__ == "__main__":  # pragma: no cover - convenience
    raise SystemExit(pytest.main([__file__, "--benchmark-only", "-p", "no:cacheprovider",
                                  "-o", "python_files=bench_*.py"]))
