/*
 * admin — /admin/ endpoints.
 *
 * Authentication first, before anything is read: the bearer token is
 * compared as a SHA-256 digest with CRYPTO_memcmp (no timing leak of content
 * or length). Request bodies (only POST /admin/replay has one) are capped at
 * 64 KiB. Responses are JSON; errors are {"error": "one line"}.
 *
 * The hooks pointer is swapped atomically so the delivery engine can attach
 * after the HTTP server is up.
 */
#include "server/admin.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"
#include "queue/queue.h"
#include "server/record_json.h"

#define ADMIN_MAGIC 0xad0100adu
#define ADMIN_MAX_BODY (64 * 1024)
#define ADMIN_LIST_MAX 10000

struct admin {
    int enabled;
    unsigned char token_hash[SHA256_DIGEST_LENGTH];
    struct queue *q;
    _Atomic(const struct admin_hooks *) hooks;
    struct admin_hooks hooks_store[2];
    atomic_int which;
};

struct admin_req {
    uint32_t magic;
    char *body;
    size_t len;
    int too_big;
};

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, cJSON *o)
{
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!text) return MHD_NO;
    size_t n = strlen(text);
    char *withnl = realloc(text, n + 2);
    if (!withnl) { free(text); return MHD_NO; }
    withnl[n] = '\n';
    withnl[n + 1] = 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(n + 1, withnl, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(withnl); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    return send_json(conn, status, o);
}

static int authorized(const struct admin *a, struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    unsigned char d[SHA256_DIGEST_LENGTH];
    if (util_sha256(tok, strlen(tok), d)) return 0;
    return CRYPTO_memcmp(d, a->token_hash, sizeof d) == 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-') return -1;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end) return -1;
    *out = v;
    return 0;
}

struct list_ctx {
    cJSON *arr;
};

static int list_cb(const struct queue_record *r, void *ud)
{
    struct list_ctx *c = ud;
    cJSON *o = record_json(r, 0);
    if (!o) return 1;
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

static enum MHD_Result get_records(struct admin *a, struct MHD_Connection *conn)
{
    const char *st = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "state");
    const char *after_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "after");
    const char *limit_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    int state = -1;
    uint64_t after = 0, limit = 1000;
    if (st && (state = queue_state_parse(st)) < 0) return send_error(conn, 400, "state: unknown state");
    if (after_s && parse_u64(after_s, &after)) return send_error(conn, 400, "after: not a sequence number");
    if (limit_s && (parse_u64(limit_s, &limit) || limit == 0 || limit > ADMIN_LIST_MAX))
        return send_error(conn, 400, "limit: must be 1..10000");
    struct list_ctx c = {cJSON_CreateArray()};
    char err[300];
    if (queue_list(a->q, state, after, (size_t)limit, list_cb, &c, err, sizeof err) != QUEUE_OK) {
        cJSON_Delete(c.arr);
        return send_error(conn, 503, err);
    }
    return send_json(conn, 200, c.arr);
}

static enum MHD_Result get_record(struct admin *a, struct MHD_Connection *conn, const char *seq_s)
{
    uint64_t seq;
    if (parse_u64(seq_s, &seq)) return send_error(conn, 400, "not a sequence number");
    struct queue_record *r = NULL;
    char err[300];
    int rc = queue_get(a->q, seq, 1, &r, err, sizeof err);
    if (rc == QUEUE_ERR_NOTFOUND) return send_error(conn, 404, "no such record");
    if (rc != QUEUE_OK) return send_error(conn, 503, err);
    cJSON *o = record_json(r, 1);
    queue_record_free(r);
    return send_json(conn, 200, o);
}

static int audit_cb(const struct queue_audit *e, void *ud)
{
    cJSON *o = record_json_audit(e);
    if (!o) return 1;
    cJSON_AddItemToArray(((struct list_ctx *)ud)->arr, o);
    return 0;
}

