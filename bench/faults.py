"""Broker faults a service meets, with kafkaprod and confluent-kafka side by side: what each producer's
acknowledgements were worth once the broker was back.

    python bench/faults.py [--scenarios crash,pause,outage] [--clients kafkaprod,confluent] [--rounds 1]

Each (scenario, client, round) runs in a fresh child process with a broker of its own. The child sends numbered
records to a one-partition topic at a steady pace (with the Java defaults: acks=all, idempotence, 5 in flight),
the fault strikes a second in, and afterwards the topic is read back (confluent-kafka's consumer, up to a marker
record). Scenarios:

- ``crash``: noida-db SIGKILLed and started again 1 s later on the same data directory and port; it acknowledges
  ahead of its storage, so it may come back without acknowledged records.
- ``pause``: Tansu SIGSTOPped for 2.5 s (request timeout 1 s), then SIGCONTed.
- ``outage``: noida-db SIGKILLed for longer than the delivery timeout (3 s), then started again.
- ``answers``: Tansu behind a proxy of ours that forwards requests but drops their answers for 1.8 s, then resets
  the connections: the broker wrote what it never acknowledged, and the retries must not write it twice.
- ``full``: the same outage with a small buffer (256 KiB; kafkaprod's ``max_block_ms`` 500 ms), which fills while
  the broker is down: how long ``send()`` blocks and what it raises; then ``flush(0.5)`` and ``close(1.0)`` are
  called while the broker is still down and timed, before it is started again for the read-back.

Per run: records acknowledged, acknowledged records lost (acknowledged, not in the log), duplicated (in the log
more than once), reordered (a record in the log after a higher-numbered one), failed (an error delivered to the
record, or send() refused it), no outcome (neither, by the end of the run), what the producer reported (kafkaprod: ``broker-data-loss-total`` and ``acknowledged-records-lost-total``
from metrics(), confluent-kafka: its error_cb errors), time to recover (from the end of the fault to the first
acknowledgement after it), the child's peak RSS before the read-back, the longest send() call, and how long
after its send() the latest record failed (the delivery timeout is 3 s).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    sys.path.insert(0, str(ROOT))

SCENARIOS = ("crash", "pause", "outage", "answers", "full")
CLIENTS = ("kafkaprod", "confluent")
TOPIC = "faults"
RECORDS, RATE = 12_000, 2_000  # records per run, records per second
FAULT_AT = 1.0  # seconds into the run
MARKER = b"--end-of-run--"


# ---- the child: one run -------------------------------------------------------------------------------------------

class Producer:
    """The two clients behind one interface: send(value, on_done(ok, error_name)), flush(timeout), close(), report()."""

    def __init__(self, client: str, bootstrap: str, small_buffer: bool = False) -> None:
        self.client = client
        self.errors: list[str] = []
        if client == "kafkaprod":
            from kafkaprod import KafkaProducer

            memory = {"buffer_memory": 262_144, "max_block_ms": 500} if small_buffer else {}
            self.p = KafkaProducer(bootstrap, request_timeout_ms=1_000, delivery_timeout_ms=3_000,
                                   retry_backoff_ms=50, reconnect_backoff_ms=50, reconnect_backoff_max_ms=500,
                                   **memory)
        else:
            from confluent_kafka import Producer as Confluent

            self.p = Confluent({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                "linger.ms": 5, "request.timeout.ms": 1_000, "message.timeout.ms": 3_000,
                                "retry.backoff.ms": 50, "reconnect.backoff.ms": 50,
                                "reconnect.backoff.max.ms": 500,
                                **({"queue.buffering.max.kbytes": 256} if small_buffer else {}),
                                "error_cb": lambda err: self.errors.append(f"{err.name()}: {err.str()}")})
            self._poller = threading.Thread(target=self._poll, daemon=True)
            self._stop = False
            self._poller.start()

    def _poll(self) -> None:
        while not self._stop:
            self.p.poll(0.05)

    def send(self, value: bytes, on_done: Any) -> None:
        """Queues the record; a record send() refuses (buffer full past max_block_ms, a fatal error) is reported
        through on_done at once, prefixed "refused by ..."."""
        if self.client == "kafkaprod":
            from kafkaprod import KafkaError

            try:
                self.p.send(TOPIC, value, partition=0,
                            callback=lambda md, err: on_done(err is None, None if err is None else type(err).__name__))
            except KafkaError as exc:
                on_done(False, f"refused by send(): {type(exc).__name__}")
        else:
            from confluent_kafka import KafkaException

            while True:
                try:
                    self.p.produce(TOPIC, value, partition=0, on_delivery=lambda err, msg: on_done(
                        err is None, None if err is None else err.name()))
                    return
                except BufferError:
                    if self.refuse_when_full:  # librdkafka never blocks: a full queue raises at once
                        on_done(False, "refused by produce(): BufferError")
                        return
                    time.sleep(0.001)
                except KafkaException as exc:  # a fatal error: librdkafka refuses every later record
                    on_done(False, f"refused by produce(): {exc.args[0].name()}")
                    return

    refuse_when_full = False

    def flush(self, timeout: float) -> float:
        """Seconds the call took (a kafkaprod flush that runs out raises KafkaTimeoutError: taken as its end)."""
        started = time.monotonic()
        try:
            self.p.flush(timeout)
        except Exception:  # noqa: BLE001 - kafkaprod's KafkaTimeoutError; confluent returns what is left
            pass
        return time.monotonic() - started

    def close_within(self, timeout: float) -> float:
        started = time.monotonic()
        if self.client == "kafkaprod":
            self.p.close(timeout)
        else:
            self._stop = True
            self._poller.join(5)
            self.p.flush(timeout)  # confluent-kafka has no close(): flush(timeout) and drop it
        return time.monotonic() - started

    def report(self) -> dict[str, Any]:
        if self.client == "kafkaprod":
            m = self.p.metrics()
            return {"broker-data-loss-total": m["broker-data-loss-total"],
                    "acknowledged-records-lost-total": m["acknowledged-records-lost-total"]}
        return {"errors": sorted(set(self.errors))[:5], "error_count": len(self.errors)}

    def close(self) -> None:
        if self.client == "kafkaprod":
            self.p.close(5)
        else:
            self._stop = True
            self._poller.join(5)
            self.p.flush(5)


def read_log(bootstrap: str) -> list[int]:
    """The record numbers in the partition's log, in order, up to a marker written now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka import Producer as Confluent

    marker = Confluent({"bootstrap.servers": bootstrap})
    marker.produce(TOPIC, MARKER, partition=0)
    marker.flush(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    seen: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            if message.value() == MARKER:
                return seen
            seen.append(int(message.value()))
    finally:
        consumer.close()
    raise RuntimeError(f"read {len(seen)} records, then no marker within 60 s")


def run_child(scenario: str, client: str) -> dict[str, Any]:
    from kafkaprod.tools.broker import NoidaBroker, TansuBroker

    from kafkaprod.tools.fault_proxy import CuttingProxy

    proxy = None
    if scenario == "answers":
        proxy = CuttingProxy(target_port=0)
        broker: Any = TansuBroker(advertised_port=proxy.port)
    else:
        broker = TansuBroker() if scenario == "pause" else NoidaBroker()
    small = scenario == "full"
    broker.start()
    if proxy is not None:
        proxy.target = (proxy.host, broker.port)
    try:
        broker.create_topics({TOPIC: 1})
        time.sleep(2.0)  # noida-db saves a new topic in the background: crash an established one
        bootstrap = broker.bootstrap_servers if proxy is None else f"{proxy.host}:{proxy.port}"
        producer = Producer(client, bootstrap, small_buffer=small)
        producer.refuse_when_full = small
        lock = threading.Lock()
        acked: list[tuple[int, float]] = []
        failed: dict[str, int] = {}
        sent_at: dict[int, float] = {}
        failed_after: list[float] = []  # seconds from send() to the error, records failed through the callback

        def on_done_for(n: int):
            def on_done(ok: bool, error: str | None) -> None:
                now = time.monotonic()
                with lock:
                    if ok:
                        acked.append((n, now))
                    else:
                        failed[error or "?"] = failed.get(error or "?", 0) + 1
                        if not (error or "").startswith("refused by") and n in sent_at:
                            failed_after.append(now - sent_at[n])
            return on_done

        fault_ended = [0.0]

        def fault() -> None:
            time.sleep(FAULT_AT)
            if scenario == "answers":
                assert proxy is not None
                proxy.drop_answers()
                time.sleep(1.8)
                proxy.release()
            elif scenario == "pause":
                os.kill(broker.pid, signal.SIGSTOP)
                time.sleep(2.5)
                os.kill(broker.pid, signal.SIGCONT)
            elif scenario == "full":
                broker.kill()  # started again after the run's flush(0.5) and close(1.0)
                return
            else:
                broker.kill()
                time.sleep(1.0 if scenario == "crash" else 5.0)
                broker.start()
            fault_ended[0] = time.monotonic()

        striker = threading.Thread(target=fault)
        started = time.monotonic()
        striker.start()
        longest_send = 0.0
        pad = b" " * (1000 if small else 0)  # 2 MB/s: the small buffer fills in a fraction of a second
        for n in range(RECORDS):
            before = time.monotonic()
            sent_at[n] = before
            producer.send(b"%d" % n + pad, on_done_for(n))
            longest_send = max(longest_send, time.monotonic() - before)
            lag = started + (n + 1) / RATE - time.monotonic()
            if lag > 0:
                time.sleep(lag)
        striker.join()
        timed: dict[str, float] = {}
        if small:
            timed["flush(0.5) s"] = round(producer.flush(0.5), 3)
            report = producer.report()
            timed["close(1.0) s"] = round(producer.close_within(1.0), 3)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            broker.start()
            time.sleep(0.5)  # the callbacks of the records close() failed
        else:
            producer.flush(30)
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            report = producer.report()
            producer.close()
        log = read_log(broker.bootstrap_servers)
    finally:
        broker.stop()
        if proxy is not None:
            proxy.close()
    acked_set = {n for n, _ in acked}
    first_after = min((t for _, t in acked if t >= fault_ended[0]), default=None)
    high = -1
    reordered = 0
    seen: set[int] = set()
    for n in log:
        if n in seen:
            continue
        seen.add(n)
        if n < high:
            reordered += 1
        high = max(high, n)
    return {"scenario": scenario, "client": client, "sent": RECORDS, "acknowledged": len(acked_set),
            "unaccounted": RECORDS - len(acked) - sum(failed.values()),
            "lost": len(acked_set - seen), "duplicated": len(log) - len(seen), "reordered": reordered,
            "failed": sum(failed.values()), "failures": failed, "reported": report,
            "recover_s": None if first_after is None or not fault_ended[0] else round(first_after - fault_ended[0], 3),
            "peak_rss_mb": round(rss_mb, 1), "longest_send_s": round(longest_send, 3),
            "failed_after_max_s": round(max(failed_after), 3) if failed_after else None, **timed}


# ---- the parent --------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated: {', '.join(CLIENTS)}")
    parser.add_argument("--rounds", type=int, default=1, help="runs per scenario and client (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write every run here")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "CLIENT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*args.child)))
        return 0
    scenarios = [s for s in args.scenarios.split(",") if s]
    clients = [c for c in args.clients.split(",") if c]
    bad = [s for s in scenarios if s not in SCENARIOS] + [c for c in clients if c not in CLIENTS]
    if bad:
        parser.error(f"unknown scenario(s) or client(s): {', '.join(bad)}")
    runs = []
    for scenario in scenarios:
        for round_ in range(args.rounds):
            for client in clients:
                done = subprocess.run([sys.executable, __file__, "--child", scenario, client], capture_output=True,
                                      text=True, timeout=600)
                if done.returncode != 0:
                    print(f"{scenario}/{client}: the run failed:\n{done.stderr[-2000:]}", file=sys.stderr)
                    return 1
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run["round"] = round_ + 1
                runs.append(run)
                print(f"{scenario}/{client} round {round_ + 1}: {run}", file=sys.stderr)
    print("| scenario | client | acknowledged | lost | duplicated | reordered | failed | no outcome | reported | "
          "time to recover s | peak RSS MB | longest send() s | failed at most s after send |")
    print("|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|")
    for r in runs:
        rep = r["reported"]
        reported = (f"loss events {rep['broker-data-loss-total']:.0f}, records {rep['acknowledged-records-lost-total']:.0f}"
                    if r["client"] == "kafkaprod" else
                    (f"{rep['error_count']} error_cb: {'; '.join(rep['errors'])[:120]}" if rep["error_count"] else "–"))
        print(f"| {r['scenario']} | {r['client']} | {r['acknowledged']:,} of {r['sent']:,} | {r['lost']:,} | "
              f"{r['duplicated']:,} | {r['reordered']:,} | {r['failed']:,} | {r['unaccounted']:,} | {reported} | "
              f"{'–' if r['recover_s'] is None else r['recover_s']} | {r['peak_rss_mb']} | {r['longest_send_s']} | "
              f"{'–' if r['failed_after_max_s'] is None else r['failed_after_max_s']} |"
              + (f" flush(0.5) {r['flush(0.5) s']} s, close(1.0) {r['close(1.0) s']} s" if "flush(0.5) s" in r else ""))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
