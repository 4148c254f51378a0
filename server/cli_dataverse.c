/*
 * cli_dataverse — `ml-connector dataverse setup|check -c FILE`: provision and
 * verify what the mapping needs in Dataverse.
 *
 *   setup [--solution NAME] [--language LCID] [--timeout SECONDS]
 *       creates the custom columns (prefix mlc_) and the alternate keys the
 *       mapping writes and upserts by, then waits until every key's index is
 *       Active. Idempotent: what exists is left alone; a run that finds
 *       everything says "no changes: N columns and M keys already present".
 *   check
 *       acquires a token, verifies every column the mapping writes (custom
 *       ones with their type), every key (present and Active), and the
 *       lookups (the rows a lookup by a constant needs, e.g. the price list
 *       of orders_target salesorder/quote; for lookups by IDoc values such
 *       as currencies, that the table can be read, listing what it holds).
 *
 * What is needed comes from the mapping file (mapping_schema), not from a
 * list here: a site that adds a column or a route gets it provisioned.
 * Names: a custom column's SchemaName is its logical name with the words
 * capitalised (mlc_sapvendorid -> mlc_SapVendorId, "SAP Vendor ID") when the
 * name splits into known words, else the logical name itself; a key is named
 * mlc_<table>_<Column> ("mlc_account_SapVendorId").
 *
 * Output: one line per item on stdout (setup: "+" created, "=" present,
 * "!" warning, "x" failed; check: ✓ / ✗ / !), a closing summary line.
 * Exit: 0 success / all good; 1 a Dataverse call failed or (check) a
 * problem was found; 2 usage or configuration error.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>

#include "common/log.h"
#include "config/config.h"
#include "config/mapping.h"
#include "d365/auth.h"
#include "d365/metadata.h"
#include "d365/webapi.h"
#include "server/cli.h"

#define CUSTOM_PREFIX "mlc_"
#define DEFAULT_TEXT_LENGTH 100
#define STRING_MAX 4000

/* ---- the mapping's schema, copied -------------------------------------- */

struct item {
    char *entity, *column, *target, *target_key, *match, *match_value;
    int kind, max_length;
};

struct plan {
    struct item *v;
    size_t n, cap;
};

static char *sdup(const char *s) { return s ? strdup(s) : NULL; }

static int plan_cb(const struct mapping_schema_item *it, void *ud)
{
    struct plan *p = ud;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct item *v = realloc(p->v, cap * sizeof *v);
        if (!v) return -1;
        p->v = v;
        p->cap = cap;
    }
    struct item *x = &p->v[p->n++];
    memset(x, 0, sizeof *x);
    x->entity = sdup(it->entity);
    x->column = sdup(it->column);
    x->target = sdup(it->target);
    x->target_key = sdup(it->target_key);
    x->match = sdup(it->match);
    x->match_value = sdup(it->match_value);
    x->kind = it->kind;
    x->max_length = it->max_length;
    return x->entity && x->column ? 0 : -1;
}

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct item *x = &p->v[i];
        free(x->entity);
        free(x->column);
        free(x->target);
        free(x->target_key);
        free(x->match);
        free(x->match_value);
    }
    free(p->v);
    memset(p, 0, sizeof *p);
}

static int is_custom(const char *column) { return strncasecmp(column, CUSTOM_PREFIX, sizeof CUSTOM_PREFIX - 1) == 0; }

/* Entity sets in first-seen order (the ones columns are written to or keys
 * addressed in; lookup targets by id are reference data, checked apart). */
static size_t entity_sets(const struct plan *p, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        size_t k = 0;
        while (k < n && strcmp(out[k], p->v[i].entity) != 0) k++;
        if (k == n && n < max) out[n++] = p->v[i].entity;
    }
    return n;
}

/* ---- names --------------------------------------------------------------- */

