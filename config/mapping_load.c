/*
 * mapping_load — read a mapping file (JSON) and compile it.
 *
 * Design: the file is parsed with cJSON once, an optional "extends" chain is
 * merged (a site file that only changes orders_target, adds a Z-segment
 * column or a value table on top of the shipped config/mapping.json), and
 * the result is compiled into the structures of mapping_internal.h: paths
 * split into steps with parsed [FIELD=VALUE] filters, value tables sorted
 * for binary search, column lengths attached to each column, settings
 * (orders_target, price_list) resolved, routes for other orders_targets
 * dropped after they were validated. cJSON is freed before returning; the
 * engine never sees JSON.
 *
 * Validation: every object is checked against the keys it may have (keys
 * starting with "_" are comments); any mistake stops the load with one line
 * "mapping: <json path>: <what is wrong>", e.g.
 *   mapping: routes[2].records[0].columns.name.path: unknown filter syntax 'E1EDKA1[PARVW'
 */
#include "common/util.h"
#include "config/mapping_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JP_MAX 512
#define EXTENDS_DEPTH 8

struct lctx {
    char *err;
    size_t errlen;
    int failed;
    struct mapping *m;
    const cJSON *lengths;   /* column_lengths object (may be NULL) */
};

static int fail(struct lctx *c, const char *jp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct lctx *c, const char *jp, const char *fmt, ...)
{
    if (c->failed) return -1;
    c->failed = 1;
    if (!c->err || !c->errlen) return -1;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (jp && *jp) snprintf(c->err, c->errlen, "mapping: %s: %s", jp, msg);
    else snprintf(c->err, c->errlen, "mapping: %s", msg);
    return -1;
}

/* JSON paths for messages, cut at JP_MAX (written without snprintf so the
 * compiler's truncation analysis has nothing to say). */
static void jp_cat(char *out, size_t *n, const char *s)
{
    size_t l = strlen(s);
    if (*n + l >= JP_MAX) l = JP_MAX - 1 - *n;
    memcpy(out + *n, s, l);
    *n += l;
    out[*n] = 0;
}

static void jp_key(char *out, const char *jp, const char *key)
{
    size_t n = 0;
    out[0] = 0;
    if (jp && *jp) {
        jp_cat(out, &n, jp);
        jp_cat(out, &n, ".");
    }
    jp_cat(out, &n, key);
}

static void jp_idx(char *out, const char *jp, size_t i)
{
    char num[32];
    size_t n = 0;
    int k = 0;
    char tmp[24];
    do {
        tmp[k++] = (char)('0' + (int)(i % 10));
        i /= 10;
    } while (i && k < 23);
    num[0] = '[';
    for (int j = 0; j < k; j++) num[1 + j] = tmp[k - 1 - j];
    num[1 + k] = ']';
    num[2 + k] = 0;
    out[0] = 0;
    jp_cat(out, &n, jp);
    jp_cat(out, &n, num);
}

static char *xstrdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static void *xcalloc(struct lctx *c, size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) fail(c, "", "out of memory");
    return p;
}

/* Refuse keys not in `allowed` (NULL-terminated); "_..." keys are comments. */
static int check_keys(struct lctx *c, const cJSON *obj, const char *jp, const char *const *allowed)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (!it->string) continue;
        if (it->string[0] == '_') continue;
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, it->string) == 0) { ok = 1; break; }
        char p[JP_MAX];
        jp_key(p, jp, it->string);
        if (!ok) return fail(c, p, "unknown key");
        /* duplicate keys: cJSON keeps both; the second would be ignored */
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (o->string && strcmp(o->string, it->string) == 0)
                return fail(c, p, "duplicate key");
    }
    return 0;
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int valid_name(const char *s, const char *extra)
{
    if (!s || !*s) return 0;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')
            continue;
        if (extra && strchr(extra, ch)) continue;
        return 0;
    }
    return 1;
}

static char *get_string(struct lctx *c, const cJSON *obj, const char *key, const char *jp,
                        int required, const char *name_extra)
{
    const cJSON *v = get(obj, key);
    char p[JP_MAX];
    jp_key(p, jp, key);
    if (!v) {
        if (required) fail(c, jp, "missing \"%s\"", key);
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        fail(c, p, "must be a string");
        return NULL;
    }
    if (name_extra && !valid_name(v->valuestring, name_extra)) {
        fail(c, p, "'%s' is not a valid name", v->valuestring);
        return NULL;
    }
    char *s = xstrdup(v->valuestring);
    if (!s) fail(c, p, "out of memory");
    return s;
}

/* ---- paths --------------------------------------------------------------- */

static void free_path(struct mpath *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nsteps; i++) {
        free(p->steps[i].seg);
        for (size_t k = 0; k < p->steps[i].nfilters; k++) {
            free(p->steps[i].filters[k].field);
            free(p->steps[i].filters[k].value);
        }
        free(p->steps[i].filters);
    }
    free(p->steps);
    free(p->field);
    free(p->text);
    free(p);
}

static int name_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* One component: NAME or NAME[F=V][F=V]... */
static int parse_component(struct lctx *c, const char *jp, const char *whole, const char *s, size_t n,
                           struct mstep *st, int allow_filters)
{
    size_t i = 0;
    while (i < n && name_char(s[i])) i++;
    if (i == 0) {
        if (n == 0) return fail(c, jp, "empty segment name in '%s'", whole);
        return fail(c, jp, "unknown path syntax '%.*s' in '%s'", (int)n, s, whole);
    }
    st->seg = strndup(s, i);
    if (!st->seg) return fail(c, jp, "out of memory");
    while (i < n) {
        if (s[i] != '[' || !allow_filters) {
            if (s[i] == '[') return fail(c, jp, "a field cannot have a filter: '%.*s'", (int)n, s);
            return fail(c, jp, "unknown path syntax '%.*s'", (int)n, s);
        }
        size_t f0 = ++i;
        while (i < n && name_char(s[i])) i++;
        size_t f1 = i;
        int neg = 0;
        if (i < n && s[i] == '!') {
            neg = 1;
            i++;
        }
        if (f1 == f0 || i >= n || s[i] != '=')
            return fail(c, jp, "unknown filter syntax '%.*s'", (int)n, s);
        size_t v0 = ++i;
        while (i < n && s[i] != ']' && s[i] != '[') i++;
        if (i >= n || s[i] != ']') return fail(c, jp, "unknown filter syntax '%.*s'", (int)n, s);
        size_t v1 = i++;
        /* optional quotes around the value */
        if (v1 - v0 >= 2 && ((s[v0] == '\'' && s[v1 - 1] == '\'') || (s[v0] == '"' && s[v1 - 1] == '"'))) {
            v0++;
            v1--;
        }
        struct mfilter *nf = realloc(st->filters, (st->nfilters + 1) * sizeof *nf);
        if (!nf) return fail(c, jp, "out of memory");
        st->filters = nf;
        nf[st->nfilters].field = strndup(s + f0, f1 - f0);
        nf[st->nfilters].value = strndup(s + v0, v1 - v0);
        nf[st->nfilters].neg = neg;
        st->nfilters++;
        if (!nf[st->nfilters - 1].field || !nf[st->nfilters - 1].value) return fail(c, jp, "out of memory");
    }
    return 0;
}