static enum MHD_Result get_audit(struct admin *a, struct MHD_Connection *conn)
{
    const char *seq_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "seq");
    const char *before_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "before");
    const char *limit_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    uint64_t seq = 0, before = 0, limit = 100;
    if (seq_s && parse_u64(seq_s, &seq)) return send_error(conn, 400, "seq: not a sequence number");
    if (before_s && parse_u64(before_s, &before)) return send_error(conn, 400, "before: not an audit id");
    if (limit_s && (parse_u64(limit_s, &limit) || limit == 0 || limit > ADMIN_LIST_MAX))
        return send_error(conn, 400, "limit: must be 1..10000");
    struct list_ctx c = {cJSON_CreateArray()};
    char err[300];
    if (queue_audit_list(a->q, seq, before, (size_t)limit, audit_cb, &c, err, sizeof err) != QUEUE_OK) {
        cJSON_Delete(c.arr);
        return send_error(conn, 503, err);
    }
    return send_json(conn, 200, c.arr);
}

static enum MHD_Result post_replay(struct admin *a, struct MHD_Connection *conn, struct admin_req *rq)
{
    if (rq->too_big) return send_error(conn, 413, "body over 64 KiB");
    cJSON *in = rq->body ? cJSON_ParseWithLength(rq->body, rq->len) : NULL;
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return send_error(conn, 400, "body must be {\"seq\": [..]} or {\"state\": \"failed\"}");
    }
    const cJSON *seqs = cJSON_GetObjectItemCaseSensitive(in, "seq");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(in, "state");
    size_t changed = 0;
    char err[300] = "";
    int rc;
    if (cJSON_IsArray(seqs) && !state) {
        size_t n = (size_t)cJSON_GetArraySize(seqs);
        uint64_t *v = calloc(n ? n : 1, sizeof *v);
        size_t k = 0;
        const cJSON *it;
        int bad = !v;
        cJSON_ArrayForEach(it, seqs) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble != (double)(uint64_t)it->valuedouble) bad = 1;
            else if (v) v[k++] = (uint64_t)it->valuedouble;
        }
        if (bad) {
            free(v);
            cJSON_Delete(in);
            return send_error(conn, 400, "seq: must be an array of sequence numbers");
        }
        rc = queue_set_state(a->q, v, k, QUEUE_FAILED, QUEUE_PENDING, &changed, err, sizeof err);
        free(v);
    } else if (cJSON_IsString(state) && !seqs) {
        if (strcmp(state->valuestring, "failed") != 0) {
            cJSON_Delete(in);
            return send_error(conn, 400, "state: only \"failed\" records can be replayed");
        }
        rc = queue_move_all(a->q, QUEUE_FAILED, QUEUE_PENDING, &changed, err, sizeof err);
    } else {
        cJSON_Delete(in);
        return send_error(conn, 400, "body must be {\"seq\": [..]} or {\"state\": \"failed\"}");
    }
    cJSON_Delete(in);
    if (rc != QUEUE_OK) return send_error(conn, 503, err);
    log_info("admin: replay: %zu failed record%s back to pending", changed, changed == 1 ? "" : "s");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "replayed", (double)changed);
    return send_json(conn, 200, o);
}

