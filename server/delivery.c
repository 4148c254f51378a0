/*
 * delivery — queue -> mapping -> Dataverse.
 *
 * Design
 *   Dispatcher (one thread). Keeps an in-memory index of PENDING records
 *   (seq, business keys, due time), refreshed from the queue when new
 *   records are committed (delivery_notify, or a 500 ms poll of next_seq;
 *   between scheduled runs at most every 100 ms) and
 *   rebuilt when the queue's pending count no longer matches the index (a
 *   replay from `ml-connector queue replay` in another process, say). To fill
 *   a job it walks the index in sequence order and takes a record only when
 *   none of its keys is (a) in flight, (b) held by an older record that is
 *   waiting for its back-off, or (c) already taken for this round — so two
 *   records of one key are never in flight together and a newer one is never
 *   sent before an older one. Taken records are claimed in the queue
 *   (PENDING -> INFLIGHT, all of a job in one write transaction) before they
 *   are read and sent; on a crash they go back to PENDING at the next
 *   start-up. The worker that takes a job claims it: a worker finishing a
 *   job takes its next one and claims it in the transaction that records
 *   the finished job's outcomes (one commit per job, not two: LMDB's single
 *   writer, and its fdatasync, bound delivery). Jobs that idle workers take
 *   at once (all of them at the start of a run) are claimed by the
 *   dispatcher, together in one commit, before they are published.
 *
 *   Workers (N threads, each with its own libcurl handle). For each record of
 *   a job: read it, parse its IDoc, check it is not older than what was last
 *   applied for its key (a late BD87 resend is superseded, not applied),
 *   map it (lookups such as currency ids are resolved through the d365 cache
 *   during mapping), then send the ops of all the job's records as one $batch
 *   (each record's ops as the mapping grouped them: a PO header with its lines
 *   in one change set). Per record the worst op outcome wins: DONE ->
 *   delivered (keystate and vendor/customer links written in the same
 *   transaction), FAILED -> failed with Dataverse's code and message, RETRY
 *   -> pending again with exponential back-off and full jitter, Retry-After as
 *   the floor; a missing bind target is retried for bind_retry_ms and then
 *   failed. Every op attempt is one audit entry. No LMDB transaction is ever
 *   open across an HTTP call: the queue API opens and commits its own.
 *
 *   Throttling is the governor's (d365/governor.h): one per process, it stops
 *   every worker inside a 429's Retry-After window and adapts concurrency.
 *
 *   Runs. With "continuous" a run starts when work appears and ends after 60
 *   s without work. With a cron schedule nothing is dispatched between runs;
 *   a run starts at each trigger (or POST /admin/sync) and drains until
 *   nothing is due or max_run_ms has passed. Each run is a row in the queue's
 *   runs table and an audit entry.
 *
 * Invariants
 *   - an index entry is busy  <=>  its record is INFLIGHT and in some job;
 *   - at most one busy entry per business key;
 *   - a record leaves INFLIGHT only through the worker that holds it (or the
 *     start-up recovery in serve.c).
 */
#include "server/delivery.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "config/cron.h"
#include "config/mapping.h"
#include "d365/d365.h"
#include "d365/governor.h"
#include "d365/webapi.h"
#include "idoc/idoc.h"
#include "idoc/idoc_pack.h"
#include "queue/queue.h"
#include "server/mapref.h"

#define POLL_MS 500
#define CONTINUOUS_IDLE_END_MS 60000
#define SCAN_WINDOW 50000          /* index entries looked at per round */
#define PRUNE_EVERY_MS (3600 * 1000)
#define FULL_RELOAD_MS 10000
#define IDLE_REFRESH_MS 100    /* index refresh between scheduled runs */
#define ERRTEXT 1536
#define CLAIM_RETRY_MS 1000        /* after a claim could not be committed */

/* ---- small utilities ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void abstime_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* FNV-1a over one key (a key ends at ' ' or NUL). */
static uint64_t key_hash(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) { h ^= (unsigned char)k[i]; h *= 1099511628211ULL; }
    return h;
}

/* A set of keys for one dispatch round: open addressing over (ptr, len). */
struct keyset {
    const char **k;
    size_t *len;
    size_t cap, n;
};

/* Look k up; when add, put it in if absent. Returns 1 when it was there
 * (*found: the stored pointer), 0 when not, -1 out of memory. */
static int keyset_has_add_at(struct keyset *s, const char *k, size_t len, int add, const char **found)
{
    if (add && (s->n + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        const char **nk = calloc(ncap, sizeof *nk);
        size_t *nl = calloc(ncap, sizeof *nl);
        if (!nk || !nl) { free(nk); free(nl); return -1; }
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->k[i]) continue;
            size_t j = key_hash(s->k[i], s->len[i]) & (ncap - 1);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = s->k[i];
            nl[j] = s->len[i];
        }
        free(s->k);
        free(s->len);
        s->k = nk;
        s->len = nl;
        s->cap = ncap;
    }
    if (!s->cap) return 0;
    size_t j = key_hash(k, len) & (s->cap - 1);
    while (s->k[j]) {
        if (s->len[j] == len && memcmp(s->k[j], k, len) == 0) {
            if (found) *found = s->k[j];
            return 1;
        }
        j = (j + 1) & (s->cap - 1);
    }
    if (add) {
        s->k[j] = k;
        s->len[j] = len;
        s->n++;
    }
    return 0;
}

static int keyset_has_add(struct keyset *s, const char *k, size_t len, int add)
{
    return keyset_has_add_at(s, k, len, add, NULL);
}

static void keyset_clear(struct keyset *s)
{
    if (s->k) memset(s->k, 0, s->cap * sizeof *s->k);
    s->n = 0;
}

/* Add every key of `keys` (space separated), hashing each once: 1 when a
 * key of them was in the set before (a key listed twice in `keys` itself does
 * not count: the pointer found then lies inside `keys`). */
static int keys_check_add(struct keyset *s, const char *keys)
{
    int blocked = 0;
    for (const char *p = keys; *p;) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        const char *hit = NULL;
        int r = e > p ? keyset_has_add_at(s, p, (size_t)(e - p), 1, &hit) : 0;
        if (r < 0) /* no memory to add it: at least look it up (no allocation) */
            r = keyset_has_add_at(s, p, (size_t)(e - p), 0, &hit);
        if (r == 1 && !((uintptr_t)hit >= (uintptr_t)keys && (uintptr_t)hit < (uintptr_t)p))
            blocked = 1;
        p = e;
    }
    return blocked;
}

static void keys_add(struct keyset *s, const char *keys)
{
    for (const char *p = keys; *p;) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if (e > p) keyset_has_add(s, p, (size_t)(e - p), 1);
        p = e;
    }
}

/* ---- the engine's state ---- */

struct pend {
    uint64_t seq;
    int64_t due_ms;
    char *keys;
    int busy, dead;
};

struct job {
    uint64_t *seqs;
    size_t n;
    uint64_t run_id;
    int claimed;          /* its records are INFLIGHT in the queue */
    struct job *next;
};

struct rec_work;

struct worker {
    struct delivery *d;
    pthread_t thread;
    struct d365_client *client;
    unsigned id;
    /* The job's per-record state, kept across jobs: a few KiB a record, and
     * a fresh allocation per job came back from the kernel as zero pages
     * to fault in one by one (7 % of the delivery CPU). */
    struct rec_work *w;
    size_t wcap;
    struct d365_op *ops;      /* the job's ops, kept across jobs as w is */
    size_t opscap;
    struct queue_view *view;  /* while it prepares a job: see view_open */
};

/* A worker's read view while it prepares a job (queue_view_begin): one read
 * transaction for all of the job's reads — records, keystates, links —
 * where each was a transaction of its own (3 a record, ~4 % of the delivery
 * CPU). Opened on first use; ended before a lookup that may go to Dataverse
 * and before the job is sent, so no LMDB transaction is ever open across an
 * HTTP call; ended after a read error too, so that one failure does not fail
 * the reads after it. */
static int view_open(struct queue *q, struct queue_view **v, char *err, size_t errlen)
{
    return *v ? QUEUE_OK : queue_view_begin(q, v, err, errlen);
}

static void view_close(struct queue_view **v)
{
    queue_view_end(*v);
    *v = NULL;
}

static int view_status(struct queue_view **v, int status)
{
    if (status != QUEUE_OK && status != QUEUE_ERR_NOTFOUND) view_close(v);
    return status;
}

struct delivery {
    struct delivery_opts o;
    int continuous;
    struct cron cron;

    pthread_mutex_t mu;
    pthread_cond_t cv_disp;   /* dispatcher: work may be possible */
    pthread_cond_t cv_work;   /* workers: a job is queued */
    int stopping, notified, force;

    struct pend *pend;
    size_t npend, cap, ndead;
    uint64_t max_seen;
    size_t nbusy;

    struct job *jobs, *jobs_tail;   /* jobs ready for workers (claimed or not) */
    /* njobs_out: jobs made and not yet finished (queued or running);
     * njobs_waiting: the queued ones no worker has taken yet. A free slot is
     * an idle worker no queued job is already waiting for (plus JOBS_AHEAD). */
    unsigned idle_workers, njobs_out, njobs_waiting;
    /* Records of jobs made and not yet claimed: busy here, still PENDING in
     * the queue (index_refresh counts them so). */
    size_t nunclaimed;
    struct keyset held;             /* dispatcher's per-round key set */

