"""What a forked child may do with the producers its parent made: nothing but drop them.

``os.fork()`` (gunicorn and uwsgi workers, celery's prefork pool, multiprocessing's ``fork`` start method) copies
a producer into the child without its I/O thread, which exists only in the parent, and with copies of its
connections and locks, which that thread may have held at the moment of the fork. A record appended in the child
would never be sent: its future would wait out ``delivery_timeout_ms`` (librdkafka's producers fail the same
way, silently). So right after the fork every producer of the parent is told (``os.register_at_fork``), and in
the child each of its calls raises :class:`~kafkaprod.errors.ProducerForkedError` at once, naming the fix;
``close()`` and the finalizer only mark it closed: no flush, no join, no lock, no socket. The send path pays
nothing for this: a forked producer swaps its ``send`` for one that raises, and its accumulator refuses appends.

An ``AIOKafkaProducer`` constructed but not started holds only its options, so a child may start it; every
``KafkaProducer`` starts its I/O thread (and may connect) in its constructor, so none is usable in a child.
"""
from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

from kafkaprod.errors import ProducerForkedError


class ForkAware(Protocol):
    def _forked_in_child(self) -> None:
        """Called in the child, right after the fork, with only the forking thread alive: set flags, take no
        lock (the parent's threads may have held any of them), do no I/O, log nothing."""


_tracked: weakref.WeakSet[Any] = weakref.WeakSet()


def track(producer: ForkAware) -> None:
    """Tell ``producer`` when this process forks (in the child)."""
    _tracked.add(producer)


def forked_error(what: str, kind: str, creator_pid: int) -> ProducerForkedError:
    return ProducerForkedError(
        f"{what} in process {os.getpid()}, a fork of process {creator_pid} that created this {kind}: its I/O "
        f"thread and connections stayed in that process, so nothing sent here could be delivered. Create the "
        f"producer in the child, after the fork (gunicorn's post_fork hook, celery's worker_process_init signal, a "
        f"multiprocessing Pool's initializer, or the 'spawn' start method)")


def _after_fork_in_child() -> None:
    for producer in list(_tracked):
        producer._forked_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
