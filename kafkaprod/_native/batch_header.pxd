# The RecordBatch v2 header (61 bytes: Kafka's DefaultRecordBatch), as inline C: where each field sits and how
# the builder fills it in. The CRC-32C covers everything from the attributes to the end of the batch.
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

cdef enum:
    OFF_BATCH_LENGTH = 8
    OFF_LEADER_EPOCH = 12
    OFF_MAGIC = 16
    OFF_CRC = 17
    OFF_ATTRIBUTES = 21
    OFF_LAST_OFFSET_DELTA = 23
    OFF_BASE_TIMESTAMP = 27
    OFF_MAX_TIMESTAMP = 35
    OFF_PRODUCER_ID = 43
    OFF_PRODUCER_EPOCH = 51
    OFF_BASE_SEQUENCE = 53
    OFF_RECORD_COUNT = 57
    ATTR_TRANSACTIONAL = 0x10


cdef inline void be16(unsigned char* p, int16_t v) noexcept nogil:
    cdef unsigned int u = <unsigned short>v
    p[0] = <unsigned char>(u >> 8)
    p[1] = <unsigned char>u


cdef inline void be32(unsigned char* p, uint32_t u) noexcept nogil:
    p[0] = <unsigned char>(u >> 24)
    p[1] = <unsigned char>(u >> 16)
    p[2] = <unsigned char>(u >> 8)
    p[3] = <unsigned char>u


cdef inline void be64(unsigned char* p, int64_t v) noexcept nogil:
    be32(p, <uint32_t>(<unsigned long long>v >> 32))
    be32(p + 4, <uint32_t>(<unsigned long long>v & 0xFFFFFFFFu))


cdef inline void write_header(unsigned char* out, Py_ssize_t total, int32_t count, int64_t base_timestamp,
                              int64_t max_timestamp) noexcept nogil:
    # Every field but the producer state, the attributes and the CRC (write_producer_state, then the CRC).
    be64(out, 0)  # base offset: the broker assigns offsets
    be32(out + OFF_BATCH_LENGTH, <uint32_t>(total - 12))
    be32(out + OFF_LEADER_EPOCH, <uint32_t>-1)
    out[OFF_MAGIC] = 2
    be32(out + OFF_LAST_OFFSET_DELTA, <uint32_t>(count - 1))
    be64(out + OFF_BASE_TIMESTAMP, base_timestamp)
    be64(out + OFF_MAX_TIMESTAMP, max_timestamp)
    be32(out + OFF_RECORD_COUNT, <uint32_t>count)


cdef inline void write_producer_state(unsigned char* out, int codec, bint transactional, int64_t producer_id,
                                      int16_t producer_epoch, int32_t base_sequence) noexcept nogil:
    be16(out + OFF_ATTRIBUTES, <int16_t>(codec | (ATTR_TRANSACTIONAL if transactional else 0)))
    be64(out + OFF_PRODUCER_ID, producer_id)
    be16(out + OFF_PRODUCER_EPOCH, producer_epoch)
    be32(out + OFF_BASE_SEQUENCE, <uint32_t>base_sequence)
