# cython: language_level=3
"""Per-batch results and per-record futures (Java's ProduceRequestResult and FutureRecordMetadata).

A batch owns one ProduceRequestResult: one latch for all its records. A record's future is a small object that
points at that result plus its offset inside the batch, so completing a batch costs one latch release, and
per-record work happens only for futures that someone attached a callback to. send_batch() futures live in
batch_future.pyx and listen to the same results.
"""
cimport cython
from libc.stdint cimport int64_t

import logging
import threading
import time

from kafkaprod.errors import KafkaTimeoutError
from kafkaprod.record_metadata import RecordMetadata

log = logging.getLogger("kafkaprod")

cdef object _Event = threading.Event

# Callback kinds; one list per future keeps the order in which they were attached.
cdef enum:
    CB_SEND = 0        # callback(metadata, exception), as Java's onCompletion
    CB_SUCCESS = 1     # fn(metadata, *args, **kwargs), kafka-python's add_callback
    CB_ERROR = 2       # fn(exception, *args, **kwargs), kafka-python's add_errback
    CB_DONE = 3        # fn(future), concurrent.futures' add_done_callback


cdef class Completion:
    """Completes once; threads wait for it (shared by batch results and send_batch() futures)."""

    cdef bint await_done(self, object timeout):
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

    cdef void open(self):
        self._done = True
        ev = self._event
        if ev is not None:
            ev.set()

    cdef void on_result(self, ProduceRequestResult result):
        pass


@cython.final
cdef class ProduceRequestResult(Completion):
    """The outcome of one batch: base offset, log-append time or error, and the latch its futures wait on."""

    def __cinit__(self, str topic, int partition):
        self.topic = topic
        self.partition = partition
        self.base_offset = -1
        self.log_append_time = -1
        self.error = None
        self._listeners = None
        self.children = None

    cpdef bint done(self):
        return self._done

    cdef void add_listener(self, object listener):
        # No thread switch may fall between the _done check and the append, so that a completion on the Sender
        # thread either sees this listener or the caller sees _done and notifies it itself. Making a list can run
        # the garbage collector (and through it other threads), so the list is made before the check.
        cdef list fresh = None
        if self._listeners is None:
            fresh = [listener]
        if self._done:
            _notify(listener, self)
            return
        if self._listeners is None:
            self._listeners = fresh if fresh is not None else [listener]
        else:
            self._listeners.append(listener)

    cpdef bint wait(self, object timeout=None):
        """Blocks until completed (or split); returns False on timeout."""
        return self.await_done(timeout)

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
        self.children = children
        self._release()

    cdef void _release(self):
        self.open()
        listeners = self._listeners
        self._listeners = None
        if listeners is not None:
            for listener in listeners:
                _notify(listener, self)


cdef inline void _notify(object listener, ProduceRequestResult result):
    # Record futures are told apart by exact type: they cannot share a base class with Completion, which would
    # cost them their freelist.
    if type(listener) is FutureRecordMetadata:
        (<FutureRecordMetadata>listener).on_result(result)
    else:
        (<Completion>listener).on_result(result)


cdef ProduceRequestResult follow_splits(ProduceRequestResult result, int* rel):
    # children: (first relative offset, result) in ascending order; a record of offset r belongs to the last child
    # whose first offset is <= r, at r - first there.
    cdef int first
    cdef ProduceRequestResult child
    while result._done and result.children is not None:
        first = 0
        child = None
        for start, c in result.children:
            if <int>start <= rel[0]:
                first = start
                child = c
        result = child
        rel[0] -= first
    return result



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
        """Follows splits (MESSAGE_TOO_LARGE) to the result that holds this record now."""
        self._result = follow_splits(self._result, &self._relative_offset)
        return self._result

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
            if r.children is None:
                return True
            self._final_result()

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

    cdef void on_result(self, ProduceRequestResult result):
        if self._result.children is not None:
            # The batch was split: follow this record to its new batch and wait there.
            self._final_result().add_listener(self)
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
