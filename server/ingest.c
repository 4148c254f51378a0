/*
 * ingest — the SAP POST handler: auth, media type, gunzip, parse, route,
 * group commit, answer.
 *
 * A request moves through these states, one per libmicrohttpd callback kind:
 *
 *   first call (headers)  -> method, Basic auth, Content-Type,
 *                            Content-Encoding, Content-Length are checked
 *                            BEFORE anything is allocated for the body; a
 *                            failure is answered at once (MHD then skips the
 *                            body, and a client using Expect: 100-continue
 *                            never sends it).
 *   body pieces           -> RECEIVING: bytes go through zlib (gzip) into
 *                            the IDoc push parser as they arrive; each
 *                            complete IDoc is routed and copied into the
 *                            batch. The body itself is never buffered.
 *                            On an error -> DISCARDING: the rest of the body
 *                            is read and dropped (a response cannot be queued
 *                            mid-upload), up to 2 x max_body + 16 MiB, then the
 *                            connection is closed.
 *   final call            -> the parse is finished; the batch is handed to
 *                            the queue's committer and the connection is
 *                            SUSPENDED (never block an MHD thread on a commit:
 *                            that would cap group commit at the pool size).
 *   after resume          -> COMMITTED: answer 200 or 503.
 *
 * Invariants: 200 is sent only after queue_submit's done callback reported
 * QUEUE_OK, i.e. after the fsync'd LMDB commit of every IDoc of the request
 * (or their earlier copies). An error at any point commits nothing. Memory
 * held by requests in flight is bounded by max_inflight_bytes (503 above it).
 */
#include "server/ingest.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <zlib.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/util.h"
#include "config/mapping.h"
#include "idoc/idoc.h"
#include "idoc/idoc_pack.h"
#include "queue/queue.h"
#include "server/mapref.h"

#define REQ_MAGIC 0x1d0c1d0cu
#define INFLATE_CHUNK 65536
#define INGEST_MAX_SEGMENTS 250000
/* After a rejection the rest of the body is read and dropped so that the
 * client gets its one-line answer (MHD cannot answer mid-upload); past this
 * many bytes in all, the connection is closed instead. */
#define DISCARD_ALLOWANCE(max) (2 * (max) + ((uint64_t)16 << 20))

enum req_state { RS_RECEIVING = 0, RS_DISCARDING, RS_COMMITTING, RS_COMMITTED, RS_ANSWERED };

struct ingest {
    struct ingest_opts o;
    unsigned char user_hash[SHA256_DIGEST_LENGTH];
    unsigned char pass_hash[SHA256_DIGEST_LENGTH];
    atomic_uint_fast64_t inflight_bytes;
    atomic_size_t active;
    atomic_int draining;
};

struct ingest_req {
    uint32_t magic;
    struct ingest *in;
    struct MHD_Connection *conn;
    atomic_int state;
    struct timespec t0;

    /* Outcome when state is DISCARDING (or after a failed commit). */
    int http_status;
    int reject;                 /* enum metrics_reject */
    char reason[320];

    int gzip;
    z_stream zs;
    unsigned char *zbuf;
    uint64_t wire_bytes, body_bytes, reserved;

    struct idoc_parser *parser;
    struct queue_item *items;
    char **blocks;              /* one allocation of strings per item */
    size_t nitems, capitems;
    unsigned char *mscratch;    /* the packed model of the IDoc being added */
    size_t mcap;

    struct queue_batch batch;
};

static double elapsed_s(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Queue a one-line text/plain answer. SAP shows the body to its admin. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *text,
                             const char *retry_after)
{
    char body[400];
    snprintf(body, sizeof body, "%s\n", text);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (retry_after) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
    enum MHD_Result r;
    if (status == MHD_HTTP_UNAUTHORIZED)
        r = MHD_queue_basic_auth_fail_response(conn, "ml-connector", resp);
    else
        r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    metrics_ingest_request((int)status);
    return r;
}

static void fail(struct ingest_req *r, int status, int reject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct ingest_req *r, int status, int reject, const char *fmt, ...)
{
    if (atomic_load(&r->state) == RS_DISCARDING) return; /* keep the first cause */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof r->reason, fmt, ap);
    va_end(ap);
    r->http_status = status;
    r->reject = reject;
    atomic_store(&r->state, RS_DISCARDING);
}

