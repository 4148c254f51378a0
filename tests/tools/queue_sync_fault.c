/*
 * queue_sync_fault — a failed meta-page sync under a GROUP commit, driven
 * through the queue API. Run with LD_PRELOAD=build/preload/fault_fsync.so
 * and MLC_FAULT_FSYNC set (crash_kill9 does):
 *
 *   queue_sync_fault DIR
 *
 * Holds two batches so that the committer puts them in one transaction, lets
 * the data-page sync through and fails the meta-page sync after it. Then
 * neither batch may be acknowledged (the group must not be redone batch by
 * batch, where each would find its IDoc already there and answer
 * "duplicate"), the store must be failed (queue_failed), and a third batch,
 * a resend of the first, must be refused too. A restart (a fresh handle)
 * finds each IDoc at most once and accepts the resend.
 * Prints one line per check; exit 0 when all hold.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue.h"

static _Atomic int calls;
static int fails;

static void done(struct queue_batch *b, void *ud)
{
    (void)b;
    (void)ud;
    atomic_fetch_add(&calls, 1);
}

static void item(struct queue_item *it, const char *docnum)
{
    memset(it, 0, sizeof *it);
    it->mandt = "100";
    it->sndprn = "SAPFAULT";
    it->docnum = docnum;
    it->mestyp = "CREMAS";
    it->idoctyp = "CREMAS05";
    it->cimtyp = "";
    it->credat = "20261128";
    it->cretim = "101500";
    it->keys = "vendor:0000100001";
    it->xml = "<CREMAS05/>";
    it->xml_len = strlen(it->xml);
    it->state = QUEUE_PENDING;
}

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok  " : "FAIL", what);
    if (!ok) fails++;
}

static void wait_calls(int n)
{
    for (int i = 0; i < 10000 && atomic_load(&calls) < n; i++) usleep(1000);
}

int main(int argc, char **argv)
{
    const char *fault = getenv("MLC_FAULT_FSYNC");
    if (argc != 2 || !fault) {
        fprintf(stderr, "usage: MLC_FAULT_FSYNC=FILE queue_sync_fault DIR (with fault_fsync.so preloaded)\n");
        return 2;
    }
    char err[256];
    struct queue_opts o = {.path = argv[1], .max_size_bytes = 64u << 20};
    struct queue *q = queue_open(&o, err, sizeof err);
    if (!q) {
        fprintf(stderr, "queue_open: %s\n", err);
        return 2;
    }
    struct queue_item a, b, c;
    item(&a, "0000000097000001");
    item(&b, "0000000097000002");
    item(&c, "0000000097000001");
    struct queue_batch ba = {.items = &a, .nitems = 1, .done = done};
    struct queue_batch bb = {.items = &b, .nitems = 1, .done = done};
    struct queue_batch bc = {.items = &c, .nitems = 1, .done = done};
    queue_hold(q, 1);
    queue_submit(q, &ba);
    queue_submit(q, &bb);
    FILE *f = fopen(fault, "w");
    if (!f) return 2;
    fputs("1\n", f); /* let the data sync through, fail the next (meta) */
    fclose(f);
    queue_hold(q, 0);
    wait_calls(2);
    check(atomic_load(&calls) == 2, "both batches of the group completed");
    check(access(fault, F_OK) != 0, "the meta sync failed (fault hit)");
    check(ba.status != QUEUE_OK && bb.status != QUEUE_OK, "neither batch of the group is acknowledged");
    printf("       batch 1: %s\n       batch 2: %s\n", ba.err, bb.err);
    check(queue_failed(q) == 1, "the store is failed (fail-stop)");
    queue_submit(q, &bc);
    wait_calls(3);
    check(bc.status != QUEUE_OK && strstr(bc.err, "restarted") != NULL,
          "the resend is refused until a restart");
    printf("       resend: %s\n", bc.err);
    queue_close(q);

    q = queue_open(&o, err, sizeof err);
    if (!q) {
        fprintf(stderr, "queue_open after restart: %s\n", err);
        return 2;
    }
    check(queue_failed(q) == 0, "a fresh handle is not failed");
    atomic_store(&calls, 0);
    struct queue_batch br = {.items = &c, .nitems = 1, .done = done};
    queue_submit(q, &br);
    wait_calls(1);
    check(br.status == QUEUE_OK && br.nnew + br.ndup == 1, "after the restart the resend is acknowledged");
    uint64_t s1 = 0;
    check(queue_find(q, "100", "SAPFAULT", "0000000097000001", &s1, err, sizeof err) == QUEUE_OK,
          "the IDoc is in the store once");
    queue_close(q);
    return fails ? 1 : 0;
}
