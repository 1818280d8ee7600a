"""Kafka's primitive wire types: readers over a memoryview and writers into a bytearray.

Every reader has the shape ``read_x(buf, pos) -> (value, new_pos)`` where ``buf`` is a memoryview that ends
exactly where the frame ends, so ``len(buf)`` is the hard limit: nothing is ever read past it. Every length or
count is checked against the bytes that remain *before* anything is allocated, so a hostile or corrupt frame
costs at most its own size. All decoding failures raise :class:`kafkaprod.errors.ProtocolError`.

Writers have the shape ``write_x(out, value)`` and append to a bytearray; values out of range raise
``ValueError``/``struct.error`` which the schema layer turns into an error naming the field.
"""
from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

from kafkaprod.errors import ProtocolError

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
FLOAT64 = struct.Struct(">d")
BOOL = struct.Struct(">?")

#: struct format characters of the fixed-width types, which the schema layer packs together in runs.
FIXED_FORMATS: dict[str, str] = {
    "bool": "?",
    "int8": "b",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "float64": "d",
}

ZERO_UUID = uuid.UUID(int=0)

_MAX_INT16 = 0x7FFF
_MAX_INT32 = 0x7FFFFFFF


def truncated(what: str, pos: int, need: int, buf: memoryview) -> ProtocolError:
    return ProtocolError(
        f"truncated frame: {what} at offset {pos} needs {need} bytes, only {len(buf) - pos} remain"
    )


# A fixed-width reader or writer; the module-level names below say which Python type each one reads or writes.
_FixedReader = Callable[[memoryview, int], tuple[Any, int]]
_FixedWriter = Callable[[bytearray, Any], None]


def _fixed_reader(st: struct.Struct, name: str) -> _FixedReader:
    size = st.size
    unpack_from = st.unpack_from

    def read(buf: memoryview, pos: int) -> tuple[Any, int]:
        end = pos + size
        if end > len(buf):
            raise truncated(name, pos, size, buf)
        return unpack_from(buf, pos)[0], end

    read.__name__ = "read_" + name
    read.__doc__ = f"Read a big-endian {name}."
    return read


def _fixed_writer(st: struct.Struct, name: str) -> _FixedWriter:
    pack = st.pack

    def write(out: bytearray, value: Any) -> None:
        out += pack(value)

    write.__name__ = "write_" + name
    write.__doc__ = f"Append a big-endian {name}."
    return write


read_bool: Callable[[memoryview, int], tuple[bool, int]] = _fixed_reader(BOOL, "bool")
read_int8: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(INT8, "int8")
read_int16: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(INT16, "int16")
read_int32: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(INT32, "int32")
read_int64: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(INT64, "int64")
read_uint16: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(UINT16, "uint16")
read_uint32: Callable[[memoryview, int], tuple[int, int]] = _fixed_reader(UINT32, "uint32")
read_float64: Callable[[memoryview, int], tuple[float, int]] = _fixed_reader(FLOAT64, "float64")

write_bool: Callable[[bytearray, bool], None] = _fixed_writer(BOOL, "bool")
write_int8: Callable[[bytearray, int], None] = _fixed_writer(INT8, "int8")
write_int16: Callable[[bytearray, int], None] = _fixed_writer(INT16, "int16")
write_int32: Callable[[bytearray, int], None] = _fixed_writer(INT32, "int32")
write_int64: Callable[[bytearray, int], None] = _fixed_writer(INT64, "int64")
write_uint16: Callable[[bytearray, int], None] = _fixed_writer(UINT16, "uint16")
write_uint32: Callable[[bytearray, int], None] = _fixed_writer(UINT32, "uint32")
write_float64: Callable[[bytearray, float], None] = _fixed_writer(FLOAT64, "float64")


# ---- varints -----------------------------------------------------------------------------------------------
# Kafka caps an int32 varint at 5 bytes and an int64 one at 10; a longer run of continuation bits is garbage,
# and the cap is also what keeps a hostile frame from making these loops long.

def _read_unsigned(buf: memoryview, pos: int, max_bytes: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    n = len(buf)
    for i in range(max_bytes):
        if pos >= n:
            raise truncated(what, pos, 1, buf)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ProtocolError(f"{what} at offset {pos - max_bytes} is longer than {max_bytes} bytes")


def read_uvarint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read an unsigned varint (at most 5 bytes, value below 2**32)."""
    if pos < len(buf) and buf[pos] < 0x80:
        return buf[pos], pos + 1
    value, pos = _read_unsigned(buf, pos, 5, "unsigned varint")
    if value > 0xFFFFFFFF:
        raise ProtocolError(f"unsigned varint ending at offset {pos} exceeds 32 bits")
    return value, pos


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read a zig-zag encoded signed 32-bit varint."""
    raw, pos = read_uvarint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf: memoryview, pos: int) -> tuple[int, int]:
    """Read a zig-zag encoded signed 64-bit varint."""
    raw, pos = _read_unsigned(buf, pos, 10, "varlong")
    if raw > 0xFFFFFFFFFFFFFFFF:
        raise ProtocolError(f"varlong ending at offset {pos} exceeds 64 bits")
    return (raw >> 1) ^ -(raw & 1), pos


