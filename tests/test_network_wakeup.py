"""NetworkClient.wakeup(): a wakeup from another thread is never lost, whatever the interleaving."""
from __future__ import annotations

import selectors

from kafkaprod.network import NetworkClient


class _RecvHook:
    """Stands in for the wake socket's read end and runs `during` on the first recv(), as a racing thread would."""

    def __init__(self, sock, during) -> None:
        self._sock = sock
        self._during = during

    def recv(self, n: int) -> bytes:
        if self._during is not None:
            during, self._during = self._during, None
            during()
        return self._sock.recv(n)


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
        real = client._wake_r
        # Another thread calls wakeup() while the Sender empties the wake socket.
        client._wake_r = _RecvHook(real, client.wakeup)
        client._drain_wakeups()
        client._wake_r = real

        client.wakeup()  # a later wakeup, after the Sender went back to poll()

        assert _wake_pending(client), "the wakeup was swallowed: poll() would sleep through it"
    finally:
        client.close()
