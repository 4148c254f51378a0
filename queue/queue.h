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
 * callback. queue_open/queue_close belong to the main thread.
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
    uint64_t max_size_bytes;   /* quota: above it appends are refused */
    int readonly;              /* 1: open for reading only (no committer) */
};

/* What ingest hands in for one IDoc. All strings are borrowed for the call
 * (queue_submit: until the done callback). */
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
    size_t nitems;
    void (*done)(struct queue_batch *b, void *ud); /* runs on the committer thread */
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
    const char *xml;          /* NULL unless asked for */
    size_t xml_len;
};

struct queue_stats {
    uint64_t count[QUEUE_NSTATES];
    uint64_t used_bytes;      /* pages in use x page size */
    uint64_t quota_bytes;
    uint64_t map_bytes;
    uint64_t next_seq;
};

struct queue;

/* Open (creating if needed) the store at opts->path. Clears stale reader
 * slots. Starts the committer thread unless readonly. Returns NULL with a
 * reason in err on failure (a newer format version is refused). */
struct queue *queue_open(const struct queue_opts *opts, char *err, size_t errlen);

/* Stop accepting batches, let the committer finish every batch already
 * submitted (their done callbacks run), then close LMDB. */
void queue_close(struct queue *q);

/* Hand a batch to the committer. Returns QUEUE_OK and later calls b->done
 * exactly once; or returns QUEUE_ERR_CLOSED/INVALID and never calls it. */
int queue_submit(struct queue *q, struct queue_batch *b);

/* Synchronous append (submit and wait). Returns the batch status. */
int queue_append(struct queue *q, struct queue_item *items, size_t n,
                 size_t *ndup, char *err, size_t errlen);

/* Counts by state, sizes. Uses one short read transaction. */
int queue_stats(struct queue *q, struct queue_stats *out, char *err, size_t errlen);

/* 1 when the store is at or over its quota (cached after each commit: cheap,
 * lock-free; for /readyz). */
int queue_over_quota(const struct queue *q);

/* Call cb for each record with seq > after_seq (in seq order), only those in
 * `state` unless state < 0, at most `limit` (0 = all). The record passed to cb
 * is valid only during the call. cb returns non-zero to stop. */
int queue_list(struct queue *q, int state, uint64_t after_seq, size_t limit,
               int (*cb)(const struct queue_record *r, void *ud), void *ud,
               char *err, size_t errlen);

/* Read one record (with its XML when with_xml). *out is owned by the caller. */
int queue_get(struct queue *q, uint64_t seq, int with_xml,
              struct queue_record **out, char *err, size_t errlen);
void queue_record_free(struct queue_record *r);

/* Move records to a new state (e.g. replay: failed -> pending, resetting
 * attempts and error). Records not in `from_state` (when from_state >= 0) are
 * left alone and not counted. *changed receives how many moved. */
int queue_set_state(struct queue *q, const uint64_t *seqs, size_t n, int from_state,
                    int to_state, size_t *changed, char *err, size_t errlen);

/* Move every record in from_state to to_state (e.g. replay --failed, or
 * inflight -> pending at start-up). */
int queue_move_all(struct queue *q, int from_state, int to_state, size_t *changed,
                   char *err, size_t errlen);

#endif
