"""One producer client's timed run, inside a fresh child process: the child side of the comparison harness.

:mod:`kafkaprod.tools.compare` (behind ``kafkaprod-perf --compare`` and ``bench/compare.py``) starts this file as
a plain script, by path::

    PYTHON .../kafkaprod/tools/runners.py SPEC_JSON RESULT_PATH   # one run; its measurements go to RESULT_PATH
    PYTHON .../kafkaprod/tools/runners.py --probe CLIENT          # the client's version as JSON, or exit 3

It imports only the standard library and the client under test, so any interpreter with the client installed can
run it, whatever kafkaprod that interpreter has (or none, for a peer client).

The records, the harness's one payload scheme (``kafkaprod-perf`` without ``--compare`` makes the same ones):
every value is the same ``record_size`` bytes of uppercase letters (:func:`make_value`: deterministic, and about as
compressible as text, like the random letters of Java's ``ProducerPerformance``); with ``key_size`` > 0 the keys
cycle through ``key_count`` distinct keys of ``key_size`` bytes (:func:`make_keys`). This is the scheme of the
former bench/runners.py, kept over kafkaprod-perf's former one (seeded random letters, zero-padded decimal keys)
so that the README's published benchmark numbers and bench/ceiling.py's replay stay comparable.

Every client runs the same shape of work, so that only the client differs:

1. build the producer with the workload's settings (acks, idempotence, linger, batch size, compression, max
   request size; confluent-kafka gets the max request size as ``message.max.bytes``);
2. send one warm-up record and wait for its acknowledgement, so connections and topic metadata exist (a client
   that fetches metadata lazily would otherwise pay that inside the timed window); the warm-up record stays in
   the topic, so the parent expects ``num_records + 1`` records there;
3. the timed window: CPU time (``getrusage(RUSAGE_SELF)``: user+sys of every thread of this process, including
   librdkafka's C threads and the producers' I/O threads) and wall time are read just before the first send and
   just after the final flush returned, i.e. after the last acknowledgement (with ``callback`` or ``future``
   delivery: once every record's outcome has been counted too);
4. close the producer (outside the window).

The per-record loop calls the client's own send with positional ``(topic, value[, key])``. What it does about
each record's outcome is the delivery mode (``spec["delivery"]``):

- ``none`` (default): fire and forget; whatever send returns is dropped, for every client. Whether every record
  arrived is checked by the parent, on the broker, after the run.
- ``callback``: a delivery callback per record: kafkaprod ``send(..., callback=cb)``, confluent-kafka
  ``produce(..., on_delivery=cb)``, kafka-python ``send(...).add_callback(cb).add_errback(eb)``, aiokafka
  ``(await send(...)).add_done_callback(cb)``.
- ``future``: every returned future is kept and, after the final flush, resolved one by one: kafkaprod and
  kafka-python ``get()``, aiokafka ``await``; confluent-kafka has no futures and passes ``on_delivery`` as in
  ``callback``.
- ``gather`` (the asyncio clients only): every returned awaitable is kept and, with no flush, awaited all at once
  with ``asyncio.gather(*futures, return_exceptions=True)``, as a service written for aiokafka does.

The asyncio clients run on ``spec["event_loop"]``: ``asyncio`` (default) or ``uvloop``.

Two optional parts of the spec, used by bench/matrix.py: ``topics`` (a list of topic names; record i goes to
topic i % len(topics), one warm-up record goes to each, and only kafkaprod and confluent run it; the loops are in
``runners_topics.py``) and ``batch_stats`` (each client's own batching figures -- Produce requests, records per
request, bytes per batch -- from kafkaprod's metrics() and librdkafka's statistics every ``stats_interval_ms``;
read outside the window, see ``runners_batching.py``).

The bulk clients (``kafkaprod-batch``: ``send_batch()``; ``confluent-batch``: ``produce_batch()``) send ``chunk``
records per call, their lists (and confluent's message dicts) built before the window. With ``callback`` or
``future`` kafkaprod-batch keeps every call's BatchFuture and calls its ``get()`` after the flush, and
confluent-batch passes the call's ``on_delivery``. In those modes delivered and failed records are counted (per
record) and the run fails if any record failed or went unreported.
"""
from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

CLIENTS = ("kafkaprod", "confluent", "aiokafka", "kafka-python", "kafkaprod-batch", "confluent-batch",
           "kafkaprod-aio", "confluent-aio")
