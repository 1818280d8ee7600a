/* Non-blocking socket calls for kafkaprod/_native/sockio.pyx. POSIX only: elsewhere every call answers
 * KP_SOCKIO_UNSUPPORTED and NetworkClient keeps to Python's socket and selectors modules. */
#ifndef KP_SOCKIO_IMPL_H
#define KP_SOCKIO_IMPL_H

#include <errno.h>
#include <stddef.h>

#define KP_SOCKIO_UNSUPPORTED (-2)
#define KP_SOCKIO_AGAIN (-1)
#define KP_IOV_MAX 512

#if defined(_WIN32)

struct kp_iovec { void *iov_base; size_t iov_len; };
static const int kp_sockio_supported = 0;
static const int kp_epoll_supported = 0;
static long kp_sendv(int fd, struct kp_iovec *iov, int n) { (void)fd; (void)iov; (void)n; return KP_SOCKIO_UNSUPPORTED; }
static long kp_recv(int fd, char *buf, size_t n) { (void)fd; (void)buf; (void)n; return KP_SOCKIO_UNSUPPORTED; }
static int kp_epoll_now(int epfd, int *fds, unsigned int *events, int max) {
    (void)epfd; (void)fds; (void)events; (void)max; return KP_SOCKIO_UNSUPPORTED;
}

#else

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>
#define kp_iovec iovec
static const int kp_sockio_supported = 1;

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: Python ignores SIGPIPE at startup, so EPIPE is returned instead */
#endif

/* -1 (KP_SOCKIO_AGAIN) when the socket takes nothing now, -3 with errno set on any other error. */
static long kp_sendv(int fd, struct iovec *iov, int n) {
    struct msghdr msg = {0};
    ssize_t r;
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    do {
        r = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) return (long)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return KP_SOCKIO_AGAIN;
    return -3;
}

static long kp_recv(int fd, char *buf, size_t n) {
    ssize_t r;
    do {
        r = recv(fd, buf, n, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) return (long)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return KP_SOCKIO_AGAIN;
    return -3;
}

#if defined(__linux__)
#include <sys/epoll.h>
static const int kp_epoll_supported = 1;
/* The ready descriptors of an epoll set, without waiting. */
static int kp_epoll_now(int epfd, int *fds, unsigned int *events, int max) {
    struct epoll_event evs[64];
    int i, r;
    if (max > 64) max = 64;
    do {
        r = epoll_wait(epfd, evs, max, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return -3;
    for (i = 0; i < r; i++) {
        fds[i] = evs[i].data.fd;
        events[i] = evs[i].events;
    }
    return r;
}
#else
static const int kp_epoll_supported = 0;
static int kp_epoll_now(int epfd, int *fds, unsigned int *events, int max) {
    (void)epfd; (void)fds; (void)events; (void)max; return KP_SOCKIO_UNSUPPORTED;
}
#endif

#endif
#endif
