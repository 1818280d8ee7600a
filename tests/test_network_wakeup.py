"""NetworkClient.wakeup(): a wakeup from another thread is never lost, whatever the interleaving."""
from __future__ import annotations

import selectors

from kafkaprod.network import NetworkClient


class _ReadHook:
    """Stands in for NetworkClient._read_wake (one read of the wake socket) and runs `during` before the first
    read, as a racing thread would."""

    def __init__(self, read, during) -> None:
        self._read = read
        self._during = during

    def __call__(self) -> bytes | None:
        if self._during is not None:
            during, self._during = self._during, None
            during()
        return self._read()


def _wake_pending(client: NetworkClient) -> bool:
    sel = selectors.DefaultSelector()
    try:
        sel.register(client._wake_r, selectors.EVENT_READ)
        return bool(sel.select(0))
    finally:
        sel.close()


def test_wakeup_racing_with_the_drain_of_an_earlier_one_still_wakes_the_next_poll():
    client = NetworkClient("test", 30_000, 50, 1000, 5)
    try:
        client.wakeup()
        # Another thread calls wakeup() while the Sender empties the wake socket.
        client._read_wake = _ReadHook(client._read_wake, client.wakeup)  # type: ignore[method-assign]
        client._drain_wakeups()
        del client._read_wake

        client.wakeup()  # a later wakeup, after the Sender went back to poll()

        assert _wake_pending(client), "the wakeup was swallowed: poll() would sleep through it"
    finally:
        client.close()