#: The module each client imports.
MODULES = {"kafkaprod": "kafkaprod", "confluent": "confluent_kafka", "aiokafka": "aiokafka", "kafka-python": "kafka",
           "kafkaprod-batch": "kafkaprod", "confluent-batch": "confluent_kafka", "kafkaprod-aio": "kafkaprod",
           "confluent-aio": "confluent_kafka"}
#: What the sending loop does about each record's outcome (see the module docstring).
DELIVERY_MODES = ("none", "callback", "future", "gather")
#: The clients whose send is a coroutine; only they have the gather mode and an event loop to choose.
ASYNCIO_CLIENTS = ("aiokafka", "kafkaprod-aio", "confluent-aio")
#: Event loops the asyncio clients can run on.
EVENT_LOOPS = ("asyncio", "uvloop")
#: Records per call of the bulk APIs (kafkaprod's send_batch, confluent-kafka's produce_batch) by default.
DEFAULT_CHUNK = 10_000
#: Distinct keys the keyed records cycle through by default.
DEFAULT_KEY_COUNT = 10_000
_WARMUP_TIMEOUT_S = 60.0
_FLUSH_TIMEOUT_S = 600.0


# ------------------------------------------------------------------------------------------------ the records


def make_value(size: int) -> bytes:
    """``size`` uppercase letters, the same for every record: deterministic, compressible about as text is."""
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return bytes(letters[(i * 7919 + 13) % 26] for i in range(size))


def make_keys(size: int, count: int = DEFAULT_KEY_COUNT) -> list[bytes] | None:
    """``count`` distinct keys of ``size`` bytes (hex digits, padded with ``k``), cycled through by the loop;
    None for keyless records (``size`` 0)."""
    if size <= 0:
        return None
    return [i.to_bytes(8, "big").hex().encode()[-size:].rjust(size, b"k") for i in range(count)]


