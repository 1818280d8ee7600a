# cython: language_level=3
"""ProduceRequest encoding and ProduceResponse decoding in C: the two messages the Sender's I/O thread handles
once per request and per answer, for every broker, all the time.

Why it exists: the schema codec (kafkaprod.protocol.schema, driven by the descriptions in
kafkaprod.protocol.messages) walks a list of Python steps per field, which costs the I/O thread tens of
microseconds for a request of a few partitions and milliseconds at a thousand; the I/O thread holds the GIL
meanwhile. This module writes and reads the same bytes with C pointers.

The schema codec stays the reference: kafkaprod.protocol.framing dispatches Produce here, and
tests/test_produce_codec.py holds this module to the schema codec byte for byte (requests) and dict for dict
(responses). The encoder only takes the body shape the Sender builds -- exact dicts, lists or tuples, str and
int values in range, records as one bytes-like object or None -- and returns None for anything else (records
given as a list of buffers, other types, missing keys, values out of range), so that the caller encodes it with
the schema codec, whose errors name the field. The decoder reads every ProduceResponse version it takes, tagged
fields included, and raises kafkaprod.errors.ProtocolError for a malformed or truncated frame.
"""
__all__ = ["MAX_VERSION", "MIN_VERSION", "decode_produce_response", "encode_produce_request"]

import logging

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_FromStringAndSize
from cpython.bytearray cimport PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_CheckExact, PyDict_Copy, PyDict_GetItem
from cpython.list cimport PyList_CheckExact, PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.memoryview cimport PyMemoryView_FromObject
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_CheckExact, PyUnicode_DecodeUTF8
from libc.stdint cimport int16_t, int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kafkaprod._native.varint cimport write_uvarint

from kafkaprod.errors import ProtocolError

log = logging.getLogger("kafkaprod")

cdef extern from "Python.h":
    # Without Cython's exception checks: a failure here means "not a body this encoder takes", and the caller
    # clears the error and hands the body to the schema codec.
    const char* _utf8_and_size "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size) noexcept
    int _get_buffer "PyObject_GetBuffer"(object obj, Py_buffer* view, int flags) noexcept
    void PyErr_Clear() noexcept

#: The Produce versions this module encodes and decodes; framing sends any other version to the schema codec.
MIN_VERSION = 3
MAX_VERSION = 11

cdef enum:
    _MIN_VERSION = 3
    _MAX_VERSION = 11
    _FIRST_FLEXIBLE = 9       # compact lengths, tag sections, request header v2 and response header v1
    _FIRST_LEADER_HINTS = 10  # the current_leader and node_endpoints tagged fields
    _MAX_STRING = 0x7FFF      # Kafka's limit for every string, compact ones included
    _MAX_VARINT = 5           # bytes of the longest unsigned varint of 32 bits
    # The most bytes one partition of a ProduceRequest takes besides its records: index, records length (a
    # varint at most), tag section.
    _PARTITION_BOUND = 4 + _MAX_VARINT + 1
    # Besides the name: its length and the partition count (varints at most), the tag section.
    _TOPIC_BOUND = _MAX_VARINT + _MAX_VARINT + 1

cdef int64_t _INT32_LIMIT = 0x7FFFFFFF
cdef int64_t _RECORDS_LIMIT = 0x7FFFFFFE  # compact lengths carry length + 1, which must stay an int32


# ---- ProduceRequest ---------------------------------------------------------------------------------------------

cdef inline unsigned char* _put16(unsigned char* p, int64_t v) noexcept:
    p[0] = <unsigned char>(v >> 8)
    p[1] = <unsigned char>v
    return p + 2


cdef inline unsigned char* _put32(unsigned char* p, int64_t v) noexcept:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v
    return p + 4


cdef inline bint _int_in(object value, int64_t lo, int64_t hi, int64_t* out) noexcept:
    """Whether value is an exact int within [lo, hi] (stored in out). Subclasses (bool, IntEnum) are left to the
    schema codec, which packs them as struct does."""
    cdef int overflow = 0
    cdef long long v
    if value is None or not PyLong_CheckExact(value):
        return False
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < lo or v > hi:
        return False
    out[0] = v
    return True