static const struct {
    const char *w, *pascal, *display;
} WORDS[] = {
    {"sap", "Sap", "SAP"},         {"vendor", "Vendor", "Vendor"},   {"customer", "Customer", "Customer"},
    {"contact", "Contact", "Contact"}, {"payment", "Payment", "Payment"}, {"terms", "Terms", "Terms"},
    {"term", "Term", "Term"},      {"number", "Number", "Number"},   {"item", "Item", "Item"},
    {"id", "Id", "ID"},            {"is", "Is", "Is"},               {"po", "Po", "PO"},
    {"partner", "Partner", "Partner"}, {"order", "Order", "Order"},  {"line", "Line", "Line"},
    {"key", "Key", "Key"},         {"date", "Date", "Date"},         {"code", "Code", "Code"},
    {"name", "Name", "Name"},      {"doc", "Doc", "Doc"},            {"type", "Type", "Type"},
    {"status", "Status", "Status"}, {"material", "Material", "Material"}, {"plant", "Plant", "Plant"},
    {"company", "Company", "Company"}, {"group", "Group", "Group"},  {"account", "Account", "Account"},
    {"client", "Client", "Client"}, {"system", "System", "System"}, {"idoc", "Idoc", "IDoc"},
    {"docnum", "DocNum", "DocNum"}, {"blocked", "Blocked", "Blocked"}, {"deleted", "Deleted", "Deleted"},
    {"flag", "Flag", "Flag"},      {"region", "Region", "Region"},   {"country", "Country", "Country"},
    {"tax", "Tax", "Tax"},         {"currency", "Currency", "Currency"}, {"amount", "Amount", "Amount"},
    {"quantity", "Quantity", "Quantity"}, {"price", "Price", "Price"}, {"unit", "Unit", "Unit"},
};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

/* Split s (lower-case letters/digits) into known words, fewest words first;
 * fills idx[] with word indexes, returns the count or -1. */
static int split_words(const char *s, int *idx, int maxw)
{
    size_t n = strlen(s);
    if (n == 0 || n > 120) return -1;
    int best[128], from[128], word[128];
    for (size_t i = 0; i <= n; i++) best[i] = -1;
    best[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (best[i] < 0) continue;
        for (size_t w = 0; w < NWORDS; w++) {
            size_t l = strlen(WORDS[w].w);
            if (i + l > n || strncmp(s + i, WORDS[w].w, l) != 0) continue;
            if (best[i + l] < 0 || best[i] + 1 < best[i + l]) {
                best[i + l] = best[i] + 1;
                from[i + l] = (int)i;
                word[i + l] = (int)w;
            }
        }
    }
    if (best[n] < 0 || best[n] > maxw) return -1;
    int k = best[n];
    for (size_t i = n; i > 0; i = (size_t)from[i]) idx[--k] = word[i];
    return best[n];
}

/* mlc_sapvendorid -> schema "mlc_SapVendorId", pascal "SapVendorId",
 * display "SAP Vendor ID". Unknown words: the name as it is. */
static void column_names(const char *column, char *schema, size_t sl, char *pascal, size_t pl, char *display,
                         size_t dl)
{
    const char *rest = column + sizeof CUSTOM_PREFIX - 1;
    int idx[32];
    int n = is_custom(column) ? split_words(rest, idx, 32) : -1;
    if (n <= 0) {
        snprintf(schema, sl, "%s", column);
        snprintf(pascal, pl, "%s", is_custom(column) ? rest : column);
        snprintf(display, dl, "%s", column);
        return;
    }
    size_t p = 0, d = 0;
    pascal[0] = display[0] = 0;
    for (int i = 0; i < n; i++) {
        p += (size_t)snprintf(pascal + p, p < pl ? pl - p : 0, "%s", WORDS[idx[i]].pascal);
        d += (size_t)snprintf(display + d, d < dl ? dl - d : 0, "%s%s", i ? " " : "", WORDS[idx[i]].display);
        if (p >= pl || d >= dl) break;
    }
    snprintf(schema, sl, "%.4s%s", CUSTOM_PREFIX, pascal);
}

/* ---- kinds and Dataverse column types ------------------------------------- */

