/*
 * http — the libmicrohttpd daemon: routing to ingest (POST <sap.path>),
 * /admin/ (server/admin.h), /healthz, /readyz, /metrics.
 *
 * Threads: http_start/http_stop from the main thread; the handlers run on
 * MHD's pool threads.
 */
#ifndef MLC_HTTP_H
#define MLC_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct admin;
struct ingest;
struct queue;

struct http_opts {
    const char *address;      /* IPv4 or IPv6 literal, or "0.0.0.0" / "::" */
    uint16_t port;            /* 0 = pick a free port */
    unsigned threads;
    unsigned connection_limit;
    unsigned timeout_s;
    const char *sap_path;
    /* HTTPS when tls_cert and tls_key (PEM paths) are set, else plain HTTP.
     * client_ca (PEM bundle): requests to sap_path must present a client
     * certificate signed by it (403 otherwise), whose subject satisfies
     * client_subject when set (see common/tls.h). The other endpoints need
     * none. tls_priorities: GnuTLS priority string (NULL: the default). */
    const char *tls_cert, *tls_key, *client_ca, *client_subject, *tls_priorities;
    struct ingest *ingest;
    struct admin *admin;      /* /admin/ (404 when its token is unset) */
    struct queue *queue;
    /* /healthz: NULL or 0 = alive; non-zero = a thread is stuck (why in buf). */
    int (*health)(void *ud, char *why, size_t len);
    void *health_ud;
    /* Extra gauges for /metrics (e.g. the sync schedule); may be NULL. */
    size_t (*extra_metrics)(void *ud, char *buf, size_t len);
    void *extra_metrics_ud;
};

struct http;

/* Bind and start serving. Returns NULL with a reason in err. */
struct http *http_start(const struct http_opts *o, char *err, size_t errlen);

/* The bound port (useful with port 0). */
uint16_t http_port(const struct http *h);

/* For the start-up line: "http", "https" or "https, client certificates
 * required for <sap_path>". */
const char *http_mode(const struct http *h);

/* /readyz answers 503 "shutting down" from now on. */
void http_set_draining(struct http *h);

/* Stop accepting connections (the listening socket is closed). */
void http_quiesce(struct http *h);

/* Stop the daemon; call only when no connection is suspended (ingest_active
 * == 0, or the queue has answered every batch). */
void http_stop(struct http *h);

#endif
