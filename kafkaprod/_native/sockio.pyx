# cython: language_level=3
"""Non-blocking socket calls that keep the GIL.

Python's socket methods release the GIL around every system call, even on a non-blocking socket where the call
cannot wait. For the Sender thread each release is costly while the caller's thread is busy in send(): taking
the GIL back waits for that thread to give it up, up to sys.getswitchinterval() (5 ms) each time. A Sender loop
that polls, writes and reads with three such calls then moves one ProduceRequest per ~15 ms, and the broker sits
idle while the caller fills the accumulator. These calls cannot block, so they keep the GIL; only the poll that
really waits releases it.

POSIX only: `supported()` says whether they are available, and NetworkClient keeps to the socket module where
they are not.
"""
__all__ = ["epoll_ready", "epoll_supported", "recv_bytes", "send_pieces", "supported"]

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.buffer cimport PyBUF_SIMPLE, PyObject_GetBuffer, PyBuffer_Release
from cpython.exc cimport PyErr_SetFromErrno
from libc cimport errno as c_errno

cdef extern from "sockio_impl.h":
    struct kp_iovec:
        void *iov_base
        size_t iov_len
    int KP_SOCKIO_AGAIN
    int KP_IOV_MAX
    const int kp_sockio_supported
    const int kp_epoll_supported
    long kp_sendv(int fd, kp_iovec *iov, int n)
    long kp_recv(int fd, char *buf, size_t n)
    int kp_epoll_now(int epfd, int *fds, unsigned int *events, int max)

def supported() -> bool:
    """Whether send_pieces() and recv_bytes() work on this platform."""
    return bool(kp_sockio_supported)


def epoll_supported() -> bool:
    """Whether epoll_ready() works on this platform (Linux)."""
    return bool(kp_epoll_supported)


def send_pieces(int fd, pieces) -> int:
    """Writes as much of `pieces` (an iterable of bytes-like objects, in order; the first 512 are offered) as the
    socket takes now, in one sendmsg(). Returns the bytes written, or -1 when the socket takes nothing now;
    raises OSError for any other failure."""
    cdef kp_iovec iov[512]
    cdef Py_buffer views[512]
    cdef int n = 0, i, err = 0
    cdef long r
    try:
        for piece in pieces:
            if n == KP_IOV_MAX:
                break
            PyObject_GetBuffer(piece, &views[n], PyBUF_SIMPLE)
            iov[n].iov_base = views[n].buf
            iov[n].iov_len = <size_t>views[n].len
            n += 1
        if n == 0:
            return 0
        r = kp_sendv(fd, iov, n)
        err = c_errno.errno  # before the releases below, which may free memory and so touch errno
    finally:
        for i in range(n):
            PyBuffer_Release(&views[i])
    if r == -3:
        c_errno.errno = err
        PyErr_SetFromErrno(OSError)
    return r


def recv_bytes(int fd, bytearray buffer):
    """One recv() into `buffer` (reused from call to call, so that no large block is allocated per read): the
    bytes read, as a new bytes object (b"" when the peer closed the connection), or None when there is nothing
    to read now; raises OSError for any other failure."""
    cdef char *buf = PyByteArray_AS_STRING(buffer)
    cdef long r = kp_recv(fd, buf, <size_t>PyByteArray_GET_SIZE(buffer))
    if r == KP_SOCKIO_AGAIN:
        return None
    if r == -3:
        PyErr_SetFromErrno(OSError)
    return PyBytes_FromStringAndSize(buf, r)


def epoll_ready(int epfd) -> list:
    """(fd, epoll event mask) of the ready descriptors of the epoll set `epfd` (a selectors.EpollSelector's
    fileno()), without waiting: the zero-timeout poll, with the GIL kept."""
    cdef int fds[64]
    cdef unsigned int events[64]
    cdef int r = kp_epoll_now(epfd, fds, events, 64)
    cdef int i
    if r == -3:
        PyErr_SetFromErrno(OSError)
    if r < 0:
        raise OSError("epoll is not available on this platform")
    return [(fds[i], events[i]) for i in range(r)]