static int type_fits(int kind, const char *type)
{
    static const char *const text[] = {"String", "Memo", NULL};
    static const char *const key[] = {"String", NULL};
    static const char *const boolean[] = {"Boolean", NULL};
    static const char *const dec[] = {"Decimal", "Money", "Double", NULL};
    static const char *const integer[] = {"Integer", "Picklist", "State", "Status", "BigInt", NULL};
    static const char *const date[] = {"DateTime", NULL};
    const char *const *ok = NULL;
    switch (kind) {
    case MAPPING_SCHEMA_KEY: ok = key; break;
    case MAPPING_SCHEMA_TEXT: ok = text; break;
    case MAPPING_SCHEMA_BOOL: ok = boolean; break;
    case MAPPING_SCHEMA_DECIMAL: ok = dec; break;
    case MAPPING_SCHEMA_INTEGER: ok = integer; break;
    case MAPPING_SCHEMA_DATE: ok = date; break;
    default: return 1;
    }
    for (; *ok; ok++)
        if (strcasecmp(*ok, type) == 0) return 1;
    return 0;
}

static const char *kind_type(int kind)
{
    switch (kind) {
    case MAPPING_SCHEMA_KEY:
    case MAPPING_SCHEMA_TEXT: return "String";
    case MAPPING_SCHEMA_BOOL: return "Boolean";
    case MAPPING_SCHEMA_DECIMAL: return "Decimal";
    case MAPPING_SCHEMA_INTEGER: return "Integer";
    case MAPPING_SCHEMA_DATE: return "DateTime";
    }
    return "?";
}

static int text_length(const struct item *x) { return x->max_length > 0 ? x->max_length : DEFAULT_TEXT_LENGTH; }

/* The column to create for a custom item; -1 when the kind cannot be created. */
static int column_def(const struct item *x, struct d365_md_column *col)
{
    switch (x->kind) {
    case MAPPING_SCHEMA_KEY:
        col->type = D365_MD_STRING;
        col->max_length = text_length(x);
        return col->max_length <= STRING_MAX ? 0 : -1;
    case MAPPING_SCHEMA_TEXT:
        col->max_length = text_length(x);
        col->type = col->max_length <= STRING_MAX ? D365_MD_STRING : D365_MD_MEMO;
        return 0;
    case MAPPING_SCHEMA_BOOL: col->type = D365_MD_BOOLEAN; return 0;
    case MAPPING_SCHEMA_DECIMAL: col->type = D365_MD_DECIMAL; return 0;
    case MAPPING_SCHEMA_INTEGER: col->type = D365_MD_INTEGER; return 0;
    case MAPPING_SCHEMA_DATE: col->type = D365_MD_DATE; return 0;
    }
    return -1;
}

/* The column behind a navigation property: the same name, or without a
 * "_<table>" suffix (customerid_account -> customerid). */
static const struct d365_md_attr *nav_attr(const struct d365_md_entity *e, const char *nav)
{
    const struct d365_md_attr *a = d365_metadata_attr(e, nav);
    if (a) return a;
    const char *us = strrchr(nav, '_');
    if (!us || us == nav) return NULL;
    char base[256];
    snprintf(base, sizeof base, "%.*s", (int)(us - nav), nav);
    return d365_metadata_attr(e, base);
}

/* ---- common set-up --------------------------------------------------------- */

struct env {
    struct config *cfg;
    struct mapping *map;
    struct plan plan;
    struct d365_auth *auth;
    struct d365_client *client;
    int curl_inited;
};

static void env_free(struct env *e)
{
    d365_client_destroy(e->client);
    d365_auth_destroy(e->auth);
    plan_free(&e->plan);
    mapping_free(e->map);
    config_free(e->cfg);
    if (e->curl_inited) curl_global_cleanup();
}

