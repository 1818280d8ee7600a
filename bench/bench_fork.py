"""How long a forked child's first call on its parent's producer takes to raise ProducerForkedError.

    python bench/bench_fork.py [--forks 50]

A KafkaProducer is used against a local Tansu broker, then the process forks ``--forks`` times; each child times
its first ``send()`` (perf_counter around the call, until ProducerForkedError is raised) and reports it through a
pipe. Prints the median, p99 and max in microseconds. (confluent-kafka's producer, used in a forked child, gives
no error: its records time out after message.timeout.ms, so there is nothing to time against.)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forks", type=int, default=50, help="children to fork (default 50)")
    args = parser.parse_args(argv)
    with TansuBroker() as broker:
        broker.create_topics({"fork": 1})
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
