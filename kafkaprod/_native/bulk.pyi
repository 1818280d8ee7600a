from typing import Any

from kafkaprod._native.accumulator import RecordAccumulator
from kafkaprod._native.batch_future import BatchFuture

def append_batch(acc: RecordAccumulator, topic: str, values: Any, keys: Any = None, partition: int | None = None,
                 timestamp_ms: int | None = None, headers: Any = None,
                 partitions: list[int | None] | None = None) -> BatchFuture: ...
