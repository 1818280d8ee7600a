from typing import final

from kafkaprod._native.future import ProduceRequestResult
from kafkaprod._native.records import MemoryRecordsBuilder

@final
class ProducerBatch:
    """The records of one partition that travel together, their outcome, and their delivery state."""

    # __cinit__(...): the arguments go to __new__.
    def __new__(cls, topic: str, partition: int, builder: MemoryRecordsBuilder, buffer: bytearray | None,
                buffer_size: int, now: float) -> ProducerBatch: ...
    # `cdef readonly` in batch.pxd: read-only properties.
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def tp(self) -> tuple[str, int]: ...
    @property
    def builder(self) -> MemoryRecordsBuilder: ...
    @property
    def buffer_size(self) -> int: ...
    @property
    def result(self) -> ProduceRequestResult: ...
    @property
    def created(self) -> float: ...
    #: The sealed batch bytes once closed.
    @property
    def records(self) -> memoryview | None: ...
    # `cdef public` in batch.pxd: writable attributes.
    buffer: bytearray | None
    last_attempt: float
    attempts: int
    retry: bool
    #: 0 pending, 1 succeeded, 2 failed (batch.pxd's BATCH_* constants, which are C-only).
    final_state: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    closed_for_append: bool
    #: Broker id of the request carrying the batch; -1 when it is not in flight.
    sent_to: int
    @property
    def record_count(self) -> int: ...
    @property
    def estimated_size(self) -> int: ...
    @property
    def is_done(self) -> bool: ...
    @property
    def has_sequence(self) -> bool: ...
    def close(self) -> memoryview: ...
    def set_producer_state(self, producer_id: int, producer_epoch: int, base_sequence: int,
                           transactional: bool) -> None: ...
    def done(self, base_offset: int, log_append_time: int, error: Exception | None) -> bool: ...
