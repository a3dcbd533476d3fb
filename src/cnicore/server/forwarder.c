/*
 * cnicore native launcher: hand one CNI exec to the warm server (`cnitool daemon`).
 *
 * The runtime execs this binary as it would any plugin. It sends the server
 * its stdio, its mount and network namespaces, CNI_NETNS opened here (a path
 * that may exist only in the caller's mount namespace), argv, environment,
 * working directory and umask in one message, then waits for the exit status.
 * A pre-forked worker of the server enters those namespaces and runs the
 * plugin, writing straight to our stdout and stderr.
 *
 * Fallback rules (docs/DESIGN.md, "The warm server"):
 *  - no server, refused connection, refusal by the server (protocol or build
 *    mismatch, non-root, stale code): exec the plugin's Python launcher at
 *    once, the cold path; never wait for a server;
 *  - no first answer (S or R) within CNICORE_FIRST_ANSWER_MS of the connect
 *    (a server stopped, gone, or with every worker busy): the cold path too;
 *  - connection lost after the worker started: ADD is reported as CNI error
 *    11 (try again later) by the Python launcher; other commands rerun cold;
 *  - SIGTERM/SIGINT: the worker is cancelled, then we die of the same signal.
 *
 * Compiled by `cnitool plugins install --native` with CNICORE_SOCKET and
 * CNICORE_BUILD_ID defined; the Python launcher of type T lives in
 * <dir of this binary>/.cnicore-python/T.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef CNICORE_SOCKET
#define CNICORE_SOCKET "/run/cnicore/cnicore.sock"
#endif
#ifndef CNICORE_BUILD_ID
#error "CNICORE_BUILD_ID must be defined"
#endif
#ifndef CNICORE_FIRST_ANSWER_MS  /* cnicore.server._protocol.FIRST_ANSWER_TIMEOUT, passed at build */
#define CNICORE_FIRST_ANSWER_MS 2000
#endif
#define PROTOCOL_VERSION 1u
#define FALLBACK_DIR ".cnicore-python"
#define FLAG_NETNS_FD 1u
#define FLAG_STDIN_SNAPSHOT 2u

extern char **environ;

static char fallback[PATH_MAX];
static int stdin_copy = -1;
static volatile sig_atomic_t cancel_signal;

struct buf { char *data; size_t len, cap; };

static void put(struct buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) _exit(70);
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_u32(struct buf *b, uint32_t v) { put(b, &v, sizeof v); }

static void put_str(struct buf *b, const char *s) {
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    put(b, s, n);
}

/* The cold path: the Python launcher, with stdin rewound when we read it. */
static void run_cold(char **argv, int lost_add) {
    if (stdin_copy >= 0) {
        lseek(stdin_copy, 0, SEEK_SET);
        dup2(stdin_copy, 0);
        close(stdin_copy);
    }
    if (lost_add) setenv("CNICORE_SERVER_LOST", "1", 1);
    execv(fallback, argv);
    static const char msg[] = "{\n    \"code\": 999,\n    \"msg\": \"cnicore launcher: cannot run the Python launcher\"\n}\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(1);
}

static void on_signal(int sig) { cancel_signal = sig; }

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when fd is readable before the monotonic time `deadline` (ms), 0 when it passed,
   -1 on a signal that cancels. */
static int readable_by(int fd, long long deadline) {
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR || cancel_signal) return -1;
    }
}

static int read_full(int fd, void *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r == 0) return 0;
        if (r < 0) {
            if (errno == EINTR && !cancel_signal) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 1;
}

/* Stdin into an anonymous file, so the cold path can reread it after a fallback. */
static void snapshot_stdin(void) {
    int fd = memfd_create("cni-stdin", MFD_CLOEXEC);
    if (fd < 0) return;
    char chunk[65536];
    for (;;) {
        ssize_t r = read(0, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, chunk + off, (size_t)(r - off));
            if (w < 0) { if (errno == EINTR) continue; close(fd); return; }
            off += w;
        }
    }
    lseek(fd, 0, SEEK_SET);
    stdin_copy = fd;
}

