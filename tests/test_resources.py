"""Resource bounds: producers that were closed leave no thread, socket or file descriptor behind; close() frees a
send() blocked for memory; a long bulk load stays within buffer_memory of extra memory.

The soak tests (marker ``soak``) run only when selected with ``-m soak``; see conftest.py.
"""
from __future__ import annotations

import gc
import os
import threading

import pytest

from kafkaprod.errors import ProducerClosedError
from mock_cluster import ALL_BROKERS
from producer_support import WAIT_S, make_producer, read_back


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def _fd_targets(fds: set[int]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass  # closed meanwhile (the listing's own descriptor, say)
    return out


def _cycle(bootstrap_servers: str, topic: str, i: int) -> None:
    producer = make_producer(bootstrap_servers, linger_ms=0)
    try:
        # A record per cycle, so each producer really connects, fetches metadata and gets a producer id.
        assert producer.send(topic, b"cycle-%d" % i).get(WAIT_S).offset >= 0
    finally:
        producer.close()


def _open_close_cycles_leak_nothing(tansu, tansu_topic, cycles: int) -> None:
    topic = tansu_topic(partitions=1)
    _cycle(tansu.bootstrap_servers, topic, -1)  # first use: lazy imports and caches are not leaks
    gc.collect()
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = _open_fds()
    for i in range(cycles):
        _cycle(tansu.bootstrap_servers, topic, i)
    gc.collect()
    new_threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
    new_fds = _open_fds() - fds_before
    assert new_threads == [], f"{len(new_threads)} threads left after {cycles} producers closed: {new_threads[:10]}"
    assert not new_fds, f"{len(new_fds)} descriptors left after {cycles} producers closed: {_fd_targets(new_fds)[:10]}"


def test_200_producer_open_close_cycles_leak_no_thread_socket_or_descriptor(tansu, tansu_topic):
    _open_close_cycles_leak_nothing(tansu, tansu_topic, 200)


@pytest.mark.soak
def test_1000_producer_open_close_cycles_leak_no_thread_socket_or_descriptor(tansu, tansu_topic):
    _open_close_cycles_leak_nothing(tansu, tansu_topic, 1000)


def test_close_from_another_thread_wakes_a_send_blocked_for_memory(mock_cluster, mock_topic):
    topic = mock_topic(partitions=1)
    # Two batches' worth of memory and no broker to drain it: the third batch's send() blocks for max_block_ms,
    # which is far longer than the test waits for anything.
    producer = make_producer(mock_cluster.bootstrap_servers, buffer_memory=2048, batch_size=1024, linger_ms=0,
                             max_block_ms=600_000, request_timeout_ms=5_000)
    producer.send(topic, b"warm-up").get(WAIT_S)
    mock_cluster.broker_down(ALL_BROKERS)
    outcome: list[BaseException | str] = []
    close_running_when_send_woke: list[bool] = []
    closer_done = threading.Event()

    def fill() -> None:
        try:
            for _ in range(10):
                producer.send(topic, b"x" * 900)
            outcome.append("every send returned")
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the test reports it
            close_running_when_send_woke.append(not closer_done.is_set())
            outcome.append(exc)

    def close() -> None:
        try:
            producer.close(WAIT_S)  # waits for the queued batches: the brokers are down
        finally:
            closer_done.set()

    filler = threading.Thread(target=fill, name="blocked-sender")
    closer = threading.Thread(target=close, name="closer")
    filler.start()
    try:
        for _ in range(int(WAIT_S * 100)):  # wait until send() really is waiting for memory
            if producer._pool.queued or not filler.is_alive():
                break
            threading.Event().wait(0.01)
        assert producer._pool.queued == 1, f"send() never blocked for memory: {outcome}"
        closer.start()
        filler.join(WAIT_S)
        assert not filler.is_alive(), "close() did not wake the send() blocked for memory"
        assert len(outcome) == 1 and isinstance(outcome[0], ProducerClosedError), outcome
        assert "closed while send() waited for memory" in str(outcome[0])
        # Woken by close() itself, not by close(timeout) running out: close was still waiting for the brokers.
        assert close_running_when_send_woke == [True]
    finally:
        mock_cluster.broker_up(ALL_BROKERS)
    if not closer.is_alive() and not closer_done.is_set():
        producer.close(0)  # the test failed before close() was started
    closer.join(WAIT_S * 2)
    assert not closer.is_alive(), "close() never returned after the brokers came back"
    # What was queued before close() was still delivered once the brokers came back: warm-up + 2 full batches.
    read_back(mock_cluster.bootstrap_servers, topic, 1, 3)


@pytest.mark.parametrize("call", ["send", "partitions_for"])
def test_close_from_another_thread_wakes_a_call_waiting_for_metadata(call):
    # Nothing listens at the bootstrap address, and max_block_ms is ten minutes: only close() can end the wait
    # within the join limit below.
    producer = make_producer("127.0.0.1:9", max_block_ms=600_000)
    outcome: list[BaseException | str] = []

    def wait_for_metadata() -> None:
        try:
            producer.send("nowhere", b"x") if call == "send" else producer.partitions_for("nowhere")
            outcome.append("returned")
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the test reports it
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_metadata, name=f"{call}-waiting-for-metadata")
    waiter.start()
    try:
        for _ in range(int(WAIT_S * 100)):  # until the topic is tracked: the call is about to wait or waiting
            if "nowhere" in producer._metadata._topics or not waiter.is_alive():
                break
            threading.Event().wait(0.01)
        producer.close()
        waiter.join(WAIT_S)
        assert not waiter.is_alive(), f"close() did not wake {call}() waiting for metadata"
        assert len(outcome) == 1 and isinstance(outcome[0], ProducerClosedError), outcome
    finally:
        producer.close(0)


def _vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


BULK_RECORDS = 10_000_000
BUFFER_MEMORY = 32 * 1024 * 1024
HEADROOM = 64 * 1024 * 1024


@pytest.mark.soak
def test_bulk_load_of_ten_million_records_grows_peak_memory_by_less_than_buffer_memory_plus_64_mib(
        tansu, tansu_topic):
    topic = tansu_topic(partitions=4)
    value = b"v" * 16
    with make_producer(tansu.bootstrap_servers, buffer_memory=BUFFER_MEMORY, linger_ms=5, batch_size=65_536,
                       max_block_ms=120_000) as producer:
        producer.send(topic, b"warm-up").get(WAIT_S)
        gc.collect()
        hwm_before = _vm_hwm_bytes()
        send = producer.send
        last = None
        for _ in range(BULK_RECORDS):
            last = send(topic, value)
        producer.flush()
        assert last.get(0).offset >= 0
        hwm_after = _vm_hwm_bytes()
        metrics = producer.metrics()
    growth = hwm_after - hwm_before
    print(f"\nbulk load: {BULK_RECORDS} records, peak RSS {hwm_before / 2**20:.1f} -> {hwm_after / 2**20:.1f} MiB "
          f"(+{growth / 2**20:.1f} MiB); record-send-total {metrics.get('record-send-total')}")
    assert growth < BUFFER_MEMORY + HEADROOM, (
        f"peak RSS grew by {growth / 2**20:.1f} MiB, more than buffer_memory ({BUFFER_MEMORY / 2**20:.0f} MiB) "
        f"+ {HEADROOM / 2**20:.0f} MiB")