/* Answer a rejected request: metric, one warn line, the response. */
static enum MHD_Result answer_reject(struct ingest_req *r, struct MHD_Connection *conn)
{
    metrics_rejected(r->reject);
    const char *docnum = r->nitems ? r->items[r->nitems - 1].docnum : "-";
    log_warn("ingest: rejected status=%d reason=\"%s\" idocs_parsed=%zu last_docnum=%s bytes=%llu",
             r->http_status, r->reason, r->nitems, docnum, (unsigned long long)r->wire_bytes);
    const char *retry = r->http_status == MHD_HTTP_SERVICE_UNAVAILABLE
                            ? (r->reject == METRICS_REJECT_QUOTA ? "60" : "5") : NULL;
    atomic_store(&r->state, RS_ANSWERED);
    return reply(conn, (unsigned)r->http_status, r->reason, retry);
}

/* ---- request set-up: everything checked before the body is read ---- */

static int hash_eq(const unsigned char want[SHA256_DIGEST_LENGTH], const char *got)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    if (util_sha256(got, strlen(got), h)) return 0;
    /* Compare digests in constant time: neither the content nor the length
     * of the secret leaks through timing. */
    return CRYPTO_memcmp(want, h, sizeof h) == 0;
}

static int check_auth(const struct ingest *in, struct MHD_Connection *conn)
{
    char *pass = NULL;
    char *user = MHD_basic_auth_get_username_password(conn, &pass);
    int ok = 0;
    if (user && pass) {
        int u = hash_eq(in->user_hash, user);
        int p = hash_eq(in->pass_hash, pass);
        ok = u & p; /* both evaluated: no early exit */
    }
    if (user) MHD_free(user);
    if (pass) { memset(pass, 0, strlen(pass)); MHD_free(pass); }
    return ok;
}

