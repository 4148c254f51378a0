/*
 * queue.c — the durable IDoc store on LMDB.
 *
 * DESIGN
 *
 * Layout. Eleven named DBIs, all with plain memcmp keys (no custom comparator,
 * no MDB_INTEGERKEY), so the stock mdb_dump/mdb_stat read the store:
 *
 *   rec      seq(8, BE)                    -> record header, see rec_encode()
 *   doc      seq(8, BE)                    -> the IDoc XML
 *   dedupe   MANDT 0x1f SNDPRN 0x1f DOCNUM -> seq(8, BE)
 *   bystate  state(1) seq(8, BE)           -> "" (empty)
 *   info     "format"        -> u32 BE   store format (QUEUE_FORMAT_VERSION)
 *            "next_seq"      -> u64 BE   seq of the next new record
 *            "count.<state>" -> u64 BE   records in that state
 *            "next_audit", "next_run" -> u64 BE   next audit / run id
 *            "opened_ms"     -> u64 BE   last read-write open (written so that
 *                                        every open commits a fresh meta page)
 * and, for delivery (added to format 1 later; see "Delivery support" below
 * for their values): keystate, links, audit, auditbyseq, runs, and
 *   model    seq(8, BE)                    -> the parsed IDoc, packed
 *                                             (idoc/idoc_pack.h), when ingest
 *                                             gave one
 * A read-write open creates them when missing (a store made before them); a
 * readonly handle of such a store has NO_DBI for them and reads them as
 * empty. `model` is a cache of `doc`: delivery unpacks it instead of parsing
 * the XML again, and parses the XML when a record has none (stored by an
 * older binary, or by a caller that gave none). An older binary's prune
 * leaves a pruned record's model behind (it does not know the DBI): orphans
 * that use space but are never read, since seqs are never reused.
 *
 * The XML lives in `doc`, apart from its small header in `rec`, so a state
 * change rewrites ~200 bytes and never the (often multi-page) payload. New
 * records get increasing seqs and go into rec/doc with MDB_APPEND (no page
 * splits in the middle, full pages). `bystate` gives delivery and listing
 * the records of one state in seq (= arrival) order without a scan.
 *
 * Invariants, each kept by doing every change in ONE write transaction:
 *   I1  rec and doc hold the same seqs; every seq < next_seq.
 *   I2  dedupe <-> rec: every record has exactly one dedupe entry pointing at
 *       it, and every dedupe entry points at a record.
 *   I3  bystate holds exactly (r.state, r.seq) for every record r.
 *   I4  count.<s> == number of bystate entries with state s (so stats are
 *       O(1) and need no scan).
 *   I5  a batch is all-or-nothing: either every item of it is stored (or
 *       recognised as a duplicate) in one committed transaction, or nothing.
 *   I6  auditbyseq holds exactly (a.seq, a.id) for every audit entry a with
 *       a.seq != 0; audit and run ids are below info next_audit/next_run.
 * queue_prune removes a record from rec, doc, bystate and dedupe (and its
 * count) in one txn, and an audit entry with its auditbyseq entry, so the
 * invariants hold after it too.
 * A broken invariant met at run time (bystate entry missing, undecodable
 * record) is reported as QUEUE_ERR_STORAGE, never silently repaired.
 *
 * Group commit. A durable LMDB commit costs two fsyncs and ~100 us of kernel
 * CPU whatever its size (limits.md), so one committer thread owns appends:
 * queue_submit() pushes a batch on a mutex-protected FIFO and signals; the
 * committer takes every waiting batch (up to GROUP_MAX_BYTES of XML), runs ONE
 * write transaction for all of them, commits (fsync) once, then runs each
 * batch's done callback with no lock and no transaction held. Concurrent
 * requests thus share one fsync; while it runs, the next group gathers.
 *
 * Per batch inside the shared transaction: everything that can reject a
 * batch on its own is checked BEFORE its first write: arguments (already at
 * submit), then the quota (pages in use, measured in this very transaction,
 * plus an estimate of the batch). A rejected batch wrote nothing, so the
 * transaction goes on with its neighbours. What can still fail during the
 * writes is LMDB itself (MAP_FULL, I/O): then the shared transaction is
 * aborted and every batch of the group is redone in a transaction of its own,
 * so a bad batch fails alone and no partial batch is ever committed (I5).
 * Dedupe is read and written in the same transaction as the record, so a
 * resend is caught inside one batch, across batches of one group and across
 * groups alike.
 *
 * Other writers. State changes (queue_set_state/update/move_all) and the
 * delivery bookkeeping (links, audit, runs, prune) run their own write
 * transactions on the caller's thread. LMDB serialises writers with
 * its own lock, so they simply wait for the committer's current transaction
 * (and vice versa). They cannot deadlock with it: no code path holds the
 * LMDB write lock while waiting for q->mu or for another thread, and the
 * committer never holds q->mu during a transaction.
 *
 * Durability. The env runs with MDB_NOMETASYNC: LMDB syncs a commit's data
 * pages before it writes the meta page that points at them (so the store is
 * consistent after any crash), and tx_commit then syncs the meta page itself
 * unless the transaction is lazy — only delivery's claims and outcomes
 * (queue_update*), of which a power loss may undo the last one, harmlessly
 * (queue.h). One fsync instead of two per delivery commit, under the single
 * writer lock that ingest waits for too. Every write txn holds q->wmu from
 * begin to its last sync, so our syncs never overlap another commit of ours
 * and each sync's error is its own. A failed meta sync is fail-stop
 * (q->failed): every later write is refused until a restart (queue_failed,
 * /healthz).
 *
 * Map and quota. mapsize = 2 x quota + 64 MiB: the quota (checked before
 * each batch) is what normally refuses data; MDB_MAP_FULL is a backstop that
 * aborts and maps to QUEUE_ERR_QUOTA. "Used" is pages in use (branch + leaf
 * + overflow of every tree, including main and free-list trees) x page size;
 * free pages inside the file are reusable and do not count.
 *
 * MDB_MAP_RESIZED (another process grew the map beyond ours) is handled by
 * remapping with mdb_env_set_mapsize(env, 0), which LMDB allows only while
 * this process has no transaction open: every transaction holds q->maplock
 * for reading, the remap takes it for writing.
 *
 * Threads. MDB_NOTLS ties a read transaction's reader slot to the
 * transaction, not the thread, so any thread may read and slots are freed at
 * the end of each transaction. MDB_val data is copied out before the
 * transaction ends. No transaction is held across user code except the
 * documented queue_list callback (read-only).
 */
#include "queue/queue.h"

#include "common/util.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 0.9.17: robust process-shared mutexes on Linux by default (a writer killed
 * with SIGKILL does not wedge the store); set_mapsize(env, 0) since 0.9.11. */
#if MDB_VERSION_FULL < MDB_VERINT(0, 9, 17)
#error "ml-connector needs LMDB 0.9.17 or newer"
#endif

#define MIB                 (1024ull * 1024ull)
#define MAP_EXTRA           (64 * MIB)
#define GROUP_MAX_BYTES     (64 * MIB)  /* XML per group: bounds dirty memory */
#define MOVE_CHUNK          10000       /* records per queue_move_all txn */
#define STR_MAX             65536       /* any short string, bytes */
#define ERROR_MAX           1024        /* stored error text is cut here */
#define KEY_SEP             0x1f
#define REMAP_WAIT_SEC      2
#define FREE_DBI            0           /* LMDB's free-page tree (cf. mdb_stat -f) */
#define NO_DBI              0           /* an optional DBI that does not exist
                                           (named DBIs never get handle 0) */
#define MAX_DBS             16          /* named DBIs: 11 used, room to add */
#define PRUNE_CHUNK         5000        /* deletions per queue_prune write txn */
#define PRUNE_SCAN          50000       /* entries one prune read txn visits */
#define LINK_MAX            QUEUE_LINK_VALUE_MAX
#define KS_STR_MAX          255         /* keystate strings are cut here */
#define AUDIT_MSG_MAX       2048
#define AUDIT_OP_MAX        512
#define AUDIT_KEY_MAX       512
#define AUDIT_SHORT_MAX     128         /* kind, docnum, error_code */
#define RUN_STR_MAX         64          /* trigger, result */

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */


static void put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* The n bytes of s cut to at most max, never inside a UTF-8 sequence (a cut
 * text stays valid UTF-8 when it was, so JSON output of it stays valid). */
static size_t cut_n(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--; /* s[n] continues a sequence begun before the cut: drop it all */
    return n;
}

/* The same for a NUL-terminated s (reads at most max + 1 bytes of it). */
static size_t cut_len(const char *s, size_t max)
{
    return cut_n(s, strnlen(s, max + 1), max);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Next space-separated token of *s (advanced past it); 0 at the end. */
static size_t next_token(const char **s, const char **tok)
{
    const char *p = *s;
    while (*p && is_space(*p))
        p++;
    const char *b = p;
    while (*p && !is_space(*p))
        p++;
    *tok = b;
    *s = p;
    return (size_t)(p - b);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const state_names[QUEUE_NSTATES] = {
    "pending", "inflight", "delivered", "failed", "ignored",
};

const char *queue_state_name(int state)
{
    if (state < 0 || state >= QUEUE_NSTATES)
        return "unknown";
    return state_names[state];
}

int queue_state_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < QUEUE_NSTATES; i++)
        if (strcmp(name, state_names[i]) == 0)
            return i;
    return -1;
}

static bool state_ok(int s)
{
    return s >= 0 && s < QUEUE_NSTATES;
}

/* ------------------------------------------------------------------------ */
/* The handle                                                                */

struct queue {
    MDB_env *env;
    MDB_dbi main_dbi, rec, doc, dedupe, bystate, info;
    /* Added after format 1 was first released (additive, see init_store):
     * NO_DBI in a readonly handle of a store that predates them. */
    MDB_dbi keystate, links, audit, auditbyseq, runs, model;
    unsigned psize;
    size_t maxkey;
    uint64_t quota;
    int readonly;
    char *path;

    /* Held for reading by every transaction, for writing by a remap
     * (mdb_env_set_mapsize must not run while any txn of ours is open). */
    pthread_rwlock_t maplock;

    /* The committer's inbox. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct queue_batch *head, *tail;  /* FIFO: seq order follows submission */
    int64_t committing_since_ms;      /* oldest batch of the group being committed (mu) */
    int closing;
    int hold;
    int started;
    pthread_t committer;

    _Atomic uint64_t commits;
    /* Every write txn of this process, from begin to its last sync, holds
     * wmu (taken after maplock, before LMDB's writer lock): no fdatasync of
     * ours can then overlap another commit's page writes, so each sync's
     * result (Linux reports a writeback error once per file description)
     * belongs to the commit that asked. */
    pthread_mutex_t wmu;
    _Atomic int failed;              /* fail-stop: a durable meta sync failed */
    _Atomic uint64_t used;
    _Atomic int over;
};

/* ------------------------------------------------------------------------ */
/* Record encoding                                                           */

/*
 * rec value, version 1 (all integers big-endian):
 *    0  u8   encoding version (REC_VERSION)
 *    1  u8   state
 *    2  u16  reserved, 0
 *    4  u32  attempts
 *    8  i64  received_ms
 *   16  i64  updated_ms
 *   24  i64  next_attempt_ms
 *   32  u64  xml_len (length of the doc value)
 *   40  REC_NSTR x { u32 length, bytes (no NUL) } in enum rec_str order
 * The value ends exactly after the last string: any other length is corrupt.
 */
#define REC_VERSION 1
#define REC_HDR     40

enum rec_str {
    S_MANDT, S_SNDPRN, S_DOCNUM, S_MESTYP, S_IDOCTYP, S_CIMTYP,
    S_CREDAT, S_CRETIM, S_KEYS, S_ERROR, REC_NSTR
};

/* A record in decoded form. Strings point into whatever was decoded (the
 * map, or the caller's item) and are NOT NUL-terminated. */
struct rec {
    int state;
    uint32_t attempts;
    int64_t received_ms, updated_ms, next_attempt_ms;
    uint64_t xml_len;
    const char *s[REC_NSTR];
    uint32_t n[REC_NSTR];
};

static size_t rec_size(const struct rec *r)
{
    size_t sz = REC_HDR;
    for (int i = 0; i < REC_NSTR; i++)
        sz += 4 + r->n[i];
    return sz;
}

static void rec_encode(const struct rec *r, unsigned char *p)
{
    p[0] = REC_VERSION;
    p[1] = (unsigned char)r->state;
    p[2] = p[3] = 0;
    put_be32(p + 4, r->attempts);
    put_be64(p + 8, (uint64_t)r->received_ms);
    put_be64(p + 16, (uint64_t)r->updated_ms);
    put_be64(p + 24, (uint64_t)r->next_attempt_ms);
    put_be64(p + 32, r->xml_len);
    p += REC_HDR;
    for (int i = 0; i < REC_NSTR; i++) {
        put_be32(p, r->n[i]);
        if (r->n[i])
            memcpy(p + 4, r->s[i], r->n[i]);
        p += 4 + r->n[i];
    }
}

enum { DEC_OK = 0, DEC_CORRUPT = -1, DEC_NEWER = -2 };

/* Checks every length against what is left before trusting it. */
static int rec_decode(const void *data, size_t size, struct rec *r)
{
    const unsigned char *p = data, *end = p + size;
    if (size < REC_HDR)
        return DEC_CORRUPT;
    if (p[0] != REC_VERSION)
        return p[0] > REC_VERSION ? DEC_NEWER : DEC_CORRUPT;
    if (p[1] >= QUEUE_NSTATES)
        return DEC_CORRUPT;
    r->state = p[1];
    r->attempts = get_be32(p + 4);
    r->received_ms = (int64_t)get_be64(p + 8);
    r->updated_ms = (int64_t)get_be64(p + 16);
    r->next_attempt_ms = (int64_t)get_be64(p + 24);
    r->xml_len = get_be64(p + 32);
    p += REC_HDR;
    for (int i = 0; i < REC_NSTR; i++) {
        if ((size_t)(end - p) < 4)
            return DEC_CORRUPT;
        uint32_t n = get_be32(p);
        p += 4;
        if ((size_t)(end - p) < n)
            return DEC_CORRUPT;
        r->s[i] = (const char *)p;
        r->n[i] = n;
        p += n;
    }
    return p == end ? DEC_OK : DEC_CORRUPT;
}

/* Bytes needed for the NUL-terminated copies of a record's strings. */
static size_t rec_strbytes(const struct rec *r)
{
    size_t sz = 0;
    for (int i = 0; i < REC_NSTR; i++)
        sz += (size_t)r->n[i] + 1;
    return sz;
}