/* 0 ok, 2 configuration error (message printed). */
static int env_open(struct env *e, const char *cmd, const char *cpath)
{
    char err[1024];
    memset(e, 0, sizeof *e);
    e->cfg = config_load(cpath, err, sizeof err);
    if (!e->cfg) {
        fprintf(stderr, "%s: %s\n", cmd, err);
        return 2;
    }
    log_set_level(e->cfg->log_level);
    log_set_format(e->cfg->log_format);
    e->map = mapping_load(e->cfg->mapping_path, err, sizeof err);
    if (!e->map) {
        fprintf(stderr, "%s: %s\n", cmd, err);
        return 2;
    }
    if (mapping_schema(e->map, plan_cb, &e->plan) != 0) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e->curl_inited = 1;
    struct d365_auth_config ac = {
        .token_url = e->cfg->dv_token_url,
        .client_id = e->cfg->dv_client_id,
        .scope = e->cfg->dv_scope,
        .client_secret = e->cfg->dv_client_secret,
        .cert_file = e->cfg->dv_client_certificate,
        .key_file = e->cfg->dv_client_key,
        .alg = strcmp(e->cfg->dv_assertion_alg, "RS256") == 0 ? D365_ALG_RS256 : D365_ALG_PS256,
    };
    e->auth = d365_auth_create(&ac, err, sizeof err);
    if (!e->auth) {
        fprintf(stderr, "%s: dataverse credentials: %s\n", cmd, err);
        return 2;
    }
    struct d365_client_config cc = {.url = e->cfg->dv_url, .timeout_ms = e->cfg->dv_timeout_s * 1000};
    e->client = d365_client_create(&cc, e->auth, NULL, err, sizeof err);
    if (!e->client) {
        fprintf(stderr, "%s: %s\n", cmd, err);
        return 2;
    }
    return 0;
}

static void header(const struct env *e, const char *cmd)
{
    printf("dataverse %s: %s, mapping %s (orders_target %s)\n", cmd, e->cfg->dv_url, e->cfg->mapping_path,
           mapping_orders_target(e->map));
}

/* ---- setup --------------------------------------------------------------- */

struct pending_key {
    char logical[128], set[128], column[128];
};

struct setup_opts {
    const char *solution;
    int language;
    double timeout_s;
};

