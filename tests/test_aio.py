"""kafkaprod.aio.AIOKafkaProducer against a real broker (Tansu): what a coroutine sends is written once, every
awaitable ends in its record's metadata or error, cancelling one does not cancel its record, stop() sends what is
pending, and the producer refuses another event loop or use after stop(). What it wrote is read back with
confluent-kafka's consumer."""
from __future__ import annotations

import asyncio
import threading

import pytest

from kafkaprod import RecordMetadata
from kafkaprod.aio import AIOKafkaProducer
from kafkaprod.errors import KafkaTimeoutError, ProducerClosedError
from conftest import new_event_loop
from mock_cluster import ALL_BROKERS
from producer_support import FAST, WAIT_S, read_back

NOWHERE = "127.0.0.1:9"  # nothing listens on the discard port


def _producer(bootstrap_servers: str, **options) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers, **{**FAST, **options})


def test_sent_records_resolve_to_their_metadata_and_are_written_once(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=3)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=5) as producer:
            futures = [await producer.send(topic, b"v%03d" % i, key=b"k%d" % (i % 7)) for i in range(300)]
            first = await producer.send_and_wait(topic, b"last", partition=1, headers=[("h", b"x")])
            return [await f for f in futures], first

    metadata, last = run_async(main())
    assert all(isinstance(md, RecordMetadata) and md.topic == topic for md in metadata)
    assert last.partition == 1 and last.serialized_value_size == 4
    stored = read_back(tansu.bootstrap_servers, topic, 3, 301)
    by_value = {s.value: (p, s.offset) for p, ss in stored.items() for s in ss}
    assert all(by_value[b"v%03d" % i] == (md.partition, md.offset) for i, md in enumerate(metadata))
    assert [s.headers for s in stored[1] if s.value == b"last"] == [[("h", b"x")]]


def test_send_batch_gives_one_awaitable_for_the_whole_call_with_headers(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=2)

    async def main():
        async with _producer(tansu.bootstrap_servers) as producer:
            waiter = await producer.send_batch(topic, [b"a", b"b", b"c"], headers=[("trace", b"t1")], partition=0)
            return list(await waiter)

    metadata = run_async(main())
    assert [md.offset for md in metadata] == [0, 1, 2]
    stored = read_back(tansu.bootstrap_servers, topic, 2, 3)
    assert [(s.value, s.headers) for s in stored[0]] == [(v, [("trace", b"t1")]) for v in (b"a", b"b", b"c")]


def test_cancelling_an_awaitable_does_not_cancel_or_lose_its_record(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=1)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=50) as producer:
            cancelled = await producer.send(topic, b"cancelled")
            cancelled.cancel()
            kept = await producer.send(topic, b"kept")
            await producer.flush()
            return cancelled.cancelled(), await kept

    was_cancelled, kept = run_async(main())
    assert was_cancelled and kept.offset == 1
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 2)[0]] == [b"cancelled", b"kept"]


def test_stop_sends_what_is_pending_before_it_returns(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=2)

    async def main():
        producer = _producer(tansu.bootstrap_servers, linger_ms=200)
        await producer.start()
        futures = [await producer.send(topic, b"p%d" % i) for i in range(50)]
        await producer.stop()
        return [f.done() and f.exception() is None for f in futures]

    assert all(run_async(main()))
    read_back(tansu.bootstrap_servers, topic, 2, 50)


def test_stop_that_runs_out_of_time_fails_pending_records_with_a_named_error(run_async):
    async def main():
        producer = _producer(NOWHERE, max_block_ms=60_000)
        await producer.start()
        sending = asyncio.ensure_future(producer.send("no-such-broker-topic", b"x"))
        await asyncio.sleep(0.1)  # the send waits for metadata in a worker thread; the loop runs on
        await producer.stop(timeout=0)
        with pytest.raises(ProducerClosedError):
            await sending

    run_async(main())


def test_waiting_for_metadata_is_awaited_and_the_loop_runs_on(tansu, run_async):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.ensure_future(ticker())
        async with _producer(NOWHERE, max_block_ms=1_000) as producer:
            with pytest.raises(KafkaTimeoutError, match="not present in metadata after 1000 ms"):
                await producer.send("unknown-topic", b"x")
        stop.set()
        await task
        return ticks

    assert run_async(main()) > 5


def test_every_record_ends_in_an_error_when_nothing_can_be_delivered(mock_cluster, mock_topic, run_async):
    # ... and gather() and wait() report it as they report a failed asyncio future.
    topic = mock_topic(partitions=2)

    async def main():
        async with _producer(mock_cluster.bootstrap_servers, delivery_timeout_ms=1_500, request_timeout_ms=1_000,
                             linger_ms=0) as producer:
            await producer.partitions_for(topic)
            mock_cluster.broker_down(ALL_BROKERS)
            futures = [await producer.send(topic, b"r%d" % i) for i in range(20)]
            with pytest.raises(KafkaTimeoutError):
                await asyncio.gather(*futures)
            done, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
            return await asyncio.gather(*futures, return_exceptions=True), futures, done, pending

    try:
        outcomes, futures, done, pending = run_async(main())
    finally:
        mock_cluster.broker_up(ALL_BROKERS)
    assert len(outcomes) == 20 and all(isinstance(o, KafkaTimeoutError) for o in outcomes)
    assert done == set(futures) and not pending
    assert all(isinstance(f.exception(), KafkaTimeoutError) for f in futures)


