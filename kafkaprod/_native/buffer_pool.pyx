# cython: language_level=3
"""The producer's buffer pool (Java's BufferPool): bounds the memory that batches take to ``buffer_memory``.

Buffers of the poolable size (the batch size) are kept on a free list and reused, so steady-state batching
allocates nothing. Other sizes are carved from the unallocated memory and returned to it. A caller that finds
too little memory blocks, in arrival order, for up to ``max_block_ms``.

The pool's state is guarded by a Cython critical section on the pool: a per-object mutex on free-threaded
Python, and on GIL builds the GIL itself, since the guarded code (C arithmetic and list operations) never
releases it. That keeps the fast path at a few nanoseconds; a PyThread lock costs ~50 ns per acquire/release
pair, more than everything else allocate() does. No guarded section blocks or runs Python code that could
re-enter the pool. Each blocked thread sleeps, with the GIL released, on a lock of its own that the pool
releases to wake it; only the head of the queue takes memory, accumulating it as it frees up, so a large
request is not starved by a stream of small ones.
"""
cimport cython
from cpython.bytearray cimport PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from cpython.pythread cimport (
    NOWAIT_LOCK, PY_LOCK_ACQUIRED, PY_LOCK_FAILURE, PY_LOCK_INTR, WAIT_LOCK, PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock, PyThread_release_lock, PyThread_type_lock,
)
from cpython.time cimport monotonic_ns
from libc.stdint cimport INT64_MAX, int64_t

from kafkaprod.errors import BufferExhaustedError, ProducerClosedError, RecordTooLargeError

cdef extern from "pythread.h":
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds, int intr_flag) nogil

# The longest single sleep; a longer max_block_ms just loops. Keeps the microsecond count far from the
# platform's PY_TIMEOUT_MAX.
cdef long long _MAX_SLEEP_US = 3600LL * 1000000LL
# Longer waits than this (about 290 years) are treated as forever.
cdef int64_t _MAX_MS = INT64_MAX // 1000000


cdef int64_t _to_ms(object max_block_ms) except? -1:
    """max_block_ms (int or float milliseconds) as int64, clamping absurdly long waits."""
    if type(max_block_ms) is int:
        if max_block_ms < 0:
            raise ValueError(f"max_block_ms must be 0 or more, got {max_block_ms}")
        return max_block_ms if max_block_ms < _MAX_MS else _MAX_MS
    if not isinstance(max_block_ms, (int, float)) or isinstance(max_block_ms, bool):
        raise TypeError(f"max_block_ms must be a number of milliseconds, not {type(max_block_ms).__name__}")
    if not max_block_ms >= 0:  # also rejects NaN
        raise ValueError(f"max_block_ms must be 0 or more, got {max_block_ms}")
    return <int64_t>max_block_ms if max_block_ms < _MAX_MS else _MAX_MS


def _bench_allocate_deallocate(BufferPool pool, Py_ssize_t size, Py_ssize_t n):
    """Runs n allocate/deallocate pairs through the C-level entry points (for bench/: the cost the accumulator
    pays, without Python call overhead)."""
    cdef Py_ssize_t i
    cdef bytearray buf
    for i in range(n):
        buf = pool.allocate_raw(size, 0)
        pool.deallocate_raw(buf, size)


@cython.final
@cython.auto_pickle(False)
cdef class _Waiter:
    def __cinit__(self):
        self.sem = PyThread_allocate_lock()
        if self.sem == NULL:
            raise MemoryError("could not allocate a lock for a buffer-pool waiter")
        # Held while no wake-up is pending: the waiting thread blocks acquiring it, signal() releases it.
        PyThread_acquire_lock(self.sem, WAIT_LOCK)
        self.signaled = False

    def __dealloc__(self):
        if self.sem != NULL:
            PyThread_free_lock(self.sem)
            self.sem = NULL

    cdef void signal(self) noexcept:
        # Called with the pool lock held; `signaled` keeps the lock from being released twice.
        if not self.signaled:
            self.signaled = True
            PyThread_release_lock(self.sem)