cdef Py_ssize_t _utf8(object value, const char** data) noexcept:
    """The UTF-8 length of value if it is an exact str the wire takes (its bytes in data; CPython caches them in
    the str), or -1: not a str, not encodable (a lone surrogate) or longer than Kafka's limit."""
    cdef Py_ssize_t n
    if value is None or not PyUnicode_CheckExact(value):
        return -1
    data[0] = _utf8_and_size(value, &n)
    if data[0] == NULL:
        PyErr_Clear()
        return -1
    if n > _MAX_STRING:
        return -1
    return n


cdef inline unsigned char* _put_string(unsigned char* p, const char* data, Py_ssize_t n, bint compact) noexcept:
    """A string of n bytes (n >= 0), or null (n == -1) where the field is nullable."""
    if compact:
        p += write_uvarint(p, <uint64_t>(n + 1))
    else:
        p = _put16(p, n)
    if n > 0:
        memcpy(p, data, n)
        p += n
    return p


cdef inline unsigned char* _put_count(unsigned char* p, Py_ssize_t n, bint compact) noexcept:
    """An array count or a bytes length; -1 is null (compact: a single 0)."""
    if compact:
        return p + write_uvarint(p, <uint64_t>(n + 1))
    return _put32(p, n)


cdef inline unsigned char* _put_tags(unsigned char* p, bint flexible) noexcept:
    """The empty tag section that ends a header, a struct or the body in flexible versions; nothing before them."""
    if flexible:
        p[0] = 0
        return p + 1
    return p



cdef Py_ssize_t _records_size(object records) noexcept:
    """Bytes of a records buffer, or -1 for anything that is not one contiguous buffer (a list of buffers
    included): those go to the schema codec."""
    cdef Py_buffer view
    cdef Py_ssize_t n
    if PyBytes_CheckExact(records):
        return PyBytes_GET_SIZE(records)
    if PyByteArray_CheckExact(records):
        return PyByteArray_GET_SIZE(records)
    if PyList_CheckExact(records) or PyTuple_CheckExact(records):
        return -1
    if _get_buffer(records, &view, PyBUF_SIMPLE) < 0:
        PyErr_Clear()
        return -1
    n = view.len
    PyBuffer_Release(&view)
    return n


cdef inline bint _is_sequence(object value) noexcept:
    return PyList_CheckExact(value) or PyTuple_CheckExact(value)


cdef inline Py_ssize_t _seq_size(object seq) noexcept:
    if PyList_CheckExact(seq):
        return PyList_GET_SIZE(seq)
    return PyTuple_GET_SIZE(seq)


cdef inline object _seq_item(object seq, Py_ssize_t i):
    if PyList_CheckExact(seq):
        return <object>PyList_GET_ITEM(seq, i)
    return <object>PyTuple_GET_ITEM(seq, i)


cdef inline object _get(object d, str key):
    """d[key] or None when absent (d is an exact dict; the lookup runs no Python code for str keys)."""
    cdef PyObject* v = PyDict_GetItem(d, key)
    if v == NULL:
        return None
    return <object>v


cdef object _topic_parts(object topics, Py_ssize_t i, const char** name_data, Py_ssize_t* name_len):
    """Topic i's partition_data, with its name's UTF-8 in name_data/name_len; None if it is not a shape this
    encoder takes."""
    topic = _seq_item(topics, i)
    if not PyDict_CheckExact(topic):
        return None
    name_len[0] = _utf8(_get(topic, "name"), name_data)
    parts = _get(topic, "partition_data")
    if name_len[0] < 0 or parts is None or not _is_sequence(parts):
        return None
    return parts


