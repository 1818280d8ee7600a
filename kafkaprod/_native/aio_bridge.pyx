# cython: language_level=3
"""Completion of records on an asyncio event loop, one loop callback per completed batch (kafkaprod.aio).

The records' own futures complete on the Sender thread; an awaiting coroutine needs an asyncio future completed
on its loop. A RecordWaiters gathers the asyncio futures of one batch's records; when the batch completes it asks
the loop for one call (call_soon_threadsafe), which resolves all of them -- never one loop call per record.
"""
cimport cython

from kafkaprod._native.future cimport Completion, FutureRecordMetadata, ProduceRequestResult, record_result

import logging

log = logging.getLogger("kafkaprod")


@cython.final
cdef class RecordWaiters(Completion):
    """The asyncio futures waiting for one batch's records, and those records' own futures."""

    cdef AsyncCompletions owner
    cdef ProduceRequestResult result
    cdef list waiting                    # aio future, record future, aio future, record future, ...

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
        """On the loop: completes every waiting asyncio future (a cancelled one is skipped: its record is sent all
        the same), or, if the batch was split, waits for the halves instead."""
        cdef FutureRecordMetadata record
        cdef Py_ssize_t i
        cdef list waiting = self.waiting
        self.waiting = None
        if self.owner.current is self:
            self.owner.current = None
        self.owner.pending.pop(self.result, None)
        if self.result.children is not None:
            for i in range(0, len(waiting), 2):
                self.owner.attach(waiting[i], <FutureRecordMetadata>waiting[i + 1])
            return
        error = self.result.error
        for i in range(0, len(waiting), 2):
            aio = waiting[i]
            if aio.done():
                continue
            if error is not None:
                aio.set_exception(error)
            else:
                aio.set_result((<FutureRecordMetadata>waiting[i + 1]).get(0))


@cython.final
cdef class AsyncCompletions:
    """Per producer and event loop: the RecordWaiters of batches with records still awaited."""

    cdef readonly object loop
    cdef dict pending                    # ProduceRequestResult -> RecordWaiters
    cdef RecordWaiters current           # the last one used: records of a batch arrive one after another

    def __cinit__(self, loop):
        self.loop = loop
        self.pending = {}
        self.current = None

    cpdef object watch(self, FutureRecordMetadata record):
        """An asyncio future (of this loop) that completes with the record's RecordMetadata or error."""
        aio = self.loop.create_future()
        self.attach(aio, record)
        return aio

    cdef void attach(self, object aio, FutureRecordMetadata record):
        cdef ProduceRequestResult r = record_result(record)
        cdef RecordWaiters w = self.current
        if r.done():
            # Completed already (and its loop call may be queued, or past): nothing to wait for.
            if not aio.done():
                error = r.error
                if error is not None:
                    aio.set_exception(error)
                else:
                    aio.set_result(record.get(0))
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
        w.waiting.append(aio)
        w.waiting.append(record)
