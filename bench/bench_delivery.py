"""What confirming every record costs kafkaprod: the I/O thread's share of the run while it runs callbacks, and the
memory a held future takes. Against a local Tansu broker it starts itself; each measurement in a fresh process.

    python bench/bench_delivery.py                     # 1,000,000 records of 100 B, 6 partitions, acks=1
    python bench/bench_delivery.py --num-records 200000 --rounds 5

Modes, each a fresh child process:
- ``none``: send() and drop the futures (the reference);
- ``callback``: send(..., callback=cb) for every record, cb counts;
- ``hold``: keep every future, get() each after flush().

Per run it prints records/s, the CPU seconds of the whole process and of its two busy threads (the caller that
sends, the Sender thread that does the I/O and runs the callbacks, read from /proc/self/task), and the Sender
thread's CPU as a share of the run's wall time: the most of the GIL it can have held (its socket system calls run
without the GIL, so the true share is lower). For ``hold`` it also prints the resident memory the held futures
add: RSS after flush() with every future held, less RSS at the same point of a ``none`` run, divided by the
number of records (the list that holds them, 8 bytes a future, included).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _thread_cpu_s(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(mode: str, bootstrap: str, topic: str, n: int) -> dict:
    from kafkaprod import KafkaProducer

    value = b"x" * 100
    delivered = [0]

    def on_completion(metadata, exception):
        if exception is None:
            delivered[0] += 1

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, linger_ms=5,
                             batch_size=1_000_000, max_request_size=64 << 20, buffer_memory=256 << 20)
    producer.send(topic, b"warm-up").get(60)
    sender = next(t for t in threading.enumerate() if t.name == "kafkaprod-sender")
    main_id, sender_id = threading.main_thread().native_id, sender.native_id
    send = producer.send
    held: list = []
    rss_before = _rss_bytes()
    cpu0, main0, sender0 = time.process_time(), _thread_cpu_s(main_id), _thread_cpu_s(sender_id)
    start = time.perf_counter()
    if mode == "none":
        for _ in range(n):
            send(topic, value)
    elif mode == "callback":
        for _ in range(n):
            send(topic, value, callback=on_completion)
    else:
        hold = held.append
        for _ in range(n):
            hold(send(topic, value))
    producer.flush()
    if mode == "hold":
        for future in held:
            future.get()
            delivered[0] += 1
    elapsed = time.perf_counter() - start
    cpu, main, io = time.process_time() - cpu0, _thread_cpu_s(main_id) - main0, _thread_cpu_s(sender_id) - sender0
    rss_after = _rss_bytes()
    producer.close()
    if mode != "none" and delivered[0] != n:
        raise SystemExit(f"{mode}: {delivered[0]} of {n} records confirmed")
    return {"mode": mode, "records_per_s": n / elapsed, "cpu_s": cpu, "caller_cpu_s": main, "sender_cpu_s": io,
            "sender_share": io / elapsed, "rss_growth": rss_after - rss_before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "BOOTSTRAP", "TOPIC", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, bootstrap, topic, n = args.child
        print(json.dumps(child(mode, bootstrap, topic, int(n))))
        return 0
    from kafkaprod.tools.broker import TansuBroker, create_topics, delete_topics

    runs: dict[str, list[dict]] = {"none": [], "callback": [], "hold": []}
    with TansuBroker() as broker:
        for r in range(args.rounds):
            for mode in runs:
                topic = f"delivery-{mode}-{r}-{os.getpid()}"
                create_topics(broker.bootstrap_servers, {topic: 6})
                out = subprocess.run([sys.executable, __file__, "--child", mode, broker.bootstrap_servers, topic,
                                      str(args.num_records)], capture_output=True, text=True, cwd="/", check=True)
                runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
                delete_topics(broker.bootstrap_servers, [topic])
                print(f"round {r + 1} {mode:>8}: {runs[mode][-1]}", file=sys.stderr)
    med = {mode: {k: statistics.median(run[k] for run in rs) for k in rs[0] if k != "mode"} for mode, rs in runs.items()}
    print(f"| mode | records/s | CPU s | caller thread CPU s | Sender thread CPU s | Sender share of wall |")
    print("|---|--:|--:|--:|--:|--:|")
    for mode, m in med.items():
        print(f"| {mode} | {m['records_per_s']:,.0f} | {m['cpu_s']:.2f} | {m['caller_cpu_s']:.2f} | "
              f"{m['sender_cpu_s']:.2f} | {m['sender_share']:.2f} |")
    per_future = (med["hold"]["rss_growth"] - med["none"]["rss_growth"]) / args.num_records
    print(f"\nresident memory per held future: {per_future:.0f} bytes (medians over {args.rounds} rounds, "
          f"{args.num_records:,} futures, the list holding them included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
