/*
 * d365_probe — drives the d365/ module (token manager, Web API client,
 * $batch, throttle governor) against a Dataverse endpoint, normally the fake
 * (test-fixtures/fake_dataverse.c), for tests/integration/d365_client.sh.
 *
 *   d365_probe --url URL --token-url URL --client-id ID
 *              (--client-secret S | --cert PEM --key PEM [--rs256])
 *              --scenario basic|load [--prefix P] [--threads N] [--records N]
 *              [--batch N] [--cap N] [--min-seconds S] [--deadline S]
 *              [--backoff-cap S] [-v]
 *
 * Prints "ok - ..." / "FAIL - ..." for each check it makes itself and one
 * line "summary {json}" with its figures (the script compares them with the
 * fake's counters); exits 1 if a check failed.
 *
 *   basic  single upserts, $batch with continue-on-error, a change set with
 *          Content-ID references, a failing change set, a bind to a missing
 *          target, too-long values, DELETE by key, cached lookups.
 *   load   N threads, each with its own client sharing one auth + governor,
 *          upsert R records each (single or in batches of --batch), retrying
 *          RETRY outcomes with d365_backoff_delay (Retry-After as floor)
 *          until every record is done; --min-seconds repeats the rounds until
 *          that much time has passed (token-expiry runs).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "d365/auth.h"
#include "d365/batch.h"
#include "d365/governor.h"
#include "d365/webapi.h"

static struct {
    const char *url, *token_url, *client_id, *secret, *cert, *key, *scenario, *prefix;
    int rs256, threads, records, batch, cap, verbose;
    double min_seconds, deadline, backoff_cap;
} o = {.scenario = "basic", .prefix = "P", .threads = 4, .records = 50, .batch = 0, .cap = 8,
       .deadline = 45, .backoff_cap = 2.0};

static int passes, fails;
static struct d365_auth *auth;
static struct d365_governor *gov;

static void check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int cond, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%s - %s\n", cond ? "ok  " : "FAIL", buf);
    fflush(stdout);
    if (cond) passes++;
    else fails++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct d365_client *new_client(void)
{
    char err[512];
    struct d365_client_config cc = {.url = o.url, .timeout_ms = 30000};
    struct d365_client *c = d365_client_create(&cc, auth, gov, err, sizeof err);
    if (!c) {
        fprintf(stderr, "d365_probe: %s\n", err);
        exit(2);
    }
    return c;
}

static const char *describe(const struct d365_op *op)
{
    static _Thread_local char bufs[4][1400];
    static _Thread_local unsigned k;
    char *buf = bufs[k++ % 4];
    snprintf(buf, 1400, "%s %d %s %s", d365_outcome_name(op->outcome), op->status, op->code, op->message);
    return buf;
}

/* ------------------------------------------------------------------------ */
/* basic */

