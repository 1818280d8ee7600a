# cython: language_level=3
"""CRC-32C (Castagnoli), the checksum of Kafka record batches. (Portable table version; hardware path TODO.)"""
from libc.stdint cimport uint32_t

cdef uint32_t _table[256]


cdef void _init_table() noexcept:
    cdef uint32_t c
    cdef int i, k
    for i in range(256):
        c = <uint32_t>i
        for k in range(8):
            c = (c >> 1) ^ (0x82F63B78u if (c & 1) else 0u)
        _table[i] = c


_init_table()


cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* data, size_t length) noexcept nogil:
    cdef uint32_t c = ~crc
    cdef size_t i
    for i in range(length):
        c = _table[(c ^ data[i]) & 0xFF] ^ (c >> 8)
    return ~c


def crc32c(const unsigned char[:] data not None, uint32_t crc=0):
    """CRC-32C of data, continuing from crc (0 to start)."""
    cdef uint32_t r
    with nogil:
        r = crc32c_update(crc, &data[0] if data.shape[0] else NULL, <size_t>data.shape[0])
    return r
