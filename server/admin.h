/*
 * admin — the operator's HTTP API under /admin/ (CONTRACT.md "Admin
 * operations"), guarded by `Authorization: Bearer <admin.token>` — never
 * SAP's credential. Without admin.token every /admin/ path answers 404.
 *
 *   GET  /admin/queue                 the `queue stats` object
 *   GET  /admin/records?state=S[&after=SEQ][&limit=N]   `queue list` objects as an array
 *   GET  /admin/records/SEQ           one record with its IDoc XML
 *   POST /admin/replay                {"seq": [..]} or {"state": "failed"} -> {"replayed": n}
 *   GET  /admin/runs                  sync runs, newest first (from the delivery engine)
 *   POST /admin/sync                  start a sync run now
 *
 * Threads: handlers run on MHD pool threads; the hooks must be thread-safe.
 */
#ifndef MLC_ADMIN_H
#define MLC_ADMIN_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stddef.h>

struct queue;

struct admin_hooks {
    /* Start a sync run now. Returns 0 and a short message (e.g. "run 12
     * started"), or -1 with the reason. NULL: /admin/sync answers 503. */
    int (*sync_now)(void *ud, char *msg, size_t msglen);
    /* Recent sync runs, newest first, at most `limit`, as a new JSON array.
     * NULL: /admin/runs answers []. */
    cJSON *(*runs)(void *ud, size_t limit);
    void *ud;
};

struct admin;

/* token NULL: /admin/ is disabled (404). The token is kept as a digest. */
struct admin *admin_new(const char *token, struct queue *q, const struct admin_hooks *hooks);
void admin_free(struct admin *a);

/* Late binding of the hooks (the delivery engine starts after HTTP). */
void admin_set_hooks(struct admin *a, const struct admin_hooks *hooks);

enum MHD_Result admin_handle(struct admin *a, struct MHD_Connection *conn, const char *url,
                             const char *method, const char *upload_data, size_t *upload_data_size,
                             void **req_cls);
int admin_owns(const void *req);
void admin_request_done(void *req);

#endif
