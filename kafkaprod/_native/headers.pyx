# cython: language_level=3
"""Record headers (KIP-82): the checks and the encoding of a record's (str key, bytes value) pairs.

The encoder is the validator: what send(), send_batch() and the producer's Python path refuse is what these
functions cannot encode, with the same words on every path.
"""
from cpython.buffer cimport PyBuffer_Release
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast
from cpython.unicode cimport PyUnicode_Check
from libc.string cimport memcpy

from kafkaprod._native.checks cimport bytes_view
from kafkaprod._native.varint cimport varint_size, write_varint

cdef extern from "Python.h":
    PyObject** _fast_items "PySequence_Fast_ITEMS" (object) noexcept
    Py_ssize_t _fast_size "PySequence_Fast_GET_SIZE" (object) noexcept
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL


cdef object headers_fast(object headers):
    return PySequence_Fast(headers, "headers must be a sequence of (str key, bytes value) pairs")


cdef object _header_pair(object fast, Py_ssize_t i):
    cdef object pair = <object>_fast_items(fast)[i]
    if (type(pair) is not tuple and type(pair) is not list) or len(pair) != 2:
        raise TypeError(f"header {i} must be a (str key, bytes value) pair, not {pair!r}")
    return pair


cdef Py_ssize_t headers_part_size(object fast) except -1:
    """Bytes of the headers part of a record (count varint included); validates every header."""
    cdef Py_ssize_t n = _fast_size(fast)
    cdef Py_ssize_t total = varint_size(n)
    cdef Py_ssize_t i, klen, vlen
    cdef Py_buffer view
    cdef const unsigned char* vptr
    cdef object pair, hkey, hval
    for i in range(n):
        pair = _header_pair(fast, i)
        hkey = pair[0]
        hval = pair[1]
        if not PyUnicode_Check(hkey):
            raise TypeError(f"header {i} key must be str, not {type(hkey).__name__} ({hkey!r})")
        try:
            PyUnicode_AsUTF8AndSize(hkey, &klen)
        except UnicodeEncodeError as exc:
            # Lone surrogates: the record would be refused later anyway; say which header it is now.
            raise ValueError(f"header {i} key {hkey!r} cannot be encoded as UTF-8 ({exc.reason})") from None
        if bytes_view(hval, &view, &vptr, &vlen, f"header {i} ({hkey!r}) value"):
            PyBuffer_Release(&view)
        total += varint_size(klen) + klen + varint_size(vlen) + (vlen if vlen > 0 else 0)
    return total


cdef unsigned char* write_headers(unsigned char* p, unsigned char* end, object fast) except NULL:
    cdef Py_ssize_t n = _fast_size(fast)
    cdef Py_ssize_t i, klen, vlen
    cdef const char* kptr
    cdef const unsigned char* vptr
    cdef Py_buffer view
    cdef bint release
    cdef object pair
    p += write_varint(p, n)
    for i in range(n):
        pair = _header_pair(fast, i)
        kptr = PyUnicode_AsUTF8AndSize(pair[0], &klen)
        release = bytes_view(pair[1], &view, &vptr, &vlen, "header value")
        try:
            # The sizes were taken in a first pass; a header that changed since then must not overrun.
            if p + varint_size(klen) + klen + varint_size(vlen) + (vlen if vlen > 0 else 0) > end:
                raise RuntimeError(f"header {i} changed size while the record was being written")
            p += write_varint(p, klen)
            memcpy(p, kptr, klen)
            p += klen
            p += write_varint(p, vlen)
            if vlen > 0:
                memcpy(p, vptr, vlen)
                p += vlen
        finally:
            if release:
                PyBuffer_Release(&view)
    return p


cdef list validated_headers(object headers):
    cdef object fast = headers_fast(headers)
    headers_part_size(fast)
    return fast if type(fast) is list else list(fast)


cpdef bytes encode_headers(object headers):
    """The headers part of a record (count varint, then each key and value) as bytes; b"\\x00" for none.

    The bulk path encodes a call's headers once with this and copies the bytes into every record."""
    cdef object fast
    cdef Py_ssize_t size
    cdef bytes out
    if headers is None:
        return b"\x00"
    fast = headers_fast(headers)
    size = headers_part_size(fast)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    if write_headers(p, p + size, fast) != p + size:
        raise RuntimeError("headers changed size while they were being encoded")
    return out


def check_headers(headers):
    """headers as a list of validated (str, bytes-like | None) pairs, or None; TypeError/ValueError naming the
    header otherwise (the encoder's own checks, so every path says the same)."""
    return None if headers is None else validated_headers(headers)