def test_the_producer_refuses_another_event_loop_and_use_after_stop(tansu, tansu_topic, loop_kind):
    topic = tansu_topic(partitions=1)
    producer = _producer(tansu.bootstrap_servers)
    errors = []

    async def start():
        await producer.start()
        await producer.send_and_wait(topic, b"first")

    async def from_elsewhere():
        try:
            await producer.send(topic, b"other loop")
        except RuntimeError as exc:
            errors.append(str(exc))

    async def use_then_stop():
        await producer.send_and_wait(topic, b"second")
        await producer.stop()
        with pytest.raises(ProducerClosedError, match=r"send\(\) after the producer was stopped"):
            await producer.send(topic, b"after stop")

    loop = new_event_loop(loop_kind)
    try:
        loop.run_until_complete(start())
        other = threading.Thread(target=lambda: asyncio.run(from_elsewhere()))
        other.start()
        other.join(WAIT_S)
        loop.run_until_complete(use_then_stop())
    finally:
        loop.close()
    assert errors and "another event loop" in errors[0]
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 2)[0]] == [b"first", b"second"]


def test_bad_options_are_refused_at_construction_naming_the_option():
    with pytest.raises(ValueError, match="unknown producer option 'lingr_ms'"):
        AIOKafkaProducer(NOWHERE, lingr_ms=5)


def test_a_record_awaitable_works_with_asyncio_helpers_and_done_callbacks(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=2)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=20) as producer:
            records = [await producer.send(topic, b"g%d" % i, partition=0) for i in range(10)]
            called = []
            records[3].add_done_callback(lambda r: called.append(r.result().offset))
            gathered = await asyncio.gather(*records[:5])
            waited = await asyncio.wait_for(records[9], WAIT_S)
            await asyncio.sleep(0)
            late = []
            records[0].add_done_callback(lambda r: late.append(r.exception()))  # already done: runs soon
            await asyncio.sleep(0)
            return [md.offset for md in gathered], waited.offset, called, late, records[2].result()

    offsets, last, called, late, third = run_async(main())
    assert offsets == [0, 1, 2, 3, 4] and last == 9 and called == [3] and late == [None]
    assert third.offset == 2


def test_done_callbacks_each_run_once_and_a_raising_one_goes_to_the_loops_exception_handler(
        tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=1)

    async def main():
        reported = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        async with _producer(tansu.bootstrap_servers, linger_ms=20) as producer:
            records = [await producer.send(topic, b"c%d" % i) for i in range(6)]
            calls = []

            def boom(record):
                raise RuntimeError("callback failed")

            for i, record in enumerate(records):
                record.add_done_callback(lambda r, i=i: calls.append(("first", i)))
                if i == 2:
                    record.add_done_callback(boom)
                record.add_done_callback(lambda r, i=i: calls.append(("second", i)))
            records[4].add_done_callback(boom)
            assert records[4].remove_done_callback(boom) == 1
            await producer.flush()
            for record in records:
                await record
            await asyncio.sleep(0)
            return calls, reported

    calls, reported = run_async(main())
    assert sorted(calls) == sorted([(w, i) for i in range(6) for w in ("first", "second")])
    assert [(c["exception"].args, c["future"].result().offset) for c in reported] == [(("callback failed",), 2)]


# ---- a record's awaitable is an asyncio future ----------------------------------------------------------------------

