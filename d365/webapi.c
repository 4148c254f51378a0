/*
 * d365/webapi — one reused libcurl handle per worker, every request governed,
 * measured and classified.
 *
 * Request path (request()): slot from the governor → token from d365/auth
 * (after the slot, so a request that waited out a Retry-After window does not
 * leave with a token that expired meanwhile) → curl_easy_perform on the client's handle → metrics → (401: give the slot
 * back, invalidate that token, once more from the top). The slot is still
 * held when request() returns, because only the caller knows what to report:
 * a single op reports its status; a $batch reports 429 if the batch or any of
 * its parts was throttled (with the largest Retry-After), so a throttled part
 * closes the window for every worker exactly as a throttled request does.
 *
 * The handle is reset (curl_easy_reset) and fully configured before each
 * request. Reset keeps live connections, DNS and TLS session caches, so the
 * connection is still reused, and no option of the previous request (a
 * PATCH's custom method, a POST body) can leak into the next.
 *
 * Retry-After comes from CURLINFO_RETRY_AFTER (seconds for both delta and
 * HTTP-date forms); curl 7.88 can return a negative value for a past date,
 * so it is clamped at 0 here (and at the cap in the governor).
 *
 * The lookup cache is process-wide (one mutex, a small bounded array:
 * lookups are for reference data — currencies, price lists — of which there
 * are few distinct values). Negative results are cached briefly so that a
 * missing currency does not cost one GET per record, yet a currency created
 * by an admin is picked up within a minute.
 */
#include "d365/webapi.h"
#include "d365/respbuf.h"

#include "common/util.h"

#include "common/log.h"
#include "common/metrics.h"
#include "d365/batch.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SERVICE_SUFFIX "api/data/v9.2/"
#define RESPONSE_MAX (64u << 20)

struct d365_client {
    char *root;                 /* "https://org.crm.dynamics.com/api/data/v9.2/" */
    char *service_path;         /* "/api/data/v9.2/" (with any prefix of the URL) */
    long connect_timeout_ms, timeout_ms, acquire_timeout_ms;
    int duplicate_detection, bypass_plugins;
    struct d365_auth *auth;
    struct d365_governor *gov;
    CURL *h;
    struct d365_respbuf body;
    char token[D365_TOKEN_MAX];
    char auth_header[D365_TOKEN_MAX + 32];
    uint64_t batch_seq;
    struct d365_client_stats st;
    const char *const *extra_headers; /* d365_send_ex: more header lines for this request */
};

struct req {
    const char *method, *url, *body;
    size_t body_len;
    const char *content_type, *prefer, *if_match, *if_none_match;
};

struct resp {
    int status;                 /* 0 = transport error */
    double retry_after;
    char content_type[256];
    char errbuf[CURL_ERROR_SIZE];
};



/* ------------------------------------------------------------------------ */
/* Shared types (d365.h) */

const char *d365_outcome_name(enum d365_outcome o)
{
    switch (o) {
    case D365_PENDING: return "pending";
    case D365_DONE: return "done";
    case D365_RETRY: return "retry";
    case D365_FAILED: return "failed";
    }
    return "?";
}

static int code_is(const char *code, const char *want) { return code && strcasecmp(code, want) == 0; }

enum d365_outcome d365_classify(const char *method, int status, const char *code)
{
    int is_delete = method && strcasecmp(method, "DELETE") == 0;
    int is_get = method && strcasecmp(method, "GET") == 0;
    if (status >= 200 && status < 300) return D365_DONE;
    /* DELETE of a key that is not there: the goal is reached. Checked before
     * the code table: Dataverse answers it with 0x80060891 too. */
    if (is_delete && status == 404) return D365_DONE;
    if (code_is(code, D365_CODE_LIMIT_REQUESTS) || code_is(code, D365_CODE_LIMIT_TIME) ||
        code_is(code, D365_CODE_LIMIT_CONCURRENT))
        return D365_RETRY;
    /* A write whose @odata.bind names an alternate key not created yet (the
     * account of a contact still in the queue): retry later. */
    if (!is_get && code_is(code, D365_CODE_KEY_NOT_FOUND)) return D365_RETRY;
    if (status == 0 || status == 401 || status == 408 || status == 429) return D365_RETRY;
    if (status == 500) {
        if (!code || !*code || code_is(code, "0x80044150")) return D365_RETRY; /* generic SQL error */
        return D365_FAILED;
    }
    if (status == 501) return D365_FAILED;
    if (status >= 500) return D365_RETRY;
    return D365_FAILED;
}

