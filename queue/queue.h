/*
 * queue — the durable IDoc store (LMDB).
 *
 * Every IDoc SAP sends is a record: its control fields, business key(s),
 * original XML and a delivery state. Records are written by one committer
 * thread that gathers every batch submitted since its last commit into ONE
 * write transaction (group commit) and fsyncs once, so the cost of a durable
 * commit is shared by all concurrent requests. A batch (one HTTP request) is
 * all-or-nothing: if it cannot be stored completely, none of it is.
 *
 * The dedupe key MANDT + SNDPRN + DOCNUM is checked and written in the same
 * transaction as the record, so a resend is recognised even when the original
 * is in the same group commit.
 *
 * Other processes (`ml-connector queue ...`) may open the same store while the
 * server runs: LMDB's lock file coordinates them.
 *
 * Threads: all functions may be called from any thread, except that a batch
 * must not be touched by the submitter between queue_submit() and its done
 * callback. queue_open/queue_close belong to the main thread. LMDB forbids
 * opening the same store twice in one process and using a handle across
 * fork(): open once per process, after forking.
 *
 * On-disk layout (LMDB, plain memcmp keys, so mdb_dump/mdb_stat work; all
 * integers big-endian):
 *   rec      seq(8)                        -> record header (version byte,
 *                                             state, attempts, times, xml_len,
 *                                             length-prefixed strings)
 *   doc      seq(8)                        -> the IDoc XML, unchanged
 *   model    seq(8)                        -> the parsed IDoc, packed (opaque
 *                                             here; a cache of doc, optional)
 *   dedupe   MANDT 0x1f SNDPRN 0x1f DOCNUM -> seq(8)
 *   bystate  state(1) seq(8)               -> "" (pending/failed/... in seq order)
 *   info     "format" -> u32, "next_seq" -> u64, "count.<state>" -> u64,
 *            "next_audit" -> u64, "next_run" -> u64
 *   keystate business key                  -> seq + control fields (versioned)
 *   links    "<party>:<number>"            -> value text
 *   audit    id(8)                         -> audit entry (versioned)
 *   auditbyseq seq(8) id(8)                -> "" (a record's audit entries)
 *   runs     id(8)                         -> sync run (versioned)
 * Records leave only through queue_prune (retention); the quota covers all.
 *
 * Format upgrade rule: QUEUE_FORMAT_VERSION is written to info/"format" when a
 * store is created and changes only when the layout or an encoding changes
 * incompatibly (additions old binaries can ignore, such as a new info key or a
 * new DBI, do not bump it). Such additive DBIs (keystate, links, audit,
 * auditbyseq, runs and model were added this way, still format 1) are created by a
 * read-write open when missing; a readonly open reads a missing one as empty
 * (it does not see one another process creates after it opened). An older
 * format-1 binary never opens them, ignores them and keeps working: records,
 * dedupe and counts mean the same to it, also after queue_prune. A new
 * value encoding inside an existing DBI is versioned per value (its first
 * byte) instead, and a binary refuses a value newer than it knows with
 * QUEUE_ERR_VERSION. A binary opens stores of its own version. A store
 * of an OLDER version is migrated in place by a read-write open, in the open
 * transaction, before the version is rewritten (no older version exists yet).
 * A store of a NEWER version is refused with QUEUE_ERR_VERSION, by readonly
 * opens too, so an old binary never misreads or rewrites it: upgrades are
 * one-way; to go back, drain the queue and start from an empty directory.
 */
#ifndef MLC_QUEUE_H
#define MLC_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_FORMAT_VERSION 1

enum queue_status {
    QUEUE_OK = 0,
    QUEUE_ERR_QUOTA,     /* store over queue.max_size_mb (or LMDB map full) -> 503 */
    QUEUE_ERR_STORAGE,   /* LMDB or file-system failure                      -> 503 */
    QUEUE_ERR_NOTFOUND,
    QUEUE_ERR_CLOSED,    /* queue is shutting down                           -> 503 */
    QUEUE_ERR_VERSION,   /* store written by a newer, incompatible format    */
    QUEUE_ERR_INVALID,   /* bad argument                                     */
};