/* Media type without parameters, lower-cased, trimmed. */
static int media_type_ok(const char *ct, char *out, size_t outlen)
{
    size_t o = 0;
    while (*ct == ' ' || *ct == '\t') ct++;
    for (; *ct && *ct != ';' && o + 1 < outlen; ct++) out[o++] = (char)((*ct >= 'A' && *ct <= 'Z') ? *ct + 32 : *ct);
    while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t')) o--;
    out[o] = 0;
    return strcmp(out, "text/xml") == 0 || strcmp(out, "application/xml") == 0 ||
           strcmp(out, "application/x-sap.idoc") == 0;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

/* ---- body: gunzip and parse ---- */

/* Take ownership-free copies of one IDoc into the batch. */
static int add_item(struct ingest_req *r, const struct idoc *doc, const struct mapping_class *mc)
{
    const char *src[] = {doc->mandt, doc->sndprn, doc->docnum, doc->mestyp, doc->idoctyp,
                         doc->cimtyp, doc->credat, doc->cretim, mc->keys};
    enum { NSTR = sizeof src / sizeof src[0] };
    /* The parsed model is stored packed next to the XML, so that delivery
     * need not parse the XML again (about a third of its CPU per record).
     * Packing costs a few microseconds here; 0 (never for a parsed model)
     * just stores none and delivery parses the XML. */
    size_t mlen = 0;
    if (mc->route != MAPPING_IGNORE) {
        /* One pass into the request's scratch buffer; a second only when
         * it was too small (the buffer then grows to fit). */
        mlen = idoc_pack_to(doc, r->mscratch, r->mcap);
        if (mlen > r->mcap) {
            unsigned char *nb = realloc(r->mscratch, mlen);
            if (!nb) return -1;
            r->mscratch = nb;
            r->mcap = mlen;
            idoc_pack_to(doc, r->mscratch, r->mcap);
        }
    }
    size_t len[NSTR], total = doc->xml_len + 1 + mlen;
    for (size_t i = 0; i < NSTR; i++) total += (len[i] = strlen(src[i])) + 1;

    uint64_t newres = atomic_fetch_add(&r->in->inflight_bytes, total) + total;
    r->reserved += total;
    if (newres > r->in->o.max_inflight_bytes) return -2;

    if (r->nitems == r->capitems) {
        size_t nc = r->capitems ? r->capitems * 2 : 8;
        struct queue_item *ni = realloc(r->items, nc * sizeof *ni);
        if (!ni) return -1;
        r->items = ni;
        char **nb = realloc(r->blocks, nc * sizeof *nb);
        if (!nb) return -1;
        r->blocks = nb;
        r->capitems = nc;
    }
    char *block = malloc(total);
    if (!block) return -1;
    char *p = block;
    const char *dst[NSTR];
    for (size_t i = 0; i < NSTR; i++) {
        memcpy(p, src[i], len[i] + 1);
        dst[i] = p;
        p += len[i] + 1;
    }
    memcpy(p, doc->xml, doc->xml_len);
    p[doc->xml_len] = 0;
    char *model = p + doc->xml_len + 1;
    if (mlen)
        memcpy(model, r->mscratch, mlen);
    struct queue_item *it = &r->items[r->nitems];
    memset(it, 0, sizeof *it);
    it->mandt = dst[0]; it->sndprn = dst[1]; it->docnum = dst[2]; it->mestyp = dst[3];
    it->idoctyp = dst[4]; it->cimtyp = dst[5]; it->credat = dst[6]; it->cretim = dst[7];
    it->keys = dst[8];
    it->xml = p;
    it->xml_len = doc->xml_len;
    it->model = mlen ? model : NULL;
    it->model_len = mlen;
    it->state = mc->route == MAPPING_IGNORE ? QUEUE_IGNORED : QUEUE_PENDING;
    r->blocks[r->nitems++] = block;
    return 0;
}

/* Parser callback: one complete IDoc. Route it; refuse the packet when a
 * type is not handled (422) — SAP should see that at once, not later. */
static int on_idoc(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    struct ingest_req *r = ud;
    struct mapping_class mc;
    char cerr[256] = "";
    if (mapping_classify(mapref_get(r->in->o.mapping), doc, &mc, cerr, sizeof cerr) != 0) {
        snprintf(err, errlen, "IDoc %s (%s): %s", doc->docnum, doc->mestyp, cerr);
        r->http_status = MHD_HTTP_BAD_REQUEST;
        r->reject = METRICS_REJECT_MALFORMED;
        return 1;
    }
    if (mc.route == MAPPING_UNSUPPORTED) {
        snprintf(err, errlen, "IDoc %s: message type %s, basic type %s%s%s is not handled by the mapping",
                 doc->docnum, doc->mestyp, doc->idoctyp, doc->cimtyp[0] ? ", extension " : "",
                 doc->cimtyp);
        r->http_status = MHD_HTTP_UNPROCESSABLE_CONTENT;
        r->reject = METRICS_REJECT_UNSUPPORTED_TYPE;
        return 1;
    }
    int rc = add_item(r, doc, &mc);
    if (rc == -2) {
        snprintf(err, errlen, "server busy: too much IDoc data in flight, retry later");
        r->http_status = MHD_HTTP_SERVICE_UNAVAILABLE;
        r->reject = METRICS_REJECT_INTERNAL;
        return 1;
    }
    if (rc != 0) {
        snprintf(err, errlen, "out of memory");
        r->http_status = MHD_HTTP_SERVICE_UNAVAILABLE;
        r->reject = METRICS_REJECT_INTERNAL;
        return 1;
    }
    return 0;
}

/* Map a parser error to the answer. A callback error already chose it. */
static void parse_failed(struct ingest_req *r, int st, const char *msg)
{
    switch (st) {
    case IDOC_ERR_CALLBACK:
        fail(r, r->http_status, r->reject, "%s", msg);
        break;
    case IDOC_ERR_DOCTYPE:
        fail(r, MHD_HTTP_BAD_REQUEST, METRICS_REJECT_DOCTYPE, "%s", msg);
        break;
    case IDOC_ERR_ENCODING:
        fail(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, METRICS_REJECT_MEDIA_TYPE, "%s", msg);
        break;
    case IDOC_ERR_LIMIT:
        fail(r, MHD_HTTP_CONTENT_TOO_LARGE, METRICS_REJECT_TOO_LARGE, "%s", msg);
        break;
    case IDOC_ERR_NOMEM:
        fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, METRICS_REJECT_INTERNAL, "out of memory");
        break;
    default:
        fail(r, MHD_HTTP_BAD_REQUEST, METRICS_REJECT_MALFORMED, "%s", msg);
    }
}

static void feed_parser(struct ingest_req *r, const char *buf, size_t len)
{
    r->body_bytes += len;
    if (r->body_bytes > r->in->o.max_body_bytes) {
        fail(r, MHD_HTTP_CONTENT_TOO_LARGE, METRICS_REJECT_TOO_LARGE,
             "body exceeds the limit of %llu MiB%s",
             (unsigned long long)(r->in->o.max_body_bytes >> 20), r->gzip ? " after gunzip" : "");
        return;
    }
    char err[300];
    int st = idoc_parser_feed(r->parser, buf, len, err, sizeof err);
    if (st != IDOC_OK) parse_failed(r, st, err);
}