    pthread_t dispatcher;
    struct worker *workers;
    unsigned nworkers;

    /* current run (under mu) */
    struct queue_run run;
    int run_active;
    int64_t last_work_ms;
    char run_trigger[16];
    int64_t run_deadline_ms;
    time_t next_trigger;
    int64_t last_prune_ms;
    int64_t last_reload_ms;
    int64_t last_idle_refresh_ms;   /* between scheduled runs */

    /* metrics */
    atomic_llong m_next_run, m_last_start, m_last_end;
    atomic_llong heartbeat_ms;
    atomic_int m_last_ok;
};

/* ---- index ---- */

static int index_add(struct delivery *d, uint64_t seq, int64_t due, const char *keys)
{
    if (d->npend == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 1024;
        struct pend *np = realloc(d->pend, nc * sizeof *np);
        if (!np) return -1;
        d->pend = np;
        d->cap = nc;
    }
    char *k = strdup(keys ? keys : "");
    if (!k) return -1;
    d->pend[d->npend++] = (struct pend){seq, due, k, 0, 0};
    if (seq > d->max_seen) d->max_seen = seq;
    return 0;
}

static void index_compact(struct delivery *d)
{
    size_t w = 0;
    for (size_t i = 0; i < d->npend; i++) {
        if (d->pend[i].dead) { free(d->pend[i].keys); continue; }
        d->pend[w++] = d->pend[i];
    }
    d->npend = w;
    d->ndead = 0;
}

/* Entries waiting to be sent: neither dead nor in a job. O(1) because a busy
 * entry is never dead (only idle entries are marked dead, and a job's entries
 * are made idle before they may die) and nbusy counts the busy ones; the
 * dispatcher asks on every commit notification, and a scan of a backlog of
 * 100k entries there cost several per cent of the ingest CPU. */
static size_t index_waiting(const struct delivery *d)
{
    return d->npend - d->ndead - d->nbusy;
}

static struct pend *index_find(struct delivery *d, uint64_t seq)
{
    size_t lo = 0, hi = d->npend;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->pend[mid].seq < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo < d->npend && d->pend[lo].seq == seq ? &d->pend[lo] : NULL;
}

/* Full reload (index_refresh): every PENDING record is appended, in seq
 * order; the busy entries kept from before are merged in afterwards. */
struct load_ctx {
    struct delivery *d;
    int err;
};

static int load_cb(const struct queue_record *r, void *ud)
{
    struct load_ctx *c = ud;
    if (index_add(c->d, r->seq, r->next_attempt_ms, r->keys) != 0) {
        c->err = 1;
        return 1;
    }
    return 0;
}

/* New records (seq > max_seen) read with mu RELEASED into a list of their
 * own, then appended under mu: the first refresh of a scheduled run reads
 * the whole backlog since the last one (about 1 us a record, so a second
 * for a million), and the queue's committer takes mu after every group
 * commit (delivery_notify) — ingest must not wait for the listing. Only the
 * dispatcher appends to the index, so max_seen cannot move meanwhile.
 * Called and returns with mu held; 0 when every record listed went in. */
struct new_list {
    struct pend *v;
    size_t n, cap;
    uint64_t after;
    int err;
};

static int new_cb(const struct queue_record *r, void *ud)
{
    struct new_list *l = ud;
    if (r->seq <= l->after) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        struct pend *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) { l->err = 1; return 1; }
        l->v = nv;
        l->cap = nc;
    }
    char *k = strdup(r->keys ? r->keys : "");
    if (!k) { l->err = 1; return 1; }
    l->v[l->n++] = (struct pend){r->seq, r->next_attempt_ms, k, 0, 0};
    return 0;
}

static int index_load_new(struct delivery *d)
{
    struct new_list l = {.after = d->max_seen};
    char err[256];
    pthread_mutex_unlock(&d->mu);
    int rc = queue_list(d->o.queue, QUEUE_PENDING, l.after, 0, new_cb, &l, err, sizeof err);
    pthread_mutex_lock(&d->mu);
    if (rc != QUEUE_OK && !l.err) log_error("delivery: reading new pending records: %s", err);
    /* Append what was read, in seq order (what did not fit waits for the
     * next refresh: max_seen stays below it). */
    size_t i = 0;
    if (d->npend + l.n > d->cap) {
        size_t nc = d->cap ? d->cap : 1024;
        while (nc < d->npend + l.n) nc *= 2;
        struct pend *np = realloc(d->pend, nc * sizeof *np);
        if (np) { d->pend = np; d->cap = nc; }
    }
    for (; i < l.n && d->npend < d->cap; i++) {
        d->pend[d->npend++] = l.v[i];
        if (l.v[i].seq > d->max_seen) d->max_seen = l.v[i].seq;
    }
    int complete = rc == QUEUE_OK && !l.err && i == l.n;
    for (; i < l.n; i++) free(l.v[i].keys);
    free(l.v);
    return complete ? 0 : -1;
}