def write_uvarint(out: bytearray, value: int) -> None:
    """Append an unsigned varint; ``value`` must be in [0, 2**32)."""
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError(f"unsigned varint out of range: {value}")
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def write_varint(out: bytearray, value: int) -> None:
    """Append a zig-zag encoded signed 32-bit varint."""
    if value < -0x80000000 or value > _MAX_INT32:
        raise ValueError(f"varint out of int32 range: {value}")
    write_uvarint(out, ((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def write_varlong(out: bytearray, value: int) -> None:
    """Append a zig-zag encoded signed 64-bit varint."""
    if value < -0x8000000000000000 or value > 0x7FFFFFFFFFFFFFFF:
        raise ValueError(f"varlong out of int64 range: {value}")
    raw = ((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF
    while raw > 0x7F:
        out.append((raw & 0x7F) | 0x80)
        raw >>= 7
    out.append(raw)


def uvarint_size(value: int) -> int:
    """Bytes an unsigned varint of ``value`` takes."""
    n = 1
    while value > 0x7F:
        value >>= 7
        n += 1
    return n


# ---- lengths ---------------------------------------------------------------------------------------------------
# The readers below make one helper call for length and bounds checks together: they run once per string or
# array of a response, and each Python call saved there is measurable on large Metadata responses.

_i16 = INT16.unpack_from
_i32 = INT32.unpack_from


def _bad_length(what: str, length: int, pos: int, buf: memoryview) -> ProtocolError:
    if length < -1:
        return ProtocolError(f"negative {what} length {length} at offset {pos}")
    if length == -1:
        return ProtocolError(f"null in a non-nullable {what} at offset {pos}")
    return ProtocolError(
        f"{what} length {length} at offset {pos} runs past the end of the frame ({len(buf) - pos} bytes remain)"
    )


def read_array_count(buf: memoryview, pos: int, compact: bool, min_item_size: int) -> tuple[int, int]:
    """Read an array count (-1 = null), refusing counts whose items could not fit in the remaining bytes.

    ``min_item_size`` is the fewest bytes one element can take; checking against it bounds the work and the
    memory a decode can be made to spend by the size of the frame itself.
    """
    start = pos
    if compact:
        if pos < len(buf) and buf[pos] < 0x80:
            count = buf[pos] - 1
            pos += 1
        else:
            raw, pos = read_uvarint(buf, pos)
            count = raw - 1
    else:
        if pos + 4 > len(buf):
            raise truncated("array count", pos, 4, buf)
        count = _i32(buf, pos)[0]
        pos += 4
        if count < -1:
            raise ProtocolError(f"negative array count {count} at offset {start}")
    if count > 0 and count * min_item_size > len(buf) - pos:
        raise ProtocolError(
            f"array count {count} at offset {start} cannot fit in the {len(buf) - pos} bytes that remain"
        )
    return count, pos


def _decode_utf8(raw: memoryview, pos: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"string at offset {pos} is not valid UTF-8: {exc.reason}") from None


def _length16(buf: memoryview, pos: int, what: str, nullable: bool) -> tuple[int, int]:
    end = pos + 2
    if end > len(buf):
        raise truncated(what + " length", pos, 2, buf)
    length = _i16(buf, pos)[0]
    if length < 0 and not (nullable and length == -1) or end + length > len(buf):
        raise _bad_length(what, length, pos, buf)
    return length, end


def _length32(buf: memoryview, pos: int, what: str, nullable: bool) -> tuple[int, int]:
    end = pos + 4
    if end > len(buf):
        raise truncated(what + " length", pos, 4, buf)
    length = _i32(buf, pos)[0]
    if length < 0 and not (nullable and length == -1) or end + length > len(buf):
        raise _bad_length(what, length, pos, buf)
    return length, end


def _compact_length(buf: memoryview, pos: int, what: str, nullable: bool) -> tuple[int, int]:
    if pos < len(buf) and buf[pos] < 0x80:  # one-byte lengths are the common case
        length = buf[pos] - 1
        end = pos + 1
    else:
        raw, end = read_uvarint(buf, pos)
        length = raw - 1
    if length < 0 and not nullable or end + length > len(buf):
        raise _bad_length(what, length, pos, buf)
    return length, end


# ---- strings -------------------------------------------------------------------------------------------------

def read_string(buf: memoryview, pos: int) -> tuple[str, int]:
    """Read an int16-length string; null is refused."""
    length, pos = _length16(buf, pos, "string", False)
    end = pos + length
    return _decode_utf8(buf[pos:end], pos), end


def read_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    length, pos = _length16(buf, pos, "string", True)
    if length < 0:
        return None, pos
    end = pos + length
    return _decode_utf8(buf[pos:end], pos), end


def read_compact_string(buf: memoryview, pos: int) -> tuple[str, int]:
    length, pos = _compact_length(buf, pos, "compact string", False)
    end = pos + length
    return _decode_utf8(buf[pos:end], pos), end


def read_compact_nullable_string(buf: memoryview, pos: int) -> tuple[str | None, int]:
    length, pos = _compact_length(buf, pos, "compact string", True)
    if length < 0:
        return None, pos
    end = pos + length
    return _decode_utf8(buf[pos:end], pos), end


# Kafka caps every string at 32767 UTF-8 bytes, the compact forms included (the Java client refuses longer).
def _encode_str(value: str, limit: int) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    data = value.encode("utf-8")
    if len(data) > limit:
        raise ValueError(f"string of {len(data)} UTF-8 bytes exceeds the limit of {limit}")
    return data


def write_string(out: bytearray, value: str) -> None:
    if value is None:
        raise ValueError("null given for a non-nullable string")
    data = _encode_str(value, _MAX_INT16)
    out += INT16.pack(len(data))
    out += data


def write_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += b"\xff\xff"
    else:
        write_string(out, value)


def write_compact_string(out: bytearray, value: str) -> None:
    if value is None:
        raise ValueError("null given for a non-nullable string")
    data = _encode_str(value, _MAX_INT16)
    write_uvarint(out, len(data) + 1)
    out += data


def write_compact_nullable_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out.append(0)
    else:
        write_compact_string(out, value)


# ---- bytes ---------------------------------------------------------------------------------------------------
# Decoded bytes are copied out of the frame so a caller never pins a whole response buffer by keeping one field.

def read_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    length, pos = _length32(buf, pos, "bytes", False)
    end = pos + length
    return bytes(buf[pos:end]), end


def read_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = _length32(buf, pos, "bytes", True)
    if length < 0:
        return None, pos
    end = pos + length
    return bytes(buf[pos:end]), end


def read_compact_bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    length, pos = _compact_length(buf, pos, "compact bytes", False)
    end = pos + length
    return bytes(buf[pos:end]), end


def read_compact_nullable_bytes(buf: memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = _compact_length(buf, pos, "compact bytes", True)
    if length < 0:
        return None, pos
    end = pos + length
    return bytes(buf[pos:end]), end


def buffer_size(value: Any) -> int:
    """Size in bytes of a bytes-like object (``len`` is wrong for memoryviews of wider items)."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    return memoryview(value).nbytes


def write_bytes(out: bytearray, value: Any) -> None:
    if value is None:
        raise ValueError("null given for a non-nullable bytes field")
    size = buffer_size(value)
    if size > _MAX_INT32:
        raise ValueError(f"bytes field of {size} bytes exceeds the int32 limit")
    out += INT32.pack(size)
    out += value


def write_nullable_bytes(out: bytearray, value: Any) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
    else:
        write_bytes(out, value)


def write_compact_bytes(out: bytearray, value: Any) -> None:
    if value is None:
        raise ValueError("null given for a non-nullable bytes field")
    size = buffer_size(value)
    write_uvarint(out, size + 1)
    out += value


def write_compact_nullable_bytes(out: bytearray, value: Any) -> None:
    if value is None:
        out.append(0)
    else:
        write_compact_bytes(out, value)


# ---- uuid ----------------------------------------------------------------------------------------------------

def read_uuid(buf: memoryview, pos: int) -> tuple[uuid.UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise truncated("uuid", pos, 16, buf)
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def write_uuid(out: bytearray, value: uuid.UUID | bytes) -> None:
    """Append a UUID given as :class:`uuid.UUID` or as its 16 raw bytes."""
    if isinstance(value, uuid.UUID):
        out += value.bytes
        return
    if value is None:
        raise ValueError("null given for a uuid")
    data = bytes(value)
    if len(data) != 16:
        raise ValueError(f"uuid must be 16 bytes, got {len(data)}")
    out += data
