/*
 * http — libmicrohttpd set-up and routing.
 *
 * The daemon runs MHD's internal polling threads with epoll and a pool of
 * `threads` loops, with suspend/resume enabled: ingest suspends a request
 * while its IDocs wait for the group commit, so no pool thread ever blocks on
 * a disk sync (limits.md: blocking there caps group commit at the pool size).
 *
 * Abuse limits: a total connection limit, an idle timeout, and a per
 * connection memory limit for headers (MHD answers oversize request lines and
 * headers itself with 414/431). Body memory is bounded inside ingest.
 *
 * TLS (listen.tls_cert/tls_key): MHD's GnuTLS, key and certificate handed
 * over in memory and the key buffer wiped once the daemon holds it. With
 * listen.client_ca MHD asks every client for a certificate (optional at the
 * TLS level, so probes and scrapers without one still connect); requests to
 * the SAP path are then checked at their first callback, before any body is
 * read: no certificate, one not signed by the CA, or a subject not matching
 * listen.client_subject is answered 403 through ingest_refuse (counted as
 * reason="auth"). Other endpoints need no certificate.
 */
#include "server/http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/tls.h"
#include "queue/queue.h"
#include "server/admin.h"
#include "server/ingest.h"

struct http {
    struct http_opts o;
    struct MHD_Daemon *d;
    uint16_t port;
    atomic_int draining;
    size_t sap_path_len;
    int client_certs;           /* listen.client_ca set: check the SAP path */
    char mode[320];             /* for http_mode */
    char start_err[256];        /* MHD's last complaint while starting */
    pthread_t starter;          /* the thread in http_start */
    atomic_int starting;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *ctype,
                                 const char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, mode);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char buf[300];
    snprintf(buf, sizeof buf, "%s\n", text);
    return send_text(conn, status, "text/plain; charset=utf-8", buf, strlen(buf), MHD_RESPMEM_MUST_COPY);
}

/* Readiness turns off at READY_QUOTA_PCT of the quota, a little before
 * POSTs start failing, so a balancer or SAP's retry sees it first. */
#define READY_QUOTA_PCT 95

/* NULL when ready; else the reason (in buf). */
static const char *not_ready(struct http *h, const struct queue_stats *st, int stats_ok, const char *err,
                             char *buf, size_t len)
{
    if (atomic_load(&h->draining)) return "shutting down";
    if (queue_failed(h->o.queue)) return "queue storage failed (an fsync reported an I/O error); restart required";
    if (!stats_ok) {
        snprintf(buf, len, "queue unavailable: %s", err);
        return buf;
    }
    if (queue_over_quota(h->o.queue) ||
        (st->quota_bytes && st->used_bytes * 100 >= st->quota_bytes * READY_QUOTA_PCT)) {
        snprintf(buf, len, "queue over its quota: %llu of %llu MiB used (queue.max_size_mb)",
                 (unsigned long long)(st->used_bytes >> 20), (unsigned long long)(st->quota_bytes >> 20));
        return buf;
    }
    return NULL;
}

static enum MHD_Result readyz(struct http *h, struct MHD_Connection *conn)
{
    struct queue_stats st;
    char err[200], why[300], msg[320];
    int ok = queue_stats(h->o.queue, &st, err, sizeof err) == QUEUE_OK;
    const char *reason = not_ready(h, &st, ok, err, why, sizeof why);
    if (!reason) return plain(conn, MHD_HTTP_OK, "ready");
    snprintf(msg, sizeof msg, "not ready: %s", reason);
    return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, msg);
}

