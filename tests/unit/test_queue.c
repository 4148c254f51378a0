/*
 * test_queue — the durable queue (queue/queue.c).
 *
 * Every test gets a fresh directory under $TMPDIR (or /tmp), removed after.
 * Threads other than cmocka's never call cmocka asserts: they count problems
 * in atomics that the test thread checks. Child processes (readonly open,
 * crash) report by exit status and pipes, and leave with _exit. LMDB forbids
 * opening one store twice in a process, so a second opener is always a
 * forked child; the parent has no store open while a crash child writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "queue/queue.h"

#define MIB (1024ull * 1024ull)

struct fx {
    char dir[512];
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/mlc-queue-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The store lives in a subdirectory, so queue_open's mkdir -p is exercised. */
static void store_path(const struct fx *f, char *buf, size_t len)
{
    snprintf(buf, len, "%s/q/store", f->dir);
}

static struct queue *open_q(const struct fx *f, uint64_t quota, uint64_t map, int ro)
{
    char path[600], err[256] = "";
    store_path(f, path, sizeof path);
    struct queue_opts o = { .path = path, .max_size_bytes = quota, .readonly = ro,
                            .map_size_bytes = map };
    struct queue *q = queue_open(&o, err, sizeof err);
    if (!q)
        print_error("queue_open: %s\n", err);
    return q;
}

/* Deterministic XML of about `size` bytes that names its DOCNUM. */
static char *make_xml(const char *docnum, size_t size, size_t *len)
{
    char head[128];
    int h = snprintf(head, sizeof head,
                     "<?xml version=\"1.0\"?><IDOC BEGIN=\"1\"><DOCNUM>%s</DOCNUM><PAD>",
                     docnum);
    const char *tail = "</PAD></IDOC>";
    size_t t = strlen(tail), n = size > (size_t)h + t ? size : (size_t)h + t;
    char *x = malloc(n + 1);
    memcpy(x, head, (size_t)h);
    for (size_t i = (size_t)h; i < n - t; i++)
        x[i] = (char)('a' + (i * 7 + strlen(docnum)) % 26);
    memcpy(x + n - t, tail, t + 1);
    *len = n;
    return x;
}

/* One item with owned strings (docnum and xml), freed by item_free. */
static void item_init(struct queue_item *it, const char *sndprn, const char *docnum,
                      size_t xml_size, int state)
{
    memset(it, 0, sizeof *it);
    it->mandt = "100";
    it->sndprn = sndprn;
    it->docnum = strdup(docnum);
    it->mestyp = "CREMAS";
    it->idoctyp = "CREMAS05";
    it->cimtyp = "";
    it->credat = "20240131";
    it->cretim = "235959";
    it->keys = "vendor:0000100003 contact:0000152955";
    it->xml = make_xml(docnum, xml_size, &it->xml_len);
    it->state = state;
}

static void item_free(struct queue_item *it)
{
    free((char *)it->docnum);
    free((char *)it->xml);
}

static int append1(struct queue *q, const char *docnum, size_t xml_size, int state,
                   uint64_t *seq, int *dup)
{
    struct queue_item it;
    char err[256] = "";
    item_init(&it, "SAPECC", docnum, xml_size, state);
    int rc = queue_append(q, &it, 1, NULL, err, sizeof err);
    if (rc != QUEUE_OK)
        print_message("append %s: %s\n", docnum, err);
    if (seq)
        *seq = it.seq;
    if (dup)
        *dup = it.duplicate;
    item_free(&it);
    return rc;
}

struct counter {
    int state;
    uint64_t n, last, bad;
};

static int count_cb(const struct queue_record *r, void *ud)
{
    struct counter *c = ud;
    c->n++;
    if ((c->state >= 0 && r->state != c->state) || r->seq <= c->last || r->xml)
        c->bad++;
    c->last = r->seq;
    return 0;
}

static uint64_t list_count(struct queue *q, int state)
{
    struct counter c = { .state = state };
    char err[256];
    assert_int_equal(queue_list(q, state, 0, 0, count_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.bad, 0);
    return c.n;
}

/* Invariants: count.<s> == bystate contents (listing by state), and their
 * sum == records (listing rec), all in seq order. */
static void assert_consistent(struct queue *q)
{
    struct queue_stats st;
    char err[256];
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    uint64_t total = 0;
    for (int s = 0; s < QUEUE_NSTATES; s++) {
        uint64_t n = list_count(q, s);
        if (n != st.count[s])
            print_error("state %s: listed %llu, count %llu\n", queue_state_name(s),
                        (unsigned long long)n, (unsigned long long)st.count[s]);
        assert_int_equal(n, st.count[s]);
        total += n;
    }
    assert_int_equal(list_count(q, -1), total);
}

struct done_rec {
    _Atomic int calls;
};

static void done_count(struct queue_batch *b, void *ud)
{
    (void)b;
    struct done_rec *d = ud;
    atomic_fetch_add(&d->calls, 1);
}

static void wait_calls(struct done_rec *d, int n)
{
    for (int i = 0; i < 20000 && atomic_load(&d->calls) < n; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&d->calls), n);
}

/* ------------------------------------------------------------------------ */
/* Basics                                                                    */

static void test_state_names(void **state)
{
    (void)state;
    for (int s = 0; s < QUEUE_NSTATES; s++)
        assert_int_equal(queue_state_parse(queue_state_name(s)), s);
    assert_string_equal(queue_state_name(QUEUE_FAILED), "failed");
    assert_int_equal(queue_state_parse("nope"), -1);
    assert_int_equal(queue_state_parse(NULL), -1);
}

