# cython: language_level=3
"""The future of one send_batch() call (BatchFuture) and its lazy per-record metadata (BatchMetadata).

A call's records are found through C arrays of runs -- consecutive records that went into one batch at
consecutive offsets -- so the future holds no object per record; it listens to the ProduceRequestResult of every
batch the call touched (future.pyx) and completes when all of them have.
"""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.object cimport PyObject
from libc.stdint cimport int32_t, int64_t

from kafkaprod._native.future cimport Completion, ProduceRequestResult, follow_splits
from kafkaprod._native.record_metadata cimport RecordMetadata, make_metadata

import logging

from collections.abc import Sequence as _Sequence

from kafkaprod.errors import BatchSendError, KafkaTimeoutError

log = logging.getLogger("kafkaprod")


cdef extern from *:
    """
    #define KP_INT32_MAX 2147483647
    """
    int KP_INT32_MAX


@cython.final
cdef class BatchFuture(Completion):
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
    cdef BatchFuture create(str topic, Py_ssize_t n, int64_t timestamp, int num_partitions, object ack):
        cdef BatchFuture f = BatchFuture.__new__(BatchFuture)
        cdef int p
        f.topic = topic
        f._n = n
        f._timestamp = timestamp
        f._key_size = -1
        f._value_size = -1
        f._results = []
        f._ack = ack
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

    cdef void set_common_size(self, bint keys, int32_t size) noexcept:
        if keys:
            self._key_size = size
        else:
            self._value_size = size

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

    cdef int add_run(self, int partition, ProduceRequestResult result, int32_t rel, Py_ssize_t count) except -1:
        self.add_record(partition, result, rel)
        self._count += count - 1  # the rest extend that run: consecutive offsets
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
            r.add_listener(self)
        return 0

    cdef void on_result(self, ProduceRequestResult r):
        cdef list children = r.children
        if children is not None:
            # The batch was split: its records moved to the halves, which this future now waits for instead.
            # Halves holding none of this future's records are waited for too; they complete all the same.
            self._pending += len(children)
            for _start, child in children:
                (<ProduceRequestResult>child).add_listener(self)
        elif r.error is not None:
            self._any_failed = True
        self._pending -= 1
        if self._pending == 0:
            self._complete()

    cdef void _complete(self):
        if self._ack is not None:
            self._acknowledge()
        self.open()
        callbacks = self._callbacks
        self._callbacks = None
        if callbacks is not None:
            for fn in callbacks:
                self._run_callback(fn)

    cdef void _acknowledge(self):
        # The interceptors see every record of the call acknowledged, as they would for send(): one loop here.
        cdef Py_ssize_t i
        cdef int32_t rel
        cdef ProduceRequestResult r
        ack = self._ack
        self._ack = None
        for i in range(self._n):
            r = self._locate(i, &rel)
            try:
                if r.error is None:
                    ack(self._metadata_at(i, r, rel), None)
                else:
                    ack(None, r.error)
            except Exception:
                log.exception("an interceptor acknowledgement raised; continuing")

    cdef void _run_callback(self, object fn):
        try:
            fn(self)
        except Exception:
            log.exception("a send_batch done-callback raised; continuing")

    # ---- waiting -----------------------------------------------------------------------------------------
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
        cdef int off = self._run_rel[k] + <int32_t>(i - self._run_start[k])
        cdef ProduceRequestResult r = follow_splits(<ProduceRequestResult>self._results[self._run_res[k]], &off)
        rel[0] = off
        return r

    cdef RecordMetadata record_metadata(self, Py_ssize_t i):
        cdef int32_t rel
        return self._metadata_at(i, self._locate(i, &rel), rel)

    cdef RecordMetadata _metadata_at(self, Py_ssize_t i, ProduceRequestResult r, int32_t rel):
        return make_metadata(r.topic, r.partition, r.base_offset + rel if r.base_offset >= 0 else -1,
                             r.log_append_time if r.log_append_time >= 0 else self._timestamp,
                             self._key_sizes[i] if self._key_sizes != NULL else self._key_size,
                             self._value_sizes[i] if self._value_sizes != NULL else self._value_size)

    # ---- failures ----------------------------------------------------------------------------------------
    cdef int _walk(self, ProduceRequestResult r, int32_t lo, int32_t hi, Py_ssize_t first_index, list out) except -1:
        # Records at offsets [lo, hi) of r are this future's records first_index, first_index + 1, ...; runs and
        # split halves are visited in offset order, so the first failure met is the lowest-indexed one.
        cdef list children = r.children
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
        if not self.await_done(timeout):
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
        if not self.await_done(timeout):
            raise KafkaTimeoutError(f"{self._n} records not all acknowledged within {timeout} s")
        return self._error_of()

    def failed_indices(self, timeout=None) -> list:
        """Indices (into the call's values) of the records that failed, ascending; [] if none did."""
        if not self.await_done(timeout):
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
        return self._metadata_at(index, r, rel), None

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