/* want_field: 1 the last component is a field, 0 all are segments. */
static struct mpath *parse_path(struct lctx *c, const char *jp, const char *text, int want_field)
{
    struct mpath *p = xcalloc(c, 1, sizeof *p);
    if (!p) return NULL;
    p->text = xstrdup(text);
    const char *s = text;
    if (*s == '/') {
        p->absolute = 1;
        s++;
    }
    /* split on '/' outside brackets */
    const char *comp[64];
    size_t clen[64], nc = 0;
    const char *start = s;
    int depth = 0;
    for (const char *q = s;; q++) {
        if (*q == '[') depth++;
        else if (*q == ']' && depth > 0) depth--;
        if (*q == 0 || (*q == '/' && depth == 0)) {
            if (nc == 64) {
                fail(c, jp, "path '%s' is too deep", text);
                goto bad;
            }
            comp[nc] = start;
            clen[nc++] = (size_t)(q - start);
            if (*q == 0) break;
            start = q + 1;
        }
    }
    if (depth != 0 || (nc == 1 && clen[0] == 0)) {
        if (depth != 0) fail(c, jp, "unknown filter syntax '%s'", text);
        else fail(c, jp, "empty path");
        goto bad;
    }
    if (want_field && nc == 2 && clen[0] == 8 && strncmp(comp[0], "EDI_DC40", 8) == 0) {
        p->control = 1;
        struct mstep tmp = {0};
        if (parse_component(c, jp, text, comp[1], clen[1], &tmp, 0) != 0) {
            free(tmp.seg);
            goto bad;
        }
        p->field = tmp.seg;
        return p;
    }
    size_t nseg = want_field ? nc - 1 : nc;
    if (!want_field && nc == 0) {
        fail(c, jp, "empty path");
        goto bad;
    }
    p->steps = xcalloc(c, nseg, sizeof *p->steps);
    if (!p->steps) goto bad;
    for (size_t i = 0; i < nseg; i++) {
        p->nsteps = i + 1;
        if (parse_component(c, jp, text, comp[i], clen[i], &p->steps[i], 1) != 0) goto bad;
        if (strcmp(p->steps[i].seg, "EDI_DC40") == 0) {
            fail(c, jp, "EDI_DC40 is the control record: write 'EDI_DC40/FIELD'");
            goto bad;
        }
    }
    if (want_field) {
        struct mstep tmp = {0};
        if (parse_component(c, jp, text, comp[nc - 1], clen[nc - 1], &tmp, 0) != 0) {
            free(tmp.seg);
            goto bad;
        }
        p->field = tmp.seg;
    }
    return p;
bad:
    free_path(p);
    return NULL;
}

/* ---- value tables -------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct mtable_entry *)a)->key, ((const struct mtable_entry *)b)->key);
}

static void free_table(struct mtable *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->e[i].key);
        free(t->e[i].out);
    }
    free(t->e);
    free(t->name);
}

/* raw JSON text of a scalar (number, bool); numbers must be integral or are
 * kept as written by cJSON's double (documented: use strings for decimals). */
static char *scalar_raw(struct lctx *c, const cJSON *v, const char *jp)
{
    char buf[64];
    if (cJSON_IsBool(v)) return xstrdup(cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNull(v)) return xstrdup("null");
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d != (double)(long long)d || d > 9007199254740992.0 || d < -9007199254740992.0) {
            fail(c, jp, "numbers must be integers here (write a decimal as a string with \"transform\": [\"decimal\"])");
            return NULL;
        }
        snprintf(buf, sizeof buf, "%lld", (long long)d);
        return xstrdup(buf);
    }
    fail(c, jp, "must be a string, number, true, false or null");
    return NULL;
}

static int compile_table(struct lctx *c, const cJSON *obj, const char *jp, const char *name, struct mtable *t)
{
    if (!cJSON_IsObject(obj)) return fail(c, jp, "a value table must be an object {\"SAP value\": value}");
    t->name = xstrdup(name ? name : "(inline)");
    size_t n = (size_t)cJSON_GetArraySize(obj);
    t->e = xcalloc(c, n, sizeof *t->e);
    if (!t->e || !t->name) return -1;
    for (const cJSON *it = obj->child; it; it = it->next) {
        char p[JP_MAX];
        jp_key(p, jp, it->string ? it->string : "?");
        struct mtable_entry *e = &t->e[t->n];
        e->key = xstrdup(it->string ? it->string : "");
        if (cJSON_IsString(it)) {
            e->out = xstrdup(it->valuestring);
        } else {
            e->out = scalar_raw(c, it, p);
            e->raw = 1;
        }
        t->n++;
        if (!e->key || !e->out) return fail(c, p, "invalid entry");
    }
    qsort(t->e, t->n, sizeof *t->e, cmp_entry);
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(t->e[i - 1].key, t->e[i].key) == 0) {
            char p[JP_MAX];
            jp_key(p, jp, t->e[i].key);
            return fail(c, p, "duplicate key");
        }
    return 0;
}

static const struct mtable *find_table(const struct mapping *m, const char *name)
{
    for (size_t i = 0; i < m->ntables; i++)
        if (strcmp(m->tables[i].name, name) == 0) return &m->tables[i];
    return NULL;
}

/* ---- values -------------------------------------------------------------- */

static struct mvalue *compile_value_ex(struct lctx *c, const cJSON *j, const char *jp,
                                       const char *const *extra);
static struct mvalue *compile_value(struct lctx *c, const cJSON *j, const char *jp)
{
    return compile_value_ex(c, j, jp, NULL);
}
static struct mcond *compile_cond(struct lctx *c, const cJSON *j, const char *jp);

static void free_xforms(struct mxform *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (x[i].own_table) {
            free_table(x[i].own_table);
            free(x[i].own_table);
        }
        mapping_free_value(x[i].divisor);
        free(x[i].if_zero);
    }
    free(x);
}

static void free_fields(struct mfield *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].name);
        mapping_free_value(f[i].v);
    }
    free(f);
}

void mapping_free_value(struct mvalue *v)
{
    if (!v) return;
    free_path(v->path);
    free(v->text);
    for (size_t i = 0; i < v->nparts; i++) mapping_free_value(v->parts[i]);
    free(v->parts);
    free(v->sep);
    free_xforms(v->each, v->neach);
    for (size_t i = 0; i < v->nwhens; i++) {
        mapping_free_cond(v->whens[i].cond);
        free(v->whens[i].cond);
        mapping_free_value(v->whens[i].then);
    }
    free(v->whens);
    free(v->entity);
    free(v->column);
    free(v->id_column);
    mapping_free_value(v->inner);
    free_fields(v->fields, v->nfields);
    free_xforms(v->xf, v->nxf);
    mapping_free_value(v->otherwise);
    free(v);
}

static int get_int(struct lctx *c, const cJSON *v, const char *jp, int lo, int hi, int *out)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return fail(c, jp, "must be an integer");
    int n = (int)v->valuedouble;
    if (n < lo || n > hi) return fail(c, jp, "%d is out of range %d..%d", n, lo, hi);
    *out = n;
    return 0;
}