static int cmp_pend(const void *a, const void *b)
{
    const struct pend *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Bring the index up to date with the queue. Called with mu held; the queue
 * reads are short read transactions. */
static void index_refresh(struct delivery *d)
{
    struct queue_stats st;
    char err[256];
    if (queue_stats(d->o.queue, &st, err, sizeof err) != QUEUE_OK) {
        log_error("delivery: queue stats: %s", err);
        return;
    }
    if (st.next_seq > 0 && st.next_seq - 1 > d->max_seen) {
        /* Every PENDING record up to upto is in the index after a complete
         * listing (a non-pending tail, e.g. ignored IDocs, need not be read
         * again). The listing ran without mu and may hold records committed
         * after these stats: compare counts only with stats taken after
         * it, and only if nothing new came meanwhile (then next time). */
        uint64_t upto = st.next_seq - 1;
        if (index_load_new(d) == 0 && upto > d->max_seen) d->max_seen = upto;
        if (queue_stats(d->o.queue, &st, err, sizeof err) != QUEUE_OK) {
            log_error("delivery: queue stats: %s", err);
            return;
        }
        if (st.next_seq > 0 && st.next_seq - 1 > d->max_seen) return;
    }
    size_t live = index_waiting(d) + d->nunclaimed;
    if (live == st.count[QUEUE_PENDING]) return;
    /* Counts disagree. While jobs are out that is normal for a moment (a
     * job's records are busy here before its claim commits, and pending
     * there again after a retry commits before the index is told), so only
     * rebuild when no job is out, or every FULL_RELOAD_MS at most: then
     * something really moved records to PENDING behind our back (a replay
     * from another process) or away from it. Rebuild: keep the busy
     * entries, reload the rest, sort. */
    int64_t now = now_ms();
    if (d->njobs_out && now - d->last_reload_ms < FULL_RELOAD_MS) return;
    d->last_reload_ms = now;
    for (size_t i = 0; i < d->npend; i++)
        if (!d->pend[i].busy && !d->pend[i].dead) { d->pend[i].dead = 1; d->ndead++; }
    index_compact(d);
    struct load_ctx c = {d, 0};
    if (queue_list(d->o.queue, QUEUE_PENDING, 0, 0, load_cb, &c, err, sizeof err) != QUEUE_OK)
        log_error("delivery: reloading pending records: %s", err);
    qsort(d->pend, d->npend, sizeof *d->pend, cmp_pend);
    /* A record can be PENDING in the queue and busy here at once (its job's
     * claim failed, and the worker has not yet let go of it): the reload
     * then brought it in a second time. Keep the busy entry — the worker
     * will find it — and drop the copy, or the worker clears the copy and
     * the busy one holds its keys for ever. */
    size_t w = 0;
    for (size_t i = 0; i < d->npend; i++) {
        if (w > 0 && d->pend[w - 1].seq == d->pend[i].seq) {
            struct pend *keep = &d->pend[w - 1], *other = &d->pend[i];
            if (other->busy && !keep->busy) {
                struct pend t = *keep;
                *keep = *other;
                *other = t;
            }
            free(other->keys);
            continue;
        }
        d->pend[w++] = d->pend[i];
    }
    d->npend = w;
    d->max_seen = 0;
    for (size_t i = 0; i < d->npend; i++)
        if (d->pend[i].seq > d->max_seen) d->max_seen = d->pend[i].seq;
    if (st.next_seq > 0 && st.next_seq - 1 > d->max_seen) d->max_seen = st.next_seq - 1;
}

/* ---- runs ---- */

static void run_begin(struct delivery *d, const char *trigger)
{
    memset(&d->run, 0, sizeof d->run);
    snprintf(d->run_trigger, sizeof d->run_trigger, "%s", trigger);
    d->run.start_ms = now_ms();
    d->run.trigger = d->run_trigger;
    d->run.result = "running";
    d->run_active = 1;
    d->last_work_ms = d->run.start_ms;
    d->run_deadline_ms = d->continuous ? 0 : d->run.start_ms + d->o.max_run_ms;
    /* Counts that disagree while jobs are out are normal for a moment (see
     * index_refresh); a run does not start with a full reload for that. */
    d->last_reload_ms = d->run.start_ms;
    char err[256];
    if (queue_run_put(d->o.queue, &d->run, err, sizeof err) != QUEUE_OK)
        log_error("delivery: recording run start: %s", err);
    atomic_store(&d->m_last_start, d->run.start_ms);
    log_debug("delivery: run %llu started (trigger %s)", (unsigned long long)d->run.id, trigger);
}

static void run_end(struct delivery *d, const char *result)
{
    if (!d->run_active) return;
    d->run.end_ms = now_ms();
    d->run.result = result;
    char err[256];
    if (queue_run_put(d->o.queue, &d->run, err, sizeof err) != QUEUE_OK)
        log_error("delivery: recording run end: %s", err);
    char msg[200];
    snprintf(msg, sizeof msg, "run %s: %llu delivered, %llu failed, %llu retried, %llu superseded",
             result, (unsigned long long)d->run.delivered, (unsigned long long)d->run.failed,
             (unsigned long long)d->run.retried, (unsigned long long)d->run.superseded);
    struct queue_audit a = {.kind = "run", .message = msg, .run_id = d->run.id,
                            .duration_ms = (int32_t)(d->run.end_ms - d->run.start_ms)};
    queue_audit_append(d->o.queue, &a, 1, err, sizeof err);
    /* The one info line per run: its summary. */
    log_info("delivery: run %llu (%s) ended: %s in %.1f s", (unsigned long long)d->run.id, d->run_trigger, msg,
             (double)(d->run.end_ms - d->run.start_ms) / 1000.0);
    atomic_store(&d->m_last_end, d->run.end_ms);
    atomic_store(&d->m_last_ok, strcmp(result, "ok") == 0);
    d->run_active = 0;
}

static void schedule_next(struct delivery *d)
{
    time_t next;
    if (cron_next(&d->cron, time(NULL), &next) == 0) {
        d->next_trigger = next;
        atomic_store(&d->m_next_run, (long long)next);
    } else {
        d->next_trigger = 0;
        atomic_store(&d->m_next_run, 0);
    }
}

/* ---- dispatcher ---- */

/* Records per job. A job holds about one batch of operations (records map
 * to one op or a few, so batch_size records is a fair cut) — times k when a
 * backlog waits: a job costs two commits (the claim; the outcomes with their
 * audit), each with its fsync, whatever its size. k is chosen so that the
 * waiting records still make at
 * least four jobs per worker (the last jobs of a run come out small, so the
 * workers finish together), at most JOB_BATCHES_MAX batches: the outcomes
 * of a job are committed, and shown, only when all of its batches are done. */
#define JOB_BATCHES_MAX 8
#define JOBS_AHEAD 1   /* jobs kept ready beyond the idle workers */
static size_t job_records(const struct delivery *d)
{
    size_t per_batch = d->o.batch_size ? d->o.batch_size : 1;
    size_t workers = d->o.workers ? d->o.workers : 1;
    size_t k = index_waiting(d) / (workers * per_batch * 4);
    if (k < 1) k = 1;
    if (k > JOB_BATCHES_MAX) k = JOB_BATCHES_MAX;
    return k * per_batch;
}

/* Take records for idle workers into jobs (a local list, published by the
 * caller). mu held. Returns how many records were taken
 * and sets *next_due_ms to the earliest due time among waiting entries. */
static size_t dispatch_round(struct delivery *d, struct job **out, int64_t *next_due_ms)
{
    struct keyset *held = &d->held;
    keyset_clear(held);
    int64_t now = now_ms();
    *next_due_ms = 0;
    *out = NULL;
    struct job **tail = out;
    size_t taken_total = 0;
    /* One job more than there are idle workers: a worker that finishes
     * takes it at once, and claims it with its outcomes. */
    unsigned want = d->idle_workers + JOBS_AHEAD;
    unsigned free_slots = want > d->njobs_waiting ? want - d->njobs_waiting : 0;
    if (!free_slots) return 0;
    size_t job_size = job_records(d);
    /* Nothing in flight (the start of a run): one batch a job, so that the
     * first requests go out after one batch is claimed and prepared per
     * worker, not two. */
    if (d->nbusy == 0 && job_size > d->o.batch_size) job_size = d->o.batch_size;

    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    size_t looked = 0;
    for (size_t i = 0; i < d->npend && looked < SCAN_WINDOW; i++) {
        struct pend *p = &d->pend[i];
        if (p->dead) continue;
        looked++;
        if (p->busy) { keys_add(held, p->keys); continue; }
        if (!d->force && p->due_ms > now) {
            if (!*next_due_ms || p->due_ms < *next_due_ms) *next_due_ms = p->due_ms;
            keys_add(held, p->keys);
            continue;
        }
        if (keys_check_add(held, p->keys)) continue;
        if (!free_slots) {
            /* Due but no worker free: it is due now, and nothing later in
             * the index can be due any sooner, so the round is over. Not
             * scanning on matters: rounds run at every job's end, and a
             * backlog of 100k entries scanned each time was most of the
             * dispatcher's CPU. */
            *next_due_ms = now;
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            uint64_t *ns = realloc(seqs, cap * sizeof *ns);
            if (!ns) break;
            seqs = ns;
        }
        seqs[n++] = p->seq;
        p->busy = 1;
        d->nbusy++;
        if (n >= job_size) {
            struct job *j = calloc(1, sizeof *j);
            if (!j) break;
            j->seqs = seqs;
            j->n = n;
            j->run_id = d->run.id;
            *tail = j;
            tail = &j->next;
            d->njobs_out++;
            d->njobs_waiting++;
            taken_total += n;
            seqs = NULL;
            n = cap = 0;
            free_slots--;
        }
    }
    if (n) {
        struct job *j = calloc(1, sizeof *j);
        if (j) {
            j->seqs = seqs;
            j->n = n;
            j->run_id = d->run.id;
            *tail = j;
            d->njobs_out++;
            d->njobs_waiting++;
            taken_total += n;
            seqs = NULL;
        } else {
            for (size_t k = 0; k < n; k++) {
                struct pend *p = index_find(d, seqs[k]);
                if (p) { p->busy = 0; d->nbusy--; }
            }
        }
    }
    free(seqs);
    d->force = 0;
    return taken_total;
}

/* The claim of a job: its records PENDING -> INFLIGHT (records no longer
 * PENDING are skipped, and the worker then leaves them alone). */
static void claim_changes(const struct job *j, struct queue_change *c)
{
    for (size_t i = 0; i < j->n; i++)
        c[i] = (struct queue_change){.seq = j->seqs[i], .from_state = QUEUE_PENDING,
                                     .to_state = QUEUE_INFLIGHT, .next_attempt_ms = -1};
}

/* Claim njobs jobs (first and the ones linked after it) in the queue, in
 * ONE transaction: their records PENDING -> INFLIGHT before they are read
 * and sent (records no longer PENDING are skipped, and the worker then
 * leaves them alone); a crash then finds them INFLIGHT and start-up puts
 * them back. All or nothing; 0 when claimed. One job: an idle worker's
 * (a busy worker claims its next job with the outcomes of its last,
 * run_job); several: the dispatcher's group claim (claim_fresh). mu not
 * held. */
static int claim(struct delivery *d, const struct job *first, size_t njobs)
{
    size_t nrec = 0, k = 0;
    const struct job *j = first;
    for (size_t i = 0; i < njobs; i++, j = j->next) nrec += j->n;
    struct queue_change *c = calloc(nrec, sizeof *c);
    if (!c) {
        log_error("delivery: claiming %zu records: out of memory; tried again in %d ms", nrec,
                  CLAIM_RETRY_MS);
        return -1;
    }
    j = first;
    for (size_t i = 0; i < njobs; i++, j = j->next) {
        claim_changes(j, c + k);
        k += j->n;
    }
    char err[256], who[40] = "";
    int rc = queue_update(d->o.queue, c, nrec, NULL, err, sizeof err) == QUEUE_OK ? 0 : -1;
    if (rc && njobs > 1) snprintf(who, sizeof who, " for %zu workers", njobs);
    if (rc)
        log_error("delivery: claiming %zu records%s (seq %llu...): %s; tried again in %d ms", nrec, who,
                  (unsigned long long)first->seqs[0], err, CLAIM_RETRY_MS);
    free(c);
    return rc;
}

/* A claimed job that will not be run: its records INFLIGHT -> PENDING
 * (start-up would do it otherwise). No-op for an unclaimed job. mu not held. */
static void unclaim(struct delivery *d, const struct job *j)
{
    if (!j->claimed) return;
    struct queue_change *c = calloc(j->n, sizeof *c);
    char err[256];
    for (size_t i = 0; c && i < j->n; i++)
        c[i] = (struct queue_change){.seq = j->seqs[i], .from_state = QUEUE_INFLIGHT,
                                     .to_state = QUEUE_PENDING, .next_attempt_ms = -1};
    if (c && queue_update(d->o.queue, c, j->n, NULL, err, sizeof err) != QUEUE_OK)
        log_error("delivery: returning %zu records to pending: %s", j->n, err);
    free(c);
}

/* A job a worker took but will not run (its claim failed; or delivery is
 * stopping): its records wait until due_ms (0: keep their due time) and
 * their keys are free again. The job is freed. mu held. */
static void index_release(struct delivery *d, const struct job *j, int64_t due_ms)
{
    for (size_t i = 0; i < j->n; i++) {
        struct pend *p = index_find(d, j->seqs[i]);
        if (!p) continue;
        if (p->busy) { p->busy = 0; d->nbusy--; }
        if (p->due_ms < due_ms) p->due_ms = due_ms;
    }
}

static void job_release(struct delivery *d, struct job *j, int64_t due_ms)
{
    index_release(d, j, due_ms);
    d->njobs_out--;
    if (!j->claimed) d->nunclaimed -= j->n;
    free(j->seqs);
    free(j);
}

/* Claim, in ONE commit, the fresh jobs (not yet published) that idle workers
 * would take at once: at the start of a run every worker is idle, and eight
 * claims of their own, each with its fdatasync under LMDB's single writer,
 * took ~50 ms before the last worker could send. Only when two or more
 * such jobs are fresh (for one, the worker's own claim costs the same).
 * Called with mu held; releases it during the commit (the fresh jobs are
 * ours alone: counted out and busy in the index, not yet published). A job
 * whose claim did not commit is released and tried again after
 * CLAIM_RETRY_MS, as a worker's failed claim is. Returns 1 when delivery is
 * stopping: then the fresh jobs are gone (unclaimed again and freed), else
 * 0 with *fresh the jobs to publish (the claimed ones marked so). */
static int claim_fresh(struct delivery *d, struct job **fresh, size_t waiting_before)
{
    size_t want = d->idle_workers > waiting_before ? d->idle_workers - waiting_before : 0;
    size_t njobs = 0;
    for (struct job *j = *fresh; j && njobs < want; j = j->next) njobs++;
    if (njobs >= 2) {
        pthread_mutex_unlock(&d->mu);
        int rc = claim(d, *fresh, njobs);
        pthread_mutex_lock(&d->mu);
        struct job **link = fresh;
        for (size_t i = 0; i < njobs; i++) {
            struct job *x = *link;
            if (rc == 0) {
                x->claimed = 1;
                link = &x->next;
                continue;
            }
            *link = x->next;
            d->njobs_waiting--;
            d->nunclaimed += x->n; /* job_release counts an unclaimed job down */
            job_release(d, x, now_ms() + CLAIM_RETRY_MS);
        }
    }
    if (!d->stopping) return 0;
    /* delivery_stop took the published jobs while we committed: these are
     * ours to undo. */
    for (struct job *j = *fresh, *nx; j; j = nx) {
        nx = j->next;
        pthread_mutex_unlock(&d->mu);
        unclaim(d, j);
        pthread_mutex_lock(&d->mu);
        d->njobs_waiting--;
        if (!j->claimed) d->nunclaimed += j->n; /* job_release counts it down */
        job_release(d, j, 0);
    }
    *fresh = NULL;
    return 1;
}

static void *dispatcher_main(void *arg)
{
    struct delivery *d = arg;
    pthread_setname_np(pthread_self(), "mlc-dispatch");
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        atomic_store(&d->heartbeat_ms, now_ms());
        int64_t now = now_ms();
        if (!d->continuous && !d->run_active && d->next_trigger && now / 1000 >= d->next_trigger) {
            run_begin(d, "schedule");
            schedule_next(d);
        }
        /* Between scheduled runs nothing is sent, so the index is not
         * brought up to date at every commit of an ingest (a wake-up and two
         * queue reads per group commit, ~2 % of the ingest CPU under load),
         * but at most every IDLE_REFRESH_MS: a run then starts sending at
         * once instead of reading the whole backlog first (~1 us a record:
         * 20 ms for 20,000, a second for a million). */
        if (d->continuous || d->run_active || now - d->last_idle_refresh_ms >= IDLE_REFRESH_MS) {
            if (!d->continuous && !d->run_active) d->last_idle_refresh_ms = now;
            index_refresh(d);
            now = now_ms();
        }
        if (d->ndead > d->npend / 2 && d->ndead > 1024) index_compact(d);
        int64_t next_due = 0;
        size_t taken = 0;
        /* Nothing is sent while the store refuses writes (queue_failed: an
         * fsync failed; a restart is needed): no claim could be recorded. */
        int may_send = (d->continuous || d->run_active) && !queue_failed(d->o.queue);
        if (may_send) {
            struct job *fresh = NULL;
            size_t waiting_before = d->njobs_waiting;
            taken = dispatch_round(d, &fresh, &next_due);
            if (taken) {
                if (!d->run_active) run_begin(d, "continuous");
                for (struct job *j = fresh; j; j = j->next) j->run_id = d->run.id;
                d->last_work_ms = now;
                /* Jobs that idle workers take at once are claimed here, all
                 * in one commit (claim_fresh); the others are published
                 * unclaimed: the worker that takes one claims it in the same
                 * write transaction as the outcomes of the job it finishes
                 * (run_job). The LMDB writer was the bottleneck of delivery
                 * — ~70 % busy, three quarters of that in the commits'
                 * fdatasync — and this halves the commits. */
                if (claim_fresh(d, &fresh, waiting_before)) continue; /* stopping */
                for (struct job *j = fresh, *next; j; j = next) {
                    next = j->next;
                    j->next = NULL;
                    if (!j->claimed) d->nunclaimed += j->n;
                    if (d->jobs_tail) d->jobs_tail->next = j; else d->jobs = j;
                    d->jobs_tail = j;
                    pthread_cond_signal(&d->cv_work);
                }
            }
        }
        /* End of a run: nothing in flight and nothing more to do. */
        if (d->run_active && !taken && d->nbusy == 0) {
            size_t waiting = index_waiting(d);
            if (!d->continuous) {
                /* A scheduled run drains the queue: it waits for back-offs
                 * that end before its deadline, and stops at the deadline. */
                if (now >= d->run_deadline_ms) run_end(d, "stopped");
                else if (!waiting) run_end(d, d->run.failed ? "partial" : "ok");
                else if (!next_due || next_due > d->run_deadline_ms) run_end(d, "partial");
            } else if (now - d->last_work_ms >= CONTINUOUS_IDLE_END_MS) {
                run_end(d, d->run.failed ? "partial" : "ok");
            }
        }
        if (d->o.retention_ms && now - d->last_prune_ms > PRUNE_EVERY_MS) {
            d->last_prune_ms = now;
            pthread_mutex_unlock(&d->mu);
            size_t nrec = 0, naud = 0;
            char err[256];
            if (queue_prune(d->o.queue, now - d->o.retention_ms, now - d->o.audit_retention_ms, &nrec,
                            &naud, err, sizeof err) != QUEUE_OK)
                log_error("delivery: retention: %s", err);
            else if (nrec || naud)
                log_info("delivery: retention removed %zu records and %zu audit entries", nrec, naud);
            pthread_mutex_lock(&d->mu);
        }
        if (d->notified || d->force) { d->notified = 0; continue; }
        long wait = POLL_MS;
        if (next_due && next_due - now < wait) wait = next_due - now > 5 ? (long)(next_due - now) : 5;
        struct timespec ts;
        abstime_in(&ts, wait);
        pthread_cond_timedwait(&d->cv_disp, &d->mu, &ts);
    }
    if (d->run_active) run_end(d, "stopped");
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- worker: one job ---- */

/* Link store over the queue for one record: reads go to the queue, writes
 * are kept and committed with the record's outcome (delivered only). */
struct rec_links {
    struct queue *q;
    struct queue_view **view;   /* the worker's (view_open) */
    char keys[8][80];
    char vals[8][160];
    size_t n;
};

static int links_get(void *ud, const char *party, const char *number, struct mapping_link_rec *rec)
{
    struct rec_links *l = ud;
    char key[96];
    UTIL_CONCAT(key, sizeof key, party, ":", number);
    const char *val = NULL;
    char buf[QUEUE_LINK_VALUE_MAX + 1], err[200];
    for (size_t i = l->n; i-- > 0;)
        if (strcmp(l->keys[i], key) == 0) { val = l->vals[i]; break; }
    if (!val) {
        int rc = view_open(l->q, l->view, err, sizeof err);
        if (rc == QUEUE_OK)
            rc = view_status(l->view, queue_view_link_get(*l->view, key, buf, sizeof buf, err, sizeof err));
        if (rc == QUEUE_ERR_NOTFOUND) return 0;
        if (rc != QUEUE_OK) return -1;
        val = buf;
    }
    /* value: "<other>\t<exists>\t<merged>" */
    memset(rec, 0, sizeof *rec);
    const char *t1 = strchr(val, '\t');
    if (!t1) return 0;
    size_t ol = (size_t)(t1 - val) < sizeof rec->other ? (size_t)(t1 - val) : sizeof rec->other - 1;
    memcpy(rec->other, val, ol);
    rec->other[ol] = '\0';
    rec->exists = t1[1] == '1';
    const char *t2 = strchr(t1 + 1, '\t');
    rec->merged = t2 && t2[1] == '1';
    return 1;
}

static int links_put(void *ud, const char *party, const char *number, const struct mapping_link_rec *rec)
{
    struct rec_links *l = ud;
    if (l->n == sizeof l->keys / sizeof l->keys[0]) return -1;
    UTIL_CONCAT(l->keys[l->n], sizeof l->keys[0], party, ":", number);
    UTIL_CONCAT(l->vals[l->n], sizeof l->vals[0], rec->other, rec->exists ? "\t1" : "\t0",
                rec->merged ? "\t1" : "\t0");
    l->n++;
    return 0;
}

/* Lookups: resolved through d365's process-wide cache during mapping. */
struct rec_lookups {
    struct queue_view **view;   /* ended before a lookup: it may go to Dataverse */
    struct d365_client *client;
    int failed;      /* a lookup failed permanently / not found */
    int retry;       /* a lookup must be retried */
    char why[400];
};

static int lookups_get(void *ud, const char *id, char *guid, size_t guidlen)
{
    struct rec_lookups *l = ud;
    /* id: "<set>:<column>=<value>" */
    char set[64], col[64];
    const char *c1 = strchr(id, ':'), *eq = c1 ? strchr(c1, '=') : NULL;
    if (!c1 || !eq || (size_t)(c1 - id) >= sizeof set || (size_t)(eq - c1 - 1) >= sizeof col) {
        l->failed = 1;
        snprintf(l->why, sizeof l->why, "bad lookup id '%s'", id);
        return MAPPING_LOOKUP_MISS;
    }
    snprintf(set, sizeof set, "%.*s", (int)(c1 - id), id);
    snprintf(col, sizeof col, "%.*s", (int)(eq - c1 - 1), c1 + 1);
    char out[37], err[300];
    view_close(l->view);
    enum d365_lookup r = d365_lookup_id(l->client, set, col, eq + 1, out, err, sizeof err);
    if (r == D365_LOOKUP_FOUND) {
        snprintf(guid, guidlen, "%s", out);
        return MAPPING_LOOKUP_HIT;
    }
    if (r == D365_LOOKUP_RETRY) l->retry = 1;
    else l->failed = 1;
    snprintf(l->why, sizeof l->why, "lookup %s: %s", id, err[0] ? err : "not found in Dataverse");
    return MAPPING_LOOKUP_MISS;
}

enum rec_result { RR_NONE = 0, RR_DELIVERED, RR_SUPERSEDED, RR_IGNORED, RR_RETRY, RR_FAILED };

struct rec_work {
    struct queue_record *r;
    struct mapping_ops ops;
    size_t op_first, op_count;    /* range in the job's d365 op array */
    struct rec_links links;
    int result;
    double retry_after;
    int bind_missing;
    char error[ERRTEXT];
    char superseded_by[64];
};

struct parse_ctx {
    struct delivery *d;
    struct rec_work *w;
    struct rec_lookups *lk;
    int done;
};

/* Is record r older than (or the same as) what was last applied for key? */
static int superseded(const struct queue_record *r, const struct queue_keystate *ks)
{
    if (ks->seq == r->seq) return 0;
    if (strcmp(ks->mandt, r->mandt) == 0 && strcmp(ks->sndprn, r->sndprn) == 0) {
        /* One sending system: DOCNUM is SAP's order. DOCNUMs are zero-padded
         * to 16 digits; compare by length first to be safe. */
        size_t a = strlen(r->docnum), b = strlen(ks->docnum);
        return a != b ? a < b : strcmp(r->docnum, ks->docnum) <= 0;
    }
    /* Across systems: CREDAT+CRETIM, then DOCNUM. */
    int c = strcmp(r->credat, ks->credat);
    if (!c) c = strcmp(r->cretim, ks->cretim);
    if (!c) c = strcmp(r->docnum, ks->docnum);
    return c <= 0;
}

static int map_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    struct parse_ctx *c = ud;
    if (c->done++) return 0; /* one IDoc per record */
    struct mapping_links ml = {&c->w->links, links_get, links_put};
    struct mapping_lookups mk = {c->lk, lookups_get, NULL};
    int rc = mapping_apply(mapref_get(c->d->o.mapping), doc, &ml, &mk, &c->w->ops, err, errlen);
    if (rc < 0) return 1;
    if (rc == 1) c->w->result = RR_IGNORED;
    return 0;
}

