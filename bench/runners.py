"""One producer client's timed run, executed inside a fresh child process by bench/compare.py.

Usage (compare.py does this): ``python bench/runners.py SPEC_JSON RESULT_PATH``; ``python bench/runners.py
--probe CLIENT`` prints the client's version as JSON or exits 3 if it cannot be imported.

Every client runs the same shape of work so that only the client differs:

1. build the producer with the workload's settings (see ``_build_*``);
2. send one warm-up record and wait for its acknowledgement, so connections and topic metadata exist (a client
   that fetches metadata lazily would otherwise pay that inside the timed window); the warm-up record stays in
   the topic, so compare.py expects ``num_records + 1`` records there;
3. timed window: CPU time (``getrusage(RUSAGE_SELF)``: user+sys of every thread of this process, including
   librdkafka's C threads and the producers' I/O threads) and wall time are read just before the first send and
   just after the final flush returned, i.e. after the last acknowledgement;
4. close the producer (outside the window).

The loop calls the client's fire-and-forget send with positional ``(topic, value[, key])`` and drops the returned
future: no per-record callback, no per-record future bookkeeping, for any client. Whether every record arrived is
checked afterwards by compare.py on the broker, not here.

Only the standard library and the client under test are imported: this file runs as a script in the child, whose
import path holds the repository root (for an in-place build of kafkaprod) ahead of site-packages.
"""
from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

CLIENTS = ("kafkaprod", "confluent", "aiokafka", "kafka-python", "kafkaprod-batch", "confluent-batch")
_MODULES = {"kafkaprod": "kafkaprod", "confluent": "confluent_kafka", "aiokafka": "aiokafka", "kafka-python": "kafka",
            "kafkaprod-batch": "kafkaprod", "confluent-batch": "confluent_kafka"}
# Records per call of the bulk APIs (kafkaprod's send_batch, confluent-kafka's produce_batch).
BATCH_CHUNK = 10_000
# Requests may carry one full batch per partition; let every client put them in one request as Java would
# (max.request.size bounds a whole request in Java, kafka-python, aiokafka and kafkaprod).
_MAX_REQUEST_SIZE = 64 * 1024 * 1024
_WARMUP_TIMEOUT_S = 60.0


def client_version(client: str) -> dict[str, str]:
    """Import the client the way the run will and say which one it is (raises ImportError when unusable)."""
    if client in ("kafkaprod", "kafkaprod-batch"):
        import kafkaprod
        from kafkaprod import KafkaProducer  # noqa: F401  (the producer is what must exist, not just the package)

        if client == "kafkaprod-batch" and not hasattr(KafkaProducer, "send_batch"):
            raise ImportError("this kafkaprod has no KafkaProducer.send_batch")
        return {"version": kafkaprod.__version__, "path": os.path.dirname(kafkaprod.__file__)}
    if client in ("confluent", "confluent-batch"):
        import confluent_kafka

        if client == "confluent-batch" and not hasattr(confluent_kafka.Producer, "produce_batch"):
            raise ImportError(f"confluent-kafka {confluent_kafka.__version__} has no Producer.produce_batch")
        return {"version": confluent_kafka.__version__, "librdkafka": confluent_kafka.libversion()[0],
                "path": os.path.dirname(confluent_kafka.__file__)}
    if client == "aiokafka":
        import aiokafka

        return {"version": aiokafka.__version__, "path": os.path.dirname(aiokafka.__file__)}
    if client == "kafka-python":
        import kafka

        return {"version": kafka.__version__, "path": os.path.dirname(kafka.__file__)}
    raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")


def make_value(size: int) -> bytes:
    # Uppercase letters like Java's ProducerPerformance: compressible about as much as text, deterministic.
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return bytes(letters[(i * 7919 + 13) % 26] for i in range(size))


def make_keys(size: int, count: int) -> list[bytes] | None:
    """``count`` distinct keys of ``size`` bytes, cycled through by the loop (None: keyless records)."""
    if size <= 0:
        return None
    return [i.to_bytes(8, "big").hex().encode()[-size:].rjust(size, b"k") for i in range(count)]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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
            # ru_maxrss is the process's lifetime peak (KiB on Linux), so it includes imports and setup.
            "peak_rss_mb": self.ru1.ru_maxrss / 1024,
            "broker_cpu_s": broker,
            # Everything else on the machine (other processes); with an unknown broker pid it includes the broker.
            "other_cpu_s": other,
        }


def _records(spec: dict[str, Any]) -> tuple[bytes, Iterator[Any] | None]:
    keys = make_keys(spec["key_size"], spec["key_count"])
    value = make_value(spec["record_size"])
    return value, (None if keys is None else itertools.islice(itertools.cycle(keys), spec["num_records"]))


