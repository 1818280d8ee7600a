# The argument checks of a record, shared by send() (its compiled fast path and its Python path) and send_batch(),
# so that the same bad argument gets the same named error on every path.
from libc.stdint cimport int64_t

# timestamp_ms: None -> now (ms since the epoch); else an int in [0, 2**63-1], TypeError/ValueError otherwise.
cdef int64_t timestamp_of(object timestamp_ms) except? -1
# partition: None -> -1 (the partitioner chooses); else an int in [0, 2**31-1], TypeError/ValueError otherwise.
cdef int partition_of(object partition) except? -2
# ValueError unless 0 <= partition < num_partitions, naming the topic and its partition count.
cdef int check_in_range(int partition, str topic, int num_partitions) except -1
# TypeError unless callback is None or callable.
cdef int check_callback(object callback) except -1
