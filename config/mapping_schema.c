/*
 * mapping_schema — what a loaded mapping writes into Dataverse: per entity
 * set, the columns it sends (with the kind of value and the length limit it
 * truncates to), the alternate keys it upserts and binds by, and the lookups
 * it resolves. `ml-connector dataverse setup/check` derive the custom columns
 * and keys to create or verify from this list, so a site that adds a column
 * or a route to its mapping file gets it provisioned without code changes.
 *
 * Design: one walk over the compiled routes (only those active for the
 * loaded orders_target), records depth-first in file order: the record's key
 * column, its columns, its link (the other party's key column and the link
 * columns), its children, then its actions (only the binds inside action
 * bodies matter: they address records by key). Items are collected first and
 * reported at the end, so that a column seen as text in one place and as a
 * key in another (mlc_sapcustomerid: a body column of the vendor route's
 * link, the key of the customer route) is reported once, as a key. Items are
 * unique per (entity set, column), in first-seen order.
 *
 * Kinds are inferred from the value expressions, the way mapping_apply will
 * produce the JSON: a constant true/false is a boolean, a number constant an
 * integer (or a decimal when it has a fraction or exponent), the decimal /
 * div / round transforms and sum give decimals, date gives a date, a value
 * table gives what its entries are (raw numbers, or text); paths, concat and
 * text transforms give text. A value the engine cannot type (a null
 * constant, an empty value table) is MAPPING_SCHEMA_ANY. Key columns are
 * always text: mapping_key_path writes every key value as a string literal.
 */
#include "config/mapping_internal.h"

#include <stdlib.h>
#include <string.h>

struct sctx {
    struct mapping_schema_item *v;
    size_t n, cap;
    int oom;
};

/* The variables in scope: a record's vars, then its ancestors'. */
struct scope {
    const struct mrecord *r;
    const struct scope *up;
};

const char *mapping_schema_kind_name(int kind)
{
    switch (kind) {
    case MAPPING_SCHEMA_KEY: return "key";
    case MAPPING_SCHEMA_TEXT: return "text";
    case MAPPING_SCHEMA_BOOL: return "bool";
    case MAPPING_SCHEMA_DECIMAL: return "decimal";
    case MAPPING_SCHEMA_INTEGER: return "integer";
    case MAPPING_SCHEMA_DATE: return "date";
    case MAPPING_SCHEMA_LOOKUP: return "lookup";
    case MAPPING_SCHEMA_ANY: return "any";
    }
    return "?";
}

/* Add (entity, column) unless present; a key upgrades a non-lookup column
 * seen before, and a known kind replaces ANY. Strings are borrowed from the
 * mapping, except `column` for lookups (the navigation property, cut from
 * "<nav>@odata.bind"), which is allocated and owned by the item list. */
static struct mapping_schema_item *add(struct sctx *c, const char *entity, const char *column, size_t collen,
                                       int kind, int maxlen)
{
    if (c->oom) return NULL;
    for (size_t i = 0; i < c->n; i++) {
        struct mapping_schema_item *x = &c->v[i];
        if (strcmp(x->entity, entity) != 0 || strlen(x->column) != collen ||
            strncmp(x->column, column, collen) != 0)
            continue;
        if (kind == MAPPING_SCHEMA_KEY && x->kind != MAPPING_SCHEMA_LOOKUP) x->kind = MAPPING_SCHEMA_KEY;
        else if (x->kind == MAPPING_SCHEMA_ANY) x->kind = kind;
        if (maxlen > 0 && (x->max_length == 0 || maxlen < x->max_length)) x->max_length = maxlen;
        return NULL; /* already there */
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        struct mapping_schema_item *v = realloc(c->v, cap * sizeof *v);
        if (!v) {
            c->oom = 1;
            return NULL;
        }
        c->v = v;
        c->cap = cap;
    }
    char *col = malloc(collen + 1);
    if (!col) {
        c->oom = 1;
        return NULL;
    }
    memcpy(col, column, collen);
    col[collen] = 0;
    struct mapping_schema_item *x = &c->v[c->n++];
    memset(x, 0, sizeof *x);
    x->entity = entity;
    x->column = col;
    x->kind = kind;
    x->max_length = maxlen;
    return x;
}

