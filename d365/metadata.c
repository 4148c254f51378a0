/*
 * d365/metadata — metadata Web API calls (see metadata.h for the requests).
 *
 * Every call is one d365_send_ex on the caller's client: no retries here
 * beyond the client's 401 renewal. A provisioning run is interactive and
 * short; a throttled or failed call is reported with Dataverse's words and
 * the operator runs it again (every step is idempotent: what exists is
 * skipped).
 */
#include "d365/metadata.h"

#include "common/util.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


/* Names that go into paths and filters unquoted or single-quoted. */
static int plain_name(const char *s)
{
    if (!s || !*s || strlen(s) > 128) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

static void op_error(char *err, size_t errlen, const char *what, const struct d365_op *op)
{
    if (op->status)
        util_seterr(err, errlen, "%s: HTTP %d%s%s: %s", what, op->status, op->code[0] ? " " : "", op->code, op->message);
    else
        util_seterr(err, errlen, "%s: %s%s%s", what, op->code, op->code[0] ? ": " : "", op->message);
}

/* GET path -> parsed JSON. 0 ok, 1 HTTP 404, -1 error (err set). */
static int get_json(struct d365_client *c, const char *path, const char *what, cJSON **out, char *err, size_t errlen)
{
    *out = NULL;
    struct d365_op op;
    memset(&op, 0, sizeof op);
    op.method = "GET";
    op.path = path;
    char *body = NULL;
    d365_send_ex(c, &op, NULL, &body);
    if (op.outcome != D365_DONE) {
        op_error(err, errlen, what, &op);
        free(body);
        return op.status == 404 ? 1 : -1;
    }
    *out = body ? cJSON_Parse(body) : NULL;
    free(body);
    if (!*out) {
        util_seterr(err, errlen, "%s: HTTP %d but the answer is not JSON", what, op.status);
        return -1;
    }
    return 0;
}

static char *dup_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

int d365_metadata_logical_name(struct d365_client *c, const char *set, char *out, size_t outlen, char *err,
                               size_t errlen)
{
    if (!plain_name(set)) {
        util_seterr(err, errlen, "'%s' is not an entity set name", set ? set : "");
        return -1;
    }
    char path[512], what[256];
    snprintf(path, sizeof path,
             "EntityDefinitions?$select=LogicalName,EntitySetName&$filter=EntitySetName eq '%s'", set);
    snprintf(what, sizeof what, "looking up the table of entity set '%s'", set);
    cJSON *j;
    int rc = get_json(c, path, what, &j, err, errlen);
    if (rc != 0) return -1;
    const cJSON *row, *arr = cJSON_GetObjectItemCaseSensitive(j, "value");
    rc = 1;
    cJSON_ArrayForEach(row, arr) {
        const cJSON *ln = cJSON_GetObjectItemCaseSensitive(row, "LogicalName");
        const cJSON *es = cJSON_GetObjectItemCaseSensitive(row, "EntitySetName");
        if (!cJSON_IsString(ln) || (cJSON_IsString(es) && strcmp(es->valuestring, set) != 0)) continue;
        snprintf(out, outlen, "%s", ln->valuestring);
        rc = 0;
        break;
    }
    if (rc == 1) util_seterr(err, errlen, "no table has the entity set name '%s'", set);
    cJSON_Delete(j);
    return rc;
}

void d365_metadata_entity_free(struct d365_md_entity *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nattrs; i++) {
        free(e->attrs[i].logical);
        free(e->attrs[i].type);
    }
    for (size_t i = 0; i < e->nkeys; i++) {
        struct d365_md_key *k = &e->keys[i];
        free(k->logical);
        free(k->schema);
        for (size_t a = 0; a < k->nattrs; a++) free(k->attrs[a]);
        free(k->attrs);
        free(k->status);
        free(k->async_job);
    }
    free(e->attrs);
    free(e->keys);
    free(e->logical);
    free(e->set);
    memset(e, 0, sizeof *e);
}

/* EntityKeyIndexStatus comes as the enum member name; accept the number too
 * (0 Pending, 1 InProgress, 2 Active, 3 Failed). */