def test_a_record_is_an_asyncio_future_that_the_standard_librarys_helpers_take_as_it_is(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=2)

    async def main():
        loop = asyncio.get_running_loop()
        async with _producer(tansu.bootstrap_servers, linger_ms=5) as producer:
            async def batch(n):
                return [await producer.send(topic, b"r", partition=n % 2) for _ in range(n)]

            first = await producer.send(topic, b"first", partition=0)
            identity = (asyncio.isfuture(first), first.get_loop() is loop, asyncio.ensure_future(first) is first,
                        asyncio.wrap_future(first) is first, asyncio.iscoroutine(first))
            records = await batch(40)
            gathered = await asyncio.gather(*records, records[0])  # a record given twice is one child
            all_done, none_pending = await asyncio.wait(await batch(6))
            some_done, _ = await asyncio.wait(await batch(6), return_when=asyncio.FIRST_COMPLETED)
            no_error, _ = await asyncio.wait(await batch(6), return_when=asyncio.FIRST_EXCEPTION)
            waited = await asyncio.wait_for(await producer.send(topic, b"wait_for"), WAIT_S)
            shielded = await asyncio.shield(await producer.send(topic, b"shield"))
            completed = [(await next_one).offset for next_one in asyncio.as_completed(await batch(5))]
            in_tasks = []
            if hasattr(asyncio, "TaskGroup"):  # 3.11+
                async with asyncio.TaskGroup() as group:
                    for record in await batch(4):
                        in_tasks.append(group.create_task(_await(record)))
                async with asyncio.timeout(WAIT_S):
                    in_tasks.append(await (await producer.send(topic, b"timeout")))
            return (identity, first.result(), gathered, records, all_done, none_pending, some_done, no_error, waited,
                    shielded, completed, [t.result() if isinstance(t, asyncio.Task) else t for t in in_tasks])

    (identity, first, gathered, records, all_done, none_pending, some_done, no_error, waited, shielded, completed,
     in_tasks) = run_async(main())
    assert identity == (True, True, True, True, False)
    assert first.offset == 0
    assert [md.offset for md in gathered] == [r.result().offset for r in records] + [records[0].result().offset]
    assert len(all_done) == 6 and not none_pending and all(r.done() and r.exception() is None for r in all_done)
    assert some_done and all(r.done() for r in some_done) and len(no_error) == 6
    assert isinstance(waited, RecordMetadata) and isinstance(shielded, RecordMetadata)
    assert len(completed) == 5 and all(offset >= 0 for offset in completed)
    assert all(isinstance(md, RecordMetadata) for md in in_tasks)
    assert len(in_tasks) == (0 if not hasattr(asyncio, "TaskGroup") else 5)


async def _await(record):
    return await record


async def _call(send, *args):
    return await send(*args)


def test_cancelled_waits_and_wrappers_never_cancel_or_lose_their_records(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=1)

    async def main():
        # A long linger keeps every record pending while the waits below give up on it.
        async with _producer(tansu.bootstrap_servers, linger_ms=400) as producer:
            timed_out = await producer.send(topic, b"wait_for")
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(timed_out, 0.01)
            shielded = await producer.send(topic, b"shield")
            outer = asyncio.shield(shielded)
            outer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await outer
            gathered = [await producer.send(topic, b"gather%d" % i) for i in range(2)]
            both = asyncio.gather(*gathered)
            both.cancel()
            with pytest.raises(asyncio.CancelledError):
                await both
            task_record = await producer.send(topic, b"task")
            task = asyncio.ensure_future(_await(task_record))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if hasattr(asyncio, "timeout"):  # 3.11+
                in_block = await producer.send(topic, b"timeout")
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await in_block
            await producer.flush()
            states = {"gather": [r.cancelled() for r in gathered], "shield": shielded.cancelled(),
                      "task": task_record.cancelled()}
            return states, shielded.result().offset, task_record.result().offset

    states, shielded_offset, task_offset = run_async(main())
    # gather() cancels its children, as it does asyncio futures: their awaits end, their records do not.
    assert states == {"gather": [True, True], "shield": False, "task": False}
    assert shielded_offset == 1 and task_offset == 4
    expected = [b"wait_for", b"shield", b"gather0", b"gather1", b"task"]
    if hasattr(asyncio, "timeout"):
        expected.append(b"timeout")
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, len(expected))[0]] == expected


def test_a_cancelled_record_raises_cancelled_error_with_its_message(tansu, tansu_topic, run_async):
    topic = tansu_topic(partitions=1)

    async def main():
        async with _producer(tansu.bootstrap_servers, linger_ms=200) as producer:
            record = await producer.send(topic, b"x")
            assert record.cancel("not needed") and not record.cancel()
            outcomes = []
            for call in (record.result, record.exception):
                with pytest.raises(asyncio.CancelledError, match="not needed"):
                    call()
            with pytest.raises(asyncio.CancelledError, match="not needed"):
                await record
            gathered = await asyncio.gather(record, return_exceptions=True)
            outcomes.append(type(gathered[0]).__name__)
            await producer.flush()
            return outcomes

    assert run_async(main()) == ["CancelledError"]
    assert [s.value for s in read_back(tansu.bootstrap_servers, topic, 1, 1)[0]] == [b"x"]


def test_run_until_complete_takes_a_record(tansu, tansu_topic, loop_kind):
    topic = tansu_topic(partitions=1)
    loop = new_event_loop(loop_kind)
    producer = _producer(tansu.bootstrap_servers, linger_ms=200)
    try:
        loop.run_until_complete(producer.start())
        # send() is called on the running loop (the producer refuses any other); the loop stops, the record's linger
        # still running, and run_until_complete() takes the record as the future to run until.
        record = loop.run_until_complete(_call(producer.send, topic, b"x"))
        metadata = loop.run_until_complete(record)
        loop.run_until_complete(producer.stop())
    finally:
        loop.close()
    assert metadata.offset == 0 and record.result().offset == 0