static void feed(struct ingest_req *r, const char *data, size_t len)
{
    if (!r->gzip) {
        feed_parser(r, data, len);
        return;
    }
    r->zs.next_in = (unsigned char *)data;
    r->zs.avail_in = (uInt)len;
    while (r->zs.avail_in > 0 && atomic_load(&r->state) == RS_RECEIVING) {
        r->zs.next_out = r->zbuf;
        r->zs.avail_out = INFLATE_CHUNK;
        int zr = inflate(&r->zs, Z_NO_FLUSH);
        size_t got = INFLATE_CHUNK - r->zs.avail_out;
        if (got) feed_parser(r, (const char *)r->zbuf, got);
        if (zr == Z_STREAM_END) {
            /* gzip allows several members back to back. */
            if (inflateReset(&r->zs) != Z_OK) break;
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            fail(r, MHD_HTTP_BAD_REQUEST, METRICS_REJECT_MALFORMED, "corrupt gzip body: %s",
                 r->zs.msg ? r->zs.msg : zError(zr));
        } else if (zr == Z_BUF_ERROR && got == 0) {
            break;
        }
    }
}

/* ---- commit ---- */

static void on_committed(struct queue_batch *b, void *ud)
{
    struct ingest_req *r = ud;
    if (b->status == QUEUE_OK && b->nnew && r->in->o.on_stored) r->in->o.on_stored(r->in->o.on_stored_ud);
    /* Runs on the committer thread after the fsync'd commit (or failure).
     * The state change and MHD's resume hand the request back to the pool
     * thread, which answers. */
    atomic_store(&r->state, RS_COMMITTED);
    MHD_resume_connection(r->conn);
}

