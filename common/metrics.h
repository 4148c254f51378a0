/*
 * metrics — the process's Prometheus counters, gauges and histograms.
 *
 * Every series of CONTRACT.md exists from start-up at 0 (metrics_init
 * registers the known label values). Updates are lock-free atomics, so the
 * hot paths (ingest, delivery) pay one atomic add; rendering reads a snapshot
 * and never touches LMDB — the caller passes queue gauges in as text.
 *
 * Threads: any thread. metrics_init once in main() before threads start.
 */
#ifndef MLC_METRICS_H
#define MLC_METRICS_H

#include <stdint.h>

/* mlc_requests_rejected_total{reason=...} */
enum metrics_reject {
    METRICS_REJECT_AUTH = 0,
    METRICS_REJECT_MALFORMED,
    METRICS_REJECT_DOCTYPE,
    METRICS_REJECT_TOO_LARGE,
    METRICS_REJECT_MEDIA_TYPE,
    METRICS_REJECT_UNSUPPORTED_TYPE,
    METRICS_REJECT_QUOTA,
    METRICS_REJECT_INTERNAL,
    METRICS_REJECT_METHOD,      /* added: 405 */
    METRICS_REJECT_N
};

void metrics_init(void);

void metrics_idoc_received(const char *mestyp, uint64_t n);
void metrics_idoc_duplicate(uint64_t n);
void metrics_rejected(int reason);
void metrics_ingest_request(int http_status);
void metrics_ingest_commit_observe(double seconds);
void metrics_ingest_bytes(uint64_t n);

void metrics_dataverse_request(int http_status, double seconds);
void metrics_dataverse_throttled(void);
void metrics_delivery_retry(uint64_t n);
void metrics_record_delivered(const char *entity_set, uint64_t n);
void metrics_record_failed(uint64_t n);

/* Prometheus text exposition (version 0.0.4) of every series, followed by
 * `extra` (already formatted gauges, may be NULL). Caller frees. */
char *metrics_render(const char *extra);

/* Read back one counter (for tests): "mlc_idocs_duplicate_total" etc. with an
 * optional label value; returns 0 for unknown series. */
uint64_t metrics_get(const char *name, const char *label);

#endif