static void scenario_basic(void)
{
    struct d365_client *c = new_client();
    char path[256], body[1024], err[512];
    const char *P = o.prefix;

    /* 1. single upserts */
    int done = 0;
    for (int i = 1; i <= 20; i++) {
        snprintf(path, sizeof path, "accounts(mlc_sapvendorid='%s-V%04d')", P, i);
        snprintf(body, sizeof body, "{\"name\":\"Vendor %d\",\"address1_city\":\"Walldorf\",\"customertypecode\":11}", i);
        struct d365_op op = {.method = "PATCH", .path = path, .body = body};
        if (d365_send_one(c, &op) == D365_DONE && op.status >= 200 && op.status < 300) done++;
        else printf("# %s: %s\n", path, describe(&op));
    }
    check(done == 20, "20 single upserts by alternate key done (%d)", done);
    /* again: an upsert of existing keys is an update, still done */
    snprintf(path, sizeof path, "accounts(mlc_sapvendorid='%s-V0001')", P);
    struct d365_op again = {.method = "PATCH", .path = path, .body = "{\"name\":\"Vendor 1 renamed\"}"};
    d365_send_one(c, &again);
    check(again.outcome == D365_DONE, "upsert of an existing key done (%s)", describe(&again));

    /* 2. a $batch of 30 independent upserts (contacts bound to the accounts) */
    struct d365_op ops[40];
    char paths[40][160], bodies[40][400];
    memset(ops, 0, sizeof ops);
    for (int i = 0; i < 30; i++) {
        snprintf(paths[i], sizeof paths[i], "contacts(mlc_sapcontactid='%s-C%04d')", P, i + 1);
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"firstname\":\"F%d\",\"lastname\":\"L%d\","
                 "\"parentcustomerid_account@odata.bind\":\"/accounts(mlc_sapvendorid='%s-V%04d')\"}",
                 i, i, P, i % 20 + 1);
        ops[i] = (struct d365_op){.method = "PATCH", .path = paths[i], .body = bodies[i]};
    }
    check(d365_batch_send(c, ops, 30, err, sizeof err) == 0, "batch of 30 sent");
    done = 0;
    for (int i = 0; i < 30; i++) {
        if (ops[i].outcome == D365_DONE) done++;
        else printf("# %s: %s\n", paths[i], describe(&ops[i]));
    }
    check(done == 30, "batch of 30 upserts: every op done (%d)", done);

    /* 3. a change set: PO header + 2 lines referencing it by Content-ID,
     *    next to an independent op */
    memset(ops, 0, sizeof ops);
    snprintf(paths[0], sizeof paths[0], "accounts(mlc_sapvendorid='%s-V0002')", P);
    ops[0] = (struct d365_op){.method = "PATCH", .path = paths[0], .body = "{\"telephone1\":\"+49 1\"}"};
    snprintf(paths[1], sizeof paths[1], "salesorders(mlc_sapponumber='%s-PO1')", P);
    snprintf(bodies[1], sizeof bodies[1],
             "{\"name\":\"PO %s-PO1\",\"customerid_account@odata.bind\":\"/accounts(mlc_sapvendorid='%s-V0001')\"}", P, P);
    ops[1] = (struct d365_op){.method = "PATCH", .path = paths[1], .body = bodies[1], .changeset = 1, .content_id = "1"};
    for (int k = 0; k < 2; k++) {
        snprintf(paths[2 + k], sizeof paths[2 + k], "salesorderdetails(mlc_sappoitemid='%s-PO1-%05d')", P, (k + 1) * 10);
        snprintf(bodies[2 + k], sizeof bodies[2 + k],
                 "{\"salesorderid@odata.bind\":\"$1\",\"quantity\":%d,\"priceperunit\":1.5,"
                 "\"isproductoverridden\":true,\"productdescription\":\"Item %d\"}", k + 2, k);
        ops[2 + k] = (struct d365_op){.method = "PATCH", .path = paths[2 + k], .body = bodies[2 + k],
                                      .changeset = 1, .content_id = k ? "3" : "2"};
    }
    check(d365_batch_send(c, ops, 4, err, sizeof err) == 0, "batch with a change set sent");
    done = 0;
    for (int i = 0; i < 4; i++) {
        if (ops[i].outcome == D365_DONE) done++;
        else printf("# %s: %s\n", paths[i], describe(&ops[i]));
    }
    check(done == 4, "change set (header + 2 lines via $1) and independent op done (%d/4)", done);

    /* 4. a change set that fails: nothing of it is committed, both ops FAILED */
    memset(ops, 0, sizeof ops);
    snprintf(paths[0], sizeof paths[0], "salesorders(mlc_sapponumber='%s-PO2')", P);
    ops[0] = (struct d365_op){.method = "PATCH", .path = paths[0], .body = "{\"name\":\"PO 2\"}", .changeset = 7,
                              .content_id = "1"};
    char longdesc[700];
    memset(longdesc, 'x', 501);
    longdesc[501] = 0;
    snprintf(paths[1], sizeof paths[1], "salesorderdetails(mlc_sappoitemid='%s-PO2-00010')", P);
    char *lbody = malloc(1024);
    snprintf(lbody, 1024, "{\"salesorderid@odata.bind\":\"$1\",\"quantity\":1,\"productdescription\":\"%s\"}", longdesc);
    ops[1] = (struct d365_op){.method = "PATCH", .path = paths[1], .body = lbody, .changeset = 7, .content_id = "2"};
    check(d365_batch_send(c, ops, 2, err, sizeof err) == 0, "batch with a failing change set sent");
    check(ops[0].outcome == D365_FAILED && ops[1].outcome == D365_FAILED,
          "failing change set: both ops failed (%s | %s)", describe(&ops[0]), describe(&ops[1]));
    check(strstr(ops[1].message, "length") != NULL, "failing change set carries Dataverse's message (%.120s)",
          ops[1].message);
    free(lbody);

    /* 5. bind to a target that does not exist yet: RETRY with 0x80060891 */
    snprintf(path, sizeof path, "contacts(mlc_sapcontactid='%s-C9001')", P);
    snprintf(body, sizeof body, "{\"lastname\":\"Orphan\",\"parentcustomerid_account@odata.bind\":"
                                "\"/accounts(mlc_sapvendorid='%s-MISSING')\"}", P);
    struct d365_op orphan = {.method = "PATCH", .path = path, .body = body};
    d365_send_one(c, &orphan);
    check(orphan.outcome == D365_RETRY && strcmp(orphan.code, D365_CODE_KEY_NOT_FOUND) == 0,
          "bind to a missing key: retry with %s (%s)", D365_CODE_KEY_NOT_FOUND, describe(&orphan));

    /* 6. too long value: FAILED with Dataverse's message, single and in a batch */
    char name[200];
    memset(name, 'N', 161);
    name[161] = 0;
    snprintf(path, sizeof path, "accounts(mlc_sapvendorid='%s-VLONG')", P);
    snprintf(body, sizeof body, "{\"name\":\"%s\"}", name);
    struct d365_op lng = {.method = "PATCH", .path = path, .body = body};
    d365_send_one(c, &lng);
    check(lng.outcome == D365_FAILED && lng.status == 400 && strstr(lng.message, "maximum allowed length"),
          "too-long name: failed with Dataverse's message (%s)", describe(&lng));

    memset(ops, 0, sizeof ops);
    snprintf(paths[0], sizeof paths[0], "accounts(mlc_sapvendorid='%s-V0003')", P);
    ops[0] = (struct d365_op){.method = "PATCH", .path = paths[0], .body = "{\"fax\":\"1\"}"};
    ops[1] = (struct d365_op){.method = "PATCH", .path = path, .body = body};
    snprintf(paths[2], sizeof paths[2], "contacts(mlc_sapcontactid='%s-C9002')", P);
    snprintf(bodies[2], sizeof bodies[2], "{\"lastname\":\"Orphan2\",\"parentcustomerid_account@odata.bind\":"
                                          "\"/accounts(mlc_sapvendorid='%s-MISSING')\"}", P);
    ops[2] = (struct d365_op){.method = "PATCH", .path = paths[2], .body = bodies[2]};
    snprintf(paths[3], sizeof paths[3], "accounts(mlc_sapvendorid='%s-V0004')", P);
    ops[3] = (struct d365_op){.method = "PATCH", .path = paths[3], .body = "{\"fax\":\"2\"}"};
    check(d365_batch_send(c, ops, 4, err, sizeof err) == 0, "continue-on-error batch sent");
    check(ops[0].outcome == D365_DONE && ops[3].outcome == D365_DONE,
          "continue-on-error: the good ops are done (%s | %s)", describe(&ops[0]), describe(&ops[3]));
    check(ops[1].outcome == D365_FAILED && strstr(ops[1].message, "maximum allowed length"),
          "continue-on-error: too-long part failed with its message (%s)", describe(&ops[1]));
    check(ops[2].outcome == D365_RETRY && strcmp(ops[2].code, D365_CODE_KEY_NOT_FOUND) == 0,
          "continue-on-error: missing bind target part is retry (%s)", describe(&ops[2]));

    /* 7. DELETE by key: existing → done, missing → done (404) */
    snprintf(path, sizeof path, "contacts(mlc_sapcontactid='%s-C0030')", P);
    struct d365_op del = {.method = "DELETE", .path = path};
    d365_send_one(c, &del);
    check(del.outcome == D365_DONE && del.status == 204, "DELETE of an existing key done (%s)", describe(&del));
    d365_send_one(c, &del);
    check(del.outcome == D365_DONE && del.status == 404, "DELETE of a missing key counts as done (%s)", describe(&del));

    /* 8. lookups, cached */
    char id[37];
    struct d365_client_stats s0, s1;
    enum d365_lookup lr = d365_lookup_id(c, "transactioncurrencies", "isocurrencycode", "USD", id, err, sizeof err);
    check(lr == D365_LOOKUP_FOUND && strlen(id) == 36, "lookup USD → %s (%s)", id, lr ? err : "found");
    d365_client_stats(c, &s0);
    char id2[37];
    lr = d365_lookup_id(c, "transactioncurrencies", "isocurrencycode", "USD", id2, err, sizeof err);
    d365_client_stats(c, &s1);
    check(lr == D365_LOOKUP_FOUND && strcmp(id, id2) == 0 && s1.requests == s0.requests,
          "second lookup served from the cache (requests %llu → %llu)", (unsigned long long)s0.requests,
          (unsigned long long)s1.requests);
    lr = d365_lookup_id(c, "transactioncurrencies", "isocurrencycode", "XXX", id, err, sizeof err);
    check(lr == D365_LOOKUP_NOT_FOUND, "lookup XXX → not found (%s)", err);
    d365_client_stats(c, &s0);
    lr = d365_lookup_id(c, "transactioncurrencies", "isocurrencycode", "XXX", id, err, sizeof err);
    d365_client_stats(c, &s1);
    check(lr == D365_LOOKUP_NOT_FOUND && s1.requests == s0.requests, "negative result cached");
    lr = d365_lookup_id(c, "pricelevels", "name", "SAP Default", id, err, sizeof err);
    check(lr == D365_LOOKUP_FOUND, "lookup price list 'SAP Default' → %s (%s)", id, lr ? err : "found");

    struct d365_auth_stats as;
    d365_auth_stats(auth, &as);
    d365_client_stats(c, &s1);
    check(as.fetches == 1, "one token for the whole scenario (%llu fetched)", (unsigned long long)as.fetches);
    printf("summary {\"token_fetches\":%llu,\"requests\":%llu,\"renewals\":%llu}\n",
           (unsigned long long)as.fetches, (unsigned long long)s1.requests, (unsigned long long)s1.renewals);
    d365_client_destroy(c);
}

