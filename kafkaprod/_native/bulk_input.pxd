# The inputs of a send_batch() call -- a list or tuple of bytes, a 1-D numpy object array of bytes, or a 2-D uint8
# array with one record per row -- read record by record from C without making or touching a Python object per
# record: list/tuple items through borrowed pointers, arrays through the buffer protocol (numpy is never imported).
from cpython.object cimport PyObject

cdef extern from "Python.h":
    PyObject* _list_item "PyList_GET_ITEM" (PyObject* o, Py_ssize_t i) noexcept nogil
    Py_ssize_t _list_size "PyList_GET_SIZE" (PyObject* o) noexcept nogil
    PyObject* _tuple_item "PyTuple_GET_ITEM" (PyObject* o, Py_ssize_t i) noexcept nogil
    bint _bytes_check "PyBytes_Check" (PyObject* o) noexcept nogil
    char* _bytes_ptr "PyBytes_AS_STRING" (PyObject* o) noexcept nogil
    Py_ssize_t _bytes_len "PyBytes_GET_SIZE" (PyObject* o) noexcept nogil
    PyObject* _none "Py_None"

cdef enum:
    SRC_NONE = 0      # no keys: every record's key is null
    SRC_LIST = 1
    SRC_TUPLE = 2
    SRC_OBJECTS = 3   # 1-D buffer of object pointers (a numpy object array)
    SRC_ROWS = 4      # 2-D uint8 buffer, one record per row

cdef struct Source:
    int kind
    bint is_key
    PyObject* obj          # the list or tuple; the caller keeps it alive for the call
    char* buf              # SRC_OBJECTS / SRC_ROWS: the first item (row)
    Py_ssize_t stride      # bytes from one item (row) to the next
    Py_ssize_t row_size    # SRC_ROWS: bytes per record
    Py_ssize_t n
    bint has_view
    Py_buffer view


# Fills src from a call's values (is_key False) or keys (None allowed: SRC_NONE). Raises TypeError/ValueError
# naming the argument when obj is none of the accepted shapes. close_source() must follow, also after errors.
cdef int open_source(Source* src, object obj, bint is_key) except -1
cdef void close_source(Source* src) noexcept
# Raises the error for item i of src, which read_item found to be neither bytes nor None (or gone).
cdef int item_error(Source* src, Py_ssize_t i) except -1


cdef inline int peek_item(Source* s, Py_ssize_t i, const unsigned char** ptr, Py_ssize_t* length) noexcept:
    """Points at record i's bytes (NULL/-1 for None); -1 (no exception set) if the item is neither bytes nor None
    or is gone. The pointer is valid until the GIL is next released or Python code runs, so callers use it at
    once and read the item again after anything that could."""
    cdef PyObject* o
    if s.kind == SRC_ROWS:
        ptr[0] = <const unsigned char*>(s.buf + i * s.stride)
        length[0] = s.row_size
        return 0
    if s.kind == SRC_NONE:
        ptr[0] = NULL
        length[0] = -1
        return 0
    if s.kind == SRC_LIST:
        if i >= _list_size(s.obj):  # another thread shrank the list
            return -1
        o = _list_item(s.obj, i)
    elif s.kind == SRC_TUPLE:
        o = _tuple_item(s.obj, i)
    else:
        o = (<PyObject**>(s.buf + i * s.stride))[0]
    if o != NULL and _bytes_check(o):
        ptr[0] = <const unsigned char*>_bytes_ptr(o)
        length[0] = _bytes_len(o)
        return 0
    if o == _none:
        ptr[0] = NULL
        length[0] = -1
        return 0
    return -1


cdef inline int read_item(Source* s, Py_ssize_t i, const unsigned char** ptr, Py_ssize_t* length) except -1:
    """peek_item that raises the error naming the argument and index."""
    if peek_item(s, i, ptr, length) < 0:
        return item_error(s, i)
    return 0
