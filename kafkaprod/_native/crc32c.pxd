from libc.stdint cimport uint32_t

# CRC-32C (Castagnoli) of the record-batch format. `crc` is the running value: start from 0 and feed the
# result back to continue over more data; the returned value is final (already inverted), as Java's Crc32C.
cdef uint32_t crc32c_update(uint32_t crc, const unsigned char* data, size_t length) noexcept nogil
# The CRC-32C of A + B from crc_a = CRC(A), crc_b = CRC(B) and B's length, without reading the data: lets the
# records of a batch be checksummed as they are written and the header put in front of them at close.
cdef uint32_t crc32c_combine(uint32_t crc_a, uint32_t crc_b, Py_ssize_t len_b) noexcept nogil