enum queue_state {
    QUEUE_PENDING = 0,
    QUEUE_INFLIGHT,
    QUEUE_DELIVERED,
    QUEUE_FAILED,
    QUEUE_IGNORED,
    QUEUE_NSTATES
};

/* "pending", "inflight", ... ; queue_state_parse returns -1 for unknown. */
const char *queue_state_name(int state);
int queue_state_parse(const char *name);

struct queue_opts {
    const char *path;          /* directory; created if missing */
    uint64_t max_size_bytes;   /* quota: above it appends are refused.
                                  Required (> 0) for read-write; readonly may
                                  pass 0 (then quota_bytes reads 0) */
    int readonly;              /* 1: open for reading only (no committer);
                                  works while another process has it open
                                  read-write; the store must exist */
    uint64_t map_size_bytes;   /* 0 (normal): LMDB map = 2 x quota + 64 MiB,
                                  so the quota, not MAP_FULL, limits growth.
                                  Non-zero overrides it (tests use a small map
                                  to exercise the MAP_FULL backstop) */
};

/* What ingest hands in for one IDoc. All strings are borrowed for the call
 * (queue_submit: until the done callback). NULL strings are stored as "".
 * Rejected with QUEUE_ERR_INVALID (at submit, never in the committer): an
 * empty docnum, a 0x1f byte in mandt/sndprn/docnum, a dedupe key longer than
 * LMDB's key limit (511 bytes), any string over 64 KiB, xml == NULL with
 * xml_len > 0, xml_len >= 4 GiB, a state other than PENDING or IGNORED. */
struct queue_item {
    const char *mandt, *sndprn, *docnum;   /* dedupe key (trimmed) */
    const char *mestyp, *idoctyp, *cimtyp, *credat, *cretim;
    const char *keys;     /* business keys, space separated, e.g.
                             "vendor:0000100003 contact:0000152955" */
    const char *xml;      /* the IDoc as a standalone UTF-8 document */
    size_t xml_len;
    const void *model;    /* optional (NULL, 0: none): the parsed IDoc in a
                             form the reader can use without parsing the XML
                             again (ingest: idoc_pack). Stored as given and
                             handed back by queue_get(QUEUE_GET_MODEL); the
                             queue does not look inside. < 4 GiB. */
    size_t model_len;
    int state;            /* initial state: QUEUE_PENDING or QUEUE_IGNORED */
    /* Results, filled by the committer: */
    uint64_t seq;         /* the record's sequence number (the original's
                             when duplicate) */
    int duplicate;        /* 1 when this DOCNUM was already stored */
};

/* One HTTP request's IDocs: stored all-or-nothing. */
struct queue_batch {
    struct queue_item *items;
    size_t nitems;        /* >= 1 */
    void (*done)(struct queue_batch *b, void *ud); /* runs on the committer
                             thread, after the commit, with no lock or
                             transaction held; b may be freed once it runs.
                             Keep it short: the next group waits for it. */
    void *ud;
    /* Results: */
    int status;          /* enum queue_status */
    size_t nnew, ndup;
    char err[256];       /* one line when status != QUEUE_OK */
    /* Internal: */
    struct queue_batch *next_;
    int64_t submitted_ms_;
};

/* A stored record, as read back. One allocation: free with queue_record_free. */
struct queue_record {
    uint64_t seq;
    int state;
    uint32_t attempts;
    int64_t received_ms;      /* unix ms when committed */
    int64_t updated_ms;       /* last state change */
    int64_t next_attempt_ms;  /* earliest next delivery attempt, 0 = now */
    const char *mandt, *sndprn, *docnum, *mestyp, *idoctyp, *cimtyp,
               *credat, *cretim, *keys, *error;
    const char *xml;          /* NULL unless asked for (then NUL-terminated) */
    size_t xml_len;           /* the stored XML's length, even when xml is NULL */
    const void *model;        /* NULL unless asked for AND stored; 8-byte
                                 aligned, model_len bytes */
    size_t model_len;
};

struct queue_stats {
    uint64_t count[QUEUE_NSTATES];
    uint64_t used_bytes;      /* pages in use x page size */
    uint64_t quota_bytes;
    uint64_t map_bytes;
    uint64_t next_seq;        /* the seq the next new record gets (first is 1) */
};