static const struct mvalue *find_var(const struct scope *sc, const char *name)
{
    for (; sc; sc = sc->up)
        for (size_t i = 0; i < sc->r->nvars; i++)
            if (strcmp(sc->r->vars[i].name, name) == 0) return sc->r->vars[i].v;
    return NULL;
}

static int const_kind(const char *raw)
{
    if (!raw) return MAPPING_SCHEMA_ANY;
    if (strcmp(raw, "true") == 0 || strcmp(raw, "false") == 0) return MAPPING_SCHEMA_BOOL;
    if (strcmp(raw, "null") == 0) return MAPPING_SCHEMA_ANY;
    if (strpbrk(raw, ".eE")) return MAPPING_SCHEMA_DECIMAL;
    return MAPPING_SCHEMA_INTEGER;
}

static int table_kind(const struct mtable *t)
{
    int kind = MAPPING_SCHEMA_ANY;
    for (size_t i = 0; t && i < t->n; i++) {
        int k = t->e[i].raw ? const_kind(t->e[i].out) : MAPPING_SCHEMA_TEXT;
        if (k == MAPPING_SCHEMA_ANY) continue;
        if (kind == MAPPING_SCHEMA_ANY) kind = k;
        else if (kind == MAPPING_SCHEMA_INTEGER && k == MAPPING_SCHEMA_DECIMAL) kind = k;
        else if (kind != k && !(kind == MAPPING_SCHEMA_DECIMAL && k == MAPPING_SCHEMA_INTEGER))
            kind = MAPPING_SCHEMA_TEXT; /* mixed: it will be sent as text or numbers; call it text */
    }
    return kind;
}

static int xform_kind(int kind, const struct mxform *xf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (xf[i].kind) {
        case XF_DECIMAL:
        case XF_DIV:
        case XF_ROUND: kind = MAPPING_SCHEMA_DECIMAL; break;
        case XF_DATE: kind = MAPPING_SCHEMA_DATE; break;
        case XF_TABLE: kind = table_kind(xf[i].table); break;
        default: kind = MAPPING_SCHEMA_TEXT; break; /* trim, upper, lower, alpha10, truncate */
        }
    }
    return kind;
}

static int infer(const struct mvalue *v, const struct scope *sc, int depth)
{
    if (!v || depth > 32) return MAPPING_SCHEMA_ANY;
    int kind = MAPPING_SCHEMA_ANY;
    switch (v->src) {
    case SRC_CONST:
        kind = v->const_kind == CONST_TEXT ? MAPPING_SCHEMA_TEXT
             : v->const_kind == CONST_RAW  ? const_kind(v->text)
                                           : MAPPING_SCHEMA_ANY;
        break;
    case SRC_PATH:
    case SRC_CONCAT: kind = MAPPING_SCHEMA_TEXT; break;
    case SRC_VAR: kind = infer(find_var(sc, v->text), sc, depth + 1); break;
    case SRC_SUM:
    case SRC_MIN:
    case SRC_MAX:
        kind = v->src == SRC_SUM ? MAPPING_SCHEMA_DECIMAL : xform_kind(MAPPING_SCHEMA_TEXT, v->each, v->neach);
        if (kind == MAPPING_SCHEMA_TEXT) kind = MAPPING_SCHEMA_DECIMAL; /* min/max compare decimals */
        break;
    case SRC_WHEN:
        for (size_t i = 0; i < v->nwhens && kind == MAPPING_SCHEMA_ANY; i++)
            kind = infer(v->whens[i].then, sc, depth + 1);
        break;
    case SRC_BIND:
    case SRC_LOOKUP: kind = MAPPING_SCHEMA_LOOKUP; break;
    default: kind = MAPPING_SCHEMA_ANY; break; /* object: not a column value */
    }
    if (v->nxf) kind = xform_kind(kind, v->xf, v->nxf);
    if (kind == MAPPING_SCHEMA_ANY && v->otherwise) kind = infer(v->otherwise, sc, depth + 1);
    return kind;
}

