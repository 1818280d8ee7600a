# cython: language_level=3
"""Python-facing zig-zag varint/varlong helpers; the C-level inline versions live in varint.pxd."""
from libc.stdint cimport int64_t, uint64_t

from kafkaprod._native.varint cimport (
    read_uvarint, read_varint as c_read_varint, read_varlong as c_read_varlong, uvarint_size,
    varint_size, write_uvarint, write_varint,
)

_INT32_MIN = -(1 << 31)
_INT32_MAX = (1 << 31) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def size_of_varint(value):
    """Bytes the zig-zag varint of a 32-bit value takes."""
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise OverflowError(f"varint value {value} is outside the signed 32-bit range")
    return varint_size(<int64_t>value)


def size_of_varlong(value):
    """Bytes the zig-zag varlong of a 64-bit value takes."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError(f"varlong value {value} is outside the signed 64-bit range")
    return varint_size(<int64_t>value)


def size_of_unsigned_varint(value):
    """Bytes the unsigned varint of a value in [0, 2**32) takes (compact lengths, tagged fields)."""
    if not 0 <= value <= 0xFFFFFFFF:
        raise OverflowError(f"unsigned varint value {value} is outside [0, 2**32)")
    return uvarint_size(<uint64_t>value)


def encode_varint(value):
    """The zig-zag varint bytes of a signed 32-bit value."""
    cdef unsigned char buf[10]
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise OverflowError(f"varint value {value} is outside the signed 32-bit range")
    return bytes(buf[:write_varint(buf, <int64_t>value)])


def encode_varlong(value):
    """The zig-zag varlong bytes of a signed 64-bit value."""
    cdef unsigned char buf[10]
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise OverflowError(f"varlong value {value} is outside the signed 64-bit range")
    return bytes(buf[:write_varint(buf, <int64_t>value)])


def encode_unsigned_varint(value):
    """The unsigned varint bytes of a value in [0, 2**32)."""
    cdef unsigned char buf[10]
    if not 0 <= value <= 0xFFFFFFFF:
        raise OverflowError(f"unsigned varint value {value} is outside [0, 2**32)")
    return bytes(buf[:write_uvarint(buf, <uint64_t>value)])


def decode_varint(const unsigned char[:] data, Py_ssize_t pos=0):
    """(value, next_pos) of the zig-zag varint at data[pos]; ValueError if truncated or over 5 bytes."""
    cdef int64_t out
    cdef Py_ssize_t nxt
    if pos < 0 or pos > data.shape[0]:
        raise ValueError(f"position {pos} is outside the buffer of {data.shape[0]} bytes")
    nxt = c_read_varint(&data[0] if data.shape[0] else NULL, data.shape[0], pos, &out)
    if nxt < 0:
        raise ValueError(f"truncated or malformed varint at position {pos}")
    return out, nxt


def decode_varlong(const unsigned char[:] data, Py_ssize_t pos=0):
    """(value, next_pos) of the zig-zag varlong at data[pos]; ValueError if truncated or over 10 bytes."""
    cdef int64_t out
    cdef Py_ssize_t nxt
    if pos < 0 or pos > data.shape[0]:
        raise ValueError(f"position {pos} is outside the buffer of {data.shape[0]} bytes")
    nxt = c_read_varlong(&data[0] if data.shape[0] else NULL, data.shape[0], pos, &out)
    if nxt < 0:
        raise ValueError(f"truncated or malformed varlong at position {pos}")
    return out, nxt


def decode_unsigned_varint(const unsigned char[:] data, Py_ssize_t pos=0):
    """(value, next_pos) of the unsigned varint (at most 5 bytes) at data[pos]."""
    cdef uint64_t out
    cdef Py_ssize_t nxt
    if pos < 0 or pos > data.shape[0]:
        raise ValueError(f"position {pos} is outside the buffer of {data.shape[0]} bytes")
    nxt = read_uvarint(&data[0] if data.shape[0] else NULL, data.shape[0], pos, &out, 5)
    if nxt < 0 or out > 0xFFFFFFFFu:
        raise ValueError(f"truncated or malformed unsigned varint at position {pos}")
    return out, nxt