def _first_key(spec: dict[str, Any]) -> bytes | None:
    keys = make_keys(spec["key_size"], 1)
    return None if keys is None else keys[0]


def _acks(spec: dict[str, Any]) -> str | int:
    # The workload stores "all", "1" or "0"; every client here takes "all" or an int.
    return "all" if spec["acks"] == "all" else int(spec["acks"])


def _codec(spec: dict[str, Any]) -> str | None:
    return None if spec["compression"] == "none" else spec["compression"]


def run_kafkaprod(spec: dict[str, Any]) -> dict[str, Any]:
    from kafkaprod import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"],
        acks=_acks(spec),
        enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"],
        batch_size=spec["batch_size"],
        max_request_size=_MAX_REQUEST_SIZE,
        compression_type=spec["compression"],
        client_id="bench-kafkaprod",
    )
    topic = spec["topic"]
    value, keys = _records(spec)
    producer.send(topic, value, _first_key(spec)).get(timeout=_WARMUP_TIMEOUT_S)
    send = producer.send
    window = Window(spec.get("broker_pid"))
    window.start()
    if keys is None:
        for _ in itertools.repeat(None, spec["num_records"]):
            send(topic, value)
    else:
        for key in keys:
            send(topic, value, key)
    producer.flush()
    window.stop()
    producer.close()
    return window.result(spec)


def run_confluent(spec: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import KafkaException, Producer

    errors: list[str] = []
    producer = Producer({
        "bootstrap.servers": spec["bootstrap_servers"],
        "acks": _acks(spec),
        "enable.idempotence": spec["idempotence"],
        "linger.ms": spec["linger_ms"],
        "batch.size": spec["batch_size"],
        "compression.type": spec["compression"],
        "client.id": "bench-confluent",
        "error_cb": lambda err: errors.append(str(err)),
    })
    topic = spec["topic"]
    value, keys = _records(spec)
    warm: list[Any] = []
    producer.produce(topic, value, _first_key(spec), on_delivery=lambda err, msg: warm.append(err))
    if producer.flush(_WARMUP_TIMEOUT_S) or warm != [None]:
        raise KafkaException(f"warm-up record not delivered: {warm} {errors}")
    produce = producer.produce
    poll = producer.poll
    window = Window(spec.get("broker_pid"))
    window.start()
    # produce() raises BufferError when librdkafka's queue (queue.buffering.max.messages/kbytes) is full; serving
    # delivery reports with poll() makes room. This is the documented way to push records as fast as it takes them.
    if keys is None:
        for _ in itertools.repeat(None, spec["num_records"]):
            while True:
                try:
                    produce(topic, value)
                    break
                except BufferError:
                    poll(0.0005)
    else:
        for key in keys:
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    poll(0.0005)
    left = producer.flush(600)
    window.stop()
    if left:
        raise KafkaException(f"{left} records still undelivered after flush(600); errors: {errors[:5]}")
    result = window.result(spec)
    result["client_errors"] = errors
    return result


def _chunks(spec: dict[str, Any]) -> tuple[bytes, list[tuple[list[bytes], list[bytes] | None]]]:
    """The workload's records as (values, keys) chunks of BATCH_CHUNK records, built before the window."""
    value, keys = _records(spec)
    n = spec["num_records"]
    key_list = None if keys is None else list(keys)
    chunks = []
    for start in range(0, n, BATCH_CHUNK):
        end = min(n, start + BATCH_CHUNK)
        chunks.append(([value] * (end - start), None if key_list is None else key_list[start:end]))
    return value, chunks


def _settle_collector() -> None:
    # The bulk clients' inputs are a million references (or dicts) made just before the window; the garbage
    # collector's first passes over such fresh objects belong to building them, not to producing them.
    gc.collect()


def run_kafkaprod_batch(spec: dict[str, Any]) -> dict[str, Any]:
    from kafkaprod import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"],
        acks=_acks(spec),
        enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"],
        batch_size=spec["batch_size"],
        max_request_size=_MAX_REQUEST_SIZE,
        compression_type=spec["compression"],
        client_id="bench-kafkaprod-batch",
    )
    topic = spec["topic"]
    value, chunks = _chunks(spec)
    _settle_collector()
    producer.send(topic, value, _first_key(spec)).get(timeout=_WARMUP_TIMEOUT_S)
    send_batch = producer.send_batch
    window = Window(spec.get("broker_pid"))
    window.start()
    # One call per chunk; the returned futures are dropped like the per-record loops drop theirs.
    for values, keys in chunks:
        send_batch(topic, values, keys=keys)
    producer.flush()
    window.stop()
    producer.close()
    return window.result(spec)