static int compile_xforms(struct lctx *c, const cJSON *arr, const char *jp, struct mxform **out, size_t *nout)
{
    const cJSON *single = NULL;
    size_t n;
    if (cJSON_IsArray(arr)) {
        n = (size_t)cJSON_GetArraySize(arr);
    } else if (cJSON_IsString(arr) || cJSON_IsObject(arr)) {
        single = arr;
        n = 1;
    } else {
        return fail(c, jp, "must be a list of transforms");
    }
    struct mxform *x = xcalloc(c, n, sizeof *x);
    if (!x) return -1;
    *out = x;
    *nout = 0;
    size_t i = 0;
    for (const cJSON *it = single ? single : arr->child; it && i < n; it = it->next, i++) {
        char p[JP_MAX];
        if (single) snprintf(p, sizeof p, "%s", jp);
        else jp_idx(p, jp, i);
        struct mxform *t = &x[i];
        *nout = i + 1;
        if (cJSON_IsString(it)) {
            static const struct { const char *name; int kind; } names[] = {
                {"trim", XF_TRIM}, {"upper", XF_UPPER}, {"lower", XF_LOWER},
                {"alpha10", XF_ALPHA10}, {"decimal", XF_DECIMAL}, {"date", XF_DATE},
            };
            int found = 0;
            for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
                if (strcmp(names[k].name, it->valuestring) == 0) {
                    t->kind = names[k].kind;
                    found = 1;
                }
            if (!found)
                return fail(c, p, "unknown transform '%s' (trim, upper, lower, alpha10, decimal, date, "
                               "{\"table\"}, {\"div\"}, {\"round\"}, {\"truncate\"})", it->valuestring);
            continue;
        }
        if (!cJSON_IsObject(it)) return fail(c, p, "a transform is a name or an object");
        const cJSON *v;
        char q[JP_MAX];
        if ((v = get(it, "table"))) {
            static const char *const ok[] = {"table", NULL};
            if (check_keys(c, it, p, ok)) return -1;
            t->kind = XF_TABLE;
            jp_key(q, p, "table");
            if (cJSON_IsString(v)) {
                t->table = find_table(c->m, v->valuestring);
                if (!t->table) return fail(c, q, "unknown value table '%s'", v->valuestring);
            } else {
                t->own_table = xcalloc(c, 1, sizeof *t->own_table);
                if (!t->own_table || compile_table(c, v, q, NULL, t->own_table)) return -1;
                t->table = t->own_table;
            }
        } else if ((v = get(it, "div"))) {
            static const char *const ok[] = {"div", "round", "if_zero", NULL};
            if (check_keys(c, it, p, ok)) return -1;
            t->kind = XF_DIV;
            jp_key(q, p, "div");
            t->divisor = compile_value(c, v, q);
            if (!t->divisor) return -1;
            const cJSON *r = get(it, "round");
            jp_key(q, p, "round");
            if (!r) return fail(c, p, "\"div\" needs \"round\" (decimals of the exact result)");
            if (get_int(c, r, q, 0, MDEC_MAX_SCALE, &t->n)) return -1;
            const cJSON *z = get(it, "if_zero");
            if (z) {
                jp_key(q, p, "if_zero");
                struct mdec d;
                if (!cJSON_IsString(z) || mapping_dec_parse(z->valuestring, strlen(z->valuestring), &d) != 0 ||
                    d.m == 0)
                    return fail(c, q, "must be a non-zero decimal as a string, e.g. \"1\"");
                t->if_zero = xstrdup(z->valuestring);
            }
        } else if ((v = get(it, "round"))) {
            static const char *const ok[] = {"round", NULL};
            if (check_keys(c, it, p, ok)) return -1;
            t->kind = XF_ROUND;
            jp_key(q, p, "round");
            if (get_int(c, v, q, 0, MDEC_MAX_SCALE, &t->n)) return -1;
        } else if ((v = get(it, "truncate"))) {
            static const char *const ok[] = {"truncate", NULL};
            if (check_keys(c, it, p, ok)) return -1;
            t->kind = XF_TRUNCATE;
            jp_key(q, p, "truncate");
            if (get_int(c, v, q, 1, 1 << 20, &t->n)) return -1;
        } else {
            return fail(c, p, "unknown transform (table, div, round, truncate)");
        }
    }
    return 0;
}

static const char *const SOURCES[] = {"path", "const", "var", "setting", "concat", "sum", "min",
                                      "max", "when", "bind", "lookup", "object", NULL};

static int in_list(const char *s, const char *const *l)
{
    for (; l && *l; l++)
        if (strcmp(*l, s) == 0) return 1;
    return 0;
}

static struct mvalue *compile_value_ex(struct lctx *c, const cJSON *j, const char *jp,
                                       const char *const *extra)
{
    struct mvalue *v = xcalloc(c, 1, sizeof *v);
    if (!v) return NULL;
    char p[JP_MAX];
    if (cJSON_IsString(j)) {            /* shorthand: a path */
        v->src = SRC_PATH;
        v->path = parse_path(c, jp, j->valuestring, 1);
        if (!v->path) goto bad;
        return v;
    }
    if (cJSON_IsNumber(j) || cJSON_IsBool(j) || cJSON_IsNull(j)) {
        v->src = SRC_CONST;
        v->const_kind = cJSON_IsNull(j) ? CONST_NULL : CONST_RAW;
        v->text = scalar_raw(c, j, jp);
        if (!v->text) goto bad;
        return v;
    }
    if (!cJSON_IsObject(j)) {
        fail(c, jp, "a value must be a path string, a constant or an object");
        goto bad;
    }
    /* which source? exactly one */
    const char *src = NULL;
    for (const cJSON *it = j->child; it; it = it->next) {
        if (!it->string || !in_list(it->string, SOURCES)) continue;
        if (src) {
            fail(c, jp, "has both \"%s\" and \"%s\" (one source per value)", src, it->string);
            goto bad;
        }
        src = it->string;
    }
    if (!src) {
        fail(c, jp, "needs one of path, const, var, setting, concat, sum, min, max, when, bind, lookup, object");
        goto bad;
    }
    const char *allowed[24];
    size_t na = 0;
    allowed[na++] = src;
    allowed[na++] = "transform";
    allowed[na++] = "else";
    allowed[na++] = "max_length";
    if (!strcmp(src, "concat")) { allowed[na++] = "sep"; allowed[na++] = "all"; }
    if (!strcmp(src, "sum") || !strcmp(src, "min") || !strcmp(src, "max")) allowed[na++] = "each";
    for (const char *const *e = extra; e && *e && na < 22; e++) allowed[na++] = *e;
    allowed[na] = NULL;
    if (check_keys(c, j, jp, allowed)) goto bad;

    const cJSON *s = get(j, src);
    jp_key(p, jp, src);
    if (!strcmp(src, "path")) {
        v->src = SRC_PATH;
        if (!cJSON_IsString(s)) { fail(c, p, "must be a string"); goto bad; }
        if (!(v->path = parse_path(c, p, s->valuestring, 1))) goto bad;
    } else if (!strcmp(src, "const")) {
        v->src = SRC_CONST;
        if (cJSON_IsString(s)) {
            v->const_kind = CONST_TEXT;
            v->text = xstrdup(s->valuestring);
        } else {
            v->const_kind = cJSON_IsNull(s) ? CONST_NULL : CONST_RAW;
            v->text = scalar_raw(c, s, p);
        }
        if (!v->text) goto bad;
    } else if (!strcmp(src, "var")) {
        v->src = SRC_VAR;
        if (!cJSON_IsString(s) || !valid_name(s->valuestring, NULL)) { fail(c, p, "must be a variable name"); goto bad; }
        v->text = xstrdup(s->valuestring);
    } else if (!strcmp(src, "setting")) {
        v->src = SRC_CONST;
        v->const_kind = CONST_TEXT;
        if (!cJSON_IsString(s)) { fail(c, p, "must be a string"); goto bad; }
        if (!strcmp(s->valuestring, "orders_target")) v->text = xstrdup(c->m->orders_target);
        else if (!strcmp(s->valuestring, "price_list")) {
            if (!c->m->price_list) { v->const_kind = CONST_NULL; v->text = xstrdup("null"); }
            else v->text = xstrdup(c->m->price_list);
        } else { fail(c, p, "unknown setting '%s' (orders_target, price_list)", s->valuestring); goto bad; }
    } else if (!strcmp(src, "concat")) {
        v->src = SRC_CONCAT;
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) < 1) { fail(c, p, "must be a non-empty list of values"); goto bad; }
        v->nparts = (size_t)cJSON_GetArraySize(s);
        v->parts = xcalloc(c, v->nparts, sizeof *v->parts);
        if (!v->parts) goto bad;
        size_t i = 0;
        for (const cJSON *it = s->child; it; it = it->next, i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (!(v->parts[i] = compile_value(c, it, q))) goto bad;
        }
        const cJSON *sep = get(j, "sep");
        if (sep) {
            jp_key(p, jp, "sep");
            if (!cJSON_IsString(sep)) { fail(c, p, "must be a string"); goto bad; }
            v->sep = xstrdup(sep->valuestring);
        } else v->sep = xstrdup("");
        const cJSON *all = get(j, "all");
        if (all) {
            jp_key(p, jp, "all");
            if (!cJSON_IsBool(all)) { fail(c, p, "must be true or false"); goto bad; }
            v->all = cJSON_IsTrue(all);
        }
    } else if (!strcmp(src, "sum") || !strcmp(src, "min") || !strcmp(src, "max")) {
        v->src = !strcmp(src, "sum") ? SRC_SUM : !strcmp(src, "min") ? SRC_MIN : SRC_MAX;
        if (!cJSON_IsString(s)) { fail(c, p, "must be a path string"); goto bad; }
        if (!(v->path = parse_path(c, p, s->valuestring, 1))) goto bad;
        const cJSON *each = get(j, "each");
        if (each) {
            jp_key(p, jp, "each");
            if (compile_xforms(c, each, p, &v->each, &v->neach)) goto bad;
        }
    } else if (!strcmp(src, "when")) {
        v->src = SRC_WHEN;
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) < 1) { fail(c, p, "must be a non-empty list of {\"if\", \"then\"}"); goto bad; }
        v->nwhens = (size_t)cJSON_GetArraySize(s);
        v->whens = xcalloc(c, v->nwhens, sizeof *v->whens);
        if (!v->whens) goto bad;
        size_t i = 0;
        for (const cJSON *it = s->child; it; it = it->next, i++) {
            char q[JP_MAX], r[JP_MAX];
            jp_idx(q, p, i);
            static const char *const ok[] = {"if", "then", NULL};
            if (!cJSON_IsObject(it)) { fail(c, q, "must be {\"if\": condition, \"then\": value}"); goto bad; }
            if (check_keys(c, it, q, ok)) goto bad;
            if (!get(it, "if") || !get(it, "then")) { fail(c, q, "needs \"if\" and \"then\""); goto bad; }
            jp_key(r, q, "if");
            if (!(v->whens[i].cond = compile_cond(c, get(it, "if"), r))) goto bad;
            jp_key(r, q, "then");
            if (!(v->whens[i].then = compile_value(c, get(it, "then"), r))) goto bad;
        }
    } else if (!strcmp(src, "bind") || !strcmp(src, "lookup")) {
        int bind = !strcmp(src, "bind");
        v->src = bind ? SRC_BIND : SRC_LOOKUP;
        if (!cJSON_IsObject(s)) { fail(c, p, "must be an object"); goto bad; }
        static const char *const okb[] = {"entity", "key", "value", NULL};
        static const char *const okl[] = {"entity", "id", "match", "value", NULL};
        if (check_keys(c, s, p, bind ? okb : okl)) goto bad;
        if (!(v->entity = get_string(c, s, "entity", p, 1, ""))) goto bad;
        if (!(v->column = get_string(c, s, bind ? "key" : "match", p, 1, ""))) goto bad;
        if (!bind && !(v->id_column = get_string(c, s, "id", p, 1, ""))) goto bad;
        const cJSON *val = get(s, "value");
        char q[JP_MAX];
        jp_key(q, p, "value");
        if (!val) { fail(c, p, "missing \"value\""); goto bad; }
        if (!(v->inner = compile_value(c, val, q))) goto bad;
    } else if (!strcmp(src, "object")) {
        v->src = SRC_OBJECT;
        if (!cJSON_IsObject(s)) { fail(c, p, "must be an object of values"); goto bad; }
        v->nfields = (size_t)cJSON_GetArraySize(s);
        v->fields = xcalloc(c, v->nfields, sizeof *v->fields);
        if (!v->fields) goto bad;
        size_t i = 0;
        for (const cJSON *it = s->child; it; it = it->next) {
            if (it->string && it->string[0] == '_') { v->nfields--; continue; }
            char q[JP_MAX];
            jp_key(q, p, it->string);
            v->fields[i].name = xstrdup(it->string);
            if (!(v->fields[i].v = compile_value(c, it, q))) { v->nfields = i + 1; goto bad; }
            v->fields[i].maxlen = v->fields[i].v->maxlen;
            i++;
        }
    }
    const cJSON *t = get(j, "transform");
    if (t) {
        jp_key(p, jp, "transform");
        if (compile_xforms(c, t, p, &v->xf, &v->nxf)) goto bad;
    }
    const cJSON *e = get(j, "else");
    if (e) {
        jp_key(p, jp, "else");
        if (!(v->otherwise = compile_value(c, e, p))) goto bad;
    }
    const cJSON *ml = get(j, "max_length");
    if (ml) {
        jp_key(p, jp, "max_length");
        if (get_int(c, ml, p, 1, 1 << 20, &v->maxlen)) goto bad;
    }
    return v;
