# cython: language_level=3
"""Per-batch results and per-record futures (the seed's ProduceRequestResult and FutureRecordMetadata).

A batch owns one ProduceRequestResult: one latch for all its records. A record's future is a small object that
points at that result plus its offset inside the batch, so completing a batch costs one latch release, and
per-record work happens only for futures that someone attached a callback to. A send_batch() call gets one
BatchFuture for all its records, which keeps where each record went in C arrays and counts down the results of
the batches it touched.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t

import logging
import threading
import time

from collections.abc import Sequence as _Sequence

from kafkaprod.errors import BatchSendError, KafkaTimeoutError
from kafkaprod.record_metadata import RecordMetadata

log = logging.getLogger("kafkaprod")

cdef object _Event = threading.Event

# Callback kinds; one list per future keeps the order in which they were attached.
cdef enum:
    CB_SEND = 0        # callback(metadata, exception), as Java's onCompletion
    CB_SUCCESS = 1     # fn(metadata, *args, **kwargs), kafka-python's add_callback
    CB_ERROR = 2       # fn(exception, *args, **kwargs), kafka-python's add_errback
    CB_DONE = 3        # fn(future), concurrent.futures' add_done_callback


@cython.final
cdef class ProduceRequestResult:
    """The outcome of one batch: base offset, log-append time or error, and the latch its futures wait on."""

    def __cinit__(self, str topic, int partition):
        self.topic = topic
        self.partition = partition
        self.base_offset = -1
        self.log_append_time = -1
        self.error = None
        self._event = None
        self._listeners = None
        self._children = None
        self._done = False

    cpdef bint done(self):
        return self._done

    cdef void add_listener(self, FutureRecordMetadata future):
        self._listen(future)

    cdef void add_batch_listener(self, BatchFuture future):
        self._listen(future)

    cdef void _listen(self, object future):
        # No thread switch may fall between the _done check and the append, so that a completion on the Sender
        # thread either sees this listener or the caller sees _done and fires it itself. Making a list can run
        # the garbage collector (and through it other threads), so the list is made before the check.
        cdef list fresh = None
        if self._listeners is None:
            fresh = [future]
        if self._done:
            _notify(future, self)
            return
        if self._listeners is None:
            self._listeners = fresh if fresh is not None else [future]
        else:
            self._listeners.append(future)

    cpdef bint wait(self, object timeout=None):
        """Blocks until completed (or split); returns False on timeout."""
        if self._done:
            return True
        ev = self._event
        if ev is None:
            ev = _Event()
            if self._event is None:
                self._event = ev
            ev = self._event
        if self._done:  # completed while the event was being made: the completer may not have seen it
            return True
        return ev.wait(timeout)

    cpdef complete(self, int64_t base_offset, int64_t log_append_time, object error):
        """Completes the batch once: releases waiters and fires the futures that have callbacks."""
        if self._done:
            return
        self.base_offset = base_offset
        self.log_append_time = log_append_time
        self.error = error
        self._release()

    cpdef split(self, list children):
        """Completes this result by handing its records over to smaller batches.

        children: (first_relative_offset, ProduceRequestResult) in ascending order; a record of relative offset r
        now belongs to the last child whose first offset is <= r, at offset r - first there.
        """
        if self._done:
            return
        self._children = children
        self._release()

    cdef void _release(self):
        self._done = True
        ev = self._event
        if ev is not None:
            ev.set()
        listeners = self._listeners
        self._listeners = None
        if listeners is not None:
            for fut in listeners:
                _notify(fut, self)


cdef inline void _notify(object listener, ProduceRequestResult result):
    # A result's listeners are record futures with callbacks and bulk futures counting down their batches.
    if type(listener) is FutureRecordMetadata:
        (<FutureRecordMetadata>listener)._fire()
    else:
        (<BatchFuture>listener)._on_result(result)


@cython.final
@cython.freelist(256)
cdef class FutureRecordMetadata:
    """The future send() returns: resolves to RecordMetadata, or raises the record's error."""

    def __init__(self):
        raise TypeError("FutureRecordMetadata objects are made by the producer, not by users")

    @staticmethod
    cdef FutureRecordMetadata create(ProduceRequestResult result, int relative_offset, int64_t timestamp,
                                     int key_size, int value_size):
        cdef FutureRecordMetadata f = FutureRecordMetadata.__new__(FutureRecordMetadata)
        f._result = result
        f._relative_offset = relative_offset
        f._timestamp = timestamp
        f._key_size = key_size
        f._value_size = value_size
        f._callbacks = None
        return f

    cdef ProduceRequestResult _final_result(self):
        """Follows splits to the result that really holds this record (None while that is unknown)."""
        cdef ProduceRequestResult r = self._result
        while r._done and r._children is not None:
            self._rebase()
            r = self._result
        return r

    cdef void _rebase(self):
        cdef ProduceRequestResult r = self._result
        cdef int first = 0
        cdef ProduceRequestResult child = None
        for start, c in r._children:
            if <int>start <= self._relative_offset:
                first = start
                child = c
        self._result = child
        self._relative_offset -= first

    def done(self) -> bool:
        cdef ProduceRequestResult r = self._final_result()
        return r._done

    cdef bint _wait(self, object timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        cdef ProduceRequestResult r
        while True:
            r = self._result
            if not r.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
            if r._children is None:
                return True
            self._rebase()

    cdef object _metadata(self):
        cdef ProduceRequestResult r = self._result
        cdef int64_t offset = -1
        if r.base_offset >= 0:
            offset = r.base_offset + self._relative_offset
        ts = r.log_append_time if r.log_append_time >= 0 else self._timestamp
        return RecordMetadata(r.topic, r.partition, offset, ts, self._key_size, self._value_size)

    def get(self, timeout=None):
        """The record's RecordMetadata; raises its error, or KafkaTimeoutError if not done within timeout s."""
        if not self._wait(timeout):
            raise KafkaTimeoutError(f"record not acknowledged within {timeout} s")
        if self._result.error is not None:
            raise self._result.error
        return self._metadata()

    def result(self, timeout=None):
        """concurrent.futures spelling of get()."""
        return self.get(timeout)

    def exception(self, timeout=None):
        """The record's error, or None if it succeeded; KafkaTimeoutError if not done within timeout s."""
        if not self._wait(timeout):
            raise KafkaTimeoutError(f"record not acknowledged within {timeout} s")
        return self._result.error

    def succeeded(self) -> bool:
        r = self._final_result()
        return r._done and r.error is None

    def failed(self) -> bool:
        r = self._final_result()
        return r._done and r.error is not None

    @property
    def is_done(self) -> bool:
        return self._final_result()._done

    cdef void _attach(self, int kind, object fn, tuple args, dict kwargs):
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {fn!r}")
        entry = (kind, fn, args, kwargs)
        first = self._callbacks is None
        if first:
            self._callbacks = [entry]
        else:
            self._callbacks.append(entry)
        cdef ProduceRequestResult r = self._final_result()
        if r._done:
            self._run(entry)
        elif first:
            r.add_listener(self)

    def add_callback(self, fn, *args, **kwargs):
        """fn(metadata, *args, **kwargs) when the record succeeds (runs now if it already has)."""
        self._attach(CB_SUCCESS, fn, args, kwargs)
        return self

    def add_errback(self, fn, *args, **kwargs):
        """fn(exception, *args, **kwargs) when the record fails (runs now if it already has)."""
        self._attach(CB_ERROR, fn, args, kwargs)
        return self

    def add_both(self, fn, *args, **kwargs):
        self._attach(CB_SUCCESS, fn, args, kwargs)
        self._attach(CB_ERROR, fn, args, kwargs)
        return self

    def add_done_callback(self, fn):
        """fn(future) when the record completes either way, as concurrent.futures.Future."""
        self._attach(CB_DONE, fn, (), None)

    cdef void set_send_callback(self, object callback):
        """The send(callback=...) hook: registered before the batch can complete, so no race to handle."""
        self._callbacks = [(CB_SEND, callback, None, None)]
        self._result.add_listener(self)

    cdef void _fire(self):
        cdef ProduceRequestResult r = self._result
        if r._children is not None:
            # The batch was split: follow this record to its new batch and wait there.
            self._rebase()
            self._result.add_listener(self)
            return
        callbacks = self._callbacks
        self._callbacks = None
        if callbacks is not None:
            for entry in callbacks:
                self._run(entry)

    cdef void _run(self, tuple entry):
        kind, fn, args, kwargs = entry
        error = self._result.error
        try:
            if kind == CB_SEND:
                if error is None:
                    fn(self._metadata(), None)
                else:
                    fn(None, error)
            elif kind == CB_SUCCESS:
                if error is None:
                    fn(self._metadata(), *args, **(kwargs or {}))
            elif kind == CB_ERROR:
                if error is not None:
                    fn(error, *args, **(kwargs or {}))
            else:
                fn(self)
        except Exception:
            # As the Java client: a failing user callback is logged and must not break delivery of others.
            log.exception("a record callback raised; continuing")

    def __repr__(self):
        r = self._final_result()
        state = "pending" if not r._done else ("error" if r.error is not None else "done")
        return f"<FutureRecordMetadata {r.topic}[{r.partition}]+{self._relative_offset} {state}>"


# ---------------------------------------------------------------------------------------------------------
# The future of one send_batch() call.

cdef extern from *:
    """
    #define KP_INT32_MAX 2147483647
    """
    int KP_INT32_MAX


@cython.final
cdef class BatchFuture:
    """The one future a ``send_batch()`` call returns for all its records.

    It holds no object per record: record i is found through C arrays of runs -- consecutive records that went
    into one batch at consecutive offsets (start index, offset in the batch, which batch) -- and the distinct
    batches' results. It completes when every batch it touched has (following batches that were split), and
    builds a record's RecordMetadata only when asked for it.
    """

    def __init__(self):
        raise TypeError("BatchFuture objects are made by the producer, not by users")

    def __dealloc__(self):
        PyMem_Free(self._run_start)
        PyMem_Free(self._run_rel)
        PyMem_Free(self._run_res)
        PyMem_Free(self._key_sizes)
        PyMem_Free(self._value_sizes)
        PyMem_Free(self._part_res)
        PyMem_Free(self._part_idx)

    @staticmethod
    cdef BatchFuture create(str topic, Py_ssize_t n, int64_t timestamp, int num_partitions):
        cdef BatchFuture f = BatchFuture.__new__(BatchFuture)
        cdef int p
        f.topic = topic
        f._n = n
        f._timestamp = timestamp
        f._key_size = -1
        f._value_size = -1
        f._results = []
        f._failed = -1
        f._first_failed = -1
        f._num_partitions = num_partitions
        if num_partitions > 0:
            f._part_res = <PyObject**>PyMem_Malloc(num_partitions * sizeof(PyObject*))
            f._part_idx = <int32_t*>PyMem_Malloc(num_partitions * sizeof(int32_t))
            if f._part_res == NULL or f._part_idx == NULL:
                raise MemoryError()
            for p in range(num_partitions):
                f._part_res[p] = NULL
                f._part_idx[p] = -1
        return f

    cdef int32_t* sizes_array(self, bint keys) except NULL:
        """Per-record key (or value) sizes, for calls whose sizes differ; the caller fills all n of them."""
        cdef int32_t* a = <int32_t*>PyMem_Malloc((self._n if self._n > 0 else 1) * sizeof(int32_t))
        if a == NULL:
            raise MemoryError()
        if keys:
            PyMem_Free(self._key_sizes)
            self._key_sizes = a
        else:
            PyMem_Free(self._value_sizes)
            self._value_sizes = a
        return a

    cdef int _grow_runs(self) except -1:
        cdef Py_ssize_t cap = self._runs_cap * 2 if self._runs_cap else 64
        cdef Py_ssize_t* s = <Py_ssize_t*>PyMem_Realloc(self._run_start, cap * sizeof(Py_ssize_t))
        if s == NULL:
            raise MemoryError()
        self._run_start = s
        cdef int32_t* r = <int32_t*>PyMem_Realloc(self._run_rel, cap * sizeof(int32_t))
        if r == NULL:
            raise MemoryError()
        self._run_rel = r
        r = <int32_t*>PyMem_Realloc(self._run_res, cap * sizeof(int32_t))
        if r == NULL:
            raise MemoryError()
        self._run_res = r
        self._runs_cap = cap
        return 0

    cdef int add_record(self, int partition, ProduceRequestResult result, int32_t rel) except -1:
        """Record number `count` (records arrive in index order) went to `result` at offset `rel`."""
        cdef int32_t idx
        cdef Py_ssize_t k = self._nruns - 1, i = self._count
        if self._part_res[partition] == <PyObject*>result:
            idx = self._part_idx[partition]
        else:
            # A partition's open batch only ever changes to a new one, so a result seen before on this partition
            # is always the last one there: one pointer compare per record finds it.
            idx = <int32_t>len(self._results)
            self._results.append(result)
            self._part_res[partition] = <PyObject*>result
            self._part_idx[partition] = idx
        if k < 0 or self._run_res[k] != idx or self._run_rel[k] + (i - self._run_start[k]) != rel:
            if self._nruns == self._runs_cap:
                self._grow_runs()
            k = self._nruns
            self._run_start[k] = i
            self._run_rel[k] = rel
            self._run_res[k] = idx
            self._nruns = k + 1
        self._count = i + 1
        return 0

    cdef int arm(self) except -1:
        """All records are in (or the call stopped early: then only the first `count` are this future's);
        starts listening for the batches' completion."""
        cdef ProduceRequestResult r
        PyMem_Free(self._part_res)
        PyMem_Free(self._part_idx)
        self._part_res = NULL
        self._part_idx = NULL
        self._n = self._count
        # Every result is counted before the first listener goes in, so that a batch completing meanwhile cannot
        # bring the count to zero early.
        self._pending = len(self._results)
        if self._pending == 0:
            self._complete()
            return 0
        for r in list(self._results):
            r.add_batch_listener(self)
        return 0

    cdef void _on_result(self, ProduceRequestResult r):
        cdef list children = r._children
        if children is not None:
            # The batch was split: its records moved to the halves, which this future now waits for instead.
            # Halves holding none of this future's records are waited for too; they complete all the same.
            self._pending += len(children)
            for _start, child in children:
                (<ProduceRequestResult>child).add_batch_listener(self)
        elif r.error is not None:
            self._any_failed = True
        self._pending -= 1
        if self._pending == 0:
            self._complete()

    cdef void _complete(self):
        self._done = True
        ev = self._event
        if ev is not None:
            ev.set()
        callbacks = self._callbacks
        self._callbacks = None
        if callbacks is not None:
            for fn in callbacks:
                self._run_callback(fn)

    cdef void _run_callback(self, object fn):
        try:
            fn(self)
        except Exception:
            log.exception("a send_batch done-callback raised; continuing")

    # ---- waiting -----------------------------------------------------------------------------------------
    cdef bint _wait(self, object timeout):
        if self._done:
            return True
        ev = self._event
        if ev is None:
            ev = _Event()
            if self._event is None:
                self._event = ev
            ev = self._event
        if self._done:  # completed while the event was being made: the completer may not have seen it
            return True
        return ev.wait(timeout)

    cdef int _find_run(self, Py_ssize_t i) noexcept:
        cdef int lo = 0, hi = <int>self._nruns - 1, mid
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if self._run_start[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        return lo

    cdef ProduceRequestResult _locate(self, Py_ssize_t i, int32_t* rel):
        """The result that holds record i now (following splits) and its offset there."""
        cdef int k = self._find_run(i)
        cdef ProduceRequestResult r = <ProduceRequestResult>self._results[self._run_res[k]]
        cdef int32_t off = self._run_rel[k] + <int32_t>(i - self._run_start[k])
        cdef int32_t first
        cdef ProduceRequestResult child
        while r._done and r._children is not None:
            first = 0
            child = None
            for start, c in r._children:
                if <int32_t>start <= off:
                    first = start
                    child = c
            r = child
            off -= first
        rel[0] = off
        return r

    cdef object record_metadata(self, Py_ssize_t i):
        cdef int32_t rel
        cdef ProduceRequestResult r = self._locate(i, &rel)
        cdef int64_t offset = r.base_offset + rel if r.base_offset >= 0 else -1
        cdef int64_t ts = r.log_append_time if r.log_append_time >= 0 else self._timestamp
        ks = self._key_sizes[i] if self._key_sizes != NULL else self._key_size
        vs = self._value_sizes[i] if self._value_sizes != NULL else self._value_size
        return RecordMetadata(r.topic, r.partition, offset, ts, ks, vs)

    # ---- failures ----------------------------------------------------------------------------------------
    cdef int _walk(self, ProduceRequestResult r, int32_t lo, int32_t hi, Py_ssize_t first_index, list out) except -1:
        # Records at offsets [lo, hi) of r are this future's records first_index, first_index + 1, ...; runs and
        # split halves are visited in offset order, so the first failure met is the lowest-indexed one.
        cdef list children = r._children
        cdef Py_ssize_t j, nc
        cdef int32_t start, end, a, b
        if children is None:
            if r.error is not None:
                self._failed += hi - lo
                if self._first_error is None:
                    self._first_error = r.error
                    self._first_failed = first_index
                if out is not None:
                    out.extend(range(first_index, first_index + (hi - lo)))
            return 0
        nc = len(children)
        for j in range(nc):
            start = children[j][0]
            end = children[j + 1][0] if j + 1 < nc else KP_INT32_MAX
            a = lo if lo > start else start
            b = hi if hi < end else end
            if a < b:
                self._walk(<ProduceRequestResult>children[j][1], a - start, b - start, first_index + (a - lo), out)
        return 0

    cdef list _scan_failures(self, bint want_indices):
        cdef list out = [] if want_indices else None
        cdef Py_ssize_t k, end
        self._failed = 0
        self._first_error = None
        self._first_failed = -1
        if self._any_failed:
            for k in range(self._nruns):
                end = self._run_start[k + 1] if k + 1 < self._nruns else self._n
                self._walk(<ProduceRequestResult>self._results[self._run_res[k]], self._run_rel[k],
                           self._run_rel[k] + <int32_t>(end - self._run_start[k]), self._run_start[k], out)
        return out

    cdef object _error_of(self):
        """None if every record succeeded; else what get() raises (made once, then the same object)."""
        if not self._any_failed:
            return None
        if self._error is None:
            self._scan_failures(False)
            if self._failed == self._n:
                self._error = self._first_error
            elif self._failed > 0:
                err = BatchSendError(self._failed, self._n, self._first_error, self._first_failed)
                err.__cause__ = self._first_error
                self._error = err
        return self._error

    # ---- Python API ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def done(self) -> bool:
        """Whether every record of the call is complete (succeeded or failed)."""
        return self._done

    def get(self, timeout=None):
        """Per-record RecordMetadata once every record is acknowledged: a lazy sequence of len(self) items.

        Raises KafkaTimeoutError if not done within timeout seconds; if records failed, the error of the first
        failed record when all failed, else BatchSendError naming how many failed.
        """
        if not self._wait(timeout):
            raise KafkaTimeoutError(f"{self._n} records not all acknowledged within {timeout} s")
        err = self._error_of()
        if err is not None:
            raise err
        return BatchMetadata._make(self)

    def result(self, timeout=None):
        """concurrent.futures spelling of get()."""
        return self.get(timeout)

    def exception(self, timeout=None):
        """What get() would raise (None if every record succeeded); KafkaTimeoutError if not done in time."""
        if not self._wait(timeout):
            raise KafkaTimeoutError(f"{self._n} records not all acknowledged within {timeout} s")
        return self._error_of()

    def failed_indices(self, timeout=None) -> list:
        """Indices (into the call's values) of the records that failed, ascending; [] if none did."""
        if not self._wait(timeout):
            raise KafkaTimeoutError(f"{self._n} records not all acknowledged within {timeout} s")
        if not self._any_failed:
            return []
        return self._scan_failures(True)

    def add_done_callback(self, fn):
        """fn(batch_future) once every record is complete; runs at once if they are. Runs on the producer's I/O
        thread otherwise: keep it quick."""
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {fn!r}")
        if self._done:
            self._run_callback(fn)
            return
        if self._callbacks is None:
            self._callbacks = [fn]
        else:
            self._callbacks.append(fn)
        if self._done and self._callbacks is not None:  # completed while the list was being made
            callbacks = self._callbacks
            self._callbacks = None
            for cb in callbacks:
                self._run_callback(cb)

    def record_outcome(self, Py_ssize_t index):
        """(RecordMetadata, None) or (None, error) for record `index` of a completed call."""
        cdef int32_t rel
        cdef ProduceRequestResult r
        if index < 0:
            index += self._n
        if index < 0 or index >= self._n:
            raise IndexError(f"record index {index} out of range for a batch of {self._n} records")
        if not self._done:
            raise RuntimeError("record_outcome() needs a completed BatchFuture; wait with get() or exception()")
        r = self._locate(index, &rel)
        if r.error is not None:
            return None, r.error
        return self.record_metadata(index), None

    @property
    def batch_count(self) -> int:
        """Batches the call's records went into (before any split)."""
        return len(self._results)

    def __repr__(self):
        state = "pending" if not self._done else ("error" if self._any_failed else "done")
        return f"<BatchFuture {self.topic} records={self._n} batches={len(self._results)} {state}>"


@cython.final
cdef class BatchMetadata:
    """The RecordMetadata of a send_batch() call's records, item i for values[i], built on access."""

    def __init__(self):
        raise TypeError("BatchMetadata objects come from BatchFuture.get()")

    @staticmethod
    cdef BatchMetadata _make(BatchFuture future):
        cdef BatchMetadata m = BatchMetadata.__new__(BatchMetadata)
        m._future = future
        return m

    def __len__(self) -> int:
        return self._future._n

    def __getitem__(self, index):
        cdef Py_ssize_t n = self._future._n, i
        if isinstance(index, slice):
            return [self._future.record_metadata(i) for i in range(*index.indices(n))]
        i = index
        if i < 0:
            i += n
        if i < 0 or i >= n:
            raise IndexError(f"record index {index} out of range for a batch of {n} records")
        return self._future.record_metadata(i)

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self._future._n):
            yield self._future.record_metadata(i)

    def __repr__(self):
        return f"<BatchMetadata of {self._future._n} records on {self._future.topic}>"


_Sequence.register(BatchMetadata)