static enum MHD_Result start_commit(struct ingest_req *r, struct MHD_Connection *conn)
{
    r->batch.items = r->items;
    r->batch.nitems = r->nitems;
    r->batch.done = on_committed;
    r->batch.ud = r;
    atomic_store(&r->state, RS_COMMITTING);
    /* Suspend BEFORE submitting: the done callback may run at once, and a
     * resume must never precede its suspend. */
    MHD_suspend_connection(conn);
    int st = queue_submit(r->in->o.queue, &r->batch);
    if (st != QUEUE_OK) {
        /* Refused before the committer saw it (queue_submit wrote why into
         * batch.err): shutting down, or data the store cannot key. */
        r->batch.status = st;
        atomic_store(&r->state, RS_COMMITTED);
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static enum MHD_Result answer_commit(struct ingest_req *r, struct MHD_Connection *conn)
{
    struct queue_batch *b = &r->batch;
    if (b->status == QUEUE_ERR_INVALID) {
        /* The IDocs cannot be stored as sent (e.g. a control field longer
         * than the store accepts): retrying will not help, so 400. */
        r->http_status = MHD_HTTP_BAD_REQUEST;
        r->reject = METRICS_REJECT_MALFORMED;
        snprintf(r->reason, sizeof r->reason, "IDoc cannot be stored: %s", b->err);
        return answer_reject(r, conn);
    }
    if (b->status != QUEUE_OK) {
        int quota = b->status == QUEUE_ERR_QUOTA;
        r->http_status = MHD_HTTP_SERVICE_UNAVAILABLE;
        r->reject = quota ? METRICS_REJECT_QUOTA : METRICS_REJECT_INTERNAL;
        snprintf(r->reason, sizeof r->reason, "%s: %s",
                 quota ? "queue full" : b->status == QUEUE_ERR_CLOSED ? "shutting down" : "storage unavailable",
                 b->err);
        return answer_reject(r, conn);
    }
    double secs = elapsed_s(&r->t0);
    metrics_ingest_commit_observe(secs);
    for (size_t i = 0; i < r->nitems; i++)
        if (!r->items[i].duplicate) metrics_idoc_received(r->items[i].mestyp, 1);
    if (b->ndup) metrics_idoc_duplicate(b->ndup);

    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < r->nitems; i++) {
        if (r->items[i].duplicate) continue;
        if (r->items[i].seq < lo) lo = r->items[i].seq;
        if (r->items[i].seq > hi) hi = r->items[i].seq;
    }
    char text[200];
    if (b->nnew)
        snprintf(text, sizeof text, "OK: %zu IDoc%s stored (seq %llu-%llu), %zu duplicate%s", b->nnew,
                 b->nnew == 1 ? "" : "s", (unsigned long long)lo, (unsigned long long)hi, b->ndup,
                 b->ndup == 1 ? "" : "s");
    else
        snprintf(text, sizeof text, "OK: %zu duplicate%s already stored, nothing new", b->ndup,
                 b->ndup == 1 ? "" : "s");
    log_info("ingest: status=200 idocs=%zu new=%zu dup=%zu docnum=%s%s mestyp=%s seq=%llu-%llu "
             "bytes=%llu ms=%.1f",
             r->nitems, b->nnew, b->ndup, r->items[0].docnum, r->nitems > 1 ? "..." : "",
             r->items[0].mestyp, (unsigned long long)(b->nnew ? lo : 0),
             (unsigned long long)(b->nnew ? hi : 0), (unsigned long long)r->wire_bytes, secs * 1e3);
    atomic_store(&r->state, RS_ANSWERED);
    return reply(conn, MHD_HTTP_OK, text, NULL);
}

/* ---- the handler ---- */

static struct ingest_req *req_new(struct ingest *in, struct MHD_Connection *conn)
{
    struct ingest_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->magic = REQ_MAGIC;
    r->in = in;
    r->conn = conn;
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    atomic_fetch_add(&in->active, 1);
    return r;
}

/* First call: decide everything that can be decided from the headers. */
static enum MHD_Result begin(struct ingest *in, struct MHD_Connection *conn, const char *method,
                             void **req_cls)
{
    struct ingest_req *r = req_new(in, conn);
    if (!r) return MHD_NO;
    *req_cls = r;
    if (atomic_load(&in->draining)) {
        fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, METRICS_REJECT_INTERNAL,
             "gateway is shutting down, retry later");
        return answer_reject(r, conn);
    }
    if (strcmp(method, "POST") != 0) {
        fail(r, MHD_HTTP_METHOD_NOT_ALLOWED, METRICS_REJECT_METHOD,
             "method %s not allowed: SAP posts IDocs with POST", method);
        return answer_reject(r, conn);
    }
    if (!check_auth(in, conn)) {
        int had = header(conn, MHD_HTTP_HEADER_AUTHORIZATION) != NULL;
        fail(r, MHD_HTTP_UNAUTHORIZED, METRICS_REJECT_AUTH,
             had ? "wrong user name or password (check the SM59 logon data)"
                 : "authentication required: HTTP Basic (SM59 logon data)");
        return answer_reject(r, conn);
    }
    const char *ct = header(conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    char media[64];
    if (!ct) {
        fail(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, METRICS_REJECT_MEDIA_TYPE,
             "missing Content-Type: expected text/xml, application/xml or application/x-sap.idoc");
        return answer_reject(r, conn);
    }
    if (!media_type_ok(ct, media, sizeof media)) {
        fail(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, METRICS_REJECT_MEDIA_TYPE,
             "unsupported Content-Type '%.60s': expected text/xml, application/xml or application/x-sap.idoc",
             media);
        return answer_reject(r, conn);
    }
    const char *ce = header(conn, MHD_HTTP_HEADER_CONTENT_ENCODING);
    if (ce && *ce && strcasecmp(ce, "identity") != 0) {
        if (strcasecmp(ce, "gzip") == 0 || strcasecmp(ce, "x-gzip") == 0) {
            r->gzip = 1;
        } else {
            fail(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, METRICS_REJECT_MEDIA_TYPE,
                 "unsupported Content-Encoding '%.40s': only gzip", ce);
            return answer_reject(r, conn);
        }
    }
    const char *cl = header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end != cl && n > in->o.max_body_bytes) {
            fail(r, MHD_HTTP_CONTENT_TOO_LARGE, METRICS_REJECT_TOO_LARGE,
                 "body of %llu bytes exceeds the limit of %llu MiB (sap.max_body_mb)", n,
                 (unsigned long long)(in->o.max_body_bytes >> 20));
            return answer_reject(r, conn);
        }
    }
    if (r->gzip) {
        r->zbuf = malloc(INFLATE_CHUNK);
        /* 16 + MAX_WBITS: gzip framing only. */
        if (!r->zbuf || inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK) {
            free(r->zbuf);
            r->zbuf = NULL;
            r->gzip = 0;
            fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, METRICS_REJECT_INTERNAL, "out of memory");
            return answer_reject(r, conn);
        }
    }
    /* A single IDoc's tree costs ~10x its size while it is built; the
     * segment cap bounds that for one huge IDoc (the body cap bounds the
     * rest). 250k segments is far beyond any real PO or master record. */
    struct idoc_limits lim = {in->o.max_idocs, INGEST_MAX_SEGMENTS};
    r->parser = idoc_parser_new(&lim, on_idoc, r);
    if (!r->parser) {
        fail(r, MHD_HTTP_SERVICE_UNAVAILABLE, METRICS_REJECT_INTERNAL, "out of memory");
        return answer_reject(r, conn);
    }
    return MHD_YES;
}