/* Fill *out from r, copying the strings into buf (rec_strbytes(r) bytes). */
static void rec_export(const struct rec *r, uint64_t seq, struct queue_record *out,
                       char *buf)
{
    const char **dst[REC_NSTR] = {
        &out->mandt, &out->sndprn, &out->docnum, &out->mestyp, &out->idoctyp,
        &out->cimtyp, &out->credat, &out->cretim, &out->keys, &out->error,
    };
    memset(out, 0, sizeof *out);
    out->seq = seq;
    out->state = r->state;
    out->attempts = r->attempts;
    out->received_ms = r->received_ms;
    out->updated_ms = r->updated_ms;
    out->next_attempt_ms = r->next_attempt_ms;
    out->xml_len = (size_t)r->xml_len;
    for (int i = 0; i < REC_NSTR; i++) {
        if (r->n[i])
            memcpy(buf, r->s[i], r->n[i]);
        buf[r->n[i]] = '\0';
        *dst[i] = buf;
        buf += r->n[i] + 1;
    }
}

static void rec_set(struct rec *r, int i, const char *s)
{
    r->s[i] = s ? s : "";
    r->n[i] = (uint32_t)strlen(r->s[i]);
}

static void rec_from_item(struct rec *r, const struct queue_item *it, int64_t now)
{
    memset(r, 0, sizeof *r);
    r->state = it->state;
    r->received_ms = r->updated_ms = now;
    r->xml_len = it->xml_len;
    rec_set(r, S_MANDT, it->mandt);
    rec_set(r, S_SNDPRN, it->sndprn);
    rec_set(r, S_DOCNUM, it->docnum);
    rec_set(r, S_MESTYP, it->mestyp);
    rec_set(r, S_IDOCTYP, it->idoctyp);
    rec_set(r, S_CIMTYP, it->cimtyp);
    rec_set(r, S_CREDAT, it->credat);
    rec_set(r, S_CRETIM, it->cretim);
    rec_set(r, S_KEYS, it->keys);
    rec_set(r, S_ERROR, "");
}

/* dedupe key: MANDT 0x1f SNDPRN 0x1f DOCNUM (0x1f is refused inside them at
 * submit, so the key is unambiguous). Returns the length; buf >= maxkey. */
static size_t dedupe_key(unsigned char *buf, const char *mandt, const char *sndprn,
                         const char *docnum)
{
    size_t a = mandt ? strlen(mandt) : 0, b = sndprn ? strlen(sndprn) : 0;
    size_t c = strlen(docnum), n = 0;
    memcpy(buf + n, mandt ? mandt : "", a), n += a;
    buf[n++] = KEY_SEP;
    memcpy(buf + n, sndprn ? sndprn : "", b), n += b;
    buf[n++] = KEY_SEP;
    memcpy(buf + n, docnum, c), n += c;
    return n;
}

static void state_key(unsigned char k[9], int state, uint64_t seq)
{
    k[0] = (unsigned char)state;
    put_be64(k + 1, seq);
}

/* A growable scratch buffer. */
struct buf {
    char *p;
    size_t cap;
};

static char *buf_need(struct buf *b, size_t n)
{
    if (n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    return b->p;
}

/* ------------------------------------------------------------------------ */
/* Transactions: Knot-style sticky error                                     */

/*
 * Every operation on a tx is a no-op once one has failed; the first failure
 * (code and what was being done) is kept for the message. Callers write
 * straight-line code and check t->rc when it matters; tx_commit aborts
 * instead of committing when anything failed.
 */
struct tx {
    struct queue *q;
    MDB_txn *txn;
    int rc;
    const char *what;
    int64_t delta[QUEUE_NSTATES];   /* count.<state> changes, written at commit */
    uint64_t used;                  /* bytes in use, measured before commit */
    bool lazy;                      /* commit without the final meta fsync (see tx_commit) */
    bool wlocked;                   /* holds q->wmu (write txn) */
};

static void tx_fail(struct tx *t, int rc, const char *what)
{
    if (!t->rc) {
        t->rc = rc;
        t->what = what;
    }
}

/* Take the remap lock exclusively and remap to the size another process set.
 * Waits at most REMAP_WAIT_SEC: a thread that already holds a transaction of
 * ours (a queue_list callback calling back into the queue) cannot be waited
 * for. */
static int remap(struct queue *q)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += REMAP_WAIT_SEC;
    if (pthread_rwlock_timedwrlock(&q->maplock, &ts) != 0)
        return MDB_MAP_RESIZED;
    int rc = mdb_env_set_mapsize(q->env, 0);
    pthread_rwlock_unlock(&q->maplock);
    return rc;
}

static void tx_wunlock(struct tx *t)
{
    if (t->wlocked) {
        t->wlocked = false;
        pthread_mutex_unlock(&t->q->wmu);
    }
}

static int tx_begin(struct queue *q, struct tx *t, bool rdonly)
{
    memset(t, 0, sizeof *t);
    t->q = q;
    if (!rdonly && atomic_load(&q->failed)) {
        tx_fail(t, MDB_PANIC, "the store (an earlier fsync failed; restart required)");
        return t->rc;
    }
    for (int tries = 0;; tries++) {
        /* Lock order: maplock (read) -> wmu -> LMDB's writer lock. A
         * queue_list callback (maplock held for its read txn) may write,
         * and remap() (maplock for writing) is only ever called holding
         * neither. */
        pthread_rwlock_rdlock(&q->maplock);
        if (!rdonly) {
            pthread_mutex_lock(&q->wmu);
            t->wlocked = true;
            if (atomic_load(&q->failed)) {
                /* Failed while we waited for the commit that failed. */
                tx_wunlock(t);
                pthread_rwlock_unlock(&q->maplock);
                tx_fail(t, MDB_PANIC, "the store (an earlier fsync failed; restart required)");
                return t->rc;
            }
        }
        int rc = mdb_txn_begin(q->env, NULL, rdonly ? MDB_RDONLY : 0, &t->txn);
        if (rc == 0)
            return 0;
        if (rc == MDB_PANIC)
            atomic_store(&q->failed, 1); /* LMDB's own fail-stop: say so too */
        tx_wunlock(t);
        pthread_rwlock_unlock(&q->maplock);
        t->txn = NULL;
        if (rc == MDB_MAP_RESIZED && tries < 3) {
            /* Another process grew the map past ours: adopt its size. */
            int r2 = remap(q);
            if (r2 == 0)
                continue;
            rc = r2;
        }
        tx_fail(t, rc, rdonly ? "mdb_txn_begin(read)" : "mdb_txn_begin(write)");
        return rc;
    }
}

static void tx_abort(struct tx *t)
{
    if (t->txn) {
        mdb_txn_abort(t->txn);
        t->txn = NULL;
        pthread_rwlock_unlock(&t->q->maplock);
    }
    tx_wunlock(t);
}

/* 1: found (*v valid until the next write or the end of the txn); 0: not
 * found or failed (then t->rc is set). */
static int tx_get(struct tx *t, MDB_dbi dbi, const char *what, const MDB_val *k,
                  MDB_val *v)
{
    if (t->rc)
        return 0;
    MDB_val key = *k;
    int rc = mdb_get(t->txn, dbi, &key, v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc) {
        tx_fail(t, rc, what);
        return 0;
    }
    return 1;
}

static void tx_put(struct tx *t, MDB_dbi dbi, const char *what, const MDB_val *k,
                   MDB_val *v, unsigned flags)
{
    if (t->rc)
        return;
    MDB_val key = *k;
    int rc = mdb_put(t->txn, dbi, &key, v, flags);
    if (rc)
        tx_fail(t, rc, what);
}

/* tx_put through a cursor the caller keeps for a run of neighbouring keys:
 * LMDB's cursor search starts on the leaf page the cursor stands on when the
 * key falls inside it, where mdb_put searches from the root every time (a
 * delivery job's records have neighbouring seqs). */
static void tx_cput(struct tx *t, MDB_cursor *c, const char *what, const MDB_val *k, MDB_val *v,
                    unsigned flags)
{
    if (t->rc)
        return;
    MDB_val key = *k;
    int rc = mdb_cursor_put(c, &key, v, flags);
    if (rc)
        tx_fail(t, rc, what);
}

/* A missing key is an error here: we only delete what an invariant says
 * exists. */
static void tx_del(struct tx *t, MDB_dbi dbi, const char *what, const MDB_val *k)
{
    if (t->rc)
        return;
    MDB_val key = *k;
    int rc = mdb_del(t->txn, dbi, &key, NULL);
    if (rc)
        tx_fail(t, rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, what);
}

/* tx_del through a cursor (see tx_cput). */
static void tx_cdel(struct tx *t, MDB_cursor *c, const char *what, const MDB_val *k)
{
    if (t->rc)
        return;
    MDB_val key = *k;
    int rc = mdb_cursor_get(c, &key, NULL, MDB_SET);
    if (!rc)
        rc = mdb_cursor_del(c, 0);
    if (rc)
        tx_fail(t, rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc, what);
}

static uint64_t tx_get_u64(struct tx *t, const char *name)
{
    MDB_val k = { strlen(name), (void *)name }, v;
    if (!tx_get(t, t->q->info, "mdb_get(info)", &k, &v))
        return 0;
    if (v.mv_size != 8) {
        tx_fail(t, MDB_CORRUPTED, "info value length");
        return 0;
    }
    return get_be64(v.mv_data);
}

static void tx_put_u64(struct tx *t, const char *name, uint64_t val)
{
    unsigned char b[8];
    put_be64(b, val);
    MDB_val k = { strlen(name), (void *)name }, v = { 8, b };
    tx_put(t, t->q->info, "mdb_put(info)", &k, &v, 0);
}

static void count_key(char *buf, size_t len, int state)
{
    snprintf(buf, len, "count.%s", state_names[state]);
}

