"""kafkaprod.aio: an asyncio producer with aiokafka's shape, on the compiled core of KafkaProducer.

    from kafkaprod.aio import AIOKafkaProducer

    async with AIOKafkaProducer(bootstrap_servers="localhost:9092", linger_ms=5) as producer:
        future = await producer.send("events", b"payload", key=b"user-42")
        metadata = await future                       # or: await producer.send_and_wait(...)

It runs the same accumulator and Sender thread as the synchronous producer. A record's awaitable (AsyncRecord)
reads the record's own future: awaiting a complete one costs no asyncio future; a coroutine that awaits one in
flight is woken when its batch completes, by one loop call per batch (never one per record). Nothing blocks the
loop: send() appends straight away when the topic's metadata is known and buffer memory has room for a batch,
and otherwise waits for metadata or memory in a worker thread, which the coroutine awaits; flush(), stop() and
partitions_for() are awaited the same way.

Cancelling a record's awaitable does not cancel the record: it is sent all the same. A producer belongs to the
event loop that started it; using it from another loop, or after stop(), raises at once.

Transactions (``transactional_id=...``) have aiokafka's calls -- ``begin_transaction()``, ``commit_transaction()``,
``abort_transaction()``, ``send_offsets_to_transaction()``, ``async with producer.transaction():`` -- awaited, with
the blocking KafkaProducer calls run in a worker thread. As aiokafka's does, start() initializes transactions
(init_transactions(), which may also be awaited on its own).
"""
from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from kafkaprod import config as _config
from kafkaprod import fork as _fork
from kafkaprod._native.aio_bridge import AsyncCompletions, AsyncRecord
from kafkaprod._native.batch_future import BatchFuture, BatchMetadata
from kafkaprod._native.record_metadata import RecordMetadata
from kafkaprod.errors import ProducerClosedError
from kafkaprod.metadata import PartitionInfo
from kafkaprod.producer import KafkaProducer

Headers = Iterable[tuple[str, bytes | None]] | None

__all__ = ["AIOKafkaProducer"]