void d365_op_reset(struct d365_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ops[i].outcome = D365_PENDING;
        ops[i].status = 0;
        ops[i].batch_level = 0;
        ops[i].retry_after = 0;
        ops[i].code[0] = 0;
        ops[i].message[0] = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Client */

struct d365_client *d365_client_create(const struct d365_client_config *cfg, struct d365_auth *auth,
                                       struct d365_governor *gov, char *err, size_t errlen)
{
    if (!cfg || !cfg->url || !*cfg->url || !auth) {
        util_seterr(err, errlen, "dataverse.url: missing");
        return NULL;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *path = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, cfg->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        util_seterr(err, errlen, "dataverse.url: not an http(s) URL: '%.200s'", cfg->url);
        curl_free(scheme);
        curl_free(path);
        curl_url_cleanup(u);
        return NULL;
    }
    struct d365_client *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->body.max = RESPONSE_MAX;
    c->h = curl_easy_init();
    if (!c->h) goto oom;
    /* root = url without trailing slashes + "/api/data/v9.2/" */
    size_t ul = strlen(cfg->url);
    while (ul > 0 && cfg->url[ul - 1] == '/') ul--;
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/') pl--;
    c->root = malloc(ul + sizeof SERVICE_SUFFIX + 1);
    c->service_path = malloc(pl + sizeof SERVICE_SUFFIX + 1);
    if (!c->root || !c->service_path) goto oom;
    snprintf(c->root, ul + sizeof SERVICE_SUFFIX + 1, "%.*s/%s", (int)ul, cfg->url, SERVICE_SUFFIX);
    snprintf(c->service_path, pl + sizeof SERVICE_SUFFIX + 1, "%.*s/%s", (int)pl, path, SERVICE_SUFFIX);
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 120000;
    c->acquire_timeout_ms = cfg->acquire_timeout_ms > 0 ? cfg->acquire_timeout_ms : -1;
    c->duplicate_detection = cfg->duplicate_detection;
    c->bypass_plugins = cfg->bypass_plugins;
    c->auth = auth;
    c->gov = gov;
    curl_free(scheme);
    curl_free(path);
    curl_url_cleanup(u);
    return c;
oom:
    util_seterr(err, errlen, "out of memory");
    curl_free(scheme);
    curl_free(path);
    curl_url_cleanup(u);
    d365_client_destroy(c);
    return NULL;
}

void d365_client_prefetch_token(struct d365_client *c)
{
    d365_auth_prefetch(c->auth);
}

void d365_client_destroy(struct d365_client *c)
{
    if (!c) return;
    if (c->h) curl_easy_cleanup(c->h);
    free(c->root);
    free(c->service_path);
    d365_respbuf_free(&c->body);
    /* the token is not a long-term secret, but no reason to leave it around */
    memset(c->token, 0, sizeof c->token);
    memset(c->auth_header, 0, sizeof c->auth_header);
    free(c);
}

void d365_client_stats(const struct d365_client *c, struct d365_client_stats *out) { *out = c->st; }

/* One HTTP exchange on the client's handle; fills r and c->body. */
static void perform(struct d365_client *c, const struct req *q, struct resp *r)
{
    CURL *h = c->h;
    struct curl_slist *hd = NULL;
    char line[512];
    memset(r, 0, sizeof *r);
    d365_respbuf_reset(&c->body);

    snprintf(c->auth_header, sizeof c->auth_header, "Authorization: Bearer %s", c->token);
    hd = curl_slist_append(hd, c->auth_header);
    hd = curl_slist_append(hd, "Accept: application/json");
    hd = curl_slist_append(hd, "OData-MaxVersion: 4.0");
    hd = curl_slist_append(hd, "OData-Version: 4.0");
    if (q->if_none_match) {
        snprintf(line, sizeof line, "If-None-Match: %s", q->if_none_match);
        hd = curl_slist_append(hd, line);
    } else {
        hd = curl_slist_append(hd, "If-None-Match: null");
    }
    if (q->if_match) {
        snprintf(line, sizeof line, "If-Match: %s", q->if_match);
        hd = curl_slist_append(hd, line);
    }
    if (q->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", q->content_type);
        hd = curl_slist_append(hd, line);
    }
    if (q->prefer) {
        snprintf(line, sizeof line, "Prefer: %s", q->prefer);
        hd = curl_slist_append(hd, line);
    }
    for (const char *const *x = c->extra_headers; x && *x; x++) hd = curl_slist_append(hd, *x);
    if (c->duplicate_detection) hd = curl_slist_append(hd, "MSCRM.SuppressDuplicateDetection: false");
    if (c->bypass_plugins) hd = curl_slist_append(hd, "MSCRM.BypassCustomPluginExecution: true");
    hd = curl_slist_append(hd, "Expect:"); /* no 100-continue round trip for large bodies */

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, q->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 60L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 30L);
#if LIBCURL_VERSION_NUM >= 0x075000
    curl_easy_setopt(h, CURLOPT_MAXLIFETIME_CONN, 600L);
#endif
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ml-connector");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, d365_respbuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->errbuf);
    if (strcasecmp(q->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcasecmp(q->method, "POST") == 0 || q->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? q->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(q->body ? q->body_len : 0));
        if (strcasecmp(q->method, "POST") != 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    }

    double t0 = util_mono_s();
    CURLcode cr = curl_easy_perform(h);
    double secs = util_mono_s() - t0;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (cr != CURLE_OK) {
        if (c->body.overflow) snprintf(r->errbuf, sizeof r->errbuf, "response larger than %u bytes", RESPONSE_MAX);
        else if (!r->errbuf[0]) snprintf(r->errbuf, sizeof r->errbuf, "%s", curl_easy_strerror(cr));
        status = 0;
        c->st.transport_errors++;
    } else {
        curl_off_t ra = 0;
        if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) r->retry_after = (double)ra;
        const char *ct = NULL;
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
            snprintf(r->content_type, sizeof r->content_type, "%s", ct);
    }
    r->status = (int)status;
    c->st.requests++;
    metrics_dataverse_request(r->status, secs);
    if (r->status == 429) {
        metrics_dataverse_throttled();
        c->st.status_429++;
    }
    /* The handle keeps pointers to these until the next reset: drop them now. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_slist_free_all(hd);
    log_debug("d365: %s %s -> %d (%.3f s)", q->method, q->url, r->status, secs);
}

/* Token, slot, exchange; a 401 renews once. On 0 the exchange happened (r
 * holds its status, 0 = transport) and the governor slot is HELD: the caller
 * releases it. On -1 nothing was sent: code/why say why ("auth", "shutdown"). */
static int request(struct d365_client *c, const struct req *q, struct resp *r, char *code, size_t codelen,
                   char *why, size_t whylen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        char err[512];
        if (c->gov) {
            int g = d365_governor_acquire(c->gov, c->acquire_timeout_ms);
            if (g != 0) {
                snprintf(code, codelen, "%s", g < 0 ? "shutdown" : "busy");
                snprintf(why, whylen, "%s", g < 0 ? "delivery is shutting down"
                                                   : "timed out waiting for a request slot");
                return -1;
            }
        }
        /* The token is taken after the slot: a request may wait out a long
         * Retry-After window, and must not leave with a token that expired
         * meanwhile. */
        if (d365_auth_token(c->auth, c->token, sizeof c->token, err, sizeof err) != 0) {
            if (c->gov) d365_governor_release(c->gov, -1, 0);
            snprintf(code, codelen, "auth");
            snprintf(why, whylen, "no access token: %s", err);
            return -1;
        }
        perform(c, q, r);
        if (r->status == 401 && attempt == 0) {
            if (c->gov) d365_governor_release(c->gov, 401, 0);
            d365_auth_invalidate(c->auth, c->token);
            c->st.renewals++;
            continue;
        }
        return 0;
    }
    return 0; /* not reached */
}

