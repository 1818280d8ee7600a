from typing import final

# PartitionState and TopicState are the accumulator's per-partition and per-topic state; Python sees only the
# `cdef readonly` fields (partition_state.pxd), the rest is C-level.
@final
class PartitionState:
    def __new__(cls, partition: int) -> PartitionState: ...
    @property
    def partition(self) -> int: ...

@final
class TopicState:
    def __new__(cls, topic: str) -> TopicState: ...
    @property
    def topic(self) -> str: ...
    @property
    def num_partitions(self) -> int: ...
