# Java's org.apache.kafka.common.utils.Utils.murmur2, the hash behind Kafka's keyed partitioning, as inline C
# functions: the partitioner and bulk paths cimport these so hashing a key costs no call. Bit-exact with Java, so
# a key lands on the same partition from every client (Java, librdkafka's murmur2_random, kafka-python).
cimport cython
from libc.stdint cimport int32_t, uint32_t

cdef extern from *:
    """
    #include <string.h>
    /* A little-endian 32-bit word: one unaligned load where the CPU is little-endian (GCC merged the four byte
       loads of the portable spelling into one only sometimes), a byte swap where it is not. */
    static inline uint32_t kp_load_le32(const unsigned char *p) {
        uint32_t v;
        memcpy(&v, p, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        return v;
    }
    """
    uint32_t _load_le32 "kp_load_le32" (const unsigned char* p) noexcept nogil


cdef inline int32_t murmur2(const unsigned char* data, Py_ssize_t length) noexcept nogil:
    """Java's Utils.murmur2(data): the signed 32-bit MurmurHash2 of data[:length] with Kafka's seed."""
    cdef uint32_t m = 0x5bd1e995u
    # Java hashes an int length; wrapping to 32 bits keeps that for (impossible in practice) >= 4 GiB keys.
    cdef uint32_t h = 0x9747b28cu ^ <uint32_t>length
    cdef uint32_t k
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t body_end = length & ~(<Py_ssize_t>3)
    cdef Py_ssize_t tail = length & 3
    while i < body_end:
        k = _load_le32(data + i)
        k *= m
        k ^= k >> 24
        k *= m
        h *= m
        h ^= k
        i += 4
    # Java's switch falls through: 3 tail bytes mix all three, and only the last step multiplies.
    if tail == 3:
        h ^= (<uint32_t>data[i + 2]) << 16
    if tail >= 2:
        h ^= (<uint32_t>data[i + 1]) << 8
    if tail >= 1:
        h ^= <uint32_t>data[i]
        h *= m
    h ^= h >> 13
    h *= m
    h ^= h >> 15
    return <int32_t>h


@cython.cdivision(True)
cdef inline int partition_for(int32_t hash, int num_partitions) noexcept nogil:
    """Java's toPositive(hash) % num_partitions. The caller guarantees num_partitions >= 1."""
    return (hash & 0x7fffffff) % num_partitions