/* The first bind / lookup inside a value (column values are usually one). */
static const struct mvalue *first_ref(const struct mvalue *v, const struct scope *sc, int depth)
{
    if (!v || depth > 32) return NULL;
    if (v->src == SRC_BIND || v->src == SRC_LOOKUP) return v;
    const struct mvalue *r = NULL;
    if (v->src == SRC_VAR) r = first_ref(find_var(sc, v->text), sc, depth + 1);
    for (size_t i = 0; !r && i < v->nwhens; i++) r = first_ref(v->whens[i].then, sc, depth + 1);
    if (!r) r = first_ref(v->otherwise, sc, depth + 1);
    return r;
}

/* Every bind anywhere in a value addresses its target by an alternate key. */
static void bind_keys(struct sctx *c, const struct mvalue *v, const struct scope *sc, int depth)
{
    if (!v || depth > 32) return;
    if (v->src == SRC_BIND) add(c, v->entity, v->column, strlen(v->column), MAPPING_SCHEMA_KEY, 0);
    if (v->src == SRC_VAR) bind_keys(c, find_var(sc, v->text), sc, depth + 1);
    for (size_t i = 0; i < v->nparts; i++) bind_keys(c, v->parts[i], sc, depth + 1);
    for (size_t i = 0; i < v->nwhens; i++) bind_keys(c, v->whens[i].then, sc, depth + 1);
    for (size_t i = 0; i < v->nfields; i++) bind_keys(c, v->fields[i].v, sc, depth + 1);
    bind_keys(c, v->inner, sc, depth + 1);
    bind_keys(c, v->otherwise, sc, depth + 1);
}

static void column(struct sctx *c, const char *entity, const struct mfield *f, const struct scope *sc)
{
    static const char suffix[] = "@odata.bind";
    size_t n = strlen(f->name), sl = sizeof suffix - 1;
    const struct mvalue *ref = first_ref(f->v, sc, 0);
    if (n > sl && strcmp(f->name + n - sl, suffix) == 0) {
        struct mapping_schema_item *x = add(c, entity, f->name, n - sl, MAPPING_SCHEMA_LOOKUP, 0);
        if (x && ref) {
            x->target = ref->entity;
            if (ref->src == SRC_BIND) {
                x->target_key = ref->column;
            } else {
                x->match = ref->column;
                const struct mvalue *in = ref->inner;
                if (in && in->src == SRC_CONST && in->const_kind == CONST_TEXT && !in->nxf) x->match_value = in->text;
            }
        }
    } else {
        add(c, entity, f->name, n, infer(f->v, sc, 0), f->maxlen);
    }
    bind_keys(c, f->v, sc, 0);
}

static void record(struct sctx *c, const struct mrecord *r, const struct scope *up)
{
    struct scope sc = {r, up};
    int keylen = r->key_maxlen ? r->key_maxlen : (r->key ? r->key->maxlen : 0);
    add(c, r->entity, r->key_column, strlen(r->key_column), MAPPING_SCHEMA_KEY, keylen);
    for (size_t i = 0; i < r->nvars; i++) bind_keys(c, r->vars[i].v, &sc, 0);
    for (size_t i = 0; i < r->ncolumns; i++) column(c, r->entity, &r->columns[i], &sc);
    if (r->link) {
        const char *k = r->link->other_key_column;
        add(c, r->entity, k, strlen(k), MAPPING_SCHEMA_KEY, 0);
        for (size_t i = 0; i < r->link->ncolumns; i++) column(c, r->entity, &r->link->columns[i], &sc);
    }
    for (size_t i = 0; i < r->nchildren; i++) record(c, &r->children[i], &sc);
    for (size_t i = 0; i < r->nactions; i++)
        for (size_t k = 0; k < r->actions[i].nbody; k++) bind_keys(c, r->actions[i].body[k].v, &sc, 0);
}

int mapping_schema(const struct mapping *m, int (*cb)(const struct mapping_schema_item *it, void *ud), void *ud)
{
    if (!m || !cb) return -1;
    struct sctx c = {0};
    for (size_t i = 0; i < m->nroutes; i++)
        for (size_t k = 0; k < m->routes[i].nrecords; k++) record(&c, &m->routes[i].records[k], NULL);
    int rc = c.oom ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < c.n; i++) rc = cb(&c.v[i], ud);
    for (size_t i = 0; i < c.n; i++) free((char *)c.v[i].column);
    free(c.v);
    return rc;
}
