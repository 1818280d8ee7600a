# C-level interface of RecordMetadata, for the futures that make one per record they complete.
cimport cython
from libc.stdint cimport int64_t


@cython.final
cdef class RecordMetadata:
    cdef readonly str topic
    cdef readonly int partition
    cdef readonly int64_t offset
    cdef readonly int64_t timestamp
    cdef readonly int serialized_key_size
    cdef readonly int serialized_value_size

    cdef tuple as_tuple(self)


# A RecordMetadata without going through __init__'s argument parsing.
cdef RecordMetadata make_metadata(str topic, int partition, int64_t offset, int64_t timestamp, int key_size,
                                  int value_size)