static int setup_entity(struct env *e, const struct setup_opts *o, const char *set, int *created_cols,
                        int *present_cols, int *created_keys, int *present_keys, struct pending_key *wait,
                        size_t *nwait, size_t maxwait)
{
    char logical[128], err[2048];
    int rc = d365_metadata_logical_name(e->client, set, logical, sizeof logical, err, sizeof err);
    if (rc != 0) {
        printf("x %s: %s%s\n", set, err, rc == 1 ? " (setup creates columns and keys, not tables)" : "");
        return -1;
    }
    struct d365_md_entity md;
    if (d365_metadata_read(e->client, logical, &md, err, sizeof err) != 0) {
        printf("x %s: %s\n", set, err);
        return -1;
    }
    printf("%s (table %s)\n", set, logical);
    int failed = 0;
    /* columns first: a key needs its column */
    for (size_t i = 0; i < e->plan.n && !failed; i++) {
        const struct item *x = &e->plan.v[i];
        if (strcmp(x->entity, set) != 0 || x->kind == MAPPING_SCHEMA_LOOKUP) continue;
        const struct d365_md_attr *a = d365_metadata_attr(&md, x->column);
        if (!is_custom(x->column)) {
            if (!a)
                printf("  ! column %-28s not found; it is not an %s column, so setup does not create it "
                       "(writes of it will fail)\n", x->column, CUSTOM_PREFIX);
            continue;
        }
        if (a) {
            if (!type_fits(x->kind, a->type)) {
                printf("  x column %-28s exists as %s, but the mapping sends %s values (%s): change the mapping "
                       "or the column\n", x->column, a->type, mapping_schema_kind_name(x->kind), kind_type(x->kind));
                failed = 1;
                break;
            }
            if ((x->kind == MAPPING_SCHEMA_KEY || x->kind == MAPPING_SCHEMA_TEXT) && a->max_length > 0 &&
                x->max_length > a->max_length)
                printf("  ! column %-28s holds %d characters, the mapping allows %d: longer values will be "
                       "refused\n", x->column, a->max_length, x->max_length);
            if (a->max_length > 0)
                printf("  = column %-28s present (%s, %d characters)\n", x->column, a->type, a->max_length);
            else
                printf("  = column %-28s present (%s)\n", x->column, a->type);
            (*present_cols)++;
            continue;
        }
        char schema[160], pascal[160], display[200], desc[300];
        column_names(x->column, schema, sizeof schema, pascal, sizeof pascal, display, sizeof display);
        snprintf(desc, sizeof desc, "Written by ml-connector from SAP IDocs (%s)",
                 x->kind == MAPPING_SCHEMA_KEY ? "alternate key for upserts" : "mapped column");
        struct d365_md_column col = {.schema_name = schema, .display_name = display, .description = desc,
                                     .language = o->language};
        if (column_def(x, &col) != 0) {
            printf("  x column %-28s cannot be created by setup (%s, max length %d): create it by hand\n",
                   x->column, mapping_schema_kind_name(x->kind), x->max_length);
            failed = 1;
            break;
        }
        if (d365_metadata_create_column(e->client, logical, &col, o->solution, err, sizeof err) != 0) {
            printf("  x column %-28s %s\n", x->column, err);
            failed = 1;
            break;
        }
        if (col.type == D365_MD_STRING || col.type == D365_MD_MEMO)
            printf("  + column %-28s created: %s, %d characters (%s)\n", x->column, kind_type(x->kind),
                   col.max_length, schema);
        else
            printf("  + column %-28s created: %s (%s)\n", x->column, kind_type(x->kind), schema);
        (*created_cols)++;
    }
    /* keys: one single-column key per key column */
    for (size_t i = 0; i < e->plan.n && !failed; i++) {
        const struct item *x = &e->plan.v[i];
        if (strcmp(x->entity, set) != 0 || x->kind != MAPPING_SCHEMA_KEY) continue;
        const char *attrs[1] = {x->column};
        const struct d365_md_key *k = d365_metadata_key_on(&md, attrs, 1);
        int wait_it = 0;
        if (k) {
            if (strcasecmp(k->status, "Failed") == 0) {
                d365_metadata_key_failure(e->client, k, err, sizeof err);
                printf("  x key on %-27s %s: %s\n", x->column, k->schema ? k->schema : "", err);
                failed = 1;
                break;
            }
            printf("  = key on %-27s present: %s (%s)\n", x->column, k->schema ? k->schema : "?", k->status);
            (*present_keys)++;
            wait_it = strcasecmp(k->status, "Active") != 0;
        } else {
            char schema[160], pascal[160], display[200], kname[300], kdisp[260];
            column_names(x->column, schema, sizeof schema, pascal, sizeof pascal, display, sizeof display);
            snprintf(kname, sizeof kname, "%.4s%s_%s", CUSTOM_PREFIX, logical, pascal);
            snprintf(kdisp, sizeof kdisp, "%s (ml-connector key)", display);
            if (d365_metadata_create_key(e->client, logical, kname, kdisp, attrs, 1, o->language, o->solution, err,
                                         sizeof err) != 0) {
                printf("  x key on %-27s %s\n", x->column, err);
                failed = 1;
                break;
            }
            printf("  + key on %-27s created: %s (index is built in the background)\n", x->column, kname);
            (*created_keys)++;
            wait_it = 1;
        }
        if (wait_it && *nwait < maxwait) {
            struct pending_key *w = &wait[(*nwait)++];
            snprintf(w->logical, sizeof w->logical, "%s", logical);
            snprintf(w->set, sizeof w->set, "%s", set);
            snprintf(w->column, sizeof w->column, "%s", x->column);
        }
    }
    d365_metadata_entity_free(&md);
    return failed ? -1 : 0;
}