bad:
    mapping_free_value(v);
    return NULL;
}

/* ---- conditions ---------------------------------------------------------- */

void mapping_free_cond(struct mcond *c)
{
    if (!c) return;
    mapping_free_value(c->v);
    for (size_t i = 0; i < c->nvals; i++) free(c->vals[i]);
    free(c->vals);
    for (size_t i = 0; i < c->nsubs; i++) mapping_free_cond(&c->subs[i]);
    free(c->subs);
}

static int compile_cond_into(struct lctx *c, const cJSON *j, const char *jp, struct mcond *out)
{
    char p[JP_MAX];
    if (!cJSON_IsObject(j)) return fail(c, jp, "a condition must be an object");
    const cJSON *s;
    if ((s = get(j, "any")) || (s = get(j, "all"))) {
        const char *k = get(j, "any") ? "any" : "all";
        const char *ok[] = {k, NULL};
        if (check_keys(c, j, jp, ok)) return -1;
        jp_key(p, jp, k);
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) < 1) return fail(c, p, "must be a non-empty list of conditions");
        out->op = k[1] == 'n' ? COND_ANY : COND_ALL;
        out->nsubs = (size_t)cJSON_GetArraySize(s);
        out->subs = xcalloc(c, out->nsubs, sizeof *out->subs);
        if (!out->subs) return -1;
        size_t i = 0;
        for (const cJSON *it = s->child; it; it = it->next, i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (compile_cond_into(c, it, q, &out->subs[i])) return -1;
        }
        return 0;
    }
    if ((s = get(j, "not"))) {
        static const char *const ok[] = {"not", NULL};
        if (check_keys(c, j, jp, ok)) return -1;
        jp_key(p, jp, "not");
        out->op = COND_NOT;
        out->nsubs = 1;
        out->subs = xcalloc(c, 1, sizeof *out->subs);
        if (!out->subs) return -1;
        return compile_cond_into(c, s, p, &out->subs[0]);
    }
    static const char *const extra[] = {"equals", "in", "blank", "present", NULL};
    int nops = 0;
    for (const char *const *e = extra; *e; e++) nops += get(j, *e) != NULL;
    if (nops != 1) return fail(c, jp, "a condition needs exactly one of equals, in, blank, present (or any, all, not)");
    out->v = compile_value_ex(c, j, jp, extra);
    if (!out->v) return -1;
    if ((s = get(j, "equals"))) {
        jp_key(p, jp, "equals");
        if (!cJSON_IsString(s)) return fail(c, p, "must be a string (SAP values are text)");
        out->op = COND_EQ;
        out->vals = xcalloc(c, 1, sizeof *out->vals);
        if (!out->vals) return -1;
        out->vals[0] = xstrdup(s->valuestring);
        out->nvals = 1;
    } else if ((s = get(j, "in"))) {
        jp_key(p, jp, "in");
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) < 1) return fail(c, p, "must be a non-empty list of strings");
        out->op = COND_IN;
        out->vals = xcalloc(c, (size_t)cJSON_GetArraySize(s), sizeof *out->vals);
        if (!out->vals) return -1;
        for (const cJSON *it = s->child; it; it = it->next) {
            if (!cJSON_IsString(it)) return fail(c, p, "must be a list of strings");
            out->vals[out->nvals++] = xstrdup(it->valuestring);
        }
    } else {
        const char *k = get(j, "blank") ? "blank" : "present";
        s = get(j, k);
        jp_key(p, jp, k);
        if (!cJSON_IsTrue(s)) return fail(c, p, "must be true");
        out->op = k[0] == 'b' ? COND_BLANK : COND_PRESENT;
    }
    return 0;
}