def encode_produce_request(api_version, correlation_id, client_id, body):
    """A ProduceRequest frame as a list of buffers, the same bytes as the schema codec's encode_request(0, ...).

    The first chunk starts with the 4-byte size prefix. Every non-empty records buffer is a chunk of its own, the
    caller's object itself (never copied); the bytes between them are memoryview slices of one bytearray.
    Returns None when the body is not one this encoder takes (see the module docstring): the caller then uses the
    schema codec.
    """
    cdef int64_t version, cid, acks, timeout_ms, index
    cdef bint flexible
    cdef const char* client_data = NULL
    cdef const char* txn_data = NULL
    cdef const char* name_data = NULL
    cdef Py_ssize_t client_len = -1, txn_len = -1, name_len, n_topics, n_parts, i, j, size, seg, end
    cdef int64_t bound, records_total = 0
    cdef unsigned char* base
    cdef unsigned char* p
    cdef PyObject* records_item

    if not _int_in(api_version, _MIN_VERSION, _MAX_VERSION, &version):
        return None
    if not _int_in(correlation_id, -_INT32_LIMIT - 1, _INT32_LIMIT, &cid):
        return None
    flexible = version >= _FIRST_FLEXIBLE
    if client_id is not None:
        client_len = _utf8(client_id, &client_data)
        if client_len < 0:
            return None
    if not PyDict_CheckExact(body):
        return None
    txn = _get(body, "transactional_id")  # absent means null, the field's default
    if txn is not None:
        txn_len = _utf8(txn, &txn_data)
        if txn_len < 0:
            return None
    if not _int_in(_get(body, "acks"), -0x8000, 0x7FFF, &acks):
        return None
    if not _int_in(_get(body, "timeout_ms"), -_INT32_LIMIT - 1, _INT32_LIMIT, &timeout_ms):
        return None
    topics = _get(body, "topic_data")
    if topics is None or not _is_sequence(topics):
        return None
    n_topics = _seq_size(topics)

    # An upper bound of the bytes besides the records: size prefix; request header (api key, version,
    # correlation id, client id, tag section); transactional id, acks, timeout, topic count, tag section.
    bound = 4 + (2 + 2 + 4 + 2 + max(client_len, 0) + 1) + (_MAX_VARINT + max(txn_len, 0) + 2 + 4 + _MAX_VARINT + 1)
    for i in range(n_topics):
        parts = _topic_parts(topics, i, &name_data, &name_len)
        if parts is None:
            return None
        bound += _TOPIC_BOUND + name_len + _seq_size(parts) * <int64_t>_PARTITION_BOUND
    if bound > _INT32_LIMIT:
        return None

    buf = PyByteArray_FromStringAndSize(NULL, <Py_ssize_t>bound)
    base = <unsigned char*>PyByteArray_AS_STRING(buf)
    view = PyMemoryView_FromObject(buf)
    chunks = []
    seg = 0  # where the bytes not yet in a chunk start

    # Request header v1 (v2 in flexible versions: a tag section follows). client_id keeps its int16 length in
    # both, so that a broker can read the header of any request.
    p = _put16(base + 4, 0)  # api_key: Produce
    p = _put16(p, version)
    p = _put32(p, cid)
    p = _put_string(p, client_data, client_len, False)
    p = _put_tags(p, flexible)
    # ProduceRequest body.
    p = _put_string(p, txn_data, txn_len, flexible)
    p = _put16(p, acks)
    p = _put32(p, timeout_ms)
    p = _put_count(p, n_topics, flexible)
    for i in range(n_topics):
        # Everything is looked up again rather than trusted from the pass above, and checked against the room
        # left: exporting a records buffer can run code of its type, which could change the lists.
        if i >= _seq_size(topics):
            return None
        parts = _topic_parts(topics, i, &name_data, &name_len)
        if parts is None:
            return None
        n_parts = _seq_size(parts)
        if (p - base) + _TOPIC_BOUND + name_len + n_parts * <int64_t>_PARTITION_BOUND + 1 > bound:
            return None
        # TopicProduceData
        p = _put_string(p, name_data, name_len, flexible)
        p = _put_count(p, n_parts, flexible)
        for j in range(n_parts):
            if j >= _seq_size(parts):
                return None
            part = _seq_item(parts, j)
            if not PyDict_CheckExact(part):
                return None
            if not _int_in(_get(part, "index"), -_INT32_LIMIT - 1, _INT32_LIMIT, &index):
                return None
            records_item = PyDict_GetItem(part, "records")
            if records_item == NULL:  # required: the schema codec names it
                return None
            records = <object>records_item
            # PartitionProduceData
            p = _put32(p, index)
            if records is None:
                p = _put_count(p, -1, flexible)
            else:
                size = _records_size(records)
                if size < 0 or size > _RECORDS_LIMIT:
                    return None
                p = _put_count(p, size, flexible)
                if size:
                    end = p - base
                    chunks.append(view[seg:end])
                    chunks.append(records)
                    seg = end
                    records_total += size
            p = _put_tags(p, flexible)
        if _seq_size(parts) != n_parts:
            return None
        p = _put_tags(p, flexible)
    if _seq_size(topics) != n_topics:
        return None
    p = _put_tags(p, flexible)
    end = p - base
    if end > seg:
        chunks.append(view[seg:end])
    if end + records_total - 4 > _INT32_LIMIT:
        return None  # the schema codec says the frame is too large
    _put32(base, end + records_total - 4)
    return chunks


