# C-level interface of the accumulator's per-partition and per-topic state, read and written directly by
# accumulator.pyx and bulk.pyx.
cimport cython

from kafkaprod._native.batch cimport ProducerBatch

cdef enum:
    # PartitionState.txn_state
    TXN_NONE = 0
    TXN_PENDING = 1
    TXN_ADDED = 2


@cython.final
cdef class PartitionState:
    # One partition as the accumulator sees it.
    cdef readonly str topic
    cdef readonly int partition
    cdef object queue                    # deque of ProducerBatch: to be drained, in sequence order
    cdef ProducerBatch open_batch        # the batch appends go to; None when there is none
    cdef int leader                      # broker id, -1 while unknown
    # Batches drained and not yet answered, in drain order: a later (or renumbered) batch of the partition must
    # not overtake them, and with idempotence none goes to another broker while they are out.
    cdef list in_flight
    # With idempotence, the partition has one batch in flight at a time (RecordAccumulator._held): set when its
    # traffic resumes after a pause longer than linger and when a batch of it comes back with an error (a retry, or
    # the halves of a split); cleared when a batch it sent alone succeeds with only never-sent batches behind it,
    # retry_backoff_max after its last error.
    cdef bint serial
    cdef double last_error               # monotonic seconds of the last error answer for one of its batches
    cdef double idle_since               # since when nothing of it is queued or in flight; -1 while something is
    # Idempotence (the Java client's per-partition sequence state, kept beside the queue it numbers):
    cdef int next_sequence
    cdef tuple seq_owner                 # (producer id, epoch) the numbering belongs to
    cdef bint restart                    # renumber from 0 (a gap, or state the broker lost)
    # Transactions: TXN_NONE until ready() asks for the partition to be added to the open transaction,
    # TXN_PENDING until AddPartitionsToTxn succeeds for it, then TXN_ADDED; only an added partition drains.
    cdef int txn_state
    # Whether it is on the accumulator's list of partitions with queued batches (RecordAccumulator.active), the
    # only partitions the Sender's loop visits.
    cdef bint active
    # Bytes of buffer its next batch starts with: about what its last drained batch held (a power of two, at
    # most batch_size), so that a partition with a few records per batch does not hold batch_size bytes of
    # buffer_memory for each; a batch that outgrows its buffer moves to a larger one (RecordAccumulator.grow).
    cdef Py_ssize_t alloc_hint

    cdef void insert_for_retry(self, ProducerBatch batch)
    cdef void release(self, ProducerBatch batch)


@cython.final
cdef class TopicState:
    # A topic's partitions and its uniform sticky partitioner state (KIP-794).
    cdef readonly str topic
    cdef readonly int num_partitions
    cdef list partitions                 # PartitionState per partition
    cdef list available                  # partitions with a leader
    cdef int sticky_partition
    cdef Py_ssize_t sticky_bytes

    cdef void resize(self, int n)
    cdef int next_sticky(self, int current)
    # The sticky partition for a keyless record of these sizes, moving on after about batch_size bytes.
    cdef int sticky_for(self, Py_ssize_t klen, Py_ssize_t vlen, int batch_size)
