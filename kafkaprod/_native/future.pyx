# cython: language_level=3
"""Per-batch results and per-record futures (Java's ProduceRequestResult and FutureRecordMetadata).

A batch owns one ProduceRequestResult: one latch for all its records. A record's future is a small object that
points at that result plus its offset inside the batch, so completing a batch costs one latch release, and
per-record work happens only for futures that listen -- those with a callback, or every one while interceptors
are configured -- in one loop per completed batch. send_batch() futures live in batch_future.pyx and listen to
the same results.
"""
cimport cython
from libc.stdint cimport int64_t

from kafkaprod._native.record_metadata cimport RecordMetadata, make_metadata

import logging
import threading
import time

from kafkaprod.errors import KafkaTimeoutError

log = logging.getLogger("kafkaprod")

cdef object _Event = threading.Event

# Callback kinds of add_callback() and the like. A future's _callbacks is None, the send() callback itself (the common
# case), or a list of (kind, fn, args, kwargs) in the order they were attached.
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
        self.ack = None

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
        cdef ProduceRequestResult child
        if self._done:
            return
        for _start, child in children:
            child.ack = self.ack  # the halves' records are acknowledged to the interceptors as the original's
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
# Not tracked by the cyclic GC: a service holding a million futures must not have the collector walk them on every
# pass. The one cycle a future is in -- its result's listener list holds it while it waits for callbacks -- is
# broken when the result completes, and every result completes (delivered, failed, expired or aborted on close).
@cython.no_gc
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
        if self._result._done and self._result.children is not None:
            self._result = follow_splits(self._result, &self._relative_offset)
        return self._result

    cdef bint _wait(self, object timeout):
        cdef ProduceRequestResult r = self._final_result()
        if r._done:
            return True  # the common case once flush() returned: no clock read, no Event
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            r = self._result
            if not r.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
            if r.children is None:
                return True
            self._final_result()

    cdef RecordMetadata _metadata(self):
        cdef ProduceRequestResult r = self._result
        return make_metadata(r.topic, r.partition, r.base_offset + self._relative_offset if r.base_offset >= 0 else -1,
                             r.log_append_time if r.log_append_time >= 0 else self._timestamp,
                             self._key_size, self._value_size)

    def done(self) -> bool:
        return self._final_result()._done

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
        cdef ProduceRequestResult r = self._final_result()
        if r._done:
            error = r.error
            self._run(entry, self._metadata() if error is None else None, error)
            return
        # Listening already: for a send() callback, or for the interceptors' acknowledgement.
        cdef bint listening = self._callbacks is not None or r.ack is not None
        callbacks = self._callbacks
        if callbacks is None:
            self._callbacks = [entry]
        elif type(callbacks) is list:
            (<list>callbacks).append(entry)
        else:
            self._callbacks = [(CB_SEND, callbacks, None, None), entry]
        if not listening:
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

    cdef void listen(self, object callback):
        """Registers for the batch's completion with the send(callback=...) callback (None: for the interceptors'
        acknowledgement only) -- before the batch can complete, so no race to handle."""
        self._callbacks = callback
        self._result.add_listener(self)

    cdef void on_result(self, ProduceRequestResult result):
        # Runs once per record that listens, in the completing batch's one loop over its listeners (the Sender
        # thread): the interceptors' acknowledgement, then the callbacks. Nothing is made per record but the
        # RecordMetadata handed to them.
        cdef ProduceRequestResult r = self._result
        if r.children is not None:
            # The batch was split: follow this record to its new batch and wait there.
            self._final_result().add_listener(self)
            return
        callbacks = self._callbacks
        self._callbacks = None
        ack = r.ack
        error = r.error
        metadata = self._metadata() if error is None else None
        if ack is not None:
            try:
                ack(metadata, error)
            except Exception:
                log.exception("an interceptor acknowledgement raised; continuing")
        if callbacks is None:
            return
        if type(callbacks) is not list:
            try:
                callbacks(metadata, error)
            except Exception:
                # As the Java client: a failing user callback is logged and must not break delivery of others.
                log.exception("a record callback raised; continuing")
            return
        for entry in <list>callbacks:
            self._run(entry, metadata, error)

    cdef void _run(self, tuple entry, object metadata, object error):
        kind, fn, args, kwargs = entry
        try:
            if kind == CB_SEND:
                fn(metadata, error)
            elif kind == CB_SUCCESS:
                if error is None:
                    fn(metadata, *args, **(kwargs or {}))
            elif kind == CB_ERROR:
                if error is not None:
                    fn(error, *args, **(kwargs or {}))
            else:
                fn(self)
        except Exception:
            log.exception("a record callback raised; continuing")

    def __repr__(self):
        r = self._final_result()
        state = "pending" if not r._done else ("error" if r.error is not None else "done")
        return f"<FutureRecordMetadata {r.topic}[{r.partition}]+{self._relative_offset} {state}>"
