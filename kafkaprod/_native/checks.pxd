# The argument checks of a record, shared by send() (its compiled fast path and its Python path) and send_batch(),
# so that the same bad argument gets the same named error on every path.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from libc.stdint cimport int64_t

# timestamp_ms: None -> now (ms since the epoch); else an int in [0, 2**63-1], TypeError/ValueError otherwise.
cdef int64_t timestamp_of(object timestamp_ms) except? -1
# partition: None -> -1 (the partitioner chooses); else an int in [0, 2**31-1], TypeError/ValueError otherwise.
cdef int partition_of(object partition) except? -2
# ValueError unless 0 <= partition < num_partitions, naming the topic and its partition count.
cdef int check_in_range(int partition, str topic, int num_partitions) except -1
# TypeError unless callback is None or callable.
cdef int check_callback(object callback) except -1


# Points ptr/length at the bytes of a key, value or header value without copying (NULL/-1 for None). Returns 1
# when a buffer view was exported and must be released with PyBuffer_Release; raises TypeError naming `what`
# for anything that is not bytes-like and contiguous.
cdef int buffer_view(object obj, Py_buffer* view, const unsigned char** ptr, Py_ssize_t* length,
                     str what) except -1

cdef inline int bytes_view(object obj, Py_buffer* view, const unsigned char** ptr, Py_ssize_t* length,
                           str what) except -1:
    if obj is None:
        ptr[0] = NULL
        length[0] = -1
        return 0
    if PyBytes_CheckExact(obj):
        ptr[0] = <const unsigned char*>PyBytes_AS_STRING(obj)
        length[0] = PyBytes_GET_SIZE(obj)
        return 0
    return buffer_view(obj, view, ptr, length, what)
