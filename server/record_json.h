/*
 * record_json — the JSON shapes of queue records and stats, shared by the
 * `ml-connector queue` command and the /admin/ endpoints so both print the
 * same objects (CONTRACT.md: seq, docnum, mestyp, key, state, attempts, error).
 */
#ifndef MLC_RECORD_JSON_H
#define MLC_RECORD_JSON_H

#include <cjson/cJSON.h>

#include "queue/queue.h"

/* A new cJSON object; caller owns it. with_xml adds "xml" (the IDoc). */
cJSON *record_json(const struct queue_record *r, int with_xml);
cJSON *record_json_stats(const struct queue_stats *st);
/* One audit entry (kind, time, seq, docnum, key, operation, status, code,
 * message, duration_ms, run). */
cJSON *record_json_audit(const struct queue_audit *a);

#endif