static int dataverse_setup(struct env *e, const struct setup_opts *o)
{
    header(e, "setup");
    const char *sets[64];
    size_t nsets = entity_sets(&e->plan, sets, 64);
    struct pending_key wait[256];
    size_t nwait = 0;
    int cc = 0, pc = 0, ck = 0, pk = 0;
    for (size_t i = 0; i < nsets; i++) {
        if (setup_entity(e, o, sets[i], &cc, &pc, &ck, &pk, wait, &nwait, sizeof wait / sizeof wait[0]) != 0) {
            printf("setup failed: created %d column%s and %d key%s before the failure; fix the cause and run "
                   "setup again (what exists is kept)\n", cc, cc == 1 ? "" : "s", ck, ck == 1 ? "" : "s");
            return 1;
        }
    }
    if (nwait) printf("waiting for %zu key index%s to become active (timeout %.0f s)\n", nwait,
                      nwait == 1 ? "" : "es", o->timeout_s);
    int failed = 0;
    for (size_t i = 0; i < nwait; i++) {
        char err[2048];
        double waited = 0;
        const char *attrs[1] = {wait[i].column};
        if (d365_metadata_wait_key(e->client, wait[i].logical, attrs, 1, o->timeout_s, &waited, err, sizeof err) != 0) {
            printf("  x key on %s(%s): %s\n", wait[i].set, wait[i].column, err);
            failed = 1;
        } else {
            printf("  = key on %s(%s): Active after %.1f s\n", wait[i].set, wait[i].column, waited);
        }
    }
    if (failed) {
        printf("setup failed: a key did not become active\n");
        return 1;
    }
    if (cc == 0 && ck == 0)
        printf("no changes: %d column%s and %d key%s already present\n", pc, pc == 1 ? "" : "s", pk,
               pk == 1 ? "" : "s");
    else
        printf("setup done: created %d column%s and %d key%s (%d column%s and %d key%s were already present)\n", cc,
               cc == 1 ? "" : "s", ck, ck == 1 ? "" : "s", pc, pc == 1 ? "" : "s", pk, pk == 1 ? "" : "s");
    return 0;
}

/* ---- check --------------------------------------------------------------- */

#define OK "\xe2\x9c\x93"   /* ✓ */
#define BAD "\xe2\x9c\x97"  /* ✗ */

static int check_entity(struct env *e, const char *set, int *problems)
{
    char logical[128], err[2048];
    int rc = d365_metadata_logical_name(e->client, set, logical, sizeof logical, err, sizeof err);
    if (rc != 0) {
        printf(BAD " %s: %s\n", set, err);
        (*problems)++;
        return rc < 0 ? -1 : 0;
    }
    struct d365_md_entity md;
    if (d365_metadata_read(e->client, logical, &md, err, sizeof err) != 0) {
        printf(BAD " %s: %s\n", set, err);
        (*problems)++;
        return -1;
    }
    int standard = 0;
    for (size_t i = 0; i < e->plan.n; i++) {
        const struct item *x = &e->plan.v[i];
        if (strcmp(x->entity, set) != 0) continue;
        if (x->kind == MAPPING_SCHEMA_LOOKUP) {
            if (!nav_attr(&md, x->column))
                printf("! %s.%s: no lookup column of that name (navigation property names can differ "
                       "from column names: verify by hand)\n", set, x->column);
            continue;
        }
        const struct d365_md_attr *a = d365_metadata_attr(&md, x->column);
        if (!a) {
            printf(BAD " %s.%s: column missing (%s%s)\n", set, x->column, mapping_schema_kind_name(x->kind),
                   is_custom(x->column) ? "; `ml-connector dataverse setup` creates it" : "");
            (*problems)++;
            continue;
        }
        if (!type_fits(x->kind, a->type)) {
            printf(BAD " %s.%s: column is %s, the mapping sends %s values\n", set, x->column, a->type,
                   mapping_schema_kind_name(x->kind));
            (*problems)++;
            continue;
        }
        if (!is_custom(x->column)) {
            standard++;
            continue;
        }
        if (a->max_length > 0)
            printf(OK " %s.%s: column present (%s, %d characters)\n", set, x->column, a->type, a->max_length);
        else
            printf(OK " %s.%s: column present (%s)\n", set, x->column, a->type);
        if ((x->kind == MAPPING_SCHEMA_KEY || x->kind == MAPPING_SCHEMA_TEXT) && a->max_length > 0 &&
            x->max_length > a->max_length)
            printf("! %s.%s: holds %d characters, the mapping allows %d\n", set, x->column, a->max_length,
                   x->max_length);
    }
    if (standard) printf(OK " %s: %d standard column%s the mapping writes present\n", set, standard,
                         standard == 1 ? "" : "s");
    for (size_t i = 0; i < e->plan.n; i++) {
        const struct item *x = &e->plan.v[i];
        if (strcmp(x->entity, set) != 0 || x->kind != MAPPING_SCHEMA_KEY) continue;
        const char *attrs[1] = {x->column};
        const struct d365_md_key *k = d365_metadata_key_on(&md, attrs, 1);
        if (!k) {
            printf(BAD " %s key on %s: missing; `ml-connector dataverse setup` creates it\n", set, x->column);
            (*problems)++;
        } else if (strcasecmp(k->status, "Active") == 0) {
            printf(OK " %s key on %s: Active (%s)\n", set, x->column, k->schema ? k->schema : "?");
        } else if (strcasecmp(k->status, "Failed") == 0) {
            d365_metadata_key_failure(e->client, k, err, sizeof err);
            printf(BAD " %s key on %s: %s\n", set, x->column, err);
            (*problems)++;
        } else {
            printf(BAD " %s key on %s: %s, not active yet (upserts by it fail until it is)\n", set, x->column,
                   k->status);
            (*problems)++;
        }
    }
    d365_metadata_entity_free(&md);
    return 0;
}