/* A non-JSON error body (a proxy's HTML page...) as a one-line message. */
static void body_as_message(struct d365_op *op, const char *body, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < 300 && n + 1 < sizeof op->message; i++) {
        unsigned char ch = (unsigned char)body[i];
        op->message[n++] = (char)(ch < 0x20 ? ' ' : ch);
    }
    /* never end inside a UTF-8 sequence */
    while (n > 0 && ((unsigned char)op->message[n - 1] & 0xC0) == 0x80) n--;
    if (n > 0 && ((unsigned char)op->message[n - 1] & 0xC0) == 0xC0) n--;
    op->message[n] = 0;
}

/* Outputs of op from a whole response (single op, or a batch as a whole). */
static void from_response(struct d365_client *c, struct d365_op *op, const struct resp *r, const char *method)
{
    op->status = r->status;
    op->retry_after = r->retry_after;
    if (r->status == 0) {
        snprintf(op->code, sizeof op->code, "transport");
        snprintf(op->message, sizeof op->message, "%s", r->errbuf);
    } else if (r->status >= 300 && c->body.len) {
        d365_error_from_json(op, c->body.p, c->body.len);
        if (!op->code[0] && !op->message[0]) body_as_message(op, c->body.p, c->body.len);
    }
    if (r->status >= 300 && !op->message[0])
        snprintf(op->message, sizeof op->message, "HTTP %d", r->status);
    op->outcome = d365_classify(method, r->status, op->code);
}

