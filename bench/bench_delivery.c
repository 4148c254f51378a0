/*
 * bench_delivery — the delivery ceiling: a bare libcurl multi loop that sends
 * the gateway's own requests to a (fake) Dataverse with C requests in flight,
 * as a client with no queue, no mapping and no governor would.
 *
 *   bench_delivery URL TOKEN N CONCURRENCY BATCH MAPPING FIRST_DOCNUM
 *
 * "The same requests": before the clock starts, it builds the N vendor IDocs
 * the benchmark queues in the gateway (tests/tools/load_vendor.h, DOCNUMs
 * FIRST_DOCNUM...), maps each with the project's mapping engine and the
 * MAPPING file, and serialises them BATCH operations per $batch with the
 * project's own d365_batch_build — byte for byte the bodies the gateway's
 * workers send, with the gateway's request headers. Then only the sending is
 * timed: no parsing, mapping, queue or governor in the loop.
 *
 * URL is the environment URL (http://127.0.0.1:PORT). Prints
 * "records N seconds S rate R requests Q non2xx E"; exit 1 if any request
 * failed, 2 on bad arguments or if the requests cannot be built.
 */
#include "common/util.h"
#include "config/mapping.h"
#include "d365/batch.h"
#include "d365/d365.h"
#include "idoc/idoc.h"
#include "tests/tools/load_vendor.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

/* One prepared $batch request. */
struct request {
    char *body;
    size_t len;
    char content_type[160];
};

struct map_ctx {
    const struct mapping *m;
    struct mapping_links *links;
    struct mapping_lookups *lookups;
    struct mapping_ops *ops;
};

static int map_one(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    struct map_ctx *c = ud;
    return mapping_apply(c->m, doc, c->links, c->lookups, c->ops, err, errlen) < 0;
}

/* Map the N vendor IDocs and cut their ops into $batch bodies. */
static struct request *build_requests(const char *mapping_path, unsigned long long first,
                                      unsigned long long n, int batch, size_t *nreq)
{
    char err[1024];
    struct mapping *m = mapping_load(mapping_path, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench_delivery: %s\n", err);
        return NULL;
    }
    struct mapping_links *links = mapping_links_mem_new();
    struct mapping_lookups *lookups = mapping_lookups_mem_new();
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    struct map_ctx mc = {m, links, lookups, &ops};
    char idoc[4096];
    int ok = links && lookups;
    for (unsigned long long r = 0; ok && r < n; r++) {
        size_t len = (size_t)snprintf(idoc, sizeof idoc, "%s", LOAD_VENDOR_HEAD);
        len += load_vendor_idoc(idoc + len, sizeof idoc - len, first + r);
        len += (size_t)snprintf(idoc + len, sizeof idoc - len, "%s", LOAD_VENDOR_TAIL);
        if (idoc_parse(idoc, len, NULL, map_one, &mc, err, sizeof err) != IDOC_OK) {
            fprintf(stderr, "bench_delivery: mapping DOCNUM %llu: %s\n", first + r, err);
            ok = 0;
        }
    }
    struct request *req = NULL;
    size_t nr = 0;
    if (ok) req = calloc(ops.n / (size_t)batch + 2, sizeof *req);
    struct d365_op *dops = ok && req ? calloc(ops.n ? ops.n : 1, sizeof *dops) : NULL;
    for (size_t i = 0; dops && i < ops.n; i++) {
        dops[i].method = ops.v[i].method;
        dops[i].path = ops.v[i].path;
        dops[i].body = ops.v[i].body;
        dops[i].changeset = (unsigned)ops.v[i].changeset;
    }
    for (size_t a = 0; dops && a < ops.n; a += (size_t)batch, nr++) {
        size_t k = ops.n - a < (size_t)batch ? ops.n - a : (size_t)batch;
        char id[32];
        snprintf(id, sizeof id, "bench%zu", nr);
        if (d365_batch_build("/api/data/v9.2/", id, dops + a, k, &req[nr].body, &req[nr].len, err,
                             sizeof err) != 0) {
            fprintf(stderr, "bench_delivery: %s\n", err);
            ok = 0;
            break;
        }
        snprintf(req[nr].content_type, sizeof req[nr].content_type,
                 "Content-Type: multipart/mixed; boundary=\"batch_%s\"", id);
    }
    free(dops);
    mapping_ops_free(&ops);
    mapping_lookups_mem_free(lookups);
    mapping_links_mem_free(links);
    mapping_free(m);
    if (!ok || !req) {
        for (size_t i = 0; req && i < nr; i++) free(req[i].body);
        free(req);
        return NULL;
    }
    *nreq = nr;
    return req;
}