static struct mcond *compile_cond(struct lctx *c, const cJSON *j, const char *jp)
{
    struct mcond *cd = xcalloc(c, 1, sizeof *cd);
    if (!cd) return NULL;
    if (compile_cond_into(c, j, jp, cd)) {
        mapping_free_cond(cd);
        free(cd);
        return NULL;
    }
    return cd;
}

/* ---- records ------------------------------------------------------------- */

static int column_length(struct lctx *c, const char *entity, const char *column)
{
    const cJSON *e = c->lengths ? get(c->lengths, entity) : NULL;
    const cJSON *n = e ? get(e, column) : NULL;
    return n && cJSON_IsNumber(n) ? (int)n->valuedouble : 0;
}

static int compile_fields(struct lctx *c, const cJSON *obj, const char *jp, const char *entity,
                          struct mfield **out, size_t *nout)
{
    if (!cJSON_IsObject(obj)) return fail(c, jp, "must be an object {\"column\": value}");
    size_t n = (size_t)cJSON_GetArraySize(obj);
    struct mfield *f = xcalloc(c, n, sizeof *f);
    if (!f) return -1;
    *out = f;
    *nout = 0;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (it->string && it->string[0] == '_') continue;
        char p[JP_MAX];
        jp_key(p, jp, it->string);
        if (!valid_name(it->string, "@.")) return fail(c, p, "'%s' is not a valid column name", it->string);
        for (size_t k = 0; k < *nout; k++)
            if (!strcmp(f[k].name, it->string)) return fail(c, p, "duplicate column");
        struct mfield *x = &f[(*nout)++];
        x->name = xstrdup(it->string);
        if (!x->name) return fail(c, p, "out of memory");
        x->v = compile_value(c, it, p);
        if (!x->v) return -1;
        x->maxlen = x->v->maxlen ? x->v->maxlen : (entity ? column_length(c, entity, it->string) : 0);
    }
    return 0;
}

void mapping_free_record(struct mrecord *r)
{
    if (!r) return;
    free(r->name);
    free_path(r->for_each);
    free(r->entity);
    free(r->key_column);
    mapping_free_value(r->key);
    free(r->business_key);
    for (size_t i = 0; i < r->nvars; i++) {
        free(r->vars[i].name);
        mapping_free_value(r->vars[i].v);
    }
    free(r->vars);
    free_fields(r->columns, r->ncolumns);
    if (r->delete_when) {
        mapping_free_cond(r->delete_when);
        free(r->delete_when);
    }
    if (r->link) {
        free(r->link->party);
        free(r->link->other_party);
        mapping_free_value(r->link->other);
        free(r->link->other_key_column);
        free_fields(r->link->columns, r->link->ncolumns);
        free(r->link);
    }
    for (size_t i = 0; i < r->nactions; i++) {
        struct maction *a = &r->actions[i];
        if (a->when) {
            mapping_free_cond(a->when);
            free(a->when);
        }
        free(a->path);
        free(a->entity);
        free_fields(a->body, a->nbody);
    }
    free(r->actions);
    for (size_t i = 0; i < r->nchildren; i++) mapping_free_record(&r->children[i]);
    free(r->children);
}

static int compile_record(struct lctx *c, const cJSON *j, const char *jp, int top, struct mrecord *r)
{
    static const char *const ok[] = {"name", "for_each", "required", "entity", "key", "vars", "columns",
                                     "delete_when", "link", "children", "actions", "changeset", NULL};
    char p[JP_MAX];
    if (!cJSON_IsObject(j)) return fail(c, jp, "a record must be an object");
    if (check_keys(c, j, jp, ok)) return -1;
    if (!(r->name = get_string(c, j, "name", jp, 1, "-"))) return -1;
    if (!(r->entity = get_string(c, j, "entity", jp, 1, ""))) return -1;
    const cJSON *v;
    r->required = top;
    if ((v = get(j, "for_each"))) {
        jp_key(p, jp, "for_each");
        if (!cJSON_IsString(v)) return fail(c, p, "must be a segment path string");
        if (!(r->for_each = parse_path(c, p, v->valuestring, 0))) return -1;
        if (r->for_each->control) return fail(c, p, "cannot iterate over the control record");
    }
    if ((v = get(j, "required"))) {
        jp_key(p, jp, "required");
        if (!cJSON_IsBool(v)) return fail(c, p, "must be true or false");
        r->required = cJSON_IsTrue(v);
    }
    if ((v = get(j, "changeset"))) {
        jp_key(p, jp, "changeset");
        if (!cJSON_IsBool(v)) return fail(c, p, "must be true or false");
        r->changeset = cJSON_IsTrue(v);
    }
    /* key */
    v = get(j, "key");
    jp_key(p, jp, "key");
    if (!v) return fail(c, jp, "missing \"key\" (records are upserted by alternate key)");
    if (!cJSON_IsObject(v)) return fail(c, p, "must be {\"column\", \"value\", \"business_key\"}");
    static const char *const okk[] = {"column", "value", "business_key", NULL};
    if (check_keys(c, v, p, okk)) return -1;
    if (!(r->key_column = get_string(c, v, "column", p, 1, ""))) return -1;
    if (get(v, "business_key") && !(r->business_key = get_string(c, v, "business_key", p, 1, "-")))
        return -1;
    {
        char q[JP_MAX];
        jp_key(q, p, "value");
        const cJSON *kv = get(v, "value");
        if (!kv) return fail(c, p, "missing \"value\"");
        if (!(r->key = compile_value(c, kv, q))) return -1;
        r->key_maxlen = column_length(c, r->entity, r->key_column);
    }
    /* vars */
    if ((v = get(j, "vars"))) {
        jp_key(p, jp, "vars");
        if (!cJSON_IsObject(v)) return fail(c, p, "must be an object {\"name\": value}");
        r->vars = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *r->vars);
        if (!r->vars) return -1;
        for (const cJSON *it = v->child; it; it = it->next) {
            if (it->string[0] == '_') continue;
            char q[JP_MAX];
            jp_key(q, p, it->string);
            if (!valid_name(it->string, NULL)) return fail(c, q, "not a valid variable name");
            struct mvar *x = &r->vars[r->nvars++];
            x->name = xstrdup(it->string);
            if (!(x->v = compile_value(c, it, q))) return -1;
        }
    }
    if ((v = get(j, "columns"))) {
        jp_key(p, jp, "columns");
        if (compile_fields(c, v, p, r->entity, &r->columns, &r->ncolumns)) return -1;
        for (size_t i = 0; i < r->ncolumns; i++)
            if (!strcmp(r->columns[i].name, r->key_column)) {
                char q[JP_MAX];
                jp_key(q, p, r->key_column);
                return fail(c, q, "the key column is never repeated in the body");
            }
    }
    if ((v = get(j, "delete_when"))) {
        jp_key(p, jp, "delete_when");
        if (!(r->delete_when = compile_cond(c, v, p))) return -1;
    }
    if ((v = get(j, "link"))) {
        jp_key(p, jp, "link");
        static const char *const okl[] = {"other_party", "other", "other_key_column", "columns", NULL};
        if (!cJSON_IsObject(v)) return fail(c, p, "must be an object");
        if (check_keys(c, v, p, okl)) return -1;
        if (!r->business_key) return fail(c, p, "a linked record needs key.business_key (its party)");
        r->link = xcalloc(c, 1, sizeof *r->link);
        if (!r->link) return -1;
        r->link->party = xstrdup(r->business_key);
        if (!(r->link->other_party = get_string(c, v, "other_party", p, 1, "-"))) return -1;
        if (!strcmp(r->link->other_party, r->business_key)) {
            char q[JP_MAX];
            jp_key(q, p, "other_party");
            return fail(c, q, "must differ from the record's own party");
        }
        if (!(r->link->other_key_column = get_string(c, v, "other_key_column", p, 1, ""))) return -1;
        char q[JP_MAX];
        jp_key(q, p, "other");
        if (!get(v, "other")) return fail(c, p, "missing \"other\" (the linked number in the IDoc)");
        if (!(r->link->other = compile_value(c, get(v, "other"), q))) return -1;
        if (get(v, "columns")) {
            jp_key(q, p, "columns");
            if (compile_fields(c, get(v, "columns"), q, r->entity, &r->link->columns, &r->link->ncolumns))
                return -1;
        }
    }
    if ((v = get(j, "children"))) {
        jp_key(p, jp, "children");
        if (!cJSON_IsArray(v)) return fail(c, p, "must be a list of records");
        r->children = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *r->children);
        if (!r->children) return -1;
        size_t i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            r->nchildren = i + 1;
            if (compile_record(c, it, q, 0, &r->children[i])) return -1;
        }
    }
    if ((v = get(j, "actions"))) {
        jp_key(p, jp, "actions");
        if (!cJSON_IsArray(v)) return fail(c, p, "must be a list of actions");
        r->actions = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *r->actions);
        if (!r->actions) return -1;
        size_t i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            char q[JP_MAX], s2[JP_MAX];
            jp_idx(q, p, i);
            r->nactions = i + 1;
            struct maction *a = &r->actions[i];
            static const char *const oka[] = {"when", "path", "entity", "body", NULL};
            if (!cJSON_IsObject(it)) return fail(c, q, "an action must be an object");
            if (check_keys(c, it, q, oka)) return -1;
            if (!(a->path = get_string(c, it, "path", q, 1, "."))) return -1;
            if (!(a->entity = get_string(c, it, "entity", q, 1, ""))) return -1;
            if (!get(it, "when")) return fail(c, q, "missing \"when\"");
            jp_key(s2, q, "when");
            if (!(a->when = compile_cond(c, get(it, "when"), s2))) return -1;
            if (get(it, "body")) {
                jp_key(s2, q, "body");
                if (compile_fields(c, get(it, "body"), s2, NULL, &a->body, &a->nbody)) return -1;
            }
        }
    }
    return 0;
}