enum MHD_Result ingest_refuse(struct ingest *in, struct MHD_Connection *conn, void **req_cls,
                              unsigned status, int reject, const char *reason)
{
    struct ingest_req *r = req_new(in, conn);
    if (!r) return MHD_NO;
    *req_cls = r;
    fail(r, (int)status, reject, "%s", reason);
    return answer_reject(r, conn);
}

enum MHD_Result ingest_handle(struct ingest *in, struct MHD_Connection *conn, const char *method,
                              const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    struct ingest_req *r = *req_cls;
    if (!r) return begin(in, conn, method, req_cls);

    int st = atomic_load(&r->state);
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        /* Everything offered is consumed: MHD would hand back the rest. */
        *upload_data_size = 0;
        r->wire_bytes += n;
        metrics_ingest_bytes(n);
        if (st == RS_RECEIVING) {
            if (r->wire_bytes > in->o.max_body_bytes) {
                fail(r, MHD_HTTP_CONTENT_TOO_LARGE, METRICS_REJECT_TOO_LARGE,
                     "body exceeds the limit of %llu MiB (sap.max_body_mb)",
                     (unsigned long long)(in->o.max_body_bytes >> 20));
            } else {
                feed(r, upload_data, n);
            }
        } else if (st == RS_DISCARDING && r->wire_bytes > DISCARD_ALLOWANCE(in->o.max_body_bytes)) {
            /* Still sending long after we said no: hang up. */
            log_warn("ingest: closing connection: body still arriving after rejection (%s)", r->reason);
            return MHD_NO;
        }
        return MHD_YES;
    }

    switch (st) {
    case RS_RECEIVING: {
        char err[300];
        int ps = idoc_parser_finish(r->parser, err, sizeof err);
        if (ps != IDOC_OK) {
            parse_failed(r, ps, err);
            return answer_reject(r, conn);
        }
        return start_commit(r, conn);
    }
    case RS_DISCARDING:
        return answer_reject(r, conn);
    case RS_COMMITTED:
        return answer_commit(r, conn);
    default:
        /* COMMITTING: a spurious call while suspended cannot happen; ANSWERED: done. */
        return MHD_YES;
    }
}

int ingest_owns(const void *req)
{
    return req && ((const struct ingest_req *)req)->magic == REQ_MAGIC;
}

void ingest_request_done(void *p)
{
    struct ingest_req *r = p;
    if (!r) return;
    if (r->gzip) inflateEnd(&r->zs);
    free(r->zbuf);
    idoc_parser_free(r->parser);
    for (size_t i = 0; i < r->nitems; i++) free(r->blocks[i]);
    free(r->blocks);
    free(r->items);
    free(r->mscratch);
    atomic_fetch_sub(&r->in->inflight_bytes, r->reserved);
    atomic_fetch_sub(&r->in->active, 1);
    r->magic = 0;
    free(r);
}

void ingest_set_draining(struct ingest *in) { atomic_store(&in->draining, 1); }

size_t ingest_active(const struct ingest *in) { return atomic_load(&((struct ingest *)in)->active); }

struct ingest *ingest_new(const struct ingest_opts *o)
{
    struct ingest *in = calloc(1, sizeof *in);
    if (!in) return NULL;
    in->o = *o;
    if (util_sha256(o->username, strlen(o->username), in->user_hash) ||
        util_sha256(o->password, strlen(o->password), in->pass_hash)) {
        free(in); /* no digest: refuse to start rather than compare zeros */
        return NULL;
    }
    in->o.username = in->o.password = NULL; /* keep only digests */
    return in;
}

void ingest_free(struct ingest *in)
{
    if (!in) return;
    OPENSSL_cleanse(in, sizeof *in);
    free(in);
}