struct queue;

/* Open (creating if needed) the store at opts->path. Clears stale reader
 * slots. Starts the committer thread unless readonly. Returns NULL with a
 * reason in err on failure (a newer format version is refused). */
struct queue *queue_open(const struct queue_opts *opts, char *err, size_t errlen);

/* The same, returning why: QUEUE_OK (*out set), QUEUE_ERR_VERSION (store of a
 * newer format), QUEUE_ERR_INVALID (bad options) or QUEUE_ERR_STORAGE (no
 * store for a readonly open, permissions, LMDB), with the reason in err. */
int queue_open_ex(const struct queue_opts *opts, struct queue **out, char *err,
                  size_t errlen);

/* Stop accepting batches, let the committer finish every batch already
 * submitted (their done callbacks run), then close LMDB. */
void queue_close(struct queue *q);

/* Hand a batch to the committer. Returns QUEUE_OK and later calls b->done
 * exactly once; or returns QUEUE_ERR_CLOSED/INVALID (reason in b->err) and
 * never calls it. After done: b->status is QUEUE_OK (every item stored or
 * recognised as a duplicate; item->seq and ->duplicate set) or QUEUE_ERR_QUOTA
 * / QUEUE_ERR_STORAGE with b->err, and then nothing of the batch was stored.
 * QUEUE_OK in done means the group's commit returned: fsync'd, durable. */
int queue_submit(struct queue *q, struct queue_batch *b);

/* Synchronous append (submit and wait). Returns the batch status. ndup may
 * be NULL. Blocks the calling thread for one group commit: do not call it
 * from an event-loop thread (use queue_submit and resume from done), and
 * never from a done callback (the committer would wait for itself). */
int queue_append(struct queue *q, struct queue_item *items, size_t n,
                 size_t *ndup, char *err, size_t errlen);

/* Counts by state, sizes. Uses one short read transaction. */
int queue_stats(struct queue *q, struct queue_stats *out, char *err, size_t errlen);

/* How long the oldest batch handed to the committer has been waiting, in
 * ms (0 when none waits): a liveness signal for /healthz. */
int64_t queue_commit_wait_ms(struct queue *q);

/* 1 after a durable commit's final sync failed (fail-stop): the commit may
 * not be on disk, and a second fsync would not tell, so every later write
 * transaction of this handle fails (QUEUE_ERR_STORAGE, "... restarted") and
 * /healthz reports it; the delivery dispatcher stops dispatching. A restart
 * reopens the store, and every read-write open commits and syncs a fresh
 * meta page before anything can be acknowledged: the failed commit (still
 * in the page cache, its data pages synced) is then either durable or gone,
 * and SAP's resend settles which. */
int queue_failed(const struct queue *q);

/* 1 when the store is at or over its quota (cached after each commit: cheap,
 * lock-free; for /readyz). Below it, a batch is still refused when it would
 * not fit; a batch of resends only (all duplicates) is always acknowledged,
 * over quota too. */
int queue_over_quota(const struct queue *q);

/* Durable write transactions this handle has committed (group commits of
 * appends plus state changes). For metrics and for tests that check that
 * group commit groups. */
uint64_t queue_commit_count(const struct queue *q);

/* on = 1: the committer keeps collecting batches but starts no transaction;
 * on = 0: everything collected goes into one group commit. A test aid (to
 * make a group deterministic); queue_close releases a hold. */
void queue_hold(struct queue *q, int on);

/* The seq stored for a dedupe key; QUEUE_ERR_NOTFOUND when none. */
int queue_find(struct queue *q, const char *mandt, const char *sndprn,
               const char *docnum, uint64_t *seq, char *err, size_t errlen);

/* Call cb for each record with seq > after_seq (in seq order), only those in
 * `state` unless state < 0, at most `limit` (0 = all). The record passed to cb
 * is valid only during the call. cb returns non-zero to stop. One read
 * transaction spans the whole listing (a consistent snapshot): keep cb short,
 * a long-open reader keeps LMDB from reusing pages. */
