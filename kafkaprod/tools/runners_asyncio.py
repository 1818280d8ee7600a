"""The asyncio clients' side of the comparison harness (kafkaprod.aio, aiokafka, confluent-kafka's AIOProducer):
each one's producer behind the same three coroutine functions, and the timed run that drives them from one
coroutine. runners.py calls :func:`run` and owns the records, the window and the outcome counts; like it, this file
imports only the standard library and the client under test, so it runs under any interpreter beside it.
"""
from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any


class _AsyncClient:
    """What the asyncio loop needs of an asyncio producer: ``send`` (a coroutine function returning the record's
    delivery future), and the coroutine functions ``flush`` and ``stop``."""

    def __init__(self, send: Callable[..., Any], flush: Callable[[], Any], stop: Callable[[], Any]) -> None:
        self.send, self.flush, self.stop = send, flush, stop


async def _aiokafka(spec: dict[str, Any], settings: dict[str, Any]) -> _AsyncClient:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"], acks=settings["acks"], enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"], max_batch_size=spec["batch_size"], max_request_size=spec["max_request_size"],
        compression_type=settings["codec"], client_id=spec["client_id"], **_aiokafka_security(spec))
    await producer.start()
    return _AsyncClient(producer.send, producer.flush, producer.stop)


def _aiokafka_security(spec: dict[str, Any]) -> dict[str, Any]:
    # aiokafka takes TLS settings as an SSLContext only.
    security = dict(spec.get("security", {}))
    if "ssl_cafile" in security:
        import ssl

        security["ssl_context"] = ssl.create_default_context(cafile=security.pop("ssl_cafile"))
    return security


async def _kafkaprod_aio(spec: dict[str, Any], settings: dict[str, Any]) -> _AsyncClient:
    from kafkaprod.aio import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=spec["bootstrap_servers"], acks=settings["acks"], enable_idempotence=spec["idempotence"],
        linger_ms=spec["linger_ms"], batch_size=spec["batch_size"], max_request_size=spec["max_request_size"],
        compression_type=spec["compression"], client_id=spec["client_id"], **spec.get("security", {}))
    await producer.start()
    return _AsyncClient(producer.send, producer.flush, producer.stop)


async def _confluent_aio(spec: dict[str, Any], settings: dict[str, Any]) -> _AsyncClient:
    from confluent_kafka.aio import AIOProducer

    producer = AIOProducer({
        "bootstrap.servers": spec["bootstrap_servers"], "acks": settings["acks"], "enable.idempotence": spec["idempotence"],
        "linger.ms": spec["linger_ms"], "batch.size": spec["batch_size"], "compression.type": spec["compression"],
        "message.max.bytes": spec["max_request_size"], "client.id": spec["client_id"], **settings["librdkafka_security"]})
    return _AsyncClient(producer.produce, producer.flush, producer.close)


_OPENERS: dict[str, Callable[[dict[str, Any], dict[str, Any]], Any]] = {
    "aiokafka": _aiokafka,
    "kafkaprod-aio": _kafkaprod_aio,
    "confluent-aio": _confluent_aio,
}


def run(client_name: str, spec: dict[str, Any], settings: dict[str, Any], records: Any, window: Any,
        outcomes: Any) -> None:
    """One timed run of an asyncio client, counting each record's outcome in ``outcomes`` (runners.Outcomes)."""
    open_client = _OPENERS[client_name]

    async def main() -> None:
        loop = type(asyncio.get_running_loop())
        settings["event_loop_class"] = f"{loop.__module__}.{loop.__qualname__}"  # the report says which loop ran
        client = await open_client(spec, settings)
        try:
            topic, value, n = spec["topic"], records.value, records.n
            await asyncio.wait_for(await client.send(topic, value, records.first_key), settings["warmup_timeout_s"])
            send = client.send
            held: list[Any] = []
            hold, on_done = held.append, outcomes.on_aiokafka
            window.start()
            # send() is a coroutine that returns once the record is queued (waiting for room when the producer's
            # buffer is full) and hands back a delivery future; flush() waits for all of them to be sent. (The
            # argument tuples cost every asyncio client the same few ns, next to a coroutine's microsecond.)
            calls: Any = (itertools.repeat((topic, value), n) if records.keys is None
                          else ((topic, value, key) for key in records.key_stream()))
            if outcomes.mode == "none":
                for args in calls:
                    await send(*args)
            elif outcomes.mode in ("future", "gather"):
                for args in calls:
                    hold(await send(*args))
            else:
                for args in calls:
                    (await send(*args)).add_done_callback(on_done)
            if outcomes.mode == "gather":
                # No flush: gather() waits for every record, as a service that gathers its sends does.
                for outcome in await asyncio.gather(*held, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        outcomes.fail(outcome)
                    else:
                        outcomes.delivered += 1
            else:
                await client.flush()
            if outcomes.mode == "future":
                for future in held:
                    try:
                        await future
                    except Exception as exc:  # every failure kind counts; the first ones are named
                        outcomes.fail(exc)
                    else:
                        outcomes.delivered += 1
            elif outcomes.mode == "callback":
                await outcomes.wait_async(n)  # done callbacks run on the loop's next turns
            window.stop()
        finally:
            await client.stop()

    if spec.get("event_loop", "asyncio") == "uvloop":
        import uvloop  # the asyncio clients on uvloop's loop: the bench extra installs it

        uvloop.run(main())
    else:
        asyncio.run(main())
