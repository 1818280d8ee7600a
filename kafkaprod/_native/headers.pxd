# C-level interface of record headers (headers.pyx), for the record builder and the send_batch() engine.

# headers (any iterable) as a sequence whose items can be read by index (PySequence_Fast).
cdef object headers_fast(object headers)
# Bytes of the headers part of a record (count varint included); validates every header of `fast`.
cdef Py_ssize_t headers_part_size(object fast) except -1
# Writes the headers part of `fast` at p (at most up to end); returns the position after it.
cdef unsigned char* write_headers(unsigned char* p, unsigned char* end, object fast) except NULL
# headers as a list, after the checks the encoder makes.
cdef list validated_headers(object headers)
# The headers part of a record (count varint and entries) encoded once, for append_bulk; b"\x00" for none.
cpdef bytes encode_headers(object headers)
