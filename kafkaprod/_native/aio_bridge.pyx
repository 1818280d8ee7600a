# cython: language_level=3
"""The compiled half of kafkaprod.aio: send() on an event loop, and records completed on it one loop call per batch.

``AsyncRecord`` is what ``await producer.send(...)`` gives: an awaitable (with asyncio.Future's done(), result(),
exception(), add_done_callback(), cancel()) over the record's own future. Awaiting one whose record is complete
costs no asyncio future at all; only a coroutine that awaits a record still in flight, or a done-callback, needs
its loop told when the record's batch completes. Those wait together per batch (``RecordWaiters``, a listener of
the batch's result): when the batch completes the Sender thread asks the loop for one call_soon_threadsafe, which
wakes them all -- never one loop call per record.
"""
cimport cython
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF

from kafkaprod._native.accumulator cimport RecordAccumulator
from kafkaprod._native.buffer_pool cimport BufferPool, available_hint
from kafkaprod._native.future cimport Completion, FutureRecordMetadata, ProduceRequestResult, record_result
from kafkaprod._native.record_metadata cimport RecordMetadata

import asyncio
import logging

cdef extern from "Python.h":
    # The am_send slot of PyAsyncMethods (Python 3.10+), which `await` uses to take a value without an exception.
    ctypedef int (*sendfunc)(object, object, PyObject**) except -1
    ctypedef struct _AsyncMethods "PyAsyncMethods":
        sendfunc am_send
    ctypedef struct _TypeWithAsync "PyTypeObject":
        _AsyncMethods* tp_as_async
    enum:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    object _steal "__Pyx_Steal" (PyObject*)

cdef extern from *:
    """
    static CYTHON_INLINE PyObject* __Pyx_Steal(PyObject* o) { return o; }
    """

cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident() nogil

log = logging.getLogger("kafkaprod")

cdef object _running_loop = asyncio._get_running_loop
cdef object _CancelledError = asyncio.CancelledError
cdef object _InvalidStateError = asyncio.InvalidStateError