static void test_append_readback(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];

    struct queue_item it;
    item_init(&it, "SAPECC", "0000000000123456", 6371, QUEUE_PENDING);
    it.cimtyp = "ZCREMAS";
    int64_t before = (int64_t)time(NULL) * 1000 - 1000;
    size_t ndup = 99;
    assert_int_equal(queue_append(q, &it, 1, &ndup, err, sizeof err), QUEUE_OK);
    assert_int_equal(ndup, 0);
    assert_int_equal(it.seq, 1);
    assert_int_equal(it.duplicate, 0);

    struct queue_record *r;
    assert_int_equal(queue_get(q, it.seq, 1, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->seq, 1);
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->attempts, 0);
    assert_true(r->received_ms >= before);
    assert_int_equal(r->updated_ms, r->received_ms);
    assert_int_equal(r->next_attempt_ms, 0);
    assert_string_equal(r->mandt, "100");
    assert_string_equal(r->sndprn, "SAPECC");
    assert_string_equal(r->docnum, "0000000000123456");
    assert_string_equal(r->mestyp, "CREMAS");
    assert_string_equal(r->idoctyp, "CREMAS05");
    assert_string_equal(r->cimtyp, "ZCREMAS");
    assert_string_equal(r->credat, "20240131");
    assert_string_equal(r->cretim, "235959");
    assert_string_equal(r->keys, "vendor:0000100003 contact:0000152955");
    assert_string_equal(r->error, "");
    assert_int_equal(r->xml_len, it.xml_len);
    assert_memory_equal(r->xml, it.xml, it.xml_len);
    assert_int_equal(r->xml[r->xml_len], '\0');
    queue_record_free(r);

    assert_int_equal(queue_get(q, it.seq, 0, &r, err, sizeof err), QUEUE_OK);
    assert_null(r->xml);
    assert_int_equal(r->xml_len, it.xml_len);
    queue_record_free(r);
    item_free(&it);

    /* NULL strings are stored as "", an empty XML is allowed. */
    struct queue_item e = { .docnum = "77", .state = QUEUE_IGNORED };
    assert_int_equal(queue_append(q, &e, 1, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(e.seq, 2);
    assert_int_equal(queue_get(q, 2, 1, &r, err, sizeof err), QUEUE_OK);
    assert_string_equal(r->mandt, "");
    assert_string_equal(r->keys, "");
    assert_int_equal(r->state, QUEUE_IGNORED);
    assert_int_equal(r->xml_len, 0);
    assert_string_equal(r->xml, "");
    queue_record_free(r);

    /* seq only grows. */
    uint64_t prev = 2, seq;
    for (int i = 0; i < 20; i++) {
        char d[32];
        snprintf(d, sizeof d, "S%04d", i);
        assert_int_equal(append1(q, d, 100 + (size_t)i * 300, QUEUE_PENDING, &seq, NULL),
                         QUEUE_OK);
        assert_true(seq > prev);
        prev = seq;
    }
    uint64_t found;
    assert_int_equal(queue_find(q, "100", "SAPECC", "S0007", &found, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(found, 10);
    assert_int_equal(queue_find(q, "100", "OTHER", "S0007", &found, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_get(q, 999, 0, &r, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_non_null(strstr(err, "999"));

    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 21);
    assert_int_equal(st.count[QUEUE_IGNORED], 1);
    assert_int_equal(st.next_seq, 23);
    assert_int_equal(st.quota_bytes, 64 * MIB);
    assert_true(st.map_bytes >= 2 * 64 * MIB);
    assert_true(st.used_bytes > 0 && st.used_bytes < st.quota_bytes);
    assert_int_equal(queue_over_quota(q), 0);
    assert_consistent(q);
    queue_close(q);
}

static void test_invalid(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    struct queue_item it = { .mandt = "100", .docnum = "", .state = QUEUE_PENDING };
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    assert_non_null(strstr(err, "DOCNUM"));
    it.docnum = "1\x1f" "2";
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    it.docnum = "12";
    it.state = QUEUE_FAILED;
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    it.state = QUEUE_PENDING;
    it.xml_len = 5; /* without xml */
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    it.xml_len = 0;
    char longkey[600];
    memset(longkey, '9', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    it.docnum = longkey;
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_append(q, &it, 0, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    struct queue_batch b = { .items = &it, .nitems = 1 }; /* no done */
    it.docnum = "12";
    assert_int_equal(queue_submit(q, &b), QUEUE_ERR_INVALID);

    /* A batch with one bad item stores nothing. */
    struct queue_item two[2] = {
        { .docnum = "OK1", .state = QUEUE_PENDING },
        { .docnum = "", .state = QUEUE_PENDING },
    };
    assert_int_equal(queue_append(q, two, 2, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.next_seq, 1);
    assert_int_equal(st.count[QUEUE_PENDING], 0);

    size_t changed;
    assert_int_equal(queue_set_state(q, NULL, 0, -1, 99, &changed, err, sizeof err),
                     QUEUE_ERR_INVALID);
    assert_int_equal(queue_move_all(q, QUEUE_FAILED, -1, &changed, err, sizeof err),
                     QUEUE_ERR_INVALID);
    queue_close(q);

    struct queue_opts o = { .path = f->dir, .max_size_bytes = 0 };
    assert_null(queue_open(&o, err, sizeof err));
    assert_non_null(strstr(err, "max_size_bytes"));
}

/* ------------------------------------------------------------------------ */
/* Dedupe                                                                    */

static void test_dedupe(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    uint64_t s1, s2;
    int dup;

    /* Across batches. */
    assert_int_equal(append1(q, "D1", 500, QUEUE_PENDING, &s1, &dup), QUEUE_OK);
    assert_int_equal(dup, 0);
    uint64_t commits = queue_commit_count(q);
    assert_int_equal(append1(q, "D1", 500, QUEUE_PENDING, &s2, &dup), QUEUE_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(s2, s1);
    /* A batch of duplicates only has nothing to make durable. */
    assert_int_equal(queue_commit_count(q), commits);

    /* Same DOCNUM from another partner or client is another IDoc. */
    struct queue_item other;
    item_init(&other, "OTHERSYS", "D1", 100, QUEUE_PENDING);
    assert_int_equal(queue_append(q, &other, 1, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(other.duplicate, 0);
    assert_true(other.seq != s1);
    item_free(&other);

    /* Inside one batch: D2, D2, D3, D1 -> 2 new, 2 duplicates. */
    struct queue_item b[4];
    item_init(&b[0], "SAPECC", "D2", 300, QUEUE_PENDING);
    item_init(&b[1], "SAPECC", "D2", 300, QUEUE_PENDING);
    item_init(&b[2], "SAPECC", "D3", 300, QUEUE_PENDING);
    item_init(&b[3], "SAPECC", "D1", 300, QUEUE_PENDING);
    size_t ndup;
    assert_int_equal(queue_append(q, b, 4, &ndup, err, sizeof err), QUEUE_OK);
    assert_int_equal(ndup, 2);
    assert_int_equal(b[0].duplicate, 0);
    assert_int_equal(b[1].duplicate, 1);
    assert_int_equal(b[1].seq, b[0].seq);
    assert_int_equal(b[2].duplicate, 0);
    assert_int_equal(b[3].duplicate, 1);
    assert_int_equal(b[3].seq, s1);
    for (int i = 0; i < 4; i++)
        item_free(&b[i]);

    /* Inside one group commit: batch A has D4, batch B has D4 and D5. */
    struct queue_item a1, b1[2];
    item_init(&a1, "SAPECC", "D4", 300, QUEUE_PENDING);
    item_init(&b1[0], "SAPECC", "D4", 300, QUEUE_PENDING);
    item_init(&b1[1], "SAPECC", "D5", 300, QUEUE_PENDING);
    struct done_rec d = { 0 };
    struct queue_batch ba = { .items = &a1, .nitems = 1, .done = done_count, .ud = &d };
    struct queue_batch bb = { .items = b1, .nitems = 2, .done = done_count, .ud = &d };
    commits = queue_commit_count(q);
    queue_hold(q, 1);
    assert_int_equal(queue_commit_wait_ms(q), 0);
    assert_int_equal(queue_submit(q, &ba), QUEUE_OK);
    assert_int_equal(queue_submit(q, &bb), QUEUE_OK);
    /* A held batch shows up in the liveness signal /healthz reads. */
    struct timespec nap = {0, 30 * 1000000L};
    nanosleep(&nap, NULL);
    assert_true(queue_commit_wait_ms(q) >= 25);
    queue_hold(q, 0);
    wait_calls(&d, 2);
    assert_int_equal(queue_commit_wait_ms(q), 0);
    assert_int_equal(queue_commit_count(q), commits + 1);
    assert_int_equal(ba.status, QUEUE_OK);
    assert_int_equal(bb.status, QUEUE_OK);
    assert_int_equal(ba.nnew, 1);
    assert_int_equal(bb.nnew, 1);
    assert_int_equal(bb.ndup, 1);
    assert_int_equal(b1[0].duplicate, 1);
    assert_int_equal(b1[0].seq, a1.seq);
    assert_int_equal(b1[1].seq, a1.seq + 1);
    item_free(&a1);
    item_free(&b1[0]);
    item_free(&b1[1]);

    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 6); /* D1, D1@OTHER, D2, D3, D4, D5 */
    assert_consistent(q);
    queue_close(q);
}

/* ------------------------------------------------------------------------ */
/* Listing and state changes                                                 */

struct collect {
    uint64_t seqs[64];
    size_t n;
    size_t stop_after;
};

static int collect_cb(const struct queue_record *r, void *ud)
{
    struct collect *c = ud;
    if (c->n < 64)
        c->seqs[c->n++] = r->seq;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_list(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    /* seq 1..30; every third (3, 6, ...) ignored. */
    for (int i = 1; i <= 30; i++) {
        char d[16];
        snprintf(d, sizeof d, "L%02d", i);
        assert_int_equal(append1(q, d, 200, i % 3 == 0 ? QUEUE_IGNORED : QUEUE_PENDING,
                                 NULL, NULL), QUEUE_OK);
    }
    struct collect c = { 0 };
    assert_int_equal(queue_list(q, QUEUE_PENDING, 0, 0, collect_cb, &c, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(c.n, 20);
    assert_int_equal(c.seqs[0], 1);
    assert_int_equal(c.seqs[2], 4);

    c = (struct collect){ 0 };
    assert_int_equal(queue_list(q, QUEUE_PENDING, 10, 5, collect_cb, &c, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(c.n, 5);
    uint64_t want[] = { 11, 13, 14, 16, 17 };
    for (int i = 0; i < 5; i++)
        assert_int_equal(c.seqs[i], want[i]);

    c = (struct collect){ 0 };
    assert_int_equal(queue_list(q, QUEUE_IGNORED, 0, 0, collect_cb, &c, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(c.n, 10);
    assert_int_equal(c.seqs[9], 30);

    c = (struct collect){ 0 };
    assert_int_equal(queue_list(q, -1, 25, 0, collect_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.seqs[0], 26);

    c = (struct collect){ .stop_after = 3 };
    assert_int_equal(queue_list(q, -1, 0, 0, collect_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 3);

    c = (struct collect){ 0 };
    assert_int_equal(queue_list(q, QUEUE_FAILED, 0, 0, collect_cb, &c, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(queue_list(q, -1, UINT64_MAX, 0, collect_cb, &c, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(c.n, 0);
    queue_close(q);
}

static void test_state_changes(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    size_t changed;
    for (int i = 1; i <= 25; i++) {
        char d[16];
        snprintf(d, sizeof d, "T%02d", i);
        assert_int_equal(append1(q, d, 3000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    }
    /* Claim 1..10 for delivery. */
    uint64_t claim[10];
    for (int i = 0; i < 10; i++)
        claim[i] = (uint64_t)i + 1;
    assert_int_equal(queue_set_state(q, claim, 10, QUEUE_PENDING, QUEUE_INFLIGHT, &changed,
                                     err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 10);
    /* Again: they are no longer pending, nothing moves. */
    uint64_t commits = queue_commit_count(q);
    assert_int_equal(queue_set_state(q, claim, 10, QUEUE_PENDING, QUEUE_INFLIGHT, &changed,
                                     err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 0);
    assert_int_equal(queue_commit_count(q), commits);
    assert_consistent(q);

    /* Outcomes: 1-4 delivered, 5-7 failed with an error, 8-10 retry later. */
    struct queue_change ch[10];
    for (int i = 0; i < 10; i++) {
        ch[i] = (struct queue_change){ .seq = claim[i], .from_state = QUEUE_INFLIGHT,
                                       .next_attempt_ms = -1 };
        if (i < 4) {
            ch[i].to_state = QUEUE_DELIVERED;
        } else if (i < 7) {
            ch[i].to_state = QUEUE_FAILED;
            ch[i].add_attempts = 1;
            ch[i].error = "0x80040237: A record with matching key values already exists";
        } else {
            ch[i].to_state = QUEUE_PENDING;
            ch[i].add_attempts = 1;
            ch[i].next_attempt_ms = 4102444800000;
            ch[i].error = "503 Service Unavailable";
        }
    }
    assert_int_equal(queue_update(q, ch, 10, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 10);
    struct queue_record *r;
    assert_int_equal(queue_get(q, 6, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_FAILED);
    assert_int_equal(r->attempts, 1);
    assert_string_equal(r->error, ch[5].error);
    assert_true(r->updated_ms >= r->received_ms);
    queue_record_free(r);
    assert_int_equal(queue_get(q, 9, 1, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->next_attempt_ms, 4102444800000);
    assert_int_equal(r->attempts, 1);
    assert_non_null(strstr(r->xml, "<DOCNUM>T09</DOCNUM>")); /* payload untouched */
    queue_record_free(r);

    /* A second failure: attempts accumulate, a long error is cut. */
    char longerr[3000];
    memset(longerr, 'e', sizeof longerr - 1);
    longerr[sizeof longerr - 1] = '\0';
    struct queue_change again = { .seq = 6, .from_state = QUEUE_FAILED,
                                  .to_state = QUEUE_FAILED, .add_attempts = 1,
                                  .next_attempt_ms = -1, .error = longerr };
    assert_int_equal(queue_update(q, &again, 1, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(queue_get(q, 6, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->attempts, 2);
    assert_int_equal(strlen(r->error), 1024);
    queue_record_free(r);

    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 18);
    assert_int_equal(st.count[QUEUE_INFLIGHT], 0);
    assert_int_equal(st.count[QUEUE_DELIVERED], 4);
    assert_int_equal(st.count[QUEUE_FAILED], 3);
    assert_consistent(q);

    /* Unknown seq: the whole call fails and nothing moves. */
    uint64_t mixed[] = { 1, 999 };
    assert_int_equal(queue_set_state(q, mixed, 2, -1, QUEUE_IGNORED, &changed, err,
                                     sizeof err), QUEUE_ERR_NOTFOUND);
    assert_non_null(strstr(err, "999"));
    assert_int_equal(queue_get(q, 1, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_DELIVERED);
    queue_record_free(r);

    /* Replay one failed record by seq: reset attempts, error, next attempt. */
    uint64_t five = 5;
    assert_int_equal(queue_set_state(q, &five, 1, QUEUE_FAILED, QUEUE_PENDING, &changed,
                                     err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(queue_get(q, 5, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_PENDING);
    assert_int_equal(r->attempts, 0);
    assert_string_equal(r->error, "");
    assert_int_equal(r->next_attempt_ms, 0);
    queue_record_free(r);

    /* Replay --failed: the rest (6, 7). */
    assert_int_equal(queue_move_all(q, QUEUE_FAILED, QUEUE_PENDING, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, 2);
    assert_int_equal(queue_get(q, 6, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->attempts, 0);
    assert_string_equal(r->error, "");
    queue_record_free(r);
    assert_int_equal(queue_move_all(q, QUEUE_FAILED, QUEUE_PENDING, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, 0);

    /* Start-up recovery: inflight -> pending. */
    assert_int_equal(queue_move_all(q, QUEUE_PENDING, QUEUE_INFLIGHT, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, 21);
    assert_int_equal(queue_move_all(q, QUEUE_INFLIGHT, QUEUE_PENDING, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, 21);
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 21);
    assert_int_equal(st.count[QUEUE_DELIVERED], 4);
    assert_consistent(q);
    queue_close(q);
}

/* ------------------------------------------------------------------------ */
/* Quota and failing batches                                                 */

static void test_quota(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 4 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    assert_int_equal(append1(q, "Q0", 6000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);

    /* 3 x 2 MiB cannot fit in 4 MiB: refused, none of it stored. */
    struct queue_item big[3];
    item_init(&big[0], "SAPECC", "QB0", 2 * MIB, QUEUE_PENDING);
    item_init(&big[1], "SAPECC", "QB1", 2 * MIB, QUEUE_PENDING);
    item_init(&big[2], "SAPECC", "QB2", 2 * MIB, QUEUE_PENDING);
    struct queue_stats before, after;
    assert_int_equal(queue_stats(q, &before, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_append(q, big, 3, NULL, err, sizeof err), QUEUE_ERR_QUOTA);
    assert_non_null(strstr(err, "queue over quota: "));
    assert_non_null(strstr(err, " MiB used of 4 MiB"));
    for (int i = 0; i < 3; i++) {
        uint64_t seq;
        assert_int_equal(big[i].seq, 0);
        assert_int_equal(queue_find(q, "100", "SAPECC", big[i].docnum, &seq, err, sizeof err),
                         QUEUE_ERR_NOTFOUND);
        item_free(&big[i]);
    }
    assert_int_equal(queue_stats(q, &after, err, sizeof err), QUEUE_OK);
    assert_int_equal(after.next_seq, before.next_seq);
    assert_memory_equal(after.count, before.count, sizeof after.count);

    /* Still usable: small appends fit; fill up until the quota refuses. */
    int n = 0, rc;
    do {
        char d[16];
        snprintf(d, sizeof d, "QF%04d", n++);
        rc = append1(q, d, 64 * 1024, QUEUE_PENDING, NULL, NULL);
    } while (rc == QUEUE_OK && n < 1000);
    assert_int_equal(rc, QUEUE_ERR_QUOTA);
    assert_true(n > 20);
    assert_int_equal(queue_stats(q, &after, err, sizeof err), QUEUE_OK);
    assert_true(after.used_bytes <= 4 * MIB);
    assert_int_equal(after.count[QUEUE_PENDING], (uint64_t)n); /* Q0 + n-1 fills */
    assert_consistent(q);
    /* Reads and state changes still work at the limit. */
    size_t changed;
    assert_int_equal(queue_move_all(q, QUEUE_PENDING, QUEUE_DELIVERED, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, (size_t)n);
    /* A resend is acknowledged even though nothing new fits. */
    uint64_t seq;
    int dup;
    assert_int_equal(append1(q, "Q0", 6000, QUEUE_PENDING, &seq, &dup), QUEUE_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(seq, 1);
    queue_close(q);

    /* Reopened with a lower quota it is over it at once (for /readyz). */
    q = open_q(f, 1 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_over_quota(q), 1);
    assert_int_equal(append1(q, "QX", 100, QUEUE_PENDING, NULL, NULL), QUEUE_ERR_QUOTA);
    assert_int_equal(append1(q, "QF0003", 64 * 1024, QUEUE_PENDING, NULL, &dup), QUEUE_OK);
    assert_int_equal(dup, 1);
    assert_consistent(q);
    queue_close(q);

    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_over_quota(q), 0);
    assert_int_equal(append1(q, "QX", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    queue_close(q);
}

/* Submit `nsmall` one-item batches around one huge batch as ONE group (held),
 * with a duplicate across two small batches. Returns commits used. */
static uint64_t group_with_bad_batch(struct queue *q, size_t huge, const char *tag,
                                     int *bad_status, char *bad_err, size_t errlen)
{
    enum { NSMALL = 6 };
    struct queue_item small[NSMALL], bigi;
    struct queue_batch b[NSMALL + 1];
    struct done_rec d = { 0 };
    char doc[32];
    for (int i = 0; i < NSMALL; i++) {
        /* batch 4 resends batch 1's DOCNUM */
        snprintf(doc, sizeof doc, "%s-S%d", tag, i == 4 ? 1 : i);
        item_init(&small[i], "SAPECC", doc, 6000, QUEUE_PENDING);
    }
    snprintf(doc, sizeof doc, "%s-BIG", tag);
    item_init(&bigi, "SAPECC", doc, huge, QUEUE_PENDING);
    uint64_t commits = queue_commit_count(q);
    queue_hold(q, 1);
    for (int i = 0, k = 0; i <= NSMALL; i++) {
        struct queue_item *it = i == 3 ? &bigi : &small[k++];
        b[i] = (struct queue_batch){ .items = it, .nitems = 1, .done = done_count, .ud = &d };
        assert_int_equal(queue_submit(q, &b[i]), QUEUE_OK);
    }
    queue_hold(q, 0);
    wait_calls(&d, NSMALL + 1);
    for (int i = 0; i <= NSMALL; i++) {
        if (i == 3)
            continue;
        assert_int_equal(b[i].status, QUEUE_OK);
        assert_true(b[i].items[0].seq > 0);
    }
    /* batch index 5 holds small[4], the resend of small[1] (batch index 1) */
    assert_int_equal(small[4].duplicate, 1);
    assert_int_equal(small[4].seq, small[1].seq);
    *bad_status = b[3].status;
    snprintf(bad_err, errlen, "%s", b[3].err);
    assert_int_equal(bigi.seq, 0);
    uint64_t seq;
    char err[256];
    assert_int_equal(queue_find(q, "100", "SAPECC", bigi.docnum, &seq, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    for (int i = 0; i < NSMALL; i++)
        item_free(&small[i]);
    item_free(&bigi);
    return queue_commit_count(q) - commits;
}

static void test_group_quota_neighbours(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 8 * MIB, 0, 0);
    assert_non_null(q);
    int status;
    char err[256];
    /* The quota refuses the big batch before it writes: one shared commit. */
    uint64_t commits = group_with_bad_batch(q, 16 * MIB, "GQ", &status, err, sizeof err);
    assert_int_equal(status, QUEUE_ERR_QUOTA);
    assert_non_null(strstr(err, "queue over quota: "));
    assert_int_equal(commits, 1);
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 5);
    assert_consistent(q);
    queue_close(q);
}

static void test_group_mapfull_neighbours(void **state)
{
    struct fx *f = *state;
    /* A generous quota but a 3 MiB map: the big batch passes the quota check
     * and hits MDB_MAP_FULL while writing. The shared txn is aborted and the
     * group redone batch by batch: only the big one fails. */
    struct queue *q = open_q(f, 1024 * MIB, 3 * MIB, 0);
    assert_non_null(q);
    int status;
    char err[256];
    uint64_t commits = group_with_bad_batch(q, 6 * MIB, "GM", &status, err, sizeof err);
    assert_int_equal(status, QUEUE_ERR_QUOTA);
    assert_non_null(strstr(err, "map full"));
    assert_int_equal(commits, 5); /* the small batches, one txn each; the dup needs none */
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 5);
    assert_consistent(q);
    /* A single batch hitting the map limit alone. */
    assert_int_equal(append1(q, "GM-ALONE", 6 * MIB, QUEUE_PENDING, NULL, NULL),
                     QUEUE_ERR_QUOTA);
    assert_int_equal(append1(q, "GM-AFTER", 1000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_consistent(q);
    queue_close(q);
}

/* ------------------------------------------------------------------------ */
/* Group commit under concurrency                                            */

enum { GC_THREADS = 8, GC_PER_THREAD = 500, GC_XML = 6371 };

struct gc_arg {
    struct queue *q;
    int id;
    _Atomic int *errors;
};

static void *gc_thread(void *p)
{
    struct gc_arg *a = p;
    char doc[32], err[256];
    size_t xl;
    char *xml = make_xml("GCPAYLOAD", GC_XML, &xl);
    for (int i = 0; i < GC_PER_THREAD; i++) {
        snprintf(doc, sizeof doc, "G%d-%05d", a->id, i);
        struct queue_item it = { .mandt = "100", .sndprn = "SAPECC", .docnum = doc,
                                 .mestyp = "ORDERS", .idoctyp = "ORDERS05",
                                 .keys = "purchase_order:4500000001", .xml = xml,
                                 .xml_len = xl, .state = QUEUE_PENDING };
        if (queue_append(a->q, &it, 1, NULL, err, sizeof err) != QUEUE_OK || it.duplicate)
            atomic_fetch_add(a->errors, 1);
    }
    free(xml);
    return NULL;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_group_commit_groups(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 256 * MIB, 0, 0);
    assert_non_null(q);
    _Atomic int errors = 0;
    pthread_t th[GC_THREADS];
    struct gc_arg args[GC_THREADS];
    uint64_t c0 = queue_commit_count(q);
    double t0 = mono_s();
    for (int i = 0; i < GC_THREADS; i++) {
        args[i] = (struct gc_arg){ .q = q, .id = i, .errors = &errors };
        assert_int_equal(pthread_create(&th[i], NULL, gc_thread, &args[i]), 0);
    }
    for (int i = 0; i < GC_THREADS; i++)
        pthread_join(th[i], NULL);
    double dt = mono_s() - t0;
    uint64_t commits = queue_commit_count(q) - c0;
    const uint64_t appends = GC_THREADS * GC_PER_THREAD;
    print_message("group commit: %llu appends of %d B from %d threads in %.3f s "
                  "= %.0f appends/s, %llu commits (%.1f appends/commit)\n",
                  (unsigned long long)appends, GC_XML, GC_THREADS, dt, (double)appends / dt,
                  (unsigned long long)commits, (double)appends / (double)commits);
    assert_int_equal(atomic_load(&errors), 0);
    assert_true(commits < appends / 4);
    struct queue_stats st;
    char err[256];
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], appends);
    assert_int_equal(st.next_seq, appends + 1);
    assert_consistent(q);
    queue_close(q);
}

/* queue_close lets the committer finish what was submitted. */
static void test_close_drains(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    struct queue_item it[3];
    struct queue_batch b[3];
    struct done_rec d = { 0 };
    queue_hold(q, 1);
    for (int i = 0; i < 3; i++) {
        char doc[16];
        snprintf(doc, sizeof doc, "CD%d", i);
        item_init(&it[i], "SAPECC", doc, 1000, QUEUE_PENDING);
        b[i] = (struct queue_batch){ .items = &it[i], .nitems = 1, .done = done_count, .ud = &d };
        assert_int_equal(queue_submit(q, &b[i]), QUEUE_OK);
    }
    queue_close(q); /* releases the hold, drains, joins */
    assert_int_equal(atomic_load(&d.calls), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(b[i].status, QUEUE_OK);

    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    for (int i = 0; i < 3; i++) {
        uint64_t seq;
        char err[256];
        assert_int_equal(queue_find(q, "100", "SAPECC", it[i].docnum, &seq, err, sizeof err),
                         QUEUE_OK);
        assert_int_equal(seq, it[i].seq);
        item_free(&it[i]);
    }
    queue_close(q);
}

/* ------------------------------------------------------------------------ */
/* Persistence, readonly, version                                            */

static void test_reopen_persists(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    size_t changed;
    for (int i = 1; i <= 40; i++) {
        char d[16];
        snprintf(d, sizeof d, "P%02d", i);
        assert_int_equal(append1(q, d, (size_t)i * 500, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    }
    uint64_t some[] = { 3, 4, 5 };
    assert_int_equal(queue_set_state(q, some, 3, -1, QUEUE_FAILED, &changed, err, sizeof err),
                     QUEUE_OK);
    struct queue_change c = { .seq = 7, .from_state = -1, .to_state = QUEUE_DELIVERED,
                              .add_attempts = 2, .next_attempt_ms = 12345, .error = "x" };
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_OK);
    struct queue_stats st1, st2;
    assert_int_equal(queue_stats(q, &st1, err, sizeof err), QUEUE_OK);
    queue_close(q);

    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_stats(q, &st2, err, sizeof err), QUEUE_OK);
    assert_memory_equal(st1.count, st2.count, sizeof st1.count);
    assert_int_equal(st2.next_seq, 41);
    for (uint64_t s = 1; s <= 40; s++) {
        struct queue_record *r;
        char d[16];
        snprintf(d, sizeof d, "P%02llu", (unsigned long long)s);
        assert_int_equal(queue_get(q, s, 1, &r, err, sizeof err), QUEUE_OK);
        assert_string_equal(r->docnum, d);
        size_t xl;
        char *x = make_xml(d, (size_t)s * 500, &xl);
        assert_int_equal(r->xml_len, xl);
        assert_memory_equal(r->xml, x, xl);
        free(x);
        if (s == 7) {
            assert_int_equal(r->state, QUEUE_DELIVERED);
            assert_int_equal(r->attempts, 2);
            assert_int_equal(r->next_attempt_ms, 12345);
            assert_string_equal(r->error, "x");
        }
        queue_record_free(r);
    }
    /* Sequence continues after the old ones, dedupe survived. */
    uint64_t seq;
    int dup;
    assert_int_equal(append1(q, "P01", 10, QUEUE_PENDING, &seq, &dup), QUEUE_OK);
    assert_int_equal(dup, 1);
    assert_int_equal(seq, 1);
    assert_int_equal(append1(q, "P41", 10, QUEUE_PENDING, &seq, &dup), QUEUE_OK);
    assert_int_equal(seq, 41);
    assert_consistent(q);
    queue_close(q);
}

static void test_readonly(void **state)
{
    struct fx *f = *state;
    char path[600], err[256];
    store_path(f, path, sizeof path);

    /* No store yet: a readonly open says so and creates nothing. */
    struct queue_opts ro = { .path = path, .readonly = 1 };
    struct queue *q;
    assert_int_equal(queue_open_ex(&ro, &q, err, sizeof err), QUEUE_ERR_STORAGE);
    assert_null(q);
    assert_non_null(strstr(err, "no queue at"));
    assert_int_equal(access(path, F_OK), -1);

    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    for (int i = 0; i < 12; i++) {
        char d[16];
        snprintf(d, sizeof d, "R%02d", i);
        assert_int_equal(append1(q, d, 2000, i < 2 ? QUEUE_IGNORED : QUEUE_PENDING, NULL,
                                 NULL), QUEUE_OK);
    }
    /* `ml-connector queue stats` beside `serve`: another process opens the
     * store readonly while this one has it open read-write. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct queue *r = queue_open(&ro, err, sizeof err);
        if (!r)
            _exit(10);
        struct queue_stats st;
        if (queue_stats(r, &st, err, sizeof err) != QUEUE_OK)
            _exit(11);
        if (st.count[QUEUE_PENDING] != 10 || st.count[QUEUE_IGNORED] != 2 || st.next_seq != 13)
            _exit(12);
        struct counter c = { .state = QUEUE_PENDING };
        if (queue_list(r, QUEUE_PENDING, 0, 0, count_cb, &c, err, sizeof err) != QUEUE_OK ||
            c.n != 10 || c.bad)
            _exit(13);
        struct queue_record *rec;
        if (queue_get(r, 5, 1, &rec, err, sizeof err) != QUEUE_OK || !strstr(rec->xml, "R04"))
            _exit(14);
        queue_record_free(rec);
        struct queue_item it = { .docnum = "X", .state = QUEUE_PENDING };
        if (queue_append(r, &it, 1, NULL, err, sizeof err) != QUEUE_ERR_INVALID)
            _exit(15);
        size_t ch;
        if (queue_move_all(r, QUEUE_PENDING, QUEUE_FAILED, &ch, err, sizeof err) ==
            QUEUE_OK && ch)
            _exit(16);
        queue_close(r);
        _exit(0);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    /* The writer carries on. */
    assert_int_equal(append1(q, "R99", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_consistent(q);
    queue_close(q);
}

/* The store opened with plain LMDB (flags: 0 or MDB_RDONLY), for tests
 * that look under the queue API or write what it never would. */
static MDB_env *raw_env(const struct fx *f, unsigned flags)
{
    char path[600];
    store_path(f, path, sizeof path);
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, flags, 0600), 0);
    return env;
}

/* Write raw LMDB, as a newer binary or a disk fault would. */
static void raw_put(const struct fx *f, const char *db, const void *key, size_t klen,
                    const void *val, size_t vlen)
{
    MDB_env *env = raw_env(f, 0);
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_version(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(append1(q, "V1", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    queue_close(q);

    const unsigned char v2[4] = { 0, 0, 0, 2 };
    raw_put(f, "info", "format", 6, v2, 4);

    char path[600], err[256];
    store_path(f, path, sizeof path);
    struct queue_opts o = { .path = path, .max_size_bytes = 64 * MIB };
    assert_int_equal(queue_open_ex(&o, &q, err, sizeof err), QUEUE_ERR_VERSION);
    assert_null(q);
    assert_string_equal(err, "queue format 2 is newer than this binary (1): upgrade ml-connector");
    o.readonly = 1;
    assert_int_equal(queue_open_ex(&o, &q, err, sizeof err), QUEUE_ERR_VERSION);
    assert_null(queue_open(&o, err, sizeof err));

    const unsigned char v1[4] = { 0, 0, 0, 1 };
    raw_put(f, "info", "format", 6, v1, 4);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    queue_close(q);
}

/* Decoding checks every length: a damaged record is an error, not a crash. */
static void test_corrupt_record(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(append1(q, "C1", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "C2", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    struct queue_record *r;
    char err[256];
    assert_int_equal(queue_get(q, 2, 0, &r, err, sizeof err), QUEUE_OK);
    queue_record_free(r);
    queue_close(q);

    /* seq 2: a valid header whose first string claims 1 GiB. */
    unsigned char bad[48] = { 1, QUEUE_PENDING };
    bad[40] = 0x40; /* length 0x40000000 */
    unsigned char key[8] = { 0, 0, 0, 0, 0, 0, 0, 2 };
    raw_put(f, "rec", key, 8, bad, sizeof bad);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_get(q, 2, 0, &r, err, sizeof err), QUEUE_ERR_STORAGE);
    assert_non_null(strstr(err, "record encoding"));
    assert_int_equal(queue_get(q, 1, 0, &r, err, sizeof err), QUEUE_OK);
    queue_record_free(r);
    struct counter c = { .state = -1 };
    assert_int_equal(queue_list(q, -1, 0, 0, count_cb, &c, err, sizeof err), QUEUE_ERR_STORAGE);
    queue_close(q);

    /* Truncated below the header, and a newer record encoding. */
    raw_put(f, "rec", key, 8, bad, 10);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_get(q, 2, 0, &r, err, sizeof err), QUEUE_ERR_STORAGE);
    queue_close(q);
    unsigned char newer[48] = { 9, QUEUE_PENDING };
    raw_put(f, "rec", key, 8, newer, sizeof newer);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_get(q, 2, 0, &r, err, sizeof err), QUEUE_ERR_VERSION);
    queue_close(q);
}

/* Another process grows the map past ours (MDB_MAP_RESIZED on our next txn
 * begin): the queue remaps with mdb_env_set_mapsize(env, 0) and carries on. */
static void test_map_resized(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 1024 * MIB, 4 * MIB, 0);
    assert_non_null(q);
    char err[256], path[600];
    store_path(f, path, sizeof path);
    assert_int_equal(append1(q, "M1", 1000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_true(st.map_bytes <= 4 * MIB);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No threads here; a scratch DBI the queue's invariants ignore. */
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        static char blob[8 * 1024 * 1024];
        if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
            mdb_env_set_mapsize(env, 64 * MIB) || mdb_env_open(env, path, MDB_NOTLS, 0600))
            _exit(20);
        if (mdb_txn_begin(env, NULL, 0, &txn) ||
            mdb_dbi_open(txn, "scratch", MDB_CREATE, &dbi))
            _exit(21);
        MDB_val k = { 4, "grow" }, v = { sizeof blob, blob };
        if (mdb_put(txn, dbi, &k, &v, 0) || mdb_txn_commit(txn))
            _exit(22);
        mdb_env_close(env);
        _exit(0);
    }
    int ws;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);

    /* Write path first (the committer's txn begin), then reads. */
    assert_int_equal(append1(q, "M2", 1000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_true(st.map_bytes >= 64 * MIB);
    assert_int_equal(st.count[QUEUE_PENDING], 2);
    struct queue_record *r;
    assert_int_equal(queue_get(q, 2, 1, &r, err, sizeof err), QUEUE_OK);
    queue_record_free(r);
    assert_consistent(q);
    queue_close(q);
}

/* ------------------------------------------------------------------------ */
/* Crash safety                                                              */

struct ack {
    uint64_t seq;
    char docnum[24];
};

enum { CR_THREADS = 4 };

struct cr_arg {
    struct queue *q;
    int round, id, fd;
};

static void *crash_writer(void *p)
{
    struct cr_arg *a = p;
    char err[256];
    for (int i = 0;; i++) {
        /* Batches of 1-3 IDocs; every 4th resends an earlier DOCNUM. */
        struct queue_item it[3];
        char docs[3][24];
        int n = 1 + i % 3;
        for (int k = 0; k < n; k++) {
            int num = (k == 2 && i % 4 == 0 && i > 8) ? i - 8 : i;
            snprintf(docs[k], sizeof docs[k], "K%d-%d-%d-%d", a->round, a->id, num, k % 2);
            size_t xl;
            it[k] = (struct queue_item){ .mandt = "100", .sndprn = "SAPECC",
                                         .docnum = docs[k], .mestyp = "CREMAS",
                                         .state = QUEUE_PENDING };
            it[k].xml = make_xml(docs[k], 6000 + (size_t)k * 1000, &xl);
            it[k].xml_len = xl;
        }
        int rc = queue_append(a->q, it, (size_t)n, NULL, err, sizeof err);
        for (int k = 0; k < n; k++) {
            if (rc == QUEUE_OK) {
                /* Acknowledged: report it (32 bytes < PIPE_BUF: atomic). */
                struct ack ack = { .seq = it[k].seq };
                memcpy(ack.docnum, docs[k], sizeof ack.docnum);
                if (write(a->fd, &ack, sizeof ack) != sizeof ack)
                    _exit(3);
            }
            free((char *)it[k].xml);
        }
        if (rc != QUEUE_OK)
            _exit(4);
    }
    return NULL;
}

static void crash_child(const struct fx *f, int round, int fd)
{
    struct queue *q = open_q(f, 512 * MIB, 0, 0);
    if (!q)
        _exit(2);
    pthread_t th[CR_THREADS];
    struct cr_arg args[CR_THREADS];
    for (int i = 0; i < CR_THREADS; i++) {
        args[i] = (struct cr_arg){ .q = q, .round = round, .id = i, .fd = fd };
        if (pthread_create(&th[i], NULL, crash_writer, &args[i]))
            _exit(5);
    }
    for (int i = 0; i < CR_THREADS; i++)
        pthread_join(th[i], NULL);
    _exit(6);
}

struct docset {
    char (*d)[24];
    size_t n, cap;
};

static int seen_cb(const struct queue_record *r, void *ud)
{
    struct docset *s = ud;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->d = realloc(s->d, s->cap * sizeof *s->d);
    }
    snprintf(s->d[s->n++], 24, "%s", r->docnum);
    return 0;
}

static int cmp_doc(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_crash_safety(void **state)
{
    struct fx *f = *state;
    struct ack *acks = NULL;
    size_t nacks = 0, cap = 0;
    for (int round = 0; round < 3; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(f, round, pfd[1]);
        }
        close(pfd[1]);
        /* Collect acknowledgements for ~0.3 s, then SIGKILL mid-flight. */
        double end = mono_s() + 0.3;
        int killed = 0;
        size_t round_acks = 0;
        for (;;) {
            if (!killed && mono_s() >= end) {
                kill(pid, SIGKILL);
                killed = 1;
            }
            struct pollfd pf = { .fd = pfd[0], .events = POLLIN };
            if (poll(&pf, 1, 20) <= 0)
                continue;
            if (nacks == cap) {
                cap = cap ? 2 * cap : 4096;
                acks = realloc(acks, cap * sizeof *acks);
            }
            ssize_t r = read(pfd[0], &acks[nacks], sizeof *acks);
            if (r == 0)
                break; /* child gone, pipe drained */
            assert_int_equal(r, sizeof *acks);
            nacks++;
            round_acks++;
        }
        close(pfd[0]);
        int ws;
        assert_int_equal(waitpid(pid, &ws, 0), pid);
        assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
        print_message("crash round %d: %zu acknowledged IDocs before SIGKILL\n", round,
                      round_acks);
        assert_true(round_acks > 0);

        /* Reopen after the kill (stale reader slot and maybe a held write
         * lock left behind): every acknowledged DOCNUM is there, once. */
        struct queue *q = open_q(f, 512 * MIB, 0, 0);
        assert_non_null(q);
        char err[256];
        for (size_t i = 0; i < nacks; i++) {
            uint64_t seq;
            int rc = queue_find(q, "100", "SAPECC", acks[i].docnum, &seq, err, sizeof err);
            if (rc != QUEUE_OK || seq != acks[i].seq)
                print_error("ack %s seq %llu: rc %d seq %llu\n", acks[i].docnum,
                            (unsigned long long)acks[i].seq, rc, (unsigned long long)seq);
            assert_int_equal(rc, QUEUE_OK);
            assert_int_equal(seq, acks[i].seq);
            if (i % 97 == 0) {
                struct queue_record *r;
                assert_int_equal(queue_get(q, seq, 1, &r, err, sizeof err), QUEUE_OK);
                assert_string_equal(r->docnum, acks[i].docnum);
                assert_non_null(strstr(r->xml, acks[i].docnum));
                queue_record_free(r);
            }
        }
        struct docset s = { 0 };
        assert_int_equal(queue_list(q, -1, 0, 0, seen_cb, &s, err, sizeof err), QUEUE_OK);
        qsort(s.d, s.n, sizeof *s.d, cmp_doc);
        for (size_t i = 1; i < s.n; i++)
            assert_true(strcmp(s.d[i - 1], s.d[i]) != 0);
        free(s.d);
        assert_consistent(q);
        queue_close(q);
    }
    free(acks);
}

/* ------------------------------------------------------------------------ */
/* Delivery support: keystate, links, audit, runs, retention                 */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Entries of a DBI by raw LMDB (the store must not be open in this process):
 * -1 when the DBI does not exist. */
static long raw_entries(const struct fx *f, const char *db)
{
    char path[600];
    store_path(f, path, sizeof path);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    long n = -1;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    int rc = mdb_dbi_open(txn, db, 0, &dbi);
    if (rc == 0) {
        assert_int_equal(mdb_stat(txn, dbi, &st), 0);
        n = (long)st.ms_entries;
    } else {
        assert_int_equal(rc, MDB_NOTFOUND);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

static void deliver(struct queue *q, uint64_t seq, const char *keys)
{
    char err[256];
    size_t changed;
    struct queue_change c = { .seq = seq, .from_state = -1, .to_state = QUEUE_DELIVERED,
                              .next_attempt_ms = -1, .applied_keys = keys };
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 1);
}

static void test_keystate_update(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256], val[QUEUE_LINK_VALUE_MAX + 1];
    size_t changed;
    uint64_t s1, s2, s3;
    assert_int_equal(append1(q, "K1", 300, QUEUE_PENDING, &s1, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "K2", 300, QUEUE_PENDING, &s2, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "K3", 300, QUEUE_PENDING, &s3, NULL), QUEUE_OK);
    assert_int_equal(queue_set_state(q, &s1, 1, QUEUE_PENDING, QUEUE_INFLIGHT, &changed, err,
                                     sizeof err), QUEUE_OK);

    struct queue_keystate ks;
    assert_int_equal(queue_keystate_get(q, "vendor:0000100003", &ks, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);

    /* Delivered: keystate and links in the same txn as the state change
     * (extra blanks between keys are fine). */
    const struct queue_link l1[] = {
        { "vendor:0000100003", "0000200001\t1\t0" },
        { "customer:0000200001", "0000100003\t1\t0" },
    };
    struct queue_change c = { .seq = s1, .from_state = QUEUE_INFLIGHT,
                              .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                              .applied_keys = " vendor:0000100003  contact:0000152955 ",
                              .links = l1, .nlinks = 2 };
    uint64_t commits = queue_commit_count(q);
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(queue_commit_count(q), commits + 1); /* one txn for all of it */
    const char *keys[] = { "vendor:0000100003", "contact:0000152955" };
    for (int i = 0; i < 2; i++) {
        memset(&ks, 0x55, sizeof ks);
        assert_int_equal(queue_keystate_get(q, keys[i], &ks, err, sizeof err), QUEUE_OK);
        assert_int_equal(ks.seq, s1);
        assert_string_equal(ks.mandt, "100");
        assert_string_equal(ks.sndprn, "SAPECC");
        assert_string_equal(ks.docnum, "K1");
        assert_string_equal(ks.credat, "20240131");
        assert_string_equal(ks.cretim, "235959");
    }
    assert_int_equal(queue_keystate_get(q, "vendor", &ks, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_link_get(q, "vendor:0000100003", val, sizeof val, err, sizeof err),
                     QUEUE_OK);
    assert_string_equal(val, "0000200001\t1\t0");
    assert_int_equal(queue_link_get(q, "customer:0000200001", val, sizeof val, err,
                                    sizeof err), QUEUE_OK);
    assert_string_equal(val, "0000100003\t1\t0");

    /* from_state does not match (K2 is pending): nothing is written, not
     * even the bookkeeping, and no commit happens. */
    const struct queue_link lx = { "vendor:X", "x\t0\t0" };
    c = (struct queue_change){ .seq = s2, .from_state = QUEUE_INFLIGHT,
                               .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                               .applied_keys = "vendor:0000100003 vendor:X",
                               .links = &lx, .nlinks = 1 };
    commits = queue_commit_count(q);
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 0);
    assert_int_equal(queue_commit_count(q), commits);
    assert_int_equal(queue_keystate_get(q, "vendor:0000100003", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s1);
    assert_int_equal(queue_keystate_get(q, "vendor:X", &ks, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_link_get(q, "vendor:X", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);

    /* An unknown seq in the call: nothing at all, bookkeeping included. */
    struct queue_change two[2] = {
        { .seq = s2, .from_state = -1, .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
          .applied_keys = "vendor:Y", .links = &lx, .nlinks = 1 },
        { .seq = 999, .from_state = -1, .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1 },
    };
    assert_int_equal(queue_update(q, two, 2, &changed, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_keystate_get(q, "vendor:Y", &ks, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_link_get(q, "vendor:X", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    struct queue_record *r;
    assert_int_equal(queue_get(q, s2, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_PENDING);
    queue_record_free(r);

    /* Two changes, one applied: only its keys move. */
    two[0] = (struct queue_change){ .seq = s2, .from_state = QUEUE_PENDING,
                                    .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                                    .applied_keys = "vendor:0000100003" };
    two[1] = (struct queue_change){ .seq = s3, .from_state = QUEUE_INFLIGHT,
                                    .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                                    .applied_keys = "customer:Z" };
    assert_int_equal(queue_update(q, two, 2, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(queue_keystate_get(q, "vendor:0000100003", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s2);
    assert_string_equal(ks.docnum, "K2");
    assert_int_equal(queue_keystate_get(q, "contact:0000152955", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s1);
    assert_int_equal(queue_keystate_get(q, "customer:Z", &ks, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);

    /* Refused before the txn: a key over LMDB's limit, a bad link. */
    char longkey[600];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    char bigval[QUEUE_LINK_VALUE_MAX + 2];
    memset(bigval, 'v', sizeof bigval - 1);
    bigval[sizeof bigval - 1] = '\0';
    const struct queue_link bad[] = { { "vendor:B", bigval }, { "", "x" },
                                      { "vendor:C", NULL }, { longkey, "x" } };
    c = (struct queue_change){ .seq = s3, .from_state = -1, .to_state = QUEUE_DELIVERED,
                               .next_attempt_ms = -1, .applied_keys = longkey };
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_ERR_INVALID);
    assert_non_null(strstr(err, "business key"));
    c.applied_keys = "vendor:B";
    for (int i = 0; i < 4; i++) {
        c.links = &bad[i];
        c.nlinks = 1;
        assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_ERR_INVALID);
    }
    c.links = NULL;
    assert_int_equal(queue_update(q, &c, 1, &changed, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_get(q, s3, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_PENDING);
    queue_record_free(r);
    assert_int_equal(queue_keystate_get(q, "vendor:B", &ks, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_keystate_get(q, "", &ks, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_keystate_get(q, longkey, &ks, err, sizeof err), QUEUE_ERR_NOTFOUND);

    /* Control fields longer than the struct's buffers come back cut. */
    struct queue_item it;
    item_init(&it, "SNDPRN-OF-SIXTY-BYTES-SNDPRN-OF-SIXTY-BYTES-SNDPRN-OF-SIXTY-B", "K4", 100,
              QUEUE_PENDING);
    assert_int_equal(queue_append(q, &it, 1, NULL, err, sizeof err), QUEUE_OK);
    deliver(q, it.seq, "vendor:LONG");
    assert_int_equal(queue_keystate_get(q, "vendor:LONG", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, it.seq);
    assert_int_equal(strlen(ks.sndprn), sizeof ks.sndprn - 1);
    assert_memory_equal(ks.sndprn, it.sndprn, sizeof ks.sndprn - 1);
    item_free(&it);
    assert_consistent(q);
    queue_close(q);

    /* Durable like the state change. */
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_keystate_get(q, "vendor:0000100003", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s2);
    assert_int_equal(queue_link_get(q, "customer:0000200001", val, sizeof val, err,
                                    sizeof err), QUEUE_OK);
    queue_close(q);
}

static void test_links(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256], val[QUEUE_LINK_VALUE_MAX + 1];
    assert_int_equal(queue_link_get(q, "vendor:1", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_non_null(strstr(err, "vendor:1"));
    assert_int_equal(queue_link_put(q, "vendor:1", "0000200001\t0\t0", err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_link_get(q, "vendor:1", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_string_equal(val, "0000200001\t0\t0");
    assert_int_equal(queue_link_put(q, "vendor:1", "0000200001\t1\t1", err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_link_get(q, "vendor:1", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_string_equal(val, "0000200001\t1\t1");
    assert_int_equal(queue_link_get(q, "vendor:2", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);

    /* The limit exactly, then one byte over. */
    char big[QUEUE_LINK_VALUE_MAX + 2];
    memset(big, 'v', sizeof big - 1);
    big[QUEUE_LINK_VALUE_MAX] = '\0';
    assert_int_equal(queue_link_put(q, "vendor:big", big, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_link_get(q, "vendor:big", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_int_equal(strlen(val), QUEUE_LINK_VALUE_MAX);
    big[QUEUE_LINK_VALUE_MAX] = 'v';
    big[QUEUE_LINK_VALUE_MAX + 1] = '\0';
    assert_int_equal(queue_link_put(q, "vendor:big", big, err, sizeof err), QUEUE_ERR_INVALID);
    assert_non_null(strstr(err, "longer than 1024"));
    assert_int_equal(queue_link_get(q, "vendor:big", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_int_equal(strlen(val), QUEUE_LINK_VALUE_MAX); /* unchanged */

    /* A buffer too small is refused, an exact one works. */
    char small[15];
    assert_int_equal(queue_link_get(q, "vendor:1", small, 14, err, sizeof err),
                     QUEUE_ERR_INVALID);
    assert_int_equal(queue_link_get(q, "vendor:1", small, 15, err, sizeof err), QUEUE_OK);
    assert_string_equal(small, "0000200001\t1\t1");

    /* Empty value fine; bad keys and NULL value refused. */
    assert_int_equal(queue_link_put(q, "vendor:empty", "", err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_link_get(q, "vendor:empty", val, sizeof val, err, sizeof err),
                     QUEUE_OK);
    assert_string_equal(val, "");
    char longkey[600];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(queue_link_put(q, "", "x", err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_link_put(q, NULL, "x", err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_link_put(q, "vendor:3", NULL, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_link_put(q, longkey, "x", err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_link_get(q, longkey, val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_link_get(q, "", val, sizeof val, err, sizeof err), QUEUE_ERR_INVALID);
    queue_close(q);
}

struct acoll {
    uint64_t ids[64], seqs[64];
    size_t n, stop_after;
    uint64_t want_id;     /* copy this entry's fields */
    struct queue_audit got;
    char kind[64], docnum[64], key[600], op[600], code[64], msg[4096];
    int null_mask;        /* bit i: string i was NULL */
};

static int acoll_cb(const struct queue_audit *a, void *ud)
{
    struct acoll *c = ud;
    if (c->n < 64) {
        c->ids[c->n] = a->id;
        c->seqs[c->n] = a->seq;
    }
    c->n++;
    if (a->id == c->want_id) {
        c->got = *a;
        const char *s[] = { a->kind, a->docnum, a->key, a->operation, a->error_code, a->message };
        char *d[] = { c->kind, c->docnum, c->key, c->op, c->code, c->msg };
        size_t cap[] = { sizeof c->kind, sizeof c->docnum, sizeof c->key, sizeof c->op,
                         sizeof c->code, sizeof c->msg };
        c->null_mask = 0;
        for (int i = 0; i < 6; i++) {
            if (!s[i])
                c->null_mask |= 1 << i;
            snprintf(d[i], cap[i], "%s", s[i] ? s[i] : "");
        }
        c->got.kind = c->got.docnum = c->got.key = NULL;
        c->got.operation = c->got.error_code = c->got.message = NULL;
    }
    return c->stop_after && c->n >= c->stop_after;
}

static struct acoll *alist(struct queue *q, uint64_t seq, uint64_t before, size_t limit,
                           uint64_t want_id)
{
    static struct acoll c;
    char err[256];
    memset(&c, 0, sizeof c);
    c.want_id = want_id;
    int rc = queue_audit_list(q, seq, before, limit, acoll_cb, &c, err, sizeof err);
    if (rc != QUEUE_OK)
        print_error("queue_audit_list: %s\n", err);
    assert_int_equal(rc, QUEUE_OK);
    return &c;
}

static void assert_ids(const struct acoll *c, const uint64_t *want, size_t n)
{
    assert_int_equal(c->n, n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(c->ids[i], want[i]);
}

/* An audit append that LMDB refuses (next_audit rewound by hand, so the
 * MDB_APPEND of id 1 meets an existing key) fails cleanly: it returns an
 * error and leaves no write transaction, lock or writer slot behind — the
 * next write of any kind goes through. */
static void test_audit_failure_releases(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    struct queue_audit a[2] = { { .kind = "attempt", .seq = 1 }, { .kind = "attempt", .seq = 1 } };
    assert_int_equal(queue_audit_append(q, a, 2, err, sizeof err), QUEUE_OK);
    queue_close(q);
    unsigned char one[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
    raw_put(f, "info", "next_audit", 10, one, 8);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    struct queue_audit b = { .kind = "attempt", .seq = 1 };
    assert_int_not_equal(queue_audit_append(q, &b, 1, err, sizeof err), QUEUE_OK);
    assert_non_null(strstr(err, "audit"));
    /* Before the fix this write waited for ever on the leaked writer. */
    assert_int_equal(queue_link_put(q, "vendor:0000100003", "acc\t1\t0", err, sizeof err), QUEUE_OK);
    assert_int_equal(append1(q, "AF1", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_int_equal(queue_failed(q), 0);
    queue_close(q);
}

static size_t raw_last_txnid(const struct fx *f)
{
    MDB_env *env = raw_env(f, MDB_RDONLY);
    MDB_envinfo ei;
    assert_int_equal(mdb_env_info(env, &ei), 0);
    mdb_env_close(env);
    return ei.me_last_txnid;
}

/* Every read-write open commits a real transaction, so a fresh meta page
 * is written and synced over whatever the page cache holds (after a failed
 * meta sync and a restart, a resend is only answered "duplicate" once such
 * a meta page is on disk). A readonly open writes nothing. */
static void test_open_writes_meta(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    queue_close(q);
    size_t t1 = raw_last_txnid(f);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    queue_close(q);
    size_t t2 = raw_last_txnid(f);
    assert_true(t2 > t1);
    q = open_q(f, 0, 0, 1);
    assert_non_null(q);
    queue_close(q);
    assert_int_equal(raw_last_txnid(f), t2);
}

static void test_audit(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    assert_ids(alist(q, 0, 0, 0, 0), NULL, 0);

    int64_t t0 = wall_ms();
    struct queue_audit a[5] = {
        { .time_ms = 1700000000123, .kind = "attempt", .seq = 1, .docnum = "0000000000123456",
          .key = "vendor:0000100003",
          .operation = "PATCH accounts(mlc_sapvendorid='0000100003')", .http_status = 412,
          .error_code = "0x80060891", .message = "A record with matching key values already exists.",
          .duration_ms = 187, .run_id = 7 },
        { .kind = "attempt", .seq = 1, .http_status = 0, .message = "connection refused",
          .duration_ms = -1 },
        { .kind = "superseded", .seq = 2, .docnum = "", .message = "" },
        { .kind = "run" },
        { .kind = "warning", .seq = 1, .http_status = -3 },
    };
    assert_int_equal(queue_audit_append(q, a, 5, err, sizeof err), QUEUE_OK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(a[i].id, (uint64_t)i + 1);
    struct queue_audit b[3] = { { .kind = "attempt", .seq = 2 }, { .kind = "attempt" },
                                { .kind = "attempt", .seq = 1 } };
    assert_int_equal(queue_audit_append(q, b, 3, err, sizeof err), QUEUE_OK);
    assert_int_equal(b[0].id, 6);
    assert_int_equal(b[2].id, 8);
    assert_int_equal(queue_audit_append(q, b, 0, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_audit_append(q, NULL, 1, err, sizeof err), QUEUE_ERR_INVALID);

    /* All, newest first; every field round-trips. */
    const uint64_t all[] = { 8, 7, 6, 5, 4, 3, 2, 1 };
    struct acoll *c = alist(q, 0, 0, 0, 1);
    assert_ids(c, all, 8);
    assert_int_equal(c->got.id, 1);
    assert_int_equal(c->got.time_ms, 1700000000123);
    assert_int_equal(c->got.seq, 1);
    assert_int_equal(c->got.http_status, 412);
    assert_int_equal(c->got.duration_ms, 187);
    assert_int_equal(c->got.run_id, 7);
    assert_string_equal(c->kind, "attempt");
    assert_string_equal(c->docnum, "0000000000123456");
    assert_string_equal(c->key, "vendor:0000100003");
    assert_string_equal(c->op, "PATCH accounts(mlc_sapvendorid='0000100003')");
    assert_string_equal(c->code, "0x80060891");
    assert_string_equal(c->msg, "A record with matching key values already exists.");
    assert_int_equal(c->null_mask, 0);
    /* time 0 is now; NULL stays NULL, "" stays "". */
    c = alist(q, 0, 0, 0, 2);
    assert_true(c->got.time_ms >= t0 && c->got.time_ms <= wall_ms());
    assert_int_equal(c->got.duration_ms, -1);
    assert_int_equal(c->null_mask, (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4));
    c = alist(q, 0, 0, 0, 3);
    assert_int_equal(c->null_mask, (1 << 2) | (1 << 3) | (1 << 4));
    c = alist(q, 0, 0, 0, 5);
    assert_int_equal(c->got.http_status, -3);

    /* By record, through the index. */
    const uint64_t s1[] = { 8, 5, 2, 1 }, s2[] = { 6, 3 };
    assert_ids(alist(q, 1, 0, 0, 0), s1, 4);
    assert_ids(alist(q, 2, 0, 0, 0), s2, 2);
    assert_ids(alist(q, 3, 0, 0, 0), NULL, 0);
    assert_ids(alist(q, UINT64_MAX, 0, 0, 0), NULL, 0);

    /* Paging: pass the last id seen as before_id. */
    const uint64_t p1[] = { 8, 7, 6 }, p2[] = { 5, 4, 3 }, p3[] = { 2, 1 };
    assert_ids(alist(q, 0, 0, 3, 0), p1, 3);
    assert_ids(alist(q, 0, 6, 3, 0), p2, 3);
    assert_ids(alist(q, 0, 3, 3, 0), p3, 2);
    assert_ids(alist(q, 0, 1, 3, 0), NULL, 0);
    assert_ids(alist(q, 0, 100, 2, 0), p1, 2);
    const uint64_t q1[] = { 8, 5 }, q2[] = { 2, 1 }, q3[] = { 5, 2 };
    assert_ids(alist(q, 1, 0, 2, 0), q1, 2);
    assert_ids(alist(q, 1, 5, 2, 0), q2, 2);
    assert_ids(alist(q, 1, 8, 2, 0), q3, 2);
    assert_ids(alist(q, 2, 3, 0, 0), NULL, 0);
    /* The callback stops the listing. */
    c = alist(q, 0, 0, 0, 0);
    memset(c, 0, sizeof *c);
    c->stop_after = 2;
    assert_int_equal(queue_audit_list(q, 0, 0, 0, acoll_cb, c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c->n, 2);

    /* Caps: message 2 KiB, operation 512 B; never inside a UTF-8 character. */
    char *msg = malloc(5000), *op = malloc(1000), *cut = malloc(2100);
    memset(msg, 'm', 4999);
    msg[4999] = '\0';
    memset(op, 'o', 999);
    op[999] = '\0';
    memset(cut, 'a', 2047);
    memcpy(cut + 2047, "\xc3\xa9zz", 5); /* U+00E9 across the 2 KiB mark */
    struct queue_audit big[2] = { { .kind = "attempt", .operation = op, .message = msg },
                                  { .kind = "attempt", .message = cut } };
    assert_int_equal(queue_audit_append(q, big, 2, err, sizeof err), QUEUE_OK);
    c = alist(q, 0, 0, 0, big[0].id);
    assert_int_equal(strlen(c->msg), 2048);
    assert_int_equal(strlen(c->op), 512);
    c = alist(q, 0, 0, 0, big[1].id);
    assert_int_equal(strlen(c->msg), 2047);
    free(msg);
    free(op);
    free(cut);

    /* Ids keep growing across a reopen. */
    queue_close(q);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    struct queue_audit one = { .kind = "run" };
    assert_int_equal(queue_audit_append(q, &one, 1, err, sizeof err), QUEUE_OK);
    assert_int_equal(one.id, 11);
    queue_close(q);
}

/* A delivery job's outcomes and its audit in one transaction: both land,
 * ids are assigned; an unknown seq fails the call and writes neither. */
static void test_update_audited(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    uint64_t s1, s2;
    assert_int_equal(append1(q, "UA1", 300, QUEUE_PENDING, &s1, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "UA2", 300, QUEUE_PENDING, &s2, NULL), QUEUE_OK);
    const uint64_t both[] = { s1, s2 };
    assert_int_equal(queue_set_state(q, both, 2, QUEUE_PENDING, QUEUE_INFLIGHT, NULL, err, sizeof err),
                     QUEUE_OK); /* claimed */
    struct queue_change c[2] = {
        { .seq = s1, .from_state = QUEUE_INFLIGHT, .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
          .add_attempts = 1, .applied_keys = "vendor:UA1" },
        { .seq = s2, .from_state = QUEUE_INFLIGHT, .to_state = QUEUE_PENDING, .next_attempt_ms = 5,
          .add_attempts = 1, .error = "503" },
    };
    struct queue_audit a[3] = { { .kind = "attempt", .seq = s1, .http_status = 204 },
                                { .kind = "attempt", .seq = s2, .http_status = 503 },
                                { .kind = "warning", .seq = s1, .message = "two accounts" } };
    int dropped = -1;
    size_t changed = 0;
    assert_int_equal(queue_update_audited(q, c, 2, a, 3, &dropped, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(dropped, 0);
    assert_int_equal(changed, 2);
    assert_int_equal(a[0].id, 1);
    assert_int_equal(a[2].id, 3);
    const uint64_t by1[] = { 3, 1 }, by2[] = { 2 };
    assert_ids(alist(q, s1, 0, 0, 0), by1, 2);
    assert_ids(alist(q, s2, 0, 0, 0), by2, 1);
    struct queue_record *r = NULL;
    assert_int_equal(queue_get(q, s1, 0, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(r->state, QUEUE_DELIVERED);
    queue_record_free(r);
    struct queue_keystate ks;
    assert_int_equal(queue_keystate_get(q, "vendor:UA1", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s1);
    /* Audit alone (no change) still commits. */
    struct queue_audit lone = { .kind = "run" };
    assert_int_equal(queue_update_audited(q, NULL, 0, &lone, 1, NULL, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(lone.id, 4);
    /* Unknown seq: nothing of the call is written. */
    struct queue_change bad = { .seq = 999, .from_state = -1, .to_state = QUEUE_FAILED, .next_attempt_ms = -1 };
    struct queue_audit more = { .kind = "attempt", .seq = 999 };
    assert_int_equal(queue_update_audited(q, &bad, 1, &more, 1, NULL, NULL, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_int_equal(more.id, 0);
    const uint64_t all[] = { 4, 3, 2, 1 };
    assert_ids(alist(q, 0, 0, 0, 0), all, 4);
    assert_consistent(q);
    queue_close(q);
}

static void test_audit_quota(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 2 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    /* Fill the store to its quota with records. */
    int n = 0, rc;
    do {
        char d[16];
        snprintf(d, sizeof d, "AQ%04d", n++);
        rc = append1(q, d, 160 * 1024, QUEUE_PENDING, NULL, NULL);
    } while (rc == QUEUE_OK && n < 1000);
    assert_int_equal(rc, QUEUE_ERR_QUOTA);
    /* A large audit batch would go over: refused whole, no id used. */
    static struct queue_audit a[200];
    char msg[2048];
    memset(msg, 'x', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    for (int i = 0; i < 200; i++)
        a[i] = (struct queue_audit){ .kind = "attempt", .seq = 1, .message = msg };
    assert_int_equal(queue_audit_append(q, a, 200, err, sizeof err), QUEUE_ERR_QUOTA);
    assert_non_null(strstr(err, "audit not written"));
    assert_int_equal(a[0].id, 0);
    assert_ids(alist(q, 0, 0, 0, 0), NULL, 0);
    /* Outcomes with that audit in one call: the outcome is applied, the
     * audit left out and said so. */
    int dropped = 0;
    size_t changed = 0;
    struct queue_change c2 = { .seq = 2, .from_state = QUEUE_PENDING, .to_state = QUEUE_FAILED,
                               .next_attempt_ms = -1, .error = "400 bad" };
    assert_int_equal(queue_update_audited(q, &c2, 1, a, 200, &dropped, &changed, err, sizeof err), QUEUE_OK);
    assert_int_equal(dropped, 1);
    assert_int_equal(changed, 1);
    assert_int_equal(a[0].id, 0);
    assert_ids(alist(q, 0, 0, 0, 0), NULL, 0);
    struct queue_record *r2 = NULL;
    assert_int_equal(queue_get(q, 2, 0, &r2, err, sizeof err), QUEUE_OK);
    assert_int_equal(r2->state, QUEUE_FAILED);
    queue_record_free(r2);
    /* Bookkeeping that delivery needs is not refused. */
    assert_int_equal(queue_link_put(q, "vendor:1", "x", err, sizeof err), QUEUE_OK);
    deliver(q, 1, "vendor:1");
    struct queue_run r = { .trigger = "continuous", .result = "running" };
    assert_int_equal(queue_run_put(q, &r, err, sizeof err), QUEUE_OK);
    /* Pruning makes room again. */
    size_t nrec, naud;
    assert_int_equal(queue_prune(q, wall_ms() + 1000, 0, &nrec, &naud, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(nrec, 1);
    assert_int_equal(naud, 0);
    struct queue_audit small = { .kind = "warning", .seq = 1, .message = "pruned" };
    assert_int_equal(queue_audit_append(q, &small, 1, err, sizeof err), QUEUE_OK);
    assert_int_equal(small.id, 1);
    assert_consistent(q);
    queue_close(q);
}

struct rcoll {
    uint64_t ids[16];
    struct queue_run first;
    char trigger[128], result[128];
    int result_null;
    size_t n;
};

static int rcoll_cb(const struct queue_run *r, void *ud)
{
    struct rcoll *c = ud;
    if (c->n == 0) {
        c->first = *r;
        snprintf(c->trigger, sizeof c->trigger, "%s", r->trigger ? r->trigger : "");
        snprintf(c->result, sizeof c->result, "%s", r->result ? r->result : "");
        c->result_null = !r->result;
        c->first.trigger = c->first.result = NULL;
    }
    if (c->n < 16)
        c->ids[c->n] = r->id;
    c->n++;
    return 0;
}

static void test_runs(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    struct rcoll c = { 0 };
    assert_int_equal(queue_runs_list(q, 0, rcoll_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 0);

    struct queue_run r1 = { .start_ms = 1000, .trigger = "schedule", .result = "running" };
    struct queue_run r2 = { .start_ms = 2000, .trigger = "admin", .result = "running" };
    assert_int_equal(queue_run_put(q, &r1, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_run_put(q, &r2, err, sizeof err), QUEUE_OK);
    assert_int_equal(r1.id, 1);
    assert_int_equal(r2.id, 2);

    /* Finish run 1 (replace by id). */
    r1.end_ms = 1500;
    r1.result = "partial";
    r1.delivered = 10, r1.failed = 2, r1.retried = 3, r1.superseded = 4, r1.ignored = 5;
    assert_int_equal(queue_run_put(q, &r1, err, sizeof err), QUEUE_OK);
    assert_int_equal(r1.id, 1);

    c = (struct rcoll){ 0 };
    assert_int_equal(queue_runs_list(q, 0, rcoll_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.ids[0], 2);
    assert_int_equal(c.ids[1], 1);
    assert_string_equal(c.trigger, "admin");
    assert_int_equal(c.first.end_ms, 0);

    c = (struct rcoll){ 0 };
    r2.end_ms = 2500;
    r2.result = NULL;
    char longtrig[200];
    memset(longtrig, 't', sizeof longtrig - 1);
    longtrig[sizeof longtrig - 1] = '\0';
    r2.trigger = longtrig;
    r2.delivered = UINT64_MAX;
    assert_int_equal(queue_run_put(q, &r2, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_runs_list(q, 1, rcoll_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.first.id, 2);
    assert_int_equal(c.first.start_ms, 2000);
    assert_int_equal(c.first.end_ms, 2500);
    assert_int_equal(c.first.delivered, UINT64_MAX);
    assert_int_equal(strlen(c.trigger), 64);
    assert_int_equal(c.result_null, 1);

    /* Replacing an id that does not exist. */
    struct queue_run ghost = { .id = 99, .trigger = "admin" };
    assert_int_equal(queue_run_put(q, &ghost, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_non_null(strstr(err, "99"));
    assert_int_equal(queue_run_put(q, NULL, err, sizeof err), QUEUE_ERR_INVALID);

    c = (struct rcoll){ 0 };
    assert_int_equal(queue_runs_list(q, 0, rcoll_cb, &c, err, sizeof err), QUEUE_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.ids[1], 1);
    /* New ids continue after a reopen. */
    queue_close(q);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    struct queue_run r3 = { .start_ms = 3000, .trigger = "startup", .result = "running" };
    assert_int_equal(queue_run_put(q, &r3, err, sizeof err), QUEUE_OK);
    assert_int_equal(r3.id, 3);
    queue_close(q);
}

static int rec_find_cb(const struct queue_run *r, void *ud)
{
    struct queue_run *want = ud;
    if (r->id == want->id) {
        want->end_ms = r->end_ms;
        want->delivered = r->delivered;
        want->failed = r->failed;
        want->retried = r->retried;
        want->superseded = r->superseded;
        want->ignored = r->ignored;
        return 1;
    }
    return 0;
}

static void test_run_fields(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    struct queue_run r = { .start_ms = 1, .trigger = "schedule", .result = "running" };
    struct queue_run other = { .start_ms = 2, .trigger = "admin" };
    assert_int_equal(queue_run_put(q, &r, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_run_put(q, &other, err, sizeof err), QUEUE_OK);
    r.end_ms = 9, r.delivered = 1, r.failed = 2, r.retried = 3, r.superseded = 4, r.ignored = 5;
    assert_int_equal(queue_run_put(q, &r, err, sizeof err), QUEUE_OK);
    struct queue_run got = { .id = r.id };
    assert_int_equal(queue_runs_list(q, 0, rec_find_cb, &got, err, sizeof err), QUEUE_OK);
    assert_int_equal(got.end_ms, 9);
    assert_int_equal(got.delivered, 1);
    assert_int_equal(got.failed, 2);
    assert_int_equal(got.retried, 3);
    assert_int_equal(got.superseded, 4);
    assert_int_equal(got.ignored, 5);
    queue_close(q);
}

/* ---- retention ---------------------------------------------------------- */

static void test_prune(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    size_t changed, nrec, naud;
    /* Old: OD1..OD4 delivered, OI1..OI2 ignored, OP pending, OF failed,
     * OX inflight. */
    uint64_t od[4], oi[2], op, of, ox;
    for (int i = 0; i < 4; i++) {
        char d[16];
        snprintf(d, sizeof d, "OD%d", i + 1);
        assert_int_equal(append1(q, d, 5000, QUEUE_PENDING, &od[i], NULL), QUEUE_OK);
        deliver(q, od[i], "vendor:0000100003");
    }
    assert_int_equal(append1(q, "OI1", 300, QUEUE_IGNORED, &oi[0], NULL), QUEUE_OK);
    assert_int_equal(append1(q, "OI2", 300, QUEUE_IGNORED, &oi[1], NULL), QUEUE_OK);
    assert_int_equal(append1(q, "OP", 300, QUEUE_PENDING, &op, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "OF", 300, QUEUE_PENDING, &of, NULL), QUEUE_OK);
    assert_int_equal(append1(q, "OX", 300, QUEUE_PENDING, &ox, NULL), QUEUE_OK);
    assert_int_equal(queue_set_state(q, &of, 1, -1, QUEUE_FAILED, &changed, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(queue_set_state(q, &ox, 1, -1, QUEUE_INFLIGHT, &changed, err, sizeof err),
                     QUEUE_OK);
    /* Audit: old entries (explicit old times) and current ones; runs. */
    struct queue_audit a[6] = {
        { .time_ms = 1000, .kind = "attempt", .seq = od[0] },
        { .time_ms = 2000, .kind = "attempt", .seq = op },
        { .time_ms = 3000, .kind = "run" },
        { .kind = "attempt", .seq = od[0] },
        { .kind = "attempt", .seq = op },
        { .time_ms = 4000, .kind = "attempt", .seq = od[0] },
    };
    assert_int_equal(queue_audit_append(q, a, 6, err, sizeof err), QUEUE_OK);
    struct queue_run r_old = { .start_ms = 500, .end_ms = 1000, .trigger = "schedule",
                               .result = "ok" };
    struct queue_run r_running = { .start_ms = 500, .trigger = "continuous",
                                   .result = "running" };
    struct queue_run r_new = { .start_ms = wall_ms(), .end_ms = wall_ms(), .trigger = "admin",
                               .result = "ok" };
    assert_int_equal(queue_run_put(q, &r_old, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_run_put(q, &r_running, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_run_put(q, &r_new, err, sizeof err), QUEUE_OK);

    usleep(20000);
    int64_t cutoff = wall_ms();
    usleep(20000);
    /* New: ND delivered and NI ignored after the cutoff; OD4 touched again
     * (a failed-again-then-delivered record is as new as its last change). */
    uint64_t nd, ni;
    assert_int_equal(append1(q, "ND", 300, QUEUE_PENDING, &nd, NULL), QUEUE_OK);
    deliver(q, nd, NULL);
    assert_int_equal(append1(q, "NI", 300, QUEUE_IGNORED, &ni, NULL), QUEUE_OK);
    deliver(q, od[3], NULL);

    struct queue_stats before, after;
    assert_int_equal(queue_stats(q, &before, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_prune(q, cutoff, 3500, &nrec, &naud, err, sizeof err), QUEUE_OK);
    assert_int_equal(nrec, 5);     /* OD1-3, OI1-2 */
    assert_int_equal(naud, 3 + 1); /* audit at 1000, 2000, 3000; the run ended at 1000 */
    assert_int_equal(queue_stats(q, &after, err, sizeof err), QUEUE_OK);
    assert_int_equal(after.count[QUEUE_DELIVERED], 2); /* OD4, ND */
    assert_int_equal(after.count[QUEUE_IGNORED], 1);   /* NI */
    assert_int_equal(after.count[QUEUE_PENDING], 1);
    assert_int_equal(after.count[QUEUE_FAILED], 1);
    assert_int_equal(after.count[QUEUE_INFLIGHT], 1);
    assert_int_equal(after.next_seq, before.next_seq);
    assert_true(after.used_bytes <= before.used_bytes);
    assert_consistent(q);

    struct queue_record *r;
    uint64_t gone[] = { od[0], od[1], od[2], oi[0], oi[1] };
    const char *gone_doc[] = { "OD1", "OD2", "OD3", "OI1", "OI2" };
    for (int i = 0; i < 5; i++) {
        uint64_t seq;
        assert_int_equal(queue_get(q, gone[i], 1, &r, err, sizeof err), QUEUE_ERR_NOTFOUND);
        assert_int_equal(queue_find(q, "100", "SAPECC", gone_doc[i], &seq, err, sizeof err),
                         QUEUE_ERR_NOTFOUND);
    }
    uint64_t kept[] = { od[3], op, of, ox, nd, ni };
    for (int i = 0; i < 6; i++) {
        assert_int_equal(queue_get(q, kept[i], 1, &r, err, sizeof err), QUEUE_OK);
        queue_record_free(r);
    }
    /* Keystate is kept, even though it names a pruned record. */
    struct queue_keystate ks;
    assert_int_equal(queue_keystate_get(q, "vendor:0000100003", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, od[3]);

    /* Audit: the old ones are gone, index entries included (a dangling
     * auditbyseq entry would make listing by seq fail). */
    const uint64_t left[] = { 6, 5, 4 }, left_od1[] = { 6, 4 }, left_op[] = { 5 };
    assert_ids(alist(q, 0, 0, 0, 0), left, 3);
    assert_ids(alist(q, od[0], 0, 0, 0), left_od1, 2);
    assert_ids(alist(q, op, 0, 0, 0), left_op, 1);
    struct rcoll rc = { 0 };
    assert_int_equal(queue_runs_list(q, 0, rcoll_cb, &rc, err, sizeof err), QUEUE_OK);
    assert_int_equal(rc.n, 2);
    assert_int_equal(rc.ids[0], r_new.id);
    assert_int_equal(rc.ids[1], r_running.id);

    /* Again: nothing more to do, and no commit for it. */
    uint64_t commits = queue_commit_count(q);
    assert_int_equal(queue_prune(q, cutoff, 3500, &nrec, &naud, err, sizeof err), QUEUE_OK);
    assert_int_equal(nrec, 0);
    assert_int_equal(naud, 0);
    assert_int_equal(queue_commit_count(q), commits);
    /* Cutoffs <= 0 prune nothing. */
    assert_int_equal(queue_prune(q, 0, -5, &nrec, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(nrec, 0);

    /* A resend of a pruned DOCNUM is a new record now. */
    uint64_t seq;
    int dup;
    assert_int_equal(append1(q, "OD1", 5000, QUEUE_PENDING, &seq, &dup), QUEUE_OK);
    assert_int_equal(dup, 0);
    assert_int_equal(seq, before.next_seq);
    assert_int_equal(queue_find(q, "100", "SAPECC", "OD1", &seq, err, sizeof err), QUEUE_OK);
    assert_int_equal(seq, before.next_seq);
    /* Audit ids keep growing after a prune. */
    struct queue_audit more = { .kind = "attempt", .seq = seq };
    assert_int_equal(queue_audit_append(q, &more, 1, err, sizeof err), QUEUE_OK);
    assert_int_equal(more.id, 7);
    assert_consistent(q);
    queue_close(q);

    /* Raw view: rec, doc, bystate and dedupe hold the same records. */
    long nr = raw_entries(f, "rec");
    assert_int_equal(nr, 7);
    assert_int_equal(raw_entries(f, "doc"), nr);
    assert_int_equal(raw_entries(f, "bystate"), nr);
    assert_int_equal(raw_entries(f, "dedupe"), nr);
    assert_int_equal(raw_entries(f, "auditbyseq"), 4); /* ids 4, 5, 6 and 7 */

    /* A dedupe entry that names another seq is not the record's to remove. */
    const char nd_key[] = "100\x1f" "SAPECC\x1f" "ND";
    const unsigned char other[8] = { 0, 0, 0, 0, 0, 0, 0x03, 0xe7 }; /* 999 */
    raw_put(f, "dedupe", nd_key, sizeof nd_key - 1, other, 8);
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    assert_int_equal(queue_prune(q, wall_ms() + 1000, 0, &nrec, &naud, err, sizeof err),
                     QUEUE_OK);
    assert_int_equal(nrec, 3); /* OD4, ND, NI */
    assert_int_equal(queue_find(q, "100", "SAPECC", "ND", &seq, err, sizeof err), QUEUE_OK);
    assert_int_equal(seq, 999);
    assert_int_equal(queue_find(q, "100", "SAPECC", "NI", &seq, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_consistent(q);
    queue_close(q);
}

/* More than one chunk of everything: each chunk its own bounded txn. */
static void test_prune_chunks(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 256 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    enum { NREC = 5600, PER = 700, NAUD = 5100 };
    static struct queue_item items[PER];
    static char docs[PER][16];
    for (int b = 0; b < NREC / PER; b++) {
        for (int i = 0; i < PER; i++) {
            snprintf(docs[i], sizeof docs[i], "PC%06d", b * PER + i);
            items[i] = (struct queue_item){ .mandt = "100", .sndprn = "SAPECC",
                                            .docnum = docs[i], .xml = "<x/>", .xml_len = 4,
                                            .state = i % 50 ? QUEUE_PENDING : QUEUE_IGNORED };
        }
        assert_int_equal(queue_append(q, items, PER, NULL, err, sizeof err), QUEUE_OK);
    }
    size_t changed;
    assert_int_equal(queue_move_all(q, QUEUE_PENDING, QUEUE_DELIVERED, &changed, err,
                                    sizeof err), QUEUE_OK);
    assert_int_equal(changed, NREC - NREC / 50);
    static struct queue_audit a[NAUD];
    for (int i = 0; i < NAUD; i++)
        a[i] = (struct queue_audit){ .time_ms = 1000 + i, .kind = "attempt",
                                     .seq = (uint64_t)(i % 50) + 1 };
    assert_int_equal(queue_audit_append(q, a, NAUD, err, sizeof err), QUEUE_OK);
    assert_int_equal(a[NAUD - 1].id, NAUD);

    uint64_t commits = queue_commit_count(q);
    size_t nrec, naud;
    assert_int_equal(queue_prune(q, wall_ms() + 1000, 1000 + NAUD - 10, &nrec, &naud, err,
                                 sizeof err), QUEUE_OK);
    assert_int_equal(nrec, NREC);
    assert_int_equal(naud, NAUD - 10);
    /* delivered: 5,488 -> 2 chunks; ignored: 112 -> 1; audit 5,090 -> 2 */
    assert_int_equal(queue_commit_count(q) - commits, 5);
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    for (int s = 0; s < QUEUE_NSTATES; s++)
        assert_int_equal(st.count[s], 0);
    assert_int_equal(st.next_seq, NREC + 1);
    assert_consistent(q);
    struct acoll *c = alist(q, 0, 0, 0, 0);
    assert_int_equal(c->n, 10);
    assert_int_equal(c->ids[9], NAUD - 9);
    queue_close(q);
    assert_int_equal(raw_entries(f, "dedupe"), 0);
    assert_int_equal(raw_entries(f, "doc"), 0);
    assert_int_equal(raw_entries(f, "auditbyseq"), 10);
}

/* ---- stores created before the delivery DBIs existed --------------------- */

static const char *const new_dbis[] = { "keystate", "links", "audit", "auditbyseq", "runs" };

static void drop_new_dbis(const struct fx *f)
{
    char path[600];
    store_path(f, path, sizeof path);
    MDB_env *env;
    MDB_txn *txn;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    for (size_t i = 0; i < 5; i++) {
        MDB_dbi dbi;
        assert_int_equal(mdb_dbi_open(txn, new_dbis[i], 0, &dbi), 0);
        assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    }
    MDB_val k = { 10, "next_audit" };
    MDB_dbi info;
    assert_int_equal(mdb_dbi_open(txn, "info", 0, &info), 0);
    int rc = mdb_del(txn, info, &k, NULL);
    assert_true(rc == 0 || rc == MDB_NOTFOUND);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Entries in one DBI, read raw (the queue API does not expose the model DBI). */
static size_t raw_count(const struct fx *f, const char *db)
{
    MDB_env *env = raw_env(f, MDB_RDONLY);
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
    assert_int_equal(mdb_stat(txn, dbi, &st), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return st.ms_entries;
}

/* The packed model travels next to the XML: stored as given, read back
 * with QUEUE_GET_MODEL (aligned, the XML skipped), the XML instead when a
 * record has none, pruned with its record. */
/* A read view: queue_get/keystate/link reads in one snapshot; writes made
 * after it began are not seen by it (and are by a new one); records it
 * returned outlive it; NOTFOUND does not spoil it. */
static void test_view(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256], val[QUEUE_LINK_VALUE_MAX + 1];
    uint64_t s1, s2;
    assert_int_equal(append1(q, "V1", 300, QUEUE_PENDING, &s1, NULL), QUEUE_OK);
    assert_int_equal(queue_set_state(q, &s1, 1, QUEUE_PENDING, QUEUE_INFLIGHT, NULL, err, sizeof err),
                     QUEUE_OK);
    const struct queue_link l1 = { "vendor:1", "a\t1\t0" };
    struct queue_change c = { .seq = s1, .from_state = QUEUE_INFLIGHT,
                              .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                              .applied_keys = "vendor:1", .links = &l1, .nlinks = 1 };
    assert_int_equal(queue_update(q, &c, 1, NULL, err, sizeof err), QUEUE_OK);

    struct queue_view *v = NULL;
    assert_int_equal(queue_view_begin(q, &v, err, sizeof err), QUEUE_OK);
    assert_non_null(v);
    /* Written after the view began: invisible to it. */
    assert_int_equal(append1(q, "V2", 300, QUEUE_PENDING, &s2, NULL), QUEUE_OK);
    const struct queue_link l2 = { "vendor:2", "b\t1\t0" };
    assert_int_equal(queue_link_put(q, "vendor:2", l2.value, err, sizeof err), QUEUE_OK);

    struct queue_record *r1 = NULL, *r2 = NULL;
    assert_int_equal(queue_view_get(v, s1, QUEUE_GET_XML, &r1, err, sizeof err), QUEUE_OK);
    assert_string_equal(r1->docnum, "V1");
    assert_int_equal(r1->state, QUEUE_DELIVERED);
    assert_non_null(r1->xml);
    assert_int_equal(queue_view_get(v, s2, 0, &r2, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_null(r2);
    struct queue_keystate ks;
    assert_int_equal(queue_view_keystate_get(v, "vendor:1", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, s1);
    assert_string_equal(ks.docnum, "V1");
    assert_int_equal(queue_view_keystate_get(v, "vendor:9", &ks, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_view_link_get(v, "vendor:1", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_string_equal(val, "a\t1\t0");
    assert_int_equal(queue_view_link_get(v, "vendor:2", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    /* Bad arguments are refused as by the plain reads. */
    assert_int_equal(queue_view_link_get(v, "", val, sizeof val, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_view_keystate_get(v, NULL, &ks, err, sizeof err), QUEUE_ERR_INVALID);
    /* Still usable after NOTFOUND and refusals. */
    assert_int_equal(queue_view_keystate_get(v, "vendor:1", &ks, err, sizeof err), QUEUE_OK);
    queue_view_end(v);
    queue_view_end(NULL);
    /* The record outlives the view. */
    assert_string_equal(r1->docnum, "V1");
    queue_record_free(r1);

    /* A new view sees the later writes. */
    assert_int_equal(queue_view_begin(q, &v, err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_view_get(v, s2, 0, &r2, err, sizeof err), QUEUE_OK);
    assert_string_equal(r2->docnum, "V2");
    queue_record_free(r2);
    assert_int_equal(queue_view_link_get(v, "vendor:2", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_string_equal(val, "b\t1\t0");
    queue_view_end(v);
    queue_close(q);
}

static void test_model(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256];
    static const char model[] = "I\001packed-model-bytes\000with a NUL inside";

    struct queue_item it[2];
    item_init(&it[0], "SAPECC", "M1", 2000, QUEUE_PENDING);
    item_init(&it[1], "SAPECC", "M2", 2000, QUEUE_PENDING);
    it[0].model = model;
    it[0].model_len = sizeof model;
    assert_int_equal(queue_append(q, it, 2, NULL, err, sizeof err), QUEUE_OK);

    struct queue_record *r;
    assert_int_equal(queue_get(q, it[0].seq, QUEUE_GET_MODEL, &r, err, sizeof err), QUEUE_OK);
    assert_non_null(r->model);
    assert_int_equal((uintptr_t)r->model % 8, 0);
    assert_int_equal(r->model_len, sizeof model);
    assert_memory_equal(r->model, model, sizeof model);
    assert_null(r->xml);
    assert_int_equal(r->xml_len, it[0].xml_len);
    assert_string_equal(r->docnum, "M1");
    queue_record_free(r);

    assert_int_equal(queue_get(q, it[0].seq, QUEUE_GET_XML, &r, err, sizeof err), QUEUE_OK);
    assert_null(r->model);
    assert_memory_equal(r->xml, it[0].xml, it[0].xml_len);
    queue_record_free(r);

    assert_int_equal(queue_get(q, it[0].seq, QUEUE_GET_XML | QUEUE_GET_MODEL, &r, err, sizeof err),
                     QUEUE_OK);
    assert_memory_equal(r->xml, it[0].xml, it[0].xml_len);
    assert_int_equal(r->xml[r->xml_len], '\0');
    assert_memory_equal(r->model, model, sizeof model);
    assert_int_equal((uintptr_t)r->model % 8, 0);
    queue_record_free(r);

    /* No model stored: the XML comes instead. */
    assert_int_equal(queue_get(q, it[1].seq, QUEUE_GET_MODEL, &r, err, sizeof err), QUEUE_OK);
    assert_null(r->model);
    assert_int_equal(r->model_len, 0);
    assert_non_null(r->xml);
    assert_memory_equal(r->xml, it[1].xml, it[1].xml_len);
    queue_record_free(r);

    /* A model length without bytes is refused at submit. */
    struct queue_item bad;
    item_init(&bad, "SAPECC", "M3", 100, QUEUE_PENDING);
    bad.model_len = 10;
    assert_int_equal(queue_append(q, &bad, 1, NULL, err, sizeof err), QUEUE_ERR_INVALID);
    assert_non_null(strstr(err, "bad model"));
    item_free(&bad);

    /* Prune removes the model with its record. */
    deliver(q, it[0].seq, "vendor:M1");
    deliver(q, it[1].seq, "vendor:M2");
    queue_close(q);
    assert_int_equal(raw_count(f, "model"), 1);
    q = open_q(f, 64 * MIB, 0, 0);
    size_t nrec = 0;
    assert_int_equal(queue_prune(q, wall_ms() + 60000, 0, &nrec, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(nrec, 2);
    assert_consistent(q);
    queue_close(q);
    assert_int_equal(raw_count(f, "model"), 0);
    assert_int_equal(raw_count(f, "doc"), 0);
    item_free(&it[0]);
    item_free(&it[1]);
}

static void test_legacy_store(void **state)
{
    struct fx *f = *state;
    struct queue *q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    char err[256], val[64];
    for (int i = 0; i < 3; i++) {
        char d[16];
        snprintf(d, sizeof d, "LG%d", i);
        assert_int_equal(append1(q, d, 1000, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    }
    queue_close(q);
    /* What a format-1 store written before issue 4 looks like. */
    drop_new_dbis(f);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(raw_entries(f, new_dbis[i]), -1);

    /* Readonly: the new tables read as empty, writes are refused, nothing
     * is created. */
    q = open_q(f, 0, 0, 1);
    assert_non_null(q);
    struct queue_stats st;
    assert_int_equal(queue_stats(q, &st, err, sizeof err), QUEUE_OK);
    assert_int_equal(st.count[QUEUE_PENDING], 3);
    struct queue_keystate ks;
    assert_int_equal(queue_keystate_get(q, "vendor:1", &ks, err, sizeof err), QUEUE_ERR_NOTFOUND);
    assert_int_equal(queue_link_get(q, "vendor:1", val, sizeof val, err, sizeof err),
                     QUEUE_ERR_NOTFOUND);
    assert_ids(alist(q, 0, 0, 0, 0), NULL, 0);
    assert_ids(alist(q, 1, 0, 0, 0), NULL, 0);
    struct rcoll rc = { 0 };
    assert_int_equal(queue_runs_list(q, 0, rcoll_cb, &rc, err, sizeof err), QUEUE_OK);
    assert_int_equal(rc.n, 0);
    struct queue_audit a = { .kind = "run" };
    struct queue_run run = { .trigger = "admin" };
    size_t n;
    assert_int_equal(queue_link_put(q, "vendor:1", "x", err, sizeof err), QUEUE_ERR_INVALID);
    assert_non_null(strstr(err, "readonly"));
    assert_int_equal(queue_audit_append(q, &a, 1, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_run_put(q, &run, err, sizeof err), QUEUE_ERR_INVALID);
    assert_int_equal(queue_prune(q, wall_ms(), wall_ms(), &n, NULL, err, sizeof err),
                     QUEUE_ERR_INVALID);
    struct queue_change c = { .seq = 1, .from_state = -1, .to_state = QUEUE_DELIVERED,
                              .next_attempt_ms = -1, .applied_keys = "vendor:1" };
    assert_int_equal(queue_update(q, &c, 1, &n, err, sizeof err), QUEUE_ERR_INVALID);
    assert_consistent(q);
    queue_close(q);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(raw_entries(f, new_dbis[i]), -1);

    /* Read-write: created at open, everything works. */
    q = open_q(f, 64 * MIB, 0, 0);
    assert_non_null(q);
    deliver(q, 1, "vendor:1");
    assert_int_equal(queue_keystate_get(q, "vendor:1", &ks, err, sizeof err), QUEUE_OK);
    assert_int_equal(ks.seq, 1);
    assert_int_equal(queue_link_put(q, "vendor:1", "x", err, sizeof err), QUEUE_OK);
    assert_int_equal(queue_audit_append(q, &a, 1, err, sizeof err), QUEUE_OK);
    assert_int_equal(a.id, 1);
    assert_int_equal(queue_run_put(q, &run, err, sizeof err), QUEUE_OK);
    assert_int_equal(run.id, 1);
    size_t nrec;
    assert_int_equal(queue_prune(q, wall_ms() + 1000, 0, &nrec, NULL, err, sizeof err), QUEUE_OK);
    assert_int_equal(nrec, 1);
    assert_int_equal(append1(q, "LG9", 100, QUEUE_PENDING, NULL, NULL), QUEUE_OK);
    assert_consistent(q);
    queue_close(q);
    for (size_t i = 0; i < 5; i++)
        assert_true(raw_entries(f, new_dbis[i]) >= 0);
    assert_int_equal(raw_entries(f, "keystate"), 1);

    /* And a readonly open of the upgraded store sees it all. */
    q = open_q(f, 0, 0, 1);
    assert_non_null(q);
    assert_int_equal(queue_link_get(q, "vendor:1", val, sizeof val, err, sizeof err), QUEUE_OK);
    assert_string_equal(val, "x");
    assert_ids(alist(q, 0, 0, 0, 0), (const uint64_t[]){ 1 }, 1);
    queue_close(q);
}

/* ---- everything at once (TSan) ------------------------------------------- */

enum { CD_RECORDS = 1500, CD_BATCH = 10 };

struct cd {
    struct queue *q;
    _Atomic int errors;
    _Atomic int ingest_done;
    _Atomic uint64_t delivered;
    _Atomic uint64_t pruned;
    _Atomic int done_audits;
};

static void cd_done(struct queue_batch *b, void *ud)
{
    /* On the committer thread: bookkeeping writes must not deadlock here. */
    struct cd *cd = ud;
    char err[256];
    struct queue_audit a = { .kind = "warning", .seq = b->items[0].seq, .message = "ingested" };
    if (b->status != QUEUE_OK ||
        queue_audit_append(cd->q, &a, 1, err, sizeof err) != QUEUE_OK)
        atomic_fetch_add(&cd->errors, 1);
    atomic_fetch_add(&cd->done_audits, 1);
}

static void *cd_ingest(void *p)
{
    struct cd *cd = p;
    static struct queue_item it[CD_RECORDS];
    static char docs[CD_RECORDS][16];
    static struct queue_batch b[CD_RECORDS / CD_BATCH];
    for (int i = 0; i < CD_RECORDS; i++) {
        snprintf(docs[i], sizeof docs[i], "CD%05d", i);
        it[i] = (struct queue_item){ .mandt = "100", .sndprn = "SAPECC", .docnum = docs[i],
                                     .keys = "vendor:1", .xml = "<IDOC/>", .xml_len = 7,
                                     .state = QUEUE_PENDING };
    }
    for (int k = 0; k < CD_RECORDS / CD_BATCH; k++) {
        b[k] = (struct queue_batch){ .items = &it[k * CD_BATCH], .nitems = CD_BATCH,
                                     .done = cd_done, .ud = cd };
        if (queue_submit(cd->q, &b[k]) != QUEUE_OK)
            atomic_fetch_add(&cd->errors, 1);
    }
    while (atomic_load(&cd->done_audits) < CD_RECORDS / CD_BATCH)
        usleep(1000);
    atomic_store(&cd->ingest_done, 1);
    return NULL;
}

struct cd_claim {
    struct cd *cd;
    uint64_t seqs[64];
    size_t n;
};

static int cd_list_cb(const struct queue_record *r, void *ud)
{
    /* Inside queue_list's read txn: a write must not deadlock either. */
    struct cd_claim *c = ud;
    char err[256];
    if (c->n == 0 &&
        queue_link_put(c->cd->q, "vendor:1", "0000200001\t1\t0", err, sizeof err) != QUEUE_OK)
        atomic_fetch_add(&c->cd->errors, 1);
    if (c->n < 64)
        c->seqs[c->n++] = r->seq;
    return 0;
}

static void *cd_deliver(void *p)
{
    struct cd *cd = p;
    char err[256];
    for (;;) {
        int finished = atomic_load(&cd->ingest_done);
        struct cd_claim c = { .cd = cd };
        if (queue_list(cd->q, QUEUE_PENDING, 0, 32, cd_list_cb, &c, err, sizeof err) != QUEUE_OK)
            atomic_fetch_add(&cd->errors, 1);
        if (c.n == 0) {
            if (finished)
                break;
            usleep(500);
            continue;
        }
        size_t moved;
        if (queue_set_state(cd->q, c.seqs, c.n, QUEUE_PENDING, QUEUE_INFLIGHT, &moved, err,
                            sizeof err) != QUEUE_OK || moved != c.n)
            atomic_fetch_add(&cd->errors, 1);
        struct queue_change ch[64];
        struct queue_audit a[64];
        const struct queue_link l = { "customer:0000200001", "0000100003\t1\t1" };
        for (size_t i = 0; i < c.n; i++) {
            ch[i] = (struct queue_change){ .seq = c.seqs[i], .from_state = QUEUE_INFLIGHT,
                                           .to_state = QUEUE_DELIVERED, .next_attempt_ms = -1,
                                           .applied_keys = "vendor:1", .links = &l,
                                           .nlinks = 1 };
            a[i] = (struct queue_audit){ .kind = "attempt", .seq = c.seqs[i],
                                         .http_status = 204 };
        }
        if (queue_update(cd->q, ch, c.n, &moved, err, sizeof err) != QUEUE_OK || moved != c.n)
            atomic_fetch_add(&cd->errors, 1);
        if (queue_audit_append(cd->q, a, c.n, err, sizeof err) != QUEUE_OK)
            atomic_fetch_add(&cd->errors, 1);
        atomic_fetch_add(&cd->delivered, c.n);
    }
    return NULL;
}

static void *cd_prune(void *p)
{
    struct cd *cd = p;
    char err[256];
    while (!atomic_load(&cd->ingest_done) || atomic_load(&cd->delivered) < CD_RECORDS) {
        size_t nrec, naud;
        /* Everything delivered up to now; all audit but the last 10 ms. */
        if (queue_prune(cd->q, wall_ms() + 1, wall_ms() - 10, &nrec, &naud, err, sizeof err) !=
            QUEUE_OK) {
            atomic_fetch_add(&cd->errors, 1);
            break;
        }
        atomic_fetch_add(&cd->pruned, nrec);
        struct queue_stats st;
        if (queue_stats(cd->q, &st, err, sizeof err) != QUEUE_OK)
            atomic_fetch_add(&cd->errors, 1);
        usleep(5000);
        if (atomic_load(&cd->errors))
            break;
    }
    return NULL;
}

static void test_concurrent_delivery(void **state)
{
    struct fx *f = *state;
    struct cd cd = { .q = open_q(f, 256 * MIB, 0, 0) };
    assert_non_null(cd.q);
    pthread_t th[3];
    assert_int_equal(pthread_create(&th[0], NULL, cd_ingest, &cd), 0);
    assert_int_equal(pthread_create(&th[1], NULL, cd_deliver, &cd), 0);
    assert_int_equal(pthread_create(&th[2], NULL, cd_prune, &cd), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&cd.errors), 0);
    assert_int_equal(atomic_load(&cd.delivered), CD_RECORDS);
    char err[256];
    size_t nrec, naud;
    assert_int_equal(queue_prune(cd.q, wall_ms() + 1000, wall_ms() + 1000, &nrec, &naud, err,
                                 sizeof err), QUEUE_OK);
    print_message("concurrent delivery: %llu records pruned while delivering, %zu after\n",
                  (unsigned long long)atomic_load(&cd.pruned), nrec);
    assert_int_equal(atomic_load(&cd.pruned) + nrec, CD_RECORDS);
    struct queue_stats st;
    assert_int_equal(queue_stats(cd.q, &st, err, sizeof err), QUEUE_OK);
    for (int s = 0; s < QUEUE_NSTATES; s++)
        assert_int_equal(st.count[s], 0);
    assert_ids(alist(cd.q, 0, 0, 0, 0), NULL, 0);
    struct queue_keystate ks;
    assert_int_equal(queue_keystate_get(cd.q, "vendor:1", &ks, err, sizeof err), QUEUE_OK);
    assert_true(ks.seq >= 1 && ks.seq <= CD_RECORDS);
    assert_consistent(cd.q);
    queue_close(cd.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names),
        cmocka_unit_test_setup_teardown(test_append_readback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_quota_neighbours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_mapfull_neighbours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_resized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_safety, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keystate_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_failure_releases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_writes_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_audited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_delivery, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