static char *key_status(const cJSON *v)
{
    static const char *const names[] = {"Pending", "InProgress", "Active", "Failed"};
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsNumber(v) && v->valueint >= 0 && v->valueint < 4) return strdup(names[v->valueint]);
    return strdup("");
}

static int parse_entity(const cJSON *j, struct d365_md_entity *e)
{
    e->logical = dup_str(j, "LogicalName");
    e->set = dup_str(j, "EntitySetName");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(j, "Attributes");
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(j, "Keys");
    int na = cJSON_IsArray(attrs) ? cJSON_GetArraySize(attrs) : 0;
    int nk = cJSON_IsArray(keys) ? cJSON_GetArraySize(keys) : 0;
    e->attrs = calloc((size_t)na + 1, sizeof *e->attrs);
    e->keys = calloc((size_t)nk + 1, sizeof *e->keys);
    if (!e->attrs || !e->keys || !e->logical) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, attrs) {
        struct d365_md_attr *a = &e->attrs[e->nattrs];
        a->logical = dup_str(it, "LogicalName");
        if (!a->logical) continue;
        a->type = dup_str(it, "AttributeType");
        if (!a->type) a->type = strdup("");
        a->custom = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "IsCustomAttribute"));
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(it, "MaxLength");
        if (cJSON_IsNumber(ml)) a->max_length = ml->valueint;
        e->nattrs++;
        if (!a->type) return -1;
    }
    cJSON_ArrayForEach(it, keys) {
        struct d365_md_key *k = &e->keys[e->nkeys];
        const cJSON *ka = cJSON_GetObjectItemCaseSensitive(it, "KeyAttributes");
        int n = cJSON_IsArray(ka) ? cJSON_GetArraySize(ka) : 0;
        k->logical = dup_str(it, "LogicalName");
        k->schema = dup_str(it, "SchemaName");
        k->status = key_status(cJSON_GetObjectItemCaseSensitive(it, "EntityKeyIndexStatus"));
        k->async_job = dup_str(it, "AsyncJob");
        k->attrs = calloc((size_t)n + 1, sizeof *k->attrs);
        e->nkeys++;
        if (!k->attrs || !k->status) return -1;
        const cJSON *x;
        cJSON_ArrayForEach(x, ka) {
            if (!cJSON_IsString(x)) continue;
            if (!(k->attrs[k->nattrs] = strdup(x->valuestring))) return -1;
            k->nattrs++;
        }
    }
    return 0;
}

int d365_metadata_read(struct d365_client *c, const char *logical, struct d365_md_entity *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!plain_name(logical)) {
        util_seterr(err, errlen, "'%s' is not a table logical name", logical ? logical : "");
        return -1;
    }
    char path[1024], what[256];
    snprintf(path, sizeof path,
             "EntityDefinitions(LogicalName='%s')?$select=LogicalName,EntitySetName"
             "&$expand=Attributes($select=LogicalName,AttributeType,IsCustomAttribute),"
             "Keys($select=LogicalName,SchemaName,KeyAttributes,EntityKeyIndexStatus,AsyncJob)",
             logical);
    snprintf(what, sizeof what, "reading the definition of table '%s'", logical);
    cJSON *j;
    int rc = get_json(c, path, what, &j, err, errlen);
    if (rc != 0) return rc;
    if (parse_entity(j, out) != 0) {
        cJSON_Delete(j);
        d365_metadata_entity_free(out);
        util_seterr(err, errlen, "%s: out of memory or an unexpected answer", what);
        return -1;
    }
    cJSON_Delete(j);

    /* MaxLength lives on StringAttributeMetadata: ask through the type cast. */
    snprintf(path, sizeof path,
             "EntityDefinitions(LogicalName='%s')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata"
             "?$select=LogicalName,MaxLength",
             logical);
    snprintf(what, sizeof what, "reading the text column lengths of table '%s'", logical);
    rc = get_json(c, path, what, &j, err, errlen);
    if (rc != 0) {
        d365_metadata_entity_free(out);
        return -1;
    }
    const cJSON *row, *arr = cJSON_GetObjectItemCaseSensitive(j, "value");
    cJSON_ArrayForEach(row, arr) {
        const cJSON *ln = cJSON_GetObjectItemCaseSensitive(row, "LogicalName");
        const cJSON *ml = cJSON_GetObjectItemCaseSensitive(row, "MaxLength");
        if (!cJSON_IsString(ln) || !cJSON_IsNumber(ml)) continue;
        for (size_t i = 0; i < out->nattrs; i++)
            if (strcmp(out->attrs[i].logical, ln->valuestring) == 0) out->attrs[i].max_length = ml->valueint;
    }
    cJSON_Delete(j);
    return 0;
}