# ---- ProduceResponse --------------------------------------------------------------------------------------------

cdef struct _Reader:
    const unsigned char* buf
    Py_ssize_t pos
    Py_ssize_t end      # the frame's end, or the end of the tagged field being read
    int version
    bint flexible


cdef enum _Tags:
    _UNKNOWN_TAGS_ONLY = 0   # every tag skipped
    _PARTITION_TAGS = 1      # PartitionProduceResponse: tag 0 is current_leader
    _BODY_TAGS = 2           # ProduceResponse: tag 0 is node_endpoints


cdef int _truncated(_Reader* r, Py_ssize_t need, str what) except -1:
    raise ProtocolError(
        f"truncated frame: {what} at offset {r.pos} needs {need} bytes, only {r.end - r.pos} remain")


cdef inline int _need(_Reader* r, Py_ssize_t need, str what) except -1:
    if need > r.end - r.pos:
        _truncated(r, need, what)
    return 0


cdef inline int16_t _i16(_Reader* r) noexcept:
    cdef const unsigned char* b = r.buf + r.pos
    r.pos += 2
    return <int16_t>((<uint16_t>b[0] << 8) | b[1])


cdef inline int32_t _i32(_Reader* r) noexcept:
    cdef const unsigned char* b = r.buf + r.pos
    r.pos += 4
    return <int32_t>((<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3])


cdef inline int64_t _i64(_Reader* r) noexcept:
    cdef uint64_t hi = <uint32_t>_i32(r)
    cdef uint64_t lo = <uint32_t>_i32(r)
    return <int64_t>((hi << 32) | lo)


cdef int64_t _uvarint(_Reader* r, str what) except -1:
    """An unsigned varint of at most 5 bytes and 32 bits."""
    cdef uint64_t value = 0
    cdef int shift = 0, i
    cdef unsigned char b
    if r.pos < r.end and r.buf[r.pos] < 0x80:
        r.pos += 1
        return r.buf[r.pos - 1]
    for i in range(_MAX_VARINT):
        if r.pos >= r.end:
            _truncated(r, 1, what)
        b = r.buf[r.pos]
        r.pos += 1
        value |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            if value > 0xFFFFFFFF:
                raise ProtocolError(f"{what} ending at offset {r.pos} exceeds 32 bits")
            return <int64_t>value
        shift += 7
    raise ProtocolError(f"{what} at offset {r.pos - _MAX_VARINT} is longer than {_MAX_VARINT} bytes")


cdef Py_ssize_t _count(_Reader* r, int64_t min_item, str what) except -1:
    """The element count of a non-nullable array, refused when that many elements could not fit in the bytes that
    remain (so a corrupt count cannot make the decoder allocate more than the frame's size)."""
    cdef Py_ssize_t start = r.pos
    cdef int64_t count
    if r.flexible:
        count = _uvarint(r, what + " count") - 1
    else:
        _need(r, 4, what + " count")
        count = _i32(r)
    if count < 0:
        if count == -1:
            raise ProtocolError(f"null in the non-nullable array {what} at offset {start}")
        raise ProtocolError(f"negative {what} count {count} at offset {start}")
    if count * min_item > r.end - r.pos:
        raise ProtocolError(
            f"{what} count {count} at offset {start} cannot fit in the {r.end - r.pos} bytes that remain")
    return <Py_ssize_t>count


cdef object _string(_Reader* r, bint nullable, str what):
    """A string (int16 length, or compact in flexible versions); None for null where nullable."""
    cdef Py_ssize_t start = r.pos
    cdef int64_t length
    if r.flexible:
        length = _uvarint(r, what + " length") - 1
    else:
        _need(r, 2, what + " length")
        length = _i16(r)
    if length < 0:
        if length == -1:
            if nullable:
                return None
            raise ProtocolError(f"null in the non-nullable string {what} at offset {start}")
        raise ProtocolError(f"negative {what} length {length} at offset {start}")
    if length > r.end - r.pos:
        raise ProtocolError(f"{what} length {length} at offset {start} runs past the end of the frame "
                            f"({r.end - r.pos} bytes remain)")
    try:
        value = PyUnicode_DecodeUTF8(<const char*>r.buf + r.pos, <Py_ssize_t>length, NULL)
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} at offset {start} is not valid UTF-8: {exc.reason}") from None
    r.pos += <Py_ssize_t>length
    return value


