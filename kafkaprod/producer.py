"""KafkaProducer: the public entry point, wiring the pieces of Java's KafkaProducer together.

send() runs the first steps on the caller's thread -- interceptors, serializers, partitioner, append into the
RecordAccumulator -- and returns a future; the Sender thread does the rest. With ``transactional_id`` the
transactional calls (init_transactions() ...) change the TransactionManager's state and wait, with a timeout, for
the requests it queues for the Sender.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafkaprod import config as _config
from kafkaprod import fork as _fork
from kafkaprod._native.accumulator import RecordAccumulator
from kafkaprod._native.batch_future import BatchFuture
from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod._native.bulk import append_batch
from kafkaprod._native.checks import check_partition, check_record_callback, check_timestamp, check_topic
from kafkaprod._native.future import FutureRecordMetadata
from kafkaprod._native.headers import check_headers
from kafkaprod._native.records import parse_compression_type
from kafkaprod.errors import KafkaError, KafkaTimeoutError, ProducerClosedError, TransactionStateError
from kafkaprod.interceptors import ProducerInterceptors
from kafkaprod.metadata import Metadata, PartitionInfo
from kafkaprod.metrics import ProducerMetrics
from kafkaprod import security as _security
from kafkaprod.network import NetworkClient
from kafkaprod.sender import Sender
from kafkaprod.serializers import as_serializer
from kafkaprod.transaction_manager import TransactionManager
from kafkaprod.txn_requests import TransactionalRequestResult, make_group, make_offsets

log = logging.getLogger("kafkaprod")
_client_ids = itertools.count(1)

Callback = Callable[[Any, Exception | None], None]


class KafkaProducer:
    """A thread-safe Kafka producer with the Java client's semantics.

    ``callback(metadata, exception)`` given to send() runs exactly once per record on the producer's I/O thread,
    like Java's ``onCompletion``: keep it quick, and never block in it.
    """

    def __init__(self, bootstrap_servers: str | Iterable[str] | None = None, *,
                 config: Mapping[str, Any] | None = None, **options: Any) -> None:
        if bootstrap_servers is not None:
            options["bootstrap_servers"] = bootstrap_servers
        self.config = cfg = _config.resolve(config, **options)
        self.client_id = cfg.client_id or f"kafkaprod-producer-{next(_client_ids)}"
        self._closed = False
        self._creator_pid = os.getpid()
        self._forked = False  # set in a forked child (kafkaprod.fork): every call raises ProducerForkedError
        self._close_lock = threading.Lock()
        self._key_serializer = as_serializer(cfg.key_serializer)
        self._value_serializer = as_serializer(cfg.value_serializer)
        self._partitioner = cfg.partitioner
        self._interceptors = ProducerInterceptors(cfg.interceptors) if cfg.interceptors else None
        self._max_block_s = cfg.max_block_ms / 1000.0
        self._pool = BufferPool(cfg.buffer_memory, cfg.batch_size)
        self._metadata = Metadata(cfg.bootstrap_servers, cfg.retry_backoff_ms, cfg.metadata_max_age_ms)
        self._client = NetworkClient(self.client_id, cfg.request_timeout_ms, cfg.reconnect_backoff_ms,
                                     cfg.reconnect_backoff_max_ms, cfg.max_in_flight_requests_per_connection,
                                     security=_security.from_config(cfg.values))
        self._accumulator = RecordAccumulator(
            self._pool, cfg.batch_size, parse_compression_type(cfg.compression_type), cfg.linger_ms,
            cfg.retry_backoff_ms, cfg.delivery_timeout_ms, cfg.max_block_ms, cfg.enable_idempotence,
            self._client.wakeup, cfg.max_request_size, cfg.transactional_id is not None)
        self._accumulator.set_retry_backoff_max(cfg.retry_backoff_max_ms)
        if self._interceptors is not None:
            # Called for every record as its batch completes, before its callback (Java's InterceptorCallback).
            self._accumulator.acknowledge = self._interceptors.on_acknowledgement
        self._metrics = ProducerMetrics(self._pool)
        self._sender = Sender(self._client, self._metadata, self._accumulator, cfg, self._metrics)
        tm = self._sender.tm
        self._txn: TransactionManager | None = tm if tm is not None and tm.transactional else None
        self._fast_send = self._interceptors is None and self._key_serializer is None \
            and self._value_serializer is None and self._partitioner is None
        self._sender.on_auth_change = self._on_auth_change
        _fork.track(self)
        self._sender.start()
        if self._fast_send:
            # Bytes in, built-in partitioner: send() is the accumulator's compiled entry point, which falls back
            # to _send_slow for anything it does not handle itself (unknown topic, arguments to check).
            self._accumulator.slow_send = self._send_slow
            # Deliberate: the instance attribute shadows the method (same signature), which mypy refuses.
            self.send = self._accumulator.send  # type: ignore[method-assign]
        log.info("producer %s started (bootstrap %s)", self.client_id, cfg.bootstrap_servers)

    # ---- sending ----------------------------------------------------------------------------------------------------
    def send(self, topic: str, value: Any = None, key: Any = None, *, partition: int | None = None,
             timestamp_ms: int | None = None, headers: Iterable[tuple[str, bytes | None]] | None = None,
             callback: Callback | None = None) -> FutureRecordMetadata:
        """Queues one record and returns its future; blocks up to max_block_ms for metadata or memory."""
        return self._send_slow(topic, value, key, partition, timestamp_ms, headers, callback)

    def _send_slow(self, topic: str, value: Any, key: Any, partition: int | None, timestamp_ms: int | None,
                   headers: Iterable[tuple[str, bytes | None]] | None,
                   callback: Callback | None) -> FutureRecordMetadata:
        if self._closed:
            self._check_forked("send()")
            raise ProducerClosedError("send() after the producer was closed")
        if self._txn is not None and not self._txn.state_allows_send():
            raise self._txn.refusal("send()")  # at once, not after waiting for the topic's metadata
        check_topic(topic)
        check_partition(partition)
        check_timestamp(timestamp_ms)
        check_record_callback(callback)
        headers = check_headers(headers)
        if self._interceptors is not None:
            topic, value, key, partition, timestamp_ms, headers = self._interceptors.on_send(
                topic, value, key, partition, timestamp_ms, headers)
        key_bytes = key if self._key_serializer is None else \
            _serialized("key_serializer", self._key_serializer(topic, key))
        value_bytes = value if self._value_serializer is None else \
            _serialized("value_serializer", self._value_serializer(topic, value))
        self._wait_on_metadata(topic)
        if partition is None and self._partitioner is not None:
            cluster = self._metadata.cluster
            partition = self._partitioner(topic, key_bytes, value_bytes, cluster)
            if isinstance(partition, bool) or not isinstance(partition, int):
                raise TypeError(f"the partitioner returned {partition!r}, not an int")
            if partition < 0:
                # -1 would otherwise quietly hand the record to the built-in partitioner.
                raise ValueError(f"the partitioner returned {partition} for topic {topic!r}, not a partition >= 0")
        try:
            return self._accumulator.append(topic, -1 if partition is None else partition, key_bytes, value_bytes,
                                            headers, timestamp_ms, callback)
        except KafkaError as exc:
            if self._interceptors is not None:
                self._interceptors.on_send_error(exc)
            raise

    def send_batch(self, topic: str, values: Any, *, keys: Any = None, partition: int | None = None,
                   timestamp_ms: int | None = None,
                   headers: Iterable[tuple[str, bytes | None]] | None = None) -> BatchFuture:
        """Queues many records in one call and returns one BatchFuture for all of them.

        values (and keys, if given: one per value) is a list or tuple of bytes (None items are null), a 1-D numpy
        array of dtype object holding bytes, or a 2-D C-contiguous numpy uint8 array with one record per row.
        Keyed records go to murmur2(key) % partitions, keyless ones to the uniform sticky partition, all of them to
        `partition` when it is given; `timestamp_ms` (default: now, read once) and `headers` apply to every record.
        Partitioning and encoding run in compiled code with no Python object per record.

        Every argument and record is checked before the first record is queued (TypeError/ValueError naming the
        argument and index, RecordTooLargeError). Like send(), the call waits up to max_block_ms for the topic's
        metadata and for buffer memory; a call larger than buffer_memory waits for the I/O thread to free
        batches as it goes, and max_block_ms bounds each wait, not the whole call. If a wait runs out
        (BufferExhaustedError) or the producer closes meanwhile, the records queued so far are still sent: the
        error carries `records_appended` and `future` (a BatchFuture for those).

        With key/value serializers, interceptors or a custom partitioner configured, they run per record in
        Python first (one call each per record, so that path is only as fast as send()): serializers turn each
        item into bytes, interceptors see every record in on_send and on_acknowledgement (they may change a
        record's key, value and partition, not its topic, timestamp or headers), the partitioner picks each
        record's partition unless `partition` is given.
        """
        if self._closed:
            self._check_forked("send_batch()")
            raise ProducerClosedError("send_batch() after the producer was closed")
        if self._txn is not None and not self._txn.state_allows_send():
            raise self._txn.refusal("send_batch()")
        check_topic(topic)
        check_partition(partition)
        check_timestamp(timestamp_ms)
        headers = check_headers(headers)
        partitions = None
        slow = (self._interceptors is not None or self._key_serializer is not None
                or self._value_serializer is not None or self._partitioner is not None)
        if slow:
            values, keys, partitions = self._prepare_batch(topic, values, keys, partition, timestamp_ms, headers)
        else:
            self._wait_on_metadata(topic)
        try:
            # Per-record partitions from the slow path already hold the call's partition where nothing overrode it.
            future = append_batch(self._accumulator, topic, values, keys, partition if partitions is None else None,
                                  timestamp_ms, headers, partitions)
        except KafkaError as exc:
            if self._interceptors is not None:
                self._interceptors.on_send_error(exc)
            raise
        return future

    def _prepare_batch(self, topic: str, values: Any, keys: Any, partition: int | None, timestamp_ms: int | None,
                       headers: list[Any] | None) -> tuple[list[Any], list[Any] | None, list[int | None] | None]:
        """The slow path of send_batch(): interceptors, serializers and partitioner per record, in Python."""
        values = list(values)
        n = len(values)
        if keys is not None:
            keys = list(keys)
            if len(keys) != n:
                raise ValueError(f"keys has {len(keys)} items but values has {n}; give one key per value, or None")
        partitions: list[int | None] | None = None
        if self._interceptors is not None:
            on_send = self._interceptors.on_send
            partitions = [partition] * n
            for i in range(n):
                t, v, k, p, ts, h = on_send(topic, values[i], None if keys is None else keys[i], partition,
                                            timestamp_ms, headers)
                if t != topic or ts != timestamp_ms or h != headers:
                    raise ValueError(f"an interceptor changed the topic, timestamp or headers of record {i}; "
                                     f"send_batch() sends all records with the call's own")
                values[i] = v
                if k is not None and keys is None:
                    keys = [None] * n
                if keys is not None:
                    keys[i] = k
                partitions[i] = p
        if self._value_serializer is not None:
            serialize = self._value_serializer
            values = [serialize(topic, v) for v in values]
        if keys is not None and self._key_serializer is not None:
            serialize = self._key_serializer
            keys = [serialize(topic, k) for k in keys]
        # The rest wants bytes items (the custom partitioner sees bytes, as in send()).
        values = [v if v is None or isinstance(v, bytes) else _as_bytes(v, "values", i) for i, v in enumerate(values)]
        if keys is not None:
            keys = [k if k is None or isinstance(k, bytes) else _as_bytes(k, "keys", i) for i, k in enumerate(keys)]
        self._wait_on_metadata(topic)
        if self._partitioner is not None and partition is None:
            cluster = self._metadata.cluster
            chosen = partitions or [None] * n
            for i in range(n):
                if chosen[i] is None:
                    p = self._partitioner(topic, None if keys is None else keys[i], values[i], cluster)
                    if isinstance(p, bool) or not isinstance(p, int):
                        raise TypeError(f"the partitioner returned {p!r} for record {i}, not an int")
                    chosen[i] = p
            partitions = chosen
        return values, keys, partitions

    def _on_auth_change(self, err: KafkaError | None) -> None:
        # Called on the I/O thread. While a TLS handshake or authentication keeps failing, send() is the Python
        # method, which raises the error (from _wait_on_metadata); the compiled entry point comes back once a
        # connection authenticates.
        if not self._fast_send or self._closed:
            return
        if err is None:
            self.send = self._accumulator.send  # type: ignore[method-assign]
        else:
            self.__dict__.pop("send", None)

    def _wait_on_metadata(self, topic: str) -> None:
        auth_error = self._metadata.auth_error
        if auth_error is not None:
            raise auth_error
        acc = self._accumulator
        if acc.partition_count(topic):
            return
        deadline = time.monotonic() + self._max_block_s
        self._metadata.add_topic(topic)
        while not acc.partition_count(topic):
            if topic in self._metadata.cluster.invalid_topics:
                raise ValueError(f"topic {topic!r} is not a valid topic name (the broker says INVALID_TOPIC)")
            version = self._metadata.request_update()
            self._sender.wakeup()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaTimeoutError(
                    f"topic {topic!r} not present in metadata after {self.config.max_block_ms} ms (max_block_ms)")
            try:
                self._metadata.await_update(version, remaining, f"topic {topic!r}")
            except KafkaTimeoutError:
                raise KafkaTimeoutError(
                    f"topic {topic!r} not present in metadata after {self.config.max_block_ms} ms (max_block_ms)") from None

    # ---- transactions ---------------------------------------------------------------------------------------------
    # Java's KafkaProducer transactional API. Each call that sends a request waits for it up to `timeout` seconds
    # (default max_block_ms); when that runs out it raises KafkaTimeoutError and the request goes on: the same call
    # made again waits for it. Errors: TransactionStateError for a call out of order (its message names the call
    # expected); TransactionAbortableError when the transaction can only be aborted (abort_transaction(), then
    # begin_transaction() again; __cause__ is what failed); ProducerFencedError -- another producer took the
    # transactional id -- and other fatal errors, after which every pending record and every later call fails and
    # the producer can only be closed.

    def init_transactions(self, timeout: float | None = None) -> None:
        """Registers the transactional_id with its transaction coordinator (InitProducerId): gets the producer id
        and a new epoch, which fences any earlier producer with the same id, and completes or aborts the
        transaction such a producer left open. Call once, before the first begin_transaction()."""
        what = "init_transactions()"
        self._run_transactional(what, timeout, self._transactions(what).initialize_transactions)

    def begin_transaction(self) -> None:
        """Opens a transaction: from here until commit_transaction() or abort_transaction(), what send() and
        send_batch() queue is part of it. Sends no request."""
        self._transactions("begin_transaction()").begin_transaction()

    def send_offsets_to_transaction(self, offsets: Any, group_id: Any, timeout: float | None = None) -> None:
        """Commits consumer offsets as part of the open transaction: visible to the group once the transaction
        commits, never if it aborts (AddOffsetsToTxn, then TxnOffsetCommit to the group's coordinator).

        offsets maps (topic, partition) to the next offset to consume (an int, or an object with ``offset`` and
        optionally ``metadata``, ``leader_epoch``); a list of confluent-kafka TopicPartitions is taken too.
        group_id is the consumer group's id, or a consumer-group metadata object with ``group_id`` (and
        ``generation_id``, ``member_id``, ``group_instance_id`` if it has them, so the group coordinator can fence
        a zombie consumer). An empty offsets does nothing."""
        what = "send_offsets_to_transaction()"
        tm = self._transactions(what)
        parsed = make_offsets(offsets)
        group = make_group(group_id)
        if not parsed:
            _check_timeout("send_offsets_to_transaction", timeout)
            return
        self._run_transactional(what, timeout, lambda: tm.send_offsets_to_transaction(parsed, group))

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Sends everything the transaction queued (a flush), then commits it (EndTxn): its records become visible
        to read_committed consumers, its offsets to the group. Raises the error of a record that failed, as
        TransactionAbortableError: then abort_transaction()."""
        what = "commit_transaction()"
        self._run_transactional(what, timeout, self._transactions(what).begin_commit)

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Aborts the open transaction: records not sent yet fail with TransactionAbortedError, those in flight
        are waited for, then EndTxn(abort); read_committed consumers never see its records. Also the way out
        after TransactionAbortableError."""
        what = "abort_transaction()"
        self._run_transactional(what, timeout, self._transactions(what).begin_abort)

    def _transactions(self, what: str) -> TransactionManager:
        self._check_forked(what)
        if self._txn is None:
            raise TransactionStateError(f"{what} needs a transactional producer: create it with "
                                        f"transactional_id=... (Java's transactional.id)")
        if self._closed:
            raise ProducerClosedError(f"{what} after the producer was closed")
        return self._txn

    def _run_transactional(self, what: str, timeout: float | None,
                           start: Callable[[], TransactionalRequestResult]) -> None:
        # The arguments and the calling thread are checked before start() changes the TransactionManager's state:
        # a refused call leaves the transaction where it was.
        _check_timeout(what.removesuffix("()"), timeout)
        if threading.current_thread() is self._sender:
            raise KafkaError(f"{what} cannot be called from a producer callback: it would wait for the thread that "
                             f"runs the callback")
        result = start()
        self._sender.wakeup()
        wait = self._max_block_s if timeout is None else timeout
        if not result.wait(wait):
            raise KafkaTimeoutError(f"{what} did not complete within {wait:g} s; it goes on: call {what} again "
                                    f"to wait for it")
        if result.error is not None:
            assert self._txn is not None
            self._txn.raise_error(result.error)

    # ---- the rest of the API ---------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> None:
        """Blocks until every record sent before the call is complete; KafkaTimeoutError after timeout s."""
        _check_timeout("flush", timeout)
        self._check_forked("flush()")
        if threading.current_thread() is self._sender:
            # The I/O thread is the one that completes records: waiting on it from a callback could only
            # deadlock (or, with a timeout, stall every delivery for that long).
            raise KafkaError("flush() cannot be called from a producer callback: it would wait for the thread "
                             "that runs the callback; send from the callback and flush from another thread")
        self._accumulator.begin_flush()
        self._sender.wakeup()
        try:
            if not self._accumulator.await_flush_completion(timeout):
                raise KafkaTimeoutError(f"flush() did not complete within {timeout} s")
        finally:
            self._accumulator.end_flush()

    def partitions_for(self, topic: str) -> list[PartitionInfo]:
        """The topic's partitions, fetching its metadata first (up to max_block_ms)."""
        check_topic(topic)
        if self._closed:
            self._check_forked("partitions_for()")
            raise ProducerClosedError("partitions_for() after the producer was closed")
        self._wait_on_metadata(topic)
        return list(self._metadata.cluster.partitions_for_topic(topic) or ())

    def metrics(self) -> dict[str, float]:
        self._check_forked("metrics()")
        return self._metrics.snapshot()

    def close(self, timeout: float | None = None) -> None:
        """Sends what is queued (up to timeout s), then stops the I/O thread; close(0) fails pending records."""
        _check_timeout("close", timeout)  # before any state changes: a bad argument must not half-close
        if self._forked:
            # A forked child: what is pending belongs to the parent, whose I/O thread sends it; the lock, the
            # thread and the sockets here are copies of the parent's, and nothing may touch them.
            log.debug("close() of producer %s in process %d, forked from %d: nothing to do here", self.client_id,
                      os.getpid(), self._creator_pid)
            return
        with self._close_lock:
            if self._closed and not self._sender.is_alive():
                return
            self._closed = True
        if self._txn is not None:
            self._txn.mark_closed()  # later calls, and sends, raise ProducerClosedError
        self._metadata.close()
        in_callback = threading.current_thread() is self._sender
        if in_callback and (timeout is None or timeout > 0):
            # As the Java client: the I/O thread cannot wait for itself to send what is pending, so a close()
            # from a callback is a close(0) -- pending records fail -- instead of a self-join that raises.
            log.warning("close(%s) called from a producer callback: closing at once, failing pending records",
                        timeout)
            timeout = 0
        if timeout is not None and timeout <= 0:
            self._sender.initiate_close(force=True)
        else:
            self._sender.initiate_close()
            self._sender.join(timeout)
            if self._sender.is_alive():
                log.warning("close(%s): records still pending; failing them", timeout)
                self._sender.initiate_close(force=True)
        if not in_callback:
            self._sender.join()
        self._pool.close()
        if self._interceptors is not None:
            self._interceptors.close()
        log.info("producer %s closed", self.client_id)

    # ---- fork (kafkaprod.fork) ------------------------------------------------------------------------------------
    def _forked_in_child(self) -> None:
        # Right after os.fork(), in the child, with only the forking thread alive: flags only (see kafkaprod.fork).
        # Closed, so that the finalizer does nothing, the checks of the slow paths meet _check_forked, and send()
        # -- the accumulator's compiled method, also where a caller kept it as a bound method -- finds appends
        # refused and falls to _send_slow.
        self._forked = True
        self._closed = True
        self._accumulator.refuse_appends(_fork.forked_error("a record append", "KafkaProducer", self._creator_pid))
        self.send = self._send_in_forked_child  # type: ignore[method-assign]

    def _send_in_forked_child(self, *args: Any, **kwargs: Any) -> FutureRecordMetadata:
        raise _fork.forked_error("send()", "KafkaProducer", self._creator_pid)

    def _check_forked(self, what: str) -> None:
        if self._forked:
            raise _fork.forked_error(what, "KafkaProducer", self._creator_pid)

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort for forgotten producers
        try:
            if not self._closed:
                self.close(0)
        except Exception:
            pass


def _serialized(option: str, data: Any) -> Any:
    # Checked here so the error blames the serializer, not the caller's value (which may well be a str).
    if data is None or isinstance(data, (bytes, bytearray, memoryview)):
        return data
    try:
        memoryview(data).release()
    except TypeError:
        raise TypeError(f"{option} returned {type(data).__name__} {data!r:.60}, not bytes or None") from None
    return data


def _check_timeout(method: str, timeout: Any) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{method}(timeout): timeout must be seconds as a number or None, got "
                        f"{type(timeout).__name__} {timeout!r}")
    if not timeout >= 0:  # also refuses NaN
        raise ValueError(f"{method}(timeout): timeout must be >= 0 seconds or None, got {timeout!r}")


def _as_bytes(item: Any, what: str, index: int) -> bytes:
    """A serialized (or array-row) item as bytes for the slow send_batch() path; TypeError naming it otherwise."""
    try:
        return bytes(memoryview(item))
    except TypeError:
        raise TypeError(f"{what}[{index}] must be bytes or None (after serialization), got {type(item).__name__}") from None
