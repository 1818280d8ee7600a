"""Reads RecordBatch v2 bytes back into records: used to split a batch a broker found too large.

This is the rare path (MESSAGE_TOO_LARGE), so it is plain Python; tests check our batches with readers we did
not write (kafka-python's, librdkafka's) instead.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from kafkaprod import compression
from kafkaprod._native.records import RECORD_BATCH_HEADER_SIZE as HEADER_SIZE
from kafkaprod._native.varint import decode_varint, decode_varlong
from kafkaprod.errors import ProtocolError

_HEADER = struct.Struct(">qiiBIhiqqqhii")
if _HEADER.size != HEADER_SIZE:  # pragma: no cover - a header layout changed on one side only
    raise ImportError(f"record_reader's header struct is {_HEADER.size} bytes, the builder's header {HEADER_SIZE}")


class Record(NamedTuple):
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def read_batch(batch: bytes | bytearray | memoryview) -> list[Record]:
    """The records of one RecordBatch v2 (offsets are their position in the list)."""
    mv = memoryview(batch).cast("B")
    if len(mv) < HEADER_SIZE:
        raise ProtocolError(f"record batch of {len(mv)} bytes is shorter than its {HEADER_SIZE}-byte header")
    (_, _, _, magic, _, attributes, _, base_ts, _, _, _, _, count) = _HEADER.unpack_from(mv, 0)
    if magic != 2:
        raise ProtocolError(f"record batch magic {magic}, expected 2")
    data = compression.decompress(attributes & 7, mv[HEADER_SIZE:])
    out: list[Record] = []
    pos = 0
    try:
        for _ in range(count):
            length, pos = decode_varint(data, pos)
            end = pos + length
            pos += 1  # record attributes
            ts_delta, pos = decode_varlong(data, pos)
            _, pos = decode_varint(data, pos)  # offset delta
            key, pos = _read_bytes(data, pos)
            value, pos = _read_bytes(data, pos)
            n_headers, pos = decode_varint(data, pos)
            headers = []
            for _ in range(n_headers):
                hk, pos = _read_bytes(data, pos)
                hv, pos = _read_bytes(data, pos)
                headers.append(((hk or b"").decode("utf-8"), hv))
            if pos != end:
                raise ProtocolError(f"record length {length} does not match its fields")
            out.append(Record(base_ts + ts_delta, key, value, headers))
    except ValueError as exc:
        raise ProtocolError(f"malformed record in batch: {exc}") from None
    return out


def _read_bytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = decode_varint(data, pos)
    if n < 0:
        return None, pos
    if pos + n > len(data):
        raise ProtocolError("record field runs past the end of the batch")
    return data[pos:pos + n], pos + n
