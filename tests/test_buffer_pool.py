"""BufferPool: Java BufferPool semantics, FIFO waiting, memory bounds under concurrency.

No timed assertions: threads are sequenced with the pool's own state (queued, available_memory) and queues;
timeouts only keep a broken pool from hanging the suite.
"""
from __future__ import annotations

import queue
import random
import threading
import time

import pytest

from kafkaprod._native.buffer_pool import BufferPool
from kafkaprod.errors import BufferExhaustedError, ProducerClosedError, RecordTooLargeError

HANG_GUARD_S = 20.0  # generous: only here so a broken pool fails instead of hanging
LONG_MS = 60_000


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.001)


def start_allocation(pool: BufferPool, size: int, tag, results: queue.Queue, max_block_ms=LONG_MS):
    """Runs pool.allocate(size) in a thread; puts (tag, buffer or exception) on results."""
    def run():
        try:
            results.put((tag, pool.allocate(size, max_block_ms)))
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            results.put((tag, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_blocked_allocations_are_served_in_fifo_order():
    pool = BufferPool(300, 100)
    held = [pool.allocate(100, 0) for _ in range(3)]
    results: queue.Queue = queue.Queue()
    threads = []
    for i in range(3):
        threads.append(start_allocation(pool, 100, i, results))
        wait_until(lambda n=i + 1: pool.queued == n, f"{i + 1} threads queued")

    order = []
    for buf in held:
        pool.deallocate(buf)
        tag, got = results.get(timeout=HANG_GUARD_S)
        assert isinstance(got, bytearray)
        order.append(tag)
    assert order == [0, 1, 2]
    for t in threads:
        t.join(HANG_GUARD_S)
    assert pool.queued == 0


def test_large_request_at_the_head_is_not_overtaken_by_later_small_ones():
    pool = BufferPool(1000, 100)
    held = [pool.allocate(100, 0) for _ in range(10)]
    results: queue.Queue = queue.Queue()
    start_allocation(pool, 500, "large", results)
    wait_until(lambda: pool.queued == 1, "large request queued")
    start_allocation(pool, 100, "small", results)
    wait_until(lambda: pool.queued == 2, "small request queued")

    pool.deallocate(held.pop())
    # The head takes the freed memory towards its 500 bytes; the small request behind it gets none.
    wait_until(lambda: pool.available_memory == 0, "head took the freed buffer")
    assert pool.queued == 2
    assert results.empty()

    for _ in range(4):
        pool.deallocate(held.pop())
    tag, got = results.get(timeout=HANG_GUARD_S)
    assert tag == "large" and len(got) == 500

    pool.deallocate(held.pop())
    tag, got = results.get(timeout=HANG_GUARD_S)
    assert tag == "small" and len(got) == 100


def test_new_requests_queue_behind_waiters_even_if_memory_is_free():
    pool = BufferPool(300, 100)
    held = [pool.allocate(100, 0) for _ in range(3)]
    results: queue.Queue = queue.Queue()
    start_allocation(pool, 300, "waiter", results)
    wait_until(lambda: pool.queued == 1, "waiter queued")
    # The freed buffer is meant for the waiter; a newcomer asking for exactly that poolable size right away
    # (before the waiter has run) must queue behind it, and with max_block_ms=0 give up.
    pool.deallocate(held.pop())
    with pytest.raises(BufferExhaustedError):
        pool.allocate(100, 0)
    for buf in held:
        pool.deallocate(buf)
    tag, got = results.get(timeout=HANG_GUARD_S)
    assert tag == "waiter" and len(got) == 300


def test_timeout_raises_buffer_exhausted_naming_buffer_memory_and_max_block_ms():
    pool = BufferPool(100, 100)
    held = pool.allocate(100, 0)
    with pytest.raises(BufferExhaustedError) as info:
        pool.allocate(100, 5)
    message = str(info.value)
    assert "buffer_memory" in message and "100 bytes" in message
    assert "max_block_ms=5" in message
    assert pool.queued == 0
    pool.deallocate(held)
    assert len(pool.allocate(100, 0)) == 100


def test_timed_out_waiter_gives_back_the_memory_it_gathered():
    pool = BufferPool(1000, 100)
    held = [pool.allocate(100, 0) for _ in range(10)]
    results: queue.Queue = queue.Queue()
    start_allocation(pool, 500, "partial", results, max_block_ms=300)
    wait_until(lambda: pool.queued == 1, "waiter queued")
    pool.deallocate(held.pop())
    pool.deallocate(held.pop())
    tag, got = results.get(timeout=HANG_GUARD_S)
    assert isinstance(got, BufferExhaustedError)
    assert pool.queued == 0
    assert pool.available_memory == 200


def test_concurrent_allocate_and_deallocate_never_hand_out_more_than_total():
    total, poolable = 10_000, 1_000
    pool = BufferPool(total, poolable)
    lock = threading.Lock()
    outstanding = [0]
    peak = [0]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(300):
                size = poolable if rng.random() < 0.6 else rng.choice([1, 500, 1500, 4000, 10_000])
                buf = pool.allocate(size, LONG_MS)
                assert len(buf) == size
                with lock:
                    outstanding[0] += size
                    peak[0] = max(peak[0], outstanding[0])
                    assert outstanding[0] <= total, f"{outstanding[0]} bytes handed out of {total}"
                if rng.random() < 0.3:
                    time.sleep(0)
                with lock:
                    outstanding[0] -= size
                pool.deallocate(buf)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD_S * 3)
    assert not any(t.is_alive() for t in threads), "workers deadlocked"
    assert not errors, errors[0]
    assert peak[0] <= total
    assert pool.available_memory == total
    assert pool.queued == 0


def test_pooled_buffers_are_reused():
    pool = BufferPool(1000, 100)
    first = pool.allocate(100, 0)
    pool.deallocate(first)
    assert pool.free_list_size == 1
    assert pool.allocate(100, 0) is first
    assert pool.free_list_size == 0


def test_other_sizes_return_to_unallocated_memory_not_the_free_list():
    pool = BufferPool(1000, 100)
    buf = pool.allocate(250, 0)
    assert pool.unallocated_memory == 750
    pool.deallocate(buf)
    assert pool.free_list_size == 0
    assert pool.unallocated_memory == 1000


def test_free_list_buffers_are_released_to_serve_other_sizes():
    pool = BufferPool(300, 100)
    bufs = [pool.allocate(100, 0) for _ in range(3)]
    for b in bufs:
        pool.deallocate(b)
    assert pool.free_list_size == 3 and pool.unallocated_memory == 0
    big = pool.allocate(250, 0)
    assert len(big) == 250
    assert pool.available_memory == 50
    assert pool.free_list_size == 0


def test_close_wakes_a_blocked_allocate_with_producer_closed_error():
    pool = BufferPool(100, 100)
    held = pool.allocate(100, 0)
    results: queue.Queue = queue.Queue()
    start_allocation(pool, 100, "blocked", results)
    wait_until(lambda: pool.queued == 1, "allocation blocked")
    pool.close()
    tag, got = results.get(timeout=HANG_GUARD_S)
    assert isinstance(got, ProducerClosedError)
    assert pool.queued == 0
    with pytest.raises(ProducerClosedError):
        pool.allocate(1, 0)
    pool.deallocate(held)  # the Sender still returns buffers after close
    assert pool.available_memory == 100


def test_request_larger_than_total_raises_record_too_large_at_once():
    pool = BufferPool(1000, 100)
    with pytest.raises(RecordTooLargeError, match="buffer_memory"):
        pool.allocate(1001, LONG_MS)
    assert pool.queued == 0


@pytest.mark.parametrize("args,match", [((0, 1), "total_memory"), ((10, 0), "poolable_size"),
                                        ((10, 20), "poolable_size"), ((-5, 1), "total_memory")])
def test_bad_construction_arguments_raise_value_error_naming_them(args, match):
    with pytest.raises(ValueError, match=match):
        BufferPool(*args)


def test_bad_allocation_arguments_raise():
    pool = BufferPool(1000, 100)
    with pytest.raises(ValueError, match="size"):
        pool.allocate(0, 0)
    with pytest.raises(ValueError, match="max_block_ms"):
        pool.allocate(10, -1)
    with pytest.raises(TypeError, match="max_block_ms"):
        pool.allocate(10, "soon")


def test_returning_more_memory_than_was_handed_out_is_rejected():
    pool = BufferPool(1000, 100)
    buf = pool.allocate(100, 0)
    pool.deallocate(buf)
    with pytest.raises(ValueError, match="returned twice"):
        pool.deallocate(bytearray(1000))
    assert pool.available_memory == 1000


def test_time_spent_blocked_is_recorded():
    pool = BufferPool(100, 100)
    held = pool.allocate(100, 0)
    assert pool.wait_time_ns_total == 0
    results: queue.Queue = queue.Queue()
    start_allocation(pool, 100, "waiter", results)
    wait_until(lambda: pool.queued == 1, "waiter queued")
    pool.deallocate(held)
    results.get(timeout=HANG_GUARD_S)
    assert pool.wait_time_ns_total > 0
    assert pool.blocked_allocations == 1
