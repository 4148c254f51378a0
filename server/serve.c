/*
 * serve — the gateway's main loop.
 *
 * Start-up order matters: configuration, then every signal blocked in the
 * main thread BEFORE any thread exists (threads inherit the mask, so signals
 * are taken only by sigwait here), libxml2 init, the mapping, the queue (its
 * stale reader slots cleared, inflight records put back to pending: they
 * were being delivered when the last process died), ingest, and last the
 * listening socket — the port is logged only when the gateway can serve.
 *
 * Shutdown (SIGTERM/SIGINT): /readyz turns 503 and new requests get 503;
 * the listening socket is closed; requests in flight finish their commit and
 * get their answer; then the queue's committer drains and LMDB closes. Exit 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "config/config.h"
#include "config/mapping.h"
#include "idoc/idoc.h"
#include "queue/queue.h"
#include <curl/curl.h>

#include "d365/auth.h"
#include "d365/governor.h"
#include "server/admin.h"
#include "server/delivery.h"
#include "server/cli.h"
#include "server/http.h"
#include "server/ingest.h"
#include "server/mapref.h"

#define SHUTDOWN_WAIT_S 30

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Ingest and the HTTP server start before delivery; they reach it through
 * this pointer, set once delivery runs and cleared before it stops. */
struct notify_ctx {
    _Atomic(struct delivery *) d;
};

static void notify_delivery(void *ud)
{
    struct delivery *d = atomic_load(&((struct notify_ctx *)ud)->d);
    if (d) delivery_notify(d);
}

static size_t delivery_metrics_cb(void *ud, char *buf, size_t len)
{
    struct delivery *d = atomic_load(&((struct notify_ctx *)ud)->d);
    return d ? delivery_metrics(d, buf, len) : 0;
}

/* /healthz: the process answers, its store has not failed (queue_failed:
 * only a restart helps then), and its worker threads still move: the
 * queue's committer has not sat on a batch, nor the delivery dispatcher
 * skipped its loop, for HEALTH_STALL_MS. Dataverse being unreachable is
 * not ill health (records simply wait). */
#define HEALTH_STALL_MS 30000
struct health_ctx {
    struct queue *q;
    struct notify_ctx *n;
};

static int health_check(void *ud, char *why, size_t len)
{
    struct health_ctx *hc = ud;
    if (queue_failed(hc->q)) {
        snprintf(why, len, "unhealthy: the queue's storage failed (an fsync reported an I/O error); "
                           "restart ml-connector");
        return 1;
    }
    int64_t w = queue_commit_wait_ms(hc->q);
    if (w > HEALTH_STALL_MS) {
        snprintf(why, len, "unhealthy: the queue committer has not finished a commit for %lld s", (long long)(w / 1000));
        return 1;
    }
    struct delivery *d = atomic_load(&hc->n->d);
    int64_t a = d ? delivery_heartbeat_age_ms(d) : 0;
    if (a > HEALTH_STALL_MS) {
        snprintf(why, len, "unhealthy: the delivery dispatcher has been stuck for %lld s", (long long)(a / 1000));
        return 1;
    }
    return 0;
}

static int admin_sync_now(void *ud, char *msg, size_t len) { return delivery_sync_now(ud, msg, len); }
static cJSON *admin_runs(void *ud, size_t limit) { return delivery_runs_json(ud, limit); }

/* SIGHUP: reload the mapping file and the log level/format. A broken file
 * is refused and the running mapping kept. Other keys need a restart. */
static void reload(const char *path, const struct config *running, struct mapref *mref)
{
    char err[512];
    struct config *c = config_load(path, err, sizeof err);
    if (!c) {
        log_error("serve: SIGHUP: configuration not reloaded, keeping the running one: %s", err);
        return;
    }
    struct mapping *m = mapping_load(c->mapping_path, err, sizeof err);
    if (!m) {
        log_error("serve: SIGHUP: mapping %s refused, keeping the running mapping: %s", c->mapping_path, err);
        config_free(c);
        return;
    }
    if (mapref_set(mref, m) != 0) {
        log_error("serve: SIGHUP: out of memory; keeping the running mapping");
        mapping_free(m);
        config_free(c);
        return;
    }
    log_set_level(c->log_level);
    log_set_format(c->log_format);
    log_info("serve: SIGHUP: reloaded mapping %s (orders_target %s), log level %s, format %s%s", c->mapping_path,
             mapping_orders_target(m), c->log_level, c->log_format,
             strcmp(c->mapping_path, running->mapping_path) ? " (the mapping path changed)" : "");
    config_free(c);
}