class AIOKafkaProducer:
    """aiokafka's AIOKafkaProducer interface: ``await start()``, ``await send(...)`` returning an awaitable,
    ``await stop()``; options are KafkaProducer's (snake_case keywords or ``config={"java.name": value}``)."""

    def __init__(self, bootstrap_servers: str | Iterable[str] | None = None, *,
                 config: dict[str, Any] | None = None, **options: Any) -> None:
        if bootstrap_servers is not None:
            options["bootstrap_servers"] = bootstrap_servers
        _config.resolve(config, **options)  # bad options are refused here, naming the option, not at start()
        self._config = config
        self._options = options
        self._producer: KafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._completions: AsyncCompletions | None = None
        self._stopped = False
        self._transactions_initialized = False
        self._creator_pid = os.getpid()
        self._forked = False  # started, then forked: every call in the child raises ProducerForkedError
        _fork.track(self)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Starts the producer on the running event loop (its I/O thread, the bootstrap metadata request)."""
        if self._stopped:
            raise ProducerClosedError("start() after the producer was stopped; make a new AIOKafkaProducer")
        if self._producer is not None:
            raise RuntimeError("start() was called already")
        loop = asyncio.get_running_loop()
        self._producer = producer = KafkaProducer(config=self._config, **self._options)
        self._loop = loop
        # The accumulator takes records straight from the loop unless serializers, interceptors or a custom
        # partitioner have to run first (then the producer's own send() does, in slow_send).
        direct = producer._accumulator if producer._fast_send else None
        self._completions = AsyncCompletions(loop, direct, self._send_slow, producer._pool, producer._metadata)
        # The common send() -- a known topic, room in the buffer -- is one call into compiled code.
        self.send = self._completions.send  # type: ignore[method-assign]
        if producer.config.transactional_id is not None:
            await self.init_transactions()  # as aiokafka's start(): begin_transaction() may follow at once

    async def stop(self, timeout: float | None = None) -> None:
        """Sends what is pending (up to timeout seconds; None: until done), then stops. Records still pending when
        the timeout runs out fail with ProducerClosedError, through their awaitables."""
        if self._forked:
            return  # a forked child: what is pending belongs to the parent (KafkaProducer.close())
        producer = self._producer
        if producer is None or self._stopped:
            self._stopped = True
            return
        self._check_loop("stop()")
        self._stopped = True
        self.__dict__.pop("send", None)  # send() now refuses, naming stop()
        await self._in_thread(producer.close, timeout)
        # The batches that completed last handed their records to this loop; let those calls run.
        await asyncio.sleep(0)

    async def __aenter__(self) -> AIOKafkaProducer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # ---- sending ---------------------------------------------------------------------------------------------
    async def send(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                   timestamp_ms: int | None = None, headers: Headers = None) -> AsyncRecord:
        """Queues a record; returns an awaitable -- an AsyncRecord, with asyncio.Future's done(), result(),
        add_done_callback() and cancel() -- that resolves to its RecordMetadata or raises its error. Bad arguments
        raise here, at once. (start() replaces this method by its compiled fast path.)"""
        self._check_loop("send()")
        return await self._send_slow(topic, value, key, partition, timestamp_ms, headers)

    async def _send_slow(self, topic: Any, value: Any, key: Any, partition: int | None, timestamp_ms: int | None,
                         headers: Headers) -> AsyncRecord:
        # Metadata to fetch or memory to wait for: the blocking send runs in a worker thread while the loop goes on.
        completions = self._check_loop("send()")
        assert self._producer is not None
        record = await self._in_thread(functools.partial(
            self._producer.send, topic, value, key, partition=partition, timestamp_ms=timestamp_ms, headers=headers))
        return completions.record(record)

    async def send_and_wait(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                            timestamp_ms: int | None = None, headers: Headers = None) -> RecordMetadata:
        """send(), then awaits the record's acknowledgement."""
        return await (await self.send(topic, value, key, partition, timestamp_ms, headers))

    async def send_batch(self, topic: str, values: Any, *, keys: Any = None, partition: int | None = None,
                         timestamp_ms: int | None = None,
                         headers: Headers = None) -> asyncio.Future[BatchMetadata]:
        """KafkaProducer.send_batch() from a coroutine: queues the whole call (in a worker thread, since a call
        larger than the free buffer memory waits for it) and returns one awaitable for all its records, resolving
        to their lazy sequence of RecordMetadata (BatchFuture.get())."""
        completions = self._check_loop("send_batch()")
        assert self._producer is not None
        batch: BatchFuture = await self._in_thread(functools.partial(
            self._producer.send_batch, topic, values, keys=keys, partition=partition, timestamp_ms=timestamp_ms,
            headers=headers))
        waiter: asyncio.Future[BatchMetadata] = completions.loop.create_future()

        def resolve(done: BatchFuture) -> None:  # on the loop
            if waiter.done():
                return
            error = done.exception(0)
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(done.get(0))

        def completed(done: BatchFuture) -> None:  # on the Sender thread: one loop call for the whole call
            try:
                completions.loop.call_soon_threadsafe(resolve, done)
            except RuntimeError:  # the loop was closed: nobody is left to await it
                pass

        batch.add_done_callback(completed)
        return waiter

    async def flush(self, timeout: float | None = None) -> None:
        """Waits until every record sent before the call is complete."""
        self._check_loop("flush()")
        assert self._producer is not None
        await self._in_thread(self._producer.flush, timeout)
        await asyncio.sleep(0)  # let the loop calls of the last batches resolve their awaitables

    async def partitions_for(self, topic: str) -> list[PartitionInfo]:
        """The topic's partitions, fetching its metadata first (awaited, up to max_block_ms)."""
        self._check_loop("partitions_for()")
        assert self._producer is not None
        partitions: list[PartitionInfo] = await self._in_thread(self._producer.partitions_for, topic)
        return partitions

    # ---- transactions ------------------------------------------------------------------------------------------
    # KafkaProducer's transactional calls, awaited: each blocking call runs in a worker thread, so the loop goes on
    # while it waits for the coordinator. Errors as KafkaProducer's: TransactionStateError out of order,
    # TransactionAbortableError (abort_transaction() and go on), ProducerFencedError and other fatal errors.

    async def init_transactions(self, timeout: float | None = None) -> None:
        """KafkaProducer.init_transactions(); start() already ran it, and then this returns at once."""
        self._check_loop("init_transactions()")
        assert self._producer is not None
        if self._transactions_initialized:
            return
        await self._in_thread(self._producer.init_transactions, timeout)
        self._transactions_initialized = True

    async def begin_transaction(self) -> None:
        """KafkaProducer.begin_transaction() (no request: not run in a thread)."""
        self._check_loop("begin_transaction()")
        assert self._producer is not None
        self._producer.begin_transaction()

    async def commit_transaction(self, timeout: float | None = None) -> None:
        """KafkaProducer.commit_transaction(): flushes, then commits; the records' awaitables resolve first."""
        self._check_loop("commit_transaction()")
        assert self._producer is not None
        await self._in_thread(self._producer.commit_transaction, timeout)
        await asyncio.sleep(0)  # let the loop calls of the last batches resolve their awaitables

    async def abort_transaction(self, timeout: float | None = None) -> None:
        """KafkaProducer.abort_transaction()."""
        self._check_loop("abort_transaction()")
        assert self._producer is not None
        await self._in_thread(self._producer.abort_transaction, timeout)
        await asyncio.sleep(0)

    async def send_offsets_to_transaction(self, offsets: Any, group_id: Any, timeout: float | None = None) -> None:
        """KafkaProducer.send_offsets_to_transaction(): offsets map (topic, partition) to the next offset to
        consume; group_id is the group's id or a consumer-group metadata object with a group_id."""
        self._check_loop("send_offsets_to_transaction()")
        assert self._producer is not None
        await self._in_thread(functools.partial(self._producer.send_offsets_to_transaction, offsets, group_id,
                                                timeout=timeout))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """``async with producer.transaction():`` begins a transaction, commits it when the block ends, and aborts
        it when the block raises (aiokafka's TransactionContext)."""
        await self.begin_transaction()
        try:
            yield
        except BaseException:
            await self.abort_transaction()
            raise
        await self.commit_transaction()

    def metrics(self) -> dict[str, float]:
        if self._producer is None:
            raise RuntimeError("metrics() before start()")
        return self._producer.metrics()

    # ---- helpers ---------------------------------------------------------------------------------------------
    def _check_loop(self, what: str) -> AsyncCompletions:
        if self._forked:
            raise _fork.forked_error(what, "AIOKafkaProducer", self._creator_pid)
        if self._stopped:
            raise ProducerClosedError(f"{what} after the producer was stopped")
        completions = self._completions
        if completions is None:
            raise RuntimeError(f"{what} before start(): await producer.start() first (or use `async with`)")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(f"{what} must be awaited on the event loop that started the producer") from None
        if running is not self._loop:
            raise RuntimeError(f"{what} from another event loop: an AIOKafkaProducer belongs to the loop that "
                               f"started it")
        return completions

    def _forked_in_child(self) -> None:
        # Right after os.fork(), in the child (see kafkaprod.fork): flags only. One never started holds only its
        # options, so the child may start it; a started one is the parent's.
        if self._producer is None:
            return
        self._forked = True
        self.send = self._send_in_forked_child  # type: ignore[method-assign]

    def _send_in_forked_child(self, *args: Any, **kwargs: Any) -> Any:
        raise _fork.forked_error("send()", "AIOKafkaProducer", self._creator_pid)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(None, fn, *args)