/* Pages in use x page size, as this transaction sees the store. */
static int used_bytes(struct queue *q, MDB_txn *txn, uint64_t *out)
{
    MDB_dbi dbis[] = { FREE_DBI, q->main_dbi, q->rec, q->doc, q->dedupe,
                       q->bystate, q->info, q->keystate, q->links, q->audit,
                       q->auditbyseq, q->runs, q->model };
    uint64_t pages = 2; /* the two meta pages */
    for (size_t i = 0; i < sizeof dbis / sizeof dbis[0]; i++) {
        MDB_stat st;
        if (i > 1 && dbis[i] == NO_DBI)
            continue; /* optional DBI absent (readonly, older store) */
        int rc = mdb_stat(txn, dbis[i], &st);
        if (rc)
            return rc;
        pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    *out = pages * q->psize;
    return 0;
}

static void publish_used(struct queue *q, uint64_t used)
{
    atomic_store(&q->used, used);
    atomic_store(&q->over, q->quota && used >= q->quota);
}

/* Write the count deltas, measure usage, commit. Aborts instead when the tx
 * has failed. Returns 0 or the LMDB error (t->rc/what set). */
static int tx_commit(struct tx *t)
{
    for (int s = 0; s < QUEUE_NSTATES && !t->rc; s++) {
        if (!t->delta[s])
            continue;
        char name[32];
        count_key(name, sizeof name, s);
        uint64_t c = tx_get_u64(t, name);
        if ((int64_t)c + t->delta[s] < 0)
            tx_fail(t, MDB_CORRUPTED, "state count below zero");
        tx_put_u64(t, name, (uint64_t)((int64_t)c + t->delta[s]));
    }
    if (!t->rc) {
        int rc = used_bytes(t->q, t->txn, &t->used);
        if (rc)
            tx_fail(t, rc, "mdb_stat");
    }
    if (t->rc) {
        tx_abort(t);
        return t->rc;
    }
    /* The env has MDB_NOMETASYNC: mdb_txn_commit writes the data pages,
     * fdatasyncs them, then writes the meta page WITHOUT syncing it. That
     * keeps the store consistent whatever happens (the meta page is only
     * ever written after the pages it points to are on disk), and the commit
     * survives a killed process (the meta page is in the page cache), but a
     * power loss may undo it.
     *
     * Durable commit (the default): mdb_env_sync then fdatasyncs the meta
     * page too, before tx_commit returns. Only after that does a batch's done
     * callback run, and only then does SAP get its 200: an acknowledged IDoc
     * survives SIGKILL and power loss. (Stock LMDB writes the meta page
     * through an O_DSYNC descriptor instead; the second fdatasync costs the
     * same here, and lets lazy commits skip it.) wmu is still held: no other
     * commit of ours writes pages until this sync has answered.
     *
     * Lazy commit (t->lazy, delivery's claims and outcomes): no meta sync.
     * Losing the last of these to a power loss leaves records INFLIGHT or
     * PENDING that were in fact sent, and start-up sends them again, which
     * the idempotent upserts by key make harmless (CONTRACT.md: at least
     * once). It halves the fsyncs that delivery spends under LMDB's single
     * writer lock, which every ingest commit waits for too. The next commit's
     * data fdatasync persists its meta page anyway, so at most the last
     * commit can be undone. */
    int rc = mdb_txn_commit(t->txn);
    t->txn = NULL;
    pthread_rwlock_unlock(&t->q->maplock);
    if (rc) {
        /* LMDB aborted it: nothing of it is visible (after a failed data
         * sync too: its pages are free pages no meta page points at; that
         * sync may also have carried the previous lazy commit's meta page,
         * which is then lost as a lazy commit may be). MDB_PANIC: LMDB's
         * own meta write failed and it refuses everything from now on. */
        if (rc == MDB_PANIC)
            atomic_store(&t->q->failed, 1);
        tx_wunlock(t);
        tx_fail(t, rc, "mdb_txn_commit");
        return rc;
    }
    if (!t->lazy) {
        rc = mdb_env_sync(t->q->env, 1);
        if (rc) {
            /* Committed and visible, perhaps not on disk — and a second
             * fdatasync would prove nothing (the kernel reports a writeback
             * error once and may drop the pages). Fail-stop, as LMDB itself
             * does when its synchronous meta write fails: refuse every
             * later write (SAP gets 503 and resends; /healthz reports it)
             * until a restart, whose open commits and syncs a fresh meta
             * page before anything is acknowledged (init_store). */
            atomic_store(&t->q->failed, 1);
            tx_wunlock(t);
            tx_fail(t, rc, "mdb_env_sync");
            return rc;
        }
    }
    tx_wunlock(t);
    atomic_fetch_add(&t->q->commits, 1);
    publish_used(t->q, t->used);
    return 0;
}

static uint64_t mib_up(uint64_t b)
{
    return (b + MIB - 1) / MIB;
}

/* Turn a failed tx into (status, one-line message). */
static int tx_status(struct tx *t, char *err, size_t len)
{
    if (t->rc == MDB_MAP_FULL) {
        /* The backstop behind the quota: refuse like the quota does (503). */
        MDB_envinfo ei;
        uint64_t map = mdb_env_info(t->q->env, &ei) == 0 ? ei.me_mapsize : 0;
        util_seterr(err, len, "queue over quota: LMDB map full (%llu MiB) in %s",
               (unsigned long long)mib_up(map), t->what);
        return QUEUE_ERR_QUOTA;
    }
    if (t->rc == MDB_PANIC && atomic_load(&t->q->failed)) {
        util_seterr(err, len, "queue storage failed: an fsync reported an I/O error; writes are "
                              "refused until ml-connector is restarted");
        return QUEUE_ERR_STORAGE;
    }
    if (t->rc == MDB_CORRUPTED)
        util_seterr(err, len, "queue store inconsistent (%s): %s", t->what,
               mdb_strerror(t->rc));
    else
        util_seterr(err, len, "queue storage error in %s: %s", t->what,
               mdb_strerror(t->rc));
    return QUEUE_ERR_STORAGE;
}

/* ------------------------------------------------------------------------ */
/* Appending (committer thread)                                              */

/* Bytes a key/value pair adds to the map, mirroring LMDB's leaf layout: a
 * node is an 8-byte header + key + data + a 2-byte slot; data that would
 * make the node larger than me_nodemax goes to overflow pages of its own.
 * Leaf bytes count double (pages fill to half after splits, plus branch
 * pages), so the estimate errs on the safe side. */
static uint64_t pair_cost(unsigned psize, uint64_t klen, uint64_t dlen)
{
    uint64_t nodemax = (((psize - 16) / 2) & ~1u) - 2;
    if (8 + klen + dlen > nodemax) {
        uint64_t ovpages = (16 - 1 + dlen) / psize + 1;
        return 2 * (8 + klen + 8 + 2) + ovpages * psize;
    }
    return 2 * (8 + klen + dlen + 2);
}

/* What the batch would add. Items already stored are free: a resend is
 * acknowledged even when the store is over quota (SAP would otherwise retry
 * it forever). Duplicates inside the batch are counted: a safe overestimate. */
static uint64_t batch_estimate(struct tx *t, const struct queue_batch *b)
{
    struct queue *q = t->q;
    uint64_t sum = 0;
    unsigned char dk[512];
    for (size_t i = 0; i < b->nitems && !t->rc; i++) {
        const struct queue_item *it = &b->items[i];
        MDB_val k = { dedupe_key(dk, it->mandt, it->sndprn, it->docnum), dk }, v;
        if (tx_get(t, q->dedupe, "mdb_get(dedupe)", &k, &v))
            continue;
        struct rec r;
        rec_from_item(&r, it, 0);
        uint64_t klen = r.n[S_MANDT] + r.n[S_SNDPRN] + r.n[S_DOCNUM] + 2;
        sum += pair_cost(q->psize, 8, rec_size(&r));
        sum += pair_cost(q->psize, 8, it->xml_len);
        if (it->model_len)
            sum += pair_cost(q->psize, 8, it->model_len);
        sum += pair_cost(q->psize, klen, 8);
        sum += pair_cost(q->psize, 9, 0);
    }
    return sum;
}

static void batch_reset(struct queue_batch *b)
{
    b->status = QUEUE_OK;
    b->nnew = b->ndup = 0;
    b->err[0] = '\0';
    for (size_t i = 0; i < b->nitems; i++) {
        b->items[i].seq = 0;
        b->items[i].duplicate = 0;
    }
}

static void batch_fail(struct queue_batch *b, int status, const char *msg)
{
    batch_reset(b);
    b->status = status;
    snprintf(b->err, sizeof b->err, "%s", msg);
}

/* Write one batch's items. Only LMDB can fail here (everything else was
 * checked before): on failure the caller must abort the whole txn. */
static void store_batch(struct tx *t, struct queue_batch *b, uint64_t *next_seq,
                        int64_t now)
{
    struct queue *q = t->q;
    unsigned char dk[512];
    static const unsigned char empty = 0;

    for (size_t i = 0; i < b->nitems && !t->rc; i++) {
        struct queue_item *it = &b->items[i];
        MDB_val k = { dedupe_key(dk, it->mandt, it->sndprn, it->docnum), dk }, v;

        /* Same txn as the insert below: sees earlier items of this batch and
         * of earlier batches of this group. */
        if (tx_get(t, q->dedupe, "mdb_get(dedupe)", &k, &v)) {
            if (v.mv_size != 8) {
                tx_fail(t, MDB_CORRUPTED, "dedupe value length");
                return;
            }
            it->duplicate = 1;
            it->seq = get_be64(v.mv_data);
            b->ndup++;
            continue;
        }
        if (t->rc)
            return;

        uint64_t seq = (*next_seq)++;
        unsigned char sk[8], bk[9];
        put_be64(sk, seq);
        MDB_val key = { 8, sk };

        struct rec r;
        rec_from_item(&r, it, now);
        /* MDB_APPEND: seqs only grow, so this is the cheap end-of-tree path;
         * it also fails (MDB_KEYEXIST) rather than overwrite should next_seq
         * ever lag behind the data. MDB_RESERVE: encode straight into the
         * page. */
        MDB_val rv = { rec_size(&r), NULL };
        tx_put(t, q->rec, "mdb_put(rec)", &key, &rv, MDB_APPEND | MDB_RESERVE);
        if (t->rc)
            return;
        rec_encode(&r, rv.mv_data);

        MDB_val xv = { it->xml_len, it->xml_len ? (void *)it->xml : (void *)&empty };
        tx_put(t, q->doc, "mdb_put(doc)", &key, &xv, MDB_APPEND);
        if (it->model_len) {
            MDB_val mv = { it->model_len, (void *)it->model };
            tx_put(t, q->model, "mdb_put(model)", &key, &mv, MDB_APPEND);
        }

        MDB_val sv = { 8, sk };
        tx_put(t, q->dedupe, "mdb_put(dedupe)", &k, &sv, MDB_NOOVERWRITE);

        state_key(bk, it->state, seq);
        MDB_val bkv = { 9, bk }, ev = { 0, (void *)&empty };
        tx_put(t, q->bystate, "mdb_put(bystate)", &bkv, &ev, 0);
        if (t->rc)
            return;

        t->delta[it->state]++;
        it->seq = seq;
        b->nnew++;
    }
}

/*
 * One write txn for `count` batches starting at `first` (linked by next_).
 * Batches over quota are marked and skipped (they wrote nothing). Returns 0
 * when committed (every batch then has its final status) or the LMDB error,
 * with the message in msg, when the txn was aborted (then no batch of it was
 * stored, and their statuses mean nothing).
 */
static int run_txn(struct queue *q, struct queue_batch *first, size_t count,
                   char *msg, size_t msglen, int *status)
{
    struct tx t;
    if (tx_begin(q, &t, false)) {
        *status = tx_status(&t, msg, msglen);
        return t.rc;
    }
    uint64_t next_seq = tx_get_u64(&t, "next_seq");
    if (!t.rc && next_seq == 0)
        tx_fail(&t, MDB_CORRUPTED, "info next_seq missing");
    int64_t now = now_ms();

    struct queue_batch *b = first;
    size_t stored = 0;
    for (size_t i = 0; i < count && !t.rc; i++, b = b->next_) {
        batch_reset(b);
        /* Quota before the first write, measured in this txn (so it includes
         * the batches before this one): a refused batch leaves nothing
         * behind and its neighbours carry on. */
        uint64_t used = 0;
        int rc = used_bytes(q, t.txn, &used);
        if (rc) {
            tx_fail(&t, rc, "mdb_stat");
            break;
        }
        uint64_t est = batch_estimate(&t, b);
        if (t.rc)
            break;
        if (est > 0 && used + est > q->quota) {
            b->status = QUEUE_ERR_QUOTA;
            bool small = est < 10 * MIB;
            snprintf(b->err, sizeof b->err,
                     "queue over quota: %llu MiB used of %llu MiB (request needs ~%llu %s)",
                     (unsigned long long)mib_up(used), (unsigned long long)(q->quota / MIB),
                     (unsigned long long)(small ? (est + 1023) / 1024 : mib_up(est)),
                     small ? "KiB" : "MiB");
            continue;
        }
        store_batch(&t, b, &next_seq, now);
        stored += b->nnew;
    }
    if (!t.rc && stored == 0) {
        /* Only duplicates (their originals are committed already: groups
         * commit one after another, and a commit whose sync failed stops
         * every later write, this transaction included) or refusals:
         * nothing to make durable, spare the fsync. */
        tx_abort(&t);
        return 0;
    }
    tx_put_u64(&t, "next_seq", next_seq);
    if (tx_commit(&t)) {
        *status = tx_status(&t, msg, msglen);
        return t.rc;
    }
    return 0;
}

static void commit_group(struct queue *q, struct queue_batch *group, size_t n)
{
    char msg[256];
    int status;
    if (run_txn(q, group, n, msg, sizeof msg, &status) == 0)
        return;
    /* The shared txn failed after some batch had started writing. Redo each
     * batch in its own txn so the failure stays with the batch that causes
     * it (with n == 1 that is this very batch, no need to try again). */
    struct queue_batch *b = group;
    for (size_t i = 0; i < n; i++, b = b->next_) {
        if (n == 1) {
            batch_fail(b, status, msg);
            break;
        }
        struct queue_batch *saved = b->next_;
        b->next_ = NULL;
        if (run_txn(q, b, 1, msg, sizeof msg, &status) != 0)
            batch_fail(b, status, msg);
        b->next_ = saved;
    }
}

static uint64_t batch_bytes(const struct queue_batch *b)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < b->nitems; i++)
        sum += b->items[i].xml_len;
    return sum;
}

static void *committer_main(void *arg)
{
    struct queue *q = arg;
    pthread_setname_np(pthread_self(), "mlc-commit"); /* for top -H, perf, gdb */
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->head && (!q->hold || q->closing)) {
            /* Take every waiting batch (bounded by GROUP_MAX_BYTES so one
             * txn's dirty pages stay in memory bounds; at least one). */
            struct queue_batch *group = q->head, *last = q->head;
            uint64_t bytes = batch_bytes(last);
            size_t n = 1;
            while (last->next_ && bytes + batch_bytes(last->next_) <= GROUP_MAX_BYTES) {
                last = last->next_;
                bytes += batch_bytes(last);
                n++;
            }
            q->head = last->next_;
            if (!q->head)
                q->tail = NULL;
            last->next_ = NULL;
            q->committing_since_ms = group->submitted_ms_;
            /* No lock during the txn: submitters keep queueing the next group
             * while this one is being written and fsync'd. */
            pthread_mutex_unlock(&q->mu);

            commit_group(q, group, n);
            pthread_mutex_lock(&q->mu);
            q->committing_since_ms = 0;
            pthread_mutex_unlock(&q->mu);

            /* Callbacks after the commit, with nothing held; read next_
             * first, the batch may be freed by its callback. */
            for (struct queue_batch *b = group, *next; b; b = next) {
                next = b->next_;
                b->next_ = NULL;
                b->done(b, b->ud);
            }
            pthread_mutex_lock(&q->mu);
            continue;
        }
        if (q->closing)
            break;
        pthread_cond_wait(&q->cv, &q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Submitting                                                                */

static int check_str(const char *s, const char *name, size_t i, bool key,
                     char *err, size_t len)
{
    if (!s)
        return 0;
    size_t n = strlen(s);
    if (n > STR_MAX) {
        util_seterr(err, len, "item %zu: %s longer than %d bytes", i, name, STR_MAX);
        return -1;
    }
    if (key && memchr(s, KEY_SEP, n)) {
        util_seterr(err, len, "item %zu: %s contains byte 0x1f", i, name);
        return -1;
    }
    return 0;
}

static int check_batch(struct queue *q, const struct queue_batch *b, char *err,
                       size_t len)
{
    if (b->nitems == 0 || !b->items) {
        util_seterr(err, len, "empty batch");
        return -1;
    }
    for (size_t i = 0; i < b->nitems; i++) {
        const struct queue_item *it = &b->items[i];
        if (!it->docnum || !it->docnum[0]) {
            util_seterr(err, len, "item %zu: empty DOCNUM", i);
            return -1;
        }
        if (check_str(it->mandt, "MANDT", i, true, err, len) ||
            check_str(it->sndprn, "SNDPRN", i, true, err, len) ||
            check_str(it->docnum, "DOCNUM", i, true, err, len) ||
            check_str(it->mestyp, "MESTYP", i, false, err, len) ||
            check_str(it->idoctyp, "IDOCTYP", i, false, err, len) ||
            check_str(it->cimtyp, "CIMTYP", i, false, err, len) ||
            check_str(it->credat, "CREDAT", i, false, err, len) ||
            check_str(it->cretim, "CRETIM", i, false, err, len) ||
            check_str(it->keys, "keys", i, false, err, len))
            return -1;
        size_t klen = (it->mandt ? strlen(it->mandt) : 0) +
                      (it->sndprn ? strlen(it->sndprn) : 0) + strlen(it->docnum) + 2;
        if (klen > q->maxkey) {
            util_seterr(err, len, "item %zu: MANDT+SNDPRN+DOCNUM longer than %zu bytes",
                   i, q->maxkey);
            return -1;
        }
        if (!it->xml && it->xml_len) {
            util_seterr(err, len, "item %zu: no XML", i);
            return -1;
        }
        if (it->xml_len >= 0xffffffffu) {
            util_seterr(err, len, "item %zu: XML of 4 GiB or more", i);
            return -1;
        }
        if ((!it->model && it->model_len) || it->model_len >= 0xffffffffu) {
            util_seterr(err, len, "item %zu: bad model", i);
            return -1;
        }
        if (it->state != QUEUE_PENDING && it->state != QUEUE_IGNORED) {
            util_seterr(err, len, "item %zu: initial state must be pending or ignored", i);
            return -1;
        }
    }
    return 0;
}

int queue_submit(struct queue *q, struct queue_batch *b)
{
    if (!q || !b)
        return QUEUE_ERR_INVALID;
    b->status = QUEUE_OK;
    b->nnew = b->ndup = 0;
    b->err[0] = '\0';
    b->next_ = NULL;
    if (q->readonly) {
        util_seterr(b->err, sizeof b->err, "queue is open readonly");
        return QUEUE_ERR_INVALID;
    }
    if (!b->done) {
        util_seterr(b->err, sizeof b->err, "batch without done callback");
        return QUEUE_ERR_INVALID;
    }
    /* Validate here, on the caller's thread: the committer must only meet
     * failures that LMDB or the quota decide. */
    if (check_batch(q, b, b->err, sizeof b->err))
        return QUEUE_ERR_INVALID;

    b->submitted_ms_ = now_ms();
    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        util_seterr(b->err, sizeof b->err, "queue is shutting down");
        return QUEUE_ERR_CLOSED;
    }
    if (q->tail)
        q->tail->next_ = b;
    else
        q->head = b;
    q->tail = b;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return QUEUE_OK;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void append_done(struct queue_batch *b, void *ud)
{
    (void)b;
    struct waiter *w = ud;
    /* Signal under the mutex: once it is released the waiter may return and
     * its stack (w, b) is gone, so nothing touches them after the unlock. */
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int queue_append(struct queue *q, struct queue_item *items, size_t n,
                 size_t *ndup, char *err, size_t errlen)
{
    struct waiter w = { .done = 0 };
    struct queue_batch b = { .items = items, .nitems = n, .done = append_done, .ud = &w };
    if (ndup)
        *ndup = 0;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = queue_submit(q, &b);
    if (rc == QUEUE_OK) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = b.status;
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    if (rc != QUEUE_OK)
        util_seterr(err, errlen, "%s", b.err);
    else if (ndup)
        *ndup = b.ndup;
    return rc;
}

void queue_hold(struct queue *q, int on)
{
    if (!q || q->readonly)
        return;
    pthread_mutex_lock(&q->mu);
    q->hold = on ? 1 : 0;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ------------------------------------------------------------------------ */
/* Opening and closing                                                       */

static int mkdir_p(const char *path, mode_t mode)
{
    char *p = strdup(path);
    if (!p)
        return ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) != 0 && errno != EEXIST) {
                rc = errno;
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            rc = errno;
        else if (!S_ISDIR(st.st_mode))
            rc = ENOTDIR;
    }
    return rc;
}

static const char *dbi_names[] = { "rec", "doc", "dedupe", "bystate" };
static const char *opt_dbi_names[] = { "keystate", "links", "audit", "auditbyseq", "runs",
                                        "model" };

/* Open the DBIs and check (or, read-write on a new store, write) the format.
 * Runs in one txn: a read-write open creates all of it or nothing. */
static int init_store(struct queue *q, char *err, size_t len)
{
    struct tx t;
    bool ro = q->readonly;
    if (tx_begin(q, &t, ro)) {
        tx_status(&t, err, len);
        return QUEUE_ERR_STORAGE;
    }
    int rc = mdb_dbi_open(t.txn, NULL, 0, &q->main_dbi);
    if (rc) {
        tx_fail(&t, rc, "mdb_dbi_open(main)");
        goto lmdb_error;
    }
    /* info first, without MDB_CREATE: the version must be checked before
     * anything is created in a store some newer binary may have laid out. */
    rc = mdb_dbi_open(t.txn, "info", 0, &q->info);
    bool fresh = false;
    if (rc == MDB_NOTFOUND) {
        MDB_stat st;
        if (ro || (mdb_stat(t.txn, q->main_dbi, &st) == 0 && st.ms_entries > 0)) {
            util_seterr(err, len, "%s is not an ml-connector queue (no info database)",
                   q->path);
            tx_abort(&t);
            return QUEUE_ERR_STORAGE;
        }
        fresh = true;
        rc = mdb_dbi_open(t.txn, "info", MDB_CREATE, &q->info);
    }
    if (rc) {
        tx_fail(&t, rc, "mdb_dbi_open(info)");
        goto lmdb_error;
    }
    if (!fresh) {
        MDB_val k = { 6, "format" }, v;
        if (!tx_get(&t, q->info, "mdb_get(info/format)", &k, &v)) {
            if (t.rc)
                goto lmdb_error;
            util_seterr(err, len, "%s: queue format version missing", q->path);
            tx_abort(&t);
            return QUEUE_ERR_STORAGE;
        }
        uint32_t ver = v.mv_size == 4 ? get_be32(v.mv_data) : 0;
        if (ver > QUEUE_FORMAT_VERSION) {
            util_seterr(err, len, "queue format %u is newer than this binary (%u): upgrade ml-connector",
                   ver, QUEUE_FORMAT_VERSION);
            tx_abort(&t);
            return QUEUE_ERR_VERSION;
        }
        if (ver < QUEUE_FORMAT_VERSION) {
            /* Migrations from older formats go here (none exist yet). */
            util_seterr(err, len, "%s: unknown queue format %u", q->path, ver);
            tx_abort(&t);
            return QUEUE_ERR_STORAGE;
        }
    }
    MDB_dbi *handles[] = { &q->rec, &q->doc, &q->dedupe, &q->bystate };
    for (size_t i = 0; i < 4; i++) {
        rc = mdb_dbi_open(t.txn, dbi_names[i], ro ? 0 : MDB_CREATE, handles[i]);
        if (rc == MDB_NOTFOUND) {
            util_seterr(err, len, "%s: queue incomplete (no %s database)", q->path,
                   dbi_names[i]);
            tx_abort(&t);
            return QUEUE_ERR_STORAGE;
        }
        if (rc) {
            tx_fail(&t, rc, "mdb_dbi_open");
            goto lmdb_error;
        }
    }
    /* DBIs added to format 1 after its release (issue 4). Additive: a binary
     * that predates them never opens them, so the format stays 1. A
     * read-write open creates whichever are missing, in this same txn; a
     * readonly open never creates anything and reads a missing one as
     * empty (NO_DBI). */
    MDB_dbi *opt[] = { &q->keystate, &q->links, &q->audit, &q->auditbyseq, &q->runs,
                       &q->model };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        rc = mdb_dbi_open(t.txn, opt_dbi_names[i], ro ? 0 : MDB_CREATE, opt[i]);
        if (rc == MDB_NOTFOUND && ro) {
            *opt[i] = NO_DBI;
            continue;
        }
        if (rc) {
            tx_fail(&t, rc, "mdb_dbi_open");
            goto lmdb_error;
        }
    }
    if (!ro) {
        /* A real write at every read-write open, so the commit below writes
         * and syncs a fresh meta page. A restart after a failed meta sync
         * (fail-stop) reads the store through the page cache, where the
         * failed commit may still be — visible, its data pages synced, its
         * meta page maybe not on disk. Until a new meta page over that tree
         * is on disk, a resend must not be answered "duplicate"; from here
         * on it is. (An empty txn would write no meta page at all.) */
        tx_put_u64(&t, "opened_ms", (uint64_t)now_ms());
    }
    if (fresh) {
        unsigned char vb[4];
        put_be32(vb, QUEUE_FORMAT_VERSION);
        MDB_val k = { 6, "format" }, v = { 4, vb };
        tx_put(&t, q->info, "mdb_put(info/format)", &k, &v, 0);
        tx_put_u64(&t, "next_seq", 1);
        for (int s = 0; s < QUEUE_NSTATES; s++) {
            char name[32];
            count_key(name, sizeof name, s);
            tx_put_u64(&t, name, 0);
        }
    }
    if (ro) {
        /* Committing a read txn keeps the DBI handles it opened. */
        rc = mdb_txn_commit(t.txn);
        t.txn = NULL;
        pthread_rwlock_unlock(&q->maplock);
        if (rc) {
            tx_fail(&t, rc, "mdb_txn_commit(read)");
            goto lmdb_error;
        }
        return QUEUE_OK;
    }
    /* Durable like every commit: a created store is complete on disk before
     * the first batch can be acknowledged. */
    if (tx_commit(&t))
        goto lmdb_error;
    return QUEUE_OK;

lmdb_error:
    tx_abort(&t);
    return tx_status(&t, err, len);
}