/* Map the record's IDoc: from its stored model when it has a usable one
 * (the common case: no XML parse), else by parsing its XML. Returns an
 * idoc_status, as idoc_parse does. */
static int model_map(struct delivery *d, struct rec_work *w, struct parse_ctx *pc, char *err,
                     size_t errlen)
{
    struct queue_record *r = w->r;
    if (r->model) {
        struct idoc *doc;
        char why[160];
        int rc = idoc_unpack(r->model, r->model_len, &doc, why, sizeof why);
        if (rc == 0) {
            int st = map_cb(doc, pc, err, errlen) ? IDOC_ERR_CALLBACK : IDOC_OK;
            idoc_unpack_free(doc);
            return st;
        }
        if (rc == -2) {
            snprintf(err, errlen, "out of memory");
            return IDOC_ERR_NOMEM;
        }
        /* Damaged or of another version: the XML is the record; read it. */
        log_warn("delivery: seq=%llu docnum=%s: stored model unusable (%s); parsing the XML",
                 (unsigned long long)r->seq, r->docnum, why);
        struct queue_record *x = NULL;
        /* Through the worker's view: a second read transaction on this
         * thread beside it could not let a remap through. */
        int rs = view_open(d->o.queue, w->links.view, err, errlen);
        if (rs == QUEUE_OK)
            rs = view_status(w->links.view,
                             queue_view_get(*w->links.view, r->seq, QUEUE_GET_XML, &x, err, errlen));
        if (rs != QUEUE_OK)
            return IDOC_ERR_NOMEM; /* read failure: the caller retries the record */
        int st = idoc_parse(x->xml, x->xml_len, NULL, map_cb, pc, err, errlen);
        queue_record_free(x);
        return st;
    }
    return idoc_parse(r->xml, r->xml_len, NULL, map_cb, pc, err, errlen);
}