const struct d365_md_attr *d365_metadata_attr(const struct d365_md_entity *e, const char *logical)
{
    for (size_t i = 0; e && i < e->nattrs; i++)
        if (strcasecmp(e->attrs[i].logical, logical) == 0) return &e->attrs[i];
    return NULL;
}

const struct d365_md_key *d365_metadata_key_on(const struct d365_md_entity *e, const char *const *attrs, size_t n)
{
    for (size_t i = 0; e && i < e->nkeys; i++) {
        const struct d365_md_key *k = &e->keys[i];
        if (k->nattrs != n) continue;
        size_t hit = 0;
        for (size_t a = 0; a < n; a++)
            for (size_t b = 0; b < k->nattrs; b++)
                if (strcasecmp(attrs[a], k->attrs[b]) == 0) {
                    hit++;
                    break;
                }
        if (hit == n) return k;
    }
    return NULL;
}

/* ---- request bodies ------------------------------------------------------ */

static cJSON *label(const char *text, int lang)
{
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "@odata.type", "Microsoft.Dynamics.CRM.Label");
    cJSON *arr = cJSON_AddArrayToObject(l, "LocalizedLabels");
    cJSON *ll = cJSON_CreateObject();
    cJSON_AddStringToObject(ll, "@odata.type", "Microsoft.Dynamics.CRM.LocalizedLabel");
    cJSON_AddStringToObject(ll, "Label", text ? text : "");
    cJSON_AddNumberToObject(ll, "LanguageCode", lang);
    cJSON_AddItemToArray(arr, ll);
    return l;
}

static cJSON *option(int value, const char *text, int lang)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "Value", value);
    cJSON_AddItemToObject(o, "Label", label(text, lang));
    return o;
}

char *d365_metadata_column_json(const struct d365_md_column *col)
{
    if (!col || !col->schema_name || !*col->schema_name) return NULL;
    if (col->type == D365_MD_STRING && (col->max_length < 1 || col->max_length > 4000)) return NULL;
    if (col->type == D365_MD_MEMO && (col->max_length < 1 || col->max_length > 1048576)) return NULL;
    int lang = col->language > 0 ? col->language : 1033;
    static const struct {
        const char *odata, *type, *type_name;
    } T[] = {
        [D365_MD_STRING] = {"StringAttributeMetadata", "String", "StringType"},
        [D365_MD_MEMO] = {"MemoAttributeMetadata", "Memo", "MemoType"},
        [D365_MD_BOOLEAN] = {"BooleanAttributeMetadata", "Boolean", "BooleanType"},
        [D365_MD_DECIMAL] = {"DecimalAttributeMetadata", "Decimal", "DecimalType"},
        [D365_MD_INTEGER] = {"IntegerAttributeMetadata", "Integer", "IntegerType"},
        [D365_MD_DATE] = {"DateTimeAttributeMetadata", "DateTime", "DateTimeType"},
    };
    if ((unsigned)col->type >= sizeof T / sizeof T[0]) return NULL;
    char odata[96];
    snprintf(odata, sizeof odata, "Microsoft.Dynamics.CRM.%s", T[col->type].odata);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "@odata.type", odata);
    cJSON_AddStringToObject(j, "AttributeType", T[col->type].type);
    cJSON_AddItemToObject(j, "AttributeTypeName", cJSON_CreateObject());
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(j, "AttributeTypeName"), "Value", T[col->type].type_name);
    cJSON_AddStringToObject(j, "SchemaName", col->schema_name);
    cJSON_AddItemToObject(j, "DisplayName", label(col->display_name ? col->display_name : col->schema_name, lang));
    if (col->description) cJSON_AddItemToObject(j, "Description", label(col->description, lang));
    cJSON *rl = cJSON_AddObjectToObject(j, "RequiredLevel");
    cJSON_AddStringToObject(rl, "Value", "None");
    cJSON_AddBoolToObject(rl, "CanBeChanged", 1);
    cJSON_AddStringToObject(rl, "ManagedPropertyLogicalName", "canmodifyrequirementlevelsettings");
    switch (col->type) {
    case D365_MD_STRING:
        cJSON_AddNumberToObject(j, "MaxLength", col->max_length);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "FormatName"), "Value", "Text");
        break;
    case D365_MD_MEMO:
        cJSON_AddNumberToObject(j, "MaxLength", col->max_length);
        cJSON_AddStringToObject(j, "Format", "TextArea");
        break;
    case D365_MD_BOOLEAN: {
        cJSON_AddFalseToObject(j, "DefaultValue");
        cJSON *os = cJSON_AddObjectToObject(j, "OptionSet");
        cJSON_AddItemToObject(os, "TrueOption", option(1, "Yes", lang));
        cJSON_AddItemToObject(os, "FalseOption", option(0, "No", lang));
        cJSON_AddStringToObject(os, "OptionSetType", "Boolean");
        break;
    }
    case D365_MD_DECIMAL:
        /* the platform's range for decimals; 5 places like quantities */
        cJSON_AddNumberToObject(j, "Precision", 5);
        cJSON_AddNumberToObject(j, "MinValue", -100000000000.0);
        cJSON_AddNumberToObject(j, "MaxValue", 100000000000.0);
        break;
    case D365_MD_INTEGER:
        cJSON_AddStringToObject(j, "Format", "None");
        cJSON_AddNumberToObject(j, "MinValue", -2147483648.0);
        cJSON_AddNumberToObject(j, "MaxValue", 2147483647.0);
        break;
    case D365_MD_DATE:
        cJSON_AddStringToObject(j, "Format", "DateOnly");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "DateTimeBehavior"), "Value", "DateOnly");
        break;
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

