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
#include "server/admin.h"
#include "server/cli.h"
#include "server/http.h"
#include "server/ingest.h"

#define SHUTDOWN_WAIT_S 30

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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

    int rc = 1;
    struct mapping *map = NULL;
    struct queue *q = NULL;
    struct ingest *in = NULL;
    struct admin *adm = NULL;
    struct http *h = NULL;

    map = mapping_load(cfg->mapping_path, err, sizeof err);
    if (!map) {
        log_error("serve: %s", err);
        rc = 2;
        goto out;
    }
    struct queue_opts qo = {.path = cfg->queue_path, .max_size_bytes = (uint64_t)cfg->queue_max_size_mb << 20};
    q = queue_open(&qo, err, sizeof err);
    if (!q) {
        log_error("serve: queue %s: %s", cfg->queue_path, err);
        goto out;
    }
    size_t back = 0;
    if (queue_move_all(q, QUEUE_INFLIGHT, QUEUE_PENDING, &back, err, sizeof err) != QUEUE_OK) {
        log_error("serve: queue recovery: %s", err);
        goto out;
    }
    if (back) log_info("serve: %zu records were in flight at the last stop; they are pending again", back);

    struct ingest_opts io = {
        .username = cfg->sap_username,
        .password = cfg->sap_password,
        .max_body_bytes = (uint64_t)cfg->sap_max_body_mb << 20,
        /* Requests together may hold 4 bodies' worth (at least 256 MiB). */
        .max_inflight_bytes = ((uint64_t)cfg->sap_max_body_mb << 22) > (256ULL << 20)
                                  ? (uint64_t)cfg->sap_max_body_mb << 22 : 256ULL << 20,
        .max_idocs = (size_t)cfg->sap_max_idocs,
        .queue = q,
        .mapping = map,
    };
    in = ingest_new(&io);
    adm = admin_new(cfg->admin_token, q, NULL);
    if (!in || !adm) {
        log_error("serve: out of memory");
        goto out;
    }
    struct http_opts ho = {
        .address = cfg->listen_address,
        .port = (uint16_t)cfg->listen_port,
        .threads = (unsigned)cfg->listen_threads,
        .connection_limit = (unsigned)cfg->listen_connection_limit,
        .timeout_s = (unsigned)cfg->listen_timeout_s,
        .sap_path = cfg->sap_path,
        .ingest = in,
        .admin = adm,
        .queue = q,
    };
    h = http_start(&ho, err, sizeof err);
    if (!h) {
        log_error("serve: %s", err);
        goto out;
    }
    int v6 = strchr(cfg->listen_address, ':') != NULL;
    log_info("serve: listening on %s%s%s:%u (SAP path %s, queue %s, quota %lld MiB)", v6 ? "[" : "",
             cfg->listen_address, v6 ? "]" : "", (unsigned)http_port(h), cfg->sap_path, cfg->queue_path,
             (long long)cfg->queue_max_size_mb);

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            log_warn("serve: SIGHUP received: reloading is not supported yet; restart to apply changes");
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
    /* The queue closes before MHD stops: closing it answers every batch it
     * holds (resuming those connections), and MHD must not be stopped with
     * connections suspended. */
    if (q) queue_close(q);
    if (h) {
        if (in) wait_idle(in, 5);
        http_stop(h);
    }
    ingest_free(in);
    admin_free(adm);
    mapping_free(map);
    idoc_global_cleanup();
    if (rc == 0) log_info("serve: stopped cleanly");
    config_free(cfg);
    return rc;
}
