/*
 * ingest_load — a bounded load client for ingest tests.
 *
 *   ingest_load URL USER:PASS THREADS SECONDS FIRST_DOCNUM ACK_FILE [IDOCS_PER_REQUEST [MAX_REQUESTS]]
 *
 * THREADS threads post CREMAS05 IDocs with unique DOCNUMs (FIRST_DOCNUM,
 * FIRST_DOCNUM+1, ...) for at most SECONDS. Every DOCNUM whose request got
 * 200 is appended to ACK_FILE, one per line, flushed at once. A thread stops
 * after 20 consecutive transport errors (the server is gone: the crash
 * tests kill it), or after MAX_REQUESTS requests in all. Prints "sent N acked N errors N" at the end.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "tests/tools/load_vendor.h"

static const char *url, *userpwd;
static double seconds;
static int per_request = 1;
static unsigned long long max_requests = 0; /* 0: no limit */
static atomic_ullong next_docnum;
static atomic_ullong sent, acked, errors;
static FILE *ack;
static pthread_mutex_t ack_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static void *worker(void *arg)
{
    (void)arg;
    CURL *c = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: text/xml");
    size_t cap = 4096 + (size_t)per_request * 1024;
    char *body = malloc(cap);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    double end = util_mono_s() + seconds;
    int consecutive = 0;
    unsigned long long *docs = calloc((size_t)per_request, sizeof *docs);
    while (util_mono_s() < end && consecutive < 20) {
        size_t len = (size_t)snprintf(body, cap, "%s", LOAD_VENDOR_HEAD);
        for (int i = 0; i < per_request; i++) {
            docs[i] = atomic_fetch_add(&next_docnum, 1);
            len += load_vendor_idoc(body + len, cap - len, docs[i]);
        }
        len += (size_t)snprintf(body + len, cap - len, "%s", LOAD_VENDOR_TAIL);
        if (max_requests && atomic_load(&sent) >= max_requests) break;
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
        atomic_fetch_add(&sent, 1);
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (rc == CURLE_OK && code == 200) {
            consecutive = 0;
            atomic_fetch_add(&acked, 1);
            pthread_mutex_lock(&ack_mu);
            for (int i = 0; i < per_request; i++) fprintf(ack, "%016llu\n", docs[i]);
            fflush(ack);
            pthread_mutex_unlock(&ack_mu);
        } else {
            atomic_fetch_add(&errors, 1);
            consecutive++;
            if (rc != CURLE_OK) {
                struct timespec ts = {0, 20000000};
                nanosleep(&ts, NULL);
            }
        }
    }
    free(docs);
    free(body);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr, "usage: ingest_load URL USER:PASS THREADS SECONDS FIRST_DOCNUM ACK_FILE [PER_REQUEST [MAX_REQUESTS]]\n");
        return 2;
    }
    url = argv[1];
    userpwd = argv[2];
    int threads = atoi(argv[3]);
    seconds = atof(argv[4]);
    atomic_store(&next_docnum, strtoull(argv[5], NULL, 10));
    ack = fopen(argv[6], "a");
    if (argc > 7) per_request = atoi(argv[7]);
    if (argc > 8) max_requests = strtoull(argv[8], NULL, 10);
    if (!ack || threads < 1 || threads > 256 || seconds <= 0 || seconds > 600 || per_request < 1) {
        fprintf(stderr, "ingest_load: bad arguments\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_t t[256];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    fclose(ack);
    printf("sent %llu acked %llu errors %llu\n", (unsigned long long)atomic_load(&sent),
           (unsigned long long)atomic_load(&acked), (unsigned long long)atomic_load(&errors));
    curl_global_cleanup();
    return 0;
}