def run_confluent_batch(spec: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import KafkaError, KafkaException, Producer

    errors: list[str] = []
    producer = Producer({
        "bootstrap.servers": spec["bootstrap_servers"],
        "acks": _acks(spec),
        "enable.idempotence": spec["idempotence"],
        "linger.ms": spec["linger_ms"],
        "batch.size": spec["batch_size"],
        "compression.type": spec["compression"],
        "client.id": "bench-confluent-batch",
        "error_cb": lambda err: errors.append(str(err)),
    })
    topic = spec["topic"]
    value, raw_chunks = _chunks(spec)
    # produce_batch takes one dict per message; they are made here, outside the window.
    chunks = [[{"value": v} if keys is None else {"value": v, "key": k}
               for v, k in zip(values, keys or itertools.repeat(None))] for values, keys in raw_chunks]
    _settle_collector()
    warm: list[Any] = []
    producer.produce(topic, value, _first_key(spec), on_delivery=lambda err, msg: warm.append(err))
    if producer.flush(_WARMUP_TIMEOUT_S) or warm != [None]:
        raise KafkaException(f"warm-up record not delivered: {warm} {errors}")
    produce_batch = producer.produce_batch
    poll = producer.poll
    queue_full = KafkaError._QUEUE_FULL
    window = Window(spec.get("broker_pid"))
    window.start()
    # produce_batch queues what fits in librdkafka's queue and marks the rest with an '_error' (QUEUE_FULL);
    # serving delivery reports with poll() makes room, then the rest is offered again.
    for chunk in chunks:
        while True:
            try:
                accepted = produce_batch(topic, chunk)
            except BufferError:
                accepted = 0
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
    left = producer.flush(600)
    window.stop()
    if left:
        raise KafkaException(f"{left} records still undelivered after flush(600); errors: {errors[:5]}")
    result = window.result(spec)
    result["client_errors"] = errors
    return result


def run_kafka_python(spec: dict[str, Any]) -> dict[str, Any]:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"],
        acks=_acks(spec),
        enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"],
        batch_size=spec["batch_size"],
        max_request_size=_MAX_REQUEST_SIZE,
        compression_type=_codec(spec),
        client_id="bench-kafka-python",
    )
    topic = spec["topic"]
    value, keys = _records(spec)
    producer.send(topic, value, _first_key(spec)).get(timeout=_WARMUP_TIMEOUT_S)
    send = producer.send
    window = Window(spec.get("broker_pid"))
    window.start()
    if keys is None:
        for _ in itertools.repeat(None, spec["num_records"]):
            send(topic, value)
    else:
        for key in keys:
            send(topic, value, key)
    producer.flush()
    window.stop()
    producer.close()
    return window.result(spec)


def run_aiokafka(spec: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    async def main() -> dict[str, Any]:
        producer = AIOKafkaProducer(
            bootstrap_servers=spec["bootstrap_servers"],
            acks=_acks(spec),
            enable_idempotence=spec["idempotence"],
            linger_ms=spec["linger_ms"],
            max_batch_size=spec["batch_size"],
            max_request_size=_MAX_REQUEST_SIZE,
            compression_type=_codec(spec),
            client_id="bench-aiokafka",
        )
        await producer.start()
        try:
            topic = spec["topic"]
            value, keys = _records(spec)
            await asyncio.wait_for(await producer.send(topic, value, _first_key(spec)), _WARMUP_TIMEOUT_S)
            send = producer.send
            window = Window(spec.get("broker_pid"))
            window.start()
            # send() is a coroutine that returns once the record is in a batch (waiting for room when the
            # partition's queue is full) and hands back a delivery future; flush() waits for all batches.
            if keys is None:
                for _ in itertools.repeat(None, spec["num_records"]):
                    await send(topic, value)
            else:
                for key in keys:
                    await send(topic, value, key)
            await producer.flush()
            window.stop()
        finally:
            await producer.stop()
        return window.result(spec)

    return asyncio.run(main())


RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "kafkaprod": run_kafkaprod,
    "confluent": run_confluent,
    "aiokafka": run_aiokafka,
    "kafka-python": run_kafka_python,
    "kafkaprod-batch": run_kafkaprod_batch,
    "confluent-batch": run_confluent_batch,
}


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
    spec = json.loads(argv[0])
    result = RUNNERS[spec["client"]](spec)
    result.update(client=spec["client"], topic=spec["topic"], **client_version(spec["client"]))
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