@cython.final
@cython.freelist(256)
# Not tracked by the cyclic GC, as the record futures it wraps: a coroutine may hold a million. Its one cycle
# (waiting in its batch's RecordWaiters, which its owner holds) ends when the batch completes, and its
# done-callbacks are dropped once they ran.
@cython.no_gc
cdef class AsyncRecord:
    """The awaitable of one record sent from a coroutine: ``await`` it for its RecordMetadata (or its error)."""

    cdef FutureRecordMetadata record
    cdef AsyncCompletions owner
    cdef bint handed_over                # the await of send() has given this object
    cdef bint cancelled_
    # asyncio.Future's own attributes, read by the standard library's helpers: isfuture() wants the first not None
    # (so gather(), wait(), shield(), wrap_future(), run_until_complete() take this object as it is instead of
    # wrapping it in a Task each); gather() reads _cancel_message and sets _log_destroy_pending.
    cdef public bint _asyncio_future_blocking
    cdef public bint _log_destroy_pending
    cdef readonly object _cancel_message
    # add_done_callback() functions, run on the loop: the first without a list (a record rarely has more).
    cdef object callback
    cdef list more_callbacks

    def __init__(self):
        raise TypeError("AsyncRecord objects are made by AIOKafkaProducer.send()")

    # ---- the await protocol --------------------------------------------------------------------------------
    # `await producer.send(...)` gives this object (send() is awaited once, as aiokafka's coroutine is); awaiting it
    # then gives the record's metadata: at once when the record is complete, else after waiting on a future of the
    # loop that its batch's completion resolves. _am_send (installed as the type's am_send) makes both steps a
    # plain C call that returns its value; __next__ is the same step for interpreters that iterate instead (3.12+
    # resumes a non-generator awaitable through tp_iternext).
    #
    # No send(), throw() or close(): with those collections.abc.Coroutine would claim this object, and asyncio
    # treats coroutines as work to wrap in a Task (gather) or refuses them (wait). Without throw(), a cancelled
    # task's CancelledError is raised where it awaits, which is all that one did; the record is still sent.
    def __await__(self):
        return self

    def __next__(self):
        cdef PyObject* out = NULL
        if _am_send(self, None, &out) == PYGEN_NEXT:
            return <object>_steal(out)
        raise StopIteration(<object>_steal(out))

    # ---- asyncio.Future's queries ----------------------------------------------------------------------------
    def done(self) -> bool:
        return self.is_done()

    cdef inline bint is_done(self):
        return self.cancelled_ or record_result(self.record)._done

    def cancelled(self) -> bool:
        return self.cancelled_

    def cancel(self, msg=None) -> bool:
        """Stops awaiting the record (awaiting it raises CancelledError); the record itself is sent all the same."""
        if self.is_done():
            return False
        self.cancelled_ = True
        self._cancel_message = msg
        self._run_callbacks()
        return True

    def _make_cancelled_error(self):
        """The CancelledError that awaiting a cancelled record raises (asyncio.Future's; gather() calls it)."""
        return _CancelledError() if self._cancel_message is None else _CancelledError(self._cancel_message)

    def result(self):
        self._check_outcome()
        return _outcome(self.record)

    def exception(self):
        self._check_outcome()
        return record_result(self.record).error

    cdef int _check_outcome(self) except -1:
        # asyncio.Future's rules for result() and exception(): cancelled, or not done yet, raises.
        if self.cancelled_:
            raise self._make_cancelled_error()
        if not record_result(self.record)._done:
            raise _InvalidStateError("the record is not acknowledged yet")
        return 0

    def add_done_callback(self, fn, *, context=None):
        """fn(self) on the loop once the record is complete (soon, if it is already)."""
        if self.is_done():
            self.owner.call_soon(fn, self)
            return
        if self.callback is None:
            self.callback = fn
            self.owner.attach(None, self)
        elif self.more_callbacks is None:
            self.more_callbacks = [fn]
        else:
            self.more_callbacks.append(fn)

    def remove_done_callback(self, fn) -> int:
        cdef list fns = self._take_callbacks()
        kept = [f for f in fns if f != fn]
        if kept:
            self.callback = kept[0]
            self.more_callbacks = kept[1:] or None
        return len(fns) - len(kept)

    def get_loop(self):
        return self.owner.loop

    cdef list _take_callbacks(self):
        cdef list fns = [] if self.callback is None else [self.callback]
        if self.more_callbacks is not None:
            fns.extend(self.more_callbacks)
        self.callback = None
        self.more_callbacks = None
        return fns

    cdef int _run_callbacks(self) except -1:
        # Scheduled, as asyncio.Future does, for calls made by the user's code (cancel(), a callback added to a
        # record already complete): never run inside the caller.
        for fn in self._take_callbacks():
            self.owner.call_soon(fn, self)
        return 0

    cdef int _run_callbacks_now(self) except -1:
        # Called from the loop's own call for the completed batch (RecordWaiters.resolve), which is already "soon":
        # running them there, not one loop iteration and one Handle per record later, is what keeps the latency of
        # a done-callback close to the I/O thread's. A raising callback is reported as asyncio reports one.
        cdef object fn = self.callback
        cdef list more = self.more_callbacks
        self.callback = None
        self.more_callbacks = None
        if fn is not None:
            self._call(fn)
        if more is not None:
            for fn in more:
                self._call(fn)
        return 0

    cdef int _call(self, object fn) except -1:
        try:
            fn(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.owner.loop.call_exception_handler({
                "message": f"Exception in done-callback {fn!r} of a kafkaprod record", "exception": exc,
                "future": self})
        return 0

    def __repr__(self):
        state = "cancelled" if self.cancelled_ else ("done" if record_result(self.record).done() else "pending")
        return f"<AsyncRecord {self.record!r} {state}>"


cdef AsyncRecord _async_record(AsyncCompletions owner, FutureRecordMetadata record, bint handed_over):
    cdef AsyncRecord a = AsyncRecord.__new__(AsyncRecord)
    a.record = record
    a.owner = owner
    a.handed_over = handed_over
    return a


cdef RecordMetadata _outcome(FutureRecordMetadata record):
    # A complete record's metadata, or its error raised: FutureRecordMetadata.get() without the wait and the call
    # through Python (gather() asks every record for its result once all are done).
    cdef ProduceRequestResult r = record_result(record)
    if r.error is not None:
        raise r.error
    return record._metadata()


cdef int _am_send(object it, object value, PyObject** result) except -1:
    # The am_send slot (PEP 590's PySendResult protocol): 0 (PYGEN_RETURN) with *result the value of the await,
    # 1 (PYGEN_NEXT) with *result a future to wait on, -1 (PYGEN_ERROR) with the exception set.
    cdef AsyncRecord self = <AsyncRecord>it
    cdef object out
    cdef int status = PYGEN_RETURN
    if not self.handed_over:
        self.handed_over = True
        out = self
    elif self.cancelled_:
        raise self._make_cancelled_error()
    elif record_result(self.record)._done:
        out = _outcome(self.record)
    else:
        out = self.owner.loop.create_future()
        self.owner.attach(out, self)
        out._asyncio_future_blocking = True
        status = PYGEN_NEXT
    Py_INCREF(out)
    result[0] = <PyObject*>out
    return status


(<_TypeWithAsync*>AsyncRecord).tp_as_async.am_send = <sendfunc>_am_send


@cython.final
cdef class RecordWaiters(Completion):
    """What waits on the loop for one batch's records: futures of awaiting coroutines, and records with
    done-callbacks."""

    cdef AsyncCompletions owner
    cdef ProduceRequestResult result
    cdef list waiting                    # (asyncio future or None, AsyncRecord) pairs, flattened

    def __cinit__(self, AsyncCompletions owner, ProduceRequestResult result):
        self.owner = owner
        self.result = result
        self.waiting = []

    cdef void on_result(self, ProduceRequestResult result):
        # The Sender thread: hand the whole batch to the loop in one call.
        try:
            self.owner.loop.call_soon_threadsafe(self.resolve)
        except RuntimeError:  # the loop was closed: nobody is left to await these
            log.debug("the event loop was closed before %d record(s) completed", len(self.waiting) // 2)

    def resolve(self):
        """On the loop: wakes every waiting coroutine and runs the records' done-callbacks; if the batch was split,
        waits for the halves instead."""
        cdef Py_ssize_t i
        cdef AsyncRecord record
        cdef list waiting = self.waiting
        self.waiting = None
        if self.owner.current is self:
            self.owner.current = None
        self.owner.pending.pop(self.result, None)
        split = self.result.children is not None
        for i in range(0, len(waiting), 2):
            waiter = waiting[i]
            record = <AsyncRecord>waiting[i + 1]
            if split:
                self.owner.attach(waiter, record)  # the record's future has followed it into a half
            elif waiter is None:
                record._run_callbacks_now()
            elif not waiter.done():
                waiter.set_result(None)  # the awaiting coroutine reads the record's outcome itself


@cython.final
cdef class AsyncCompletions:
    """An AIOKafkaProducer's link to its event loop: its send() fast path and the batches with records awaited."""

    cdef readonly object loop
    cdef unsigned long thread_id         # the thread that made this object: the loop's (made by start())
    cdef dict pending                    # ProduceRequestResult -> RecordWaiters
    cdef RecordWaiters current           # the last one used: records of a batch arrive one after another
    cdef RecordAccumulator acc           # appended to directly when the producer's send() is the compiled one
    cdef object slow_send                # the coroutine function for everything else
    cdef BufferPool pool
    cdef object metadata                 # its auth_error: while a TLS/SASL failure lasts, send() must raise it
    cdef Py_ssize_t batch_size
    cdef list soon                       # (callback, AsyncRecord) pairs, flattened, due in one loop call

    def __cinit__(self, loop, RecordAccumulator acc, slow_send, BufferPool pool, metadata):
        self.loop = loop
        self.thread_id = PyThread_get_thread_ident()
        self.pending = {}
        self.current = None
        self.acc = acc
        self.slow_send = slow_send
        self.pool = pool
        self.metadata = metadata
        self.batch_size = 0 if acc is None else acc.batch_size
        self.soon = []

    def send(self, topic, value=None, key=None, partition=None, timestamp_ms=None, headers=None):
        """AIOKafkaProducer.send: an awaitable giving the record's AsyncRecord. Appends at once when the topic is
        known and the pool has room for a new batch -- only this loop allocates from it, so that holds until the
        append; anything else (metadata to fetch, memory to wait for, serializers or interceptors to run, an
        authentication failure to raise) goes to the coroutine slow_send."""
        cdef FutureRecordMetadata record
        # "Is this our loop, running?" without asyncio._get_running_loop(), which makes a getpid() system call
        # per call on Python 3.11: the loop's own thread while the loop runs can only be running this loop (asyncio
        # refuses to nest loops); anything else takes the full check.
        if (PyThread_get_thread_ident() != self.thread_id or not self.loop.is_running()) \
                and _running_loop() is not self.loop:
            raise RuntimeError("send() from another event loop (or from no running loop): an AIOKafkaProducer "
                               "belongs to the loop that started it")
        if self.acc is not None and self.metadata.auth_error is None and self._has_room(value, key):
            record = self.acc.try_send(topic, value, key, partition, timestamp_ms, headers, None)
            if record is not None:
                return _async_record(self, record, False)
        return self.slow_send(topic, value, key, partition, timestamp_ms, headers)

    cdef bint _has_room(self, object value, object key):
        cdef Py_ssize_t size = 0, need
        if type(value) is bytes:
            size = len(<bytes>value)
        elif value is not None:
            size = self.batch_size
        if type(key) is bytes:
            size += len(<bytes>key)
        need = self.batch_size if size < self.batch_size // 2 else 2 * self.batch_size + size
        return available_hint(self.pool) >= need

    cdef int call_soon(self, object fn, AsyncRecord record) except -1:
        # fn(record) on a later turn of the loop. Callbacks due together share one loop call: asyncio.gather() and
        # asyncio.wait() add one to every record, mostly records already complete, and a loop Handle each would
        # cost more than the callback. They run in the order they were added.
        if len(self.soon) == 0:
            self.loop.call_soon(self.run_soon)
        self.soon.append(fn)
        self.soon.append(record)
        return 0

    def run_soon(self):
        """On the loop: the callbacks call_soon() queued since the last call."""
        cdef list due = self.soon
        cdef Py_ssize_t i
        self.soon = []
        for i in range(0, len(due), 2):
            (<AsyncRecord>due[i + 1])._call(due[i])

    def record(self, FutureRecordMetadata record):
        """The AsyncRecord of a record sent outside the fast path (its send() was a coroutine: given already)."""
        return _async_record(self, record, True)

    cdef void attach(self, object waiter, AsyncRecord record):
        cdef ProduceRequestResult r = record_result(record.record)
        cdef RecordWaiters w = self.current
        if r.done():
            # Completed already (its loop call may be queued, or past): nothing to wait for.
            if waiter is None:
                record._run_callbacks()
            elif not waiter.done():
                waiter.set_result(None)
            return
        if w is None or w.result is not r:
            w = self.pending.get(r)
            if w is None:
                w = RecordWaiters(self, r)
                self.pending[r] = w
                # Added before the record is: a completion in between only queues the loop call, which cannot
                # run before this method returns on the loop.
                r.add_listener(w)
            self.current = w
        w.waiting.append(waiter)
        w.waiting.append(record)
