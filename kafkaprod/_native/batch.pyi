from kafkaprod._native.future import ProduceRequestResult
from kafkaprod._native.records import MemoryRecordsBuilder

class ProducerBatch:
    def __init__(self, topic: str, partition: int, builder: MemoryRecordsBuilder, buffer: bytearray | None,
                 buffer_size: int, now: float) -> None: ...
    topic: str
    partition: int
    tp: tuple[str, int]
    builder: MemoryRecordsBuilder
    buffer: bytearray | None
    buffer_size: int
    result: ProduceRequestResult
    created: float
    last_attempt: float
    attempts: int
    retry: bool
    final_state: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records: memoryview | None
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
                           transactional: bool = False) -> None: ...
    def done(self, base_offset: int, log_append_time: int, error: BaseException | None) -> bool: ...