class Records:
    """What one run sends: ``n`` records of one value, keyless or with keys cycling from the first."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.n: int = spec["num_records"]
        self.value = make_value(spec["record_size"])
        self.keys = make_keys(spec["key_size"], spec["key_count"])

    @property
    def first_key(self) -> bytes | None:
        return None if self.keys is None else self.keys[0]

    def key_stream(self) -> Any:
        """The n keys in sending order (call only for keyed records)."""
        assert self.keys is not None
        return itertools.islice(itertools.cycle(self.keys), self.n)

    def chunks(self, chunk: int) -> list[tuple[list[bytes], list[bytes] | None]]:
        """The records as (values, keys) lists of ``chunk`` records each, for the bulk APIs."""
        keys = None if self.keys is None else list(self.key_stream())
        out = []
        for start in range(0, self.n, chunk):
            end = min(self.n, start + chunk)
            out.append(([self.value] * (end - start), None if keys is None else keys[start:end]))
        return out


# ------------------------------------------------------------------------------------------------ measuring


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _own_peak_rss_bytes() -> int | None:
    # VmHWM: the peak of this process's own address space. ru_maxrss is not that: Linux folds the spawning
    # parent's peak into it at exec, so a child of a parent that once held 300 MB reports at least 300 MB.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _process_cpu_s(pid: int | None) -> float | None:
    # The broker's user+sys CPU seconds from /proc (same host); None when its pid is unknown or it is remote.
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_cpu_s() -> float | None:
    # All CPUs' non-idle time (/proc/stat); minus this process and the broker it is the rest of the machine's load,
    # which on a shared machine says how much a run was disturbed.
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Window:
    """CPU and wall time from the first send to the last acknowledgement (and the broker's CPU meanwhile)."""

    def __init__(self, broker_pid: int | None = None) -> None:
        self.broker_pid = broker_pid

    def start(self) -> None:
        self.rss_start = _rss_bytes()
        self.broker0 = _process_cpu_s(self.broker_pid)
        self.machine0 = _machine_busy_cpu_s()
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.t1 = time.perf_counter()
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self.broker1 = _process_cpu_s(self.broker_pid)
        self.machine1 = _machine_busy_cpu_s()

    def result(self, spec: dict[str, Any]) -> dict[str, Any]:
        n = spec["num_records"]
        elapsed = self.t1 - self.t0
        user = self.ru1.ru_utime - self.ru0.ru_utime
        system = self.ru1.ru_stime - self.ru0.ru_stime
        record_bytes = spec["record_size"] + spec["key_size"]
        broker = None if self.broker0 is None or self.broker1 is None else self.broker1 - self.broker0
        other = None
        if self.machine0 is not None and self.machine1 is not None:
            other = max(0.0, self.machine1 - self.machine0 - (user + system) - (broker or 0.0))
        return {
            "records": n,
            "elapsed_s": elapsed,
            "records_per_s": n / elapsed,
            # MiB like Java's tool ("MB/sec" there is 2**20 bytes); key bytes count when there are keys.
            "mb_per_s": n * record_bytes / elapsed / 2**20,
            "cpu_user_s": user,
            "cpu_sys_s": system,
            "cpu_s": user + system,
            "cpu_us_per_record": (user + system) / n * 1e6,
            "rss_start_mb": self.rss_start / 2**20,
            # ru_maxrss is the process's lifetime peak (KiB on Linux), so it includes imports and setup -- and,
            # on Linux, the parent's peak when it spawned this child (see _own_peak_rss_bytes).
            "peak_rss_mb": self.ru1.ru_maxrss / 1024,
            "peak_rss_own_mb": None if (own := _own_peak_rss_bytes()) is None else own / 2**20,
            "broker_cpu_s": broker,
            # Everything else on the machine (other processes); with an unknown broker pid it includes the broker.
            "other_cpu_s": other,
        }


# ------------------------------------------------------------------------------------------------ the clients


def client_version(client: str) -> dict[str, str]:
    """Import the client the way the run will and say which one it is (raises ImportError when unusable)."""
    info: dict[str, str]
    if client in ("kafkaprod", "kafkaprod-batch", "kafkaprod-aio"):
        import kafkaprod
        from kafkaprod import KafkaProducer

        if client == "kafkaprod-batch" and not hasattr(KafkaProducer, "send_batch"):
            raise ImportError("this kafkaprod has no KafkaProducer.send_batch")
        if client == "kafkaprod-aio":
            import kafkaprod.aio  # noqa: F401  (an older kafkaprod has none: ImportError)
        info = {"version": kafkaprod.__version__, "path": os.path.dirname(kafkaprod.__file__)}
    elif client in ("confluent", "confluent-batch", "confluent-aio"):
        import confluent_kafka

        if client == "confluent-aio":
            import confluent_kafka.aio  # noqa: F401
        if client == "confluent-batch" and not hasattr(confluent_kafka.Producer, "produce_batch"):
            raise ImportError(f"confluent-kafka {confluent_kafka.__version__} has no Producer.produce_batch")
        # str(): confluent-kafka's stubs type __version__ as a (str, int) tuple; it is the version string.
        info = {"version": str(confluent_kafka.__version__), "librdkafka": confluent_kafka.libversion()[0],
                "path": os.path.dirname(confluent_kafka.__file__)}
    elif client == "aiokafka":
        import aiokafka

        info = {"version": aiokafka.__version__, "path": os.path.dirname(aiokafka.__file__)}
    elif client == "kafka-python":
        import kafka

        info = {"version": kafka.__version__, "path": os.path.dirname(kafka.__file__)}
    else:
        raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
    info["python"] = sys.executable
    return info


def _acks(spec: dict[str, Any]) -> str | int:
    # The workload stores "all", "1" or "0"; every client here takes "all" or an int.
    return "all" if spec["acks"] == "all" else int(spec["acks"])


def _codec(spec: dict[str, Any]) -> str | None:
    # kafka-python and aiokafka spell "no compression" None.
    return None if spec["compression"] == "none" else spec["compression"]


def _settle_collector() -> None:
    # The bulk clients' inputs are a million references (or dicts) made just before the window; the garbage
    # collector's first passes over such fresh objects belong to building them, not to producing them.
    gc.collect()


class DeliveryError(Exception):
    """Records of the run failed, or their outcomes never arrived (callback and future modes)."""


class Outcomes:
    """Delivered and failed records, counted by the delivery callbacks or from the futures (not in mode none).

    Each client calls its callbacks on one thread (kafkaprod's and kafka-python's I/O thread, the thread serving
    confluent-kafka's poll()/flush(), aiokafka's event loop), so the counts need no lock -- except kafka-python's,
    whose add_callback() runs the callback at once, on the sending thread, when the record is already done.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.delivered = 0
        self.failed = 0
        self.first_errors: list[str] = []
        self._lock = threading.Lock()

    def fail(self, error: object, records: int = 1) -> None:
        self.failed += records
        if len(self.first_errors) < 5:
            self.first_errors.append(f"{type(error).__name__}: {error}")

    def on_kafkaprod(self, metadata: Any, exception: BaseException | None) -> None:
        if exception is None:
            self.delivered += 1
        else:
            self.fail(exception)

    def on_confluent(self, err: Any, msg: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.fail(err)

    def on_kafka_python_success(self, metadata: Any) -> None:
        with self._lock:
            self.delivered += 1

    def on_kafka_python_failure(self, exception: BaseException) -> None:
        with self._lock:
            self.fail(exception)

    def on_aiokafka(self, future: Any) -> None:
        exception = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if exception is None:
            self.delivered += 1
        else:
            self.fail(exception)

    def settled(self, n: int) -> bool:
        return self.delivered + self.failed >= n

    def wait(self, n: int, timeout: float = _FLUSH_TIMEOUT_S) -> None:
        """Until all n outcomes are counted: callbacks may still be running when flush() returns."""
        deadline = time.monotonic() + timeout
        while not self.settled(n) and time.monotonic() < deadline:
            time.sleep(0.0005)

    async def wait_async(self, n: int, timeout: float = _FLUSH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self.settled(n) and time.monotonic() < deadline:
            await asyncio.sleep(0)

    def get_each(self, futures: list[Any]) -> None:
        """Every record future's get() (kafkaprod, kafka-python), after the final flush."""
        for future in futures:
            try:
                future.get(timeout=_FLUSH_TIMEOUT_S)
            except Exception as exc:  # every failure kind counts; the first ones are named
                self.fail(exc)
            else:
                self.delivered += 1

    def get_each_batch(self, futures: list[Any]) -> None:
        """Every BatchFuture's get() (kafkaprod send_batch), after the final flush; failures counted per record."""
        for future in futures:
            try:
                future.get(_FLUSH_TIMEOUT_S)
            except Exception as exc:
                try:
                    failed = len(future.failed_indices(0))
                except Exception:  # not even done: every record of the call counts as failed
                    failed = len(future)
                self.delivered += len(future) - failed
                self.fail(exc, failed)
            else:
                self.delivered += len(future)

    def report(self, n: int) -> dict[str, Any]:
        """The run's delivery fields; DeliveryError when any record failed or went unreported."""
        if self.mode == "none":
            return {"delivery": "none"}
        if self.failed or self.delivered != n:
            raise DeliveryError(f"{self.failed:,} of {n:,} records failed, {self.delivered:,} delivered "
                                f"(delivery {self.mode}); first errors: {self.first_errors}")
        return {"delivery": self.mode, "delivered": self.delivered, "failed": self.failed}


# The per-record loops, one per call shape. Each calls the client's own method directly, with positional
# (topic, value[, key]), so that the loop adds as little as possible to what is measured.


def _send_each(send: Callable[..., Any], topic: str, records: Records) -> None:
    """Fire and forget (kafkaprod, kafka-python): whatever send() returns is dropped."""
    value = records.value
    if records.keys is None:
        for _ in itertools.repeat(None, records.n):
            send(topic, value)
    else:
        for key in records.key_stream():
            send(topic, value, key)


def _send_each_holding(send: Callable[..., Any], topic: str, records: Records) -> list[Any]:
    """Every future send() returns is kept (kafkaprod, kafka-python)."""
    value = records.value
    held: list[Any] = []
    hold = held.append
    if records.keys is None:
        for _ in itertools.repeat(None, records.n):
            hold(send(topic, value))
    else:
        for key in records.key_stream():
            hold(send(topic, value, key))
    return held


def _send_each_kafkaprod_callback(send: Callable[..., Any], topic: str, records: Records,
                                  outcomes: Outcomes) -> None:
    value, callback = records.value, outcomes.on_kafkaprod
    if records.keys is None:
        for _ in itertools.repeat(None, records.n):
            send(topic, value, callback=callback)
    else:
        for key in records.key_stream():
            send(topic, value, key, callback=callback)


def _send_each_kafka_python_callback(send: Callable[..., Any], topic: str, records: Records,
                                     outcomes: Outcomes) -> None:
    value, ok, failed = records.value, outcomes.on_kafka_python_success, outcomes.on_kafka_python_failure
    if records.keys is None:
        for _ in itertools.repeat(None, records.n):
            send(topic, value).add_callback(ok).add_errback(failed)
    else:
        for key in records.key_stream():
            send(topic, value, key).add_callback(ok).add_errback(failed)


def _run_sync(producer: Any, spec: dict[str, Any], records: Records, window: Window,
              send_with_callback: Callable[[Callable[..., Any], str, Records, Outcomes], None]) -> dict[str, Any]:
    """The run of a client whose send() returns a future at once (kafkaprod, kafka-python), in every mode."""
    topic, mode, topics = spec["topic"], spec["delivery"], spec.get("topics")
    # One warm-up record per topic, so every topic's metadata is there before the window; sent together, as
    # confluent's are, rather than one round trip after another.
    for warm in [producer.send(t, records.value, records.first_key) for t in topics or [topic]]:
        warm.get(timeout=_WARMUP_TIMEOUT_S)
    outcomes = Outcomes(mode)
    send = producer.send
    batching = _sibling("runners_batching") if spec.get("batch_stats") else None
    before = batching.kafkaprod_snapshot(producer) if batching else None
    loop_over_topics = _sibling("runners_topics").kafkaprod_loop if topics else None
    window.start()
    if loop_over_topics is not None:
        held = loop_over_topics(send, records, topics, mode, outcomes.on_kafkaprod)
        producer.flush()
        if mode == "future":
            outcomes.get_each(held)
        elif mode == "callback":
            outcomes.wait(records.n)
    elif mode == "none":
        _send_each(send, topic, records)
        producer.flush()
    elif mode == "future":
        futures = _send_each_holding(send, topic, records)
        producer.flush()
        outcomes.get_each(futures)
    else:
        send_with_callback(send, topic, records, outcomes)
        producer.flush()
        outcomes.wait(records.n)
    window.stop()
    # The producer's own batching figures, read after the window and before close().
    figures = batching.kafkaprod_figures(before, batching.kafkaprod_snapshot(producer)) if batching else {}
    producer.close()
    return {**outcomes.report(records.n), **figures}


def _kafkaprod(spec: dict[str, Any]) -> Any:
    from kafkaprod import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"], acks=_acks(spec), enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"], batch_size=spec["batch_size"], max_request_size=spec["max_request_size"],
        compression_type=spec["compression"], client_id=spec["client_id"], **spec.get("security", {}))


