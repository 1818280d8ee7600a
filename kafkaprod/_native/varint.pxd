# Zig-zag varint/varlong codec of the Kafka record format, as inline C functions: the one varint of the compiled
# modules. records.pyx cimports these so that encoding a record's length, deltas and sizes compiles down to a few
# instructions with no calls.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t


cdef inline uint64_t zigzag64(int64_t v) noexcept nogil:
    return (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)


cdef inline int64_t unzigzag64(uint64_t v) noexcept nogil:
    return <int64_t>(v >> 1) ^ -<int64_t>(v & 1)


cdef inline int uvarint_size(uint64_t v) noexcept nogil:
    # One- and two-byte values -- nearly every length and offset delta of small records -- without a loop.
    if v < 0x80:
        return 1
    if v < 0x4000:
        return 2
    cdef int n = 3
    v >>= 21
    while v:
        v >>= 7
        n += 1
    return n


cdef inline int varint_size(int64_t v) noexcept nogil:
    """Bytes that the zig-zag encoding of v takes (varint and varlong are the same encoding)."""
    return uvarint_size(zigzag64(v))


cdef inline int write_uvarint(unsigned char* buf, uint64_t v) noexcept nogil:
    """Writes v as an unsigned LEB128 varint; returns the bytes written. buf needs room for 10 bytes."""
    if v < 0x80:
        buf[0] = <unsigned char>v
        return 1
    if v < 0x4000:
        buf[0] = <unsigned char>(v | 0x80)
        buf[1] = <unsigned char>(v >> 7)
        return 2
    cdef int n = 0
    while v >= 0x80:
        buf[n] = <unsigned char>((v & 0x7F) | 0x80)
        v >>= 7
        n += 1
    buf[n] = <unsigned char>v
    return n + 1


cdef inline int write_varint(unsigned char* buf, int64_t v) noexcept nogil:
    """Writes the zig-zag varint (or varlong) of v; returns the bytes written (at most 10)."""
    return write_uvarint(buf, zigzag64(v))


cdef inline Py_ssize_t read_uvarint(const unsigned char* buf, Py_ssize_t end, Py_ssize_t pos,
                                    uint64_t* out, int max_bytes) noexcept nogil:
    """Reads an unsigned varint at buf[pos:end] of at most max_bytes bytes (5 for int32, 10 for int64).

    Returns the position after it, or -1 if the input ends first or the varint is longer than max_bytes.
    """
    cdef uint64_t result = 0
    cdef int shift = 0
    cdef int count = 0
    cdef unsigned char b
    while pos < end and count < max_bytes:
        b = buf[pos]
        pos += 1
        count += 1
        result |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            out[0] = result
            return pos
        shift += 7
    return -1


cdef inline Py_ssize_t read_varint(const unsigned char* buf, Py_ssize_t end, Py_ssize_t pos,
                                   int64_t* out) noexcept nogil:
    """Reads a zig-zag varint (int32 range, at most 5 bytes); returns the next position or -1 on bad input."""
    cdef uint64_t raw
    pos = read_uvarint(buf, end, pos, &raw, 5)
    if pos < 0 or raw > 0xFFFFFFFFu:
        return -1
    out[0] = unzigzag64(raw)
    return pos


cdef inline Py_ssize_t read_varlong(const unsigned char* buf, Py_ssize_t end, Py_ssize_t pos,
                                    int64_t* out) noexcept nogil:
    """Reads a zig-zag varlong (at most 10 bytes); returns the next position or -1 on bad input."""
    cdef uint64_t raw
    pos = read_uvarint(buf, end, pos, &raw, 10)
    if pos < 0:
        return -1
    out[0] = unzigzag64(raw)
    return pos
