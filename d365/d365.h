/*
 * d365 — delivery to Microsoft Dataverse (Dynamics 365 Sales): shared types.
 *
 * The module has four parts, each a .c/.h pair:
 *   d365/auth.h      token manager (OAuth2 client credentials: secret or
 *                    certificate JWT assertion), one cached token per process
 *   d365/webapi.h    Web API client (one per worker thread): single requests,
 *                    $batch, cached lookups; fills each operation's outcome
 *   d365/batch.h     the $batch multipart wire format (pure: build + parse)
 *   d365/governor.h  throttle governor (one per process / Dataverse user):
 *                    Retry-After windows, adaptive concurrency, back-off
 *
 * This header holds what they share: the operation a caller wants done and
 * the outcome the module fills in. An operation is plain data the caller owns
 * (strings are borrowed for the duration of a call and never freed here);
 * the outcome fields are fixed-size buffers, so nothing in a d365_op is ever
 * allocated by the module and nothing needs freeing.
 *
 * Process set-up the module relies on (done by main, before threads start):
 * curl_global_init(CURL_GLOBAL_DEFAULT) and SIGPIPE ignored (libcurl runs
 * with CURLOPT_NOSIGNAL, and OpenSSL can raise SIGPIPE on a dead socket).
 *
 * Dependencies: common/log.h and common/metrics.h only.
 */
#ifndef MLC_D365_H
#define MLC_D365_H

#include <stddef.h>

/* What the caller should do with a record after an operation. */
enum d365_outcome {
    D365_PENDING = 0, /* not sent yet (initial value) */
    D365_DONE,        /* 2xx; a DELETE answered 404 (already gone) */
    D365_RETRY,       /* 429, 408, 502/503/504, transport error, token not
                       * available, bind target not there yet (0x80060891),
                       * a batch part that was never processed: send again
                       * later (not before retry_after) */
    D365_FAILED,      /* permanent: every other 4xx, 500 with a non-transient
                       * Dataverse code; code/message say why */
};

#define D365_CODE_MAX    64    /* Dataverse error code, "0x80060891" */
#define D365_MESSAGE_MAX 1024  /* Dataverse error message (truncated on a UTF-8 boundary) */

/* Batch limits (Dataverse allows at most 1,000 requests per $batch). */
#define D365_BATCH_DEFAULT 100
#define D365_BATCH_MAX     1000

/* Dataverse error codes the module treats specially. */
#define D365_CODE_KEY_NOT_FOUND   "0x80060891" /* RecordNotFoundByEntityKey: bind target missing */
#define D365_CODE_LIMIT_REQUESTS  "0x80072322" /* service protection: number of requests */
#define D365_CODE_LIMIT_TIME      "0x80072321" /* service protection: execution time */
#define D365_CODE_LIMIT_CONCURRENT "0x80072326" /* service protection: concurrent requests */

/*
 * One Web API operation. Inputs are set by the caller; outputs are filled by
 * d365_send_one / d365_batch_send (and cleared by them first).
 */
struct d365_op {
    /* --- in (borrowed; must stay valid during the call) */
    const char *method;        /* "PATCH", "POST", "DELETE", "GET" */
    const char *path;          /* relative to /api/data/v9.2/, e.g.
                                * "accounts(mlc_sapvendorid='0000100003')";
                                * inside a change set "$1" refers to the op
                                * with content_id "1" (sent as is) */
    const char *body;          /* JSON text, or NULL (DELETE, GET) */
    unsigned changeset;        /* 0: independent. Ops with the same non-zero
                                * id form one atomic change set in a batch
                                * (they must be adjacent in the array) */
    const char *content_id;    /* optional Content-ID inside a change set */
    const char *if_match;      /* optional: "*" = update only */
    const char *if_none_match; /* optional: "*" = create only (default header
                                * "If-None-Match: null" is sent otherwise) */
    void *user;                /* caller's, untouched */

    /* --- out */
    enum d365_outcome outcome;
    int status;                /* HTTP status of this op (a part's status in a
                                * batch); 0 = transport error / not processed */
    int batch_level;           /* 1: the outcome came from the batch as a whole
                                * (outer error, unparsable response, part never
                                * processed), not from this op's own response */
    double retry_after;        /* seconds the server asked to wait (>= 0) */
    char code[D365_CODE_MAX];  /* Dataverse error.code verbatim ("" if none);
                                * "transport", "auth" or "not_processed" for
                                * errors that did not come from Dataverse */
    char message[D365_MESSAGE_MAX]; /* Dataverse error.message verbatim, or why */
};

/* "pending", "done", "retry", "failed". */
const char *d365_outcome_name(enum d365_outcome o);

/*
 * The outcome table (pure; d365/webapi.c):
 *   2xx                                 DONE
 *   404 on DELETE                       DONE (already gone)
 *   code 0x80060891 (any status)        RETRY (bind target not there yet)
 *   service-protection codes, 429       RETRY (throttled)
 *   408, 502, 503, 504, 0 (transport)   RETRY
 *   401                                 RETRY (only reached after the one
 *                                       renewal + retry also got 401: an
 *                                       identity problem, not the record's)
 *   500 with a transient code (SQL error 0x80044150) or no Dataverse code
 *                                       RETRY
 *   other 5xx except 501                RETRY
 *   everything else (4xx, 500 with a Dataverse code, 501)   FAILED
 * method may be NULL; code may be NULL or "".
 */
enum d365_outcome d365_classify(const char *method, int status, const char *code);

/* Clear the output fields of ops[0..n-1]. */
void d365_op_reset(struct d365_op *ops, size_t n);

/* 1 if s is a GUID in Dataverse's text form (8-4-4-4-12 hex digits). */
int d365_is_guid(const char *s);

#endif
