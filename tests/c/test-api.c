/*
 * test-api: the C API against the ConfD emulator and a real TLS client.
 *
 * usage: test-api EXAMPLES_DIR PKI_DIR BACKEND_ADDR
 *   EXAMPLES_DIR holds nc-client (cargo's release examples), PKI_DIR the
 *   demo PKI (certs/make-certs.sh), BACKEND_ADDR a running confd-emu.
 *
 * Run under valgrind and built with ASan/UBSan by `make c-test`. SIGPIPE is
 * left at its default action: if nctls ever raised it, this process dies.
 */
/* POSIX sockets, signals, posix_spawn, nanosleep: not plain C11. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nctls.h"

extern char **environ;

static const char *examples, *pki, *backend;
static char workdir[256];
static _Atomic int passed, failed;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (cond) {                                                                       \
            passed++;                                                                     \
        } else {                                                                          \
            failed++;                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

#define CHECK_RESULT(call, want) \
    do { \
        nctls_result r_ = (call); \
        CHECK(r_ == (want), "%s returned %u (%s), want %u", #call, r_, nctls_result_str(r_), (unsigned)(want)); \
    } while (0)

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static char *path(const char *dir, const char *name)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

/* Reads a whole (small) file; "" if missing. The caller frees. */
static char *slurp(const char *file)
{
    FILE *f = fopen(file, "r");
    char *buf = calloc(1, 65536);
    if (f && buf) {
        size_t n = fread(buf, 1, 65535, f);
        buf[n] = 0;
    }
    if (f)
        fclose(f);
    return buf;
}

static int file_has(const char *file, const char *text)
{
    char *s = slurp(file);
    int found = s && strstr(s, text) != NULL;
    free(s);
    return found;
}

/* Starts nc-client with stdout and stderr to OUT; returns its pid. */
static pid_t client(const char *out, const char *cert, int port, const char *const *extra)
{
    char connect[64], *argv[32];
    int n = 0;
    snprintf(connect, sizeof connect, "127.0.0.1:%d", port);
    argv[n++] = path(examples, "nc-client");
    argv[n++] = "--connect";
    argv[n++] = connect;
    argv[n++] = "--ca";
    argv[n++] = path(pki, "x509-ca.pem");
    argv[n++] = "--cert";
    argv[n++] = path(pki, strcmp(cert, "admin") == 0 ? "client.pem" : "client2.pem");
    argv[n++] = "--key";
    argv[n++] = path(pki, strcmp(cert, "admin") == 0 ? "client-key.pem" : "client2-key.pem");
    for (; extra && *extra && n < 30; extra++)
        argv[n++] = (char *)*extra;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "cannot start %s: %s\n", argv[0], strerror(rc));
        exit(1);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Waits up to `secs` for TEXT to appear in FILE. */
static int wait_for(const char *file, const char *text, int secs)
{
    for (int i = 0; i < secs * 20; i++) {
        if (file_has(file, text))
            return 1;
        sleep_ms(50);
    }
    fprintf(stderr, "timed out waiting for '%s' in %s\n", text, file);
    return 0;
}

/* ---------------------------------------------------------------------- */

static nctls_config *make_config(const char *listen)
{
    nctls_config *cfg = NULL;
    CHECK_RESULT(nctls_config_new(&cfg), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, "cert", path(pki, "x509-server.pem")), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, "key", path(pki, "x509-server-key.pem")), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, "ca", path(pki, "x509-ca.pem")), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, "backend", backend), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, "drain-timeout", "3"), NCTLS_RESULT_OK);
    if (listen)
        CHECK_RESULT(nctls_config_set(cfg, "listen", listen), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_load(cfg), NCTLS_RESULT_OK);
    return cfg;
}

