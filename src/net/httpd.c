/*
 * httpd.c — the smallest HTTP server that serves probes and metrics, and nothing else.
 *
 * One thread, one connection at a time (kubelet probes and a Prometheus scrape are the only
 * clients), GET only, the request bounded in size (8 KiB) and time (5 s), one response per
 * connection (Connection: close). A handler writes the body into a buf; anything it does not
 * know is 404. Listens on the configured address, ":8080" meaning all interfaces.
 */

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#define HTTPD_MAX_REQUEST 8192
#define HTTPD_TIMEOUT_MS 5000

/* Returns the status code; fills body and content type. */
typedef int (*httpd_handler)(void *ud, const char *path, buf *body, const char **content_type);

typedef struct httpd {
    int fd;
    int wake[2]; /* a pipe: httpd_stop writes a byte so the accept poll returns at once */
    pthread_t thread;
    int started;
    atomic_int stop;
    httpd_handler handler;
    void *ud;
    char addr[128];
} httpd;

/* Parses "[host]:port" (host empty = all interfaces) and binds. */
static httpd *httpd_start(const char *addr, httpd_handler h, void *ud, wc_err *err);

static int httpd_listen(const char *addr, wc_err *err) {
    char host[128] = "", port[16];
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) return err_set(err, WC_EINVAL, "listen address %s: want [host]:port", addr);
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host) return err_set(err, WC_EINVAL, "listen address %s: host too long", addr);
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') { /* [::1]:8080 */
        memmove(host, host + 1, hl - 2);
        host[hl - 2] = '\0';
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) return err_set(err, WC_EINVAL, "listen address %s: %s", addr, gai_strerror(gai));
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
        close(fd);
        fd = -1;
    }
    int e = errno;
    freeaddrinfo(res);
    if (fd < 0) return err_set(err, WC_EIO, "listen on %s: %s", addr, strerror(e));
    return fd;
}

/* Reads the request head with a deadline; returns 0 and the path, or -1. */
static int httpd_read_request(int c, char *path, size_t pathsz) {
    char req[HTTPD_MAX_REQUEST + 1];
    size_t n = 0;
    int64_t deadline = wc_now_ms() + HTTPD_TIMEOUT_MS;
    while (n < HTTPD_MAX_REQUEST) {
        int64_t left = deadline - wc_now_ms();
        if (left <= 0) return -1;
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) return -1;
        ssize_t r = recv(c, req + n, HTTPD_MAX_REQUEST - n, 0);
        if (r <= 0) return -1;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    if (strncmp(req, "GET ", 4) != 0) return -2;
    const char *p = req + 4, *sp = strchr(p, ' ');
    if (!sp || (size_t)(sp - p) >= pathsz) return -1;
    memcpy(path, p, (size_t)(sp - p));
    path[sp - p] = '\0';
    char *q = strchr(path, '?');
    if (q) *q = '\0';
    return 0;
}

static void httpd_send(int c, int status, const char *ctype, const buf *body) {
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                       : status == 503 ? "Service Unavailable" : "Bad Request";
    char head[256];
    int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      status, reason, ctype, body->len);
    const char *parts[2] = {head, body->data ? body->data : ""};
    size_t lens[2] = {(size_t)hl, body->len};
    int64_t deadline = wc_now_ms() + HTTPD_TIMEOUT_MS;
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < lens[i]) {
            int64_t left = deadline - wc_now_ms();
            struct pollfd p = {c, POLLOUT, 0};
            if (left <= 0 || poll(&p, 1, (int)left) <= 0) return;
            ssize_t w = send(c, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);
            if (w <= 0) return;
            off += (size_t)w;
        }
    }
}

static void *httpd_main(void *arg) {
    httpd *s = arg;
    while (!atomic_load(&s->stop)) {
        /* Asleep until a client connects or httpd_stop wakes it (it polled every 200 ms). */
        struct pollfd p[2] = {{s->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) <= 0 || !(p[0].revents & POLLIN)) continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        char path[512];
        buf body = BUF_INIT;
        int rr = httpd_read_request(c, path, sizeof path);
        if (rr == -2) {
            buf_puts(&body, "method not allowed\n");
            httpd_send(c, 405, "text/plain; charset=utf-8", &body);
        } else if (rr == 0) {
            const char *ctype = "text/plain; charset=utf-8";
            int status = s->handler(s->ud, path, &body, &ctype);
            httpd_send(c, status, ctype, &body);
        }
        buf_free(&body);
        close(c);
    }
    return NULL;
}

static httpd *httpd_start(const char *addr, httpd_handler h, void *ud, wc_err *err) {
    int fd = httpd_listen(addr, err);
    if (fd < 0) return NULL;
    httpd *s = xcalloc(1, sizeof *s);
    s->fd = fd;
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        err_set(err, WC_EIO, "http server wake pipe: %s", strerror(errno));
        close(fd);
        free(s);
        return NULL;
    }
    s->handler = h;
    s->ud = ud;
    /* The bound address (":0" picks a free port: tests read it from the log). */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char hostbuf[64] = "";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, hostbuf, sizeof hostbuf);
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            hostbuf[0] = '[';
            inet_ntop(AF_INET6, &in6->sin6_addr, hostbuf + 1, sizeof hostbuf - 2);
            strcat(hostbuf, "]");
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(s->addr, sizeof s->addr, "%s:%d", hostbuf, port);
    int rc = pthread_create(&s->thread, NULL, httpd_main, s);
    if (rc) {
        close(fd);
        close(s->wake[0]);
        close(s->wake[1]);
        free(s);
        err_set(err, WC_EIO, "http server thread: %s", strerror(rc));
        return NULL;
    }
    s->started = 1;
    return s;
}

static void httpd_stop(httpd *s) {
    if (!s) return;
    atomic_store(&s->stop, 1);
    ssize_t w = write(s->wake[1], "x", 1);
    (void)w; /* a full pipe already wakes it */
    if (s->started) pthread_join(s->thread, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    free(s);
}
