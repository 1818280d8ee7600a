# C-level interface of the producer's buffer pool, for the accumulator to take and return batch buffers without
# Python calls.
cimport cython
from cpython.object cimport PyObject
from cpython.pythread cimport PyThread_type_lock
from libc.stdint cimport int64_t


@cython.final
@cython.auto_pickle(False)
cdef class _Waiter:
    # A thread blocked in allocate(): it sleeps on its own lock, which the pool releases to wake it.
    cdef PyThread_type_lock sem
    cdef bint signaled
    cdef void signal(self) noexcept


@cython.final
@cython.auto_pickle(False)
cdef class BufferPool:
    cdef Py_ssize_t _total
    cdef Py_ssize_t _poolable
    cdef Py_ssize_t _unallocated
    cdef PyObject** _free_bufs
    cdef Py_ssize_t _free_count
    cdef Py_ssize_t _free_cap
    cdef list _waiters
    cdef bint _closed
    cdef int64_t _wait_ns_total
    cdef int64_t _blocked_allocations

    # A buffer of `size` bytes: a pooled one when size is the poolable size and one is free, else a new
    # bytearray carved from unallocated memory; blocks (GIL released) up to max_block_ms for memory, in FIFO
    # order. Raises RecordTooLargeError, BufferExhaustedError or ProducerClosedError.
    cdef bytearray allocate_raw(self, Py_ssize_t size, int64_t max_block_ms)
    # A buffer of `size` bytes when that much is free now and nobody is waiting, else None (never blocks): for
    # growing a batch, which may instead close it and start another.
    cdef object try_allocate_raw(self, Py_ssize_t size)
    # Returns a buffer: poolable-size bytearrays go back to the free list, other sizes back to unallocated
    # memory. size < 0 means len(buf).
    cdef int deallocate_raw(self, object buf, Py_ssize_t size) except -1

    cdef bytearray _allocate_blocking(self, Py_ssize_t size, int64_t max_block_ms)
    cdef bytearray _free_pop(self)
    cdef void _free_push(self, bytearray buf) noexcept
    cdef object _take_if_available(self, Py_ssize_t size)
    cdef bytearray _new_buffer(self, Py_ssize_t size)
    cdef void _free_up(self, Py_ssize_t size) noexcept
    cdef void _signal_head_if_memory(self) noexcept


# Bytes that can be handed out without waiting (BufferPool.available_memory), read without the pool's lock: a
# hint for a caller that must not block, which only another allocation can make stale.
cdef inline Py_ssize_t available_hint(BufferPool pool) noexcept:
    return pool._unallocated + pool._free_count * pool._poolable