static enum MHD_Result metrics(struct http *h, struct MHD_Connection *conn)
{
    char extra[4096];
    size_t o = 0;
    struct queue_stats st;
    char err[200], why[300];
    o += (size_t)snprintf(extra + o, sizeof extra - o,
                          "# HELP mlc_queue_records Records in the local queue, by state\n"
                          "# TYPE mlc_queue_records gauge\n");
    int ok = queue_stats(h->o.queue, &st, err, sizeof err) == QUEUE_OK;
    for (int s = 0; s < QUEUE_NSTATES; s++)
        o += (size_t)snprintf(extra + o, sizeof extra - o, "mlc_queue_records{state=\"%s\"} %llu\n",
                              queue_state_name(s), ok ? (unsigned long long)st.count[s] : 0ULL);
    o += (size_t)snprintf(extra + o, sizeof extra - o,
                          "# HELP mlc_queue_used_bytes Bytes of the queue's store in use\n"
                          "# TYPE mlc_queue_used_bytes gauge\nmlc_queue_used_bytes %llu\n"
                          "# HELP mlc_queue_quota_bytes The queue's quota (queue.max_size_mb)\n"
                          "# TYPE mlc_queue_quota_bytes gauge\nmlc_queue_quota_bytes %llu\n"
                          "# HELP mlc_ready 1 when /readyz answers 200\n"
                          "# TYPE mlc_ready gauge\nmlc_ready %d\n",
                          ok ? (unsigned long long)st.used_bytes : 0ULL,
                          ok ? (unsigned long long)st.quota_bytes : 0ULL,
                          not_ready(h, &st, ok, err, why, sizeof why) == NULL);
    if (h->o.extra_metrics && o < sizeof extra)
        o += h->o.extra_metrics(h->o.extra_metrics_ud, extra + o, sizeof extra - o);
    char *text = metrics_render(extra);
    if (!text) return plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return send_text(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text),
                     MHD_RESPMEM_MUST_FREE);
}

static int is_sap_path(const struct http *h, const char *url)
{
    /* SM59 path prefixes are matched exactly, with or without a trailing
     * slash; MHD has already split off any query string. */
    return strncmp(url, h->o.sap_path, h->sap_path_len) == 0 &&
           (url[h->sap_path_len] == 0 || (url[h->sap_path_len] == '/' && url[h->sap_path_len + 1] == 0));
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **req_cls)
{
    (void)version;
    struct http *h = cls;
    if (*req_cls ? ingest_owns(*req_cls) : is_sap_path(h, url)) {
        /* Once per request, at its first callback (headers only). */
        if (!*req_cls && h->client_certs) {
            char why[400];
            const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
            if (tls_check_client(ci ? ci->tls_session : NULL, h->o.client_subject, why, sizeof why) != 0)
                return ingest_refuse(h->o.ingest, conn, req_cls, MHD_HTTP_FORBIDDEN, METRICS_REJECT_AUTH, why);
        }
        return ingest_handle(h->o.ingest, conn, method, upload_data, upload_data_size, req_cls);
    }
    if (*req_cls || strncmp(url, "/admin/", 7) == 0)
        return admin_handle(h->o.admin, conn, url, method, upload_data, upload_data_size, req_cls);

    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/healthz") == 0) {
        if (!get) return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
        char why[200] = "";
        if (h->o.health && h->o.health(h->o.health_ud, why, sizeof why) != 0)
            return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
        return plain(conn, MHD_HTTP_OK, "ok");
    }
    if (strcmp(url, "/readyz") == 0)
        return get ? readyz(h, conn) : plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
    if (strcmp(url, "/metrics") == 0)
        return get ? metrics(h, conn) : plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
    return plain(conn, MHD_HTTP_NOT_FOUND, "not found");
}

static void completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    if (*req_cls && ingest_owns(*req_cls)) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            log_debug("http: ingest request ended early (code %d)", (int)toe);
        ingest_request_done(*req_cls);
    } else if (*req_cls && admin_owns(*req_cls)) {
        admin_request_done(*req_cls);
    }
    *req_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http *h = cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '.')) buf[--n] = 0;
    /* Only the thread in MHD_start_daemon keeps its complaint (a pool
     * thread may already log about a connection). */
    if (atomic_load(&h->starting) && pthread_equal(pthread_self(), h->starter))
        snprintf(h->start_err, sizeof h->start_err, "%.*s", (int)sizeof h->start_err - 1, buf);
    log_debug("http: libmicrohttpd: %s", buf);
}

/* The PEM files for MHD_OPTION_HTTPS_MEM_*; the key is wiped on release. */
struct pems {
    char *cert, *key, *ca;
    size_t cert_len, key_len, ca_len;
};

static void pems_release(struct pems *p)
{
    free(p->cert);
    tls_free_secret(p->key, p->key_len);
    free(p->ca);
    memset(p, 0, sizeof *p);
}