def _librdkafka_security(spec: dict[str, Any]) -> dict[str, Any]:
    from kafkaprod.tools.broker import librdkafka_security

    return librdkafka_security(spec.get("security", {}))


def run_kafkaprod(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    return _run_sync(_kafkaprod(spec), spec, records, window, _send_each_kafkaprod_callback)


def run_kafkaprod_batch(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    producer = _kafkaprod(spec)
    topic, mode = spec["topic"], spec["delivery"]
    chunks = records.chunks(spec["chunk"])
    _settle_collector()
    producer.send(topic, records.value, records.first_key).get(timeout=_WARMUP_TIMEOUT_S)
    outcomes = Outcomes(mode)
    send_batch = producer.send_batch
    window.start()
    if mode == "none":
        # One call per chunk; the returned futures are dropped like the per-record loops drop theirs.
        for values, keys in chunks:
            send_batch(topic, values, keys=keys)
        producer.flush()
    else:
        # callback and future alike: the one BatchFuture of every call is kept and its get() called.
        futures = [send_batch(topic, values, keys=keys) for values, keys in chunks]
        producer.flush()
        outcomes.get_each_batch(futures)
    window.stop()
    producer.close()
    return outcomes.report(records.n)


def _librdkafka_stats(spec: dict[str, Any]) -> Any:
    """The run's statistics collector (runners_batching.LibrdkafkaStats) when the spec asks for batching figures."""
    if not spec.get("batch_stats"):
        return None
    return _sibling("runners_batching").LibrdkafkaStats(spec.get("stats_interval_ms", 100),
                                                        len(spec.get("topics") or [spec["topic"]]))


def _confluent(spec: dict[str, Any], records: Records, errors: list[str], stats: Any = None) -> Any:
    from confluent_kafka import KafkaException, Producer

    producer = Producer({
        "bootstrap.servers": spec["bootstrap_servers"], "acks": _acks(spec), "enable.idempotence": spec["idempotence"],
        "linger.ms": spec["linger_ms"], "batch.size": spec["batch_size"], "compression.type": spec["compression"],
        "message.max.bytes": spec["max_request_size"], "client.id": spec["client_id"],
        "error_cb": lambda err: errors.append(str(err)), **_librdkafka_security(spec),
        **(stats.config() if stats is not None else {}),
    })
    warm: list[Any] = []
    topics = spec.get("topics") or [spec["topic"]]
    for topic in topics:  # one warm-up record per topic: each topic's metadata before the window
        producer.produce(topic, records.value, records.first_key, on_delivery=lambda err, msg: warm.append(err))
    if producer.flush(_WARMUP_TIMEOUT_S) or warm != [None] * len(topics):
        raise KafkaException(f"warm-up record not delivered: {warm} {errors}")
    if stats is not None:
        stats.open_window(producer)
    return producer


def _confluent_flushed(producer: Any, window: Window, outcomes: Outcomes, n: int,
                       errors: list[str], stats: Any = None) -> dict[str, Any]:
    from confluent_kafka import KafkaException

    left = producer.flush(_FLUSH_TIMEOUT_S)  # serves the delivery callbacks still due
    if outcomes.mode != "none":
        outcomes.wait(n)
    window.stop()
    if left:
        raise KafkaException(f"{left} records still undelivered after flush({_FLUSH_TIMEOUT_S:.0f}); "
                             f"errors: {errors[:5]}")
    figures = stats.figures(producer, n) if stats is not None else {}
    return {**outcomes.report(n), "client_errors": errors, **figures}


def run_confluent(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    errors: list[str] = []
    stats = _librdkafka_stats(spec)
    producer = _confluent(spec, records, errors, stats)
    produce, poll = producer.produce, producer.poll
    topic, value, topics = spec["topic"], records.value, spec.get("topics")
    # confluent-kafka has no futures: callback and future both pass on_delivery.
    outcomes = Outcomes(spec["delivery"])
    on_delivery = outcomes.on_confluent
    loop_over_topics = _sibling("runners_topics").confluent_loop if topics else None
    window.start()
    # produce() raises BufferError when librdkafka's queue (queue.buffering.max.messages/kbytes) is full; serving
    # delivery reports with poll() makes room. This is the documented way to push records as fast as it takes them.
    if loop_over_topics is not None:
        loop_over_topics(produce, poll, records, topics, None if outcomes.mode == "none" else on_delivery)
    elif outcomes.mode == "none":
        if records.keys is None:
            for _ in itertools.repeat(None, records.n):
                while True:
                    try:
                        produce(topic, value)
                        break
                    except BufferError:
                        poll(0.0005)
        else:
            for key in records.key_stream():
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        poll(0.0005)
    elif records.keys is None:
        for _ in itertools.repeat(None, records.n):
            while True:
                try:
                    produce(topic, value, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.0005)
    else:
        for key in records.key_stream():
            while True:
                try:
                    produce(topic, value, key, on_delivery=on_delivery)
                    break
                except BufferError:
                    poll(0.0005)
    return _confluent_flushed(producer, window, outcomes, records.n, errors, stats)


def run_confluent_batch(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    from confluent_kafka import KafkaError, KafkaException

    errors: list[str] = []
    stats = _librdkafka_stats(spec)
    producer = _confluent(spec, records, errors, stats)
    topic = spec["topic"]
    # produce_batch takes one dict per message (and marks those it refused with an '_error'); they are made
    # here, outside the window.
    chunks: list[list[dict[str, Any]]] = [[{"value": v} if keys is None else {"value": v, "key": k}
               for v, k in zip(values, keys or itertools.repeat(None))] for values, keys in records.chunks(spec["chunk"])]
    _settle_collector()
    produce_batch, poll = producer.produce_batch, producer.poll
    queue_full = KafkaError._QUEUE_FULL
    outcomes = Outcomes(spec["delivery"])
    # callback and future alike: the call's on_delivery, for every message of it.
    options = {} if outcomes.mode == "none" else {"on_delivery": outcomes.on_confluent}
    window.start()
    # produce_batch queues what fits in librdkafka's queue and marks the rest with an '_error' (QUEUE_FULL);
    # serving delivery reports with poll() makes room, then the rest is offered again.
    for chunk in chunks:
        while True:
            try:
                accepted = produce_batch(topic, chunk, **options)
            except BufferError:
                poll(0.0005)
                continue
            if accepted == len(chunk):
                break
            rest = []
            for message in chunk:
                err = message.pop("_error", None)
                if err is not None:
                    if err.code() != queue_full:
                        raise KafkaException(err)
                    rest.append(message)
            chunk = rest
            poll(0.0005)
    return _confluent_flushed(producer, window, outcomes, records.n, errors, stats)


def run_kafka_python(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"], acks=_acks(spec), enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"], batch_size=spec["batch_size"], max_request_size=spec["max_request_size"],
        compression_type=_codec(spec), client_id=spec["client_id"], **spec.get("security", {}))
    return _run_sync(producer, spec, records, window, _send_each_kafka_python_callback)


_SIBLINGS: dict[str, Any] = {}


def _sibling(name: str) -> Any:
    # Parts of the child live beside this file (runners_asyncio.py, runners_topics.py, runners_batching.py) and are
    # loaded from their paths: this file runs as a script under `python -I` (no script directory on sys.path), under
    # any interpreter, whatever kafkaprod that interpreter has installed.
    if name not in _SIBLINGS:
        import importlib.util

        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".py")
        spec = importlib.util.spec_from_file_location("_kafkaprod_" + name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _SIBLINGS[name] = module
    return _SIBLINGS[name]


def _asyncio_runners() -> Any:
    return _sibling("runners_asyncio")


def _run_asyncio(spec: dict[str, Any], records: Records, window: Window, client: str) -> dict[str, Any]:
    outcomes = Outcomes(spec["delivery"])
    settings: dict[str, Any] = {"acks": _acks(spec), "codec": _codec(spec), "warmup_timeout_s": _WARMUP_TIMEOUT_S}
    if client == "confluent-aio":
        settings["librdkafka_security"] = _librdkafka_security(spec)
    _asyncio_runners().run(client, spec, settings, records, window, outcomes)
    return {**outcomes.report(records.n), "event_loop_class": settings.get("event_loop_class")}


def run_aiokafka(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    return _run_asyncio(spec, records, window, "aiokafka")


def run_kafkaprod_aio(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    return _run_asyncio(spec, records, window, "kafkaprod-aio")


def run_confluent_aio(spec: dict[str, Any], records: Records, window: Window) -> dict[str, Any]:
    return _run_asyncio(spec, records, window, "confluent-aio")


RUNNERS: dict[str, Callable[[dict[str, Any], Records, Window], dict[str, Any]]] = {
    "kafkaprod": run_kafkaprod,
    "confluent": run_confluent,
    "aiokafka": run_aiokafka,
    "kafka-python": run_kafka_python,
    "kafkaprod-batch": run_kafkaprod_batch,
    "confluent-batch": run_confluent_batch,
    "kafkaprod-aio": run_kafkaprod_aio,
    "confluent-aio": run_confluent_aio,
}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """One run as the spec says; the window's measurements, the delivery counts and which client it was."""
    runner = RUNNERS[spec["client"]]
    spec.setdefault("delivery", "none")
    if spec.get("topics") and spec["client"] not in _sibling("runners_topics").CLIENTS:
        raise ValueError(f"{spec['client']} cannot send to several topics (spec 'topics'); "
                         f"only {', '.join(_sibling('runners_topics').CLIENTS)} can")
    if spec["delivery"] not in DELIVERY_MODES:
        raise ValueError(f"unknown delivery mode {spec['delivery']!r}; known: {', '.join(DELIVERY_MODES)}")
    if spec["delivery"] == "gather" and spec["client"] not in ASYNCIO_CLIENTS:
        raise ValueError(f"delivery mode 'gather' is asyncio.gather(): only {', '.join(ASYNCIO_CLIENTS)} have it, "
                         f"not {spec['client']}")
    if spec.setdefault("event_loop", "asyncio") not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {spec['event_loop']!r}; known: {', '.join(EVENT_LOOPS)}")
    records = Records(spec)
    window = Window(spec.get("broker_pid"))
    extras = runner(spec, records, window)
    result = window.result(spec)
    result.update(extras)
    result.update(client=spec["client"], topic=spec["topic"], **client_version(spec["client"]))
    return result


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--probe":
        try:
            info = client_version(argv[1])
        except ImportError as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return 3
        print(json.dumps(info))
        return 0
    if len(argv) != 2:
        print("usage: runners.py SPEC_JSON RESULT_PATH | runners.py --probe CLIENT", file=sys.stderr)
        return 2
    result = run(json.loads(argv[0]))
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    # Run as a script, this file's directory (kafkaprod/tools) heads sys.path, where its siblings would shadow
    # top-level modules of the same names; nothing here imports them.
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    sys.exit(main(sys.argv[1:]))
