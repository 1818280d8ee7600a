from libc.stdint cimport uint32_t

# CRC-32C (Castagnoli) of the record-batch format. `crc` is the running value: start from 0 and feed the
# result back to continue over more data; the returned value is final (already inverted), as Java's Crc32C.
cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* data, size_t length) noexcept nogil
