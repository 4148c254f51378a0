/*
 * d365/batch — the OData $batch wire format (pure: no network, no globals).
 *
 * Building (dataverse.md §4): ops with changeset 0 become top-level parts;
 * adjacent ops sharing a non-zero changeset id become one nested
 * multipart/mixed change set (atomic). Lines end in CRLF. Each part:
 *
 *   --batch_<id>
 *   Content-Type: application/http
 *   Content-Transfer-Encoding: binary
 *   [Content-ID: <id>]                       (ops that have one)
 *
 *   PATCH <service_path><path> HTTP/1.1      (path %-escaped; "$n" not prefixed)
 *   Content-Type: application/json; type=entry   (only with a body)
 *   [If-Match: ..] [If-None-Match: ..]
 *
 *   <body>                                   (nothing when there is none)
 *
 * change-set boundaries are "changeset_<id>_<k>" (k = 1, 2, ... per set).
 *
 * Parsing: the response's parts are matched to the request's units in order
 * (a unit = an independent op or a whole change set). A change set answers
 * either with a nested multipart (one part per op; matched by echoed
 * Content-ID when the op has one, else by position) or — when it failed and
 * was rolled back — with a single response that applies to every op of the
 * set (or a nested multipart with only the failing op's response: the other
 * ops then share that failure, "rolled back with its change set: ...").
 * Units with no response part (processing stopped, e.g. at a failed change
 * set, which continue-on-error does not skip) get RETRY
 * "not_processed". Each answered op gets status, outcome (d365_classify),
 * error code/message verbatim from the part's JSON body, and Retry-After.
 *
 * Ownership: build returns a malloc'd buffer the caller frees; parse only
 * writes into the ops' output fields.
 */
#ifndef MLC_D365_BATCH_H
#define MLC_D365_BATCH_H

#include <stddef.h>

#include "d365/d365.h"

/* Check that ops can be one batch: 1..D365_BATCH_MAX ops, method and path set,
 * change sets adjacent and without GET, Content-IDs unique. 0 or -1 + err. */
int d365_batch_validate(const struct d365_op *ops, size_t n, char *err, size_t errlen);

/* Build the request body. service_path is the absolute path of the service
 * root with a trailing slash ("/api/data/v9.2/"); batch_id makes the boundary
 * "batch_<batch_id>". On success *out (malloc'd, NUL-terminated) and *outlen.
 * Returns 0 or -1 + err (validation). */
int d365_batch_build(const char *service_path, const char *batch_id, const struct d365_op *ops,
                     size_t n, char **out, size_t *outlen, char *err, size_t errlen);

/* Parse a $batch response (content_type = the response's Content-Type with
 * its boundary) into the ops' outputs (which must have been reset).
 * Returns the number of ops that got an outcome from their own part, or -1
 * + err if the body is not a multipart response (ops then untouched). */
int d365_batch_parse(const char *content_type, const char *body, size_t len,
                     struct d365_op *ops, size_t n, char *err, size_t errlen);

/* Append `path` to a URL or request line, percent-encoding what may not
 * appear there raw: space, control and non-ASCII bytes, and " # % < > \ ^ `
 * { | }. Everything else (incl. ' ( ) = , ? & $ /) is kept, so OData paths
 * like accounts(mlc_sapvendorid='0000100003')?$select=accountid pass as
 * they are. Returns a malloc'd string (caller frees) or NULL on OOM. */
char *d365_path_escape(const char *path);

/* Fill op's code/message from a Dataverse error body ({"error":{"code",
 * "message"}}); leaves them empty if the body is not one. */
void d365_error_from_json(struct d365_op *op, const char *body, size_t len);

#endif