int queue_list(struct queue *q, int state, uint64_t after_seq, size_t limit,
               int (*cb)(const struct queue_record *r, void *ud), void *ud,
               char *err, size_t errlen);

/* Read one record; `what` adds its XML (QUEUE_GET_XML; 1 means that too)
 * and/or its stored model (QUEUE_GET_MODEL; when the record has none,
 * record->model stays NULL and its XML is read instead, so that a reader who
 * needs the IDoc gets one of the two in one read). *out is one allocation
 * owned by the caller. */
#define QUEUE_GET_XML   1
#define QUEUE_GET_MODEL 2
int queue_get(struct queue *q, uint64_t seq, int what,
              struct queue_record **out, char *err, size_t errlen);
void queue_record_free(struct queue_record *r);

/* Move records to a new state (e.g. replay: failed -> pending, resetting
 * attempts and error). Records not in `from_state` (when from_state >= 0) are
 * left alone and not counted. *changed receives how many moved. Moving to
 * pending resets attempts, error and next_attempt_ms; a record already in
 * to_state is left alone. One write transaction: an unknown seq fails the
 * whole call with QUEUE_ERR_NOTFOUND ("no record with seq N"), nothing moved.
 * changed may be NULL. */
int queue_set_state(struct queue *q, const uint64_t *seqs, size_t n, int from_state,
                    int to_state, size_t *changed, char *err, size_t errlen);

/* Move every record in from_state to to_state (e.g. replay --failed, or
 * inflight -> pending at start-up), with queue_set_state's resets. Commits in
 * chunks of 10,000 records (bounded transaction size); each chunk is
 * consistent, and on error *changed tells how many already moved. */
int queue_move_all(struct queue *q, int from_state, int to_state, size_t *changed,
                   char *err, size_t errlen);

/* A delivery outcome for one record (queue_update). */
struct queue_change {
    uint64_t seq;
    int from_state;           /* apply only when in this state; -1: any */
    int to_state;             /* may equal the current state */
    uint32_t add_attempts;    /* added to attempts (1 after a failed try) */
    int64_t next_attempt_ms;  /* -1: keep; else set (0 = now) */
    const char *error;        /* NULL: keep; "": clear; else set (cut at 1 KiB) */
    /* Delivery bookkeeping written in the SAME transaction as the state
     * change, so that a crash can never leave them out of step: */
    const char *applied_keys; /* NULL or space-separated business keys: for
                                 each, the keystate becomes this record
                                 (seq, mandt, sndprn, docnum, credat, cretim) */
    const struct queue_link *links; /* link-store entries to put */
    size_t nlinks;
};

/* ---- Delivery support (issue 4): keystate, links, audit, runs, retention --
 *
 * keystate: per business key, the last IDoc APPLIED to Dataverse, so that an
 * older IDoc arriving later (a BD87 resend) is recognised as superseded.
 * links: the vendor<->customer link store of the mapping engine
 * (config/mapping.h "Vendor / customer linking"): key "<party>:<number>",
 * value text. audit: an append-only log of delivery attempts, supersessions,
 * warnings and sync runs; runs: one row per sync run.
 *
 * Business keys and link keys: 1..511 bytes (LMDB's key limit), no NUL.
 * Every write below runs its own short write transaction on the caller's
 * thread and never waits for the committer thread, so these functions may
 * be called from a queue_list/queue_audit_list callback or a batch's done
 * callback without deadlock (a long queue_prune there would stall ingest,
 * though). A readonly handle refuses writes with QUEUE_ERR_INVALID. */

#define QUEUE_LINK_VALUE_MAX 1024   /* bytes of a link value, without the NUL */

/* The control fields are stored (up to 255 bytes each) and copied out cut
 * to these buffers, NUL-terminated (SAP's own lengths are 3, 10, 16, 8, 6).
 * keystate is never pruned: seq may name a record queue_prune removed. */
struct queue_keystate {
    uint64_t seq;
    char mandt[8], sndprn[40], docnum[24], credat[12], cretim[8];
};

struct queue_link {
    const char *key;   /* "vendor:0000100003" */
    const char *value; /* opaque text owned by the mapping engine (<= 1 KiB) */
};