struct slot {
    CURL *h;
    struct curl_slist *hdr;
    char auth[4096];
};

static size_t next_req;

/* Put the next prepared request on the slot; 0 when all were sent. */
static int prepare(struct slot *s, const char *url, struct request *req, size_t nreq)
{
    if (next_req >= nreq) return 0;
    struct request *r = &req[next_req++];
    /* The gateway's headers (d365/webapi.c perform()). */
    curl_slist_free_all(s->hdr);
    s->hdr = curl_slist_append(NULL, s->auth);
    s->hdr = curl_slist_append(s->hdr, "Accept: application/json");
    s->hdr = curl_slist_append(s->hdr, "OData-MaxVersion: 4.0");
    s->hdr = curl_slist_append(s->hdr, "OData-Version: 4.0");
    s->hdr = curl_slist_append(s->hdr, "If-None-Match: null");
    s->hdr = curl_slist_append(s->hdr, r->content_type);
    s->hdr = curl_slist_append(s->hdr, "Prefer: odata.continue-on-error");
    s->hdr = curl_slist_append(s->hdr, "Expect:");
    curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdr);
    curl_easy_setopt(s->h, CURLOPT_URL, url);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)r->len);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: bench_delivery URL TOKEN N CONCURRENCY BATCH MAPPING FIRST_DOCNUM\n");
        return 2;
    }
    const char *base = argv[1];
    unsigned long long n = strtoull(argv[3], NULL, 10);
    int conc = atoi(argv[4]);
    int batch = atoi(argv[5]);
    unsigned long long first = strtoull(argv[7], NULL, 10);
    if (conc < 1 || conc > 256 || n == 0 || batch < 1 || batch > 1000) return 2;
    size_t nreq = 0;
    struct request *req = build_requests(argv[6], first, n, batch, &nreq);
    if (!req) return 2;
    char url[512];
    snprintf(url, sizeof url, "%s/api/data/v9.2/$batch", base);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    double t0 = util_mono_s();
    unsigned long long requests = 0, bad = 0;
    for (int i = 0; i < conc; i++) {
        struct slot *s = &slots[i];
        s->h = curl_easy_init();
        snprintf(s->auth, sizeof s->auth, "Authorization: Bearer %s", argv[2]);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        if (prepare(s, url, req, nreq)) curl_multi_add_handle(m, s->h);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            struct slot *s;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            long code = 0;
            curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
            requests++;
            if (msg->data.result != CURLE_OK || code / 100 != 2) bad++;
            curl_multi_remove_handle(m, s->h);
            if (prepare(s, url, req, nreq)) {
                curl_multi_add_handle(m, s->h);
                running = 1;
            }
        }
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = util_mono_s() - t0;
    printf("records %llu seconds %.3f rate %.0f requests %llu non2xx %llu\n", n, secs, (double)n / secs, requests, bad);
    for (int i = 0; i < conc; i++) {
        curl_slist_free_all(slots[i].hdr);
        curl_easy_cleanup(slots[i].h);
    }
    for (size_t i = 0; i < nreq; i++) free(req[i].body);
    free(req);
    free(slots);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return bad ? 1 : 0;
}