static void not_sent(struct d365_op *op, const char *code, const char *why)
{
    op->outcome = D365_RETRY;
    op->status = 0;
    snprintf(op->code, sizeof op->code, "%s", code);
    snprintf(op->message, sizeof op->message, "%s", why);
}

enum d365_outcome d365_send_one(struct d365_client *c, struct d365_op *op)
{
    return d365_send_ex(c, op, NULL, NULL);
}

enum d365_outcome d365_send_ex(struct d365_client *c, struct d365_op *op, const char *const *headers,
                               char **body_out)
{
    if (body_out) *body_out = NULL;
    d365_op_reset(op, 1);
    int bad = !op->method || !*op->method || strpbrk(op->method, " \r\n") || !op->path || !*op->path ||
              op->path[0] == '$' || (op->if_match && strpbrk(op->if_match, "\r\n")) ||
              (op->if_none_match && strpbrk(op->if_none_match, "\r\n"));
    for (const char *const *x = headers; !bad && x && *x; x++)
        bad = strpbrk(*x, "\r\n") || !strchr(*x, ':') || **x == ':';
    if (bad) {
        op->outcome = D365_FAILED;
        snprintf(op->code, sizeof op->code, "invalid");
        snprintf(op->message, sizeof op->message, "invalid operation (method, path or header)");
        return op->outcome;
    }
    char *path = d365_path_escape(op->path);
    size_t ul = strlen(c->root) + (path ? strlen(path) : 0) + 1;
    char *url = path ? malloc(ul) : NULL;
    if (!url) {
        free(path);
        not_sent(op, "oom", "out of memory");
        return op->outcome;
    }
    snprintf(url, ul, "%s%s", c->root, path);
    free(path);
    struct req q = {op->method, url, op->body, op->body ? strlen(op->body) : 0,
                    op->body ? "application/json" : NULL, NULL, op->if_match, op->if_none_match};
    struct resp r;
    char code[32], why[600];
    c->extra_headers = headers;
    int sent = request(c, &q, &r, code, sizeof code, why, sizeof why) == 0;
    c->extra_headers = NULL;
    if (!sent) {
        not_sent(op, code, why);
    } else {
        from_response(c, op, &r, op->method);
        if (c->gov) d365_governor_release(c->gov, r.status, r.retry_after);
        if (body_out && r.status != 0) {
            *body_out = malloc(c->body.len + 1);
            if (*body_out) {
                if (c->body.len) memcpy(*body_out, c->body.p, c->body.len);
                (*body_out)[c->body.len] = 0;
            }
        }
    }
    free(url);
    return op->outcome;
}