/* ---- routes, top level --------------------------------------------------- */

static void free_match(struct mmatch *mm)
{
    for (size_t i = 0; i < mm->nidoctyp; i++) free(mm->idoctyp[i]);
    for (size_t i = 0; i < mm->nmestyp; i++) free(mm->mestyp[i]);
    for (size_t i = 0; i < mm->ncimtyp; i++) free(mm->cimtyp[i]);
    free(mm->idoctyp);
    free(mm->mestyp);
    free(mm->cimtyp);
}

static int compile_strlist(struct lctx *c, const cJSON *v, const char *jp, char ***out, size_t *n)
{
    if (cJSON_IsString(v)) {
        const char *star = strchr(v->valuestring, '*');
        if (!*v->valuestring) return fail(c, jp, "must be a non-empty string");
        if (star && star[1]) return fail(c, jp, "'*' is allowed only at the end ('%s')", v->valuestring);
        *out = xcalloc(c, 1, sizeof **out);
        if (!*out) return -1;
        (*out)[0] = xstrdup(v->valuestring);
        *n = 1;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) < 1) return fail(c, jp, "must be a string or a non-empty list of strings");
    *out = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof **out);
    if (!*out) return -1;
    size_t i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        char q[JP_MAX];
        jp_idx(q, jp, i);
        if (!cJSON_IsString(it) || !*it->valuestring) return fail(c, q, "must be a non-empty string");
        const char *star = strchr(it->valuestring, '*');
        if (star && star[1]) return fail(c, q, "'*' is allowed only at the end ('%s')", it->valuestring);
        (*out)[(*n)++] = xstrdup(it->valuestring);
    }
    return 0;
}

static int compile_match(struct lctx *c, const cJSON *j, const char *jp, struct mmatch *mm)
{
    char p[JP_MAX];
    if (cJSON_IsString(j)) {  /* accept_and_ignore shorthand: a message type */
        return compile_strlist(c, j, jp, &mm->mestyp, &mm->nmestyp);
    }
    if (!cJSON_IsObject(j)) return fail(c, jp, "must be an object {\"idoctyp\", \"mestyp\", \"cimtyp\"}");
    static const char *const ok[] = {"idoctyp", "mestyp", "cimtyp", NULL};
    if (check_keys(c, j, jp, ok)) return -1;
    const cJSON *v;
    if ((v = get(j, "idoctyp"))) { jp_key(p, jp, "idoctyp"); if (compile_strlist(c, v, p, &mm->idoctyp, &mm->nidoctyp)) return -1; }
    if ((v = get(j, "mestyp"))) { jp_key(p, jp, "mestyp"); if (compile_strlist(c, v, p, &mm->mestyp, &mm->nmestyp)) return -1; }
    if ((v = get(j, "cimtyp"))) { jp_key(p, jp, "cimtyp"); if (compile_strlist(c, v, p, &mm->cimtyp, &mm->ncimtyp)) return -1; }
    if (!mm->nidoctyp && !mm->nmestyp && !mm->ncimtyp) return fail(c, jp, "matches nothing: give idoctyp, mestyp or cimtyp");
    return 0;
}

static void free_route(struct mroute *r)
{
    free(r->name);
    free_match(&r->match);
    for (size_t i = 0; i < r->nrecords; i++) mapping_free_record(&r->records[i]);
    free(r->records);
}

void mapping_free(struct mapping *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nroutes; i++) free_route(&m->routes[i]);
    free(m->routes);
    for (size_t i = 0; i < m->nignore; i++) free_match(&m->ignore[i]);
    free(m->ignore);
    for (size_t i = 0; i < m->ntables; i++) free_table(&m->tables[i]);
    free(m->tables);
    free(m->orders_target);
    free(m->price_list);
    free(m->path);
    free(m);
}

static const char *const TARGETS[] = {"opportunity", "salesorder", "quote", NULL};