static void queue_free(struct queue *q)
{
    if (q->env)
        mdb_env_close(q->env);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->wmu);
    pthread_rwlock_destroy(&q->maplock);
    free(q->path);
    free(q);
}

int queue_open_ex(const struct queue_opts *opts, struct queue **out, char *err,
                  size_t errlen)
{
    if (!out)
        return QUEUE_ERR_INVALID;
    *out = NULL;
    if (!opts || !opts->path || !opts->path[0]) {
        util_seterr(err, errlen, "queue: no path");
        return QUEUE_ERR_INVALID;
    }
    if (!opts->readonly && opts->max_size_bytes == 0) {
        util_seterr(err, errlen, "queue: max_size_bytes must be > 0");
        return QUEUE_ERR_INVALID;
    }
    struct queue *q = calloc(1, sizeof *q);
    if (!q || !(q->path = strdup(opts->path))) {
        free(q);
        util_seterr(err, errlen, "queue: out of memory");
        return QUEUE_ERR_STORAGE;
    }
    int status = QUEUE_ERR_STORAGE;
    q->readonly = opts->readonly ? 1 : 0;
    q->quota = opts->max_size_bytes;
    pthread_rwlock_init(&q->maplock, NULL);
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->wmu, NULL);
    pthread_cond_init(&q->cv, NULL);

    int rc;
    if (q->readonly) {
        /* Never create anything in readonly mode: say clearly there is none. */
        char f[4096];
        struct stat st;
        snprintf(f, sizeof f, "%s/data.mdb", opts->path);
        if (stat(f, &st) != 0) {
            util_seterr(err, errlen, "no queue at %s (%s: %s)", opts->path, f, strerror(errno));
            goto fail;
        }
    } else if ((rc = mkdir_p(opts->path, 0700)) != 0) {
        util_seterr(err, errlen, "cannot create queue directory %s: %s", opts->path,
               strerror(rc));
        goto fail;
    }

    if ((rc = mdb_env_create(&q->env)) != 0) {
        q->env = NULL;
        util_seterr(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
        goto fail;
    }
    uint64_t map = opts->map_size_bytes;
    if (!map && q->quota) {
        /* 2 x quota: room for copy-on-write and for free pages held by
         * long readers; MAP_FULL stays a backstop, the quota decides. */
        map = q->quota > (UINT64_MAX - MAP_EXTRA) / 2 ? UINT64_MAX : 2 * q->quota + MAP_EXTRA;
        if (map > (uint64_t)SIZE_MAX / 2)
            map = (uint64_t)SIZE_MAX / 2;
    }
    if (map) {
        long ps = sysconf(_SC_PAGESIZE);
        if (ps > 0)
            map = (map + (uint64_t)ps - 1) / (uint64_t)ps * (uint64_t)ps;
        rc = mdb_env_set_mapsize(q->env, (size_t)map);
    }
    if (!rc)
        rc = mdb_env_set_maxdbs(q->env, MAX_DBS);
    /* Reader slots are taken per read txn (MDB_NOTLS), not per thread:
     * 256 covers every thread of the server plus concurrent CLI readers. */
    if (!rc)
        rc = mdb_env_set_maxreaders(q->env, 256);
    if (rc) {
        util_seterr(err, errlen, "queue setup: %s", mdb_strerror(rc));
        goto fail;
    }
    /* MDB_NOTLS: read txns from any thread (HTTP, delivery, admin).
     * MDB_NOMETASYNC: tx_commit syncs the meta page itself, except for lazy
     * (delivery) commits. No NOSYNC, no WRITEMAP: data pages are always
     * synced before the meta page that points at them is written. */
    unsigned flags = MDB_NOTLS | (q->readonly ? MDB_RDONLY : MDB_NOMETASYNC);
    rc = mdb_env_open(q->env, opts->path, flags, 0600);
    if (rc) {
        util_seterr(err, errlen, "cannot open queue %s: %s", opts->path, mdb_strerror(rc));
        goto fail;
    }
    /* Free reader slots of processes that died inside a read txn (they would
     * pin old pages forever and make the file grow). */
    int dead = 0;
    rc = mdb_reader_check(q->env, &dead);
    if (rc && !q->readonly) {
        util_seterr(err, errlen, "mdb_reader_check: %s", mdb_strerror(rc));
        goto fail;
    }
    MDB_stat est;
    if ((rc = mdb_env_stat(q->env, &est)) != 0) {
        util_seterr(err, errlen, "mdb_env_stat: %s", mdb_strerror(rc));
        goto fail;
    }
    q->psize = est.ms_psize;
    q->maxkey = (size_t)mdb_env_get_maxkeysize(q->env);
    if (q->maxkey > 511)
        q->maxkey = 511; /* dedupe_key's buffer; LMDB's default is 511 */

    if ((status = init_store(q, err, errlen)) != QUEUE_OK)
        goto fail; /* QUEUE_ERR_VERSION among others */
    status = QUEUE_ERR_STORAGE;

    /* Quota state at open, so /readyz is right before the first commit. */
    struct tx t;
    if (tx_begin(q, &t, true) == 0) {
        uint64_t used;
        if (used_bytes(q, t.txn, &used) == 0)
            publish_used(q, used);
        tx_abort(&t);
    }

    if (!q->readonly) {
        if ((rc = pthread_create(&q->committer, NULL, committer_main, q)) != 0) {
            util_seterr(err, errlen, "queue: cannot start committer: %s", strerror(rc));
            goto fail;
        }
        q->started = 1;
    }
    *out = q;
    return QUEUE_OK;

fail:
    queue_free(q);
    return status;
}

struct queue *queue_open(const struct queue_opts *opts, char *err, size_t errlen)
{
    struct queue *q;
    queue_open_ex(opts, &q, err, errlen);
    return q;
}

void queue_close(struct queue *q)
{
    if (!q)
        return;
    if (q->started) {
        pthread_mutex_lock(&q->mu);
        q->closing = 1; /* also overrides a hold: everything queued commits */
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
        pthread_join(q->committer, NULL);
    }
    queue_free(q);
}

int64_t queue_commit_wait_ms(struct queue *q)
{
    if (!q || q->readonly) return 0;
    pthread_mutex_lock(&q->mu);
    int64_t since = q->committing_since_ms ? q->committing_since_ms : (q->head ? q->head->submitted_ms_ : 0);
    pthread_mutex_unlock(&q->mu);
    return since ? now_ms() - since : 0;
}

int queue_failed(const struct queue *q)
{
    return q ? atomic_load(&((struct queue *)q)->failed) : 0;
}

int queue_over_quota(const struct queue *q)
{
    return q ? atomic_load(&((struct queue *)q)->over) : 0;
}

