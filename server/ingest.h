/*
 * ingest — POST <sap.path>: what an SAP "XML HTTP" port calls.
 *
 * One request = one IDoc-XML document with 1..N IDocs. The request is
 * authenticated, its body streamed through gunzip (optional) into the IDoc
 * push parser as it arrives, every IDoc routed by the mapping (422 for types
 * nobody handles), and the whole packet committed to the queue in one group
 * commit before the answer: 200 only when every IDoc is durably stored (or
 * was already stored: a resend). Anything else commits nothing.
 *
 * Threads: ingest_handle runs on libmicrohttpd's pool threads; the queue's
 * committer thread resumes the suspended connection. The context is shared
 * and read-only after ingest_new except for atomics.
 */
#ifndef MLC_INGEST_H
#define MLC_INGEST_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

struct queue;
struct mapref;

struct ingest_opts {
    const char *username, *password;  /* SAP's Basic credentials */
    uint64_t max_body_bytes;          /* on the wire and after gunzip */
    uint64_t max_inflight_bytes;      /* all requests together; above: 503 */
    size_t max_idocs;                 /* per request */
    struct queue *queue;
    struct mapref *mapping;           /* the mapping in use (reloadable) */
    /* Called (committer thread) after a commit stored new records. */
    void (*on_stored)(void *ud);
    void *on_stored_ud;
};

struct ingest;

struct ingest *ingest_new(const struct ingest_opts *opts);
void ingest_free(struct ingest *in);

/* The MHD access handler for the SAP path (any method). */
enum MHD_Result ingest_handle(struct ingest *in, struct MHD_Connection *conn,
                              const char *method, const char *upload_data,
                              size_t *upload_data_size, void **req_cls);

/* Refuse a request to the SAP path at its first callback, before
 * ingest_handle sees it (http.c's client certificate check): one text/plain
 * line `reason` with `status`, counted in mlc_requests_rejected_total under
 * `reject` (enum metrics_reject) and logged like ingest's own refusals. Sets
 * *req_cls: later callbacks (the body, which is dropped) and completion go
 * to ingest_handle / ingest_request_done as usual. */
enum MHD_Result ingest_refuse(struct ingest *in, struct MHD_Connection *conn, void **req_cls,
                              unsigned status, int reject, const char *reason);

/* MHD_OPTION_NOTIFY_COMPLETED for requests ingest_handle created. */
void ingest_request_done(void *req);

/* From now on new requests are answered 503 "shutting down". */
void ingest_set_draining(struct ingest *in);

/* Requests between their first callback and completion (for shutdown). */
size_t ingest_active(const struct ingest *in);

/* Is `req` (a *req_cls) one of ingest's? */
int ingest_owns(const void *req);

#endif