cdef object _current_leader(_Reader* r):
    # LeaderIdAndEpoch
    _need(r, 8, "current_leader (leader_id, leader_epoch)")
    leader_id = _i32(r)
    leader_epoch = _i32(r)
    _tags(r, _UNKNOWN_TAGS_ONLY, None)
    return {"leader_id": leader_id, "leader_epoch": leader_epoch}


cdef object _node_endpoints(_Reader* r):
    # An array of NodeEndpoint: node_id, host, port, rack, tag section (4 + 1 + 4 + 1 + 1 bytes at least).
    cdef Py_ssize_t n = _count(r, 11, "node_endpoints"), i
    endpoints = []
    for i in range(n):
        _need(r, 4, "node_endpoints node_id")
        node_id = _i32(r)
        host = _string(r, False, "node_endpoints host")
        _need(r, 4, "node_endpoints port")
        port = _i32(r)
        rack = _string(r, True, "node_endpoints rack")
        _tags(r, _UNKNOWN_TAGS_ONLY, None)
        endpoints.append({"node_id": node_id, "host": host, "port": port, "rack": rack})
    return endpoints


cdef int _tags(_Reader* r, _Tags kind, dict into) except -1:
    """A tag section: the fields kind knows are read into `into`, within their declared sizes; unknown tags are
    skipped, as Kafka's forward compatibility requires."""
    cdef Py_ssize_t start, field_start, field_end, outer_end
    cdef int64_t count, tag, size, k
    if r.pos < r.end and r.buf[r.pos] == 0:  # an empty section, by far the common case
        r.pos += 1
        return 0
    start = r.pos
    count = _uvarint(r, "tagged field count")
    if count * 2 > r.end - r.pos:  # a tag and a size, a byte each at least
        raise ProtocolError(f"tagged field count {count} at offset {start} cannot fit in the frame")
    for k in range(count):
        tag = _uvarint(r, "tag")
        size = _uvarint(r, "tagged field size")
        field_start = r.pos
        if size > r.end - r.pos:
            raise ProtocolError(f"tagged field {tag} of {size} bytes at offset {r.pos} runs past the frame end")
        field_end = r.pos + <Py_ssize_t>size
        if tag == 0 and kind != _UNKNOWN_TAGS_ONLY and r.version >= _FIRST_LEADER_HINTS:
            outer_end = r.end
            r.end = field_end
            if kind == _PARTITION_TAGS:
                name = "current_leader"
                into[name] = _current_leader(r)
            else:
                name = "node_endpoints"
                into[name] = _node_endpoints(r)
            if r.pos != field_end:
                raise ProtocolError(f"tagged field {name!r} (tag 0) at offset {field_start} declared {size} bytes "
                                    f"but its value took {r.pos - field_start}")
            r.end = outer_end
        r.pos = field_end
    return 0


# What a decoded PartitionProduceResponse holds before its values are set, in the schema codec's key order:
# first the fields the version lacks (and the tagged one), with their defaults.
_PARTITION_V3 = {"log_start_offset": -1, "error_message": None, "current_leader": None, "record_errors": None,
                 "index": 0, "error_code": 0, "base_offset": 0, "log_append_time_ms": 0}
_PARTITION_V5 = {"error_message": None, "current_leader": None, "record_errors": None,
                 "index": 0, "error_code": 0, "base_offset": 0, "log_append_time_ms": 0, "log_start_offset": -1}
_PARTITION_V8 = {"current_leader": None, "index": 0, "error_code": 0, "base_offset": 0, "log_append_time_ms": 0,
                 "log_start_offset": -1, "record_errors": None, "error_message": None}


cdef object _record_errors(_Reader* r):
    # An array of BatchIndexAndErrorMessage: batch_index, batch_index_error_message (4 + 1 bytes at least, plus a
    # tag section in flexible versions; the non-flexible string length takes 2).
    cdef Py_ssize_t n = _count(r, 6, "record_errors"), i
    errors = []
    for i in range(n):
        _need(r, 4, "record_errors batch_index")
        batch_index = _i32(r)
        message = _string(r, True, "record_errors batch_index_error_message")
        if r.flexible:
            _tags(r, _UNKNOWN_TAGS_ONLY, None)
        errors.append({"batch_index": batch_index, "batch_index_error_message": message})
    return errors


