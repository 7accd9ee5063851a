/*
 * ln2-client: drives libnetconf2's NETCONF-over-TLS client through one
 * nctls scenario (see tests/interop/pyclient.py for the same scenarios in
 * Python) and prints what it observed as key=value lines for
 * tests/netconf.rs to assert on.
 *
 * usage: ln2-client SCENARIO --port PORT --tls lib|1.2|1.3 --pki DIR
 *                   --yang DIR [--settle]
 *
 *   --tls lib   nc_connect_tls(): libnetconf2's own TLS setup (TLS 1.3)
 *   --tls 1.x   an OpenSSL connection pinned to that version, handed to
 *               nc_connect_libssl(); needed for TLS 1.2 and for sending a
 *               bare close_notify (scenario notify)
 *
 * How the TLS session ended is read from libnetconf2's own log: on a
 * close_notify (SSL_ERROR_ZERO_RETURN) it logs "Communication socket
 * unexpectedly closed (OpenSSL)."; on a TCP EOF without close_notify
 * OpenSSL 3 reports "unexpected eof while reading".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libyang/libyang.h>
#include <nc_client.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define REPLY_TIMEOUT_MS 10000
/* netconfd never answers an <rpc> that arrives before it processed the
 * client's <hello>: --settle waits this long after connecting. */
#define SETTLE_MS 200

static struct {
    const char *scenario;
    int port;
    const char *tls;
    const char *pki;
    const char *yang;
    int settle;
} opt;

/* libnetconf2's log, kept to classify how sessions ended. */
static char logbuf[1 << 16];
static size_t loglen;

static void log_clb(const struct nc_session *session, NC_VERB_LEVEL level, const char *msg)
{
    (void)level;
    int n = snprintf(logbuf + loglen, sizeof logbuf - loglen, "[%u] %s\n",
                     session ? nc_session_get_id(session) : 0, msg);
    if (n > 0 && loglen + (size_t)n < sizeof logbuf) {
        loglen += (size_t)n;
    }
    fprintf(stderr, "libnetconf2: %s\n", msg);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void out(const char *key, const char *fmt, ...)
{
    va_list ap;
    printf("%s=", key);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void die(const char *what)
{
    fprintf(stderr, "ln2-client: %s\n", what);
    exit(1);
}

static char *pki_file(const char *name)
{
    char *path;
    if (asprintf(&path, "%s/%s", opt.pki, name) < 0) {
        die("out of memory");
    }
    return path;
}

/* A TLS session: the libnetconf2 session and, for --tls 1.x, our SSL. */
struct client {
    struct nc_session *nc;
    SSL *ssl;
};

static SSL *tls_connect(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int version = strcmp(opt.tls, "1.2") == 0 ? TLS1_2_VERSION : TLS1_3_VERSION;
    char *cert = pki_file("client.pem"), *key = pki_file("client-key.pem"), *ca = pki_file("x509-ca.pem");
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, version) || !SSL_CTX_set_max_proto_version(ctx, version) ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        die("cannot set up the OpenSSL context");
    }
    free(cert);
    free(key);
    free(ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
        die("cannot connect to nctls");
    }
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL keeps its own reference */
    if (!ssl || !SSL_set_fd(ssl, fd) || !SSL_set1_host(ssl, "localhost") || SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        die("TLS handshake failed");
    }
    return ssl;
}

static void client_open(struct client *c)
{
    memset(c, 0, sizeof *c);
    if (strcmp(opt.tls, "lib") == 0) {
        char *cert = pki_file("client.pem"), *key = pki_file("client-key.pem"), *ca = pki_file("x509-ca.pem");
        if (nc_client_tls_set_cert_key_paths(cert, key) || nc_client_tls_set_trusted_ca_paths(ca, NULL)) {
            die("cannot set libnetconf2's TLS paths");
        }
        free(cert);
        free(key);
        free(ca);
        c->nc = nc_connect_tls("localhost", (uint16_t)opt.port, NULL);
    } else {
        c->ssl = tls_connect();
        c->nc = nc_connect_libssl(c->ssl, NULL);
    }
    if (!c->nc) {
        die("NETCONF session setup failed");
    }
    if (opt.settle) {
        usleep(SETTLE_MS * 1000);
    }
}

static const char *tls_version(const struct client *c)
{
    return c->ssl ? SSL_get_version(c->ssl) : "library-default";
}

