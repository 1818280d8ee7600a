"""Micro-benchmarks of the compiled kernels: murmur2 (keyed partitioning) and CRC-32C (record-batch checksum).

Run: python -m pytest bench/bench_kernels.py --benchmark-only -p no:cacheprovider -o python_files='bench_*.py'

Targets: murmur2 <= 20 ns per 16-byte key from compiled code (the bulk loop), CRC-32C >= 5 GB/s over 1 MiB.
Each benchmark stores its per-key time or throughput (from the median) in extra_info, shown with
--benchmark-columns or saved with --benchmark-json.
"""
from __future__ import annotations

import functools
import random
import statistics
import time
from array import array

import crc32c as crc32c_package
import pytest
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from kafkaprod._native.crc32c import _crc32c_with, _kernels, crc32c, implementation
from kafkaprod._native.murmur2 import murmur2, partition_for_key, partitions_for_keys

KEY_COUNT = 100_000
MIB = 1 << 20


@pytest.fixture(scope="module")
def keys16() -> list[bytes]:
    rng = random.Random(16)
    return [rng.randbytes(16) for _ in range(KEY_COUNT)]


def record(benchmark, name: str, value: float, fmt: str) -> None:
    benchmark.extra_info[name] = float(fmt % value)


def per_item_ns(benchmark, items: int) -> float:
    return benchmark.stats.stats.median / items * 1e9


# -- murmur2 ---------------------------------------------------------------------------------------------------

def test_murmur2_python_call_16_byte_key(benchmark, keys16):
    benchmark(murmur2, keys16[0])
    record(benchmark, "ns_per_key", per_item_ns(benchmark, 1), "%.1f")


def test_partition_for_key_python_call_16_byte_key(benchmark, keys16):
    benchmark(partition_for_key, keys16[0], 64)
    record(benchmark, "ns_per_key", per_item_ns(benchmark, 1), "%.1f")


def test_partitions_for_keys_bulk_16_byte_keys(benchmark, keys16):
    out = array("i", bytes(4 * KEY_COUNT))
    benchmark(partitions_for_keys, keys16, 64, out)
    record(benchmark, "ns_per_key", per_item_ns(benchmark, KEY_COUNT), "%.2f")


def test_kafka_python_murmur2_16_byte_key(benchmark, keys16):
    # The pure-Python port kafka-python partitions with, for scale.
    benchmark(kafka_python_murmur2, keys16[0])
    record(benchmark, "ns_per_key", per_item_ns(benchmark, 1), "%.1f")


# -- CRC-32C ---------------------------------------------------------------------------------------------------

CRC_SIZES = {"1MiB": MIB, "16KiB": 16 * 1024, "1KiB": 1024}


@pytest.fixture(scope="module")
def buffers() -> dict[int, bytes]:
    rng = random.Random(32)
    return {size: rng.randbytes(size) for size in CRC_SIZES.values()}


# crc32c() as callers get it, each other kernel this CPU runs (through the test hook, a little slower to call),
# and the crc32c package.
CRC_IMPLS = [pytest.param(crc32c, id=f"kafkaprod-{implementation()}")] + [
    pytest.param(functools.partial(_crc32c_with, name), id=f"kafkaprod-kernel-{name}") for name in _kernels()[1:]
] + [pytest.param(crc32c_package.crc32c, id="crc32c-package")]


@pytest.mark.parametrize("size", list(CRC_SIZES.values()), ids=list(CRC_SIZES))
@pytest.mark.parametrize("fn", CRC_IMPLS)
def test_crc32c_throughput(benchmark, buffers, fn, size):
    data = buffers[size]
    assert fn(data) == crc32c_package.crc32c(data)
    benchmark(fn, data)
    record(benchmark, "GB_per_s", size / benchmark.stats.stats.median / 1e9, "%.2f")


def _time_per_call(fn, data, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(data)
    return (time.perf_counter() - start) / calls


@pytest.mark.parametrize("size", list(CRC_SIZES.values()), ids=list(CRC_SIZES))
def test_crc32c_vs_crc32c_package_interleaved(benchmark, buffers, size):
    """Ours and the crc32c package alternating batch by batch, so both see the same machine (it is shared and
    noisy); extra_info has the medians and the median of per-round ratios (>1: ours is faster)."""
    data = buffers[size]
    calls = max(10, (4 * MIB) // size)

    def run() -> tuple[list[float], list[float]]:
        ours, theirs = [], []
        for _ in range(101):
            ours.append(_time_per_call(crc32c, data, calls))
            theirs.append(_time_per_call(crc32c_package.crc32c, data, calls))
        return ours, theirs

    ours, theirs = benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, "ours_GB_per_s", size / statistics.median(ours) / 1e9, "%.2f")
    record(benchmark, "package_GB_per_s", size / statistics.median(theirs) / 1e9, "%.2f")
    record(benchmark, "speedup_vs_package", statistics.median(t / o for o, t in zip(ours, theirs)), "%.3f")
