from array import array
from collections.abc import Sequence
from typing import TypeVar, overload

__all__ = ["murmur2", "to_positive", "partition_for_key", "partitions_for_keys"]

_BytesLike = bytes | bytearray | memoryview
_Out = TypeVar("_Out")

def murmur2(data: _BytesLike, /) -> int: ...
def to_positive(n: int) -> int: ...
def partition_for_key(key: _BytesLike, num_partitions: int) -> int: ...
# out: a writable buffer of native int32 (array('i'), numpy int32) with room for len(keys) items, returned as
# given; without it, a new array('i').
@overload
def partitions_for_keys(keys: Sequence[_BytesLike], num_partitions: int, out: None = None) -> array[int]: ...
@overload
def partitions_for_keys(keys: Sequence[_BytesLike], num_partitions: int, out: _Out) -> _Out: ...