cdef dict _partition(_Reader* r, dict template):
    # PartitionProduceResponse
    cdef int version = r.version
    cdef int32_t index
    cdef int16_t error_code
    cdef int64_t base_offset, log_append_time_ms, log_start_offset = -1
    if version >= 5:
        _need(r, 30, "partition_responses (index, error_code, base_offset, log_append_time_ms, log_start_offset)")
    else:
        _need(r, 22, "partition_responses (index, error_code, base_offset, log_append_time_ms)")
    index = _i32(r)
    error_code = _i16(r)
    base_offset = _i64(r)
    log_append_time_ms = _i64(r)
    if version >= 5:
        log_start_offset = _i64(r)
    cdef dict d = PyDict_Copy(template)
    d["index"] = index
    d["error_code"] = error_code
    d["base_offset"] = base_offset
    d["log_append_time_ms"] = log_append_time_ms
    d["log_start_offset"] = log_start_offset
    if version >= 8:
        d["record_errors"] = _record_errors(r)
        d["error_message"] = _string(r, True, "error_message")
    else:
        d["record_errors"] = []
    if r.flexible:
        _tags(r, _PARTITION_TAGS, d)
    return d


def decode_produce_response(int api_version, frame, bint allow_trailing):
    """Decode a whole ProduceResponse frame (response header and body, no size prefix) into the body dict the
    schema codec's decode_response(0, ...) returns: fields the version lacks hold their defaults.

    Raises ProtocolError for a frame that is truncated or malformed, and for bytes after the body unless
    allow_trailing (then they are logged at DEBUG and ignored).
    """
    cdef _Reader r
    cdef Py_buffer view
    cdef Py_ssize_t n_topics, n_parts, i, j, partition_min, topic_min
    cdef dict template
    if not _MIN_VERSION <= api_version <= _MAX_VERSION:
        raise ValueError(f"ProduceResponse v{api_version} is not one this codec decodes "
                         f"(v{_MIN_VERSION}-v{_MAX_VERSION})")
    PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
    try:
        r.buf = <const unsigned char*>view.buf
        r.pos = 0
        r.end = view.len
        r.version = api_version
        r.flexible = api_version >= _FIRST_FLEXIBLE
        # The fewest bytes a partition and a topic take, for the array count checks.
        if api_version >= _FIRST_FLEXIBLE:
            partition_min = 30 + 1 + 1 + 1  # fixed fields, record_errors, error_message, tag section
            topic_min = 1 + 1 + 1
        elif api_version >= 8:
            partition_min = 30 + 4 + 2
            topic_min = 2 + 4
        else:
            partition_min = 30 if api_version >= 5 else 22
            topic_min = 2 + 4
        template = _PARTITION_V8 if api_version >= 8 else _PARTITION_V5 if api_version >= 5 else _PARTITION_V3

        # Response header v0 (v1 in flexible versions: a tag section follows); the correlation id was already
        # matched by the caller.
        _need(&r, 4, "correlation_id")
        r.pos = 4
        if r.flexible:
            _tags(&r, _UNKNOWN_TAGS_ONLY, None)

        # ProduceResponse
        n_topics = _count(&r, topic_min, "responses")
        responses = []
        for i in range(n_topics):
            # TopicProduceResponse
            name = _string(&r, False, "responses name")
            n_parts = _count(&r, partition_min, "partition_responses")
            parts = []
            for j in range(n_parts):
                parts.append(_partition(&r, template))
            if r.flexible:
                _tags(&r, _UNKNOWN_TAGS_ONLY, None)
            responses.append({"name": name, "partition_responses": parts})
        _need(&r, 4, "throttle_time_ms")
        throttle_time_ms = _i32(&r)
        body = {"node_endpoints": [], "responses": responses, "throttle_time_ms": throttle_time_ms}
        if r.flexible:
            _tags(&r, _BODY_TAGS, body)
        if r.pos != r.end:
            if not allow_trailing:
                raise ProtocolError(f"{r.end - r.pos} unexpected bytes after the end of ProduceResponse "
                                    f"v{api_version} ({r.end}-byte frame)")
            log.debug("ignoring %d bytes after the end of ProduceResponse v%d", r.end - r.pos, api_version)
        return body
    finally:
        PyBuffer_Release(&view)