static int compile_root(struct lctx *c, const cJSON *root)
{
    static const char *const ok[] = {"version", "description", "orders_target", "price_list",
                                     "column_lengths", "value_tables", "accept_and_ignore", "routes",
                                     NULL};
    struct mapping *m = c->m;
    char p[JP_MAX];
    if (!cJSON_IsObject(root)) return fail(c, "", "the file must hold a JSON object");
    if (check_keys(c, root, "", ok)) return -1;
    const cJSON *v;
    if ((v = get(root, "version"))) {
        if (!cJSON_IsNumber(v) || v->valuedouble != 1) return fail(c, "version", "must be 1");
    }
    if ((v = get(root, "description")) && !cJSON_IsString(v)) return fail(c, "description", "must be a string");
    v = get(root, "orders_target");
    if (v) {
        if (!cJSON_IsString(v) || !in_list(v->valuestring, TARGETS))
            return fail(c, "orders_target", "must be \"opportunity\", \"salesorder\" or \"quote\"");
        m->orders_target = xstrdup(v->valuestring);
    } else {
        m->orders_target = xstrdup("opportunity");
    }
    if ((v = get(root, "price_list"))) {
        if (!cJSON_IsString(v) || !*v->valuestring) return fail(c, "price_list", "must be a non-empty string");
        m->price_list = xstrdup(v->valuestring);
    }
    /* column lengths: {"entity": {"column": n}} */
    if ((v = get(root, "column_lengths"))) {
        if (!cJSON_IsObject(v)) return fail(c, "column_lengths", "must be an object {\"entity set\": {\"column\": length}}");
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e->string[0] == '_') continue;
            jp_key(p, "column_lengths", e->string);
            if (!cJSON_IsObject(e)) return fail(c, p, "must be an object {\"column\": length}");
            for (const cJSON *col = e->child; col; col = col->next) {
                if (col->string[0] == '_') continue;
                char q[JP_MAX];
                int n;
                jp_key(q, p, col->string);
                if (get_int(c, col, q, 1, 1 << 20, &n)) return -1;
            }
        }
        c->lengths = v;
    }
    /* value tables before anything that names them */
    if ((v = get(root, "value_tables"))) {
        if (!cJSON_IsObject(v)) return fail(c, "value_tables", "must be an object {\"name\": {\"SAP value\": value}}");
        m->tables = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *m->tables);
        if (!m->tables) return -1;
        for (const cJSON *t = v->child; t; t = t->next) {
            if (t->string[0] == '_') continue;
            jp_key(p, "value_tables", t->string);
            if (!valid_name(t->string, "-")) return fail(c, p, "not a valid table name");
            if (compile_table(c, t, p, t->string, &m->tables[m->ntables++])) return -1;
        }
    }
    if ((v = get(root, "accept_and_ignore"))) {
        if (!cJSON_IsArray(v)) return fail(c, "accept_and_ignore", "must be a list of message types or {\"mestyp\", \"idoctyp\"} objects");
        m->ignore = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *m->ignore);
        if (!m->ignore) return -1;
        size_t i = 0;
        for (const cJSON *it = v->child; it; it = it->next, i++) {
            jp_idx(p, "accept_and_ignore", i);
            m->nignore = i + 1;
            if (compile_match(c, it, p, &m->ignore[i])) return -1;
        }
    }
    v = get(root, "routes");
    if (!v) return fail(c, "", "missing \"routes\"");
    if (!cJSON_IsArray(v)) return fail(c, "routes", "must be a list");
    m->routes = xcalloc(c, (size_t)cJSON_GetArraySize(v), sizeof *m->routes);
    if (!m->routes) return -1;
    size_t i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        static const char *const okr[] = {"name", "match", "orders_target", "records", NULL};
        jp_idx(p, "routes", i);
        struct mroute r = {0};
        int active = 1, rc = -1;
        char q[JP_MAX];
        if (!cJSON_IsObject(it)) { fail(c, p, "a route must be an object"); goto route_done; }
        if (check_keys(c, it, p, okr)) goto route_done;
        if (!(r.name = get_string(c, it, "name", p, 1, "-"))) goto route_done;
        if (strlen(r.name) >= sizeof(((struct mapping_class *)0)->target)) {
            jp_key(q, p, "name");
            fail(c, q, "longer than %zu characters", sizeof(((struct mapping_class *)0)->target) - 1);
            goto route_done;
        }
        jp_key(q, p, "match");
        if (!get(it, "match")) { fail(c, p, "missing \"match\""); goto route_done; }
        if (!cJSON_IsObject(get(it, "match"))) { fail(c, q, "must be an object"); goto route_done; }
        if (compile_match(c, get(it, "match"), q, &r.match)) goto route_done;
        const cJSON *ot = get(it, "orders_target");
        if (ot) {
            jp_key(q, p, "orders_target");
            if (!cJSON_IsString(ot) || !in_list(ot->valuestring, TARGETS)) {
                fail(c, q, "must be \"opportunity\", \"salesorder\" or \"quote\"");
                goto route_done;
            }
            active = !strcmp(ot->valuestring, m->orders_target);
        }
        const cJSON *recs = get(it, "records");
        jp_key(q, p, "records");
        if (!recs) { fail(c, p, "missing \"records\""); goto route_done; }
        if (!cJSON_IsArray(recs) || cJSON_GetArraySize(recs) < 1) { fail(c, q, "must be a non-empty list of records"); goto route_done; }
        r.records = xcalloc(c, (size_t)cJSON_GetArraySize(recs), sizeof *r.records);
        if (!r.records) goto route_done;
        size_t k = 0;
        for (const cJSON *rj = recs->child; rj; rj = rj->next, k++) {
            char s2[JP_MAX];
            jp_idx(s2, q, k);
            r.nrecords = k + 1;
            if (compile_record(c, rj, s2, 1, &r.records[k])) goto route_done;
        }
        rc = 0;
    route_done:
        if (rc == 0 && active) {
            m->routes[m->nroutes++] = r;
        } else {
            free_route(&r);
            if (rc != 0) return -1;
        }
    }
    return 0;
}

/* ---- files and "extends" ------------------------------------------------- */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    char *buf;
    if (util_read_file(path, (size_t)64 << 20, &buf, len) != 0) {
        snprintf(err, errlen, "mapping: %s: %s", path, errno == EFBIG ? "larger than 64 MB" : strerror(errno));
        return NULL;
    }
    return buf;
}

static cJSON *parse_file(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    if (err && errlen) *err = 0;
    char *text = read_file(path, &len, err, errlen);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
    if (!j) {
        int line = 1, col = 1;
        const char *at = end ? end : text;
        for (const char *p = text; p < at && *p; p++) {
            if (*p == '\n') { line++; col = 1; }
            else col++;
        }
        snprintf(err, errlen, "mapping: %s: not valid JSON (line %d, column %d)", path, line, col);
    }
    free(text);
    return j;
}

static char *resolve_rel(const char *base_file, const char *rel)
{
    if (rel[0] == '/') return xstrdup(rel);
    const char *slash = strrchr(base_file, '/');
    size_t dl = slash ? (size_t)(slash - base_file) + 1 : 0;
    size_t n = dl + strlen(rel) + 1;
    char *p = malloc(n);
    if (!p) return NULL;
    memcpy(p, base_file, dl);
    memcpy(p + dl, rel, strlen(rel) + 1);
    return p;
}

/* Add the columns of add_columns.<name> to every record called <name>. */
static int add_columns_to(const cJSON *records, const char *name, const cJSON *cols)
{
    int n = 0;
    for (cJSON *r = records ? records->child : NULL; r; r = r->next) {
        const cJSON *rn = get(r, "name");
        if (cJSON_IsString(rn) && !strcmp(rn->valuestring, name)) {
            cJSON *dst = cJSON_GetObjectItemCaseSensitive(r, "columns");
            if (!dst) {
                dst = cJSON_AddObjectToObject(r, "columns");
                if (!dst) return -1;
            }
            for (const cJSON *c = cols->child; c; c = c->next) {
                if (c->string[0] == '_') continue;
                cJSON *dup = cJSON_Duplicate(c, 1);
                if (!dup) return -1;
                if (get(dst, c->string)) cJSON_ReplaceItemInObjectCaseSensitive(dst, c->string, dup);
                else cJSON_AddItemToObject(dst, c->string, dup);
            }
            n++;
        }
        int k = add_columns_to(get(r, "children"), name, cols);
        if (k < 0) return -1;
        n += k;
    }
    return n;
}