int d365_batch_send(struct d365_client *c, struct d365_op *ops, size_t n, char *err, size_t errlen)
{
    if (d365_batch_validate(ops, n, err, errlen) != 0) return -1;
    d365_op_reset(ops, n);
    char id[64];
    snprintf(id, sizeof id, "mlc%llx_%08llx", (unsigned long long)++c->batch_seq,
             (unsigned long long)(d365_rand01() * 4294967296.0));
    char *body = NULL;
    size_t blen = 0;
    if (d365_batch_build(c->service_path, id, ops, n, &body, &blen, err, errlen) != 0) return -1;
    char ct[128], url[2048];
    snprintf(ct, sizeof ct, "multipart/mixed; boundary=\"batch_%s\"", id);
    snprintf(url, sizeof url, "%s$batch", c->root);
    struct req q = {"POST", url, body, blen, ct, "odata.continue-on-error", NULL, NULL};
    struct resp r;
    char code[32], why[600];
    if (request(c, &q, &r, code, sizeof code, why, sizeof why) != 0) {
        for (size_t i = 0; i < n; i++) {
            not_sent(&ops[i], code, why);
            ops[i].batch_level = 1;
        }
        free(body);
        return 0;
    }
    int parsed = -1;
    if (r.status >= 200 && r.status < 300 && strncasecmp(r.content_type, "multipart/", 10) == 0) {
        char perr[256];
        parsed = d365_batch_parse(r.content_type, c->body.p, c->body.len, ops, n, perr, sizeof perr);
        if (parsed < 0) log_warn("d365: $batch answered %d but %s", r.status, perr);
    } else if (r.status >= 400 && strncasecmp(r.content_type, "multipart/", 10) == 0) {
        /* Without continue-on-error semantics the batch stops at the first
         * failure and answers with that part: take what it says. */
        parsed = d365_batch_parse(r.content_type, c->body.p, c->body.len, ops, n, NULL, 0);
    }
    if (parsed < 0) {
        /* The batch as a whole: transport, 401 after renewal, 429, 5xx, an
         * outer 4xx with a JSON error, or a 2xx we could not read (the
         * writes may have happened; resending upserts is harmless). */
        struct d365_op whole;
        memset(&whole, 0, sizeof whole);
        from_response(c, &whole, &r, "POST");
        if (r.status >= 200 && r.status < 300) {
            whole.outcome = D365_RETRY;
            snprintf(whole.code, sizeof whole.code, "not_processed");
            snprintf(whole.message, sizeof whole.message, "unreadable $batch response (HTTP %d, %.80s)",
                     r.status, r.content_type);
        }
        for (size_t i = 0; i < n; i++) {
            ops[i].outcome = whole.outcome;
            ops[i].status = whole.status;
            ops[i].retry_after = whole.retry_after;
            ops[i].batch_level = 1;
            memcpy(ops[i].code, whole.code, sizeof whole.code);
            memcpy(ops[i].message, whole.message, sizeof whole.message);
        }
    }
    /* Tell the governor: a throttled part throttles everyone. */
    int gstatus = r.status;
    double gra = r.retry_after;
    int parts429 = 0;
    if (parsed >= 0) {
        for (size_t i = 0; i < n; i++)
            if (ops[i].status == 429 && !ops[i].batch_level) {
                parts429++;
                if (ops[i].retry_after > gra) gra = ops[i].retry_after;
            }
        if (parts429) {
            c->st.parts_429 += (uint64_t)parts429;
            if (r.status != 429) metrics_dataverse_throttled();
            gstatus = 429;
        }
    }
    if (c->gov) d365_governor_release(c->gov, gstatus, gra);
    free(body);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Lookups */

#define CACHE_SLOTS 1024

struct cache_ent {
    char *key;
    char id[37];
    int found;
    double expires;
    double used;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache_ent cache[CACHE_SLOTS];
static double ttl_found = 3600, ttl_missing = 60;
static uint64_t cache_hits;

void d365_lookup_cache_ttl(double found_s, double not_found_s)
{
    pthread_mutex_lock(&cache_mu);
    ttl_found = found_s;
    ttl_missing = not_found_s;
    pthread_mutex_unlock(&cache_mu);
}

void d365_lookup_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        free(cache[i].key);
        memset(&cache[i], 0, sizeof cache[i]);
    }
    cache_hits = 0;
    pthread_mutex_unlock(&cache_mu);
}

