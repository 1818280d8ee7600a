# C-level interface of the RecordBatch v2 builder, for the accumulator to append records without Python calls.
cimport cython
from libc.stdint cimport int16_t, int32_t, int64_t, uint32_t

from kafkaprod._native.bulk_input cimport Source
from kafkaprod._native.varint cimport varint_size

cdef enum:
    # Bytes of the RecordBatch v2 header that precedes the records section.
    RECORD_BATCH_OVERHEAD = 61
    # The codec id of uncompressed batches (bits 0-2 of the batch attributes), which the builder tests in C; the
    # codec table itself is kafkaprod.compression.Codec.
    CODEC_NONE = 0
    # Longest zig-zag varint/varlong of an int32/int64, for upper-bound estimates.
    MAX_VARINT = 5
    MAX_VARLONG = 10


# The largest a record can get, batch header included, with headers_part bytes of headers (count varint
# included; 1 for none): what a new batch for it needs at least.
cdef inline Py_ssize_t size_upper_bound(Py_ssize_t key_len, Py_ssize_t value_len,
                                        Py_ssize_t headers_part) noexcept nogil:
    return (RECORD_BATCH_OVERHEAD + MAX_VARINT + 1 + MAX_VARLONG + MAX_VARINT
            + varint_size(key_len) + (key_len if key_len > 0 else 0)
            + varint_size(value_len) + (value_len if value_len > 0 else 0) + headers_part)


# The largest a record of these sizes can get, batch header included: what a caller allocates (at least) so
# that the record fits an empty batch. key_len/value_len -1 mean null.
cdef Py_ssize_t estimate_size_upper_bound_raw(Py_ssize_t key_len, Py_ssize_t value_len,
                                              object headers) except -1



@cython.final
@cython.auto_pickle(False)
cdef class MemoryRecordsBuilder:
    cdef object _buffer_obj
    cdef Py_buffer _view
    cdef bint _has_view
    cdef unsigned char* _buf
    cdef Py_ssize_t _capacity
    cdef Py_ssize_t _write_limit
    cdef Py_ssize_t _pos
    cdef int _codec
    cdef int _level
    cdef int64_t _producer_id
    cdef int16_t _producer_epoch
    cdef int32_t _base_sequence
    cdef bint _transactional
    cdef int32_t _count
    cdef int64_t _base_timestamp
    cdef int64_t _max_timestamp
    cdef bint _appends_closed
    cdef bint _closed
    cdef bint _closing
    cdef object _built
    cdef object _out_obj
    cdef unsigned char* _out
    cdef Py_ssize_t _built_size
    # append_bulk's cache: the record size less the offset delta's varint, for these sizes and timestamp delta.
    cdef Py_ssize_t _bulk_key_len
    cdef Py_ssize_t _bulk_value_len
    cdef Py_ssize_t _bulk_hpart
    cdef int64_t _bulk_ts_delta
    cdef Py_ssize_t _bulk_fixed
    # CRC-32C of the records bytes [61, _crc_pos), kept by append_run while they are in cache (codec none).
    cdef uint32_t _records_crc
    cdef Py_ssize_t _crc_pos

    # Bytes a record would take if appended next (its length varint included); -1 lengths mean null.
    cdef Py_ssize_t record_size(self, int64_t timestamp, Py_ssize_t key_len, Py_ssize_t value_len,
                                object headers) except -1
    # Whether that record would be accepted by append_raw now (always true for the first record that fits
    # the buffer).
    cdef bint has_room_for_raw(self, int64_t timestamp, Py_ssize_t key_len, Py_ssize_t value_len,
                               object headers) except -1
    # Writes a record straight into the buffer. Returns its offset delta, or -1 when the batch has no room for
    # it. Raises if the builder is closed for appends, on a bad timestamp or bad headers, or when even an empty
    # batch's buffer is too small for the record.
    cdef int append_raw(self, int64_t timestamp, const unsigned char* key, Py_ssize_t key_len,
                        const unsigned char* value, Py_ssize_t value_len, object headers) except -2
    # append_raw for the bulk path: headers come pre-encoded (headers.encode_headers; NULL for none) and the caller has
    # checked the timestamp and lengths, so it cannot fail. Returns the offset delta, or -1 when the record does
    # not fit (an empty batch included) or the batch is closed for appends.
    cdef int append_bulk(self, int64_t timestamp, const unsigned char* key, Py_ssize_t key_len,
                         const unsigned char* value, Py_ssize_t value_len, const unsigned char* headers_part,
                         Py_ssize_t headers_len) noexcept
    # append_bulk over the records start..stop-1 of a send_batch() call, in order, at consecutive offsets. Stops
    # early (why: 1) when the next record does not fit, (2) once *budget -- the sticky partitioner's bytes left,
    # reduced by key + value + 8 per record; NULL for none -- is used up, (3) at an item that is not bytes or
    # None (the caller raises for it); why 0: all appended. Returns how many were appended.
    cdef Py_ssize_t append_run(self, int64_t timestamp, Source* vsrc, Source* ksrc, Py_ssize_t start,
                               Py_ssize_t stop, const unsigned char* headers_part, Py_ssize_t headers_len,
                               Py_ssize_t* budget, int* why) noexcept
    cdef bint _fits(self, Py_ssize_t end, int32_t offset_delta) noexcept
    cdef void _appended(self, int64_t timestamp, int32_t count, Py_ssize_t pos) noexcept
    # Copies the records appended so far into a larger buffer and appends there from now on; raises once closed
    # for appends or when the buffer is too small.
    cdef int move_to(self, object buffer) except -1
    cpdef object close(self)
    cdef int _store_producer_state(self, producer_id, producer_epoch, base_sequence,
                                   is_transactional) except -1
    cdef void _write_producer_state_and_crc(self) noexcept
    cpdef close_for_appends(self)


# What the accumulator reads of a builder, without reaching into its fields.
cdef inline bint builder_is_full(MemoryRecordsBuilder b) noexcept:
    """Closed for appends, or holding records up to its write limit (Java's MemoryRecordsBuilder.isFull)."""
    return b._appends_closed or (b._count > 0 and b._pos >= b._write_limit)


cdef inline Py_ssize_t builder_size(MemoryRecordsBuilder b) noexcept:
    """The built size once closed, the uncompressed size before (Java's estimatedSizeInBytes)."""
    return b._built_size if b._closed else b._pos


cdef inline int32_t builder_count(MemoryRecordsBuilder b) noexcept:
    return b._count


cdef inline Py_ssize_t builder_capacity(MemoryRecordsBuilder b) noexcept:
    """Bytes of the buffer it writes into (a batch that started small has less than its write limit)."""
    return b._capacity


cdef inline Py_ssize_t builder_write_limit(MemoryRecordsBuilder b) noexcept:
    return b._write_limit