/* GET <set>?$select=<col>[&$filter=<col> eq '<v>'][&$top=n] -> rows. */
static cJSON *query_rows(struct env *e, const char *set, const char *col, const char *value, int top, char *err,
                         size_t errlen)
{
    char path[1024];
    size_t n = (size_t)snprintf(path, sizeof path, "%s?$select=%s", set, col);
    if (value) {
        n += (size_t)snprintf(path + n, n < sizeof path ? sizeof path - n : 0, "&$filter=%s eq '", col);
        for (const char *v = value; *v && n + 8 < sizeof path; v++) {
            if (*v == '\'') path[n++] = '\'';
            path[n++] = *v;
        }
        n += (size_t)snprintf(path + n, n < sizeof path ? sizeof path - n : 0, "'");
    }
    if (top > 0) snprintf(path + n, n < sizeof path ? sizeof path - n : 0, "&$top=%d", top);
    struct d365_op op;
    memset(&op, 0, sizeof op);
    op.method = "GET";
    op.path = path;
    char *body = NULL;
    d365_send_ex(e->client, &op, NULL, &body);
    if (op.outcome != D365_DONE) {
        if (op.status) snprintf(err, errlen, "HTTP %d %s %.600s", op.status, op.code, op.message);
        else snprintf(err, errlen, "%s %.600s", op.code, op.message);
        free(body);
        return NULL;
    }
    cJSON *j = body ? cJSON_Parse(body) : NULL;
    free(body);
    cJSON *arr = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "value") : NULL;
    cJSON_Delete(j);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        snprintf(err, errlen, "the answer holds no \"value\" list");
        return NULL;
    }
    return arr;
}

static int name_ok(const char *s)
{
    if (!s || !*s) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

static void check_lookups(struct env *e, int *problems)
{
    for (size_t i = 0; i < e->plan.n; i++) {
        const struct item *x = &e->plan.v[i];
        if (x->kind != MAPPING_SCHEMA_LOOKUP || !x->match || !x->target) continue;
        /* once per (target, match, value) */
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) {
            const struct item *y = &e->plan.v[k];
            seen = y->kind == MAPPING_SCHEMA_LOOKUP && y->match && y->target && !strcmp(y->target, x->target) &&
                   !strcmp(y->match, x->match) && !!y->match_value == !!x->match_value &&
                   (!x->match_value || !strcmp(y->match_value, x->match_value));
        }
        if (seen) continue;
        if (!name_ok(x->target) || !name_ok(x->match)) {
            printf(BAD " %s: lookup by '%s' cannot be queried (not a plain name)\n", x->target, x->match);
            (*problems)++;
            continue;
        }
        char err[1024];
        cJSON *rows = query_rows(e, x->target, x->match, x->match_value, x->match_value ? 1 : 0, err, sizeof err);
        if (!rows) {
            printf(BAD " %s: cannot be read: %s\n", x->target, err);
            (*problems)++;
            continue;
        }
        if (x->match_value) {
            if (cJSON_GetArraySize(rows) > 0) {
                printf(OK " %s: %s '%s' exists (for %s.%s)\n", x->target, x->match, x->match_value, x->entity,
                       x->column);
            } else {
                printf(BAD " %s: no row with %s '%s' (the mapping's %s.%s needs it)\n", x->target, x->match,
                       x->match_value, x->entity, x->column);
                (*problems)++;
            }
        } else {
            char list[512] = "";
            size_t n = 0;
            int count = 0, shown = 0;
            const cJSON *row;
            cJSON_ArrayForEach(row, rows) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, x->match);
                if (!cJSON_IsString(v)) continue;
                count++;
                if (shown < 30 && n + strlen(v->valuestring) + 3 < sizeof list) {
                    n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", shown ? ", " : "", v->valuestring);
                    shown++;
                }
            }
            if (count == 0) {
                printf(BAD " %s: readable but empty: lookups by %s will fail\n", x->target, x->match);
                (*problems)++;
            } else {
                printf(OK " %s: readable; %s values present: %s%s\n", x->target, x->match, list,
                       count > shown ? ", ..." : "");
            }
        }
        cJSON_Delete(rows);
    }
}