/* ------------------------------------------------------------------------ */
/* load */

struct rec {
    char path[128];
    char body[256];
    double next_at;
    unsigned attempts;
    int done;
};

static atomic_ullong st_done, st_failed, st_retries, st_sent_ops, st_rounds;
static atomic_ullong st_429, st_parts429, st_transport, st_renewals, st_requests;

static void *load_worker(void *arg)
{
    int t = (int)(intptr_t)arg;
    struct d365_client *c = new_client();
    int n = o.records;
    struct rec *recs = calloc((size_t)n, sizeof *recs);
    int bs = o.batch > 0 ? o.batch : 1;
    struct d365_op *ops = calloc((size_t)bs, sizeof *ops);
    int *idx = calloc((size_t)bs, sizeof *idx);
    double t0 = now_s();
    int round = 0;
    for (;;) {
        round++;
        for (int i = 0; i < n; i++) {
            snprintf(recs[i].path, sizeof recs[i].path, "accounts(mlc_sapvendorid='%s-L%02d-%05d')", o.prefix, t, i);
            snprintf(recs[i].body, sizeof recs[i].body,
                     "{\"name\":\"Load %d/%d round %d\",\"address1_city\":\"Walldorf\"}", t, i, round);
            recs[i].next_at = 0;
            recs[i].attempts = 0;
            recs[i].done = 0;
        }
        int remaining = n;
        while (remaining > 0) {
            double now = now_s();
            if (now - t0 > o.deadline) goto out;
            int k = 0;
            double soonest = now + 1;
            for (int i = 0; i < n && k < bs; i++) {
                if (recs[i].done) continue;
                if (recs[i].next_at <= now) idx[k++] = i;
                else if (recs[i].next_at < soonest) soonest = recs[i].next_at;
            }
            if (k == 0) {
                double d = soonest - now;
                usleep((useconds_t)((d > 0.2 ? 0.2 : d) * 1e6) + 1000);
                continue;
            }
            for (int j = 0; j < k; j++)
                ops[j] = (struct d365_op){.method = "PATCH", .path = recs[idx[j]].path, .body = recs[idx[j]].body};
            char err[256];
            if (o.batch > 0) {
                if (d365_batch_send(c, ops, (size_t)k, err, sizeof err) != 0) {
                    printf("# batch refused: %s\n", err);
                    goto out;
                }
            } else {
                d365_send_one(c, &ops[0]);
            }
            atomic_fetch_add(&st_sent_ops, (unsigned long long)k);
            for (int j = 0; j < k; j++) {
                struct rec *r = &recs[idx[j]];
                r->attempts++;
                if (ops[j].outcome == D365_DONE) {
                    r->done = 1;
                    remaining--;
                    atomic_fetch_add(&st_done, 1);
                } else if (ops[j].outcome == D365_RETRY) {
                    atomic_fetch_add(&st_retries, 1);
                    metrics_delivery_retry(1);
                    r->next_at = now_s() + d365_backoff_delay(r->attempts, 0.05, o.backoff_cap, ops[j].retry_after);
                    if (o.verbose) printf("# retry %s: %s\n", r->path, describe(&ops[j]));
                } else {
                    r->done = 1;
                    remaining--;
                    atomic_fetch_add(&st_failed, 1);
                    printf("# failed %s: %s\n", r->path, describe(&ops[j]));
                }
            }
        }
        atomic_fetch_add(&st_rounds, 1);
        if (now_s() - t0 >= o.min_seconds) break;
    }
out:;
    struct d365_client_stats cs;
    d365_client_stats(c, &cs);
    atomic_fetch_add(&st_429, cs.status_429);
    atomic_fetch_add(&st_parts429, cs.parts_429);
    atomic_fetch_add(&st_transport, cs.transport_errors);
    atomic_fetch_add(&st_renewals, cs.renewals);
    atomic_fetch_add(&st_requests, cs.requests);
    d365_client_destroy(c);
    free(recs);
    free(ops);
    free(idx);
    return NULL;
}