/* Prepare one record: superseded? mapped ops? */
static void prepare(struct delivery *d, struct worker *wk, struct rec_work *w)
{
    struct queue_record *r = w->r;
    const char *k = r->keys ? r->keys : "";
    char key[256];
    size_t kl = strcspn(k, " ");
    snprintf(key, sizeof key, "%.*s", (int)kl, k);
    struct queue_keystate ks;
    char err[ERRTEXT];
    if (kl && view_open(d->o.queue, &wk->view, err, sizeof err) == QUEUE_OK &&
        view_status(&wk->view, queue_view_keystate_get(wk->view, key, &ks, err, sizeof err)) == QUEUE_OK &&
        superseded(r, &ks)) {
        w->result = RR_SUPERSEDED;
        snprintf(w->superseded_by, sizeof w->superseded_by, "%s", ks.docnum);
        return;
    }
    w->links.q = d->o.queue;
    w->links.view = &wk->view;
    struct rec_lookups lk = {&wk->view, wk->client, 0, 0, ""};
    struct parse_ctx pc = {d, w, &lk, 0};
    int st = model_map(d, w, &pc, err, sizeof err);
    if (lk.retry) {
        w->result = RR_RETRY;
        snprintf(w->error, sizeof w->error, "%s", lk.why);
        mapping_ops_clear(&w->ops);
        return;
    }
    if (lk.failed) {
        w->result = RR_FAILED;
        snprintf(w->error, sizeof w->error, "%s", lk.why);
        mapping_ops_clear(&w->ops);
        return;
    }
    if (st == IDOC_ERR_NOMEM) {
        /* Not the record's fault (memory, or its XML could not be read):
         * try it again later. */
        w->result = RR_RETRY;
        snprintf(w->error, sizeof w->error, "mapping: %.1400s", err);
        mapping_ops_clear(&w->ops);
        return;
    }
    if (st != IDOC_OK) {
        w->result = RR_FAILED;
        snprintf(w->error, sizeof w->error, "mapping: %.1400s", err);
        mapping_ops_clear(&w->ops);
        return;
    }
    if (w->result == RR_IGNORED) return;
    /* Lookup ops would only appear for a miss, which lookups_get turned into
     * a record outcome above; drop any that remain. */
    size_t wpos = 0;
    for (size_t i = 0; i < w->ops.n; i++) {
        if (w->ops.v[i].kind == MAPPING_OP_LOOKUP) continue;
        if (wpos != i) {
            struct mapping_op tmp = w->ops.v[wpos];
            w->ops.v[wpos] = w->ops.v[i];
            w->ops.v[i] = tmp;
        }
        wpos++;
    }
    /* (ops past wpos are lookups; they stay owned by w->ops and are freed
     * with it, only not sent) */
    w->op_count = wpos;
    if (!wpos) w->result = RR_DELIVERED; /* nothing to write */
}

static const char *op_verb_path(const struct d365_op *op, char *buf, size_t len)
{
    snprintf(buf, len, "%s %s", op->method, op->path);
    return buf;
}

/* Fold op outcomes into the record's result. */
static void conclude(struct delivery *d, struct rec_work *w, struct d365_op *ops)
{
    if (w->result != RR_NONE) return;
    int any_fail = 0, any_retry = 0;
    int bind_only = 1;
    double ra = 0;
    for (size_t i = 0; i < w->op_count; i++) {
        struct d365_op *op = &ops[w->op_first + i];
        if (op->outcome == D365_DONE) continue;
        char vp[600];
        if (op->outcome == D365_FAILED && !any_fail) {
            any_fail = 1;
            snprintf(w->error, sizeof w->error, "%.400s: %d %.63s: %.1000s", op_verb_path(op, vp, sizeof vp),
                     op->status, op->code, op->message);
        } else if (op->outcome != D365_FAILED) {
            if (!any_retry && !any_fail)
                snprintf(w->error, sizeof w->error, "%.400s: %d %.63s: %.1000s",
                         op_verb_path(op, vp, sizeof vp), op->status, op->code, op->message);
            any_retry = 1;
            if (strcmp(op->code, D365_CODE_KEY_NOT_FOUND) != 0) bind_only = 0;
            if (op->retry_after > ra) ra = op->retry_after;
        }
    }
    if (any_fail) { w->result = RR_FAILED; return; }
    if (any_retry) {
        w->retry_after = ra;
        w->bind_missing = bind_only;
        /* A bind whose target never appears is failed after bind_retry_ms,
         * with Dataverse's own message; it can be replayed. */
        if (bind_only && now_ms() - w->r->received_ms > d->o.bind_retry_ms) w->result = RR_FAILED;
        else w->result = RR_RETRY;
        return;
    }
    w->result = RR_DELIVERED;
}

