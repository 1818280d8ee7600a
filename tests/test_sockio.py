"""kafkaprod._native.sockio: the non-blocking socket calls NetworkClient makes without releasing the GIL, on real
socket pairs of this machine."""
from __future__ import annotations

import errno
import selectors
import socket

import pytest

from kafkaprod._native import sockio

pytestmark = pytest.mark.skipif(not sockio.supported(), reason="POSIX socket calls only")


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_send_pieces_writes_the_pieces_in_order_in_one_call(pair):
    a, b = pair
    pieces = [b"head", bytearray(b"-middle-"), memoryview(b"xxtailxx")[2:6]]
    assert sockio.send_pieces(a.fileno(), pieces) == 16
    assert b.recv(100) == b"head-middle-tail"


def test_send_pieces_offers_at_most_512_pieces(pair):
    a, b = pair
    assert sockio.send_pieces(a.fileno(), [b"x"] * 600) == 512


def test_send_pieces_of_nothing_writes_nothing(pair):
    a, _ = pair
    assert sockio.send_pieces(a.fileno(), []) == 0


def test_send_pieces_on_a_full_socket_answers_minus_one(pair):
    a, _ = pair
    chunk = b"z" * 65536
    total = 0
    while True:
        sent = sockio.send_pieces(a.fileno(), [chunk])
        if sent < 0:
            break
        total += sent
    assert total > 0
    assert sockio.send_pieces(a.fileno(), [chunk]) == -1


def test_send_pieces_to_a_closed_peer_raises_oserror_naming_the_error(pair):
    a, b = pair
    b.close()
    with pytest.raises(OSError) as info:
        sockio.send_pieces(a.fileno(), [b"after close"])
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_send_pieces_refuses_a_piece_without_the_buffer_protocol(pair):
    a, b = pair
    with pytest.raises(TypeError):
        sockio.send_pieces(a.fileno(), [b"ok", "text is not bytes"])
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        b.recv(10)  # nothing was written


def test_recv_bytes_answers_none_when_nothing_is_there_then_the_bytes(pair):
    a, b = pair
    buf = bytearray(8)
    assert sockio.recv_bytes(b.fileno(), buf) is None
    a.send(b"0123456789")
    assert sockio.recv_bytes(b.fileno(), buf) == b"01234567"  # at most the buffer's size
    assert sockio.recv_bytes(b.fileno(), buf) == b"89"
    assert sockio.recv_bytes(b.fileno(), buf) is None


def test_recv_bytes_answers_empty_bytes_once_the_peer_closed(pair):
    a, b = pair
    a.close()
    assert sockio.recv_bytes(b.fileno(), bytearray(16)) == b""


def test_recv_bytes_on_a_closed_descriptor_raises_oserror():
    a, b = socket.socketpair()
    fd = b.fileno()
    b.close()
    a.close()
    with pytest.raises(OSError) as info:
        sockio.recv_bytes(fd, bytearray(16))
    assert info.value.errno == errno.EBADF


@pytest.mark.skipif(not sockio.epoll_supported(), reason="epoll is Linux only")
def test_epoll_ready_reports_what_the_epoll_selector_would_without_waiting(pair):
    a, b = pair
    sel = selectors.EpollSelector()
    try:
        sel.register(a, selectors.EVENT_READ)
        sel.register(b, selectors.EVENT_READ | selectors.EVENT_WRITE)
        ready = dict(sockio.epoll_ready(sel.fileno()))
        assert a.fileno() not in ready  # nothing to read yet
        assert ready[b.fileno()] & 0x004  # EPOLLOUT
        b.send(b"x")
        ready = dict(sockio.epoll_ready(sel.fileno()))
        assert ready[a.fileno()] & 0x001  # EPOLLIN
        assert {fd for fd, _ in sockio.epoll_ready(sel.fileno())} == \
            {key.fd for key, _ in sel.select(0)}
    finally:
        sel.close()


@pytest.mark.parametrize("held_io", [True, False], ids=["sockio", "socket-module"])
def test_records_round_trip_through_tansu_on_either_io_path(tansu, tansu_topic, monkeypatch, held_io):
    # Where sockio is missing (not POSIX) NetworkClient falls back to the socket and selectors modules; both
    # paths write requests larger than the socket buffer and read every answer.
    from kafkaprod import network, security
    from producer_support import WAIT_S, make_producer, read_back

    monkeypatch.setattr(network, "_HELD_IO", held_io)
    monkeypatch.setattr(security, "_HELD_IO", held_io)
    if not held_io:
        monkeypatch.setattr(sockio, "epoll_supported", lambda: False)
    topic = tansu_topic(partitions=3)
    values = [bytes([i % 251]) * (100 + (i * 7919) % 20_000) for i in range(300)]
    with make_producer(tansu.bootstrap_servers, batch_size=1 << 20, linger_ms=20) as producer:
        assert (producer._client._epoll_fd >= 0) == (held_io and sockio.epoll_supported())
        futures = [producer.send(topic, v, partition=i % 3) for i, v in enumerate(values)]
        metadata = [f.get(WAIT_S) for f in futures]

    stored = read_back(tansu.bootstrap_servers, topic, 3, len(values))
    for i, md in enumerate(metadata):
        [s] = [s for s in stored[md.partition] if s.offset == md.offset]
        assert s.value == values[i]