static int dataverse_check(struct env *e)
{
    header(e, "check");
    int problems = 0;
    char err[1024];
    char *tok = malloc(D365_TOKEN_MAX);
    if (!tok) return 1;
    int got = d365_auth_token(e->auth, tok, D365_TOKEN_MAX, err, sizeof err);
    memset(tok, 0, D365_TOKEN_MAX);
    free(tok);
    if (got != 0) {
        printf(BAD " token: %s\n", err);
        printf("check: stopped, no access token (client %s, token URL %s)\n", e->cfg->dv_client_id,
               e->cfg->dv_token_url);
        return 1;
    }
    printf(OK " token: acquired for client %s\n", e->cfg->dv_client_id);
    const char *sets[64];
    size_t nsets = entity_sets(&e->plan, sets, 64);
    for (size_t i = 0; i < nsets; i++) check_entity(e, sets[i], &problems);
    check_lookups(e, &problems);
    if (problems) printf("check: %d problem%s\n", problems, problems == 1 ? "" : "s");
    else printf("check: all good\n");
    return problems ? 1 : 0;
}

/* ---- entry --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: ml-connector dataverse setup -c FILE [--solution NAME] [--language LCID] [--timeout SECONDS]\n"
          "       ml-connector dataverse check -c FILE\n"
          "  setup  create the custom columns and alternate keys the mapping needs; wait until keys are active\n"
          "  check  verify token, columns, keys and lookups; exit 1 when something is missing\n",
          f);
}

int cli_dataverse(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "setup") != 0 && strcmp(argv[1], "check") != 0)) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    int setup = strcmp(sub, "setup") == 0;
    char cmd[32];
    snprintf(cmd, sizeof cmd, "dataverse %s", sub);
    struct setup_opts o = {.solution = NULL, .language = 1033, .timeout_s = 600};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (!v) goto needs;
            i++;
        } else if (!strncmp(a, "--config=", 9)) {
            continue;
        } else if (setup && !strcmp(a, "--solution")) {
            if (!v) goto needs;
            if (!name_ok(v)) {
                fprintf(stderr, "%s: --solution: '%s' is not a solution unique name\n", cmd, v);
                return 2;
            }
            o.solution = v;
            i++;
        } else if (setup && (!strcmp(a, "--language") || !strcmp(a, "--timeout"))) {
            if (!v) goto needs;
            char *end;
            double d = strtod(v, &end);
            if (*end || d < 1 || d > (strcmp(a, "--language") ? 86400 : 65535)) {
                fprintf(stderr, "%s: %s: '%s' is not a valid number\n", cmd, a, v);
                return 2;
            }
            if (!strcmp(a, "--language")) o.language = (int)d;
            else o.timeout_s = d;
            i++;
        } else {
            fprintf(stderr, "%s: %s: unknown argument\n", cmd, a);
            usage(stderr);
            return 2;
        }
        continue;
    needs:
        fprintf(stderr, "%s: %s: needs a value\n", cmd, a);
        return 2;
    }
    const char *cpath = config_path_from_args(argc, argv);
    if (!cpath) {
        fprintf(stderr, "%s: no configuration: give -c FILE or set MLC_CONFIG\n", cmd);
        return 2;
    }
    struct env e;
    int rc = env_open(&e, cmd, cpath);
    if (rc == 0) {
        rc = setup ? dataverse_setup(&e, &o) : dataverse_check(&e);
        fflush(stdout);
    }
    env_free(&e);
    return rc;
}