uint64_t d365_lookup_cache_hits(void)
{
    pthread_mutex_lock(&cache_mu);
    uint64_t h = cache_hits;
    pthread_mutex_unlock(&cache_mu);
    return h;
}

/* 1 found, 0 not found, -1 not cached. */
static int cache_get(const char *key, char id_out[37])
{
    int rc = -1;
    double now = util_mono_s();
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (!cache[i].key || strcmp(cache[i].key, key) != 0) continue;
        if (now < cache[i].expires) {
            rc = cache[i].found;
            if (rc) memcpy(id_out, cache[i].id, 37);
            cache[i].used = now;
            cache_hits++;
        }
        break;
    }
    pthread_mutex_unlock(&cache_mu);
    return rc;
}

static void cache_put(const char *key, const char *id, int found)
{
    double now = util_mono_s();
    pthread_mutex_lock(&cache_mu);
    size_t slot = CACHE_SLOTS, oldest = 0;
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (cache[i].key && strcmp(cache[i].key, key) == 0) {
            slot = i;
            break;
        }
        if (!cache[i].key && slot == CACHE_SLOTS) slot = i;
        if (cache[i].used < cache[oldest].used) oldest = i;
    }
    if (slot == CACHE_SLOTS) slot = oldest; /* full: evict the least recently used */
    if (!cache[slot].key || strcmp(cache[slot].key, key) != 0) {
        free(cache[slot].key);
        cache[slot].key = strdup(key);
    }
    if (cache[slot].key) {
        cache[slot].found = found;
        snprintf(cache[slot].id, sizeof cache[slot].id, "%s", found ? id : "");
        cache[slot].expires = now + (found ? ttl_found : ttl_missing);
        cache[slot].used = now;
    }
    pthread_mutex_unlock(&cache_mu);
}

