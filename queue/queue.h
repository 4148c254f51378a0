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
 *   dedupe   MANDT 0x1f SNDPRN 0x1f DOCNUM -> seq(8)
 *   bystate  state(1) seq(8)               -> "" (pending/failed/... in seq order)
 *   info     "format" -> u32, "next_seq" -> u64, "count.<state>" -> u64
 * Records are never deleted by this module (yet): quota covers them all.
 *
 * Format upgrade rule: QUEUE_FORMAT_VERSION is written to info/"format" when a
 * store is created and changes only when the layout or an encoding changes
 * incompatibly (additions old binaries can ignore, such as a new info key or a
 * new DBI, do not bump it). A binary opens stores of its own version. A store
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

/* Read one record (with its XML when with_xml). *out is owned by the caller. */
int queue_get(struct queue *q, uint64_t seq, int with_xml,
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
};

/* Apply changes in one write transaction, exactly as given (no implicit
 * resets). Records not in their from_state are skipped and not counted; an
 * unknown seq fails the call (QUEUE_ERR_NOTFOUND, nothing applied).
 * changed may be NULL. */
int queue_update(struct queue *q, const struct queue_change *c, size_t n,
                 size_t *changed, char *err, size_t errlen);

#endif