/* Run one claimed job. Returns the next job for this worker when it took
 * one (popped from d->jobs, claimed with this job's outcomes when that
 * commit went through: next->claimed), else NULL. */
static struct job *run_job(struct worker *wk, struct job *j)
{
    struct delivery *d = wk->d;
    if (j->n > wk->wcap) {
        struct rec_work *nw = realloc(wk->w, j->n * sizeof *nw);
        if (!nw) {
            /* Nothing sent: the records go back to pending and their keys
             * are free again, to be tried after a pause. */
            log_error("delivery: job of %zu records: out of memory; tried again in %d ms", j->n,
                      CLAIM_RETRY_MS);
            unclaim(d, j);
            pthread_mutex_lock(&d->mu);
            index_release(d, j, now_ms() + CLAIM_RETRY_MS);
            pthread_cond_signal(&d->cv_disp);
            pthread_mutex_unlock(&d->mu);
            return NULL;
        }
        wk->w = nw;
        wk->wcap = j->n;
    }
    /* A token for the sends below: the first worker to find none fetches it
     * now, while the others prepare their jobs (at the start of a run the
     * fetch otherwise came at the first send, ~18 ms late under the load
     * of eight workers preparing). Instant when the token is fresh. */
    d365_client_prefetch_token(wk->client);
    struct rec_work *w = wk->w;
    /* Reset only what is read before it is written: the text buffers are
     * ~3.5 KiB a record, and zeroing them all cost 3.5 % of delivery CPU. */
    for (size_t i = 0; i < j->n; i++) {
        w[i].r = NULL;
        w[i].op_first = w[i].op_count = 0;
        w[i].links.q = NULL;
        w[i].links.n = 0;
        w[i].result = RR_NONE;
        w[i].retry_after = 0;
        w[i].bind_missing = 0;
        w[i].error[0] = w[i].superseded_by[0] = '\0';
    }
    char err[ERRTEXT];
    size_t nops = 0;
    for (size_t i = 0; i < j->n; i++) {
        mapping_ops_init(&w[i].ops);
        /* The packed model when ingest stored one (no XML parse), else the XML. */
        int rs = view_open(d->o.queue, &wk->view, err, sizeof err);
        if (rs == QUEUE_OK)
            rs = view_status(&wk->view, queue_view_get(wk->view, j->seqs[i], QUEUE_GET_MODEL, &w[i].r, err,
                                                       sizeof err));
        if (rs != QUEUE_OK) {
            log_error("delivery: reading seq %llu: %s", (unsigned long long)j->seqs[i], err);
            w[i].result = RR_RETRY;
            continue;
        }
        if (w[i].r->state != QUEUE_INFLIGHT) {
            /* Changed behind our back (replayed, or claim lost): leave it. */
            w[i].result = RR_NONE;
            queue_record_free(w[i].r);
            w[i].r = NULL;
            continue;
        }
        prepare(d, wk, &w[i]);
        nops += w[i].op_count;
    }
    view_close(&wk->view); /* before anything is sent */

