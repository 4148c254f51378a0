/*
 * d365/webapi — the Dataverse Web API client. One client per worker thread.
 *
 * A client owns one libcurl easy handle that it reuses for every request, so
 * the TCP/TLS connection stays alive between requests (keep-alive). Options:
 * NOSIGNAL, connect and total timeouts, TCP keepalive, gzip accepted, a max
 * connection age; no cookie engine (Dataverse's affinity cookie is never sent
 * back, so parallel clients spread over the web servers, dataverse.md §5).
 *
 * Every request carries Authorization: Bearer (from d365/auth),
 * Accept: application/json, OData-MaxVersion: 4.0, OData-Version: 4.0,
 * If-None-Match: null (unless the op sets If-None-Match), Content-Type:
 * application/json when there is a body; $batch adds
 * Prefer: odata.continue-on-error. Optional: MSCRM.SuppressDuplicateDetection:
 * false (duplicate detection on), MSCRM.BypassCustomPluginExecution: true.
 *
 * Every request first takes a slot from the governor (so no request starts
 * inside a Retry-After window and concurrency stays under the cap) and gives
 * it back with its status; every request updates the metrics
 * (mlc_dataverse_requests_total{code}, 0 = transport error;
 * mlc_dataverse_request_seconds; mlc_dataverse_throttled_total for a 429 —
 * a batch whose parts were throttled counts once).
 *
 * A 401 drops the token (d365_auth_invalidate) and the request is sent once
 * more with a new one; a second 401 is the outcome (RETRY, see d365.h).
 *
 * The client does not retry anything else: it reports each op's outcome and
 * the caller schedules the next attempt (d365_backoff_delay with the op's
 * retry_after as floor).
 *
 * Threads: a client is used by one thread at a time. The auth manager and the
 * governor are shared. Ownership: the client borrows auth and governor (they
 * must outlive it); ops are the caller's.
 */
#ifndef MLC_D365_WEBAPI_H
#define MLC_D365_WEBAPI_H

#include <stddef.h>
#include <stdint.h>

#include "d365/auth.h"
#include "d365/d365.h"
#include "d365/governor.h"

struct d365_client_config {
    const char *url;            /* environment URL: "https://org.crm.dynamics.com"
                                 * (a path prefix is kept; /api/data/v9.2/ is appended) */
    long connect_timeout_ms;    /* 0 → 10 s */
    long timeout_ms;            /* whole request; 0 → 120 s */
    long acquire_timeout_ms;    /* max wait for a governor slot; 0 → forever
                                 * (until d365_governor_shutdown) */
    int duplicate_detection;    /* 1: MSCRM.SuppressDuplicateDetection: false */
    int bypass_plugins;         /* 1: MSCRM.BypassCustomPluginExecution: true */
};

struct d365_client;

struct d365_client_stats {
    uint64_t requests;          /* HTTP requests sent (incl. 401 retries) */
    uint64_t status_429;        /* responses 429 (whole request) */
    uint64_t parts_429;         /* batch parts answered 429 */
    uint64_t transport_errors;
    uint64_t renewals;          /* 401 → token renewed → resent */
};

/* auth is required; gov may be NULL (no governing: tests, one-off calls).
 * NULL + err on a bad URL or allocation failure. */
struct d365_client *d365_client_create(const struct d365_client_config *cfg, struct d365_auth *auth,
                                       struct d365_governor *gov, char *err, size_t errlen);
void d365_client_destroy(struct d365_client *c);

/* d365_auth_prefetch on the client's token manager. */
void d365_client_prefetch_token(struct d365_client *c);

/* Send one operation; fills its outputs and returns its outcome. */
enum d365_outcome d365_send_one(struct d365_client *c, struct d365_op *op);

/* d365_send_one with extra request headers and the response body (for the
 * metadata calls of d365/metadata.h, which read JSON answers):
 *   headers   NULL, or a NULL-terminated list of "Name: value" lines
 *             ("MSCRM.SolutionUniqueName: mlc"); a line holding CR/LF or no
 *             ':' makes the op FAILED with code "invalid", nothing sent;
 *   body_out  NULL, or receives the response body whatever the status
 *             (malloc'd, NUL-terminated, "" when empty; NULL when no answer
 *             came: transport error, token unavailable, OOM). Caller frees.
 * Same headers, governor, 401 renewal and outcome table as d365_send_one. */
enum d365_outcome d365_send_ex(struct d365_client *c, struct d365_op *op, const char *const *headers,
                               char **body_out);

/* Send ops[0..n-1] as one $batch (n ≤ D365_BATCH_MAX; the caller picks the
 * size, D365_BATCH_DEFAULT is the suggested default). Every op gets its own
 * outcome: from its part, from its change set's response, or — when the batch
 * as a whole failed (401 after renewal, 429, 5xx, transport error, an outer
 * 4xx, an unparsable answer) — the batch's outcome with batch_level = 1.
 * Returns 0, or -1 + err when the ops cannot form a batch (nothing sent,
 * outputs untouched). */
int d365_batch_send(struct d365_client *c, struct d365_op *ops, size_t n, char *err, size_t errlen);

/* Lookup results. */
enum d365_lookup {
    D365_LOOKUP_FOUND = 0,
    D365_LOOKUP_NOT_FOUND = 1,
    D365_LOOKUP_RETRY = 2,      /* transient (throttled, 5xx, transport, token) */
    D365_LOOKUP_FAILED = 3,     /* permanent (e.g. unknown column: 400) */
};

/* The primary id (GUID) of the first row of `set` whose `column` equals
 * `value`: GET <set>?$select=<pk>&$filter=<column> eq '<value>'&$top=1.
 * The primary key column is derived from the set name (transactioncurrencies
 * → transactioncurrencyid, pricelevels → pricelevelid); if the row does not
 * carry it, the first "...id" property holding a GUID is taken.
 * Results are cached process-wide: found for 1 h, not found for 60 s
 * (d365_lookup_cache_ttl changes that). id_out gets the GUID (37 bytes).
 * err gets the reason for NOT_FOUND/RETRY/FAILED. */
enum d365_lookup d365_lookup_id(struct d365_client *c, const char *set, const char *column,
                                const char *value, char id_out[37], char *err, size_t errlen);

void d365_lookup_cache_ttl(double found_s, double not_found_s);
void d365_lookup_cache_clear(void);
/* Cache hits so far (tests). */
uint64_t d365_lookup_cache_hits(void);

void d365_client_stats(const struct d365_client *c, struct d365_client_stats *out);

#endif
