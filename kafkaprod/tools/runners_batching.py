"""The clients' own batching figures for one run of the comparison harness (``spec["batch_stats"]``).

Loaded by path by :mod:`kafkaprod.tools.runners` (so: standard library only, like it). Per run, for both clients:

- ``produce_requests``: Produce requests sent in the timed window;
- ``records_per_request``: records carried by those requests, per request;
- ``batch_size_avg``: bytes per record batch over the producer's life, so including the warm-up record's own
  batch (kafkaprod's ``batch-size-avg`` cannot leave it out, so confluent-kafka's does not either).

kafkaprod: its Java-named ``metrics()`` (``request-total``, ``records-per-request-avg``, ``batch-size-avg``), read
once before the window and once after it; the window's requests and records are the differences.

confluent-kafka: librdkafka's statistics (``statistics.interval.ms``; one JSON document per interval, handed to
``stats_cb``). Produce requests are the per-broker ``req.Produce`` counters, which are totals. Batches come from
the topic-level ``batchsize`` (bytes per batch) and ``batchcnt`` (records per batch) windows, whose
``cnt``/``sum`` are reset at every emission: summed over every emission they are totals. The run checks that
(:func:`LibrdkafkaStats.figures` reports ``stats_records_match``): the window's summed ``batchcnt.sum`` should
equal the records sent.

With 10,000 partitions one emission is 7.5 MB of JSON and ``json.loads`` takes 170 ms of it, more than the
interval: the callback runs inside the timed window, so it only cuts the few small objects it needs out of the
text (:func:`slim_stats`), and keeps those.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

_TS = re.compile(r'"ts":\s*(\d+)')


# ------------------------------------------------------------------------------------------------ kafkaprod


def kafkaprod_snapshot(producer: Any) -> dict[str, float] | None:
    """The three metrics, or None for a kafkaprod without them (an older baseline build)."""
    metrics = getattr(producer, "metrics", None)
    if metrics is None:
        return None
    got = metrics()
    keys = ("request-total", "records-per-request-avg", "batch-size-avg")
    return {key: float(got[key]) for key in keys} if all(key in got for key in keys) else None


def kafkaprod_figures(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
    """The window's figures from snapshots taken before and after it (after the final flush)."""
    if before is None or after is None:
        return {}
    requests = after["request-total"] - before["request-total"]
    records = (after["records-per-request-avg"] * after["request-total"]
               - before["records-per-request-avg"] * before["request-total"])
    return {"produce_requests": int(requests), "records_per_request": records / requests if requests else None,
            "batch_size_avg": after["batch-size-avg"], "metrics_before": before, "metrics_after": after}


# ------------------------------------------------------------------------------------------------ librdkafka


def slim_stats(text: str, topics: int | None = None) -> dict[str, Any]:
    """The parts of one librdkafka statistics document that the figures need, in its own shape: ``ts``, every
    broker's ``req`` and every topic's ``batchsize`` and ``batchcnt`` (brokers and topics keyed by position).

    Cut out of the text rather than parsed: the document lists brokers, then topics, each topic's two windows
    before its partitions, and those objects hold no nested objects. Given the number of ``topics`` the search
    stops at the last one's windows instead of skimming the partitions after them to the end (7.5 MB at 10,000
    partitions: 6 ms a document, against 0.3 ms)."""
    ts = _TS.search(text, 0, 200)
    topics_at = text.find('"topics":')
    brokers_end = topics_at if topics_at >= 0 else len(text)
    brokers = {str(i): {"req": req} for i, req in enumerate(_objects(text, '"req":', 0, brokers_end))}
    windows: dict[str, dict[str, Any]] = {}
    at = brokers_end
    while topics is None or len(windows) < topics:
        size, at = _object(text, '"batchsize":', at)
        count, at = _object(text, '"batchcnt":', at)
        if size is None or count is None:
            break
        windows[str(len(windows))] = {"batchsize": size, "batchcnt": count}
    return {"ts": int(ts.group(1)) if ts else None, "brokers": brokers, "topics": windows}