    /* Build the d365 op array: records in order, change-set numbers made
     * unique across the job; DELETEs go outside change sets, because a 404
     * (already gone, which counts as done) would roll a change set back. */
    /* The worker's op array, kept across jobs like w: an op is ~1.2 KiB
     * (mostly its error text buffers), so a job's array is ~250 KiB, which
     * malloc took fresh from the kernel for every job (half of delivery's
     * page faults). Not zeroed: each op is set whole below (the text
     * buffers empty). */
    if (nops > wk->opscap) {
        struct d365_op *no = realloc(wk->ops, nops * sizeof *no);
        if (no) {
            wk->ops = no;
            wk->opscap = nops;
        }
    }
    struct d365_op *ops = nops <= wk->opscap ? wk->ops : NULL;
    for (size_t i = 0; !ops && i < j->n; i++) {
        /* No memory for the requests: nothing is sent, the records are
         * tried again after a back-off. */
        if (!w[i].r || w[i].result != RR_NONE || !w[i].op_count) continue;
        w[i].result = RR_RETRY;
        w[i].op_count = 0; /* nothing sent: no attempt to audit, no op to read */
        util_copy(w[i].error, sizeof w[i].error, "out of memory for the job's requests; tried again");
    }
    unsigned cs_base = 0;
    size_t k = 0;
    for (size_t i = 0; ops && i < j->n; i++) {
        if (!w[i].r || w[i].result != RR_NONE) continue;
        w[i].op_first = k;
        unsigned maxcs = 0;
        for (size_t m = 0; m < w[i].op_count; m++) {
            struct mapping_op *mo = &w[i].ops.v[m];
            struct d365_op *o = &ops[k++];
            memset(o, 0, offsetof(struct d365_op, code));
            o->code[0] = o->message[0] = '\0';
            o->method = mo->method;
            o->path = mo->path;
            o->body = mo->body;
            int cs = strcmp(mo->method, "DELETE") == 0 ? 0 : mo->changeset;
            o->changeset = cs ? cs_base + (unsigned)cs : 0;
            if ((unsigned)cs > maxcs) maxcs = (unsigned)cs;
            o->user = mo;
        }
        cs_base += maxcs;
    }
    /* A change set must be contiguous: the mapping emits them so, and
     * pulling DELETEs out of one keeps the rest contiguous only if DELETEs
     * come last in it; if not, drop that change set's atomicity. */
    for (size_t a = 0; ops && a < k; a++) {
        if (!ops[a].changeset) continue;
        for (size_t b = a + 1; b < k; b++) {
            if (ops[b].changeset == ops[a].changeset && ops[b - 1].changeset != ops[a].changeset) {
                for (size_t c = 0; c < k; c++)
                    if (ops[c].changeset == ops[a].changeset) ops[c].changeset = 0;
                break;
            }
        }
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* Send in batches of at most batch_size ops, never splitting a change
     * set (the mapping keeps one IDoc's change set well under 1,000). */
    for (size_t a = 0; ops && a < k;) {
        size_t b = a + d->o.batch_size < k ? a + d->o.batch_size : k;
        while (b < k && b > a + 1 && ops[b].changeset && ops[b].changeset == ops[b - 1].changeset) b--;
        if (b - a == 1) d365_send_one(wk->client, &ops[a]);
        else if (d365_batch_send(wk->client, &ops[a], b - a, err, sizeof err) != 0) {
            /* Cannot form a batch (should not happen): send one by one. */
            log_warn("delivery: batch refused (%s); sending %zu ops singly", err, b - a);
            for (size_t c = a; c < b; c++) d365_send_one(wk->client, &ops[c]);
        } else {
            /* The batch as a whole was refused with a permanent 4xx: that
             * says nothing about each record, so each op gets its own
             * request and its own verdict. */
            for (size_t c = a; c < b; c++)
                if (ops[c].batch_level && ops[c].outcome == D365_FAILED) d365_send_one(wk->client, &ops[c]);
        }
        a = b;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int32_t dur = (int32_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);

    /* Outcomes -> queue changes + audit entries, each in one transaction. */
    struct queue_change *ch = calloc(j->n, sizeof *ch);
    size_t nwarn = 0;
    for (size_t i = 0; i < j->n; i++)
        for (size_t m = 0; m < w[i].ops.n; m++) nwarn += w[i].ops.v[m].warning != NULL;
    struct queue_audit *au = malloc((k + 2 * j->n + nwarn + 1) * sizeof *au); /* set whole when used */
    size_t nch = 0, nau = 0;
    uint64_t delivered = 0, failed = 0, retried = 0, superseded_n = 0, ignored = 0;
    int64_t now = now_ms();
    char (*notes)[200] = malloc(j->n * sizeof *notes); /* written before read */
    for (size_t i = 0; ch && au && notes && i < j->n; i++) {
        struct rec_work *x = &w[i];
        if (!x->r) continue;
        if (x->result == RR_NONE) conclude(d, x, ops);
        const char *key1 = x->r->keys ? x->r->keys : "";
        for (size_t m = 0; m < x->op_count && x->result != RR_SUPERSEDED; m++) {
            struct d365_op *o = &ops[x->op_first + m];
            struct mapping_op *mo = o->user;
            size_t opl = strlen(o->method) + strlen(o->path) + 2;
            char *opdesc = malloc(opl);
            if (opdesc) UTIL_CONCAT(opdesc, opl, o->method, " ", o->path);
            au[nau++] = (struct queue_audit){.time_ms = now, .kind = "attempt", .seq = x->r->seq,
                                             .docnum = x->r->docnum, .key = mo && mo->key ? mo->key : key1,
                                             .operation = opdesc, .http_status = o->status,
                                             .error_code = o->code[0] ? o->code : NULL,
                                             .message = o->message[0] ? o->message : NULL,
                                             .duration_ms = dur, .run_id = j->run_id};
            if (o->outcome == D365_DONE && mo && mo->entity) metrics_record_delivered(mo->entity, 1);
        }
        struct queue_change *c = &ch[nch++];
        c->seq = x->r->seq;
        c->from_state = QUEUE_INFLIGHT;
        c->next_attempt_ms = -1;
        switch (x->result) {
        case RR_DELIVERED:
        case RR_IGNORED:
            c->to_state = x->result == RR_IGNORED ? QUEUE_IGNORED : QUEUE_DELIVERED;
            c->error = "";
            c->add_attempts = 1;
            c->applied_keys = x->r->keys;
            c->links = NULL;
            if (x->links.n) {
                /* links stored with the delivered outcome only */
                struct queue_link *ql = calloc(x->links.n, sizeof *ql);
                if (ql) {
                    for (size_t m = 0; m < x->links.n; m++) ql[m] = (struct queue_link){x->links.keys[m], x->links.vals[m]};
                    c->links = ql;
                    c->nlinks = x->links.n;
                }
            }
            if (x->result == RR_DELIVERED) delivered++; else ignored++;
            break;
        case RR_SUPERSEDED:
            c->to_state = QUEUE_DELIVERED;
            snprintf(notes[i], sizeof notes[i], "superseded: DOCNUM %s was already applied for this key",
                     x->superseded_by);
            c->error = notes[i];
            au[nau++] = (struct queue_audit){.time_ms = now, .kind = "superseded", .seq = x->r->seq,
                                             .docnum = x->r->docnum, .key = key1, .message = notes[i],
                                             .run_id = j->run_id};
            superseded_n++;
            break;
        case RR_FAILED:
            c->to_state = QUEUE_FAILED;
            c->add_attempts = 1;
            c->error = x->error;
            failed++;
            metrics_record_failed(1);
            log_warn("delivery: failed seq=%llu docnum=%s key=%s: %s", (unsigned long long)x->r->seq,
                     x->r->docnum, key1, x->error);
            if (!x->op_count) {
                au[nau++] = (struct queue_audit){.time_ms = now, .kind = "attempt", .seq = x->r->seq,
                                                 .docnum = x->r->docnum, .key = key1, .message = x->error,
                                                 .run_id = j->run_id};
            }
            break;
        default: { /* RR_RETRY */
            c->to_state = QUEUE_PENDING;
            c->add_attempts = 1;
            c->error = x->error[0] ? x->error : "retry";
            double delay = d365_backoff_delay(x->r->attempts + 1, d->o.retry_base_s, d->o.retry_cap_s,
                                              x->retry_after);
            c->next_attempt_ms = now + (int64_t)(delay * 1000);
            retried++;
            metrics_delivery_retry(1);
            break;
        }
        }
        /* Warnings from the mapping (e.g. two accounts exist for a linked
         * vendor/customer) go to the audit log. */
        for (size_t m = 0; m < x->ops.n; m++) {
            if (!x->ops.v[m].warning) continue;
            au[nau++] =
                (struct queue_audit){.time_ms = now, .kind = "warning", .seq = x->r->seq,
                                     .docnum = x->r->docnum, .key = x->ops.v[m].key,
                                     .message = x->ops.v[m].warning, .run_id = j->run_id};
            log_warn("delivery: seq=%llu docnum=%s: %s", (unsigned long long)x->r->seq, x->r->docnum,
                     x->ops.v[m].warning);
        }
    }
    /* Outcomes, keystate, links and the audit of the job: one transaction,
     * one fsync. If it cannot be committed (disk full, I/O error), the job
     * is undone as far as the queue can: its records go back to PENDING
     * with a back-off (a smaller transaction: no keystate or links), so
     * this process sends them again instead of leaving them INFLIGHT until
     * the next start-up. Sending again is harmless (upserts by key). If even
     * that fails they stay INFLIGHT, and start-up puts them back. */
    /* The next job is taken now and claimed in this same transaction: one
     * commit, one fdatasync under LMDB's single writer, where there were
     * two (the claim used to be a commit of its own). If the commit fails,
     * the next job stays unclaimed and worker_main claims it alone. */
    struct job *next = NULL;
    size_t nclaim = 0;
    int claimed_now = 0; /* next was claimed by this commit (not before, by the dispatcher) */
    pthread_mutex_lock(&d->mu);
    if (!d->stopping && d->jobs) {
        next = d->jobs;
        d->jobs = next->next;
        if (!d->jobs) d->jobs_tail = NULL;
        next->next = NULL;
        d->njobs_waiting--;
    }
    pthread_mutex_unlock(&d->mu);
    if (next && !next->claimed && ch && au && notes && (nch || nau)) {
        struct queue_change *nc = realloc(ch, (nch + next->n) * sizeof *nc);
        if (nc) {
            ch = nc;
            claim_changes(next, ch + nch);
            nclaim = next->n;
        }
    }
    int committed = ch != NULL, requeued = 0, audit_dropped = 0;
    int64_t again_ms = now + (int64_t)((d->o.retry_base_s > 1 ? d->o.retry_base_s : 1) * 1000);
    if (ch && (nch || nau) &&
        queue_update_audited(d->o.queue, ch, nch + nclaim, au, au ? nau : 0, &audit_dropped, NULL, err,
                             sizeof err) != QUEUE_OK) {
        committed = 0;
        for (size_t i = 0; i < nch; i++) {
            free((void *)ch[i].links);
            ch[i] = (struct queue_change){.seq = ch[i].seq, .from_state = QUEUE_INFLIGHT,
                                          .to_state = QUEUE_PENDING, .next_attempt_ms = again_ms,
                                          .error = "delivery outcome could not be recorded; sent again"};
        }
        char err2[256];
        requeued = nch && queue_update_audited(d->o.queue, ch, nch, au, au ? nau : 0, &audit_dropped, NULL,
                                               err2, sizeof err2) == QUEUE_OK;
        log_error("delivery: recording outcomes of %zu records (seq %llu...): %s; %s%s", nch,
                  nch ? (unsigned long long)ch[0].seq : 0ULL, err,
                  requeued ? "put back to pending, sent again after a back-off"
                           : "left inflight until the next start-up",
                  nclaim ? "; the next job is claimed on its own" : "");
    } else if (ch && (nch || nau) && nclaim) {
        next->claimed = 1;
        claimed_now = 1;
    } else if (!ch && au && nau && queue_audit_append(d->o.queue, au, nau, err, sizeof err) != QUEUE_OK) {
        log_error("delivery: audit: %s", err);
    }
    if (audit_dropped)
        log_error("delivery: audit of %zu entries not written: the queue is over its quota", nau);
    log_debug("delivery: job of %zu records: %llu delivered, %llu failed, %llu retry, %llu superseded, "
                 "%zu ops in %d ms",
                 j->n, (unsigned long long)delivered, (unsigned long long)failed, (unsigned long long)retried,
                 (unsigned long long)superseded_n, k, dur);

    /* Update the index under the lock. */
    pthread_mutex_lock(&d->mu);
    if (claimed_now) d->nunclaimed -= next->n;
    for (size_t i = 0; i < j->n; i++) {
        struct pend *p = index_find(d, j->seqs[i]);
        if (!p) continue;
        if (p->busy) { p->busy = 0; d->nbusy--; }
        struct rec_work *x = &w[i];
        if (x->r && !committed && requeued) {
            p->due_ms = again_ms;
        } else if (x->r && !committed) {
            if (!p->dead) { p->dead = 1; d->ndead++; }
        } else if (x->r && x->result == RR_RETRY && ch) {
            for (size_t c = 0; c < nch; c++)
                if (ch[c].seq == p->seq) p->due_ms = ch[c].next_attempt_ms;
        } else if (!p->dead) {
            p->dead = 1;
            d->ndead++;
        }
    }
    if (!committed) { /* nothing of it counts yet: all of it comes again */
        retried = delivered + ignored + failed + superseded_n + retried;
        delivered = ignored = failed = superseded_n = 0;
    }
    d->run.delivered += delivered + ignored;
    d->run.ignored += ignored;
    d->run.failed += failed;
    d->run.retried += retried;
    d->run.superseded += superseded_n;
    d->last_work_ms = now_ms();
    pthread_cond_signal(&d->cv_disp);
    pthread_mutex_unlock(&d->mu);

    for (size_t i = 0; i < nau && au; i++) free((char *)au[i].operation);
    for (size_t i = 0; ch && i < nch; i++) free((void *)ch[i].links);
    for (size_t i = 0; i < j->n; i++) {
        mapping_ops_free(&w[i].ops);
        queue_record_free(w[i].r);
    }
    free(notes);
    free(au);
    free(ch);
    return next;
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct delivery *d = wk->d;
    pthread_setname_np(pthread_self(), "mlc-deliver"); /* for top -H, perf, gdb */
    pthread_mutex_lock(&d->mu);
    d->idle_workers++;
    struct job *j = NULL; /* taken by run_job for us: counted busy, not waiting */
    for (;;) {
        if (!j) {
            while (!d->jobs && !d->stopping) pthread_cond_wait(&d->cv_work, &d->mu);
            if (!d->jobs) break; /* stopping and nothing queued */
            if (d->stopping) break;
            j = d->jobs;
            d->jobs = j->next;
            if (!d->jobs) d->jobs_tail = NULL;
            j->next = NULL;
            d->idle_workers--;
            d->njobs_waiting--;
        }
        if (d->stopping) {
            /* A job taken with the last outcomes: not run. Claimed, its
             * records go back to pending (start-up would do it otherwise). */
            pthread_mutex_unlock(&d->mu);
            unclaim(d, j);
            pthread_mutex_lock(&d->mu);
            job_release(d, j, 0);
            j = NULL;
            d->idle_workers++;
            break;
        }
        pthread_mutex_unlock(&d->mu);
        /* An idle worker's job is claimed here, in a commit of its own; a
         * claim that cannot be committed leaves the job unsent: its
         * records wait CLAIM_RETRY_MS, still PENDING. */
        int ok = j->claimed;
        if (!ok && claim(d, j, 1) == 0) {
            ok = 1;
            pthread_mutex_lock(&d->mu);
            j->claimed = 1;
            d->nunclaimed -= j->n;
            pthread_mutex_unlock(&d->mu);
        }
        struct job *next = ok ? run_job(wk, j) : NULL;
        pthread_mutex_lock(&d->mu);
        if (ok) {
            d->njobs_out--;
            free(j->seqs);
            free(j);
        } else {
            job_release(d, j, now_ms() + CLAIM_RETRY_MS);
        }
        j = next;
        if (!j) d->idle_workers++;
    }
    d->idle_workers--;
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- public ---- */

struct delivery *delivery_start(const struct delivery_opts *o, char *err, size_t errlen)
{
    struct delivery *d = calloc(1, sizeof *d);
    if (!d) { snprintf(err, errlen, "out of memory"); return NULL; }
    d->o = *o;
    if (!d->o.workers) d->o.workers = 4;
    if (!d->o.batch_size) d->o.batch_size = D365_BATCH_DEFAULT;
    d->continuous = !o->schedule || strcmp(o->schedule, "continuous") == 0;
    if (!d->continuous && cron_parse(o->schedule, &d->cron, err, errlen) != 0) {
        free(d);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&d->cv_disp, &ca);
    pthread_cond_init(&d->cv_work, &ca);
    pthread_condattr_destroy(&ca);
    d->last_prune_ms = now_ms() - PRUNE_EVERY_MS + 60000; /* first prune a minute after start */
    if (!d->continuous) schedule_next(d);

    d->workers = calloc(d->o.workers, sizeof *d->workers);
    if (!d->workers) { snprintf(err, errlen, "out of memory"); free(d); return NULL; }
    struct d365_client_config cc = {.url = o->dataverse_url, .timeout_ms = o->request_timeout_ms};
    for (unsigned i = 0; i < d->o.workers; i++) {
        d->workers[i].d = d;
        d->workers[i].id = i;
        d->workers[i].client = d365_client_create(&cc, o->auth, o->governor, err, errlen);
        if (!d->workers[i].client) {
            for (unsigned k = 0; k < i; k++) d365_client_destroy(d->workers[k].client);
            free(d->workers);
            free(d);
            return NULL;
        }
    }
    for (unsigned i = 0; i < d->o.workers; i++) {
        pthread_create(&d->workers[i].thread, NULL, worker_main, &d->workers[i]);
        d->nworkers++;
    }
    pthread_create(&d->dispatcher, NULL, dispatcher_main, d);
    if (d->continuous)
        log_info("delivery: %u workers, batches of %u, continuous", d->o.workers, d->o.batch_size);
    else
        log_info("delivery: %u workers, batches of %u, schedule '%s' (next run at unix %lld)", d->o.workers,
                 d->o.batch_size, o->schedule, (long long)d->next_trigger);
    return d;
}

void delivery_notify(struct delivery *d)
{
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->notified = 1;
    pthread_cond_signal(&d->cv_disp);
    pthread_mutex_unlock(&d->mu);
}

int delivery_sync_now(struct delivery *d, char *msg, size_t msglen)
{
    pthread_mutex_lock(&d->mu);
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        snprintf(msg, msglen, "shutting down");
        return -1;
    }
    if (!d->run_active) run_begin(d, "admin");
    /* Everything pending is due now for this round (back-off waits are
     * cut short; the governor still honours any Retry-After window). */
    d->force = 1;
    snprintf(msg, msglen, "run %llu started", (unsigned long long)d->run.id);
    pthread_cond_signal(&d->cv_disp);
    pthread_mutex_unlock(&d->mu);
    return 0;
}

struct runs_ctx {
    cJSON *arr;
    struct queue_run live;   /* the run in progress (id 0: none) */
};

static void add_time(cJSON *o, const char *name, int64_t ms)
{
    if (ms <= 0) { cJSON_AddNullToObject(o, name); return; }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, name, buf);
}

static int runs_cb(const struct queue_run *stored, void *ud)
{
    struct runs_ctx *c = ud;
    /* The stored row of a running run is written at its start and end;
     * its counts so far live in memory. */
    const struct queue_run *r = c->live.id && c->live.id == stored->id ? &c->live : stored;
    cJSON *o = cJSON_CreateObject();
    if (!o) return 1;
    cJSON_AddNumberToObject(o, "id", (double)r->id);
    add_time(o, "start", r->start_ms);
    add_time(o, "end", r->end_ms);
    /* Milliseconds from start to end (to now while running): "start" and
     * "end" are whole seconds, too coarse for a run of a few seconds. */
    int64_t until = r->end_ms ? r->end_ms : (c->live.id == r->id ? now_ms() : r->start_ms);
    cJSON_AddNumberToObject(o, "duration_ms", (double)(until > r->start_ms ? until - r->start_ms : 0));
    cJSON_AddStringToObject(o, "trigger", r->trigger ? r->trigger : "");
    cJSON_AddStringToObject(o, "result", r->result ? r->result : "");
    cJSON_AddNumberToObject(o, "delivered", (double)r->delivered);
    cJSON_AddNumberToObject(o, "failed", (double)r->failed);
    cJSON_AddNumberToObject(o, "retried", (double)r->retried);
    cJSON_AddNumberToObject(o, "superseded", (double)r->superseded);
    cJSON_AddNumberToObject(o, "ignored", (double)r->ignored);
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

cJSON *delivery_runs_json(struct delivery *d, size_t limit)
{
    struct runs_ctx c = {cJSON_CreateArray(), {0}};
    pthread_mutex_lock(&d->mu);
    if (d->run_active) c.live = d->run;
    pthread_mutex_unlock(&d->mu);
    char err[256];
    if (c.arr && queue_runs_list(d->o.queue, limit, runs_cb, &c, err, sizeof err) != QUEUE_OK) {
        cJSON_Delete(c.arr);
        return NULL;
    }
    return c.arr;
}

int64_t delivery_heartbeat_age_ms(struct delivery *d)
{
    int64_t hb = atomic_load(&d->heartbeat_ms);
    return hb ? now_ms() - hb : 0;
}

size_t delivery_metrics(struct delivery *d, char *buf, size_t len)
{
    if (!d) return 0;
    int n = snprintf(buf, len,
                     "# HELP mlc_sync_next_run_timestamp_seconds Next scheduled sync run (0: continuous)\n"
                     "# TYPE mlc_sync_next_run_timestamp_seconds gauge\nmlc_sync_next_run_timestamp_seconds %lld\n"
                     "# HELP mlc_sync_last_run_start_timestamp_seconds Start of the last sync run\n"
                     "# TYPE mlc_sync_last_run_start_timestamp_seconds gauge\n"
                     "mlc_sync_last_run_start_timestamp_seconds %.3f\n"
                     "# HELP mlc_sync_last_run_end_timestamp_seconds End of the last sync run\n"
                     "# TYPE mlc_sync_last_run_end_timestamp_seconds gauge\n"
                     "mlc_sync_last_run_end_timestamp_seconds %.3f\n"
                     "# HELP mlc_sync_last_run_success 1 when the last run delivered everything it took\n"
                     "# TYPE mlc_sync_last_run_success gauge\nmlc_sync_last_run_success %d\n",
                     (long long)atomic_load(&d->m_next_run), (double)atomic_load(&d->m_last_start) / 1000.0,
                     (double)atomic_load(&d->m_last_end) / 1000.0, atomic_load(&d->m_last_ok));
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

void delivery_stop(struct delivery *d, long grace_ms)
{
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    /* Jobs not yet taken by a worker are dropped (below, after the threads
     * are joined: those the dispatcher claimed go back to PENDING). */
    struct job *left = d->jobs;
    d->jobs = d->jobs_tail = NULL;
    pthread_cond_broadcast(&d->cv_work);
    pthread_cond_broadcast(&d->cv_disp);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->dispatcher, NULL);

    /* Workers finish the job in hand; if one is stuck in a long Retry-After
     * wait past the grace period, cut the governor's waits short (those ops
     * come back as RETRY and their records return to pending). */
    struct timespec ts;
    abstime_in(&ts, grace_ms);
    for (unsigned i = 0; i < d->nworkers; i++) {
        if (pthread_timedjoin_np(d->workers[i].thread, NULL, &ts) == ETIMEDOUT) {
            d365_governor_shutdown(d->o.governor);
            pthread_join(d->workers[i].thread, NULL);
        }
    }
    for (struct job *j = left; j;) { /* claimed by the dispatcher, or not (no-op) */
        struct job *nx = j->next;
        unclaim(d, j);
        free(j->seqs);
        free(j);
        j = nx;
    }
    for (unsigned i = 0; i < d->nworkers; i++) {
        d365_client_destroy(d->workers[i].client);
        free(d->workers[i].w);
        free(d->workers[i].ops);
    }
    for (size_t i = 0; i < d->npend; i++) free(d->pend[i].keys);
    free(d->pend);
    free(d->held.k);
    free(d->held.len);
    free(d->workers);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv_disp);
    pthread_cond_destroy(&d->cv_work);
    log_info("delivery: stopped");
    free(d);
}
