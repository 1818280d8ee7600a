# cython: language_level=3
"""Opening the values and keys of a send_batch() call for record-by-record reading from C (see bulk_input.pxd)."""
from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject

_SHAPES = ("a list or tuple of bytes, a 1-D numpy array of dtype object holding bytes, or a 2-D numpy uint8 "
           "array with one record per row")
_UINT8_FORMATS = (b"B", b"=B", b"<B", b">B", b"|B")


cdef int open_source(Source* src, object obj, bint is_key) except -1:
    cdef str what = "keys" if is_key else "values"
    src.is_key = is_key
    src.has_view = False
    src.obj = NULL
    src.buf = NULL
    src.stride = 0
    src.row_size = 0
    if obj is None:
        if not is_key:
            raise TypeError(f"values must be {_SHAPES}, not None")
        src.kind = SRC_NONE
        src.n = -1
        return 0
    if isinstance(obj, list):
        src.kind = SRC_LIST
        src.obj = <PyObject*>obj
        src.n = len(obj)
        return 0
    if isinstance(obj, tuple):
        src.kind = SRC_TUPLE
        src.obj = <PyObject*>obj
        src.n = len(obj)
        return 0
    if isinstance(obj, (bytes, bytearray, str)):
        raise TypeError(f"{what} must be {_SHAPES}; got one {type(obj).__name__} object (wrap a single record in "
                        f"a list)")
    try:
        PyObject_GetBuffer(obj, &src.view, PyBUF_RECORDS_RO)
    except (TypeError, BufferError, ValueError):
        raise TypeError(f"{what} must be {_SHAPES}; got {type(obj).__name__}") from None
    src.has_view = True
    fmt = b"B" if src.view.format == NULL else <bytes>src.view.format
    ndim = src.view.ndim
    if fmt == b"O" and src.view.itemsize == sizeof(PyObject*):
        if ndim != 1:
            raise ValueError(f"{what}: an object array must be 1-D (one bytes object per record), got {ndim}-D")
        src.kind = SRC_OBJECTS
        src.buf = <char*>src.view.buf
        src.stride = src.view.strides[0]
        src.n = src.view.shape[0]
        return 0
    if fmt in _UINT8_FORMATS and src.view.itemsize == 1:
        if ndim != 2:
            raise ValueError(f"{what}: a uint8 array must be 2-D (one record per row), got {ndim}-D"
                             + (" (a single bytes-like record? wrap it in a list)" if ndim == 1 else ""))
        if src.view.shape[1] > 1 and src.view.strides[1] != 1:
            raise ValueError(f"{what}: the rows of the uint8 array must be contiguous (C order); "
                             f"use numpy.ascontiguousarray() first")
        src.kind = SRC_ROWS
        src.buf = <char*>src.view.buf
        src.stride = src.view.strides[0]
        src.row_size = src.view.shape[1]
        src.n = src.view.shape[0]
        return 0
    raise TypeError(f"{what} must be {_SHAPES}; got a {ndim}-D array of format {fmt.decode('ascii', 'replace')!r}")


cdef void close_source(Source* src) noexcept:
    if src.has_view:
        src.has_view = False
        PyBuffer_Release(&src.view)


cdef int item_error(Source* src, Py_ssize_t i) except -1:
    cdef str what = "keys" if src.is_key else "values"
    cdef PyObject* o
    if src.kind == SRC_LIST:
        if i >= len(<list>src.obj):
            raise RuntimeError(f"{what} was changed by another thread during send_batch() (it shrank)")
        o = _list_item(src.obj, i)
    elif src.kind == SRC_TUPLE:
        o = _tuple_item(src.obj, i)
    else:
        o = (<PyObject**>(src.buf + i * src.stride))[0]
    if o == NULL:
        raise TypeError(f"{what}[{i}] must be bytes or None, got an empty array slot")
    raise TypeError(f"{what}[{i}] must be bytes or None, got {type(<object>o).__name__}")