/* Sends `rpc` and waits for its reply: "ok", "data", or the error-tag. */
static const char *call(struct client *c, struct nc_rpc *rpc, char **data_xml)
{
    static char result[128];
    uint64_t msgid;
    struct lyd_node *envp = NULL, *op = NULL;
    if (!rpc || nc_send_rpc(c->nc, rpc, REPLY_TIMEOUT_MS, &msgid) != NC_MSG_RPC) {
        die("cannot send an RPC");
    }
    NC_MSG_TYPE t;
    do {
        t = nc_recv_reply(c->nc, rpc, msgid, REPLY_TIMEOUT_MS, &envp, &op);
    } while (t == NC_MSG_NOTIF);
    nc_rpc_free(rpc);
    if (t != NC_MSG_REPLY) {
        snprintf(result, sizeof result, "no-reply:%d", (int)t);
        return result;
    }
    snprintf(result, sizeof result, "ok");
    const struct lyd_node *child = lyd_child(envp);
    if (child && strcmp(child->schema ? child->schema->name : LYD_NAME(child), "rpc-error") == 0) {
        snprintf(result, sizeof result, "rpc-error");
        const struct lyd_node *e;
        LY_LIST_FOR(lyd_child(child), e) {
            if (strcmp(LYD_NAME(e), "error-tag") == 0) {
                snprintf(result, sizeof result, "%s", lyd_get_value(e));
            }
        }
    } else if (op) {
        snprintf(result, sizeof result, "data");
        if (data_xml) {
            lyd_print_mem(data_xml, op, LYD_XML, LYD_PRINT_WITHSIBLINGS | LYD_PRINT_SHRINK);
        }
    }
    lyd_free_tree(envp);
    lyd_free_tree(op);
    return result;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) {
        n++;
    }
    return n;
}

static void describe(const char *prefix, const char *what, const char *xml)
{
    char key[64];
    snprintf(key, sizeof key, "%s", prefix);
    out(key, "%s", what);
    if (!xml) {
        return;
    }
    snprintf(key, sizeof key, "%s_bytes", prefix);
    out(key, "%zu", strlen(xml));
    snprintf(key, sizeof key, "%s_blobs", prefix);
    out(key, "%d", count(xml, "<name>b"));
    snprintf(key, sizeof key, "%s_filler", prefix);
    out(key, "%d", count(xml, "nctls filler"));
    snprintf(key, sizeof key, "%s_utf8", prefix);
    out(key, "%s", strstr(xml, "\xc3\xbc\xe2\x82\xac") ? "yes" : "no");
    snprintf(key, sizeof key, "%s_escapes", prefix);
    out(key, "%s", strstr(xml, "&amp; &lt;tag&gt; ]]&gt;]]&gt;") ? "yes" : "no");
}

/* Waits until the session's socket reports the server's end, then lets
 * libnetconf2 read it and classifies what libnetconf2 logged. */
static const char *await_end(struct client *c, double *at_ms)
{
    size_t mark = loglen;
    struct pollfd p = {.fd = c->ssl ? SSL_get_fd(c->ssl) : -1, .events = POLLIN};
    if (p.fd >= 0 && poll(&p, 1, 3000) != 1) {
        return "none";
    }
    *at_ms = now_ms();
    struct lyd_node *envp = NULL, *op = NULL;
    NC_MSG_TYPE t = nc_recv_notif(c->nc, 3000, &envp, &op);
    if (!c->ssl) {
        *at_ms = now_ms();
    }
    lyd_free_tree(envp);
    lyd_free_tree(op);
    if (t != NC_MSG_ERROR) {
        return "none";
    }
    const char *log = logbuf + mark;
    if (strstr(log, "unexpectedly closed (OpenSSL)")) {
        return "clean";
    }
    if (strstr(log, "unexpected eof")) {
        return "ragged";
    }
    return "other";
}

static void relock(struct client *b, double since)
{
    const char *got;
    for (;;) {
        got = call(b, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL);
        if (strcmp(got, "ok") == 0 || now_ms() - since > 3000) {
            break;
        }
        usleep(20000);
    }
    out("b_lock_after", "%s", got);
    out("relock_ms", "%.1f", now_ms() - since);
}