static void scenario_load(void)
{
    double t0 = now_s();
    pthread_t *th = calloc((size_t)o.threads, sizeof *th);
    for (int t = 0; t < o.threads; t++) pthread_create(&th[t], NULL, load_worker, (void *)(intptr_t)t);
    for (int t = 0; t < o.threads; t++) pthread_join(th[t], NULL);
    free(th);
    double el = now_s() - t0;
    struct d365_governor_stats gs;
    d365_governor_stats(gov, &gs);
    struct d365_auth_stats as;
    d365_auth_stats(auth, &as);
    unsigned long long rounds = atomic_load(&st_rounds), done = atomic_load(&st_done);
    unsigned long long want = rounds * (unsigned long long)o.records;
    check(rounds >= (unsigned long long)o.threads && done == want && done > 0,
          "every record delivered (%llu ops done in %llu rounds of %d)", done, rounds, o.records);
    check(atomic_load(&st_failed) == 0, "no record failed (%llu)", (unsigned long long)atomic_load(&st_failed));
    check(gs.max_in_flight <= o.cap, "governor: at most %d requests in flight (max %d)", o.cap, gs.max_in_flight);
    check(gs.in_flight == 0, "governor: every slot released");
    printf("summary {\"seconds\":%.2f,\"threads\":%d,\"ops_done\":%llu,\"rounds\":%llu,\"failed\":%llu,"
           "\"retries\":%llu,\"ops_sent\":%llu,\"requests\":%llu,\"status_429\":%llu,\"parts_429\":%llu,"
           "\"transport_errors\":%llu,\"renewals_401\":%llu,\"metric_throttled\":%llu,"
           "\"gov_throttled\":%llu,\"gov_windows\":%llu,\"gov_window_waits\":%llu,\"gov_max_in_flight\":%d,"
           "\"gov_limit\":%d,\"gov_decreases\":%llu,\"gov_increases\":%llu,\"token_fetches\":%llu,"
           "\"token_failures\":%llu}\n",
           el, o.threads, done, rounds, (unsigned long long)atomic_load(&st_failed),
           (unsigned long long)atomic_load(&st_retries), (unsigned long long)atomic_load(&st_sent_ops),
           (unsigned long long)atomic_load(&st_requests), (unsigned long long)atomic_load(&st_429),
           (unsigned long long)atomic_load(&st_parts429), (unsigned long long)atomic_load(&st_transport),
           (unsigned long long)atomic_load(&st_renewals),
           (unsigned long long)metrics_get("mlc_dataverse_throttled_total", NULL),
           (unsigned long long)gs.throttled, (unsigned long long)gs.windows,
           (unsigned long long)gs.window_waits, gs.max_in_flight, gs.limit, (unsigned long long)gs.decreases,
           (unsigned long long)gs.increases, (unsigned long long)as.fetches,
           (unsigned long long)as.fetch_failures);
}

/* ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: d365_probe --url URL --token-url URL --client-id ID (--client-secret S | --cert PEM "
                    "--key PEM [--rs256]) [--scenario basic|load] [--prefix P] [--threads N] [--records N] "
                    "[--batch N] [--cap N] [--min-seconds S] [--deadline S] [--backoff-cap S] [-v]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define ARG(name) (strcmp(a, name) == 0 && i + 1 < argc)
        if (ARG("--url")) o.url = argv[++i];
        else if (ARG("--token-url")) o.token_url = argv[++i];
        else if (ARG("--client-id")) o.client_id = argv[++i];
        else if (ARG("--client-secret")) o.secret = argv[++i];
        else if (ARG("--cert")) o.cert = argv[++i];
        else if (ARG("--key")) o.key = argv[++i];
        else if (strcmp(a, "--rs256") == 0) o.rs256 = 1;
        else if (ARG("--scenario")) o.scenario = argv[++i];
        else if (ARG("--prefix")) o.prefix = argv[++i];
        else if (ARG("--threads")) o.threads = atoi(argv[++i]);
        else if (ARG("--records")) o.records = atoi(argv[++i]);
        else if (ARG("--batch")) o.batch = atoi(argv[++i]);
        else if (ARG("--cap")) o.cap = atoi(argv[++i]);
        else if (ARG("--min-seconds")) o.min_seconds = atof(argv[++i]);
        else if (ARG("--deadline")) o.deadline = atof(argv[++i]);
        else if (ARG("--backoff-cap")) o.backoff_cap = atof(argv[++i]);
        else if (strcmp(a, "-v") == 0) o.verbose = 1;
        else usage();
#undef ARG
    }
    if (!o.url || !o.token_url || !o.client_id || (!o.secret && !o.cert)) usage();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    metrics_init();
    log_set_level(o.verbose ? "debug" : "warn");

    char scope[512], err[512];
    snprintf(scope, sizeof scope, "%s/.default", o.url);
    struct d365_auth_config ac = {.token_url = o.token_url, .client_id = o.client_id, .scope = scope,
                                  .client_secret = o.secret, .cert_file = o.cert, .key_file = o.key,
                                  .alg = o.rs256 ? D365_ALG_RS256 : D365_ALG_PS256};
    auth = d365_auth_create(&ac, err, sizeof err);
    if (!auth) {
        fprintf(stderr, "d365_probe: %s\n", err);
        return 2;
    }
    struct d365_governor_config gc = {.max_concurrency = o.cap};
    gov = d365_governor_create(&gc);

    if (strcmp(o.scenario, "basic") == 0) scenario_basic();
    else if (strcmp(o.scenario, "load") == 0) scenario_load();
    else usage();

    d365_governor_destroy(gov);
    d365_auth_destroy(auth);
    curl_global_cleanup();
    printf("# probe: %d passed, %d failed\n", passes, fails);
    return fails ? 1 : 0;
}
