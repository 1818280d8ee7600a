# cython: language_level=3
"""The RecordBatch v2 builder (Java's MemoryRecordsBuilder): encodes records straight into a pooled buffer.

Records are written uncompressed behind a 61-byte gap left for the batch header. ``close()`` compresses the
records section (when a codec is set) back into the same buffer, then fills in the header and the CRC-32C, so
the pooled buffer is what goes on the wire.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast
from libc.stdint cimport INT16_MAX, INT32_MAX, INT64_MAX, INT64_MIN, int16_t, int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kafkaprod._native.batch_header cimport OFF_ATTRIBUTES, OFF_CRC, be32, write_header, write_producer_state
from kafkaprod._native.bulk_input cimport SRC_LIST, SRC_NONE, SRC_TUPLE, Source, peek_item
from kafkaprod._native.checks cimport bytes_view
from kafkaprod._native.crc32c cimport crc32c_combine, crc32c_update
from kafkaprod._native.headers cimport headers_fast, headers_part_size, write_headers
from kafkaprod._native.varint cimport uvarint_size, write_uvarint, zigzag64

from kafkaprod import compression as _compression
from kafkaprod.compression import CODEC_NAMES as _CODEC_NAMES
from kafkaprod.compression import check_available as _check_codec_available
from kafkaprod.compression import parse_compression_type

cdef extern from "Python.h":
    PyObject* _type_of "(PyObject*)Py_TYPE" (PyObject* o) noexcept nogil
    PyObject* _bytes_type "((PyObject*)&PyBytes_Type)"
    # Borrowed-pointer views of list/tuple items and bytes, for the bulk loop: no reference counting per record.
    PyObject** _fast_items "PySequence_Fast_ITEMS" (object) noexcept
    Py_ssize_t _fast_size "PySequence_Fast_GET_SIZE" (object) noexcept
    bint _is_bytes "PyBytes_CheckExact" (PyObject*) noexcept
    char* _bytes_ptr "PyBytes_AS_STRING" (PyObject*) noexcept
    Py_ssize_t _bytes_len "PyBytes_GET_SIZE" (PyObject*) noexcept
    object PyMemoryView_FromMemory(char* mem, Py_ssize_t size, int flags)
    int PyBUF_READ

RECORD_BATCH_HEADER_SIZE = RECORD_BATCH_OVERHEAD

cdef enum:
    # The Sender closes batches, and a thread that drops the GIL while send() keeps the caller's thread busy waits
    # up to a whole switch interval (5 ms) to get it back: a 1 MB batch's CRC (~0.1 ms) releasing the GIL cost
    # ~5 ms per batch. Only batches whose CRC takes longer than a millisecond or so are checksummed without it.
    NOGIL_CRC_MIN = 16 * 1024 * 1024
    # Bytes append_run writes between CRC updates: small enough to still be in L1/L2 when checksummed.
    CRC_CHUNK = 16384


# ---------------------------------------------------------------------------------------------------------
# The record encoder: one core for every append path (append_raw, append_bulk, append_run).

cdef inline Py_ssize_t _fixed_size(uint64_t zts, Py_ssize_t key_len, Py_ssize_t value_len,
                                   Py_ssize_t headers_part) noexcept nogil:
    # Every byte of a record's body but its offset delta's varint: attributes byte, timestamp delta (zig-zag zts),
    # key and value with their lengths (null is the single byte of varint -1), and the headers part.
    return (1 + uvarint_size(zts) + uvarint_size(zigzag64(key_len)) + (key_len if key_len > 0 else 0)
            + uvarint_size(zigzag64(value_len)) + (value_len if value_len > 0 else 0) + headers_part)


cdef inline Py_ssize_t _body_size(Py_ssize_t fixed, int32_t offset_delta) noexcept nogil:
    return fixed + uvarint_size(<uint64_t>offset_delta << 1)


cdef inline Py_ssize_t _framed_size(Py_ssize_t body) noexcept nogil:
    # The record with its own length varint in front.
    return uvarint_size(<uint64_t>body << 1) + body


cdef inline unsigned char* _write_record(unsigned char* p, Py_ssize_t body, uint64_t zts, int32_t offset_delta,
                                         const unsigned char* key, Py_ssize_t key_len,
                                         const unsigned char* value, Py_ssize_t value_len) noexcept nogil:
    # Writes a record up to its headers part, which the caller writes at the pointer returned.
    p += write_uvarint(p, <uint64_t>body << 1)
    p[0] = 0  # record attributes: unused
    p += 1
    p += write_uvarint(p, zts)
    p += write_uvarint(p, <uint64_t>offset_delta << 1)
    p += write_uvarint(p, zigzag64(key_len))
    if key_len > 0:
        memcpy(p, key, key_len)
        p += key_len
    p += write_uvarint(p, zigzag64(value_len))
    if value_len > 0:
        memcpy(p, value, value_len)
        p += value_len
    return p


cdef Py_ssize_t estimate_size_upper_bound_raw(Py_ssize_t key_len, Py_ssize_t value_len,
                                              object headers) except -1:
    cdef Py_ssize_t hpart = 1
    if key_len < -1 or value_len < -1:
        raise ValueError(f"key_len/value_len must be -1 (null) or more, got {key_len}/{value_len}")
    if headers is not None:
        hpart = headers_part_size(headers_fast(headers))
    return size_upper_bound(key_len, value_len, hpart)


cdef int _lengths(object key, object value, Py_ssize_t* key_len, Py_ssize_t* value_len) except -1:
    # The encoded lengths of a key and a value (-1 for None), checked as an append would check them.
    cdef Py_buffer view
    cdef const unsigned char* p
    if bytes_view(key, &view, &p, key_len, "key"):
        PyBuffer_Release(&view)
    if bytes_view(value, &view, &p, value_len, "value"):
        PyBuffer_Release(&view)
    return 0


def estimate_size_upper_bound(key, value, headers=None) -> int:
    """The most bytes a batch holding just this record can take, header included (Java's
    ``estimateSizeInBytesUpperBound``): allocate at least this much for a new batch."""
    cdef Py_ssize_t kl, vl
    _lengths(key, value, &kl, &vl)
    return estimate_size_upper_bound_raw(kl, vl, headers)


cdef int64_t _check_range(object value, int64_t lo, int64_t hi, str name) except? -2:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} {value} is outside [{lo}, {hi}]")
    return value


@cython.final
@cython.auto_pickle(False)
@cython.no_gc_clear  # __dealloc__ releases the buffer export: the collector must not drop the buffer before it
cdef class MemoryRecordsBuilder:
    """Builds one RecordBatch v2 in a preallocated writable buffer (normally a bytearray from the BufferPool).

    ``write_limit`` (the batch size) bounds the *uncompressed* batch, header included; the first record is
    always accepted if it fits the buffer at all, so callers allocate max(batch_size, estimated record size).
    Not thread-safe: the accumulator serialises appends per partition.
    """

    def __cinit__(self):
        self._has_view = False
        self._buf = NULL

    def __init__(self, buffer, compression_type=CODEC_NONE, write_limit=None, producer_id=-1,
                 producer_epoch=-1, base_sequence=-1, is_transactional=False, compression_level=None):
        if self._has_view:
            raise RuntimeError("MemoryRecordsBuilder.__init__ called twice")
        self._codec = parse_compression_type(compression_type)
        _check_codec_available(self._codec)
        self._level = -1 if compression_level is None else <int>_check_range(
            compression_level, -1, 22, "compression_level")
        try:
            PyObject_GetBuffer(buffer, &self._view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        except (TypeError, BufferError):
            raise TypeError(
                f"buffer must be a writable contiguous buffer such as a bytearray, not {type(buffer).__name__}"
            ) from None
        self._has_view = True
        self._buffer_obj = buffer
        self._buf = <unsigned char*>self._view.buf
        self._capacity = self._view.len
        if self._capacity < RECORD_BATCH_OVERHEAD:
            raise ValueError(
                f"buffer of {self._capacity} bytes is smaller than the {RECORD_BATCH_OVERHEAD}-byte batch header")
        if self._capacity > INT32_MAX:
            raise ValueError(f"buffer of {self._capacity} bytes is larger than a batch can be (2 GiB)")
        if write_limit is None:
            self._write_limit = self._capacity
        else:
            self._write_limit = _check_range(write_limit, 1, INT32_MAX, "write_limit")
        self._pos = RECORD_BATCH_OVERHEAD
        self._count = 0
        self._bulk_key_len = -2  # no record sized yet
        self._bulk_value_len = -2
        self._records_crc = 0
        self._crc_pos = RECORD_BATCH_OVERHEAD
        self._base_timestamp = -1
        self._max_timestamp = -1
        self._appends_closed = False
        self._closed = False
        self._closing = False
        self._built = None
        self._out_obj = None
        self._out = NULL
        self._built_size = 0
        self._store_producer_state(producer_id, producer_epoch, base_sequence, is_transactional)

    def __dealloc__(self):
        if self._has_view:
            PyBuffer_Release(&self._view)
            self._has_view = False

    cdef int _store_producer_state(self, producer_id, producer_epoch, base_sequence,
                                   is_transactional) except -1:
        cdef int64_t pid = _check_range(producer_id, INT64_MIN, INT64_MAX, "producer_id")
        cdef int64_t epoch = _check_range(producer_epoch, -1, INT16_MAX, "producer_epoch")
        cdef int64_t seq = _check_range(base_sequence, -1, INT32_MAX, "base_sequence")
        self._producer_id = pid
        self._producer_epoch = <int16_t>epoch
        self._base_sequence = <int32_t>seq
        self._transactional = bool(is_transactional)
        return 0

    # ----- C-level hot path ------------------------------------------------------------------------------

    cdef Py_ssize_t record_size(self, int64_t timestamp, Py_ssize_t key_len, Py_ssize_t value_len,
                                object headers) except -1:
        cdef Py_ssize_t hpart = 1
        cdef int64_t ts_delta = 0 if self._count == 0 else timestamp - self._base_timestamp
        if headers is not None:
            hpart = headers_part_size(headers_fast(headers))
        return _framed_size(_body_size(_fixed_size(zigzag64(ts_delta), key_len, value_len, hpart), self._count))

    cdef bint has_room_for_raw(self, int64_t timestamp, Py_ssize_t key_len, Py_ssize_t value_len,
                               object headers) except -1:
        cdef Py_ssize_t end
        if self._appends_closed:
            return False
        end = self._pos + self.record_size(timestamp, key_len, value_len, headers)
        if self._count == 0:
            return end <= self._capacity
        return end <= self._write_limit and end <= self._capacity

    cdef inline bint _fits(self, Py_ssize_t end, int32_t offset_delta) noexcept:
        # The first record only has to fit the buffer (the caller sized it for that record); later ones must also
        # stay within the write limit (Java's MemoryRecordsBuilder.hasRoomFor).
        return end <= self._capacity and (offset_delta == 0 or end <= self._write_limit)

    cdef inline void _appended(self, int64_t timestamp, int32_t count, Py_ssize_t pos) noexcept:
        # Books records appended up to `count` records and `pos` bytes, the last with `timestamp`.
        if self._count == 0:
            self._base_timestamp = timestamp
            self._max_timestamp = timestamp
        elif timestamp > self._max_timestamp:
            self._max_timestamp = timestamp
        self._count = count
        self._pos = pos

    cdef int append_raw(self, int64_t timestamp, const unsigned char* key, Py_ssize_t key_len,
                        const unsigned char* value, Py_ssize_t value_len, object headers) except -2:
        cdef object fast = None
        cdef Py_ssize_t hpart = 1
        cdef int32_t offset_delta = self._count
        cdef uint64_t zts
        cdef Py_ssize_t body, size, end
        cdef unsigned char* p
        if self._appends_closed:
            raise RuntimeError("cannot append to a record batch that is closed for appends")
        if timestamp < -1:
            raise ValueError(f"invalid timestamp {timestamp}: must be -1 (none) or a time in ms, 0 or later")
        if key_len < -1 or value_len < -1:
            raise ValueError(f"key_len/value_len must be -1 (null) or more, got {key_len}/{value_len}")
        if headers is not None:
            fast = headers_fast(headers)
            if _fast_size(fast) > 0:
                hpart = headers_part_size(fast)
            else:
                fast = None
        zts = zigzag64(0 if offset_delta == 0 else timestamp - self._base_timestamp)
        body = _body_size(_fixed_size(zts, key_len, value_len, hpart), offset_delta)
        size = _framed_size(body)
        end = self._pos + size
        if not self._fits(end, offset_delta):
            if offset_delta > 0:
                return -1
            raise ValueError(
                f"a record of {size} bytes does not fit an empty batch: the buffer has "
                f"{self._capacity - RECORD_BATCH_OVERHEAD} bytes after the {RECORD_BATCH_OVERHEAD}-byte "
                f"header (allocate at least estimate_size_upper_bound() bytes)")
        p = _write_record(self._buf + self._pos, body, zts, offset_delta, key, key_len, value, value_len)
        if fast is None:
            p[0] = 0  # header count 0
        else:
            write_headers(p, self._buf + end, fast)
        self._appended(timestamp, offset_delta + 1, end)
        return offset_delta

    cdef int append_bulk(self, int64_t timestamp, const unsigned char* key, Py_ssize_t key_len,
                         const unsigned char* value, Py_ssize_t value_len, const unsigned char* headers_part,
                         Py_ssize_t headers_len) noexcept:
        # The bulk path's append: the caller checked the timestamp and lengths once per call and encoded the
        # call's headers once (headers_part: count varint and entries, NULL for none), so nothing here can fail
        # or touch a Python object. Returns -1 when the record does not fit, also for an empty batch.
        cdef int32_t offset_delta = self._count
        cdef int64_t ts_delta = 0 if offset_delta == 0 else timestamp - self._base_timestamp
        cdef uint64_t zts = zigzag64(ts_delta)
        cdef Py_ssize_t hpart = headers_len if headers_part != NULL else 1
        cdef Py_ssize_t body, end
        cdef unsigned char* p
        if self._appends_closed:
            return -1
        # Everything but the offset delta's varint is the same as for the previous record when the sizes and the
        # timestamp delta are (the usual case in one call): computed once, kept in the builder.
        if (key_len != self._bulk_key_len or value_len != self._bulk_value_len or hpart != self._bulk_hpart
                or ts_delta != self._bulk_ts_delta):
            self._bulk_key_len = key_len
            self._bulk_value_len = value_len
            self._bulk_hpart = hpart
            self._bulk_ts_delta = ts_delta
            self._bulk_fixed = _fixed_size(zts, key_len, value_len, hpart)
        body = _body_size(self._bulk_fixed, offset_delta)
        end = self._pos + _framed_size(body)
        if not self._fits(end, offset_delta):
            return -1
        p = _write_record(self._buf + self._pos, body, zts, offset_delta, key, key_len, value, value_len)
        if headers_part == NULL:
            p[0] = 0
        else:
            memcpy(p, headers_part, headers_len)
        self._appended(timestamp, offset_delta + 1, end)
        return offset_delta

    cdef Py_ssize_t append_run(self, int64_t timestamp, Source* vsrc, Source* ksrc, Py_ssize_t start,
                               Py_ssize_t stop, const unsigned char* headers_part, Py_ssize_t headers_len,
                               Py_ssize_t* budget, int* why) noexcept:
        # append_bulk in a loop over records start..stop-1 with the builder's position and count in registers,
        # for calls whose records all go to one partition at a time (a fixed partition, or keyless and sticky).
        cdef Py_ssize_t i = start, pos = self._pos, body, end, kl, vl
        cdef Py_ssize_t capacity = self._capacity, write_limit = self._write_limit
        cdef Py_ssize_t hpart = headers_len if headers_part != NULL else 1
        cdef Py_ssize_t ck = self._bulk_key_len, cv = self._bulk_value_len, fixed = self._bulk_fixed
        cdef int32_t count = self._count, first_count = self._count
        cdef int64_t ts_delta = 0 if first_count == 0 else timestamp - self._base_timestamp
        cdef uint64_t zts = zigzag64(ts_delta)
        cdef const unsigned char* kp
        cdef const unsigned char* vp
        cdef unsigned char* p
        cdef PyObject** vitems = NULL
        cdef PyObject* o
        cdef bint no_keys = ksrc.kind == SRC_NONE
        # The records' CRC is kept up to date as they are written (codec none: the records are the wire bytes),
        # so that close() does not read the batch back from memory.
        cdef bint crc_now = self._codec == CODEC_NONE
        cdef uint32_t crc = self._records_crc
        cdef Py_ssize_t crc_pos = self._crc_pos
        why[0] = 0
        if self._appends_closed:
            why[0] = 1
            return 0
        if hpart != self._bulk_hpart or ts_delta != self._bulk_ts_delta:
            ck = cv = -2  # the cached size was for other headers or another timestamp delta
        # The usual inputs -- a list or tuple of bytes, no keys -- are read without the general reader. Nothing in
        # this loop runs Python code, so the list cannot change under it.
        if vsrc.kind == SRC_LIST or vsrc.kind == SRC_TUPLE:
            vitems = _fast_items(<object>vsrc.obj)
            if stop > _fast_size(<object>vsrc.obj):
                stop = _fast_size(<object>vsrc.obj)  # shrunk by another thread: the caller raises for the rest
        while i < stop:
            o = vitems[i] if vitems != NULL else NULL
            if o != NULL and _type_of(o) == _bytes_type:
                vp = <const unsigned char*>_bytes_ptr(o)
                vl = _bytes_len(o)
            elif peek_item(vsrc, i, &vp, &vl) < 0:
                why[0] = 3
                break
            if no_keys:
                kp = NULL
                kl = -1
            elif peek_item(ksrc, i, &kp, &kl) < 0:
                why[0] = 3
                break
            if kl != ck or vl != cv:
                ck = kl
                cv = vl
                fixed = _fixed_size(zts, kl, vl, hpart)
            body = _body_size(fixed, count)
            end = pos + _framed_size(body)
            if end > capacity or (count > 0 and end > write_limit):
                why[0] = 1
                break
            p = _write_record(self._buf + pos, body, zts, count, kp, kl, vp, vl)
            if headers_part == NULL:
                p[0] = 0
            else:
                memcpy(p, headers_part, headers_len)
            pos = end
            count += 1
            i += 1
            if crc_now and pos - crc_pos >= CRC_CHUNK:
                # Checksummed every few KiB, while the bytes are still in the first-level caches.
                crc = crc32c_update(crc, self._buf + crc_pos, <size_t>(pos - crc_pos))
                crc_pos = pos
            if budget != NULL:
                budget[0] -= (kl if kl > 0 else 0) + (vl if vl > 0 else 0) + 8
                if budget[0] <= 0:
                    why[0] = 2
                    break
        if count > first_count:
            self._appended(timestamp, count, pos)
        self._bulk_key_len = ck
        self._bulk_value_len = cv
        self._bulk_fixed = fixed
        self._bulk_hpart = hpart
        self._bulk_ts_delta = ts_delta
        if crc_now and pos > crc_pos:
            crc = crc32c_update(crc, self._buf + crc_pos, <size_t>(pos - crc_pos))
            crc_pos = pos
        self._records_crc = crc
        self._crc_pos = crc_pos
        return i - start

    # ----- Python API ------------------------------------------------------------------------------------

    def append(self, int64_t timestamp_ms, key, value, headers=None) -> int:
        """Appends a record; returns its offset delta, or -1 when the batch has no room for it.

        key/value: bytes-like or None. headers: None or a sequence of (str, bytes | None) pairs.
        """
        cdef Py_buffer kv, vv
        cdef const unsigned char* kp
        cdef const unsigned char* vp
        cdef Py_ssize_t kl, vl
        cdef bint krel = bytes_view(key, &kv, &kp, &kl, "key")
        cdef bint vrel = False
        try:
            vrel = bytes_view(value, &vv, &vp, &vl, "value")
            return self.append_raw(timestamp_ms, kp, kl, vp, vl, headers)
        finally:
            if vrel:
                PyBuffer_Release(&vv)
            if krel:
                PyBuffer_Release(&kv)

    def has_room_for(self, int64_t timestamp_ms, key, value, headers=None) -> bool:
        """Whether append() would accept this record now."""
        cdef Py_ssize_t kl, vl
        _lengths(key, value, &kl, &vl)
        return self.has_room_for_raw(timestamp_ms, kl, vl, headers)

    def append_values(self, values, int64_t timestamp_ms, keys=None) -> int:
        """Appends values (bytes-like or None each), all with timestamp_ms and, if keys is given, the key at the
        same index; no headers. Returns how many were appended before the batch was full."""
        cdef object fv = PySequence_Fast(values, "values must be a sequence of bytes")
        cdef object fk = None
        cdef Py_ssize_t n = _fast_size(fv)
        cdef Py_ssize_t i, kl = -1, vl
        cdef PyObject** vitems = _fast_items(fv)
        cdef PyObject** kitems = NULL
        cdef PyObject* v
        cdef PyObject* k
        cdef const unsigned char* kp = NULL
        cdef const unsigned char* vp
        cdef Py_buffer kv, vv
        cdef bint krel, vrel
        cdef int r
        if keys is not None:
            fk = PySequence_Fast(keys, "keys must be a sequence of bytes")
            if _fast_size(fk) != n:
                raise ValueError(f"keys has {_fast_size(fk)} items but values has {n}")
            kitems = _fast_items(fk)
        for i in range(n):
            krel = vrel = False
            v = vitems[i]
            if _is_bytes(v):
                vp = <const unsigned char*>_bytes_ptr(v)
                vl = _bytes_len(v)
            else:
                vrel = bytes_view(<object>v, &vv, &vp, &vl, "value")
            try:
                if kitems != NULL:
                    k = kitems[i]
                    if _is_bytes(k):
                        kp = <const unsigned char*>_bytes_ptr(k)
                        kl = _bytes_len(k)
                    else:
                        krel = bytes_view(<object>k, &kv, &kp, &kl, "key")
                r = self.append_raw(timestamp_ms, kp, kl, vp, vl, None)
            finally:
                if vrel:
                    PyBuffer_Release(&vv)
                if krel:
                    PyBuffer_Release(&kv)
            if r < 0:
                return i
        return n

    cdef int move_to(self, object buffer) except -1:
        """Carries the records appended so far into `buffer`, a larger writable buffer, and appends there from now
        on (a batch that started small and outgrew its buffer; the caller returns the old one to the pool)."""
        cdef Py_buffer nv
        if self._appends_closed or self._closing or self._closed:
            raise RuntimeError("cannot move a record batch that is closed for appends")
        PyObject_GetBuffer(buffer, &nv, PyBUF_SIMPLE | PyBUF_WRITABLE)
        if nv.len < self._pos or nv.len > INT32_MAX:
            PyBuffer_Release(&nv)
            raise ValueError(f"a buffer of {nv.len} bytes cannot hold this batch's {self._pos} bytes")
        memcpy(nv.buf, self._buf, self._pos)
        PyBuffer_Release(&self._view)
        self._view = nv
        self._buffer_obj = buffer
        self._buf = <unsigned char*>nv.buf
        self._capacity = nv.len
        return 0

    cpdef close_for_appends(self):
        """Refuses further appends (the batch is being drained) without building it yet."""
        self._appends_closed = True

    cpdef object close(self):
        """Builds the batch: compresses the records (if a codec is set), writes the header and CRC.

        Returns a read-only memoryview of exactly the batch bytes -- inside the pooled buffer unless the
        compressed records outgrew it. Idempotent; an empty builder gives an empty view (nothing to send).
        """
        cdef Py_buffer cv
        cdef Py_ssize_t records_len, clen, total
        cdef object out_obj
        cdef unsigned char* out
        if self._closed:
            return self._built
        if self._closing:
            # The codecs run without the GIL, so a second thread could get here mid-compression.
            raise RuntimeError("close() is already in progress in another thread")
        self._appends_closed = True
        if self._count == 0:
            self._closed = True
            self._built = memoryview(b"")
            return self._built
        records_len = self._pos - RECORD_BATCH_OVERHEAD
        if self._codec == CODEC_NONE:
            out_obj = self._buffer_obj
            out = self._buf
            total = self._pos
        else:
            src = PyMemoryView_FromMemory(<char*>self._buf + RECORD_BATCH_OVERHEAD, records_len, PyBUF_READ)
            self._closing = True
            try:
                compressed = _compression.compress(self._codec, self._level, src)
            finally:
                src.release()
                self._closing = False
            PyObject_GetBuffer(compressed, &cv, PyBUF_SIMPLE)
            try:
                clen = cv.len
                total = RECORD_BATCH_OVERHEAD + clen
                if total > INT32_MAX:
                    raise ValueError(f"the compressed batch of {total} bytes exceeds the 2 GiB batch limit")
                if total <= self._capacity:
                    out_obj = self._buffer_obj
                    out = self._buf
                else:
                    # Incompressible records grew past the pooled buffer: the batch goes out of a fresh one.
                    out_obj = PyByteArray_FromStringAndSize(NULL, total)
                    out = <unsigned char*>PyByteArray_AS_STRING(out_obj)
                memcpy(out + RECORD_BATCH_OVERHEAD, cv.buf, clen)
            finally:
                PyBuffer_Release(&cv)

        write_header(out, total, self._count, self._base_timestamp, self._max_timestamp)
        self._out_obj = out_obj
        self._out = out
        self._built_size = total
        self._write_producer_state_and_crc()

        view = memoryview(out_obj)
        if view.ndim != 1 or view.format != "B":
            view = view.cast("B")
        self._built = view[:total].toreadonly()
        self._closed = True
        return self._built

    cdef void _write_producer_state_and_crc(self) noexcept:
        cdef unsigned char* out = self._out
        cdef Py_ssize_t total = self._built_size
        cdef uint32_t crc
        write_producer_state(out, self._codec, self._transactional, self._producer_id, self._producer_epoch,
                             self._base_sequence)
        cdef Py_ssize_t rest
        if self._crc_pos > RECORD_BATCH_OVERHEAD and out == self._buf and total == self._pos:
            # append_run checksummed most records as it wrote them, while they were in cache: finish the records'
            # CRC, then put the 40 header bytes in front of it arithmetically.
            rest = total - self._crc_pos
            if rest >= NOGIL_CRC_MIN:
                with nogil:
                    self._records_crc = crc32c_update(self._records_crc, out + self._crc_pos, <size_t>rest)
            elif rest > 0:
                self._records_crc = crc32c_update(self._records_crc, out + self._crc_pos, <size_t>rest)
            self._crc_pos = total
            crc = crc32c_combine(crc32c_update(0, out + OFF_ATTRIBUTES, RECORD_BATCH_OVERHEAD - OFF_ATTRIBUTES),
                                 self._records_crc, total - RECORD_BATCH_OVERHEAD)
        elif total >= NOGIL_CRC_MIN:
            with nogil:
                crc = crc32c_update(0, out + OFF_ATTRIBUTES, <size_t>(total - OFF_ATTRIBUTES))
        else:
            crc = crc32c_update(0, out + OFF_ATTRIBUTES, <size_t>(total - OFF_ATTRIBUTES))
        be32(out + OFF_CRC, crc)

    def set_producer_state(self, producer_id, producer_epoch, base_sequence, is_transactional) -> None:
        """Sets the idempotence/transaction fields the batch will carry; only before close()."""
        if self._closed:
            raise RuntimeError("cannot set the producer state of a closed record batch; "
                               "use rewrite_producer_state()")
        self._store_producer_state(producer_id, producer_epoch, base_sequence, is_transactional)

    def rewrite_producer_state(self, producer_id, producer_epoch, base_sequence, is_transactional) -> None:
        """Rewrites the producer fields of a built batch in place and recomputes its CRC (an idempotent batch
        retried after an epoch bump or a sequence reset)."""
        if not self._closed:
            raise RuntimeError("rewrite_producer_state() needs a closed batch; use set_producer_state()")
        self._store_producer_state(producer_id, producer_epoch, base_sequence, is_transactional)
        if self._built_size:
            self._write_producer_state_and_crc()

    # ----- state ------------------------------------------------------------------------------------------

    @property
    def record_count(self) -> int:
        return self._count

    @property
    def is_empty(self) -> bool:
        return self._count == 0

    @property
    def is_full(self) -> bool:
        """Closed for appends, or holding records up to the write limit (Java's isFull)."""
        return self._appends_closed or (self._count > 0 and self._pos >= self._write_limit)

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_closed_for_appends(self) -> bool:
        return self._appends_closed

    @property
    def estimated_size_in_bytes(self) -> int:
        """The built size after close(), the uncompressed size before."""
        return self._built_size if self._closed else self._pos

    @property
    def uncompressed_bytes(self) -> int:
        """Bytes of the batch before compression, header included."""
        return self._pos

    @property
    def compression_type(self) -> int:
        return self._codec

    @property
    def base_timestamp(self) -> int:
        """The first record's timestamp (-1 while empty)."""
        return self._base_timestamp

    @property
    def max_timestamp(self) -> int:
        return self._max_timestamp

    @property
    def last_offset_delta(self) -> int:
        return self._count - 1

    @property
    def buffer(self):
        """The buffer the builder writes into (the pooled one, even if close() had to use a fresh buffer)."""
        return self._buffer_obj

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def write_limit(self) -> int:
        return self._write_limit

    @property
    def producer_id(self) -> int:
        return self._producer_id

    @property
    def producer_epoch(self) -> int:
        return self._producer_epoch

    @property
    def base_sequence(self) -> int:
        return self._base_sequence

    @property
    def is_transactional(self) -> bool:
        return self._transactional

    @property
    def compression_ratio(self) -> float:
        """Compressed / uncompressed size of the records section once closed (1.0 before, or without records)."""
        cdef Py_ssize_t raw = self._pos - RECORD_BATCH_OVERHEAD
        if not self._closed or raw <= 0:
            return 1.0
        return (self._built_size - RECORD_BATCH_OVERHEAD) / <double>raw

    def __repr__(self) -> str:
        return (f"<MemoryRecordsBuilder {_CODEC_NAMES[self._codec]} records={self._count} "
                f"bytes={self.estimated_size_in_bytes}/{self._write_limit} "
                f"{'closed' if self._closed else 'open'}>")
