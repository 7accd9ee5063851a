/*
 * embed: a C daemon that embeds the nctls server.
 *
 * The server's event loop (every session at once, on one thread) runs on a
 * thread of this program. An identity callback maps each verified client to
 * a local user with this program's own table, keyed by the name the
 * certificate's common name gives (the configured rules' answer); clients
 * not in the table are refused before anything reaches the backend. A
 * session-end callback prints one line per session. SIGTERM or SIGINT stops
 * the server from the signal handler (nctls_server_stop is
 * async-signal-safe): every session ends with close_notify, the server
 * thread returns, and everything is freed.
 *
 * usage: embed [-l ADDR:PORT] [-b HOST:PORT] [-d CERT_DIR] [-m CN=USER]...
 *   -l  listen address (port 0: any free port, printed)  [0.0.0.0:6513]
 *   -b  backend                                          [127.0.0.1:2023]
 *   -d  directory of x509-server.pem, x509-server-key.pem, x509-ca.pem [.]
 *   -m  a table entry: certificate common name CN runs as USER [admin=admin]
 */
/* getopt, sigaction: POSIX, not plain C11. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nctls.h"

#define MAX_ENTRIES 32

/* This program's own identity table. */
struct entry {
    char cn[NCTLS_USER_MAX + 1];
    char user[NCTLS_USER_MAX + 1];
};

struct table {
    struct entry entries[MAX_ENTRIES];
    int count;
    unsigned long refused; /* only touched on the server thread */
};

/* For the signal handler: the one server to stop. */
static _Atomic(nctls_server *) running_server;

static void on_signal(int sig)
{
    (void)sig;
    nctls_server *server = atomic_load(&running_server);
    if (server)
        nctls_server_stop(server); /* async-signal-safe */
}

/* Identity callback: runs on the server thread, before the backend is contacted. */
static int identify(void *userdata, const nctls_peer *peer, char *user, size_t user_len)
{
    struct table *t = userdata;
    if (!peer->rules_user) {
        fprintf(stderr, "embed: %s: no common name (%s)\n", peer->client, peer->rules_error);
        t->refused++;
        return NCTLS_IDENTITY_REFUSE;
    }
    for (int i = 0; i < t->count; i++) {
        if (strcmp(t->entries[i].cn, peer->rules_user) == 0) {
            snprintf(user, user_len, "%s", t->entries[i].user);
            fprintf(stderr, "embed: %s: CN=%s (certificate %zu bytes, chain of %zu) runs as %s\n",
                    peer->client, peer->rules_user, peer->chain[0].len, peer->chain_len, user);
            return NCTLS_IDENTITY_ACCEPT;
        }
    }
    fprintf(stderr, "embed: %s: CN=%s is not in the table: refused\n", peer->client, peer->rules_user);
    t->refused++;
    return NCTLS_IDENTITY_REFUSE;
}

/* Session-end callback: one line per session on stdout. */
static void session_end(void *userdata, const nctls_session_info *s)
{
    (void)userdata;
    printf("session end: client=%s user=%s subject=%s tls=%s bytes-in=%" PRIu64 " bytes-out=%" PRIu64
           " duration-us=%" PRIu64 " reason=%s (%s)\n",
           s->client, s->user ? s->user : "-", s->subject ? s->subject : "-", s->tls, s->bytes_in,
           s->bytes_out, s->duration_us, nctls_close_reason_str(s->reason), s->reason_text);
    fflush(stdout);
}

