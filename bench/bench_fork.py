"""How long a forked child's first call on its parent's producer takes to raise ProducerForkedError.

    python bench/bench_fork.py [--forks 50] [--confluent]

A KafkaProducer is used against a local Tansu broker, then the process forks ``--forks`` times; each child times
its first ``send()`` (perf_counter around the call, until ProducerForkedError is raised) and reports it through a
pipe. Prints the median, p99 and max in microseconds.

``--confluent`` does the same with confluent-kafka's Producer (message.timeout.ms 5 s): a child's ``produce()``
is accepted, and the child reports how long until its record ended, and how, after ``flush(10)``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    sys.path.insert(0, str(ROOT))

from kafkaprod import KafkaProducer, ProducerForkedError  # noqa: E402
from kafkaprod.tools.broker import TansuBroker  # noqa: E402


def first_call_in_child(producer: KafkaProducer, topic: str) -> float:
    """Forks; the child times its first send() and reports the seconds (-1: it did not raise)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: forking a multi-threaded process
        pid = os.fork()
    if pid == 0:
        try:
            started = time.perf_counter()
            try:
                producer.send(topic, b"from the child")
                took = -1.0
            except ProducerForkedError:
                took = time.perf_counter() - started
            os.write(write_end, struct.pack("d", took))
        finally:
            os._exit(0)
    os.close(write_end)
    took = struct.unpack("d", os.read(read_end, 8))[0]
    os.close(read_end)
    os.waitpid(pid, 0)
    return took


def confluent_in_child(bootstrap: str, forks: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "message.timeout.ms": 5_000})
    producer.produce("fork", b"warm-up")
    producer.flush(30)
    outcomes = []
    for _ in range(forks):
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            try:
                started = time.perf_counter()
                ended: list[str] = []
                try:
                    producer.produce("fork", b"from the child",
                                     on_delivery=lambda err, msg: ended.append("delivered" if err is None else err.name()))
                    producer.flush(10)
                    report = f"accepted; {ended[0] if ended else 'no outcome'} after {time.perf_counter() - started:.2f} s"
                except Exception as exc:  # noqa: BLE001
                    report = f"raised {type(exc).__name__} after {(time.perf_counter() - started) * 1e6:.0f} µs"
                os.write(write_end, report.encode())
            finally:
                os._exit(0)
        os.close(write_end)
        outcomes.append(os.read(read_end, 1000).decode())
        os.close(read_end)
        os.waitpid(pid, 0)
    for outcome in sorted(set(outcomes)):
        print(f"confluent-kafka, {outcomes.count(outcome)} of {forks} forked children: {outcome}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forks", type=int, default=50, help="children to fork (default 50)")
    parser.add_argument("--confluent", action="store_true", help="confluent-kafka's Producer instead")
    args = parser.parse_args(argv)
    with TansuBroker() as broker:
        broker.create_topics({"fork": 1})
        if args.confluent:
            confluent_in_child(broker.bootstrap_servers, args.forks)
            return 0
        producer = KafkaProducer(broker.bootstrap_servers)
        producer.send("fork", b"warm-up").get(30)
        times = [first_call_in_child(producer, "fork") for _ in range(args.forks)]
        producer.close()
    if any(t < 0 for t in times):
        print(f"error: {sum(t < 0 for t in times)} child(ren) could send without an error", file=sys.stderr)
        return 1
    us = sorted(t * 1e6 for t in times)
    p99 = us[min(len(us) - 1, round(0.99 * (len(us) - 1)))]
    print(f"{len(us)} forked children, first send() raised ProducerForkedError after: median "
          f"{statistics.median(us):.0f} µs, p99 {p99:.0f} µs, max {us[-1]:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
