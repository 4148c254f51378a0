/*
 * record_json — queue records and stats as JSON objects.
 * Timestamps are unix milliseconds and an ISO-8601 UTC string side by side:
 * the first for scripts, the second for people.
 */
#include "server/record_json.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void add_time(cJSON *o, const char *name, int64_t ms)
{
    if (ms <= 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char full[48];
    snprintf(full, sizeof full, "%s.%03dZ", buf, (int)(ms % 1000));
    cJSON_AddStringToObject(o, name, full);
}

cJSON *record_json(const struct queue_record *r, int with_xml)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "seq", (double)r->seq);
    cJSON_AddStringToObject(o, "docnum", r->docnum ? r->docnum : "");
    cJSON_AddStringToObject(o, "mestyp", r->mestyp ? r->mestyp : "");
    cJSON_AddStringToObject(o, "idoctyp", r->idoctyp ? r->idoctyp : "");
    if (r->cimtyp && r->cimtyp[0]) cJSON_AddStringToObject(o, "cimtyp", r->cimtyp);
    cJSON_AddStringToObject(o, "mandt", r->mandt ? r->mandt : "");
    cJSON_AddStringToObject(o, "sndprn", r->sndprn ? r->sndprn : "");
    /* "key" is the first business key (CONTRACT.md), "keys" all of them. */
    const char *keys = r->keys ? r->keys : "";
    const char *sp = keys;
    while (*sp && *sp != ' ') sp++;
    char first[256];
    snprintf(first, sizeof first, "%.*s", (int)(sp - keys), keys);
    cJSON_AddStringToObject(o, "key", first);
    cJSON_AddStringToObject(o, "keys", keys);
    cJSON_AddStringToObject(o, "state", queue_state_name(r->state));
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    if (r->error && r->error[0]) cJSON_AddStringToObject(o, "error", r->error);
    else cJSON_AddNullToObject(o, "error");
    add_time(o, "received", r->received_ms);
    add_time(o, "updated", r->updated_ms);
    add_time(o, "next_attempt", r->next_attempt_ms);
    if (with_xml && r->xml) cJSON_AddStringToObject(o, "xml", r->xml);
    return o;
}

cJSON *record_json_stats(const struct queue_stats *st)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (int s = 0; s < QUEUE_NSTATES; s++) cJSON_AddNumberToObject(o, queue_state_name(s), (double)st->count[s]);
    cJSON_AddNumberToObject(o, "used_bytes", (double)st->used_bytes);
    cJSON_AddNumberToObject(o, "quota_bytes", (double)st->quota_bytes);
    cJSON_AddNumberToObject(o, "next_seq", (double)st->next_seq);
    return o;
}

cJSON *record_json_audit(const struct queue_audit *a)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "id", (double)a->id);
    add_time(o, "time", a->time_ms);
    cJSON_AddStringToObject(o, "kind", a->kind ? a->kind : "");
    if (a->seq) cJSON_AddNumberToObject(o, "seq", (double)a->seq);
    if (a->docnum) cJSON_AddStringToObject(o, "docnum", a->docnum);
    if (a->key) cJSON_AddStringToObject(o, "key", a->key);
    if (a->operation) cJSON_AddStringToObject(o, "operation", a->operation);
    if (a->http_status || (a->kind && strcmp(a->kind, "attempt") == 0))
        cJSON_AddNumberToObject(o, "status", a->http_status);
    if (a->error_code) cJSON_AddStringToObject(o, "code", a->error_code);
    if (a->message) cJSON_AddStringToObject(o, "message", a->message);
    if (a->duration_ms) cJSON_AddNumberToObject(o, "duration_ms", a->duration_ms);
    if (a->run_id) cJSON_AddNumberToObject(o, "run", (double)a->run_id);
    return o;
}