static int pems_read(const struct http_opts *o, struct pems *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
        snprintf(err, errlen, "listen.tls_cert: this libmicrohttpd was built without TLS support");
        return -1;
    }
    if (!(p->cert = tls_read_pem("listen.tls_cert", o->tls_cert, &p->cert_len, err, errlen)) ||
        !(p->key = tls_read_pem("listen.tls_key", o->tls_key, &p->key_len, err, errlen)) ||
        (o->client_ca && !(p->ca = tls_read_pem("listen.client_ca", o->client_ca, &p->ca_len, err, errlen)))) {
        pems_release(p);
        return -1;
    }
    return 0;
}

struct http *http_start(const struct http_opts *o, char *err, size_t errlen)
{
    struct http *h = calloc(1, sizeof *h);
    if (!h) { snprintf(err, errlen, "out of memory"); return NULL; }
    h->o = *o;
    h->sap_path_len = strlen(o->sap_path);
    while (h->sap_path_len > 1 && o->sap_path[h->sap_path_len - 1] == '/') h->sap_path_len--;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
    if (strchr(o->address, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(o->port);
        if (inet_pton(AF_INET6, o->address, &a6->sin6_addr) != 1) {
            snprintf(err, errlen, "listen.address: '%s' is not an IP address", o->address);
            free(h);
            return NULL;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons(o->port);
        if (inet_pton(AF_INET, o->address, &a4->sin_addr) != 1) {
            snprintf(err, errlen, "listen.address: '%s' is not an IPv4 or IPv6 address", o->address);
            free(h);
            return NULL;
        }
    }
    unsigned threads = o->threads ? o->threads : 2;
    unsigned limit = o->connection_limit < threads ? threads : o->connection_limit;

    struct pems pem = {0};
    struct MHD_OptionItem tls_opts[5] = {{MHD_OPTION_END, 0, NULL}};
    int tls = o->tls_cert && o->tls_key;
    if (tls) {
        if (pems_read(o, &pem, err, errlen) != 0) {
            free(h);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        size_t n = 0;
        tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, pem.key};
        tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, pem.cert};
        tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                                (void *)(o->tls_priorities ? o->tls_priorities
                                                                           : TLS_DEFAULT_PRIORITIES)};
        /* A trust list makes MHD request (not require) a client certificate. */
        if (pem.ca) tls_opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, pem.ca};
        tls_opts[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
        h->client_certs = pem.ca != NULL;
    }
    if (!tls)
        snprintf(h->mode, sizeof h->mode, "http");
    else if (h->client_certs)
        snprintf(h->mode, sizeof h->mode, "https, client certificates required for %s", o->sap_path);
    else
        snprintf(h->mode, sizeof h->mode, "https");

    h->starter = pthread_self();
    atomic_store(&h->starting, 1);
    h->d = MHD_start_daemon(
        flags, o->port, NULL, NULL, handler, h,
        MHD_OPTION_ARRAY, tls_opts,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s,
        /* Headers only: bodies never sit in MHD's pool (ingest consumes
         * them as they arrive). 32 KiB (MHD's default) holds any sane
         * request head — SAP sends about 1 KB; a bigger head gets 431. Not
         * more: MHD zeroes the whole pool for every request on a kept-alive
         * connection, and at 64 KiB that memset alone was ~5 % of the
         * ingest CPU. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32 * 1024,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
        MHD_OPTION_END);
    atomic_store(&h->starting, 0);
    /* MHD has loaded the PEMs into its GnuTLS credentials at start. */
    pems_release(&pem);
    if (!h->d) {
        if (h->start_err[0])
            snprintf(err, errlen, "cannot listen on %s:%u: %s", o->address, (unsigned)o->port, h->start_err);
        else
            snprintf(err, errlen, "cannot listen on %s:%u (address in use or not available)", o->address,
                     (unsigned)o->port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    return h;
}

uint16_t http_port(const struct http *h) { return h->port; }
const char *http_mode(const struct http *h) { return h->mode; }
void http_set_draining(struct http *h) { atomic_store(&h->draining, 1); }

void http_quiesce(struct http *h)
{
    MHD_socket s = MHD_quiesce_daemon(h->d);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void http_stop(struct http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
