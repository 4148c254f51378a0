/*
 * metrics — atomics in, Prometheus text out.
 *
 * Labelled counters whose label values are not known in advance (mestyp,
 * entity set, HTTP status) live in small fixed tables: a slot is claimed under
 * a mutex the first time a value is seen, and from then on found by a
 * lock-free scan (the slot count is published with release/acquire). The
 * tables are bounded: past LABEL_SLOTS distinct values, further ones are
 * counted under label "other", so a hostile MESTYP cannot grow memory.
 */
#include "common/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LABEL_SLOTS 64
#define LABEL_LEN 48

struct label_slot {
    char value[LABEL_LEN];
    atomic_uint_fast64_t count;
};

struct labelled {
    const char *name, *label, *help;
    pthread_mutex_t mu;
    atomic_size_t n;
    struct label_slot slot[LABEL_SLOTS];
};

struct histogram {
    const char *name, *help;
    const double *bounds;
    size_t nbounds;
    atomic_uint_fast64_t bucket[24]; /* per-bound counts (not cumulative) + +Inf */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_us;
};

static struct labelled received = {"mlc_idocs_received_total", "mestyp",
    "IDocs committed to the queue, by message type", PTHREAD_MUTEX_INITIALIZER, 0, {{{0}, 0}}};
static struct labelled dv_requests = {"mlc_dataverse_requests_total", "code",
    "HTTP requests to Dataverse by status (0 = transport error)", PTHREAD_MUTEX_INITIALIZER, 0, {{{0}, 0}}};
static struct labelled delivered = {"mlc_records_delivered_total", "entity",
    "Records written to Dataverse, by entity set", PTHREAD_MUTEX_INITIALIZER, 0, {{{0}, 0}}};
static struct labelled ingest_req = {"mlc_ingest_requests_total", "code",
    "Ingest requests answered, by HTTP status", PTHREAD_MUTEX_INITIALIZER, 0, {{{0}, 0}}};

static atomic_uint_fast64_t duplicates, throttled, retries, failed, ingest_bytes;
static atomic_uint_fast64_t rejected[METRICS_REJECT_N];
static const char *const reject_names[METRICS_REJECT_N] = {
    "auth", "malformed", "doctype", "too_large", "media_type", "unsupported_type",
    "quota", "internal", "method"};

static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double dv_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

static struct histogram commit_hist = {"mlc_ingest_commit_seconds",
    "Time from request received to IDocs committed (fsync'd)", commit_bounds,
    sizeof commit_bounds / sizeof commit_bounds[0], {0}, 0, 0};
static struct histogram dv_hist = {"mlc_dataverse_request_seconds",
    "Duration of one Dataverse HTTP request", dv_bounds,
    sizeof dv_bounds / sizeof dv_bounds[0], {0}, 0, 0};

static time_t start_time;

static struct label_slot *slot_for(struct labelled *l, const char *value)
{
    size_t n = atomic_load_explicit(&l->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strncmp(l->slot[i].value, value, LABEL_LEN - 1) == 0) return &l->slot[i];
    pthread_mutex_lock(&l->mu);
    n = atomic_load_explicit(&l->n, memory_order_relaxed);
    struct label_slot *s = NULL;
    for (size_t i = 0; i < n && !s; i++)
        if (strncmp(l->slot[i].value, value, LABEL_LEN - 1) == 0) s = &l->slot[i];
    if (!s) {
        if (n < LABEL_SLOTS - 1 || (n == LABEL_SLOTS - 1 && strcmp(value, "other") == 0)) {
            s = &l->slot[n];
            snprintf(s->value, LABEL_LEN, "%s", value);
            atomic_store_explicit(&l->n, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&l->mu);
    if (!s) return slot_for(l, "other");
    return s;
}

static void labelled_add(struct labelled *l, const char *value, uint64_t n)
{
    atomic_fetch_add_explicit(&slot_for(l, value && *value ? value : "unknown")->count, n,
                              memory_order_relaxed);
}

static void observe(struct histogram *h, double seconds)
{
    size_t i = 0;
    while (i < h->nbounds && seconds > h->bounds[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (uint64_t)(seconds * 1e6 + 0.5), memory_order_relaxed);
}

void metrics_init(void)
{
    static const char *const mestyps[] = {"CREMAS", "DEBMAS", "ORDERS", "ORDCHG"};
    static const char *const codes[] = {"200", "204", "400", "401", "404", "412", "429", "500", "503", "0"};
    static const char *const sets[] = {"accounts", "contacts", "opportunities", "opportunityproducts",
                                       "salesorders", "salesorderdetails", "quotes", "quotedetails"};
    static const char *const ingest_codes[] = {"200", "400", "401", "405", "413", "415", "422", "503"};
    start_time = time(NULL);
    for (size_t i = 0; i < sizeof mestyps / sizeof *mestyps; i++) slot_for(&received, mestyps[i]);
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) slot_for(&dv_requests, codes[i]);
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) slot_for(&delivered, sets[i]);
    for (size_t i = 0; i < sizeof ingest_codes / sizeof *ingest_codes; i++) slot_for(&ingest_req, ingest_codes[i]);
}

void metrics_idoc_received(const char *mestyp, uint64_t n) { labelled_add(&received, mestyp, n); }
void metrics_idoc_duplicate(uint64_t n) { atomic_fetch_add(&duplicates, n); }
void metrics_rejected(int reason)
{
    if (reason >= 0 && reason < METRICS_REJECT_N) atomic_fetch_add(&rejected[reason], 1);
}
void metrics_ingest_request(int http_status)
{
    char code[16];
    snprintf(code, sizeof code, "%d", http_status);
    labelled_add(&ingest_req, code, 1);
}
void metrics_ingest_commit_observe(double seconds) { observe(&commit_hist, seconds); }
void metrics_ingest_bytes(uint64_t n) { atomic_fetch_add(&ingest_bytes, n); }
void metrics_dataverse_request(int http_status, double seconds)
{
    char code[16];
    snprintf(code, sizeof code, "%d", http_status);
    labelled_add(&dv_requests, code, 1);
    observe(&dv_hist, seconds);
}
void metrics_dataverse_throttled(void) { atomic_fetch_add(&throttled, 1); }
void metrics_delivery_retry(uint64_t n) { atomic_fetch_add(&retries, n); }
void metrics_record_delivered(const char *entity_set, uint64_t n) { labelled_add(&delivered, entity_set, n); }
void metrics_record_failed(uint64_t n) { atomic_fetch_add(&failed, n); }

/* A growable text buffer for rendering. */
struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void bprintf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(struct buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t ncap = (b->cap + (size_t)n + 1) * 2;
        char *np = realloc(b->p, ncap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = ncap;
    }
}

/* Label values are escaped as the exposition format requires. */
static void label_escape(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    for (; *in && o + 3 < cap; in++) {
        if (*in == '\\' || *in == '"') { out[o++] = '\\'; out[o++] = *in; }
        else if (*in == '\n') { out[o++] = '\\'; out[o++] = 'n'; }
        else out[o++] = *in;
    }
    out[o] = 0;
}

static void render_labelled(struct buf *b, struct labelled *l)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s counter\n", l->name, l->help, l->name);
    size_t n = atomic_load_explicit(&l->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        char esc[LABEL_LEN * 2 + 1];
        label_escape(esc, sizeof esc, l->slot[i].value);
        bprintf(b, "%s{%s=\"%s\"} %llu\n", l->name, l->label, esc,
                (unsigned long long)atomic_load(&l->slot[i].count));
    }
}