uint64_t queue_commit_count(const struct queue *q)
{
    return q ? atomic_load(&((struct queue *)q)->commits) : 0;
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

int queue_stats(struct queue *q, struct queue_stats *out, char *err, size_t errlen)
{
    if (!q || !out)
        return QUEUE_ERR_INVALID;
    memset(out, 0, sizeof *out);
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    for (int s = 0; s < QUEUE_NSTATES; s++) {
        char name[32];
        count_key(name, sizeof name, s);
        out->count[s] = tx_get_u64(&t, name);
    }
    out->next_seq = tx_get_u64(&t, "next_seq");
    if (!t.rc) {
        int rc = used_bytes(q, t.txn, &out->used_bytes);
        if (rc)
            tx_fail(&t, rc, "mdb_stat");
    }
    MDB_envinfo ei;
    if (!t.rc && mdb_env_info(q->env, &ei) == 0)
        out->map_bytes = ei.me_mapsize;
    out->quota_bytes = q->quota;
    tx_abort(&t); /* read-only: nothing to commit */
    if (t.rc)
        return tx_status(&t, err, errlen);
    return QUEUE_OK;
}

/* Decode a stored record header; a damaged or newer one fails t. */
static int decode_rec(struct tx *t, const MDB_val *v, struct rec *r)
{
    int d = rec_decode(v->mv_data, v->mv_size, r);
    if (d == DEC_NEWER) {
        tx_fail(t, MDB_VERSION_MISMATCH, "record encoding newer than this binary");
        return QUEUE_ERR_VERSION;
    }
    if (d != DEC_OK) {
        tx_fail(t, MDB_CORRUPTED, "record encoding");
        return QUEUE_ERR_STORAGE;
    }
    return QUEUE_OK;
}

/* Decode the rec value of seq in t, or fail t (a record that bystate or
 * dedupe points to must exist: anything else is corruption). */
static int load_rec(struct tx *t, uint64_t seq, struct rec *r, bool must_exist)
{
    unsigned char sk[8];
    put_be64(sk, seq);
    MDB_val k = { 8, sk }, v;
    if (!tx_get(t, t->q->rec, "mdb_get(rec)", &k, &v)) {
        if (t->rc)
            return QUEUE_ERR_STORAGE;
        if (must_exist) {
            tx_fail(t, MDB_CORRUPTED, "record missing");
            return QUEUE_ERR_STORAGE;
        }
        return QUEUE_ERR_NOTFOUND;
    }
    return decode_rec(t, &v, r);
}

int queue_list(struct queue *q, int state, uint64_t after_seq, size_t limit,
               int (*cb)(const struct queue_record *r, void *ud), void *ud,
               char *err, size_t errlen)
{
    if (!q || !cb || state >= QUEUE_NSTATES)
        return QUEUE_ERR_INVALID;
    if (after_seq == UINT64_MAX)
        return QUEUE_OK;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    MDB_cursor *cur = NULL;
    MDB_dbi dbi = state >= 0 ? q->bystate : q->rec;
    int rc = mdb_cursor_open(t.txn, dbi, &cur);
    if (rc) {
        tx_fail(&t, rc, "mdb_cursor_open");
        tx_abort(&t);
        return tx_status(&t, err, errlen);
    }
    unsigned char kb[9];
    MDB_val k, v;
    if (state >= 0) {
        state_key(kb, state, after_seq + 1);
        k = (MDB_val){ 9, kb };
    } else {
        put_be64(kb, after_seq + 1);
        k = (MDB_val){ 8, kb };
    }
    struct buf sb = { 0 };
    int status = QUEUE_OK;
    size_t n = 0;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && (limit == 0 || n < limit)) {
        uint64_t seq;
        struct rec r;
        if (state >= 0) {
            if (k.mv_size != 9 || ((unsigned char *)k.mv_data)[0] != state)
                break;
            seq = get_be64((unsigned char *)k.mv_data + 1);
            if ((status = load_rec(&t, seq, &r, true)) != QUEUE_OK)
                break;
        } else {
            if (k.mv_size != 8) {
                tx_fail(&t, MDB_CORRUPTED, "rec key length");
                break;
            }
            seq = get_be64(k.mv_data);
            int d = rec_decode(v.mv_data, v.mv_size, &r);
            if (d != DEC_OK) {
                tx_fail(&t, d == DEC_NEWER ? MDB_VERSION_MISMATCH : MDB_CORRUPTED,
                        "record encoding");
                status = d == DEC_NEWER ? QUEUE_ERR_VERSION : QUEUE_ERR_STORAGE;
                break;
            }
        }
        /* Copy out of the map: the callback sees NUL-terminated strings. */
        char *p = buf_need(&sb, rec_strbytes(&r));
        if (!p) {
            util_seterr(err, errlen, "queue_list: out of memory");
            status = QUEUE_ERR_STORAGE;
            break;
        }
        struct queue_record out;
        rec_export(&r, seq, &out, p);
        n++;
        if (cb(&out, ud))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND)
        tx_fail(&t, rc, "mdb_cursor_get");
    mdb_cursor_close(cur);
    tx_abort(&t);
    free(sb.p);
    if (t.rc) {
        int s = tx_status(&t, err, errlen);
        return status == QUEUE_ERR_VERSION ? status : s;
    }
    return status;
}

/* queue_get inside the read transaction t (not ended here). */
static int get_in(struct queue *q, struct tx *t, uint64_t seq, int what, struct queue_record **out,
                  char *err, size_t errlen)
{
    int with_xml = (what & QUEUE_GET_XML) != 0;
    int with_model = (what & QUEUE_GET_MODEL) != 0;
    *out = NULL;
    struct rec r;
    int status = load_rec(t, seq, &r, false);
    if (status == QUEUE_ERR_NOTFOUND && !t->rc) {
        util_seterr(err, errlen, "no record with seq %llu", (unsigned long long)seq);
        return QUEUE_ERR_NOTFOUND;
    }
    MDB_val mv = { 0, NULL };
    if (status == QUEUE_OK && with_model) {
        unsigned char sk[8];
        put_be64(sk, seq);
        MDB_val k = { 8, sk };
        if (q->model == NO_DBI || !tx_get(t, q->model, "mdb_get(model)", &k, &mv))
            mv.mv_size = 0;
        if (!mv.mv_size && !t->rc)
            with_xml = 1; /* none stored: the XML instead */
    }
    MDB_val xv = { 0, NULL };
    if (status == QUEUE_OK && with_xml) {
        unsigned char sk[8];
        put_be64(sk, seq);
        MDB_val k = { 8, sk };
        if (!tx_get(t, q->doc, "mdb_get(doc)", &k, &xv) && !t->rc)
            tx_fail(t, MDB_CORRUPTED, "doc missing");
        else if (!t->rc && xv.mv_size != r.xml_len)
            tx_fail(t, MDB_CORRUPTED, "doc length differs from record");
    }

    if (t->rc) {
        int s = tx_status(t, err, errlen);
        return status == QUEUE_ERR_VERSION ? status : s;
    }
    /* One allocation: the struct, then the strings, then the XML, then the
     * model (8-aligned; unpacked strings point into it, so it lives as long
     * as the record). */
    size_t xoff = sizeof **out + rec_strbytes(&r);
    size_t moff = (xoff + (with_xml ? xv.mv_size + 1 : 0) + 7) & ~(size_t)7;
    size_t sz = mv.mv_size ? moff + mv.mv_size : moff;
    struct queue_record *rec = malloc(sz);
    if (!rec) {
        util_seterr(err, errlen, "queue_get: out of memory");
        return QUEUE_ERR_STORAGE;
    }
    char *p = (char *)(rec + 1);
    rec_export(&r, seq, rec, p);
    if (with_xml) {
        char *x = p + rec_strbytes(&r);
        if (xv.mv_size)
            memcpy(x, xv.mv_data, xv.mv_size);
        x[xv.mv_size] = '\0';
        rec->xml = x;
        rec->xml_len = xv.mv_size;
    }
    if (mv.mv_size) {
        memcpy((char *)rec + moff, mv.mv_data, mv.mv_size);
        rec->model = (char *)rec + moff;
        rec->model_len = mv.mv_size;
    }
    *out = rec;
    return QUEUE_OK;
}

int queue_get(struct queue *q, uint64_t seq, int what, struct queue_record **out,
              char *err, size_t errlen)
{
    if (!q || !out)
        return QUEUE_ERR_INVALID;
    *out = NULL;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    int status = get_in(q, &t, seq, what, out, err, errlen);
    tx_abort(&t);
    return status;
}

void queue_record_free(struct queue_record *r)
{
    free(r);
}

int queue_find(struct queue *q, const char *mandt, const char *sndprn,
               const char *docnum, uint64_t *seq, char *err, size_t errlen)
{
    if (!q || !docnum || !seq)
        return QUEUE_ERR_INVALID;
    size_t klen = (mandt ? strlen(mandt) : 0) + (sndprn ? strlen(sndprn) : 0) +
                  strlen(docnum) + 2;
    if (klen > q->maxkey)
        return QUEUE_ERR_NOTFOUND;
    unsigned char dk[512];
    MDB_val k = { dedupe_key(dk, mandt, sndprn, docnum), dk }, v;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    int found = tx_get(&t, q->dedupe, "mdb_get(dedupe)", &k, &v);
    if (found && v.mv_size != 8)
        tx_fail(&t, MDB_CORRUPTED, "dedupe value length");
    if (found && !t.rc)
        *seq = get_be64(v.mv_data);
    tx_abort(&t);
    if (t.rc)
        return tx_status(&t, err, errlen);
    if (!found) {
        util_seterr(err, errlen, "no record for %s/%s/%s", mandt ? mandt : "",
               sndprn ? sndprn : "", docnum);
        return QUEUE_ERR_NOTFOUND;
    }
    return QUEUE_OK;
}

/* ------------------------------------------------------------------------ */
/* State changes                                                             */

static void apply_bookkeeping(struct tx *t, uint64_t seq, const struct rec *r,
                              const struct queue_change *c);

/*
 * Change one record inside t. With c == NULL: queue_set_state semantics (a
 * record already in to_state is untouched; to pending resets attempts, error
 * and next_attempt). With c: apply c's fields as given. Returns 1 changed,
 * 0 skipped, -1 no such record (t not failed), or -1 with t->rc set.
 */
/* The cursors of one change_many txn: on rec, and two on bystate (one
 * deletes in the old state's range, one inserts in the new one's; each
 * stays near its keys, see tx_cput). */
struct chcur {
    MDB_cursor *rec, *bdel, *bput;
};

static int change_one(struct tx *t, struct chcur *cc, uint64_t seq, int from, int to,
                      const struct queue_change *c, int64_t now, struct buf *sb)
{
    MDB_cursor *cur = cc->rec;
    struct rec r;
    /* Through a cursor on rec: one search finds the record, and the put
     * below replaces it where the cursor stands (MDB_CURRENT) instead of
     * searching again. */
    unsigned char sk[8];
    put_be64(sk, seq);
    MDB_val k = { 8, sk }, cv;
    int grc = mdb_cursor_get(cur, &k, &cv, MDB_SET_KEY);
    if (grc == MDB_NOTFOUND)
        return -1;
    if (grc) {
        tx_fail(t, grc, "mdb_cursor_get(rec)");
        return -1;
    }
    if (decode_rec(t, &cv, &r) != QUEUE_OK)
        return -1;
    if (from >= 0 && r.state != from)
        return 0;
    if (!c && r.state == to)
        return 0;
    int old = r.state;
    r.state = to;
    r.updated_ms = now;
    if (c) {
        r.attempts += c->add_attempts;
        if (c->next_attempt_ms >= 0)
            r.next_attempt_ms = c->next_attempt_ms;
        if (c->error) {
            r.s[S_ERROR] = c->error;
            r.n[S_ERROR] = (uint32_t)cut_len(c->error, ERROR_MAX);
        }
    } else if (to == QUEUE_PENDING) {
        r.attempts = 0;
        r.next_attempt_ms = 0;
        r.s[S_ERROR] = "";
        r.n[S_ERROR] = 0;
    }
    /* Encode into scratch memory, not with MDB_RESERVE: r's strings still
     * point into the old value, which the put may overwrite in place. */
    size_t sz = rec_size(&r);
    unsigned char *p = (unsigned char *)buf_need(sb, sz);
    if (!p) {
        tx_fail(t, ENOMEM, "encode record");
        return -1;
    }
    rec_encode(&r, p);
    MDB_val v = { sz, p };
    k = (MDB_val){ 8, sk };
    int prc = mdb_cursor_put(cur, &k, &v, MDB_CURRENT);
    if (prc) {
        tx_fail(t, prc, "mdb_cursor_put(rec)");
        return -1;
    }
    if (old != to) {
        static const unsigned char empty = 0;
        unsigned char bk[9];
        state_key(bk, old, seq);
        MDB_val bkv = { 9, bk }, ev = { 0, (void *)&empty };
        tx_cdel(t, cc->bdel, "mdb_del(bystate): entry missing", &bkv);
        state_key(bk, to, seq);
        tx_cput(t, cc->bput, "mdb_put(bystate)", &bkv, &ev, 0);
        t->delta[old]--;
        t->delta[to]++;
    }
    /* Delivery bookkeeping in the same txn. r's strings point into the old
     * value, which the put above may have overwritten: use the new copy. */
    if (c && !t->rc && (c->applied_keys || c->nlinks)) {
        struct rec nr;
        if (rec_decode(p, sz, &nr) != DEC_OK) {
            tx_fail(t, MDB_CORRUPTED, "record re-encoding");
            return -1;
        }
        apply_bookkeeping(t, seq, &nr, c);
    }
    return t->rc ? -1 : 1;
}

static int audit_put(struct tx *t, const struct queue_audit *a, size_t n, uint64_t *first_out);

static void chcur_close(struct chcur *cc)
{
    if (cc->rec)
        mdb_cursor_close(cc->rec);
    if (cc->bdel)
        mdb_cursor_close(cc->bdel);
    if (cc->bput)
        mdb_cursor_close(cc->bput);
    *cc = (struct chcur){ 0 };
}

/* Shared body of queue_set_state (c == NULL), queue_update and
 * queue_update_audited (a, na: audit entries written in the same txn;
 * *audit_dropped set when the quota kept them out). */
static int change_many(struct queue *q, const uint64_t *seqs, const struct queue_change *c,
                       size_t n, int from, int to, struct queue_audit *a, size_t na,
                       int *audit_dropped, size_t *changed, char *err, size_t errlen)
{
    /* Delivery's changes (c != NULL) commit lazily: see tx_commit. Replays
     * and other state moves by an operator are durable. */
    bool lazy = c != NULL;
    if (changed)
        *changed = 0;
    if (audit_dropped)
        *audit_dropped = 0;
    if (q->readonly) {
        util_seterr(err, errlen, "queue is open readonly");
        return QUEUE_ERR_INVALID;
    }
    if (n == 0 && na == 0)
        return QUEUE_OK;
    struct tx t;
    if (tx_begin(q, &t, false))
        return tx_status(&t, err, errlen);
    t.lazy = lazy;
    struct buf sb = { 0 };
    int64_t now = now_ms();
    size_t moved = 0;
    struct chcur cc = { 0 };
    int orc = 0;
    if (n && !(orc = mdb_cursor_open(t.txn, q->rec, &cc.rec)) &&
        !(orc = mdb_cursor_open(t.txn, q->bystate, &cc.bdel)))
        orc = mdb_cursor_open(t.txn, q->bystate, &cc.bput);
    if (orc)
        tx_fail(&t, orc, "mdb_cursor_open");
    for (size_t i = 0; i < n && !t.rc; i++) {
        uint64_t seq = c ? c[i].seq : seqs[i];
        int f = c ? c[i].from_state : from, to_s = c ? c[i].to_state : to;
        int r = change_one(&t, &cc, seq, f, to_s, c ? &c[i] : NULL, now, &sb);
        if (r < 0) {
            if (!t.rc) {
                /* Unknown seq: the whole call fails, nothing is applied. */
                chcur_close(&cc);
                tx_abort(&t);
                free(sb.p);
                util_seterr(err, errlen, "no record with seq %llu", (unsigned long long)seq);
                return QUEUE_ERR_NOTFOUND;
            }
            break;
        }
        moved += (size_t)r;
    }
    chcur_close(&cc); /* a write txn's cursors: closed before its end */
    free(sb.p);
    /* The audit of a delivery job rides in the same transaction as its
     * outcomes: one commit and one fsync instead of two. */
    uint64_t first = 0;
    int dropped = 0;
    if (na && !t.rc) {
        int r = audit_put(&t, a, na, &first);
        dropped = r == 1; /* over quota: the outcomes still go in */
    }
    if (moved == 0 && (na == 0 || dropped) && !t.rc) {
        tx_abort(&t); /* nothing changed: spare the fsync */
        if (audit_dropped)
            *audit_dropped = dropped;
        return QUEUE_OK;
    }
    /* A replay is durable like an append; a delivery outcome or claim is
     * lazy (tx_commit says why that is safe). */
    if (tx_commit(&t))
        return tx_status(&t, err, errlen);
    if (changed)
        *changed = moved;
    if (audit_dropped)
        *audit_dropped = dropped;
    for (size_t i = 0; na && !dropped && i < na; i++)
        a[i].id = first + i; /* only once they exist */
    return QUEUE_OK;
}