/* Load path; if it "extends" another file, load that and merge this one in. */
static cJSON *load_merged(const char *path, int depth, char *err, size_t errlen)
{
    cJSON *over = parse_file(path, err, errlen);
    if (!over) return NULL;
    if (!cJSON_IsObject(over)) return over;  /* compile reports it */
    const cJSON *ext = get(over, "extends");
    if (!ext) {
        if (get(over, "add_columns")) {
            snprintf(err, errlen, "mapping: add_columns: only allowed together with \"extends\"");
            cJSON_Delete(over);
            return NULL;
        }
        return over;
    }
    if (!cJSON_IsString(ext) || !*ext->valuestring) {
        snprintf(err, errlen, "mapping: extends: must be the path of the base mapping file");
        cJSON_Delete(over);
        return NULL;
    }
    if (depth >= EXTENDS_DEPTH) {
        snprintf(err, errlen, "mapping: extends: more than %d levels (a loop?)", EXTENDS_DEPTH);
        cJSON_Delete(over);
        return NULL;
    }
    char *bpath = resolve_rel(path, ext->valuestring);
    cJSON *base = bpath ? load_merged(bpath, depth + 1, err, errlen) : NULL;
    if (!base) {
        if (bpath && strstr(err, "mapping: ") == err && !strstr(err, bpath)) {
            char tmp[600];
            snprintf(tmp, sizeof tmp, "%s (in %s, extended by %s)", err, bpath, path);
            snprintf(err, errlen, "%s", tmp);
        }
        free(bpath);
        cJSON_Delete(over);
        return NULL;
    }
    free(bpath);
    if (!cJSON_IsObject(base)) {
        snprintf(err, errlen, "mapping: extends: the base file must hold a JSON object");
        goto bad;
    }
    for (cJSON *it = over->child; it; it = it->next) {
        const char *k = it->string;
        if (!strcmp(k, "extends") || !strcmp(k, "add_columns")) continue;
        if (!strcmp(k, "routes") || !strcmp(k, "accept_and_ignore")) {
            if (!cJSON_IsArray(it)) {
                snprintf(err, errlen, "mapping: %s: must be a list", k);
                goto bad;
            }
            cJSON *dst = cJSON_GetObjectItemCaseSensitive(base, k);
            if (!dst) {
                dst = cJSON_AddArrayToObject(base, k);
                if (!dst) goto oom;
            }
            if (!cJSON_IsArray(dst)) {
                snprintf(err, errlen, "mapping: %s: must be a list (in the base file)", k);
                goto bad;
            }
            int pos = 0;
            for (const cJSON *e = it->child; e; e = e->next) {
                cJSON *dup = cJSON_Duplicate(e, 1);
                if (!dup) goto oom;
                /* routes of the extending file come first: they win */
                if (!strcmp(k, "routes")) cJSON_InsertItemInArray(dst, pos++, dup);
                else cJSON_AddItemToArray(dst, dup);
            }
        } else if (!strcmp(k, "value_tables") || !strcmp(k, "column_lengths")) {
            if (!cJSON_IsObject(it)) {
                snprintf(err, errlen, "mapping: %s: must be an object", k);
                goto bad;
            }
            cJSON *dst = cJSON_GetObjectItemCaseSensitive(base, k);
            if (!dst) {
                dst = cJSON_AddObjectToObject(base, k);
                if (!dst) goto oom;
            }
            for (const cJSON *e = it->child; e; e = e->next) {
                cJSON *target = cJSON_GetObjectItemCaseSensitive(dst, e->string);
                if (!strcmp(k, "column_lengths") && target && cJSON_IsObject(target) && cJSON_IsObject(e)) {
                    for (const cJSON *col = e->child; col; col = col->next) {
                        cJSON *dup = cJSON_Duplicate(col, 1);
                        if (!dup) goto oom;
                        if (get(target, col->string)) cJSON_ReplaceItemInObjectCaseSensitive(target, col->string, dup);
                        else cJSON_AddItemToObject(target, col->string, dup);
                    }
                    continue;
                }
                cJSON *dup = cJSON_Duplicate(e, 1);
                if (!dup) goto oom;
                if (target) cJSON_ReplaceItemInObjectCaseSensitive(dst, e->string, dup);
                else cJSON_AddItemToObject(dst, e->string, dup);
            }
        } else {
            cJSON *dup = cJSON_Duplicate(it, 1);
            if (!dup) goto oom;
            if (get(base, k)) cJSON_ReplaceItemInObjectCaseSensitive(base, k, dup);
            else cJSON_AddItemToObject(base, k, dup);
        }
    }
    const cJSON *add = get(over, "add_columns");
    if (add) {
        if (!cJSON_IsObject(add)) {
            snprintf(err, errlen, "mapping: add_columns: must be an object {\"record name\": {\"column\": value}}");
            goto bad;
        }
        const cJSON *routes = get(base, "routes");
        for (const cJSON *rec = add->child; rec; rec = rec->next) {
            if (rec->string[0] == '_') continue;
            if (!cJSON_IsObject(rec)) {
                snprintf(err, errlen, "mapping: add_columns.%s: must be an object {\"column\": value}", rec->string);
                goto bad;
            }
            int n = 0;
            for (const cJSON *rt = routes ? routes->child : NULL; rt; rt = rt->next) {
                int k = add_columns_to(get(rt, "records"), rec->string, rec);
                if (k < 0) goto oom;
                n += k;
            }
            if (n == 0) {
                snprintf(err, errlen, "mapping: add_columns.%s: no record named '%s'", rec->string, rec->string);
                goto bad;
            }
        }
    }
    cJSON_Delete(over);
    return base;
oom:
    snprintf(err, errlen, "mapping: out of memory");
bad:
    cJSON_Delete(over);
    cJSON_Delete(base);
    return NULL;
}

/* Validate add_columns with their own JSON paths before they are merged,
 * so a mistake there is reported as add_columns.<record>.<column>... */
static int precheck_add_columns(struct lctx *c, const char *path)
{
    char e2[8];
    cJSON *over = parse_file(path, e2, sizeof e2);
    if (!over) return 0;  /* load_merged reports it */
    const cJSON *add = cJSON_IsObject(over) ? get(over, "add_columns") : NULL;
    int rc = 0;
    for (const cJSON *rec = add && cJSON_IsObject(add) ? add->child : NULL; rec && rc == 0; rec = rec->next) {
        if (rec->string[0] == '_' || !cJSON_IsObject(rec)) continue;
        for (const cJSON *col = rec->child; col && rc == 0; col = col->next) {
            if (col->string[0] == '_') continue;
            char p[JP_MAX], q[JP_MAX];
            jp_key(p, "add_columns", rec->string);
            jp_key(q, p, col->string);
            if (!valid_name(col->string, "@.")) {
                rc = fail(c, q, "'%s' is not a valid column name", col->string);
                break;
            }
            struct mvalue *v = compile_value(c, col, q);
            if (!v) rc = -1;
            mapping_free_value(v);
        }
    }
    cJSON_Delete(over);
    return rc;
}

struct mapping *mapping_load(const char *path, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    *err = 0;
    if (!path || !*path) {
        snprintf(err, errlen, "mapping: no mapping file given");
        return NULL;
    }
    struct mapping *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "mapping: out of memory");
        return NULL;
    }
    m->path = xstrdup(path);
    struct lctx c = {.err = err, .errlen = errlen, .m = m};
    cJSON *root = load_merged(path, 0, err, errlen);
    if (!root) {
        mapping_free(m);
        return NULL;
    }
    /* settings and tables are needed to validate add_columns on their own */
    int rc = 0;
    {
        const cJSON *ot = get(root, "orders_target");
        m->orders_target = xstrdup(cJSON_IsString(ot) ? ot->valuestring : "opportunity");
        const cJSON *tables = get(root, "value_tables");
        struct mapping tmp = {0};
        if (cJSON_IsObject(tables)) {
            tmp.tables = calloc((size_t)cJSON_GetArraySize(tables) + 1, sizeof *tmp.tables);
            for (const cJSON *t = tables->child; t && tmp.tables; t = t->next)
                if (cJSON_IsObject(t) && compile_table(&c, t, "", t->string, &tmp.tables[tmp.ntables++]) != 0) break;
        }
        c.failed = 0;
        *err = 0;
        tmp.orders_target = m->orders_target;
        c.m = &tmp;
        rc = precheck_add_columns(&c, path);
        for (size_t i = 0; i < tmp.ntables; i++) free_table(&tmp.tables[i]);
        free(tmp.tables);
        c.m = m;
        free(m->orders_target);
        m->orders_target = NULL;
    }
    if (rc == 0) rc = compile_root(&c, root);
    cJSON_Delete(root);
    if (rc != 0 || c.failed) {
        if (!*err) snprintf(err, errlen, "mapping: invalid mapping file");
        mapping_free(m);
        return NULL;
    }
    return m;
}

const char *mapping_orders_target(const struct mapping *m)
{
    return m && m->orders_target ? m->orders_target : "opportunity";
}
