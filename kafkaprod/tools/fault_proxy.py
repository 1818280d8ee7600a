"""A TCP proxy of our own on loopback for fault injection (the sandbox has no netem): it forwards a Kafka client's
connections to a broker and, on demand, cuts them at random bytes, mangles, delays or drops answers, or holds the
line. Used by tests/test_delivery_faults.py and bench/faults.py; standard library only.
"""
from __future__ import annotations

import random
import socket
import threading
import time

__all__ = ["CuttingProxy"]

_Pair = tuple[socket.socket, socket.socket]  # (the client's connection, the one to the broker)


class CuttingProxy:
    """A TCP proxy that, once armed, cuts the connection it is forwarding on after a random number of bytes.

    A cut falls at a random point of a request (the broker gets part of a request and then EOF: nothing
    written) or of a response (the broker wrote the batches, the producer never hears so). The bytes before the
    cut point are forwarded, then both sides are closed.

    It can also mangle answers: every few response frames, one is cut short to its correlation id and a zero
    byte (a well-framed answer no decoder can read), on connections accepted after mangle() was called.

    It can delay answers: each piece of a response waits ``delay_responses(seconds)`` before it is forwarded.

    And it can hold the line: while held, bytes in either direction are dropped (connections stay open, new
    ones are accepted and held too), and on release every connection that dropped bytes is closed, so that no
    request caught in the hold ever reaches the broker. Or drop only the answers (``drop_answers()``): requests
    still reach the broker, which writes them, and on release every connection that lost an answer is reset.
    """

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target = (host, target_port)
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self.cut_directions: list[str] = []  # "request" (producer -> broker) or "response", per cut
        self._lock = threading.Lock()
        self._budget: int | None = None
        self._cuts_left = 0
        self._rng = random.Random()
        self._max_gaps: dict[str, int] = {}
        self._direction = ""
        self._sockets: set[socket.socket] = set()
        self._held = False
        self._poisoned: set[int] = set()  # ids of the sockets of connections that dropped bytes
        self._dropping_answers = False
        self.answers_dropped = 0
        self._response_delay = 0.0
        self._mangle_left = 0
        self._mangle_every = 1
        self._response_frames = 0
        self.mangled = 0
        self._closed = False
        self._threads = [threading.Thread(target=self._accept, name="cutting-proxy", daemon=True)]
        self._threads[0].start()

    def arm(self, cuts: int, max_gaps: dict[str, int], seed: int) -> None:
        """Make ``cuts`` cuts, alternately in requests and in responses; before each, let through a random
        1..max_gaps[direction] bytes of that direction (responses are far smaller than requests, so one budget
        for both would almost never cut a response)."""
        with self._lock:
            self._rng = random.Random(seed)
            self._cuts_left = cuts
            self._max_gaps = max_gaps
            self._next_cut()

    def _next_cut(self) -> None:
        if self._cuts_left <= 0:
            self._budget = None
            return
        self._direction = "request" if self._cuts_left % 2 == 0 else "response"
        self._budget = self._rng.randint(1, self._max_gaps[self._direction])

    def delay_responses(self, seconds: float) -> None:
        self._response_delay = seconds

    def mangle(self, count: int, every: int) -> None:
        """Cut short every ``every``-th response frame, ``count`` times (connections accepted from now on)."""
        with self._lock:
            self._mangle_left = count
            self._mangle_every = every
            self._response_frames = 0

    def _maybe_mangled(self, frame: bytes) -> bytes:
        with self._lock:
            if self._mangle_left <= 0:
                return frame
            self._response_frames += 1
            if self._response_frames % self._mangle_every:
                return frame
            self._mangle_left -= 1
            self.mangled += 1
        return (5).to_bytes(4, "big") + frame[4:8] + b"\x00"

    def hold(self) -> None:
        with self._lock:
            self._held = True

    def drop_answers(self) -> None:
        with self._lock:
            self._dropping_answers = True

    def release(self) -> None:
        with self._lock:
            self._held = False
            self._dropping_answers = False
            doomed = [sock for sock in self._sockets if id(sock) in self._poisoned]
            # Socket ids are reused once their objects are gone: a later connection must not inherit a mark.
            self._poisoned.clear()
        for sock in doomed:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _poisoned_later(self, pair: _Pair) -> None:
        # Only the broker-side socket is marked: its reads (the answers) are dropped, and release() shuts it down,
        # which closes the pair; the producer-side socket keeps forwarding requests until then.
        self._poisoned.add(id(pair[1]))

    def _allow(self, size: int, direction: str) -> int:
        """How many of ``size`` bytes to forward; fewer than ``size`` means: then cut."""
        with self._lock:
            if self._budget is None or direction != self._direction:
                return size
            if size < self._budget:
                self._budget -= size
                return size
            allowed = self._budget
            self.cut_directions.append(direction)
            self.cuts += 1
            self._cuts_left -= 1
            self._next_cut()
            return allowed

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                self._sockets.update(pair)
                framed = self._mangle_left > 0
            for src, dst, direction in ((client, upstream, "request"), (upstream, client, "response")):
                target = self._pump_frames if framed and direction == "response" else self._pump
                thread = threading.Thread(target=target, args=(src, dst, pair, direction), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair, direction: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if self._held:
                        self._poisoned.update(map(id, pair))
                    if id(src) in self._poisoned:
                        continue
                    if self._dropping_answers and direction == "response":
                        # Reset on release, like a held connection -- but its requests still go through.
                        self._poisoned_later(pair)
                        self.answers_dropped += 1
                        continue
                if direction == "response" and self._response_delay:
                    time.sleep(self._response_delay)
                allowed = self._allow(len(data), direction)
                if allowed:
                    dst.sendall(data[:allowed])
                if allowed < len(data):
                    break
        except OSError:
            pass
        self._close_pair(pair)

    def _pump_frames(self, src: socket.socket, dst: socket.socket, pair: _Pair, direction: str) -> None:
        # Responses read whole frame by frame from the connection's first byte, so a frame can be cut short.
        buffered = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buffered += data
                while len(buffered) >= 4:
                    end = 4 + int.from_bytes(buffered[:4], "big")
                    if len(buffered) < end:
                        break
                    frame = bytes(buffered[:end])
                    del buffered[:end]
                    dst.sendall(self._maybe_mangled(frame))
        except OSError:
            pass
        self._close_pair(pair)

    def _close_pair(self, pair: _Pair) -> None:
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in self._threads:
            thread.join(5)