@cython.final
@cython.auto_pickle(False)
cdef class BufferPool:
    """BufferPool(total_memory, poolable_size): at most total_memory bytes of batch buffers, with buffers of
    poolable_size bytes reused through a free list. Safe to use from caller threads and the Sender at once."""

    def __init__(self, total_memory, poolable_size):
        if not isinstance(total_memory, int) or total_memory <= 0:
            raise ValueError(f"total_memory (buffer_memory) must be a positive int, got {total_memory!r}")
        if not isinstance(poolable_size, int) or poolable_size <= 0:
            raise ValueError(f"poolable_size (batch_size) must be a positive int, got {poolable_size!r}")
        if poolable_size > total_memory:
            raise ValueError(
                f"poolable_size (batch_size) {poolable_size} is larger than total_memory (buffer_memory) "
                f"{total_memory}")
        self._total = total_memory
        self._poolable = poolable_size
        self._unallocated = total_memory
        # Pooled buffers never exceed total // poolable; a fixed C array avoids the list resizing that a
        # one-element Python list pays on every pop/append pair.
        self._free_cap = total_memory // poolable_size
        self._free_bufs = <PyObject**>PyMem_Calloc(self._free_cap, sizeof(PyObject*))
        if self._free_bufs == NULL:
            raise MemoryError("could not allocate the buffer pool's free list")
        self._free_count = 0
        self._waiters = []
        self._closed = False
        self._wait_ns_total = 0
        self._blocked_allocations = 0

    def __dealloc__(self):
        if self._free_bufs != NULL:
            while self._free_count > 0:
                self._free_count -= 1
                Py_XDECREF(self._free_bufs[self._free_count])
            PyMem_Free(self._free_bufs)
            self._free_bufs = NULL

    # ----- inside the pool's critical section: only C and list operations, which never release the GIL ------

    cdef void _free_up(self, Py_ssize_t size) noexcept:
        """Returns pooled buffers to unallocated memory until `size` bytes are unallocated (or none are left)."""
        while self._unallocated < size and self._free_count > 0:
            self._free_pop()
            self._unallocated += self._poolable

    cdef inline bytearray _free_pop(self):
        self._free_count -= 1
        cdef PyObject* p = self._free_bufs[self._free_count]
        self._free_bufs[self._free_count] = NULL
        buf = <bytearray>p  # takes a new reference...
        Py_DECREF(buf)      # ...replacing the one the array held
        return buf

    cdef inline void _free_push(self, bytearray buf) noexcept:
        Py_INCREF(buf)
        self._free_bufs[self._free_count] = <PyObject*>buf
        self._free_count += 1

    cdef object _take_if_available(self, Py_ssize_t size):
        """A pooled buffer, True if `size` bytes were reserved from unallocated memory, or None if too little
        memory is free now."""
        if size == self._poolable and self._free_count > 0:
            return self._free_pop()
        if self._unallocated + self._free_count * self._poolable >= size:
            self._free_up(size)
            self._unallocated -= size
            return True
        return None

    cdef void _signal_head_if_memory(self) noexcept:
        if len(self._waiters) > 0 and (self._unallocated > 0 or self._free_count > 0):
            (<_Waiter>self._waiters[0]).signal()

    # ----- allocation ----------------------------------------------------------------------------------------

    cdef bytearray _new_buffer(self, Py_ssize_t size):
        """A new buffer for memory already reserved; gives the memory back if the allocation fails."""
        try:
            return PyByteArray_FromStringAndSize(NULL, size)
        except MemoryError:
            with cython.critical_section(self):
                self._unallocated += size
                self._signal_head_if_memory()
            raise

    cdef bytearray allocate_raw(self, Py_ssize_t size, int64_t max_block_ms):
        cdef object got = None
        if size <= 0:
            raise ValueError(f"cannot allocate {size} bytes: size must be positive")
        if size > self._total:
            raise RecordTooLargeError(
                f"a batch of {size} bytes is larger than buffer_memory ({self._total} bytes), the total memory "
                f"the producer may use; raise buffer_memory or send smaller records")
        if max_block_ms < 0:
            raise ValueError(f"max_block_ms must be 0 or more, got {max_block_ms}")
        with cython.critical_section(self):
            # Newcomers queue behind threads already waiting, so that memory goes out in arrival order.
            if not self._closed and len(self._waiters) == 0:
                got = self._take_if_available(size)
        if got is None:
            return self._allocate_blocking(size, max_block_ms)
        if got is True:
            return self._new_buffer(size)
        return <bytearray>got

    cdef object try_allocate_raw(self, Py_ssize_t size):
        """A buffer of `size` bytes if the memory is free now, else None: never waits, never queues, and never takes
        memory that threads already waiting are owed."""
        cdef object got = None
        if size <= 0 or size > self._total:
            return None
        with cython.critical_section(self):
            if not self._closed and len(self._waiters) == 0:
                got = self._take_if_available(size)
        if got is None:
            return None
        if got is True:
            return self._new_buffer(size)
        return got

    cdef bytearray _allocate_blocking(self, Py_ssize_t size, int64_t max_block_ms):
        cdef _Waiter me = _Waiter()
        cdef bytearray buf = None
        cdef Py_ssize_t accumulated = 0, want, i, available = 0, queued = 0
        cdef int64_t now, t0, waited = 0, deadline
        cdef long long sleep_us = 0
        cdef int r = PY_LOCK_FAILURE
        cdef object got = None, error = None
        cdef bint enqueued = False, done = False

        now = monotonic_ns()
        deadline = INT64_MAX if max_block_ms > (INT64_MAX - now) // 1000000 else now + max_block_ms * 1000000
        with cython.critical_section(self):
            if self._closed:
                error = ProducerClosedError
            elif len(self._waiters) == 0:
                # Memory may have come back since the fast path looked.
                got = self._take_if_available(size)
            if error is None and got is None:
                self._waiters.append(me)
                self._blocked_allocations += 1
                enqueued = True
        if not enqueued:
            if error is not None:
                raise ProducerClosedError("the producer was closed; no more buffer memory is handed out")
            if got is True:
                return self._new_buffer(size)
            return <bytearray>got

        while True:
            with cython.critical_section(self):
                self._wait_ns_total += waited
                if r == PY_LOCK_ACQUIRED:
                    me.signaled = False
                elif me.signaled:
                    # Woken just as the sleep ended: consume the wake-up so the lock is held again.
                    PyThread_acquire_lock(me.sem, NOWAIT_LOCK)
                    me.signaled = False
                if error is not None:
                    pass
                elif self._closed:
                    error = ProducerClosedError
                else:
                    if self._waiters[0] is me:
                        if accumulated == 0 and size == self._poolable and self._free_count > 0:
                            buf = self._free_pop()
                            accumulated = size
                        else:
                            want = size - accumulated
                            self._free_up(want)
                            if want > self._unallocated:
                                want = self._unallocated
                            self._unallocated -= want
                            accumulated += want
                    if accumulated >= size:
                        # Served: leave the queue and pass leftover memory on to the next in line.
                        del self._waiters[0]
                        self._signal_head_if_memory()
                        done = True
                    else:
                        now = monotonic_ns()
                        if now >= deadline:
                            error = BufferExhaustedError
                        else:
                            sleep_us = (deadline - now + 999) // 1000
                            if sleep_us > _MAX_SLEEP_US:
                                sleep_us = _MAX_SLEEP_US
                if error is not None:
                    # Failed: leave the queue, give back what was gathered, let the next in line have it.
                    for i in range(len(self._waiters)):
                        if self._waiters[i] is me:
                            del self._waiters[i]
                            break
                    if buf is not None:
                        self._free_push(buf)
                        buf = None
                    else:
                        self._unallocated += accumulated
                    accumulated = 0
                    self._signal_head_if_memory()
                    available = self._unallocated + self._free_count * self._poolable
                    queued = len(self._waiters)
            if done or error is not None:
                break

            t0 = monotonic_ns()
            with nogil:
                r = PyThread_acquire_lock_timed(me.sem, sleep_us, 1)
            waited = monotonic_ns() - t0
            if r == PY_LOCK_INTR:
                # A signal arrived for the main thread: run its handler (KeyboardInterrupt, say) here.
                try:
                    PyErr_CheckSignals()
                except BaseException as exc:
                    error = exc

        if done:
            if buf is None:
                return self._new_buffer(size)
            return buf
        if error is BufferExhaustedError:
            raise BufferExhaustedError(
                f"could not allocate {size} bytes within max_block_ms={max_block_ms} ms: all of buffer_memory "
                f"({self._total} bytes) is in use ({available} bytes free, {queued} other threads waiting). "
                f"Records are produced faster than they can be sent; raise buffer_memory or max_block_ms, or "
                f"slow down")
        if error is ProducerClosedError:
            raise ProducerClosedError("the producer was closed while waiting for buffer memory")
        raise error

    cdef int deallocate_raw(self, object buf, Py_ssize_t size) except -1:
        cdef Py_ssize_t in_pool = 0
        cdef bint overflow = False
        if size < 0:
            size = len(buf)
        with cython.critical_section(self):
            in_pool = self._unallocated + self._free_count * self._poolable
            if in_pool + size > self._total:
                overflow = True
            else:
                if size == self._poolable and type(buf) is bytearray and PyByteArray_GET_SIZE(buf) == size:
                    self._free_push(buf)
                else:
                    self._unallocated += size
                if len(self._waiters) > 0:
                    (<_Waiter>self._waiters[0]).signal()
        if overflow:
            raise ValueError(
                f"returning {size} bytes would give the pool {in_pool + size} bytes, more than its total of "
                f"{self._total}: a buffer was returned twice or did not come from this pool")
        return 0

    # ----- Python API ----------------------------------------------------------------------------------------

    def allocate(self, Py_ssize_t size, max_block_ms) -> bytearray:
        """A buffer of `size` bytes (its contents are not zeroed), blocking up to max_block_ms for memory.

        Raises RecordTooLargeError if size exceeds the total memory, BufferExhaustedError when the wait times
        out, ProducerClosedError once the pool is closed.
        """
        return self.allocate_raw(size, _to_ms(max_block_ms))

    def deallocate(self, buf, size=None) -> None:
        """Returns a buffer from allocate(); size defaults to len(buf)."""
        self.deallocate_raw(buf, -1 if size is None else <Py_ssize_t>size)

    def close(self) -> None:
        """Wakes every blocked allocate() with ProducerClosedError; later allocations raise it too. Buffers
        can still be returned."""
        cdef _Waiter w
        with cython.critical_section(self):
            self._closed = True
            for w in self._waiters:
                w.signal()

    @property
    def total_memory(self) -> int:
        return self._total

    @property
    def poolable_size(self) -> int:
        return self._poolable

    @property
    def available_memory(self) -> int:
        """Bytes that can be handed out without waiting: the free list plus unallocated memory."""
        cdef Py_ssize_t n
        with cython.critical_section(self):
            n = self._unallocated + self._free_count * self._poolable
        return n

    @property
    def unallocated_memory(self) -> int:
        return self._unallocated

    @property
    def free_list_size(self) -> int:
        """Number of pooled buffers on the free list."""
        return self._free_count

    @property
    def queued(self) -> int:
        """Number of threads blocked waiting for memory."""
        return len(self._waiters)

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def wait_time_ns_total(self) -> int:
        """Total time threads have spent blocked waiting for memory (the bufferpool-wait-time metric)."""
        return self._wait_ns_total

    @property
    def blocked_allocations(self) -> int:
        """Number of allocations that had to wait."""
        return self._blocked_allocations

    def __repr__(self) -> str:
        return (f"<BufferPool total={self._total} poolable={self._poolable} "
                f"available={self.available_memory} queued={self.queued}>")