/* QUEUE_OK with *out filled, or QUEUE_ERR_NOTFOUND. Written only by
 * queue_update (queue_change.applied_keys). */
int queue_keystate_get(struct queue *q, const char *key, struct queue_keystate *out,
                       char *err, size_t errlen);

/* Link store: get copies the value into val, NUL-terminated
 * (QUEUE_ERR_NOTFOUND when absent; QUEUE_ERR_INVALID when it does not fit:
 * QUEUE_LINK_VALUE_MAX + 1 bytes always suffice); put stores (replaces) it in
 * its own transaction (delivery normally puts links through
 * queue_change.links instead). A value over QUEUE_LINK_VALUE_MAX bytes, a NULL
 * value or a bad key is refused with QUEUE_ERR_INVALID, by queue_update too
 * (then the whole call, before anything is written). Links are not subject
 * to the quota (small, and delivery needs them). */
int queue_link_get(struct queue *q, const char *key, char *val, size_t vallen,
                   char *err, size_t errlen);
int queue_link_put(struct queue *q, const char *key, const char *value,
                   char *err, size_t errlen);

/* A read view: several reads in ONE read transaction, so one snapshot, and
 * one LMDB reader slot taken once instead of for every read (delivery reads
 * a job's records, keystates and links: three transactions a record
 * otherwise). The queue_view_* reads behave as queue_get, queue_keystate_get
 * and queue_link_get. A failed read (a storage error, not NOTFOUND) fails
 * every later read of the view the same way. Owned by one thread at a time;
 * end it soon, and never hold it across network I/O: an open reader keeps
 * LMDB from reusing the pages freed meanwhile, and a remap (another process
 * grew the map) waits for it. Records it returned outlive it. */
struct queue_view;
int queue_view_begin(struct queue *q, struct queue_view **out, char *err, size_t errlen);
void queue_view_end(struct queue_view *v); /* NULL is fine */
int queue_view_get(struct queue_view *v, uint64_t seq, int what, struct queue_record **out,
                   char *err, size_t errlen);
int queue_view_keystate_get(struct queue_view *v, const char *key, struct queue_keystate *out,
                            char *err, size_t errlen);
int queue_view_link_get(struct queue_view *v, const char *key, char *val, size_t vallen,
                        char *err, size_t errlen);

/* One audit entry. Strings may be NULL. */
struct queue_audit {
    uint64_t id;            /* assigned by queue_audit_append (increasing) */
    int64_t time_ms;        /* 0: now */
    const char *kind;       /* "attempt", "superseded", "warning", "run" */
    uint64_t seq;           /* queue record, 0 if none */
    const char *docnum;
    const char *key;        /* business key */
    const char *operation;  /* e.g. "PATCH accounts(mlc_sapvendorid='0000100003')" */
    int http_status;        /* 0: transport error or not applicable */
    const char *error_code; /* Dataverse's code ("0x80060891"), or NULL */
    const char *message;    /* Dataverse's message, or a note */
    int32_t duration_ms;
    uint64_t run_id;        /* the sync run it belongs to, 0 if none */
};

/* Append entries in one transaction (ids assigned in order, written back
 * into a[i].id — a is not const for that reason — once committed). Ids
 * increase across calls and processes and are never reused, also after
 * queue_prune. time_ms 0 is stored as now. Strings are cut (at a UTF-8
 * character boundary) to: message 2 KiB, operation 512 B, key 512 B, kind,
 * docnum and error_code 128 B; NULL strings read back as NULL. The audit is
 * bookkeeping and gives way to the records: when the entries would take the
 * store over its quota, nothing is written and QUEUE_ERR_QUOTA is returned
 * (delivery should log that and go on). */
int queue_audit_append(struct queue *q, struct queue_audit *a, size_t n, char *err, size_t errlen);

/* Newest first (by id). seq != 0: only entries of that record (an index, no
 * scan). before_id != 0: only ids below it (paging: pass the last id seen).
 * At most limit (0 = all). The entry passed to cb is valid only during the
 * call; cb returns non-zero to stop. One read transaction, as queue_list. */