char *d365_metadata_key_json(const char *schema_name, const char *display_name, const char *const *attrs, size_t n,
                             int language)
{
    if (!schema_name || !*schema_name || !attrs || n == 0) return NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "@odata.type", "Microsoft.Dynamics.CRM.EntityKeyMetadata");
    cJSON_AddStringToObject(j, "SchemaName", schema_name);
    cJSON_AddItemToObject(j, "DisplayName", label(display_name ? display_name : schema_name,
                                                  language > 0 ? language : 1033));
    cJSON *ka = cJSON_AddArrayToObject(j, "KeyAttributes");
    for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(ka, cJSON_CreateString(attrs[i]));
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- writes -------------------------------------------------------------- */

static int post(struct d365_client *c, const char *path, const char *body, const char *solution, const char *what,
                char *err, size_t errlen)
{
    char hdr[256];
    const char *headers[2] = {NULL, NULL};
    if (solution && *solution) {
        if (!plain_name(solution)) {
            util_seterr(err, errlen, "%s: '%s' is not a solution unique name", what, solution);
            return -1;
        }
        snprintf(hdr, sizeof hdr, "MSCRM.SolutionUniqueName: %s", solution);
        headers[0] = hdr;
    }
    struct d365_op op;
    memset(&op, 0, sizeof op);
    op.method = "POST";
    op.path = path;
    op.body = body;
    d365_send_ex(c, &op, headers, NULL);
    if (op.outcome != D365_DONE) {
        op_error(err, errlen, what, &op);
        return -1;
    }
    return 0;
}

int d365_metadata_create_column(struct d365_client *c, const char *logical, const struct d365_md_column *col,
                                const char *solution, char *err, size_t errlen)
{
    char what[256];
    snprintf(what, sizeof what, "creating column %s on table '%s'", col && col->schema_name ? col->schema_name : "?",
             logical ? logical : "?");
    if (!plain_name(logical) || !col || !plain_name(col->schema_name)) {
        util_seterr(err, errlen, "%s: invalid table or column name", what);
        return -1;
    }
    char *body = d365_metadata_column_json(col);
    if (!body) {
        util_seterr(err, errlen, "%s: invalid column definition (type, length) or out of memory", what);
        return -1;
    }
    char path[256];
    snprintf(path, sizeof path, "EntityDefinitions(LogicalName='%s')/Attributes", logical);
    int rc = post(c, path, body, solution, what, err, errlen);
    free(body);
    return rc;
}

