"""Off the GIL: how far a Python thread gets while another thread seals a 1 MiB batch.

The Sender seals (compresses, CRCs) batches while callers keep calling send(). If sealing held the GIL, the
caller would stop for the whole close(). Each benchmark runs close() on a worker thread while the main thread
counts loop iterations, and reports that count as a fraction of what the main thread counts alone in the same
wall time: 1.0 means the caller never stalled (with a second core free), near 0 that it stalled throughout.

    python -m pytest bench/bench_gil.py --benchmark-only -p no:cacheprovider -o python_files='bench_*.py'
"""
from __future__ import annotations

import os
import threading
import time

import pytest

from kafkaprod._native.records import MemoryRecordsBuilder

BATCH = 1 << 20


def _filled_builder(codec: str) -> MemoryRecordsBuilder:
    rnd = os.urandom(BATCH // 2)
    b = MemoryRecordsBuilder(bytearray(BATCH + 4096), codec, BATCH)
    i = 0
    while True:
        # Half random, half repeated bytes: compressible, but not trivially.
        value = rnd[(i * 50) % (len(rnd) - 50):][:50] + b"k" * 50
        if b.append(1_700_000_000_000 + i, None, value) < 0:
            break
        i += 1
    return b


def _spin(stop: threading.Event) -> int:
    n = 0
    while not stop.is_set():
        n += 1
    return n


def _progress_during_close(codec: str) -> tuple[float, float]:
    builder = _filled_builder(codec)
    stop = threading.Event()
    go = threading.Event()
    elapsed = [0.0]

    def seal() -> None:
        go.wait()
        t = time.perf_counter()
        builder.close()
        elapsed[0] = time.perf_counter() - t
        stop.set()

    worker = threading.Thread(target=seal)
    worker.start()
    time.sleep(0.05)  # let the worker reach go.wait(), so its start-up is not in the window
    go.set()
    during = _spin(stop)
    worker.join()
    # The same spin alone, for as long as close() took.
    alone_stop = threading.Event()
    timer = threading.Timer(elapsed[0], alone_stop.set)
    timer.start()
    alone = _spin(alone_stop)
    timer.join()
    return during / max(alone, 1), elapsed[0]


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_caller_progress_while_a_batch_is_sealed(benchmark, codec):
    results = []

    def run():
        results.append(_progress_during_close(codec))

    benchmark.pedantic(run, rounds=5, iterations=1)
    fractions = sorted(r[0] for r in results)
    benchmark.extra_info["caller_progress_fraction_median"] = round(fractions[len(fractions) // 2], 3)
    benchmark.extra_info["close_ms_median"] = round(sorted(r[1] for r in results)[len(results) // 2] * 1000, 2)
