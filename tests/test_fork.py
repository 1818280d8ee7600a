"""A producer used before os.fork(): in the child every call raises ProducerForkedError at once (never a record
that waits out its delivery timeout), close(), the finalizer and interpreter exit there touch nothing of the
parent's, and the parent's producer goes on delivering. Against a real broker (Tansu); the child reports through a
pipe and always leaves with os._exit, so pytest's own state is never run twice."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from kafkaprod import KafkaProducer, ProducerForkedError
from kafkaprod.aio import AIOKafkaProducer
from kafkaprod.tools.broker import count_records
from producer_support import FAST, REPEATED, WAIT_S, read_back

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")


def in_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Forks; the child runs body() and sends back what it returns (or the exception it raised) as JSON."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "this process is multi-threaded"
        pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            try:
                report = body()
            except BaseException as exc:  # reported, never raised into pytest's copy of itself
                report, code = {"child raised": f"{type(exc).__name__}: {exc}"}, 1
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks) or b"{}")
    assert os.waitstatus_to_exitcode(status) == 0, report
    return report


def refusal(call: Callable[[], Any]) -> str:
    """The ProducerForkedError message the call raised, or what happened instead."""
    started = time.perf_counter()
    try:
        call()
    except ProducerForkedError as exc:
        return str(exc)
    except BaseException as exc:
        return f"not refused: {type(exc).__name__}: {exc} after {time.perf_counter() - started:.3f} s"
    return "not refused: returned"


@REPEATED
def test_every_call_in_a_forked_child_raises_at_once_and_the_parent_goes_on(attempt, tansu, tansu_topic):
    topic = tansu_topic(partitions=2)
    producer = KafkaProducer(tansu.bootstrap_servers, **FAST)
    kept_send = producer.send  # a hot loop's local: the compiled send() itself
    producer.send(topic, b"before").get(WAIT_S)
    parent = os.getpid()

    def child() -> dict[str, Any]:
        refused = {
            "send": refusal(lambda: producer.send(topic, b"child")),
            "send (the compiled method kept before the fork)": refusal(lambda: kept_send(topic, b"child")),
            "send (with a partition)": refusal(lambda: producer.send(topic, b"child", partition=1)),
            "send_batch": refusal(lambda: producer.send_batch(topic, [b"child"])),
            "flush": refusal(producer.flush),
            "partitions_for": refusal(lambda: producer.partitions_for(topic)),
            "metrics": refusal(producer.metrics),
            "begin_transaction": refusal(producer.begin_transaction),
        }
        producer.close()  # returns: no flush, no join, no lock
        producer.close(0)
        return {"refused": refused, "pid": os.getpid()}

    report = in_child(child)
    child_pid = report["pid"]
    for call, message in report["refused"].items():
        assert message.startswith(call.split()[0] + "() in process"), (call, message)
        assert f"process {child_pid}, a fork of process {parent}" in message, (call, message)
        assert "post_fork" in message and "worker_process_init" in message, (call, message)
    producer.send(topic, b"after", partition=0).get(WAIT_S)
    producer.close()
    assert count_records(tansu.bootstrap_servers, topic) == 2  # nothing the child tried reached the broker
    stored = read_back(tansu.bootstrap_servers, topic, 2, 2)
    assert sorted(s.value for ss in stored.values() for s in ss) == [b"after", b"before"]


@REPEATED
def test_a_forked_child_exits_normally_without_flushing_or_joining_the_parents_thread(attempt, tansu, tansu_topic, tmp_path):
    # The child leaves through the interpreter's own exit (atexit, threading's shutdown, the finalizers) with the
    # parent's records still pending in its copy of the accumulator: it must neither send them nor wait for an I/O
    # thread that does not exist there. The parent then sends its own pending records, once each.
    topic = tansu_topic(partitions=1)
    script = tmp_path / "fork_exit.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, warnings
        from kafkaprod import KafkaProducer
        producer = KafkaProducer({tansu.bootstrap_servers!r}, linger_ms=2_000)
        producer.send({topic!r}, b"first").get(30)
        pending = [producer.send({topic!r}, b"pending%d" % i) for i in range(3)]  # lingering for 2 s
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
        if pid == 0:
            del producer, pending
            sys.exit(0)  # the interpreter's exit: nothing of the parent's may run or be waited for
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert not any(f.is_done for f in pending), "the child's exit must not have flushed the parent's records"
        producer.flush(30)
        print([f.get(0).offset for f in pending])
        producer.close()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT_S * 2)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "2,", "3]"], done.stdout
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 4)[0]] == [
        b"first", b"pending0", b"pending1", b"pending2"]


@REPEATED
def test_a_started_aio_producer_refuses_the_child_and_one_never_started_may_start_there(attempt, tansu, tansu_topic):
    topic = tansu_topic(partitions=1)
    loop = asyncio.new_event_loop()
    started = AIOKafkaProducer(tansu.bootstrap_servers, **FAST)
    fresh = AIOKafkaProducer(tansu.bootstrap_servers, **FAST)  # options only: the child may start it

    async def parent_sends(value: bytes) -> Any:
        return await started.send_and_wait(topic, value)

    try:
        loop.run_until_complete(started.start())
        loop.run_until_complete(parent_sends(b"parent"))

        def child() -> dict[str, Any]:
            async def main() -> dict[str, Any]:
                refused = {"send": refusal(lambda: started.send(topic, b"child"))}
                for name in ("flush", "partitions_for", "begin_transaction"):
                    call = getattr(started, name)
                    coroutine = call(topic) if name == "partitions_for" else call()
                    refused[name] = await _refusal_async(coroutine)
                await started.stop()  # returns: the pending records are the parent's
                async with fresh:
                    offset = (await fresh.send_and_wait(topic, b"fresh in child")).offset
                return {"refused": refused, "fresh offset": offset}

            return asyncio.run(main())

        report = in_child(child)
        loop.run_until_complete(parent_sends(b"parent again"))
        loop.run_until_complete(started.stop())
    finally:
        loop.close()
    assert all("AIOKafkaProducer: its I/O thread" in m and "post_fork" in m for m in report["refused"].values()), \
        report["refused"]
    assert report["fresh offset"] == 1
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 3)[0]] == [
        b"parent", b"fresh in child", b"parent again"]


async def _refusal_async(coroutine: Any) -> str:
    try:
        await coroutine
    except ProducerForkedError as exc:
        return str(exc)
    except BaseException as exc:
        return f"not refused: {type(exc).__name__}: {exc}"
    return "not refused: returned"