static enum MHD_Result route(struct admin *a, struct MHD_Connection *conn, const char *url,
                             const char *method, struct admin_req *rq)
{
    int get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    const struct admin_hooks *h = atomic_load(&a->hooks);
    if (strcmp(url, "/admin/queue") == 0) {
        if (!get) return send_error(conn, 405, "use GET");
        struct queue_stats st;
        char err[300];
        if (queue_stats(a->q, &st, err, sizeof err) != QUEUE_OK) return send_error(conn, 503, err);
        return send_json(conn, 200, record_json_stats(&st));
    }
    if (strcmp(url, "/admin/records") == 0) {
        if (!get) return send_error(conn, 405, "use GET");
        return get_records(a, conn);
    }
    if (strncmp(url, "/admin/records/", 15) == 0) {
        if (!get) return send_error(conn, 405, "use GET");
        return get_record(a, conn, url + 15);
    }
    if (strcmp(url, "/admin/audit") == 0) {
        if (!get) return send_error(conn, 405, "use GET");
        return get_audit(a, conn);
    }
    if (strcmp(url, "/admin/replay") == 0) {
        if (!post) return send_error(conn, 405, "use POST");
        return post_replay(a, conn, rq);
    }
    if (strcmp(url, "/admin/runs") == 0) {
        if (!get) return send_error(conn, 405, "use GET");
        const char *limit_s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
        uint64_t limit = 100;
        if (limit_s && (parse_u64(limit_s, &limit) || limit == 0 || limit > ADMIN_LIST_MAX))
            return send_error(conn, 400, "limit: must be 1..10000");
        cJSON *runs = h && h->runs ? h->runs(h->ud, (size_t)limit) : cJSON_CreateArray();
        if (!runs) return send_error(conn, 503, "runs unavailable");
        return send_json(conn, 200, runs);
    }
    if (strcmp(url, "/admin/sync") == 0) {
        if (!post) return send_error(conn, 405, "use POST");
        if (!h || !h->sync_now) return send_error(conn, 503, "delivery is not running");
        char msg[200] = "";
        if (h->sync_now(h->ud, msg, sizeof msg) != 0) return send_error(conn, 409, msg);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "result", msg);
        return send_json(conn, 202, o);
    }
    return send_error(conn, 404, "no such admin endpoint");
}

enum MHD_Result admin_handle(struct admin *a, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *upload_data, size_t *upload_data_size,
                             void **req_cls)
{
    struct admin_req *rq = *req_cls;
    if (!rq) {
        if (!a->enabled) return send_error(conn, 404, "not found");
        if (!authorized(a, conn)) {
            log_warn("admin: refused %s %s: missing or wrong bearer token", method, url);
            struct MHD_Response *r = MHD_create_response_from_buffer(
                strlen("{\"error\":\"bearer token required (admin.token)\"}\n"),
                (void *)"{\"error\":\"bearer token required (admin.token)\"}\n", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
            MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"ml-connector-admin\"");
            enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_UNAUTHORIZED, r);
            MHD_destroy_response(r);
            return ret;
        }
        rq = calloc(1, sizeof *rq);
        if (!rq) return MHD_NO;
        rq->magic = ADMIN_MAGIC;
        *req_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->len + *upload_data_size > ADMIN_MAX_BODY) {
            rq->too_big = 1;
        } else {
            char *nb = realloc(rq->body, rq->len + *upload_data_size + 1);
            if (!nb) return MHD_NO;
            memcpy(nb + rq->len, upload_data, *upload_data_size);
            rq->body = nb;
            rq->len += *upload_data_size;
            rq->body[rq->len] = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return route(a, conn, url, method, rq);
}

int admin_owns(const void *req) { return req && ((const struct admin_req *)req)->magic == ADMIN_MAGIC; }

void admin_request_done(void *req)
{
    struct admin_req *rq = req;
    if (!rq) return;
    rq->magic = 0;
    free(rq->body);
    free(rq);
}

struct admin *admin_new(const char *token, struct queue *q, const struct admin_hooks *hooks)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->q = q;
    if (token && *token) {
        if (util_sha256(token, strlen(token), a->token_hash)) { free(a); return NULL; }
        a->enabled = 1;
    }
    admin_set_hooks(a, hooks);
    return a;
}

void admin_set_hooks(struct admin *a, const struct admin_hooks *hooks)
{
    /* Two slots: readers may still hold the previous pointer for the
     * duration of one request; hooks are set at most a few times at start. */
    int w = atomic_fetch_add(&a->which, 1) & 1;
    if (hooks) a->hooks_store[w] = *hooks;
    atomic_store(&a->hooks, hooks ? &a->hooks_store[w] : NULL);
}

void admin_free(struct admin *a)
{
    if (!a) return;
    OPENSSL_cleanse(a->token_hash, sizeof a->token_hash);
    free(a);
}
