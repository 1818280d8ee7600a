"""Splitting a batch that a broker rejected as MESSAGE_TOO_LARGE (the Java client's splitAndReenqueue)."""
from __future__ import annotations

from typing import Any

from kafkaprod.record_reader import read_batch


def split_batch(accumulator: Any, batch: Any, now: float) -> list:
    """Reads the batch's records back and puts two half-size batches in its place; returns them."""
    records = [(r.timestamp, r.key, r.value, r.headers) for r in read_batch(batch.records)]
    return accumulator.split_and_reenqueue(batch, records, now)