int queue_audit_list(struct queue *q, uint64_t seq, uint64_t before_id, size_t limit,
                     int (*cb)(const struct queue_audit *a, void *ud), void *ud,
                     char *err, size_t errlen);

/* A sync run (issue 5 schedule; continuous delivery records runs too). */
struct queue_run {
    uint64_t id;            /* 0 in queue_run_put: assign a new id (written back) */
    int64_t start_ms, end_ms; /* end 0: still running */
    const char *trigger;    /* "continuous", "schedule", "admin", "startup" */
    const char *result;     /* "running", "ok", "partial", "failed", "stopped" */
    uint64_t delivered, failed, retried, superseded, ignored;
};

/* Insert (id 0: a new, increasing id, written back into r->id) or replace
 * (id != 0: QUEUE_ERR_NOTFOUND when no run has it, e.g. pruned) a run.
 * trigger and result are cut at 64 bytes; NULL reads back as NULL. */
int queue_run_put(struct queue *q, struct queue_run *r, char *err, size_t errlen);
/* Newest first, at most limit (0 = all). */
int queue_runs_list(struct queue *q, size_t limit,
                    int (*cb)(const struct queue_run *r, void *ud), void *ud,
                    char *err, size_t errlen);

/* Retention: delete delivered and ignored records with updated_ms <
 * cutoff_ms (rec, doc, bystate and their dedupe entries; counts kept
 * consistent; pending, inflight and failed records never), audit entries
 * with time_ms < audit_cutoff_ms (with their auditbyseq entries) and finished
 * runs (end_ms != 0) with end_ms < audit_cutoff_ms. A cutoff <= 0 prunes
 * nothing of its kind. Keystate and links are never pruned (they are small
 * and define order).
 * Once a record is pruned its DOCNUM is forgotten: a later resend is stored
 * as a new record, so keep records longer than SAP may resend (the
 * keystate still recognises it as superseded when a newer IDoc was applied).
 * Works in chunks of at most 5,000 deletions per write transaction (each
 * chunk is consistent; the LMDB write lock, which ingest needs, is held only
 * for the deletions, candidates are found in read transactions). *records
 * gets the records removed, *audit the audit entries plus runs removed (on
 * error: how many went before it); either may be NULL. */
int queue_prune(struct queue *q, int64_t cutoff_ms, int64_t audit_cutoff_ms,
                size_t *records, size_t *audit, char *err, size_t errlen);

/* Apply changes in one write transaction, exactly as given (no implicit
 * resets). Records not in their from_state are skipped and not counted, and
 * their applied_keys and links are NOT written; an unknown seq fails the call
 * (QUEUE_ERR_NOTFOUND, nothing applied, no keystate or link either). A
 * business key over 511 bytes or a bad link fails the call with
 * QUEUE_ERR_INVALID before anything is written. changed may be NULL.
 * Durability: the commit is LAZY — atomic, consistent and kept by a killed
 * process, but a power loss may undo the last lazy commits (the meta page
 * is not synced; the next durable commit syncs it). That is what delivery
 * needs and no more: an undone claim or outcome leaves the record INFLIGHT
 * or PENDING, start-up sends it again, and upserts by key make that
 * harmless (only the last commit can be undone: the next commit's data sync
 * flushes the meta page before it). Every other writer (appends,
 * queue_set_state, queue_move_all, links, audit appended on its own, runs,
 * prune) commits durably; audit entries written with queue_update_audited
 * share the lazy commit. */
int queue_update(struct queue *q, const struct queue_change *c, size_t n,
                 size_t *changed, char *err, size_t errlen);

/* queue_update plus audit entries (as queue_audit_append) in the same
 * transaction: one (lazy) commit and one fsync for a delivery job's outcomes and
 * its audit. When the entries would take the store over its quota the
 * changes are still applied, the audit is left out and *audit_dropped is
 * set (may be NULL); otherwise a[i].id is assigned. A failure writes
 * neither. */
int queue_update_audited(struct queue *q, const struct queue_change *c, size_t n,
                         struct queue_audit *a, size_t na, int *audit_dropped,
                         size_t *changed, char *err, size_t errlen);

#endif