int d365_metadata_create_key(struct d365_client *c, const char *logical, const char *schema_name,
                             const char *display_name, const char *const *attrs, size_t n, int language,
                             const char *solution, char *err, size_t errlen)
{
    char what[256];
    snprintf(what, sizeof what, "creating alternate key %s on table '%s'", schema_name ? schema_name : "?",
             logical ? logical : "?");
    if (!plain_name(logical) || !plain_name(schema_name)) {
        util_seterr(err, errlen, "%s: invalid table or key name", what);
        return -1;
    }
    char *body = d365_metadata_key_json(schema_name, display_name, attrs, n, language);
    if (!body) {
        util_seterr(err, errlen, "%s: no key columns, or out of memory", what);
        return -1;
    }
    char path[256];
    snprintf(path, sizeof path, "EntityDefinitions(LogicalName='%s')/Keys", logical);
    int rc = post(c, path, body, solution, what, err, errlen);
    free(body);
    return rc;
}

/* ---- waiting for the index ----------------------------------------------- */


static void sleep_s(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
}


void d365_metadata_key_failure(struct d365_client *c, const struct d365_md_key *k, char *err, size_t errlen)
{
    const char *hint = "duplicate values in the key column(s) are the usual cause; fix the data, then "
                       "reactivate the key (ReactivateEntityKey) or delete it and run setup again";
    if (!k || !d365_is_guid(k->async_job)) {
        util_seterr(err, errlen, "index creation failed (no system job recorded); %s", hint);
        return;
    }
    char path[256], e2[256];
    snprintf(path, sizeof path, "asyncoperations(%s)?$select=message,friendlymessage", k->async_job);
    cJSON *j;
    if (get_json(c, path, "reading the index job", &j, e2, sizeof e2) != 0) {
        util_seterr(err, errlen, "index creation failed (system job %s: %s); %s", k->async_job, e2, hint);
        return;
    }
    const cJSON *fm = cJSON_GetObjectItemCaseSensitive(j, "friendlymessage");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    const char *why = cJSON_IsString(fm) && *fm->valuestring ? fm->valuestring
                    : cJSON_IsString(m) && *m->valuestring   ? m->valuestring
                                                             : "no message";
    util_seterr(err, errlen, "index creation failed: %s (system job %s); %s", why, k->async_job, hint);
    cJSON_Delete(j);
}

int d365_metadata_wait_key(struct d365_client *c, const char *logical, const char *const *attrs, size_t n,
                           double timeout_s, double *waited, char *err, size_t errlen)
{
    double t0 = util_mono_s(), pause = 0.25;
    char last[32] = "";
    if (waited) *waited = 0;
    for (;;) {
        struct d365_md_entity e;
        int rc = d365_metadata_read(c, logical, &e, err, errlen);
        if (waited) *waited = util_mono_s() - t0;
        if (rc != 0) {
            if (rc == 1) util_seterr(err, errlen, "table '%s' not found", logical);
            return -1;
        }
        const struct d365_md_key *k = d365_metadata_key_on(&e, attrs, n);
        if (!k) {
            d365_metadata_entity_free(&e);
            util_seterr(err, errlen, "no alternate key on %s(%s%s) any more", logical, n ? attrs[0] : "", n > 1 ? ",..." : "");
            return -1;
        }
        snprintf(last, sizeof last, "%s", k->status);
        if (strcasecmp(k->status, "Active") == 0) {
            d365_metadata_entity_free(&e);
            return 0;
        }
        if (strcasecmp(k->status, "Failed") == 0) {
            d365_metadata_key_failure(c, k, err, errlen);
            d365_metadata_entity_free(&e);
            return -1;
        }
        d365_metadata_entity_free(&e);
        double spent = util_mono_s() - t0;
        if (spent >= timeout_s) {
            util_seterr(err, errlen, "the key's index is still %s after %.0f s (large tables take longer: run setup "
                   "again later, it waits for keys that are not active yet)", last[0] ? last : "not active", spent);
            return -1;
        }
        sleep_s(pause < timeout_s - spent ? pause : timeout_s - spent);
        pause = pause * 1.5 < 5 ? pause * 1.5 : 5;
    }
}