def _object(text: str, key: str, start: int) -> tuple[dict[str, Any] | None, int]:
    """The flat JSON object after the first ``key`` from ``start`` and the position after it; (None, -1) if none."""
    at = text.find(key, start) if start >= 0 else -1
    if at < 0:
        return None, -1
    opening = text.index("{", at)
    closing = text.index("}", opening)
    return json.loads(text[opening:closing + 1]), closing


def _objects(text: str, key: str, start: int, end: int) -> list[dict[str, Any]]:
    """The flat JSON objects after every ``key`` in text[start:end]."""
    out = []
    at = text.find(key, start, end)
    while at >= 0:
        opening = text.index("{", at)
        closing = text.index("}", opening)
        out.append(json.loads(text[opening:closing + 1]))
        at = text.find(key, closing, end)
    return out


def produce_requests(stats: dict[str, Any]) -> int:
    """Produce requests sent so far, over every broker (the counters are totals)."""
    return sum(int(broker.get("req", {}).get("Produce", 0)) for broker in stats.get("brokers", {}).values())


def sum_windows(emissions: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Batches, their bytes and their records over ``emissions``: each one's topic windows hold only what happened
    since the one before, so the sums are totals."""
    out = {"batches": 0, "batch_bytes": 0, "batch_records": 0, "batchcnt_batches": 0}
    for stats in emissions:
        for topic in stats.get("topics", {}).values():
            size, count = topic.get("batchsize", {}), topic.get("batchcnt", {})
            out["batches"] += int(size.get("cnt", 0))
            out["batch_bytes"] += int(size.get("sum", 0))
            out["batch_records"] += int(count.get("sum", 0))
            out["batchcnt_batches"] += int(count.get("cnt", 0))
    return out


class LibrdkafkaStats:
    """Collects every statistics emission of one producer (``callback`` is its ``stats_cb``) and turns them into
    the run's figures."""

    def __init__(self, interval_ms: int, topics: int | None = None) -> None:
        self.interval_ms = interval_ms
        self.topics = topics  # how many the producer writes to, where slim_stats can stop looking
        self.emissions: list[dict[str, Any]] = []
        self.window_from = 0  # index of the first emission made after the window opened

    def callback(self, text: str) -> None:
        self.emissions.append(slim_stats(text, self.topics))

    def config(self) -> dict[str, Any]:
        return {"statistics.interval.ms": self.interval_ms, "stats_cb": self.callback}

    def wait_past(self, producer: Any, monotonic_s: float) -> dict[str, Any]:
        """Serve the producer's queue until an emission made after ``monotonic_s`` (time.monotonic()) arrives;
        librdkafka's ``ts`` is CLOCK_MONOTONIC in microseconds, the clock of time.monotonic() on Linux."""
        deadline = time.monotonic() + 10 + 3 * self.interval_ms / 1000
        while time.monotonic() < deadline:
            if self.emissions and (self.emissions[-1]["ts"] or 0) > monotonic_s * 1e6:
                return self.emissions[-1]
            producer.poll(0.01)
        raise TimeoutError(f"no librdkafka statistics after {monotonic_s:.3f} within the deadline "
                           f"({len(self.emissions)} emissions so far)")

    def open_window(self, producer: Any) -> None:
        """Before the window, after the warm-up: the emission that closes the warm-up's windows."""
        self.baseline = self.wait_past(producer, time.monotonic())
        self.window_from = len(self.emissions)

    def figures(self, producer: Any, records: int) -> dict[str, Any]:
        """After the window (and the final flush): wait for one more emission, then sum."""
        last = self.wait_past(producer, time.monotonic())
        window = sum_windows(self.emissions[self.window_from:])
        life = sum_windows(self.emissions)
        requests = produce_requests(last) - produce_requests(self.baseline)
        return {"produce_requests": requests,
                "records_per_request": window["batch_records"] / requests if requests else None,
                "batch_size_avg": life["batch_bytes"] / life["batches"] if life["batches"] else None,
                "stats_emissions": len(self.emissions), "stats_interval_ms": self.interval_ms,
                "batches": window["batches"], "batch_records": window["batch_records"],
                "batch_records_life": life["batch_records"],
                # The check that summing the reset-per-emission windows gives totals: every record sent in the
                # window is in exactly one of the window's batches (a retried batch would count twice).
                "stats_records_match": window["batch_records"] == records}