static void render_counter(struct buf *b, const char *name, const char *help, atomic_uint_fast64_t *v)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
            (unsigned long long)atomic_load(v));
}

static void render_hist(struct buf *b, struct histogram *h)
{
    bprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += atomic_load(&h->bucket[i]);
        bprintf(b, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->bounds[i], (unsigned long long)cum);
    }
    cum += atomic_load(&h->bucket[h->nbounds]);
    /* count is read after the buckets; report the bucket total so the
     * +Inf bucket always equals _count even while observations race in. */
    bprintf(b, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    bprintf(b, "%s_sum %.6f\n", h->name, (double)atomic_load(&h->sum_us) / 1e6);
    bprintf(b, "%s_count %llu\n", h->name, (unsigned long long)cum);
}

char *metrics_render(const char *extra)
{
    struct buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    b.p[0] = 0;
    render_labelled(&b, &received);
    render_counter(&b, "mlc_idocs_duplicate_total", "Resends acknowledged without queuing again", &duplicates);
    bprintf(&b, "# HELP mlc_requests_rejected_total Ingest requests rejected, by reason\n"
                "# TYPE mlc_requests_rejected_total counter\n");
    for (int i = 0; i < METRICS_REJECT_N; i++)
        bprintf(&b, "mlc_requests_rejected_total{reason=\"%s\"} %llu\n", reject_names[i],
                (unsigned long long)atomic_load(&rejected[i]));
    render_labelled(&b, &ingest_req);
    render_counter(&b, "mlc_ingest_bytes_total", "Request body bytes received on the SAP path", &ingest_bytes);
    render_hist(&b, &commit_hist);
    render_labelled(&b, &dv_requests);
    render_counter(&b, "mlc_dataverse_throttled_total", "429 responses received from Dataverse", &throttled);
    render_counter(&b, "mlc_delivery_retries_total", "Retried delivery operations", &retries);
    render_labelled(&b, &delivered);
    render_counter(&b, "mlc_records_failed_total", "Records marked failed", &failed);
    render_hist(&b, &dv_hist);
    bprintf(&b, "# HELP mlc_process_start_time_seconds Start time of the process since the epoch\n"
                "# TYPE mlc_process_start_time_seconds gauge\nmlc_process_start_time_seconds %lld\n",
            (long long)start_time);
    if (extra) bprintf(&b, "%s", extra);
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

uint64_t metrics_get(const char *name, const char *label)
{
    struct labelled *ls[] = {&received, &dv_requests, &delivered, &ingest_req};
    for (size_t i = 0; i < sizeof ls / sizeof *ls; i++) {
        if (strcmp(ls[i]->name, name) != 0) continue;
        size_t n = atomic_load_explicit(&ls[i]->n, memory_order_acquire);
        for (size_t j = 0; j < n; j++)
            if (label && strcmp(ls[i]->slot[j].value, label) == 0) return atomic_load(&ls[i]->slot[j].count);
        return 0;
    }
    if (strcmp(name, "mlc_idocs_duplicate_total") == 0) return atomic_load(&duplicates);
    if (strcmp(name, "mlc_dataverse_throttled_total") == 0) return atomic_load(&throttled);
    if (strcmp(name, "mlc_delivery_retries_total") == 0) return atomic_load(&retries);
    if (strcmp(name, "mlc_records_failed_total") == 0) return atomic_load(&failed);
    if (strcmp(name, "mlc_requests_rejected_total") == 0 && label)
        for (int i = 0; i < METRICS_REJECT_N; i++)
            if (strcmp(reject_names[i], label) == 0) return atomic_load(&rejected[i]);
    return 0;
}