static void log_line(void *userdata, nctls_log_level level, const char *message)
{
    (void)userdata;
    static const char *names[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    fprintf(stderr, "nctls %s: %s\n", level <= NCTLS_LOG_LEVEL_TRACE ? names[level] : "?", message);
}

static void *serve(void *server)
{
    nctls_result r = nctls_server_run(server);
    if (r != NCTLS_RESULT_OK)
        fprintf(stderr, "embed: server: %s: %s\n", nctls_result_str(r), nctls_server_error(server));
    return (void *)(intptr_t)r;
}

static int set(nctls_config *cfg, const char *name, const char *dir, const char *value)
{
    char path[4096];
    if (dir) {
        snprintf(path, sizeof path, "%s/%s", dir, value);
        value = path;
    }
    if (nctls_config_set(cfg, name, value) != NCTLS_RESULT_OK) {
        fprintf(stderr, "embed: %s\n", nctls_config_error(cfg));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen = "0.0.0.0:6513", *backend = "127.0.0.1:2023", *dir = ".";
    struct table table = {.count = 0};
    int opt;
    while ((opt = getopt(argc, argv, "l:b:d:m:")) != -1) {
        switch (opt) {
        case 'l': listen = optarg; break;
        case 'b': backend = optarg; break;
        case 'd': dir = optarg; break;
        case 'm': {
            const char *eq = strchr(optarg, '=');
            if (!eq || table.count == MAX_ENTRIES || (size_t)(eq - optarg) > NCTLS_USER_MAX ||
                strlen(eq + 1) > NCTLS_USER_MAX) {
                fprintf(stderr, "embed: -m CN=USER (at most %d)\n", MAX_ENTRIES);
                return 2;
            }
            struct entry *e = &table.entries[table.count++];
            snprintf(e->cn, sizeof e->cn, "%.*s", (int)(eq - optarg), optarg);
            snprintf(e->user, sizeof e->user, "%s", eq + 1);
            break;
        }
        default:
            fprintf(stderr, "usage: embed [-l ADDR:PORT] [-b HOST:PORT] [-d CERT_DIR] [-m CN=USER]...\n");
            return 2;
        }
    }
    if (table.count == 0) {
        snprintf(table.entries[0].cn, sizeof table.entries[0].cn, "admin");
        snprintf(table.entries[0].user, sizeof table.entries[0].user, "admin");
        table.count = 1;
    }

    nctls_config *cfg = NULL;
    nctls_server *server = NULL;
    int status = 1;
    if (nctls_config_new(&cfg) != NCTLS_RESULT_OK)
        return 1;
    if (set(cfg, "listen", NULL, listen) || set(cfg, "backend", NULL, backend) ||
        set(cfg, "cert", dir, "x509-server.pem") || set(cfg, "key", dir, "x509-server-key.pem") ||
        set(cfg, "ca", dir, "x509-ca.pem"))
        goto out;
    if (nctls_config_load(cfg) != NCTLS_RESULT_OK) {
        fprintf(stderr, "embed: %s\n", nctls_config_error(cfg));
        goto out;
    }
    if (nctls_server_new(cfg, &server) != NCTLS_RESULT_OK)
        goto out;
    /* The server keeps what it needs: the configuration can go now. */
    nctls_config_free(cfg);
    cfg = NULL;
    nctls_server_set_identity_callback(server, identify, &table);
    nctls_server_set_session_end_callback(server, session_end, NULL);
    nctls_server_set_log_callback(server, log_line, NULL);
    if (nctls_server_listen(server) != NCTLS_RESULT_OK) {
        fprintf(stderr, "embed: %s\n", nctls_server_error(server));
        goto out;
    }
    uint16_t port = 0;
    nctls_server_local_port(server, 0, &port);
    printf("listening on port %u (%s)\n", port, nctls_version());
    fflush(stdout);

    atomic_store(&running_server, server);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, server) != 0)
        goto out;
    void *result = NULL;
    pthread_join(thread, &result);
    atomic_store(&running_server, NULL);
    status = (intptr_t)result == NCTLS_RESULT_OK ? 0 : 1;
    printf("stopped; %lu client(s) refused\n", table.refused);
out:
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    if (nctls_server_free(server) != NCTLS_RESULT_OK)
        status = 1;
    nctls_config_free(cfg);
    return status;
}