int main(int argc, char **argv) {
    (void)argc;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        static const char msg[] = "{\n    \"code\": 999,\n    \"msg\": \"cnicore launcher: cannot read /proc/self/exe\"\n}\n";
        (void)!write(1, msg, sizeof msg - 1);
        return 1;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    if ((size_t)snprintf(fallback, sizeof fallback, "%s/%s/%s", self, FALLBACK_DIR, slash + 1) >= sizeof fallback)
        _exit(1);

    const char *command = getenv("CNI_COMMAND");
    int is_add = command && strcmp(command, "ADD") == 0;
    /* VERSION and the about text never read stdin: a runtime may leave it open. */
    if (command && *command && strcmp(command, "VERSION") != 0) snapshot_stdin();

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    strncpy(addr.sun_path, CNICORE_SOCKET, sizeof addr.sun_path - 1);
    struct timeval connect_timeout = { .tv_sec = CNICORE_FIRST_ANSWER_MS / 1000,
                                       .tv_usec = CNICORE_FIRST_ANSWER_MS % 1000 * 1000 };
    long long answer_by = now_ms() + CNICORE_FIRST_ANSWER_MS;
    if (sock < 0 || setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &connect_timeout, sizeof connect_timeout) < 0
        || connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0)
        run_cold(argv, 0);

    int fds[6] = { stdin_copy >= 0 ? stdin_copy : 0, 1, 2, -1, -1, -1 };
    fds[3] = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    fds[4] = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fds[3] < 0 || fds[4] < 0) run_cold(argv, 0);
    unsigned nfds = 5, flags = stdin_copy >= 0 ? FLAG_STDIN_SNAPSHOT : 0;
    const char *netns = getenv("CNI_NETNS");
    if (netns && *netns) {
        fds[5] = open(netns, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fds[5] >= 0) { nfds = 6; flags |= FLAG_NETNS_FD; }
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
    mode_t mask = umask(0);
    umask(mask);

    struct buf payload = {0};
    put_str(&payload, CNICORE_BUILD_ID);
    put_u32(&payload, (uint32_t)mask);
    put_u32(&payload, flags);
    put_str(&payload, cwd);
    put_str(&payload, fallback);
    uint32_t count = 0;
    while (argv[count]) count++;
    put_u32(&payload, count);
    for (uint32_t i = 0; i < count; i++) put_str(&payload, argv[i]);
    count = 0;
    while (environ[count]) count++;
    put_u32(&payload, count);
    for (uint32_t i = 0; i < count; i++) put_str(&payload, environ[i]);

    struct buf message = {0};
    put(&message, "CNIW", 4);
    put_u32(&message, PROTOCOL_VERSION);
    put_u32(&message, (uint32_t)payload.len);
    put(&message, payload.data, payload.len);

    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = { .iov_base = message.data, .iov_len = message.len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                          .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(cmsg), fds, nfds * sizeof(int));

    struct sigaction sa = { .sa_handler = on_signal };  /* no SA_RESTART: reads see EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /* Nothing of ours is handed over before a worker has taken the connection (an 'A'
       frame): descriptors queued in a connection nobody accepts would keep the runtime's
       stdout open after we went cold. */
    {
        unsigned char frame[8];
        int r = readable_by(sock, answer_by);
        if (r > 0) r = read_full(sock, frame, sizeof frame);
        if (cancel_signal) {  /* nothing was handed over: nothing to cancel */
            signal(cancel_signal, SIG_DFL);
            raise(cancel_signal);
            _exit(128 + cancel_signal);
        }
        if (r <= 0 || frame[0] != 'A') {  /* no worker in time, gone, or refused */
            close(sock);
            run_cold(argv, 0);
        }
    }

    size_t sent = 0;
    while (sent < message.len) {
        ssize_t w = sent == 0 ? sendmsg(sock, &msg, MSG_NOSIGNAL)
                              : send(sock, message.data + sent, message.len - sent, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR && !cancel_signal) continue;
            run_cold(argv, 0);
        }
        sent += (size_t)w;
    }
    for (unsigned i = 3; i < nfds; i++) close(fds[i]);

    int started = 0;
    for (;;) {
        unsigned char frame[8];
        int r = started ? 1 : readable_by(sock, answer_by);
        if (r == 0) {  /* nobody took the connection in time: never wait for a server */
            close(sock);
            run_cold(argv, 0);
        }
        if (r > 0) r = read_full(sock, frame, sizeof frame);
        if (cancel_signal) {
            (void)!send(sock, "C", 1, MSG_NOSIGNAL);
            close(sock);
            signal(cancel_signal, SIG_DFL);
            raise(cancel_signal);
            _exit(128 + cancel_signal);
        }
        if (r <= 0) {  /* the server went away */
            close(sock);
            run_cold(argv, started && is_add);
        }
        int32_t value;
        memcpy(&value, frame + 4, sizeof value);
        switch (frame[0]) {
        case 'S': started = 1; break;
        case 'X': _exit(value & 0xff);
        default: close(sock); run_cold(argv, 0);  /* 'R': refused */
        }
    }
}
