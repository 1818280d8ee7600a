"""RecordMetadata: what a broker acknowledged for one record."""
from __future__ import annotations

from typing import NamedTuple


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    #: Offset of the record in its partition; -1 when unknown (acks=0).
    offset: int
    #: The record's timestamp: its create time, or the broker's log-append time when the topic uses that.
    timestamp: int
    serialized_key_size: int
    serialized_value_size: int