/* NULL everywhere, bad values, calls out of order: errors, never crashes. */
static void test_misuse(void)
{
    CHECK(strcmp(nctls_result_str(NCTLS_RESULT_OK), "ok") == 0, "result_str(OK)");
    CHECK(strcmp(nctls_result_str(12345), "unknown result code") == 0, "unknown code");
    CHECK(strcmp(nctls_close_reason_str(NCTLS_CLOSE_REASON_BACKEND_CLOSED), "backend-closed") == 0, "reason str");
    CHECK(strncmp(nctls_version(), "nctls/", 6) == 0, "version %s", nctls_version());

    CHECK_RESULT(nctls_config_new(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_config_set(NULL, "backend", "127.0.0.1:1"), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_config_load(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK(nctls_config_error(NULL) == NULL, "config_error(NULL)");
    nctls_config_free(NULL);
    CHECK_RESULT(nctls_server_new(NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_listen(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_run(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_stop(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_set_log_callback(NULL, NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_set_identity_callback(NULL, NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_set_session_end_callback(NULL, NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_server_local_port(NULL, 0, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK(nctls_server_error(NULL) == NULL, "server_error(NULL)");
    CHECK_RESULT(nctls_server_free(NULL), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_conn_new(NULL, 0, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_accept(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_relay(NULL, -1, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_refuse(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_set_user(NULL, "x"), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_peer_cert(NULL, 0, NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_bytes(NULL, NULL, NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_conn_stop(NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK(nctls_conn_user(NULL) == NULL, "conn_user(NULL)");
    CHECK(nctls_conn_error(NULL) == NULL, "conn_error(NULL)");
    nctls_conn_free(NULL);

    nctls_config *cfg = NULL;
    CHECK_RESULT(nctls_config_new(&cfg), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_set(cfg, NULL, "x"), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_config_set(cfg, "backend", NULL), NCTLS_RESULT_NULL_PARAMETER);
    CHECK_RESULT(nctls_config_set(cfg, "colour", "red"), NCTLS_RESULT_BAD_CONFIG);
    CHECK(strstr(nctls_config_error(cfg), "colour") != NULL, "error names the option: %s", nctls_config_error(cfg));
    CHECK_RESULT(nctls_config_set(cfg, "max-record", "9"), NCTLS_RESULT_BAD_CONFIG);
    CHECK(strncmp(nctls_config_error(cfg), "max-record:", 11) == 0, "error: %s", nctls_config_error(cfg));
    CHECK_RESULT(nctls_config_set(cfg, "backend", "\xff\xfe"), NCTLS_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(nctls_config_set(cfg, "user", "admin"), NCTLS_RESULT_OK);
    CHECK(strcmp(nctls_config_error(cfg), "") == 0, "error cleared after success");

    nctls_server *server = NULL;
    CHECK_RESULT(nctls_server_new(cfg, &server), NCTLS_RESULT_NOT_LOADED);
    CHECK(server == NULL, "no output on error");
    CHECK_RESULT(nctls_config_set(cfg, "ca", "/nonexistent/ca.pem"), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_load(cfg), NCTLS_RESULT_LOAD_FAILED);
    CHECK(strstr(nctls_config_error(cfg), "x509-server.pem") || strstr(nctls_config_error(cfg), "/nonexistent/ca.pem"),
          "load error names the file: %s", nctls_config_error(cfg));
    CHECK_RESULT(nctls_config_set(cfg, "map", "* common-name"), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_config_load(cfg), NCTLS_RESULT_BAD_CONFIG);
    CHECK(strstr(nctls_config_error(cfg), "user: cannot be combined") != NULL, "combination: %s", nctls_config_error(cfg));
    nctls_config_free(cfg);

    /* conn_new: bad descriptors are refused and left open. */
    cfg = make_config(NULL);
    nctls_conn *conn = NULL;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    CHECK_RESULT(nctls_conn_new(cfg, -1, &conn), NCTLS_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(nctls_conn_new(cfg, p[0], &conn), NCTLS_RESULT_INVALID_PARAMETER);
    CHECK(fcntl(p[0], F_GETFD) >= 0, "a refused descriptor stays open");
    int unconnected = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_RESULT(nctls_conn_new(cfg, unconnected, &conn), NCTLS_RESULT_INVALID_PARAMETER);
    CHECK(fcntl(unconnected, F_GETFD) >= 0, "a refused socket stays open");
    CHECK(conn == NULL, "no output on error");
    close(unconnected);
    close(p[0]);
    close(p[1]);

    /* Server states: double stop, free while running, run twice. */
    nctls_config_free(cfg);
    cfg = make_config("127.0.0.1:0");
    CHECK_RESULT(nctls_server_new(cfg, &server), NCTLS_RESULT_OK);
    nctls_config_free(cfg);
    uint16_t port = 0;
    CHECK_RESULT(nctls_server_local_port(server, 0, &port), NCTLS_RESULT_WRONG_STATE);
    CHECK_RESULT(nctls_server_listen(server), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_local_port(server, 0, &port), NCTLS_RESULT_OK);
    CHECK(port != 0, "a port was chosen");
    CHECK_RESULT(nctls_server_local_port(server, 1, &port), NCTLS_RESULT_INVALID_PARAMETER);
    CHECK_RESULT(nctls_server_stop(server), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_stop(server), NCTLS_RESULT_ALREADY_STOPPING);
    CHECK_RESULT(nctls_server_run(server), NCTLS_RESULT_OK); /* stopped before it ran: returns at once */
    CHECK_RESULT(nctls_server_run(server), NCTLS_RESULT_WRONG_STATE);
    CHECK_RESULT(nctls_server_listen(server), NCTLS_RESULT_WRONG_STATE);
    CHECK_RESULT(nctls_server_free(server), NCTLS_RESULT_OK);

    /* A port already in use. */
    cfg = make_config("127.0.0.1:0");
    CHECK_RESULT(nctls_server_new(cfg, &server), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_listen(server), NCTLS_RESULT_OK);
    nctls_server_local_port(server, 0, &port);
    char taken[64];
    snprintf(taken, sizeof taken, "127.0.0.1:%u", port);
    nctls_config *cfg2 = make_config(taken);
    nctls_server *server2 = NULL;
    CHECK_RESULT(nctls_server_new(cfg2, &server2), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_listen(server2), NCTLS_RESULT_LISTEN_FAILED);
    CHECK(strstr(nctls_server_error(server2), taken) != NULL, "listen error names the address: %s",
          nctls_server_error(server2));
    CHECK_RESULT(nctls_server_free(server2), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_free(server), NCTLS_RESULT_OK);
    nctls_config_free(cfg2);
    nctls_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* Server: callbacks, refusal, stop from another thread with live sessions */

struct record {
    pthread_mutex_t lock;
    int ends[16];
    char users[16][64];
    int n_ends;
    int log_lines;
    int identity_calls;
    int saw_der;
};

static int identify(void *userdata, const nctls_peer *peer, char *user, size_t user_len)
{
    struct record *rec = userdata;
    pthread_mutex_lock(&rec->lock);
    rec->identity_calls++;
    rec->saw_der |= peer->chain_len >= 1 && peer->chain[0].len > 100 && peer->chain[0].der[0] == 0x30;
    pthread_mutex_unlock(&rec->lock);
    CHECK(user_len == NCTLS_USER_MAX + 1, "user_len %zu", user_len);
    /* The table: certificate CN admin runs as "netadmin"; everyone else is refused. */
    if (peer->rules_user && strcmp(peer->rules_user, "admin") == 0) {
        CHECK(strcmp(user, "admin") == 0, "prefilled with the rules' user: %s", user);
        snprintf(user, user_len, "netadmin");
        return NCTLS_IDENTITY_ACCEPT;
    }
    return NCTLS_IDENTITY_REFUSE;
}

static void session_end(void *userdata, const nctls_session_info *info)
{
    struct record *rec = userdata;
    pthread_mutex_lock(&rec->lock);
    if (rec->n_ends < 16) {
        rec->ends[rec->n_ends] = info->reason;
        snprintf(rec->users[rec->n_ends], 64, "%s", info->user ? info->user : "-");
        rec->n_ends++;
    }
    pthread_mutex_unlock(&rec->lock);
    CHECK(info->client && info->tls && info->reason_text, "session info strings");
}

static void log_line(void *userdata, nctls_log_level level, const char *message)
{
    struct record *rec = userdata;
    pthread_mutex_lock(&rec->lock);
    rec->log_lines++;
    pthread_mutex_unlock(&rec->lock);
    CHECK(level >= NCTLS_LOG_LEVEL_ERROR && level <= NCTLS_LOG_LEVEL_TRACE && message, "log line");
}

static int count_reason(struct record *rec, int reason)
{
    int n = 0;
    pthread_mutex_lock(&rec->lock);
    for (int i = 0; i < rec->n_ends; i++)
        n += rec->ends[i] == reason;
    pthread_mutex_unlock(&rec->lock);
    return n;
}

static void *run_server(void *server)
{
    return (void *)(intptr_t)nctls_server_run(server);
}

static void test_server(void)
{
    struct record rec = {.lock = PTHREAD_MUTEX_INITIALIZER};
    nctls_config *cfg = make_config("127.0.0.1:0");
    nctls_server *server = NULL;
    CHECK_RESULT(nctls_server_new(cfg, &server), NCTLS_RESULT_OK);
    nctls_config_free(cfg);
    CHECK_RESULT(nctls_server_set_identity_callback(server, identify, &rec), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_set_session_end_callback(server, session_end, &rec), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_set_log_callback(server, log_line, &rec), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_listen(server), NCTLS_RESULT_OK);
    uint16_t port = 0;
    nctls_server_local_port(server, 0, &port);

    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, run_server, server) == 0, "thread");

    /* 1. A whole session: get, close-session; the backend closes first. */
    const char *get[] = {"--get", "--close-session", NULL};
    int rc = wait_exit(client(path(workdir, "s1.out"), "admin", port, get));
    CHECK(rc == 0, "nc-client get/close-session exit %d", rc);
    CHECK(file_has(path(workdir, "s1.out"), "clean close (close_notify)"), "s1: clean close");

    /* 2. The identity callback refuses the oper certificate. */
    rc = wait_exit(client(path(workdir, "s2.out"), "oper", port, NULL));
    CHECK(rc != 0, "refused client fails");

    /* 3. Live sessions, then stop from this (another) thread. */
    const char *wait_lock[] = {"--lock", "--wait", "30", NULL};
    pid_t a = client(path(workdir, "s3.out"), "admin", port, wait_lock);
    const char *wait_only[] = {"--wait", "30", NULL};
    pid_t b = client(path(workdir, "s4.out"), "admin", port, wait_only);
    CHECK(wait_for(path(workdir, "s3.out"), "lock:", 30), "session 3 live");
    CHECK(wait_for(path(workdir, "s4.out"), "session-id", 30), "session 4 live");

    CHECK_RESULT(nctls_server_free(server), NCTLS_RESULT_BUSY);
    CHECK_RESULT(nctls_server_set_log_callback(server, NULL, NULL), NCTLS_RESULT_BUSY);
    CHECK_RESULT(nctls_server_run(server), NCTLS_RESULT_BUSY);
    CHECK_RESULT(nctls_server_stop(server), NCTLS_RESULT_OK);
    CHECK_RESULT(nctls_server_stop(server), NCTLS_RESULT_ALREADY_STOPPING);
    void *result = NULL;
    pthread_join(thread, &result);
    CHECK((intptr_t)result == NCTLS_RESULT_OK, "run returned %ld", (long)(intptr_t)result);
    CHECK(wait_exit(a) == 0, "session 3 client exit");
    CHECK(wait_exit(b) == 0, "session 4 client exit");
    CHECK(file_has(path(workdir, "s3.out"), "clean close (close_notify)"), "stop: clean close for session 3");
    CHECK(file_has(path(workdir, "s4.out"), "clean close (close_notify)"), "stop: clean close for session 4");

    CHECK(count_reason(&rec, NCTLS_CLOSE_REASON_BACKEND_CLOSED) == 1, "one backend-closed");
    CHECK(count_reason(&rec, NCTLS_CLOSE_REASON_REFUSED) == 1, "one refused");
    CHECK(count_reason(&rec, NCTLS_CLOSE_REASON_SHUTDOWN) == 2, "two shutdown");
    CHECK(rec.identity_calls == 4, "identity calls %d", rec.identity_calls);
    CHECK(rec.saw_der, "the callback saw the DER chain");
    CHECK(strcmp(rec.users[0], "netadmin") == 0, "session ran as the callback's user: %s", rec.users[0]);
    CHECK(rec.log_lines >= 5, "log lines %d", rec.log_lines);
    CHECK_RESULT(nctls_server_free(server), NCTLS_RESULT_OK);
}

/* ---------------------------------------------------------------------- */
/* Connection level: this program accepts; nctls does the session.        */

struct conn_test {
    int listen_fd;
    int expect_user; /* rules give a user */
    int use_fd;      /* pass a backend fd instead of the configured address */
    int stop_early;  /* nctls_conn_stop from the main thread mid-relay */
    nctls_close_reason reason;
    nctls_result accept_result;
    nctls_conn *conn;
    int relayed;
    const nctls_config *cfg;
    pthread_mutex_t lock;
};

static int connect_backend(void)
{
    char host[64];
    snprintf(host, sizeof host, "%s", backend);
    char *colon = strrchr(host, ':');
    *colon = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    inet_pton(AF_INET, host, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("connect backend");
        close(fd);
        return -1;
    }
    return fd;
}

static void *conn_thread(void *arg)
{
    struct conn_test *t = arg;
    int sd = accept(t->listen_fd, NULL, NULL);
    nctls_conn *conn = NULL;
    CHECK_RESULT(nctls_conn_new(t->cfg, sd, &conn), NCTLS_RESULT_OK);
    pthread_mutex_lock(&t->lock);
    t->conn = conn;
    pthread_mutex_unlock(&t->lock);
    t->accept_result = nctls_conn_accept(conn);
    if (t->accept_result == NCTLS_RESULT_OK) {
        const uint8_t *der = NULL;
        size_t len = 0;
        CHECK_RESULT(nctls_conn_peer_cert(conn, 0, &der, &len), NCTLS_RESULT_OK);
        CHECK(der && len > 100 && der[0] == 0x30, "peer certificate DER");
        CHECK_RESULT(nctls_conn_peer_cert(conn, 9, &der, &len), NCTLS_RESULT_INVALID_PARAMETER);
        CHECK_RESULT(nctls_conn_accept(conn), NCTLS_RESULT_WRONG_STATE);
        CHECK(strcmp(nctls_conn_user(conn), "admin") == 0, "rules' user %s", nctls_conn_user(conn));
        CHECK_RESULT(nctls_conn_set_user(conn, "bad;user"), NCTLS_RESULT_INVALID_PARAMETER);
        if (!t->expect_user)
            CHECK_RESULT(nctls_conn_set_user(conn, NULL), NCTLS_RESULT_OK);
        CHECK_RESULT(nctls_conn_relay(conn, t->use_fd ? connect_backend() : -1, &t->reason), NCTLS_RESULT_OK);
        CHECK_RESULT(nctls_conn_relay(conn, -1, NULL), NCTLS_RESULT_WRONG_STATE);
        uint64_t in = 0, out = 0;
        CHECK_RESULT(nctls_conn_bytes(conn, &in, &out), NCTLS_RESULT_OK);
        t->relayed = out > 0;
    }
    return NULL;
}

static void conn_case(const nctls_config *cfg, int expect_user, int use_fd, int stop_early, const char *out,
                      const char *const *client_args, int want_reason, int want_client_rc)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 8) == 0 &&
              getsockname(lfd, (struct sockaddr *)&sa, &len) == 0,
          "listen");
    struct conn_test t = {.listen_fd = lfd, .expect_user = expect_user, .use_fd = use_fd, .cfg = cfg,
                          .lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t thread;
    pthread_create(&thread, NULL, conn_thread, &t);
    pid_t pid = client(out, "admin", ntohs(sa.sin_port), client_args);
    if (stop_early) {
        CHECK(wait_for(out, "session-id", 30), "live before stop");
        pthread_mutex_lock(&t.lock);
        CHECK_RESULT(nctls_conn_stop(t.conn), NCTLS_RESULT_OK);
        CHECK_RESULT(nctls_conn_stop(t.conn), NCTLS_RESULT_ALREADY_STOPPING);
        pthread_mutex_unlock(&t.lock);
    }
    int rc = wait_exit(pid);
    pthread_join(thread, NULL);
    CHECK(t.accept_result == NCTLS_RESULT_OK, "accept: %s", nctls_conn_error(t.conn));
    CHECK((int)t.reason == want_reason, "%s: reason %s, want %s (%s)", out, nctls_close_reason_str(t.reason),
          nctls_close_reason_str(want_reason), nctls_conn_error(t.conn));
    CHECK(rc == want_client_rc, "%s: client exit %d", out, rc);
    nctls_conn_free(t.conn);
    close(lfd);
}

static void test_conn(void)
{
    nctls_config *cfg = make_config(NULL);
    const char *get[] = {"--get", "--close-session", NULL};
    const char *wait[] = {"--wait", "30", NULL};
    /* A whole session to the configured backend: the backend closes first. */
    conn_case(cfg, 1, 0, 0, path(workdir, "c1.out"), get, NCTLS_CLOSE_REASON_BACKEND_CLOSED, 0);
    CHECK(file_has(path(workdir, "c1.out"), "clean close (close_notify)"), "c1: clean close");
    /* The same over a backend socket this program connected. */
    conn_case(cfg, 1, 1, 0, path(workdir, "c2.out"), get, NCTLS_CLOSE_REASON_BACKEND_CLOSED, 0);
    /* No user: refused with close_notify, the backend never contacted. */
    conn_case(cfg, 0, 0, 0, path(workdir, "c3.out"), NULL, NCTLS_CLOSE_REASON_REFUSED, 1);
    /* nctls_conn_stop from another thread mid-session: close_notify. */
    conn_case(cfg, 1, 0, 1, path(workdir, "c4.out"), wait, NCTLS_CLOSE_REASON_SHUTDOWN, 0);
    CHECK(file_has(path(workdir, "c4.out"), "clean close (close_notify)"), "c4: clean close");
    nctls_config_free(cfg);
}

/* ---------------------------------------------------------------------- */
/* No SIGPIPE: clients killed mid-transfer while nctls writes to them.     */

static void test_no_sigpipe(const char *big_backend)
{
    struct record rec = {.lock = PTHREAD_MUTEX_INITIALIZER};
    nctls_config *cfg = NULL;
    CHECK_RESULT(nctls_config_new(&cfg), NCTLS_RESULT_OK);
    nctls_config_set(cfg, "cert", path(pki, "x509-server.pem"));
    nctls_config_set(cfg, "key", path(pki, "x509-server-key.pem"));
    nctls_config_set(cfg, "ca", path(pki, "x509-ca.pem"));
    nctls_config_set(cfg, "backend", big_backend);
    nctls_config_set(cfg, "listen", "127.0.0.1:0");
    CHECK_RESULT(nctls_config_load(cfg), NCTLS_RESULT_OK);
    nctls_server *server = NULL;
    CHECK_RESULT(nctls_server_new(cfg, &server), NCTLS_RESULT_OK);
    nctls_config_free(cfg);
    nctls_server_set_session_end_callback(server, session_end, &rec);
    CHECK_RESULT(nctls_server_listen(server), NCTLS_RESULT_OK);
    uint16_t port = 0;
    nctls_server_local_port(server, 0, &port);
    pthread_t thread;
    pthread_create(&thread, NULL, run_server, server);
    const char *get[] = {"--get", NULL};
    for (int i = 0; i < 3; i++) {
        pid_t pid = client(path(workdir, "p.out"), "admin", port, get);
        wait_for(path(workdir, "p.out"), "session-id", 30);
        sleep_ms(100 + 100 * i);
        kill(pid, SIGKILL);
        wait_exit(pid);
    }
    for (int i = 0; i < 600; i++) {
        pthread_mutex_lock(&rec.lock);
        int n = rec.n_ends;
        pthread_mutex_unlock(&rec.lock);
        if (n == 3)
            break;
        sleep_ms(50);
    }
    CHECK(rec.n_ends == 3, "three sessions ended (%d)", rec.n_ends);
    /* At least one client died while nctls was still writing to it. */
    int cut = count_reason(&rec, NCTLS_CLOSE_REASON_CLIENT_RESET) + count_reason(&rec, NCTLS_CLOSE_REASON_CLIENT_EOF) +
              count_reason(&rec, NCTLS_CLOSE_REASON_TLS_ERROR);
    CHECK(cut >= 1, "clients killed mid-transfer: %d", cut);
    for (int i = 0; i < rec.n_ends; i++)
        fprintf(stderr, "test-api: killed client %d: %s\n", i, nctls_close_reason_str(rec.ends[i]));
    CHECK_RESULT(nctls_server_stop(server), NCTLS_RESULT_OK);
    pthread_join(thread, NULL);
    CHECK_RESULT(nctls_server_free(server), NCTLS_RESULT_OK);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test-api EXAMPLES_DIR PKI_DIR BACKEND_ADDR BIG_BACKEND_ADDR\n");
        return 2;
    }
    examples = argv[1];
    pki = argv[2];
    backend = argv[3];
    snprintf(workdir, sizeof workdir, "%s/test-api.%d", pki, (int)getpid());
    mkdir(workdir, 0755);
    signal(SIGPIPE, SIG_DFL); /* what a C host has; nctls must never raise it */

    test_misuse();
    test_server();
    test_conn();
    test_no_sigpipe(argv[4]);

    printf("test-api: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
