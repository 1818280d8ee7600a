"""Many threads at once: senders, a thread that keeps flushing, and callbacks that send -- no deadlock, no record
lost or duplicated.

Joins have generous limits only so that a deadlock fails the test instead of hanging it; nothing asserts on time.
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest

from producer_support import WAIT_S, make_producer, murmur2_partition, read_back

SENDERS = 8
PER_SENDER = 3_000
PARTITIONS = 4
CHILD_EVERY = 10  # every tenth record's callback sends a record of its own
HANG_S = 120.0


@pytest.mark.parametrize("peer", ["mock_cluster", "tansu"])
@pytest.mark.parametrize("routing", ["explicit partitions", "keys"])
def test_concurrent_senders_flushes_and_sending_callbacks_deliver_everything_once(request, peer, routing):
    if peer == "tansu":
        bootstrap = request.getfixturevalue("tansu").bootstrap_servers
        topic = request.getfixturevalue("tansu_topic")(partitions=PARTITIONS)
    else:
        bootstrap = request.getfixturevalue("mock_cluster").bootstrap_servers
        topic = request.getfixturevalue("mock_topic")(partitions=PARTITIONS)
    keyed = routing == "keys"

    def partition_of(sender: int, i: int) -> int:
        # Keyed records go where murmur2 puts them (the default partitioner); the rest name their partition.
        return murmur2_partition(b"key-%d" % (i % 97), PARTITIONS) if keyed else (sender + i) % PARTITIONS

    def route(sender: int, i: int) -> dict:
        return {"key": b"key-%d" % (i % 97)} if keyed else {"partition": partition_of(sender, i)}

    producer = make_producer(bootstrap, linger_ms=2, batch_size=4096)
    lock = threading.Lock()
    parents_done = threading.Semaphore(0)
    errors: list[BaseException] = []
    expected: Counter[int] = Counter()

    def child_done(_metadata, exc) -> None:
        if exc is not None:
            with lock:
                errors.append(exc)

    def parent_callback(sender: int, i: int):
        def callback(_metadata, exc) -> None:
            try:
                if exc is not None:
                    with lock:
                        errors.append(exc)
                elif i % CHILD_EVERY == 0:
                    # On the producer's I/O thread: send() must not deadlock against the Sender or the senders.
                    producer.send(topic, b"child-%d-%d" % (sender, i), callback=child_done, **route(sender, i))
            except BaseException as e:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(e)
            finally:
                parents_done.release()

        return callback

    def send_all(sender: int) -> None:
        try:
            for i in range(PER_SENDER):
                producer.send(topic, b"rec-%d-%d" % (sender, i), callback=parent_callback(sender, i),
                              **route(sender, i))
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)

    for sender in range(SENDERS):
        for i in range(PER_SENDER):
            expected[partition_of(sender, i)] += 2 if i % CHILD_EVERY == 0 else 1

    senders_running = threading.Event()
    senders_running.set()
    flushes = [0]

    def keep_flushing() -> None:
        try:
            while senders_running.is_set():
                producer.flush(WAIT_S)
                flushes[0] += 1
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(e)

    try:
        flusher = threading.Thread(target=keep_flushing, name="flusher")
        senders = [threading.Thread(target=send_all, args=(s,), name=f"sender-{s}") for s in range(SENDERS)]
        flusher.start()
        for t in senders:
            t.start()
        for t in senders:
            t.join(HANG_S)
        hung = [t.name for t in senders if t.is_alive()]
        assert not hung, f"senders still blocked after {HANG_S} s (deadlock?): {hung}"
        senders_running.clear()
        flusher.join(HANG_S)
        assert not flusher.is_alive(), "flush() never returned while others sent (deadlock?)"
        # Every parent's callback has run (and sent its child, if it had one) before the last flush starts.
        for _ in range(SENDERS * PER_SENDER):
            assert parents_done.acquire(timeout=HANG_S), "a record's callback never ran"
        producer.flush(HANG_S)
    finally:
        producer.close(WAIT_S)
    assert errors == [], errors[:5]
    assert flushes[0] >= 1

    stored = read_back(bootstrap, topic, PARTITIONS, sum(expected.values()))
    assert {p: len(records) for p, records in stored.items()} == dict(expected)
    values = [r.value for records in stored.values() for r in records]
    wanted = {b"rec-%d-%d" % (s, i) for s in range(SENDERS) for i in range(PER_SENDER)}
    wanted |= {b"child-%d-%d" % (s, i) for s in range(SENDERS) for i in range(0, PER_SENDER, CHILD_EVERY)}
    assert len(values) == len(set(values)), "a record was stored twice"
    assert set(values) == wanted
    # Each sender's records to one partition kept their send order (one thread, one partition).
    for p, records in stored.items():
        seen: dict[int, int] = {}
        for r in records:
            kind, sender, i = r.value.split(b"-")
            if kind == b"rec":
                assert int(i) > seen.get(int(sender), -1), f"partition {p}: sender {sender} reordered at {i}"
                seen[int(sender)] = int(i)
