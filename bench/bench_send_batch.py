"""Micro-benchmarks of the bulk path: kafkaprod._native.bulk.append_batch (what KafkaProducer.send_batch calls) into a
bare accumulator, without a broker or a Sender thread.

Run: python -m pytest bench/bench_send_batch.py --benchmark-only -p no:cacheprovider -o python_files='bench_*.py'

Each round appends one call of 10,000 records of 100 bytes and then drains, checksums (close()) and completes
every batch, as the Sender would, so that the pool's memory is reused; extra_info has ns_per_record. Compare
with bench_records.py's test_append_from_compiled_code (the builder alone) and the per-record send() path.
"""
from __future__ import annotations

import pytest

from kafkaprod._native.accumulator import RecordAccumulator, monotonic
from kafkaprod._native.bulk import append_batch
from kafkaprod._native.buffer_pool import BufferPool

try:  # only the numpy-shaped inputs need it (the test extra has it; ask for it in bench too)
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

RECORDS_PER_CALL = 10_000
VALUE_SIZE = 100
BATCH_SIZE = 1_000_000
PARTITIONS = 6

VALUES = [bytes([65 + i % 26]) * VALUE_SIZE for i in range(RECORDS_PER_CALL)]
KEYS = [b"key-%012d" % (i % 1000) for i in range(RECORDS_PER_CALL)]
ROWS = None if np is None else np.frombuffer(b"".join(VALUES), dtype=np.uint8).reshape(RECORDS_PER_CALL, VALUE_SIZE)


def _accumulator() -> RecordAccumulator:
    pool = BufferPool(64 << 20, BATCH_SIZE)
    acc = RecordAccumulator(pool, BATCH_SIZE, 0, 5, 100, 120_000, 60_000, False, None, 64 << 20)
    acc.update_topic("t", [0] * PARTITIONS)
    return acc


def _run_calls(benchmark, acc: RecordAccumulator, values, keys=None, partition=None) -> None:
    def one_call():
        future = append_batch(acc, "t", values, keys, partition)
        for batch in acc.drain([0], 1 << 30, monotonic()).get(0, ()):
            batch.close()
            batch.done(0, -1, None)
            acc.deallocate(batch)
        assert len(future) == RECORDS_PER_CALL

    benchmark.pedantic(one_call, rounds=300, iterations=1, warmup_rounds=10)
    benchmark.extra_info["ns_per_record"] = round(benchmark.stats.stats.median / RECORDS_PER_CALL * 1e9, 2)


@pytest.mark.parametrize("shape", ["list", "tuple", "numpy-object", "uint8-rows"])
def test_keyless_sticky(benchmark, shape):
    if np is None and shape in ("numpy-object", "uint8-rows"):
        pytest.skip("numpy is not installed")
    values = {"list": lambda: VALUES, "tuple": lambda: tuple(VALUES),
              "numpy-object": lambda: np.array(VALUES, dtype=object), "uint8-rows": lambda: ROWS}[shape]()
    _run_calls(benchmark, _accumulator(), values)


def test_keyless_one_partition(benchmark):
    _run_calls(benchmark, _accumulator(), VALUES, partition=3)


def test_keyed_murmur2(benchmark):
    _run_calls(benchmark, _accumulator(), VALUES, KEYS)
