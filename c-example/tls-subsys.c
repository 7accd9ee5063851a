/*
 * tls-subsys: a drop-in replacement for ConfD's GnuTLS demo relay
 * (x509tls-netconf/app/tls-x509-subsys.c), written on libnctls.
 *
 * Same port (6513), same files in the working directory (x509-server.pem,
 * x509-server-key.pem, x509-ca.pem, and crl.pem when present), same ConfD
 * header ([admin;IP/port;ssh;9000;100;;/var/confd/homes/admin;;]) sent to
 * 127.0.0.1:2023, and it daemonizes like the demo. It keeps the demo's own
 * accept loop, and hands every accepted socket to nctls: one thread per
 * session, so sessions run concurrently, and every way a session can end is
 * handled as the README's close-semantics table says (see c-example/README.md
 * for the side-by-side comparison).
 *
 * Options (all optional; the defaults are the demo's):
 *   -p PORT       listen port (0: any free port, printed)   [6513]
 *   -b HOST:PORT  the NETCONF server's TCP port             [127.0.0.1:2023]
 *   -u USER       the user for every verified client        [admin]
 *   -c            map users from the certificate's common name instead
 *   -f            stay in the foreground (no daemon(3))
 *
 * SIGTERM/SIGINT: stop accepting, end every session with close_notify,
 * free everything, exit 0.
 */
