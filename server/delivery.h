/*
 * delivery — the engine that takes queued IDocs to Dataverse.
 *
 * One dispatcher thread decides WHAT may be sent (sequence order, one record
 * per business key at a time, back-off, the sync schedule); N worker threads
 * do the sending (queue record -> IDoc -> mapping -> d365 $batch) and commit
 * each outcome to the queue. See delivery.c for the design and invariants.
 *
 * Threads: delivery_start/delivery_stop from the main thread; delivery_notify,
 * delivery_sync_now and delivery_runs_json from any thread.
 */
#ifndef MLC_DELIVERY_H
#define MLC_DELIVERY_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

struct queue;
struct mapref;
struct d365_auth;
struct d365_governor;

struct delivery_opts {
    struct queue *queue;
    struct mapref *mapping;          /* the mapping in use (reloadable) */
    struct d365_auth *auth;          /* shared token manager */
    struct d365_governor *governor;  /* shared throttle governor */
    const char *dataverse_url;
    long request_timeout_ms;
    unsigned workers;
    unsigned batch_size;             /* operations per $batch */
    double retry_base_s, retry_cap_s;
    int64_t bind_retry_ms;           /* how long a missing bind target is retried */
    const char *schedule;            /* "continuous" or a cron expression */
    int64_t max_run_ms;              /* scheduled runs stop after this */
    int64_t retention_ms;            /* delivered/ignored records kept; 0 = forever */
    int64_t audit_retention_ms;
};

struct delivery;

/* Start the dispatcher and workers. NULL + err on failure. */
struct delivery *delivery_start(const struct delivery_opts *o, char *err, size_t errlen);

/* New records were committed: look now rather than at the next poll. */
void delivery_notify(struct delivery *d);

/* Start a sync run now (admin). Returns 0 and a message, or -1 + reason. */
int delivery_sync_now(struct delivery *d, char *msg, size_t msglen);

/* Recent runs, newest first, as a new JSON array (admin). */
cJSON *delivery_runs_json(struct delivery *d, size_t limit);

/* Stop: no new work is dispatched, workers finish the batch in hand (at
 * most grace_ms, then outstanding HTTP waits are cut and those records go
 * back to pending), the current run is closed. */
void delivery_stop(struct delivery *d, long grace_ms);

/* How long ago the dispatcher last went round its loop, in ms (it goes round
 * at least every 500 ms): a liveness signal for /healthz. */
int64_t delivery_heartbeat_age_ms(struct delivery *d);

/* Gauges for /metrics (Prometheus text, appended to buf). */
size_t delivery_metrics(struct delivery *d, char *buf, size_t len);

#endif