int d365_is_guid(const char *s)
{
    if (!s || strlen(s) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') return 0;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* transactioncurrencies → transactioncurrencyid, pricelevels → pricelevelid. */
static void primary_key_of(const char *set, char *out, size_t outlen)
{
    size_t n = strlen(set);
    if (n > 3 && strcmp(set + n - 3, "ies") == 0) snprintf(out, outlen, "%.*syid", (int)(n - 3), set);
    else if (n > 1 && set[n - 1] == 's') snprintf(out, outlen, "%.*sid", (int)(n - 1), set);
    else snprintf(out, outlen, "%sid", set);
}

enum d365_lookup d365_lookup_id(struct d365_client *c, const char *set, const char *column,
                                const char *value, char id_out[37], char *err, size_t errlen)
{
    id_out[0] = 0;
    if (!set || !*set || !column || !*column || !value) {
        util_seterr(err, errlen, "lookup: set, column and value are required");
        return D365_LOOKUP_FAILED;
    }
    size_t kl = strlen(set) + strlen(column) + strlen(value) + 3;
    char *key = malloc(kl);
    if (!key) {
        util_seterr(err, errlen, "out of memory");
        return D365_LOOKUP_RETRY;
    }
    snprintf(key, kl, "%s\x1f%s\x1f%s", set, column, value);
    int hit = cache_get(key, id_out);
    if (hit >= 0) {
        free(key);
        if (!hit) util_seterr(err, errlen, "no %s with %s = '%s' (cached)", set, column, value);
        return hit ? D365_LOOKUP_FOUND : D365_LOOKUP_NOT_FOUND;
    }

    /* filter: <column> eq '<value with ' doubled>', then fully %-encoded */
    size_t fl = strlen(column) + 2 * strlen(value) + 8;
    char *filter = malloc(fl), *f = filter;
    char pk[128];
    primary_key_of(set, pk, sizeof pk);
    enum d365_lookup rc = D365_LOOKUP_RETRY;
    char *efilter = NULL, *eset = NULL, *url = NULL;
    if (!filter) goto oom;
    f += sprintf(f, "%s eq '", column);
    for (const char *v = value; *v; v++) {
        if (*v == '\'') *f++ = '\'';
        *f++ = *v;
    }
    *f++ = '\'';
    *f = 0;
    efilter = curl_easy_escape(c->h, filter, 0);
    eset = d365_path_escape(set);
    if (!efilter || !eset) goto oom;
    size_t ul = strlen(c->root) + strlen(eset) + strlen(pk) + strlen(efilter) + 40;
    url = malloc(ul);
    if (!url) goto oom;
    snprintf(url, ul, "%s%s?$select=%s&$filter=%s&$top=1", c->root, eset, pk, efilter);

    struct req q = {"GET", url, NULL, 0, NULL, NULL, NULL, NULL};
    struct resp r;
    char code[32], why[600];
    struct d365_op op;
    memset(&op, 0, sizeof op);
    if (request(c, &q, &r, code, sizeof code, why, sizeof why) != 0) {
        util_seterr(err, errlen, "lookup %s: %s", set, why);
        rc = D365_LOOKUP_RETRY;
        goto out;
    }
    from_response(c, &op, &r, "GET");
    if (c->gov) d365_governor_release(c->gov, r.status, r.retry_after);
    if (op.outcome != D365_DONE) {
        util_seterr(err, errlen, "lookup %s: HTTP %d %s %s", set, op.status, op.code, op.message);
        rc = op.outcome == D365_RETRY ? D365_LOOKUP_RETRY : D365_LOOKUP_FAILED;
        goto out;
    }
    cJSON *j = c->body.len ? cJSON_ParseWithLength(c->body.p, c->body.len) : NULL;
    cJSON *arr = j ? cJSON_GetObjectItemCaseSensitive(j, "value") : NULL;
    if (!cJSON_IsArray(arr)) {
        util_seterr(err, errlen, "lookup %s: response without a \"value\" array", set);
        cJSON_Delete(j);
        rc = D365_LOOKUP_RETRY;
        goto out;
    }
    cJSON *row = cJSON_GetArrayItem(arr, 0);
    if (!row) {
        cache_put(key, NULL, 0);
        util_seterr(err, errlen, "no %s with %s = '%s'", set, column, value);
        rc = D365_LOOKUP_NOT_FOUND;
        cJSON_Delete(j);
        goto out;
    }
    cJSON *idv = cJSON_GetObjectItemCaseSensitive(row, pk);
    if (!cJSON_IsString(idv) || !d365_is_guid(idv->valuestring)) {
        idv = NULL;
        cJSON *it;
        cJSON_ArrayForEach(it, row) {
            size_t sl = it->string ? strlen(it->string) : 0;
            if (sl > 2 && strcmp(it->string + sl - 2, "id") == 0 && cJSON_IsString(it) &&
                d365_is_guid(it->valuestring)) {
                idv = it;
                break;
            }
        }
    }
    if (!idv) {
        util_seterr(err, errlen, "lookup %s: row without a primary id (%s)", set, pk);
        rc = D365_LOOKUP_FAILED;
        cJSON_Delete(j);
        goto out;
    }
    memcpy(id_out, idv->valuestring, 37);
    cache_put(key, id_out, 1);
    cJSON_Delete(j);
    rc = D365_LOOKUP_FOUND;
    goto out;
oom:
    util_seterr(err, errlen, "out of memory");
    rc = D365_LOOKUP_RETRY;
out:
    free(filter);
    curl_free(efilter);
    free(eset);
    free(url);
    free(key);
    return rc;
}