int queue_set_state(struct queue *q, const uint64_t *seqs, size_t n, int from_state,
                    int to_state, size_t *changed, char *err, size_t errlen)
{
    if (!q || (n && !seqs) || !state_ok(to_state) || from_state >= QUEUE_NSTATES) {
        util_seterr(err, errlen, "queue_set_state: bad argument");
        return QUEUE_ERR_INVALID;
    }
    return change_many(q, seqs, NULL, n, from_state, to_state, NULL, 0, NULL, changed, err, errlen);
}

static int check_link(const struct queue *q, const char *key, const char *value,
                      char *err, size_t errlen);

int queue_update(struct queue *q, const struct queue_change *c, size_t n,
                 size_t *changed, char *err, size_t errlen)
{
    return queue_update_audited(q, c, n, NULL, 0, NULL, changed, err, errlen);
}

int queue_update_audited(struct queue *q, const struct queue_change *c, size_t n,
                         struct queue_audit *a, size_t na, int *audit_dropped,
                         size_t *changed, char *err, size_t errlen)
{
    if (!q || (n && !c) || (na && !a)) {
        util_seterr(err, errlen, "queue_update: bad argument");
        return QUEUE_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if (!state_ok(c[i].to_state) || c[i].from_state >= QUEUE_NSTATES) {
            util_seterr(err, errlen, "queue_update: bad state in change %zu", i);
            return QUEUE_ERR_INVALID;
        }
        /* Everything the bookkeeping could refuse is refused here, before
         * the txn: inside it only LMDB can fail. */
        const char *s = c[i].applied_keys, *tok;
        size_t len;
        while (s && (len = next_token(&s, &tok)) > 0) {
            if (len > q->maxkey) {
                util_seterr(err, errlen, "queue_update: change %zu: business key longer than %zu bytes",
                       i, q->maxkey);
                return QUEUE_ERR_INVALID;
            }
        }
        if (c[i].nlinks && !c[i].links) {
            util_seterr(err, errlen, "queue_update: change %zu: nlinks without links", i);
            return QUEUE_ERR_INVALID;
        }
        for (size_t k = 0; k < c[i].nlinks; k++) {
            char why[128];
            if (check_link(q, c[i].links[k].key, c[i].links[k].value, why, sizeof why)) {
                util_seterr(err, errlen, "queue_update: change %zu link %zu: %s", i, k, why);
                return QUEUE_ERR_INVALID;
            }
        }
    }
    return change_many(q, NULL, c, n, -1, -1, a, na, audit_dropped, changed, err, errlen);
}