/* Wait until no ingest request is in flight, at most `seconds`. */
static int wait_idle(const struct ingest *in, int seconds)
{
    for (int i = 0; i < seconds * 100; i++) {
        if (ingest_active(in) == 0) return 0;
        sleep_ms(10);
    }
    return -1;
}

int cli_serve(int argc, char **argv)
{
    const char *path = config_path_from_args(argc, argv);
    if (!path) {
        fprintf(stderr, "serve: no configuration: give -c FILE or set MLC_CONFIG\n");
        return 2;
    }
    char err[512];
    struct config *cfg = config_load(path, err, sizeof err);
    if (!cfg) {
        fprintf(stderr, "serve: %s\n", err);
        return 2;
    }
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* A peer closing a socket must be an error code, not a process kill. */
    signal(SIGPIPE, SIG_IGN);

    idoc_global_init();
    metrics_init();
    /* libcurl's global init is not thread-safe on every build: once, here,
     * before any thread exists. */
    curl_global_init(CURL_GLOBAL_DEFAULT);

    int rc = 1;
    struct mapref mref = {0};
    struct queue *q = NULL;
    struct ingest *in = NULL;
    struct admin *adm = NULL;
    struct http *h = NULL;
    struct d365_auth *auth = NULL;
    struct d365_governor *gov = NULL;
    struct delivery *dl = NULL;
    struct notify_ctx nctx = {0};
    struct health_ctx hctx = {NULL, &nctx};

    struct mapping *map = mapping_load(cfg->mapping_path, err, sizeof err);
    if (!map || mapref_set(&mref, map) != 0) {
        log_error("serve: %s", map ? "out of memory" : err);
        mapref_free(&mref);
        rc = 2;
        goto out;
    }
    struct queue_opts qo = {.path = cfg->queue_path, .max_size_bytes = (uint64_t)cfg->queue_max_size_mb << 20};
    q = queue_open(&qo, err, sizeof err);
    if (!q) {
        log_error("serve: queue %s: %s", cfg->queue_path, err);
        goto out;
    }
    hctx.q = q;
    size_t back = 0;
    if (queue_move_all(q, QUEUE_INFLIGHT, QUEUE_PENDING, &back, err, sizeof err) != QUEUE_OK) {
        log_error("serve: queue recovery: %s", err);
        goto out;
    }
    if (back) log_info("serve: %zu records were in flight at the last stop; they are pending again", back);

    struct d365_auth_config ac = {
        .token_url = cfg->dv_token_url,
        .client_id = cfg->dv_client_id,
        .scope = cfg->dv_scope,
        .client_secret = cfg->dv_client_secret,
        .cert_file = cfg->dv_client_certificate,
        .key_file = cfg->dv_client_key,
        .alg = strcmp(cfg->dv_assertion_alg, "RS256") == 0 ? D365_ALG_RS256 : D365_ALG_PS256,
    };
    auth = d365_auth_create(&ac, err, sizeof err);
    if (!auth) {
        log_error("serve: dataverse credentials: %s", err);
        rc = 2;
        goto out;
    }
    struct d365_governor_config gc = {.max_concurrency = (int)cfg->delivery_max_concurrency};
    gov = d365_governor_create(&gc);
    if (!gov) {
        log_error("serve: out of memory");
        goto out;
    }

    struct ingest_opts io = {
        .username = cfg->sap_username,
        .password = cfg->sap_password,
        .max_body_bytes = (uint64_t)cfg->sap_max_body_mb << 20,
        /* Requests together may hold 4 bodies' worth (at least 256 MiB). */
        .max_inflight_bytes = ((uint64_t)cfg->sap_max_body_mb << 22) > (256ULL << 20)
                                  ? (uint64_t)cfg->sap_max_body_mb << 22 : 256ULL << 20,
        .max_idocs = (size_t)cfg->sap_max_idocs,
        .queue = q,
        .mapping = &mref,
        .on_stored = notify_delivery,
        .on_stored_ud = &nctx,
    };
    in = ingest_new(&io);
    adm = admin_new(cfg->admin_token, q, NULL);
    if (!in || !adm) {
        log_error("serve: cannot set up ingest/admin (out of memory, or OpenSSL has no SHA-256)");
        goto out;
    }
    struct http_opts ho = {
        .address = cfg->listen_address,
        .port = (uint16_t)cfg->listen_port,
        .threads = (unsigned)cfg->listen_threads,
        .connection_limit = (unsigned)cfg->listen_connection_limit,
        .timeout_s = (unsigned)cfg->listen_timeout_s,
        .sap_path = cfg->sap_path,
        .tls_cert = cfg->listen_tls_cert,
        .tls_key = cfg->listen_tls_key,
        .client_ca = cfg->listen_client_ca,
        .client_subject = cfg->listen_client_subject,
        .tls_priorities = cfg->listen_tls_priorities,
        .ingest = in,
        .admin = adm,
        .queue = q,
        .extra_metrics = delivery_metrics_cb,
        .extra_metrics_ud = &nctx,
        .health = health_check,
        .health_ud = &hctx,
    };
    h = http_start(&ho, err, sizeof err);
    if (!h) {
        log_error("serve: %s", err);
        goto out;
    }
    int v6 = strchr(cfg->listen_address, ':') != NULL;
    log_always(LOG_INFO, "serve: listening on %s%s%s:%u (%s; SAP path %s, queue %s, quota %lld MiB)", v6 ? "[" : "",
             cfg->listen_address, v6 ? "]" : "", (unsigned)http_port(h), http_mode(h), cfg->sap_path,
             cfg->queue_path, (long long)cfg->queue_max_size_mb);

    struct delivery_opts dopts = {
        .queue = q,
        .mapping = &mref,
        .auth = auth,
        .governor = gov,
        .dataverse_url = cfg->dv_url,
        .request_timeout_ms = (long)cfg->dv_timeout_s * 1000,
        .workers = (unsigned)cfg->delivery_workers,
        .batch_size = (unsigned)cfg->delivery_batch_size,
        .retry_base_s = (double)cfg->delivery_retry_base_s,
        .retry_cap_s = (double)cfg->delivery_retry_cap_s,
        .bind_retry_ms = cfg->delivery_bind_retry_hours * 3600 * 1000,
        .schedule = cfg->delivery_schedule,
        .max_run_ms = cfg->delivery_max_run_minutes * 60 * 1000,
        .retention_ms = cfg->queue_retention_days * 86400 * 1000,
        .audit_retention_ms = cfg->audit_retention_days * 86400 * 1000,
    };
    dl = delivery_start(&dopts, err, sizeof err);
    if (!dl) {
        log_error("serve: delivery: %s", err);
        goto out;
    }
    atomic_store(&nctx.d, dl);
    struct admin_hooks hooks = {admin_sync_now, admin_runs, dl};
    admin_set_hooks(adm, &hooks);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            reload(path, cfg, &mref);
            continue;
        }
        log_info("serve: %s received: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        break;
    }
    http_set_draining(h);
    ingest_set_draining(in);
    http_quiesce(h);
    if (wait_idle(in, SHUTDOWN_WAIT_S) != 0)
        log_warn("serve: requests still in flight after %d s; closing the queue", SHUTDOWN_WAIT_S);
    rc = 0;

out:
    /* Order matters. Normally every ingest request has been answered by now:
     * the HTTP server stops first (no admin request can then reach
     * delivery), delivery finishes the batch in hand (at most 20 s) and puts
     * what it had claimed back to pending, and the queue closes last. If a
     * request is still waiting for its commit, MHD must not be stopped with
     * that connection suspended: the queue closes first (answering every
     * batch it holds), and delivery must therefore stop before it. */
    if (in && h && ingest_active(in) != 0) {
        if (adm) admin_set_hooks(adm, NULL);
        atomic_store(&nctx.d, NULL);
        if (dl) delivery_stop(dl, 20000);
        dl = NULL;
        if (q) queue_close(q);
        q = NULL;
        wait_idle(in, 5);
    }
    if (h) http_stop(h);
    atomic_store(&nctx.d, NULL);
    if (dl) delivery_stop(dl, 20000);
    if (q) queue_close(q);
    ingest_free(in);
    admin_free(adm);
    d365_governor_destroy(gov);
    d365_auth_destroy(auth);
    curl_global_cleanup();
    mapref_free(&mref);
    idoc_global_cleanup();
    if (rc == 0) log_info("serve: stopped cleanly");
    config_free(cfg);
    return rc;
}
