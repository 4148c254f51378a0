/*
 * idoc_json.c — the `parse` JSON object of one IDoc (see idoc_json.h).
 * Recursion depth follows segment nesting, which the parser caps at 256.
 */
#include "idoc/idoc_json.h"

#include <stddef.h>

static cJSON *fields_object(const struct idoc_field *f, size_t n)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *v = cJSON_CreateString(f[i].value != NULL ? f[i].value : "");
        if (v == NULL || !cJSON_AddItemToObject(o, f[i].name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

static cJSON *segments_array(const struct idoc_segment *s, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            goto fail;
        }
        cJSON *name = cJSON_CreateString(s[i].name);
        if (name == NULL || !cJSON_AddItemToObject(o, "segment", name)) {
            cJSON_Delete(name);
            goto fail;
        }
        cJSON *fields = fields_object(s[i].fields, s[i].nfields);
        if (fields == NULL || !cJSON_AddItemToObject(o, "fields", fields)) {
            cJSON_Delete(fields);
            goto fail;
        }
        cJSON *children = segments_array(s[i].children, s[i].nchildren);
        if (children == NULL || !cJSON_AddItemToObject(o, "children", children)) {
            cJSON_Delete(children);
            goto fail;
        }
    }
    return a;
fail:
    cJSON_Delete(a);
    return NULL;
}

cJSON *idoc_json(const struct idoc *doc)
{
    if (doc == NULL)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON *control = fields_object(doc->control, doc->ncontrol);
    if (control == NULL || !cJSON_AddItemToObject(o, "control", control)) {
        cJSON_Delete(control);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *segments = segments_array(doc->segments, doc->nsegments);
    if (segments == NULL || !cJSON_AddItemToObject(o, "segments", segments)) {
        cJSON_Delete(segments);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