static void scenario_basic(void)
{
    struct client a;
    char *xml = NULL;
    client_open(&a);
    out("tls", "%s", tls_version(&a));
    out("session_id", "%u", nc_session_get_id(a.nc));
    const char *got = call(&a, nc_rpc_getconfig(NC_DATASTORE_RUNNING, NULL, 0, NC_PARAMTYPE_CONST), &xml);
    describe("get_config", got, xml);
    free(xml);
    xml = NULL;
    out("lock", "%s", call(&a, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
    got = call(&a, nc_rpc_get(NULL, 0, NC_PARAMTYPE_CONST), &xml);
    describe("get", got, xml);
    free(xml);
    out("close_session",
        "%s",
        call(&a,
             nc_rpc_act_generic_xml("<close-session xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"/>",
                                    NC_PARAMTYPE_CONST),
             NULL));
    double ok = now_ms(), end = ok;
    out("end", "%s", await_end(&a, &end));
    out("end_after_reply_ms", "%.1f", end - ok);
}

static void scenario_kill(void)
{
    struct client a, b;
    client_open(&a);
    out("tls", "%s", tls_version(&a));
    out("a_lock", "%s", call(&a, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
    client_open(&b);
    out("b_lock_before", "%s", call(&b, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
    out("kill", "%s", call(&b, nc_rpc_kill(nc_session_get_id(a.nc)), NULL));
    double ok = now_ms(), end = ok;
    out("a_end", "%s", await_end(&a, &end));
    out("a_end_after_ok_ms", "%.1f", end - ok);
    out("b_lock_after", "%s", call(&b, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
}

static void scenario_drop(void)
{
    struct client a, b;
    client_open(&a);
    out("tls", "%s", tls_version(&a));
    out("a_lock", "%s", call(&a, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
    client_open(&b);
    double since = now_ms();
    /* TCP FIN with no close_notify. */
    shutdown(SSL_get_fd(a.ssl), SHUT_RDWR);
    relock(&b, since);
}

static void scenario_notify(void)
{
    struct client a, b;
    client_open(&a);
    out("tls", "%s", tls_version(&a));
    out("a_lock", "%s", call(&a, nc_rpc_lock(NC_DATASTORE_RUNNING), NULL));
    client_open(&b);
    double since = now_ms();
    /* close_notify only: no <close-session>, TCP stays open. */
    int r = SSL_shutdown(a.ssl);
    if (r == 0) {
        r = SSL_shutdown(a.ssl); /* waits for the server's close_notify */
    }
    out("a_unwrap", "%s", r == 1 ? "clean" : "error");
    out("a_unwrap_ms", "%.1f", now_ms() - since);
    relock(&b, since);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        die("usage: ln2-client basic|kill|drop|notify --port PORT --tls lib|1.2|1.3 --pki DIR --yang DIR [--settle]");
    }
    opt.scenario = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--settle") == 0) {
            opt.settle = 1;
        } else if (!v) {
            die("option without a value");
        } else if (strcmp(a, "--port") == 0) {
            opt.port = atoi(v), i++;
        } else if (strcmp(a, "--tls") == 0) {
            opt.tls = v, i++;
        } else if (strcmp(a, "--pki") == 0) {
            opt.pki = v, i++;
        } else if (strcmp(a, "--yang") == 0) {
            opt.yang = v, i++;
        } else {
            die("unknown option");
        }
    }
    if (!opt.port || !opt.tls || !opt.pki || !opt.yang) {
        die("--port, --tls, --pki and --yang are required");
    }
    nc_verbosity(NC_VERB_WARNING);
    nc_set_print_clb_session(log_clb);
    nc_client_init();
    /* Modules the server does not offer through <get-schema> (confd-emu
     * offers none) come from here. */
    nc_client_set_schema_searchpath(opt.yang);

    if (strcmp(opt.scenario, "basic") == 0) {
        scenario_basic();
    } else if (strcmp(opt.scenario, "kill") == 0) {
        scenario_kill();
    } else if (strcmp(opt.scenario, "drop") == 0) {
        if (!strcmp(opt.tls, "lib")) {
            die("drop needs --tls 1.2 or 1.3");
        }
        scenario_drop();
    } else if (strcmp(opt.scenario, "notify") == 0) {
        if (!strcmp(opt.tls, "lib")) {
            die("notify needs --tls 1.2 or 1.3");
        }
        scenario_notify();
    } else {
        die("unknown scenario");
    }
    out("done", "yes");
    /* Sessions are not freed: nc_session_free() would send <close-session>
     * and close_notify, which is not what each scenario is about. */
    _exit(0);
}
