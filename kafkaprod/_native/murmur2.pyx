# cython: language_level=3
"""Kafka's key hash (Java's Utils.murmur2) and keyed partition choice, for Python callers and bulk use.

The hash itself is the inline C function in murmur2.pxd; this module wraps it for Python and adds a bulk form
that picks partitions for a whole sequence of keys in one compiled loop.
"""
cimport cython
from cpython.array cimport array, clone
from cpython.buffer cimport (
    PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport int32_t

# The same macros on borrowed pointers, so that the bulk loop touches no reference counts.
cdef extern from "Python.h":
    bint _bytes_check "PyBytes_Check"(PyObject* o) noexcept
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o) noexcept
    Py_ssize_t _bytes_size "PyBytes_GET_SIZE"(PyObject* o) noexcept

import operator
import sys

__all__ = ["murmur2", "to_positive", "partition_for_key", "partitions_for_keys"]

cdef array _INT32_TEMPLATE = array("i")
cdef bint _LITTLE_ENDIAN = sys.byteorder == "little"


cdef str _not_bytes_like(str what, object value):
    return f"{what} must be a bytes-like object (bytes, bytearray, memoryview), not {type(value).__name__}"


cdef int32_t _hash_buffer(object data) except? -1:
    """murmur2 of an object that supports the buffer protocol (BufferError if it is not C-contiguous)."""
    cdef Py_buffer view
    cdef int32_t h
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    h = murmur2(<const unsigned char*>view.buf, view.len)
    PyBuffer_Release(&view)
    return h


cdef int32_t _hash_bytes_like(object data, str what) except? -1:
    """murmur2 of any C-contiguous bytes-like object; TypeError naming the argument `what` otherwise."""
    if PyBytes_Check(data):
        return murmur2(<const unsigned char*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
    if not PyObject_CheckBuffer(data):
        raise TypeError(_not_bytes_like(what, data))
    return _hash_buffer(data)


cdef int _partition_count(object num_partitions) except -1:
    if not isinstance(num_partitions, int):
        raise TypeError(f"num_partitions must be an int, not {type(num_partitions).__name__}")
    if not 1 <= num_partitions <= 0x7fffffff:
        raise ValueError(f"num_partitions must be between 1 and 2**31-1, got {num_partitions}")
    return <int>num_partitions


@cython.embedsignature(False)
def _murmur2(data, /):
    """murmur2(data) -> int

    Java's Utils.murmur2(data): the signed 32-bit MurmurHash2 (seed 0x9747b28c) of a bytes-like object.
    """
    return _hash_bytes_like(data, "data")


# murmur2.pxd gives the name `murmur2` to the C kernel that other Cython modules inline, and Cython cannot give
# the same name to a def here; Python callers still find the wrapper as kafkaprod._native.murmur2.murmur2.
_murmur2.__name__ = _murmur2.__qualname__ = "murmur2"
globals()["murmur2"] = _murmur2
del _murmur2


def to_positive(n):
    """Java's Utils.toPositive: n with the sign bit cleared (n & 0x7fffffff).

    Takes a 32-bit hash as either a signed or an unsigned int; both give the same result.
    """
    return operator.index(n) & 0x7fffffff


def partition_for_key(key, num_partitions):
    """The partition of a keyed record: toPositive(murmur2(key)) % num_partitions, as Java's producer."""
    cdef int count = _partition_count(num_partitions)
    return partition_for(_hash_bytes_like(key, "key"), count)


cdef int32_t* _int32_output(object out, Py_buffer* view, Py_ssize_t needed) except NULL:
    """Pointer into `out` (a writable C-contiguous int32 buffer of at least `needed` items), held by view."""
    cdef bytes fmt
    PyObject_GetBuffer(out, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS)
    fmt = view.format if view.format != NULL else b"B"
    # Native or explicitly native-order 4-byte signed ints: array('i'), numpy int32, memoryview.cast('i').
    if fmt[:1] in (b"@", b"=") or (fmt[:1] == b"<" and _LITTLE_ENDIAN) or (fmt[:1] in (b">", b"!")
                                                                          and not _LITTLE_ENDIAN):
        fmt = fmt[1:]
    if view.itemsize != 4 or fmt not in (b"i", b"l"):
        PyBuffer_Release(view)
        raise TypeError(f"out must be a writable buffer of native int32 (array('i') or numpy int32), "
                        f"got format {fmt.decode('ascii', 'replace')!r} with {view.itemsize}-byte items")
    if view.len // 4 < needed:
        PyBuffer_Release(view)
        raise ValueError(f"out holds {view.len // 4} items but there are {needed} keys")
    return <int32_t*>view.buf


def partitions_for_keys(keys, num_partitions, out=None):
    """Partition of every key of a sequence, in one compiled loop: out[i] = partition_for_key(keys[i], n).

    keys: a list or tuple (or other sequence) of bytes-like keys; bytes keys are read without any Python call.
    out: an optional writable int32 buffer (array('i'), numpy int32) with room for len(keys) items; the first
    len(keys) items are written. Returns out, or a new array('i') when out is None.
    """
    cdef int count = _partition_count(num_partitions)
    cdef object seq = PySequence_Fast(keys, "keys must be a sequence of bytes-like keys")
    cdef Py_ssize_t n = PySequence_Fast_GET_SIZE(seq)
    cdef Py_ssize_t i
    cdef PyObject* key
    cdef int32_t* dst
    cdef array result
    cdef Py_buffer out_view
    cdef bint have_view = False
    if out is None:
        result = clone(_INT32_TEMPLATE, n, False)
        dst = <int32_t*>result.data.as_ints
    else:
        dst = _int32_output(out, &out_view, n)
        have_view = True
    try:
        for i in range(n):
            key = PySequence_Fast_GET_ITEM(seq, i)
            if _bytes_check(key):
                dst[i] = partition_for(murmur2(<const unsigned char*>_bytes_data(key), _bytes_size(key)), count)
            else:
                if not PyObject_CheckBuffer(<object>key):
                    raise TypeError(_not_bytes_like(f"keys[{i}]", <object>key))
                dst[i] = partition_for(_hash_buffer(<object>key), count)
                # A buffer export can run Python code (PEP 688) that shrinks a list under us.
                if PySequence_Fast_GET_SIZE(seq) != n:
                    raise RuntimeError("keys changed size during partitions_for_keys")
    finally:
        if have_view:
            PyBuffer_Release(&out_view)
    return result if out is None else out
