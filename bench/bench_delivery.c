/*
 * bench_delivery — the delivery ceiling: a bare libcurl multi loop that sends
 * N upserts by alternate key to a (fake) Dataverse with C requests in flight,
 * as a client with no queue, no mapping and no governor would.
 *
 *   bench_delivery URL TOKEN N CONCURRENCY [BATCH]
 *
 * URL is the environment URL (http://127.0.0.1:PORT). With BATCH > 1 it sends
 * $batch requests of BATCH upserts each (what the gateway sends). Prints
 * "records N seconds S rate R requests Q non2xx E".
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

struct slot {
    CURL *h;
    struct curl_slist *hdr;
    char url[256];
    char *body;
};

static unsigned long long next_rec;

/* Fill the slot's request with the next record(s); 0 when done. */
static int prepare(struct slot *s, const char *base, unsigned long long n, int batch)
{
    if (next_rec >= n) return 0;
    size_t cap = 1024 + (size_t)batch * 700;
    free(s->body);
    s->body = malloc(cap);
    size_t len = 0;
    if (batch <= 1) {
        unsigned long long r = next_rec++;
        snprintf(s->url, sizeof s->url, "%s/api/data/v9.2/accounts(mlc_sapvendorid='%010llu')", base, 7000000000ULL + r);
        len = (size_t)snprintf(s->body, cap,
                               "{\"name\":\"Bench Vendor %llu\",\"address1_city\":\"Walldorf\","
                               "\"mlc_issapvendor\":true,\"customertypecode\":11}", r);
        curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, "PATCH");
    } else {
        snprintf(s->url, sizeof s->url, "%s/api/data/v9.2/$batch", base);
        for (int i = 0; i < batch && next_rec < n; i++) {
            unsigned long long r = next_rec++;
            len += (size_t)snprintf(s->body + len, cap - len,
                "--batch_b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                "PATCH %s/api/data/v9.2/accounts(mlc_sapvendorid='%010llu') HTTP/1.1\r\n"
                "Content-Type: application/json\r\n\r\n"
                "{\"name\":\"Bench Vendor %llu\",\"address1_city\":\"Walldorf\",\"mlc_issapvendor\":true,"
                "\"customertypecode\":11}\r\n",
                base, 7000000000ULL + r, r);
        }
        len += (size_t)snprintf(s->body + len, cap - len, "--batch_b--\r\n");
        curl_easy_setopt(s->h, CURLOPT_CUSTOMREQUEST, "POST");
    }
    curl_easy_setopt(s->h, CURLOPT_URL, s->url);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->h, CURLOPT_POSTFIELDSIZE, (long)len);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_delivery URL TOKEN N CONCURRENCY [BATCH]\n");
        return 2;
    }
    const char *base = argv[1];
    unsigned long long n = strtoull(argv[3], NULL, 10);
    int conc = atoi(argv[4]);
    int batch = argc > 5 ? atoi(argv[5]) : 1;
    if (conc < 1 || conc > 256 || n == 0 || batch < 1 || batch > 1000) return 2;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *m = curl_multi_init();
    struct slot *slots = calloc((size_t)conc, sizeof *slots);
    char auth[4096];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[2]);
    double t0 = now();
    unsigned long long requests = 0, bad = 0;
    for (int i = 0; i < conc; i++) {
        struct slot *s = &slots[i];
        s->h = curl_easy_init();
        s->hdr = curl_slist_append(NULL, auth);
        s->hdr = curl_slist_append(s->hdr, batch > 1 ? "Content-Type: multipart/mixed; boundary=batch_b"
                                                     : "Content-Type: application/json");
        s->hdr = curl_slist_append(s->hdr, "OData-Version: 4.0");
        s->hdr = curl_slist_append(s->hdr, "OData-MaxVersion: 4.0");
        s->hdr = curl_slist_append(s->hdr, "Prefer: odata.continue-on-error");
        curl_easy_setopt(s->h, CURLOPT_HTTPHEADER, s->hdr);
        curl_easy_setopt(s->h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
        if (prepare(s, base, n, batch)) curl_multi_add_handle(m, s->h);
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
            if (prepare(s, base, n, batch)) {
                curl_multi_add_handle(m, s->h);
                running = 1;
            }
        }
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = now() - t0;
    printf("records %llu seconds %.3f rate %.0f requests %llu non2xx %llu\n", n, secs, (double)n / secs, requests, bad);
    for (int i = 0; i < conc; i++) {
        curl_slist_free_all(slots[i].hdr);
        curl_easy_cleanup(slots[i].h);
        free(slots[i].body);
    }
    free(slots);
    curl_multi_cleanup(m);
    curl_global_cleanup();
    return bad ? 1 : 0;
}
