"""What a kafkaprod-perf run measures and reports: latency samples, delivery errors, the summary (the fields and
the line format of Java's kafka-producer-perf-test)."""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kafkaprod.tools.perf import PerfArgs

# A future still unresolved this long after flush() returned means a producer bug, not a slow broker.
FUTURE_CHECK_TIMEOUT_S = 300.0
_MIB = float(1 << 20)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (fraction in (0, 1])."""
    if not sorted_values:
        return math.nan
    rank = math.ceil(fraction * len(sorted_values))
    return sorted_values[min(len(sorted_values), max(rank, 1)) - 1]


class _SampledCallback:
    """A sampled record's callback. One object per sample rather than a closure (a function, its closure tuple and
    two cells): the extra cyclic-GC collections those four objects caused were most of what sampling cost."""

    __slots__ = ("stats", "sent_at")

    def __init__(self, stats: Stats, sent_at: float) -> None:
        self.stats = stats
        self.sent_at = sent_at

    def __call__(self, metadata: Any, exception: BaseException | None) -> None:
        latency_ms = (time.perf_counter() - self.sent_at) * 1000.0
        if exception is not None:
            self.stats.error(exception)
        else:
            self.stats.add_sample(latency_ms)


class Stats:
    """Latency samples and delivery errors; written by the Sender thread (callbacks), read by the sending thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self._window: list[float] = []
        self.errors: Counter[str] = Counter()
        self.first_errors: list[str] = []

    def sampled_callback(self, sent_at: float) -> Callable[[Any, BaseException | None], None]:
        return _SampledCallback(self, sent_at)

    def add_sample(self, latency_ms: float) -> None:
        with self._lock:
            self.latencies_ms.append(latency_ms)
            self._window.append(latency_ms)

    def batch_callback(self, sent_at: float) -> Callable[[Any], None]:
        def on_done(future: Any) -> None:
            # Failures are counted after the run (check_batch_futures); a call with any is no latency sample.
            latency_ms = (time.perf_counter() - sent_at) * 1000.0
            if future.exception(0) is None:
                self.add_sample(latency_ms)

        return on_done

    def error(self, exception: BaseException) -> None:
        with self._lock:
            self.errors[type(exception).__name__] += 1
            if len(self.first_errors) < 5:
                self.first_errors.append(f"{type(exception).__name__}: {exception}")

    def take_window(self) -> list[float]:
        with self._lock:
            window, self._window = self._window, []
        return window

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def check_futures(futures: list[Any], stats: Stats) -> None:
    for future in futures:
        try:
            future.get(timeout=FUTURE_CHECK_TIMEOUT_S)
        except Exception as exc:  # every failure kind counts; the report names them
            stats.error(exc)


@dataclasses.dataclass
class Report:
    records: int
    failed: int
    errors: dict[str, int]
    elapsed_s: float
    records_per_s: float
    mb_per_s: float
    latency_samples: int
    latency_sample_every: int
    avg_latency_ms: float
    max_latency_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p999_ms: float
    producer_options: dict[str, Any]
    bootstrap_servers: str
    topic: str
    bulk: int | None = None

    @classmethod
    def build(cls, args: PerfArgs, stats: Stats, elapsed_s: float, total_bytes: int, options: dict[str, Any],
              bootstrap_servers: str) -> "Report":
        lat = sorted(stats.latencies_ms)
        n = args.num_records
        return cls(
            records=n, failed=stats.error_count, errors=dict(stats.errors), elapsed_s=elapsed_s,
            records_per_s=n / elapsed_s if elapsed_s > 0 else math.inf,
            mb_per_s=total_bytes / _MIB / elapsed_s if elapsed_s > 0 else math.inf,
            latency_samples=len(lat), latency_sample_every=args.latency_sample_every,
            avg_latency_ms=sum(lat) / len(lat) if lat else math.nan, max_latency_ms=lat[-1] if lat else math.nan,
            p50_ms=percentile(lat, 0.5), p95_ms=percentile(lat, 0.95), p99_ms=percentile(lat, 0.99),
            p999_ms=percentile(lat, 0.999),
            producer_options={k: v for k, v in options.items() if k != "bootstrap_servers"},
            bootstrap_servers=bootstrap_servers, topic=args.topic, bulk=args.bulk,
        )


def format_progress(sent: int, seconds: float, nbytes: int, window_ms: list[float]) -> str:
    avg = sum(window_ms) / len(window_ms) if window_ms else math.nan
    peak = max(window_ms) if window_ms else math.nan
    return (f"{sent} records sent, {sent / seconds:.1f} records/sec ({nbytes / _MIB / seconds:.2f} MB/sec), "
            f"{avg:.1f} ms avg latency, {peak:.1f} ms max latency.")


def format_summary(report: Report) -> str:
    line = (f"{report.records} records sent, {report.records_per_s:.1f} records/sec ({report.mb_per_s:.2f} MB/sec), "
            f"{report.avg_latency_ms:.2f} ms avg latency, {report.max_latency_ms:.2f} ms max latency, "
            f"{report.p50_ms:.2f} ms 50th, {report.p95_ms:.2f} ms 95th, {report.p99_ms:.2f} ms 99th, "
            f"{report.p999_ms:.2f} ms 99.9th.")
    if report.bulk:
        line += (f"\nsend_batch() of {report.bulk:,} records per call; latency from {report.latency_samples} calls "
                 f"(call to its last acknowledgement); {report.elapsed_s:.2f} s from first send to last "
                 f"acknowledgement")
    elif not report.latency_sample_every:
        line += f"\nlatency not sampled (--latency-sample-every 0); {report.elapsed_s:.2f} s from first send to last " \
                "acknowledgement"
    else:
        line += (f"\nlatency from {report.latency_samples} sampled records (every {report.latency_sample_every}"
                 f"{'st' if report.latency_sample_every == 1 else 'th'}); {report.elapsed_s:.2f} s from first send "
                 f"to last acknowledgement")
    if report.failed:
        kinds = ", ".join(f"{name}: {count}" for name, count in sorted(report.errors.items()))
        line += f"\n{report.failed} records FAILED ({kinds})"
    return line


def check_batch_futures(futures: list[Any], stats: Stats) -> None:
    for future in futures:
        try:
            if future.exception(FUTURE_CHECK_TIMEOUT_S) is None:
                continue
        except Exception as exc:  # never completed: every record of the call counts as failed
            for _ in range(len(future)):
                stats.error(exc)
            continue
        for index in future.failed_indices(0):
            stats.error(future.record_outcome(index)[1])