/* pipe2 and accept4 (atomic close-on-exec) are GNU extensions. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nctls.h"

#define PORT 6513
#define BACKEND "127.0.0.1:2023"
#define CRLFILE "crl.pem"

/* One session: its thread, its connection, and whether it has finished. */
struct session {
    struct session *next;
    pthread_t thread;
    nctls_conn *conn;
    char client[INET6_ADDRSTRLEN + 8];
    int done;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct session *sessions; /* guarded by lock */
static int wake_pipe[2] = {-1, -1};

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    flockfile(stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
    va_end(ap);
}

/* Signal handler: only write(2), which is async-signal-safe. */
static void on_signal(int sig)
{
    int saved = errno;
    char c = (char)sig;
    if (write(wake_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
    errno = saved;
}

static void *session_main(void *arg)
{
    struct session *s = arg;
    nctls_result r = nctls_conn_accept(s->conn);
    if (r != NCTLS_RESULT_OK) {
        say("*** Handshake with %s has failed (%s)", s->client, nctls_conn_error(s->conn));
    } else {
        const char *user = nctls_conn_user(s->conn);
        say("- Handshake with %s was completed, user %s", s->client, user ? user : "(none: refused)");
        nctls_close_reason why = NCTLS_CLOSE_REASON_NONE;
        /* -1: connect to the configured backend; nctls writes the header first. */
        nctls_conn_relay(s->conn, -1, &why);
        uint64_t in = 0, out = 0;
        nctls_conn_bytes(s->conn, &in, &out);
        say("- Session from %s ended: %s [%s], %" PRIu64 " bytes in, %" PRIu64 " bytes out",
            s->client, nctls_close_reason_str(why), nctls_conn_error(s->conn), in, out);
    }
    pthread_mutex_lock(&lock);
    s->done = 1;
    pthread_mutex_unlock(&lock);
    on_signal(0); /* wake the accept loop to reap this thread */
    return NULL;
}

/* Joins and frees finished sessions (all of them when `all`). */
static void reap(int all)
{
    pthread_mutex_lock(&lock);
    struct session **p = &sessions;
    while (*p) {
        struct session *s = *p;
        if (!s->done && !all) {
            p = &s->next;
            continue;
        }
        *p = s->next;
        pthread_mutex_unlock(&lock);
        pthread_join(s->thread, NULL);
        nctls_conn_free(s->conn);
        free(s);
        pthread_mutex_lock(&lock);
    }
    pthread_mutex_unlock(&lock);
}

static int start_session(const nctls_config *cfg, int sd, const struct sockaddr_in *sa)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        close(sd);
        return -1;
    }
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
    snprintf(s->client, sizeof s->client, "%s:%d", ip, ntohs(sa->sin_port));
    say("- connection from %s, port %d", ip, ntohs(sa->sin_port));
    /* On success nctls owns sd; on error we still do. */
    nctls_result r = nctls_conn_new(cfg, sd, &s->conn);
    if (r != NCTLS_RESULT_OK) {
        say("*** cannot take the connection: %s", nctls_result_str(r));
        close(sd);
        free(s);
        return -1;
    }
    pthread_mutex_lock(&lock);
    if (pthread_create(&s->thread, NULL, session_main, s) != 0) {
        pthread_mutex_unlock(&lock);
        nctls_conn_free(s->conn);
        free(s);
        return -1;
    }
    s->next = sessions;
    sessions = s;
    pthread_mutex_unlock(&lock);
    return 0;
}

static int set(nctls_config *cfg, const char *name, const char *value)
{
    if (nctls_config_set(cfg, name, value) != NCTLS_RESULT_OK) {
        fprintf(stderr, "tls-subsys: %s\n", nctls_config_error(cfg));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int port = PORT, foreground = 0, by_cn = 0, opt;
    const char *backend = BACKEND, *user = "admin";
    while ((opt = getopt(argc, argv, "p:b:u:cf")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'b': backend = optarg; break;
        case 'u': user = optarg; break;
        case 'c': by_cn = 1; break;
        case 'f': foreground = 1; break;
        default:
            fprintf(stderr, "usage: tls-subsys [-p PORT] [-b HOST:PORT] [-u USER | -c] [-f]\n");
            return 2;
        }
    }

    /* The demo's credentials: the same file names, now actually verified. */
    nctls_config *cfg = NULL;
    if (nctls_config_new(&cfg) != NCTLS_RESULT_OK)
        return 1;
    int bad = set(cfg, "backend", backend);
    if (!by_cn)
        bad |= set(cfg, "user", user);
    /* Used whenever it exists: one this process cannot read stops it here
     * (the load names the file), never a silently skipped revocation check. */
    if (access(CRLFILE, F_OK) == 0)
        bad |= set(cfg, "crl", CRLFILE);
    if (bad || nctls_config_load(cfg) != NCTLS_RESULT_OK) {
        if (!bad)
            fprintf(stderr, "tls-subsys: %s\n", nctls_config_error(cfg));
        nctls_config_free(cfg);
        return 1;
    }

    int listen_sd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa_serv = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa_serv.sin_addr.s_addr = htonl(INADDR_ANY);
    socklen_t len = sizeof sa_serv;
    if (listen_sd < 0 || setsockopt(listen_sd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(listen_sd, (struct sockaddr *)&sa_serv, sizeof sa_serv) < 0 ||
        listen(listen_sd, 1024) < 0 ||
        getsockname(listen_sd, (struct sockaddr *)&sa_serv, &len) < 0) {
        perror("tls-subsys: listen");
        nctls_config_free(cfg);
        return 1;
    }
    say("Server ready. Listening to port '%d'.\n", ntohs(sa_serv.sin_port));
    if (!foreground && daemon(1, 1) < 0) {
        perror("tls-subsys: daemon");
        return 1;
    }

    /* SIGPIPE keeps its default action on purpose: nctls never raises it. */
    if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        perror("tls-subsys: pipe");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* Session threads leave the signals to this one. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);

    int stopping = 0;
    while (!stopping) {
        struct pollfd fds[2] = {{.fd = listen_sd, .events = POLLIN}, {.fd = wake_pipe[0], .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("tls-subsys: poll");
            break;
        }
        if (fds[1].revents & POLLIN) {
            char c[64];
            ssize_t n;
            while ((n = read(wake_pipe[0], c, sizeof c)) > 0)
                for (ssize_t i = 0; i < n; i++)
                    stopping |= c[i] == SIGTERM || c[i] == SIGINT;
            reap(0);
        }
        if (!stopping && (fds[0].revents & POLLIN)) {
            struct sockaddr_in sa_cli;
            socklen_t client_len = sizeof sa_cli;
            int sd = accept4(listen_sd, (struct sockaddr *)&sa_cli, &client_len, SOCK_CLOEXEC);
            if (sd < 0)
                continue;
            pthread_sigmask(SIG_BLOCK, &block, &old);
            start_session(cfg, sd, &sa_cli);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
    }

    /* Stop accepting; end every live session with close_notify. */
    close(listen_sd);
    pthread_mutex_lock(&lock);
    int live = 0;
    for (struct session *s = sessions; s; s = s->next) {
        if (!s->done) {
            nctls_conn_stop(s->conn);
            live++;
        }
    }
    pthread_mutex_unlock(&lock);
    say("- stopping: ending %d session(s)", live);
    reap(1);
    nctls_config_free(cfg);
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    say("- stopped");
    return 0;
}