int queue_move_all(struct queue *q, int from_state, int to_state, size_t *changed,
                   char *err, size_t errlen)
{
    if (changed)
        *changed = 0;
    if (!q || !state_ok(from_state) || !state_ok(to_state)) {
        util_seterr(err, errlen, "queue_move_all: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (from_state == to_state)
        return QUEUE_OK;
    uint64_t *seqs = malloc(MOVE_CHUNK * sizeof *seqs);
    if (!seqs) {
        util_seterr(err, errlen, "queue_move_all: out of memory");
        return QUEUE_ERR_STORAGE;
    }
    size_t total = 0;
    int status = QUEUE_OK;
    for (;;) {
        /* Collect one chunk from bystate in a read txn, then move it in a
         * write txn of bounded size. A record that changed state in between
         * is skipped by change_one's from_state check. */
        struct tx t;
        if (tx_begin(q, &t, true)) {
            status = tx_status(&t, err, errlen);
            break;
        }
        MDB_cursor *cur;
        size_t n = 0;
        int rc = mdb_cursor_open(t.txn, q->bystate, &cur);
        if (rc == 0) {
            unsigned char kb[9];
            state_key(kb, from_state, 0);
            MDB_val k = { 9, kb }, v;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            while (rc == 0 && n < MOVE_CHUNK && k.mv_size == 9 &&
                   ((unsigned char *)k.mv_data)[0] == from_state) {
                seqs[n++] = get_be64((unsigned char *)k.mv_data + 1);
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            }
            mdb_cursor_close(cur);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
        if (rc)
            tx_fail(&t, rc, "scan bystate");
        tx_abort(&t);
        if (t.rc) {
            status = tx_status(&t, err, errlen);
            break;
        }
        if (n == 0)
            break;
        size_t moved = 0;
        status = change_many(q, seqs, NULL, n, from_state, to_state, NULL, 0, NULL, &moved, err, errlen);
        if (status == QUEUE_ERR_NOTFOUND) {
            /* bystate named it, so the record must exist (invariant I3). */
            util_seterr(err, errlen, "queue store inconsistent: bystate lists a missing record");
            status = QUEUE_ERR_STORAGE;
        }
        total += moved;
        if (status != QUEUE_OK || n < MOVE_CHUNK || moved == 0)
            break;
    }
    free(seqs);
    if (changed)
        *changed = total;
    return status;
}

/* ------------------------------------------------------------------------ */
/* Delivery support: keystate, links, audit, runs, retention                 */

/*
 * Values of the DBIs added for delivery (all integers big-endian; the first
 * byte is the value's encoding version, as in rec: a newer one is reported as
 * QUEUE_ERR_VERSION, any other inconsistency as corruption):
 *
 *   keystate  business key   -> KS_VERSION, 7 x 0, u64 seq,
 *                               then mandt, sndprn, docnum, credat, cretim,
 *                               each { u8 length, bytes } (cut at 255 bytes)
 *   links     "<party>:<nr>" -> the value text as given (<= LINK_MAX bytes)
 *   audit     id(8)          -> AUD_VERSION, u8 0, u16 0, i32 http_status,
 *                               i64 time_ms, u64 seq, u64 run_id,
 *                               i32 duration_ms, u32 0 (40 bytes), then kind,
 *                               docnum, key, operation, error_code, message
 *                               as { u32 length, bytes }, NULL_LEN = NULL
 *   auditbyseq seq(8) id(8)  -> "" (only for entries with seq != 0)
 *   runs      id(8)          -> RUN_VERSION, 7 x 0, i64 start_ms, i64 end_ms,
 *                               u64 delivered, failed, retried, superseded,
 *                               ignored (64 bytes), then trigger, result as
 *                               in audit
 *   info      "next_audit", "next_run" -> u64: the next id (absent = 1)
 *
 * Ids come from the info counters, not from the last key, so they keep
 * growing after queue_prune has emptied a table (paging by before_id and
 * replacing runs by id stay unambiguous).
 */
#define KS_VERSION  1
#define KS_HDR      16
#define AUD_VERSION 1
#define AUD_HDR     40
#define RUN_VERSION 1
#define RUN_HDR     64
#define NULL_LEN    0xffffffffu

/* A length-counted string; s == NULL is a NULL string (n 0). */
struct sv {
    const char *s;
    uint32_t n;
};

static struct sv sv_cut(const char *s, size_t max)
{
    struct sv v = { s, s ? (uint32_t)cut_len(s, max) : 0 };
    return v;
}

static size_t svs_size(const struct sv *v, int n)
{
    size_t sz = 0;
    for (int i = 0; i < n; i++)
        sz += 4 + v[i].n;
    return sz;
}

static void svs_encode(unsigned char *p, const struct sv *v, int n)
{
    for (int i = 0; i < n; i++) {
        put_be32(p, v[i].s ? v[i].n : NULL_LEN);
        p += 4;
        if (v[i].n)
            memcpy(p, v[i].s, v[i].n);
        p += v[i].n;
    }
}

/* The strings must end exactly at end. */
static int svs_decode(const unsigned char *p, const unsigned char *end, struct sv *v, int n)
{
    for (int i = 0; i < n; i++) {
        if (end - p < 4)
            return DEC_CORRUPT;
        uint32_t len = get_be32(p);
        p += 4;
        if (len == NULL_LEN) {
            v[i] = (struct sv){ NULL, 0 };
            continue;
        }
        if ((size_t)(end - p) < len)
            return DEC_CORRUPT;
        v[i] = (struct sv){ (const char *)p, len };
        p += len;
    }
    return p == end ? DEC_OK : DEC_CORRUPT;
}

static size_t svs_strbytes(const struct sv *v, int n)
{
    size_t sz = 0;
    for (int i = 0; i < n; i++)
        sz += (size_t)v[i].n + 1;
    return sz;
}

/* NUL-terminated copies into buf (svs_strbytes bytes); NULL stays NULL. */
static void svs_export(const struct sv *v, int n, const char **const *dst, char *buf)
{
    for (int i = 0; i < n; i++) {
        if (!v[i].s) {
            *dst[i] = NULL;
            continue;
        }
        if (v[i].n)
            memcpy(buf, v[i].s, v[i].n);
        buf[v[i].n] = '\0';
        *dst[i] = buf;
        buf += v[i].n + 1;
    }
}

static int dec_status(struct tx *t, int d, const char *what)
{
    if (d == DEC_NEWER) {
        tx_fail(t, MDB_VERSION_MISMATCH, what);
        return QUEUE_ERR_VERSION;
    }
    tx_fail(t, MDB_CORRUPTED, what);
    return QUEUE_ERR_STORAGE;
}

/* A failed tx's message; QUEUE_ERR_VERSION wins over the generic status. */
static int fail_status(struct tx *t, int status, char *err, size_t errlen)
{
    int s = tx_status(t, err, errlen);
    return status == QUEUE_ERR_VERSION ? status : s;
}

static int check_writable(const struct queue *q, const char *fn, char *err, size_t errlen)
{
    if (q->readonly) {
        util_seterr(err, errlen, "%s: queue is open readonly", fn);
        return QUEUE_ERR_INVALID;
    }
    return QUEUE_OK;
}

/* ---- keystate and links -------------------------------------------------- */

enum { K_MANDT, K_SNDPRN, K_DOCNUM, K_CREDAT, K_CRETIM, KS_NSTR };
static const int ks_rec_str[KS_NSTR] = { S_MANDT, S_SNDPRN, S_DOCNUM, S_CREDAT, S_CRETIM };

/* queue_update's bookkeeping for one applied change (r: the record as just
 * written). Validated by queue_update already: only LMDB can fail. */
static void apply_bookkeeping(struct tx *t, uint64_t seq, const struct rec *r,
                              const struct queue_change *c)
{
    struct queue *q = t->q;
    if (c->applied_keys) {
        unsigned char v[KS_HDR + KS_NSTR * (1 + KS_STR_MAX)];
        memset(v, 0, KS_HDR);
        v[0] = KS_VERSION;
        put_be64(v + 8, seq);
        size_t n = KS_HDR;
        for (int i = 0; i < KS_NSTR; i++) {
            const char *s = r->s[ks_rec_str[i]];
            size_t len = cut_n(s, r->n[ks_rec_str[i]], KS_STR_MAX);
            v[n++] = (unsigned char)len;
            if (len)
                memcpy(v + n, s, len);
            n += len;
        }
        const char *s = c->applied_keys, *tok;
        size_t len;
        while (!t->rc && (len = next_token(&s, &tok)) > 0) {
            MDB_val k = { len, (void *)tok }, val = { n, v };
            tx_put(t, q->keystate, "mdb_put(keystate)", &k, &val, 0);
        }
    }
    for (size_t i = 0; i < c->nlinks && !t->rc; i++) {
        const struct queue_link *l = &c->links[i];
        MDB_val k = { strlen(l->key), (void *)l->key };
        MDB_val val = { strlen(l->value), (void *)l->value };
        tx_put(t, q->links, "mdb_put(links)", &k, &val, 0);
    }
}

static int ks_decode(const MDB_val *v, struct queue_keystate *out)
{
    const unsigned char *p = v->mv_data, *end = p + v->mv_size;
    if (v->mv_size < KS_HDR)
        return DEC_CORRUPT;
    if (p[0] != KS_VERSION)
        return p[0] > KS_VERSION ? DEC_NEWER : DEC_CORRUPT;
    memset(out, 0, sizeof *out);
    out->seq = get_be64(p + 8);
    char *dst[KS_NSTR] = { out->mandt, out->sndprn, out->docnum, out->credat, out->cretim };
    const size_t cap[KS_NSTR] = { sizeof out->mandt, sizeof out->sndprn, sizeof out->docnum,
                                  sizeof out->credat, sizeof out->cretim };
    p += KS_HDR;
    for (int i = 0; i < KS_NSTR; i++) {
        if (end - p < 1)
            return DEC_CORRUPT;
        size_t len = *p++;
        if ((size_t)(end - p) < len)
            return DEC_CORRUPT;
        size_t c = cut_n((const char *)p, len, cap[i] - 1);
        memcpy(dst[i], p, c);
        dst[i][c] = '\0';
        p += len;
    }
    return p == end ? DEC_OK : DEC_CORRUPT;
}

/* Arguments of a keystate read: QUEUE_OK when a read is needed. */
static int keystate_check(struct queue *q, const char *key, struct queue_keystate *out,
                          char *err, size_t errlen)
{
    if (!q || !key || !key[0] || !out) {
        util_seterr(err, errlen, "queue_keystate_get: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (strlen(key) > q->maxkey || q->keystate == NO_DBI) {
        if (err && errlen) UTIL_CONCAT(err, errlen, "no keystate for ", key); /* common: no printf */
        return QUEUE_ERR_NOTFOUND;
    }
    return QUEUE_OK;
}

/* queue_keystate_get's read in t (a txn of its own, or a view's; not ended
 * here). */
static int keystate_in(struct queue *q, struct tx *t, const char *key, struct queue_keystate *out,
                       char *err, size_t errlen)
{
    MDB_val k = { strlen(key), (void *)key }, v;
    int found = tx_get(t, q->keystate, "mdb_get(keystate)", &k, &v), status = QUEUE_OK;
    if (found) {
        int d = ks_decode(&v, out);
        if (d != DEC_OK)
            status = dec_status(t, d, "keystate encoding");
    }
    if (t->rc)
        return fail_status(t, status, err, errlen);
    if (!found) {
        if (err && errlen) UTIL_CONCAT(err, errlen, "no keystate for ", key); /* common: no printf */
        return QUEUE_ERR_NOTFOUND;
    }
    return QUEUE_OK;
}

int queue_keystate_get(struct queue *q, const char *key, struct queue_keystate *out,
                       char *err, size_t errlen)
{
    int status = keystate_check(q, key, out, err, errlen);
    if (status != QUEUE_OK)
        return status;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    status = keystate_in(q, &t, key, out, err, errlen);
    tx_abort(&t);
    return status;
}

static int check_link(const struct queue *q, const char *key, const char *value,
                      char *err, size_t errlen)
{
    if (!key || !key[0]) {
        util_seterr(err, errlen, "empty link key");
        return -1;
    }
    if (strlen(key) > q->maxkey) {
        util_seterr(err, errlen, "link key longer than %zu bytes", q->maxkey);
        return -1;
    }
    if (!value) {
        util_seterr(err, errlen, "link %.200s: no value", key);
        return -1;
    }
    if (strnlen(value, LINK_MAX + 1) > LINK_MAX) {
        util_seterr(err, errlen, "link %.200s: value longer than %d bytes", key, LINK_MAX);
        return -1;
    }
    return 0;
}

/* Arguments of a link read: QUEUE_OK when a read is needed. */
static int link_check(struct queue *q, const char *key, char *val, size_t vallen,
                      char *err, size_t errlen)
{
    if (!q || !key || !key[0] || !val || vallen == 0) {
        util_seterr(err, errlen, "queue_link_get: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (strlen(key) > q->maxkey || q->links == NO_DBI) {
        if (err && errlen) UTIL_CONCAT(err, errlen, "no link for ", key); /* common: no printf */
        return QUEUE_ERR_NOTFOUND;
    }
    return QUEUE_OK;
}

/* queue_link_get's read in t (not ended here). */
static int link_in(struct queue *q, struct tx *t, const char *key, char *val, size_t vallen,
                   char *err, size_t errlen)
{
    MDB_val k = { strlen(key), (void *)key }, v;
    int found = tx_get(t, q->links, "mdb_get(links)", &k, &v), status = QUEUE_OK;
    if (found) {
        if (v.mv_size >= vallen) {
            util_seterr(err, errlen, "link %.200s: value of %zu bytes does not fit the buffer",
                   key, v.mv_size);
            status = QUEUE_ERR_INVALID;
        } else {
            if (v.mv_size)
                memcpy(val, v.mv_data, v.mv_size);
            val[v.mv_size] = '\0';
        }
    }
    if (t->rc)
        return tx_status(t, err, errlen);
    if (!found) {
        if (err && errlen) UTIL_CONCAT(err, errlen, "no link for ", key); /* common: no printf */
        return QUEUE_ERR_NOTFOUND;
    }
    return status;
}

int queue_link_get(struct queue *q, const char *key, char *val, size_t vallen,
                   char *err, size_t errlen)
{
    int status = link_check(q, key, val, vallen, err, errlen);
    if (status != QUEUE_OK)
        return status;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    status = link_in(q, &t, key, val, vallen, err, errlen);
    tx_abort(&t);
    return status;
}

/* ---- read views ---- */

struct queue_view {
    struct queue *q;
    struct tx t;
};

int queue_view_begin(struct queue *q, struct queue_view **out, char *err, size_t errlen)
{
    if (!q || !out)
        return QUEUE_ERR_INVALID;
    *out = NULL;
    struct queue_view *v = calloc(1, sizeof *v);
    if (!v) {
        util_seterr(err, errlen, "queue_view_begin: out of memory");
        return QUEUE_ERR_STORAGE;
    }
    v->q = q;
    if (tx_begin(q, &v->t, true)) {
        int status = tx_status(&v->t, err, errlen);
        free(v);
        return status;
    }
    *out = v;
    return QUEUE_OK;
}

void queue_view_end(struct queue_view *v)
{
    if (!v)
        return;
    tx_abort(&v->t);
    free(v);
}

int queue_view_get(struct queue_view *v, uint64_t seq, int what, struct queue_record **out,
                   char *err, size_t errlen)
{
    if (!v || !out)
        return QUEUE_ERR_INVALID;
    return get_in(v->q, &v->t, seq, what, out, err, errlen);
}

int queue_view_keystate_get(struct queue_view *v, const char *key, struct queue_keystate *out,
                            char *err, size_t errlen)
{
    int status = keystate_check(v ? v->q : NULL, key, out, err, errlen);
    return status != QUEUE_OK ? status : keystate_in(v->q, &v->t, key, out, err, errlen);
}

int queue_view_link_get(struct queue_view *v, const char *key, char *val, size_t vallen,
                        char *err, size_t errlen)
{
    int status = link_check(v ? v->q : NULL, key, val, vallen, err, errlen);
    return status != QUEUE_OK ? status : link_in(v->q, &v->t, key, val, vallen, err, errlen);
}

int queue_link_put(struct queue *q, const char *key, const char *value,
                   char *err, size_t errlen)
{
    if (!q) {
        util_seterr(err, errlen, "queue_link_put: bad argument");
        return QUEUE_ERR_INVALID;
    }
    char why[256];
    if (check_link(q, key, value, why, sizeof why)) {
        util_seterr(err, errlen, "queue_link_put: %s", why);
        return QUEUE_ERR_INVALID;
    }
    if (check_writable(q, "queue_link_put", err, errlen))
        return QUEUE_ERR_INVALID;
    struct tx t;
    if (tx_begin(q, &t, false))
        return tx_status(&t, err, errlen);
    MDB_val k = { strlen(key), (void *)key }, v = { strlen(value), (void *)value };
    tx_put(&t, q->links, "mdb_put(links)", &k, &v, 0);
    if (tx_commit(&t))
        return tx_status(&t, err, errlen);
    return QUEUE_OK;
}

/* ---- audit --------------------------------------------------------------- */

enum { A_KIND, A_DOCNUM, A_KEY, A_OP, A_CODE, A_MSG, AUD_NSTR };
static const size_t aud_max[AUD_NSTR] = {
    AUDIT_SHORT_MAX, AUDIT_SHORT_MAX, AUDIT_KEY_MAX, AUDIT_OP_MAX, AUDIT_SHORT_MAX,
    AUDIT_MSG_MAX,
};

static void aud_strs(const struct queue_audit *a, struct sv *v)
{
    const char *s[AUD_NSTR] = { a->kind, a->docnum, a->key, a->operation, a->error_code,
                                a->message };
    for (int i = 0; i < AUD_NSTR; i++)
        v[i] = sv_cut(s[i], aud_max[i]);
}

static void aud_encode(unsigned char *p, const struct queue_audit *a, int64_t time,
                       const struct sv *v)
{
    memset(p, 0, AUD_HDR);
    p[0] = AUD_VERSION;
    put_be32(p + 4, (uint32_t)a->http_status);
    put_be64(p + 8, (uint64_t)time);
    put_be64(p + 16, a->seq);
    put_be64(p + 24, a->run_id);
    put_be32(p + 32, (uint32_t)a->duration_ms);
    svs_encode(p + AUD_HDR, v, AUD_NSTR);
}

/* Header check shared by the decoder and the prune scan. */
static int aud_check(const MDB_val *v)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < AUD_HDR)
        return DEC_CORRUPT;
    if (p[0] != AUD_VERSION)
        return p[0] > AUD_VERSION ? DEC_NEWER : DEC_CORRUPT;
    return DEC_OK;
}

static int aud_decode(const MDB_val *v, uint64_t id, struct queue_audit *a, struct sv *sv)
{
    int d = aud_check(v);
    if (d != DEC_OK)
        return d;
    const unsigned char *p = v->mv_data;
    memset(a, 0, sizeof *a);
    a->id = id;
    a->http_status = (int)(int32_t)get_be32(p + 4);
    a->time_ms = (int64_t)get_be64(p + 8);
    a->seq = get_be64(p + 16);
    a->run_id = get_be64(p + 24);
    a->duration_ms = (int32_t)get_be32(p + 32);
    return svs_decode(p + AUD_HDR, p + v->mv_size, sv, AUD_NSTR);
}

static void seq_id_key(unsigned char k[16], uint64_t seq, uint64_t id)
{
    put_be64(k, seq);
    put_be64(k + 8, id);
}

/* Write audit entries inside t. Returns 0 when written (ids first.. are
 * put into *first), 1 when they would take the store over its quota
 * (nothing written, t still usable), -1 on an LMDB failure (t failed). */
static int audit_put(struct tx *t, const struct queue_audit *a, size_t n, uint64_t *first_out)
{
    struct queue *q = t->q;
    uint64_t first = tx_get_u64(t, "next_audit");
    if (first == 0)
        first = 1;

    /* The audit is bookkeeping: it must not eat the headroom above the quota
     * that records and their state changes need. Measured in this txn. */
    uint64_t used = 0, est = 0;
    if (!t->rc) {
        int rc = used_bytes(q, t->txn, &used);
        if (rc)
            tx_fail(t, rc, "mdb_stat");
    }
    for (size_t i = 0; i < n; i++) {
        struct sv v[AUD_NSTR];
        aud_strs(&a[i], v);
        est += pair_cost(q->psize, 8, AUD_HDR + svs_size(v, AUD_NSTR));
        if (a[i].seq)
            est += pair_cost(q->psize, 16, 0);
    }
    if (t->rc)
        return -1;
    if (used + est > q->quota)
        return 1;

    int64_t now = now_ms();
    static const unsigned char empty = 0;
    MDB_cursor *bys = NULL; /* auditbyseq: a job's seqs are neighbours (tx_cput) */
    int orc = mdb_cursor_open(t->txn, q->auditbyseq, &bys);
    if (orc)
        tx_fail(t, orc, "mdb_cursor_open(auditbyseq)");
    for (size_t i = 0; i < n && !t->rc; i++) {
        uint64_t id = first + i;
        struct sv v[AUD_NSTR];
        aud_strs(&a[i], v);
        unsigned char kb[16];
        put_be64(kb, id);
        MDB_val k = { 8, kb }, val = { AUD_HDR + svs_size(v, AUD_NSTR), NULL };
        /* Ids only grow: MDB_APPEND (and MDB_KEYEXIST rather than an
         * overwrite should the counter ever lag behind the data). */
        tx_put(t, q->audit, "mdb_put(audit)", &k, &val, MDB_APPEND | MDB_RESERVE);
        if (t->rc)
            break;
        aud_encode(val.mv_data, &a[i], a[i].time_ms ? a[i].time_ms : now, v);
        if (a[i].seq) {
            seq_id_key(kb, a[i].seq, id);
            MDB_val ik = { 16, kb }, ev = { 0, (void *)&empty };
            tx_cput(t, bys, "mdb_put(auditbyseq)", &ik, &ev, 0);
        }
    }
    if (bys)
        mdb_cursor_close(bys);
    tx_put_u64(t, "next_audit", first + n);
    if (t->rc)
        return -1;
    *first_out = first;
    return 0;
}

static void quota_msg(struct queue *q, struct tx *t, char *err, size_t errlen)
{
    uint64_t used = 0;
    used_bytes(q, t->txn, &used);
    util_seterr(err, errlen, "queue over quota: %llu MiB used of %llu MiB, audit not written",
                (unsigned long long)mib_up(used), (unsigned long long)(q->quota / MIB));
}

int queue_audit_append(struct queue *q, struct queue_audit *a, size_t n, char *err,
                       size_t errlen)
{
    if (!q || (n && !a)) {
        util_seterr(err, errlen, "queue_audit_append: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (check_writable(q, "queue_audit_append", err, errlen))
        return QUEUE_ERR_INVALID;
    if (n == 0)
        return QUEUE_OK;
    struct tx t;
    if (tx_begin(q, &t, false))
        return tx_status(&t, err, errlen);
    uint64_t first = 0;
    int r = audit_put(&t, a, n, &first);
    if (r == 1) {
        quota_msg(q, &t, err, errlen);
        tx_abort(&t);
        return QUEUE_ERR_QUOTA;
    }
    if (r < 0) {
        tx_abort(&t);
        return tx_status(&t, err, errlen);
    }
    if (tx_commit(&t))
        return tx_status(&t, err, errlen);
    for (size_t i = 0; i < n; i++)
        a[i].id = first + i; /* only once they exist */
    return QUEUE_OK;
}

int queue_audit_list(struct queue *q, uint64_t seq, uint64_t before_id, size_t limit,
                     int (*cb)(const struct queue_audit *a, void *ud), void *ud,
                     char *err, size_t errlen)
{
    if (!q || !cb) {
        util_seterr(err, errlen, "queue_audit_list: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (q->audit == NO_DBI || q->auditbyseq == NO_DBI || before_id == 1)
        return QUEUE_OK; /* nothing (yet), or nothing below id 1 */
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(t.txn, seq ? q->auditbyseq : q->audit, &cur);
    if (rc) {
        tx_fail(&t, rc, "mdb_cursor_open");
        tx_abort(&t);
        return tx_status(&t, err, errlen);
    }
    /* Newest first: position on the first key at or above the bound, step
     * back one (or start at the very last key when none is). */
    uint64_t bound = before_id ? before_id : UINT64_MAX;
    unsigned char kb[16];
    MDB_val k, v;
    if (seq) {
        seq_id_key(kb, seq, bound);
        k = (MDB_val){ 16, kb };
    } else {
        put_be64(kb, bound);
        k = (MDB_val){ 8, kb };
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 || rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);

    struct buf sb = { 0 };
    int status = QUEUE_OK;
    size_t n = 0;
    while (rc == 0 && (limit == 0 || n < limit)) {
        uint64_t id;
        MDB_val ev;
        if (seq) {
            if (k.mv_size != 16) {
                status = dec_status(&t, DEC_CORRUPT, "auditbyseq key length");
                break;
            }
            if (get_be64(k.mv_data) != seq)
                break;
            id = get_be64((unsigned char *)k.mv_data + 8);
            unsigned char ik[8];
            put_be64(ik, id);
            MDB_val idk = { 8, ik };
            if (!tx_get(&t, q->audit, "mdb_get(audit)", &idk, &ev)) {
                if (!t.rc)
                    tx_fail(&t, MDB_CORRUPTED, "auditbyseq names a missing audit entry");
                break;
            }
        } else {
            if (k.mv_size != 8) {
                status = dec_status(&t, DEC_CORRUPT, "audit key length");
                break;
            }
            id = get_be64(k.mv_data);
            ev = v;
        }
        struct queue_audit a;
        struct sv sv[AUD_NSTR];
        int d = aud_decode(&ev, id, &a, sv);
        if (d != DEC_OK) {
            status = dec_status(&t, d, "audit encoding");
            break;
        }
        char *p = buf_need(&sb, svs_strbytes(sv, AUD_NSTR));
        if (!p) {
            tx_fail(&t, ENOMEM, "queue_audit_list");
            break;
        }
        const char **const dst[AUD_NSTR] = { &a.kind, &a.docnum, &a.key, &a.operation,
                                             &a.error_code, &a.message };
        svs_export(sv, AUD_NSTR, dst, p);
        n++;
        if (cb(&a, ud))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    if (rc && rc != MDB_NOTFOUND)
        tx_fail(&t, rc, "mdb_cursor_get(audit)");
    mdb_cursor_close(cur);
    tx_abort(&t);
    free(sb.p);
    if (t.rc)
        return fail_status(&t, status, err, errlen);
    return QUEUE_OK;
}

/* ---- runs ---------------------------------------------------------------- */

enum { R_TRIGGER, R_RESULT, RUN_NSTR };

static int run_decode(const MDB_val *v, uint64_t id, struct queue_run *r, struct sv *sv)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < RUN_HDR)
        return DEC_CORRUPT;
    if (p[0] != RUN_VERSION)
        return p[0] > RUN_VERSION ? DEC_NEWER : DEC_CORRUPT;
    memset(r, 0, sizeof *r);
    r->id = id;
    r->start_ms = (int64_t)get_be64(p + 8);
    r->end_ms = (int64_t)get_be64(p + 16);
    r->delivered = get_be64(p + 24);
    r->failed = get_be64(p + 32);
    r->retried = get_be64(p + 40);
    r->superseded = get_be64(p + 48);
    r->ignored = get_be64(p + 56);
    return svs_decode(p + RUN_HDR, p + v->mv_size, sv, RUN_NSTR);
}

int queue_run_put(struct queue *q, struct queue_run *r, char *err, size_t errlen)
{
    if (!q || !r) {
        util_seterr(err, errlen, "queue_run_put: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (check_writable(q, "queue_run_put", err, errlen))
        return QUEUE_ERR_INVALID;
    struct tx t;
    if (tx_begin(q, &t, false))
        return tx_status(&t, err, errlen);
    uint64_t id = r->id;
    unsigned char kb[8];
    unsigned flags = MDB_RESERVE;
    if (id == 0) {
        id = tx_get_u64(&t, "next_run");
        if (id == 0)
            id = 1;
        flags |= MDB_APPEND;
        tx_put_u64(&t, "next_run", id + 1);
    } else {
        put_be64(kb, id);
        MDB_val k = { 8, kb }, v;
        if (!tx_get(&t, q->runs, "mdb_get(runs)", &k, &v) && !t.rc) {
            tx_abort(&t);
            util_seterr(err, errlen, "no run with id %llu", (unsigned long long)id);
            return QUEUE_ERR_NOTFOUND;
        }
    }
    struct sv sv[RUN_NSTR] = { sv_cut(r->trigger, RUN_STR_MAX), sv_cut(r->result, RUN_STR_MAX) };
    put_be64(kb, id);
    MDB_val k = { 8, kb }, v = { RUN_HDR + svs_size(sv, RUN_NSTR), NULL };
    tx_put(&t, q->runs, "mdb_put(runs)", &k, &v, flags);
    if (!t.rc) {
        unsigned char *p = v.mv_data;
        memset(p, 0, RUN_HDR);
        p[0] = RUN_VERSION;
        put_be64(p + 8, (uint64_t)r->start_ms);
        put_be64(p + 16, (uint64_t)r->end_ms);
        put_be64(p + 24, r->delivered);
        put_be64(p + 32, r->failed);
        put_be64(p + 40, r->retried);
        put_be64(p + 48, r->superseded);
        put_be64(p + 56, r->ignored);
        svs_encode(p + RUN_HDR, sv, RUN_NSTR);
    }
    if (tx_commit(&t))
        return tx_status(&t, err, errlen);
    r->id = id;
    return QUEUE_OK;
}

int queue_runs_list(struct queue *q, size_t limit,
                    int (*cb)(const struct queue_run *r, void *ud), void *ud,
                    char *err, size_t errlen)
{
    if (!q || !cb) {
        util_seterr(err, errlen, "queue_runs_list: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (q->runs == NO_DBI)
        return QUEUE_OK;
    struct tx t;
    if (tx_begin(q, &t, true))
        return tx_status(&t, err, errlen);
    MDB_cursor *cur = NULL;
    int rc = mdb_cursor_open(t.txn, q->runs, &cur);
    if (rc) {
        tx_fail(&t, rc, "mdb_cursor_open");
        tx_abort(&t);
        return tx_status(&t, err, errlen);
    }
    struct buf sb = { 0 };
    int status = QUEUE_OK;
    size_t n = 0;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (rc == 0 && (limit == 0 || n < limit)) {
        if (k.mv_size != 8) {
            status = dec_status(&t, DEC_CORRUPT, "runs key length");
            break;
        }
        struct queue_run r;
        struct sv sv[RUN_NSTR];
        int d = run_decode(&v, get_be64(k.mv_data), &r, sv);
        if (d != DEC_OK) {
            status = dec_status(&t, d, "run encoding");
            break;
        }
        char *p = buf_need(&sb, svs_strbytes(sv, RUN_NSTR));
        if (!p) {
            tx_fail(&t, ENOMEM, "queue_runs_list");
            break;
        }
        const char **const dst[RUN_NSTR] = { &r.trigger, &r.result };
        svs_export(sv, RUN_NSTR, dst, p);
        n++;
        if (cb(&r, ud))
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    }
    if (rc && rc != MDB_NOTFOUND)
        tx_fail(&t, rc, "mdb_cursor_get(runs)");
    mdb_cursor_close(cur);
    tx_abort(&t);
    free(sb.p);
    if (t.rc)
        return fail_status(&t, status, err, errlen);
    return QUEUE_OK;
}

/* ---- retention ----------------------------------------------------------- */

/*
 * queue_prune works like queue_move_all: a READ txn finds up to PRUNE_CHUNK
 * candidates (visiting at most PRUNE_SCAN entries, so neither txn grows with
 * the store), then a WRITE txn deletes them, checking each again (another
 * thread or process may have replayed or pruned it in between). Scanning
 * outside the write txn keeps the LMDB write lock, which the committer needs
 * for every ingest commit, held only for the deletions. The scan resumes
 * after the last key it visited, so a whole pass is O(n), not O(n^2).
 */

/* 1 deleted, 0 left alone (gone already, or no longer prunable), -1 failed. */
static int prune_rec(struct tx *t, uint64_t seq, int64_t cutoff)
{
    struct queue *q = t->q;
    struct rec r;
    int st = load_rec(t, seq, &r, false);
    if (st == QUEUE_ERR_NOTFOUND && !t->rc)
        return 0;
    if (st != QUEUE_OK)
        return -1;
    if ((r.state != QUEUE_DELIVERED && r.state != QUEUE_IGNORED) || r.updated_ms >= cutoff)
        return 0;
    int state = r.state;
    /* Copy the dedupe key out before the first delete moves r's bytes. */
    unsigned char dk[512];
    size_t dlen = 0;
    size_t klen = (size_t)r.n[S_MANDT] + r.n[S_SNDPRN] + r.n[S_DOCNUM] + 2;
    bool have_dk = klen <= q->maxkey && klen <= sizeof dk;
    if (have_dk) {
        memcpy(dk, r.s[S_MANDT], r.n[S_MANDT]), dlen += r.n[S_MANDT];
        dk[dlen++] = KEY_SEP;
        memcpy(dk + dlen, r.s[S_SNDPRN], r.n[S_SNDPRN]), dlen += r.n[S_SNDPRN];
        dk[dlen++] = KEY_SEP;
        memcpy(dk + dlen, r.s[S_DOCNUM], r.n[S_DOCNUM]), dlen += r.n[S_DOCNUM];
    }
    unsigned char sk[8], bk[9];
    put_be64(sk, seq);
    MDB_val k = { 8, sk };
    tx_del(t, q->rec, "mdb_del(rec)", &k);
    tx_del(t, q->doc, "mdb_del(doc): doc missing", &k);
    if (q->model != NO_DBI && !t->rc) {
        /* Optional: records stored without a model have none. */
        MDB_val mk = k;
        int mrc = mdb_del(t->txn, q->model, &mk, NULL);
        if (mrc && mrc != MDB_NOTFOUND)
            tx_fail(t, mrc, "mdb_del(model)");
    }
    state_key(bk, state, seq);
    MDB_val bkv = { 9, bk };
    tx_del(t, q->bystate, "mdb_del(bystate): entry missing", &bkv);
    if (have_dk) {
        /* Only while it still names this record (I2 says it does; a dedupe
         * entry naming another record is not ours to remove). */
        MDB_val dkv = { dlen, dk }, v;
        if (tx_get(t, q->dedupe, "mdb_get(dedupe)", &dkv, &v) && v.mv_size == 8 &&
            get_be64(v.mv_data) == seq)
            tx_del(t, q->dedupe, "mdb_del(dedupe)", &dkv);
    }
    if (t->rc)
        return -1;
    t->delta[state]--;
    return 1;
}

static int prune_records(struct queue *q, int64_t cutoff, uint64_t *seqs, size_t *count,
                         char *err, size_t errlen)
{
    static const int states[] = { QUEUE_DELIVERED, QUEUE_IGNORED };
    for (size_t si = 0; si < sizeof states / sizeof states[0]; si++) {
        int state = states[si];
        uint64_t from = 0;
        for (bool more = true; more;) {
            more = false;
            struct tx t;
            if (tx_begin(q, &t, true))
                return tx_status(&t, err, errlen);
            int status = QUEUE_OK;
            size_t n = 0, visited = 0;
            MDB_cursor *cur;
            int rc = mdb_cursor_open(t.txn, q->bystate, &cur);
            if (rc == 0) {
                unsigned char kb[9];
                state_key(kb, state, from);
                MDB_val k = { 9, kb }, v;
                rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
                while (rc == 0 && k.mv_size == 9 && ((unsigned char *)k.mv_data)[0] == state) {
                    if (n == PRUNE_CHUNK || visited == PRUNE_SCAN) {
                        more = true;
                        break;
                    }
                    uint64_t seq = get_be64((unsigned char *)k.mv_data + 1);
                    struct rec r;
                    if ((status = load_rec(&t, seq, &r, true)) != QUEUE_OK)
                        break;
                    visited++;
                    from = seq + 1;
                    if (r.updated_ms < cutoff)
                        seqs[n++] = seq;
                    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
                }
                mdb_cursor_close(cur);
                if (rc == MDB_NOTFOUND)
                    rc = 0;
            }
            if (rc)
                tx_fail(&t, rc, "scan bystate");
            tx_abort(&t);
            if (t.rc)
                return fail_status(&t, status, err, errlen);
            if (n == 0)
                continue;

            if (tx_begin(q, &t, false))
                return tx_status(&t, err, errlen);
            size_t del = 0;
            for (size_t i = 0; i < n; i++) {
                int r = prune_rec(&t, seqs[i], cutoff);
                if (r < 0)
                    break;
                del += (size_t)r;
            }
            if (!t.rc && del == 0) {
                tx_abort(&t);
                continue;
            }
            if (tx_commit(&t))
                return tx_status(&t, err, errlen);
            *count += del;
        }
    }
    return QUEUE_OK;
}

/* Audit entries (time < cutoff) or runs (finished, end < cutoff). */
enum { P_AUDIT, P_RUNS };

/* Is this audit/run value prunable? *seq: the audit entry's record. */
static int entry_prunable(int kind, const MDB_val *v, int64_t cutoff, uint64_t *seq)
{
    const unsigned char *p = v->mv_data;
    if (kind == P_AUDIT) {
        int d = aud_check(v);
        if (d != DEC_OK)
            return d;
        *seq = get_be64(p + 16);
        return (int64_t)get_be64(p + 8) < cutoff;
    }
    if (v->mv_size < RUN_HDR)
        return DEC_CORRUPT;
    if (p[0] != RUN_VERSION)
        return p[0] > RUN_VERSION ? DEC_NEWER : DEC_CORRUPT;
    *seq = 0;
    int64_t end = (int64_t)get_be64(p + 16);
    return end != 0 && end < cutoff;
}

static int prune_entries(struct queue *q, int kind, int64_t cutoff, uint64_t *ids,
                         size_t *count, char *err, size_t errlen)
{
    MDB_dbi dbi = kind == P_AUDIT ? q->audit : q->runs;
    const char *what = kind == P_AUDIT ? "audit encoding" : "run encoding";
    uint64_t from = 0;
    for (bool more = true; more;) {
        more = false;
        struct tx t;
        if (tx_begin(q, &t, true))
            return tx_status(&t, err, errlen);
        int status = QUEUE_OK;
        size_t n = 0, visited = 0;
        MDB_cursor *cur;
        int rc = mdb_cursor_open(t.txn, dbi, &cur);
        if (rc == 0) {
            unsigned char kb[8];
            put_be64(kb, from);
            MDB_val k = { 8, kb }, v;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            while (rc == 0) {
                if (n == PRUNE_CHUNK || visited == PRUNE_SCAN) {
                    more = true;
                    break;
                }
                uint64_t seq;
                int p = k.mv_size == 8 ? entry_prunable(kind, &v, cutoff, &seq) : DEC_CORRUPT;
                if (p < 0) {
                    status = dec_status(&t, p, what);
                    break;
                }
                uint64_t id = get_be64(k.mv_data);
                visited++;
                from = id + 1;
                if (p)
                    ids[n++] = id;
                rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
            }
            mdb_cursor_close(cur);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
        if (rc)
            tx_fail(&t, rc, kind == P_AUDIT ? "scan audit" : "scan runs");
        tx_abort(&t);
        if (t.rc)
            return fail_status(&t, status, err, errlen);
        if (n == 0)
            continue;

        if (tx_begin(q, &t, false))
            return tx_status(&t, err, errlen);
        size_t del = 0;
        for (size_t i = 0; i < n && !t.rc; i++) {
            unsigned char kb[16];
            put_be64(kb, ids[i]);
            MDB_val k = { 8, kb }, v;
            uint64_t seq;
            /* Check again: pruned meanwhile, or (a run) replaced. */
            if (!tx_get(&t, dbi, "mdb_get", &k, &v))
                continue;
            int p = entry_prunable(kind, &v, cutoff, &seq);
            if (p < 0) {
                status = dec_status(&t, p, what);
                break;
            }
            if (!p)
                continue;
            tx_del(&t, dbi, kind == P_AUDIT ? "mdb_del(audit)" : "mdb_del(runs)", &k);
            if (kind == P_AUDIT && seq && !t.rc) {
                seq_id_key(kb, seq, ids[i]);
                MDB_val ik = { 16, kb };
                int r = mdb_del(t.txn, q->auditbyseq, &ik, NULL);
                if (r && r != MDB_NOTFOUND)
                    tx_fail(&t, r, "mdb_del(auditbyseq)");
            }
            del++;
        }
        if (!t.rc && del == 0) {
            tx_abort(&t);
            continue;
        }
        if (tx_commit(&t))
            return fail_status(&t, status, err, errlen);
        *count += del;
    }
    return QUEUE_OK;
}

int queue_prune(struct queue *q, int64_t cutoff_ms, int64_t audit_cutoff_ms,
                size_t *records, size_t *audit, char *err, size_t errlen)
{
    if (records)
        *records = 0;
    if (audit)
        *audit = 0;
    if (!q) {
        util_seterr(err, errlen, "queue_prune: bad argument");
        return QUEUE_ERR_INVALID;
    }
    if (check_writable(q, "queue_prune", err, errlen))
        return QUEUE_ERR_INVALID;
    uint64_t *ids = malloc(PRUNE_CHUNK * sizeof *ids);
    if (!ids) {
        util_seterr(err, errlen, "queue_prune: out of memory");
        return QUEUE_ERR_STORAGE;
    }
    size_t nrec = 0, naud = 0;
    int status = QUEUE_OK;
    /* A cutoff <= 0 (before 1970) matches nothing: skip the scan. */
    if (cutoff_ms > 0)
        status = prune_records(q, cutoff_ms, ids, &nrec, err, errlen);
    if (status == QUEUE_OK && audit_cutoff_ms > 0)
        status = prune_entries(q, P_AUDIT, audit_cutoff_ms, ids, &naud, err, errlen);
    if (status == QUEUE_OK && audit_cutoff_ms > 0)
        status = prune_entries(q, P_RUNS, audit_cutoff_ms, ids, &naud, err, errlen);
    free(ids);
    if (records)
        *records = nrec;
    if (audit)
        *audit = naud;
    return status;
}
