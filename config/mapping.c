/*
 * mapping — routing, business keys and the mapping engine (IDoc -> ops).
 *
 * Design: a loaded mapping (mapping_load.c) is a tree of compiled records.
 * mapping_apply walks it over one IDoc: each record iterates its for_each
 * segments, evaluates its variables, key and columns, and emits one
 * operation (upsert, or DELETE when delete_when holds), then its children,
 * then its actions. Values are evaluated into a small tagged union (absent,
 * "/" no change, omitted, null, text, exact decimal, raw JSON) whose memory
 * comes from a per-call arena, so an IDoc costs a handful of mallocs: the
 * op strings the caller keeps. Bodies are written as JSON text directly
 * (no cJSON per IDoc; decimals never pass through a double).
 *
 * Ops of one IDoc are built in a scratch list and appended to the caller's
 * list only on success: lookup GETs first (never inside a change set), then
 * the writes in order. Link-store updates are buffered the same way and
 * written at the end, so a failed IDoc changes nothing.
 *
 * Three-valued conditions: a condition on a "/" (no change) field is
 * unknown; a "when" that meets an unknown before a true branch yields "no
 * change" (the column is not sent), a delete_when or action "when" that is
 * unknown does not fire.
 */
#include "config/mapping_internal.h"

#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena ---------------------------------------------------------------- */

struct achunk {
    struct achunk *next;
    size_t used, cap;
    _Alignas(16) char data[];  /* struct val holds an __int128 */
};

struct arena {
    struct achunk *head;
    int oom;
};

static void *aalloc(struct arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->used + n > a->head->cap) {
        size_t cap = n > 16384 ? n : 16384;
        struct achunk *c = malloc(sizeof *c + cap);
        if (!c) {
            a->oom = 1;
            return NULL;
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static char *adup(struct arena *a, const char *s, size_t n)
{
    char *p = aalloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void afree(struct arena *a)
{
    while (a->head) {
        struct achunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

/* ---- values ---------------------------------------------------------------- */

enum vt { V_ABSENT, V_NOCHANGE, V_OMIT, V_NULL, V_TEXT, V_DEC, V_RAW };

struct val {
    int t;
    const char *s;   /* TEXT, RAW */
    size_t n;
    struct mdec d;   /* DEC */
};

enum { C_FALSE = 0, C_TRUE = 1, C_UNKNOWN = 2 };

struct strl {
    char **v;
    size_t n, cap;
};

struct plookup {               /* a lookup this IDoc needs */
    char *id;
    const struct mvalue *spec;
    char *value;
    char *guid;                /* HIT */
    int state;                 /* enum mapping_lookup_state */
};

struct plink {                 /* buffered link-store update */
    char party[32];
    char number[MAPPING_NUMBER_MAX];
    struct mapping_link_rec rec;
};

struct ectx {
    const struct mapping *m;
    const struct idoc *doc;
    struct arena ar;
    char *err;
    size_t errlen;
    int failed;
    int classify;
    const struct mapping_links *links;
    const struct mapping_lookups *lookups;
    struct plookup *lk;
    size_t nlk, caplk;
    struct plink *pl;
    size_t npl, cappl;
    struct strl needs, binds;  /* of the op being built */
    struct mapping_ops ops;    /* this IDoc's writes */
    int changesets;
    /* classify */
    struct { int level; char *s; } *keys;
    size_t nkeys, capkeys;
};

struct scope {
    const struct idoc_segment *seg;  /* NULL: the IDoc's top level */
    const struct scope *parent;
    const struct mrecord *rec;
    struct val *vars;
    const char *where;               /* "E1EDP01[2]" for messages */
};

static int efail(struct ectx *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int efail(struct ectx *e, const char *fmt, ...)
{
    if (e->failed) return -1;
    e->failed = 1;
    if (e->err && e->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err, e->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int strl_add(struct strl *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s)) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n] = strdup(s);
    if (!l->v[l->n]) return -1;
    l->n++;
    return 0;
}

static void strl_clear(struct strl *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    l->n = 0;
}

static void strl_free(struct strl *l)
{
    strl_clear(l);
    free(l->v);
    l->v = NULL;
    l->cap = 0;
}

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* ---- the IDoc model -------------------------------------------------------- */

/* Field and segment names are compared first byte first: these linear
 * searches ran ~90 strcmp calls a record, most of them misses. */
static int name_eq(const char *a, const char *b)
{
    return a && a[0] == b[0] && !strcmp(a, b);
}

static const char *seg_field(const struct idoc_segment *s, const char *name)
{
    for (size_t i = 0; i < s->nfields; i++)
        if (name_eq(s->fields[i].name, name)) return s->fields[i].value;
    return NULL;
}

static const char *control_field(const struct idoc *d, const char *name)
{
    for (size_t i = 0; i < d->ncontrol; i++)
        if (name_eq(d->control[i].name, name)) return d->control[i].value;
    return NULL;
}

static int trimmed_eq(const char *v, const char *want)
{
    if (!v) return want[0] == 0;
    while (is_blank(*v)) v++;
    size_t n = strlen(v);
    while (n > 0 && is_blank(v[n - 1])) n--;
    return strlen(want) == n && !strncmp(v, want, n);
}

static int step_match(const struct idoc_segment *s, const struct mstep *st)
{
    if (!name_eq(s->name, st->seg)) return 0;
    for (size_t k = 0; k < st->nfilters; k++)
        if (trimmed_eq(seg_field(s, st->filters[k].field), st->filters[k].value) == st->filters[k].neg) return 0;
    return 1;
}

static const struct idoc_segment *find_first(const struct idoc_segment *list, size_t n,
                                             const struct mpath *p, size_t step)
{
    for (size_t i = 0; i < n; i++) {
        if (!step_match(&list[i], &p->steps[step])) continue;
        if (step + 1 == p->nsteps) return &list[i];
        const struct idoc_segment *r = find_first(list[i].children, list[i].nchildren, p, step + 1);
        if (r) return r;
    }
    return NULL;
}

typedef int (*seg_visit)(void *ud, const struct idoc_segment *s);

static int find_all(const struct idoc_segment *list, size_t n, const struct mpath *p, size_t step,
                    seg_visit fn, void *ud)
{
    for (size_t i = 0; i < n; i++) {
        if (!step_match(&list[i], &p->steps[step])) continue;
        if (step + 1 == p->nsteps) {
            if (fn(ud, &list[i])) return -1;
        } else if (find_all(list[i].children, list[i].nchildren, p, step + 1, fn, ud)) {
            return -1;
        }
    }
    return 0;
}

static void start_list(const struct ectx *e, const struct scope *sc, const struct mpath *p,
                       const struct idoc_segment **list, size_t *n)
{
    if (p->absolute || !sc->seg) {
        *list = e->doc->segments;
        *n = e->doc->nsegments;
    } else {
        *list = sc->seg->children;
        *n = sc->seg->nchildren;
    }
}

/* A field value as the mapping sees it: trimmed; "" absent; "/" no change. */
static struct val text_val(const char *raw)
{
    struct val v = {V_ABSENT, NULL, 0, {0, 0}};
    if (!raw) return v;
    while (is_blank(*raw)) raw++;
    size_t n = strlen(raw);
    while (n > 0 && is_blank(raw[n - 1])) n--;
    if (n == 0) return v;
    if (n == 1 && raw[0] == '/') {
        v.t = V_NOCHANGE;
        return v;
    }
    v.t = V_TEXT;
    v.s = raw;
    v.n = n;
    return v;
}

static struct val eval_path(struct ectx *e, const struct scope *sc, const struct mpath *p)
{
    if (p->control) return text_val(control_field(e->doc, p->field));
    const struct idoc_segment *seg;
    if (p->nsteps == 0) {
        seg = p->absolute ? NULL : sc->seg;
    } else {
        const struct idoc_segment *list;
        size_t n;
        start_list(e, sc, p, &list, &n);
        seg = find_first(list, n, p, 0);
    }
    return text_val(seg ? seg_field(seg, p->field) : NULL);
}

/* ---- evaluation ------------------------------------------------------------ */

static struct val eval(struct ectx *e, const struct scope *sc, const struct mvalue *v);
static int eval_cond(struct ectx *e, const struct scope *sc, const struct mcond *c);

/* Text form of a value (TEXT, DEC, RAW); NULL for the others. */
static const char *val_text(struct ectx *e, const struct val *v, size_t *n)
{
    if (v->t == V_TEXT || v->t == V_RAW) {
        *n = v->n;
        return v->s;
    }
    if (v->t == V_DEC) {
        char buf[64];
        size_t k = mapping_dec_format(&v->d, buf, sizeof buf);
        *n = k;
        return adup(&e->ar, buf, k);
    }
    return NULL;
}

static const char *where_of(const struct scope *sc)
{
    return sc->where && *sc->where ? sc->where : "IDoc";
}

/* "E1EDP01[2]/MENGE" (or just the path at the top level) for messages */
static const char *loc(struct ectx *e, const struct scope *sc, const char *what)
{
    if (!sc->where || !*sc->where) return what;
    size_t n = strlen(sc->where) + strlen(what) + 2;
    char *p = aalloc(&e->ar, n);
    if (!p) return what;
    UTIL_CONCAT(p, n, sc->where, "/", what);
    return p;
}

static int to_dec(struct ectx *e, const struct scope *sc, struct val *v, const char *what)
{
    if (v->t == V_DEC) return 0;
    if (v->t != V_TEXT && v->t != V_RAW) return 0;
    struct mdec d;
    int rc = mapping_dec_parse(v->s, v->n, &d);
    if (rc == 1) {
        v->t = V_ABSENT;
        return 0;
    }
    if (rc < 0)
        return efail(e, "%s: '%.*s' is not a decimal", loc(e, sc, what), (int)(v->n > 60 ? 60 : v->n), v->s);
    v->t = V_DEC;
    v->d = d;
    return 0;
}

static const struct mtable_entry *table_find(const struct mtable *t, const char *k, size_t n)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strncmp(t->e[mid].key, k, n);
        if (c == 0 && t->e[mid].key[n] != 0) c = 1;
        if (c == 0) return &t->e[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static const char *spec_text(const struct mvalue *v)
{
    if (v->path) return v->path->text;
    if (v->src == SRC_VAR) return v->text;
    if (v->src == SRC_CONCAT) return "concat";
    return "value";
}

static int apply_xf(struct ectx *e, const struct scope *sc, const struct mxform *x, struct val *v,
                    const struct mvalue *spec)
{
    const char *what = spec_text(spec);
    if (v->t == V_NOCHANGE || v->t == V_OMIT) return 0;
    if (v->t == V_DEC && x->kind != XF_DIV && x->kind != XF_ROUND && x->kind != XF_DECIMAL) {
        size_t n;
        const char *s = val_text(e, v, &n);
        if (!s) return efail(e, "out of memory");
        v->t = V_TEXT;
        v->s = s;
        v->n = n;
    }
    switch (x->kind) {
    case XF_TRIM:
        if (v->t == V_TEXT) {
            while (v->n && is_blank(*v->s)) v->s++, v->n--;
            while (v->n && is_blank(v->s[v->n - 1])) v->n--;
            if (!v->n) v->t = V_ABSENT;
        }
        return 0;
    case XF_UPPER:
    case XF_LOWER:
        if (v->t == V_TEXT) {
            char *p = adup(&e->ar, v->s, v->n);
            if (!p) return efail(e, "out of memory");
            for (size_t i = 0; i < v->n; i++) {
                if (x->kind == XF_UPPER && p[i] >= 'a' && p[i] <= 'z') p[i] = (char)(p[i] - 32);
                if (x->kind == XF_LOWER && p[i] >= 'A' && p[i] <= 'Z') p[i] = (char)(p[i] + 32);
            }
            v->s = p;
        }
        return 0;
    case XF_ALPHA10:
        if (v->t == V_TEXT) {
            size_t cap = v->n + 12;
            char *p = aalloc(&e->ar, cap);
            if (!p) return efail(e, "out of memory");
            int k = mapping_alpha10(v->s, v->n, p, cap);
            if (k <= 0) v->t = V_ABSENT;
            else {
                v->s = p;
                v->n = (size_t)k;
            }
        }
        return 0;
    case XF_DECIMAL:
        return to_dec(e, sc, v, what);
    case XF_DATE:
        if (v->t == V_TEXT) {
            char *p = aalloc(&e->ar, 11);
            if (!p) return efail(e, "out of memory");
            int rc = mapping_date(v->s, v->n, p);
            if (rc < 0)
                return efail(e, "%s: '%.*s' is not a date (YYYYMMDD)", loc(e, sc, what),
                             (int)(v->n > 40 ? 40 : v->n), v->s);
            if (rc == 1) v->t = V_ABSENT;
            else {
                v->s = p;
                v->n = 10;
            }
        }
        return 0;
    case XF_TABLE: {
        const char *k = "";
        size_t n = 0;
        if (v->t == V_TEXT || v->t == V_RAW) {
            k = v->s;
            n = v->n;
        } else if (v->t != V_ABSENT && v->t != V_NULL) {
            return 0;
        }
        const struct mtable_entry *en = table_find(x->table, k, n);
        if (!en) {
            v->t = V_OMIT;  /* no entry: the column is not sent */
            return 0;
        }
        v->t = en->raw ? V_RAW : V_TEXT;
        v->s = en->out;
        v->n = strlen(en->out);
        if (!en->raw && v->n == 0) v->t = V_ABSENT;
        return 0;
    }
    case XF_DIV: {
        if (to_dec(e, sc, v, what)) return -1;
        if (v->t != V_DEC) return 0;
        struct val d = eval(e, sc, x->divisor);
        if (e->failed) return -1;
        if (d.t == V_NOCHANGE) {
            v->t = V_NOCHANGE;
            return 0;
        }
        if (to_dec(e, sc, &d, spec_text(x->divisor))) return -1;
        if (d.t != V_DEC || mapping_dec_is_zero(&d.d)) {
            if (!x->if_zero)
                return efail(e, "%s: division by zero or by a blank value", loc(e, sc, spec_text(x->divisor)));
            mapping_dec_parse(x->if_zero, strlen(x->if_zero), &d.d);
            d.t = V_DEC;
        }
        struct mdec q;
        if (mapping_dec_div(&v->d, &d.d, x->n, &q))
            return efail(e, "%s: decimal out of range", loc(e, sc, what));
        v->d = q;
        return 0;
    }
    case XF_ROUND: {
        if (to_dec(e, sc, v, what)) return -1;
        if (v->t != V_DEC) return 0;
        struct mdec q;
        if (mapping_dec_round(&v->d, x->n, &q)) return efail(e, "%s: decimal out of range", loc(e, sc, what));
        v->d = q;
        return 0;
    }
    case XF_TRUNCATE:
        if (v->t == V_TEXT) v->n = mapping_utf8_prefix(v->s, v->n, (size_t)x->n);
        return 0;
    }
    return 0;
}

static struct val absent(void)
{
    struct val v = {V_ABSENT, NULL, 0, {0, 0}};
    return v;
}

static const struct val *find_var(const struct scope *sc, const char *name)
{
    for (; sc; sc = sc->parent)
        if (sc->rec && sc->vars)
            for (size_t i = 0; i < sc->rec->nvars; i++)
                if (!strcmp(sc->rec->vars[i].name, name)) return &sc->vars[i];
    return NULL;
}

struct collect {
    struct ectx *e;
    const struct scope *sc;
    const struct mvalue *v;
    struct val acc;
    int nochange;
};

static int collect_one(void *ud, const struct idoc_segment *s)
{
    struct collect *c = ud;
    struct val x = text_val(seg_field(s, c->v->path->field));
    if (x.t == V_NOCHANGE) {
        c->nochange = 1;
        return 0;
    }
    for (size_t i = 0; i < c->v->neach; i++)
        if (apply_xf(c->e, c->sc, &c->v->each[i], &x, c->v)) return -1;
    if (x.t == V_NOCHANGE) {
        c->nochange = 1;
        return 0;
    }
    if (x.t != V_TEXT && x.t != V_DEC && x.t != V_RAW) return 0;
    if (c->v->src == SRC_SUM) {
        if (to_dec(c->e, c->sc, &x, c->v->path->text)) return -1;
        if (x.t != V_DEC) return 0;
        if (c->acc.t != V_DEC) {
            c->acc = x;
            return 0;
        }
        if (mapping_dec_add(&c->acc.d, &x.d))
            return efail(c->e, "%s: sum out of range", loc(c->e, c->sc, c->v->path->text));
        return 0;
    }
    /* min / max: numerically when both are decimals, else as text */
    if (c->acc.t == V_ABSENT) {
        c->acc = x;
        return 0;
    }
    int cmp;
    if (x.t == V_DEC && c->acc.t == V_DEC) {
        struct mdec diff = x.d, neg = c->acc.d;
        neg.m = -neg.m;
        if (mapping_dec_add(&diff, &neg)) return efail(c->e, "decimal out of range");
        cmp = diff.m < 0 ? -1 : diff.m > 0;
    } else {
        size_t na, nb;
        const char *a = val_text(c->e, &x, &na), *b = val_text(c->e, &c->acc, &nb);
        if (!a || !b) return efail(c->e, "out of memory");
        cmp = strncmp(a, b, na < nb ? na : nb);
        if (cmp == 0) cmp = na < nb ? -1 : na > nb;
    }
    if ((c->v->src == SRC_MIN && cmp < 0) || (c->v->src == SRC_MAX && cmp > 0)) c->acc = x;
    return 0;
}

/* Register (once per IDoc) a lookup this IDoc needs and ask the cache. */
static struct plookup *add_lookup(struct ectx *e, const struct mvalue *v, const char *value)
{
    struct mbuf b = {0};
    mapping_buf_puts(&b, v->entity);
    mapping_buf_putc(&b, ':');
    mapping_buf_puts(&b, v->column);
    mapping_buf_putc(&b, '=');
    mapping_buf_puts(&b, value);
    if (b.oom) {
        free(b.p);
        efail(e, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < e->nlk; i++)
        if (!strcmp(e->lk[i].id, b.p)) {
            free(b.p);
            return &e->lk[i];
        }
    if (e->nlk == e->caplk) {
        size_t nc = e->caplk ? e->caplk * 2 : 4;
        struct plookup *nl = realloc(e->lk, nc * sizeof *nl);
        if (!nl) {
            free(b.p);
            efail(e, "out of memory");
            return NULL;
        }
        e->lk = nl;
        e->caplk = nc;
    }
    struct plookup *l = &e->lk[e->nlk++];
    memset(l, 0, sizeof *l);
    l->id = b.p;
    l->spec = v;
    l->value = strdup(value);
    l->state = MAPPING_LOOKUP_MISS;
    if (!l->value) {
        efail(e, "out of memory");
        return NULL;
    }
    if (e->lookups && e->lookups->get) {
        char guid[128] = "";
        int st = e->lookups->get(e->lookups->ud, l->id, guid, sizeof guid);
        if (st == MAPPING_LOOKUP_HIT && guid[0]) {
            l->state = MAPPING_LOOKUP_HIT;
            l->guid = strdup(guid);
            if (!l->guid) {
                efail(e, "out of memory");
                return NULL;
            }
        } else if (st == MAPPING_LOOKUP_PENDING) {
            l->state = MAPPING_LOOKUP_PENDING;
        }
    }
    return l;
}

static struct val eval_inner(struct ectx *e, const struct scope *sc, const struct mvalue *v)
{
    struct val r = absent();
    switch (v->src) {
    case SRC_PATH:
        return eval_path(e, sc, v->path);
    case SRC_CONST:
        if (v->const_kind == CONST_NULL) r.t = V_NULL;
        else {
            r.t = v->const_kind == CONST_RAW ? V_RAW : V_TEXT;
            r.s = v->text;
            r.n = strlen(v->text);
            if (r.t == V_TEXT && r.n == 0) r.t = V_ABSENT;
        }
        return r;
    case SRC_VAR: {
        const struct val *x = find_var(sc, v->text);
        if (!x) {
            efail(e, "%s: unknown variable '%s'", where_of(sc), v->text);
            return r;
        }
        return *x;
    }
    case SRC_CONCAT: {
        struct val parts[16], *pv = parts;
        if (v->nparts > 16) {
            pv = aalloc(&e->ar, v->nparts * sizeof *pv);
            if (!pv) {
                efail(e, "out of memory");
                return r;
            }
        }
        size_t total = 0, present = 0, seplen = strlen(v->sep);
        for (size_t i = 0; i < v->nparts; i++) {
            pv[i] = eval(e, sc, v->parts[i]);
            if (e->failed) return r;
            if (pv[i].t == V_NOCHANGE) {
                r.t = V_NOCHANGE;
                return r;
            }
            if (pv[i].t == V_DEC) {
                size_t n;
                const char *s = val_text(e, &pv[i], &n);
                pv[i].t = V_TEXT;
                pv[i].s = s;
                pv[i].n = n;
            }
            if (pv[i].t == V_TEXT || pv[i].t == V_RAW) {
                total += pv[i].n + seplen;
                present++;
            } else if (v->all) {
                return r;
            }
        }
        if (!present) return r;
        char *out = aalloc(&e->ar, total + 1), *p = out;
        if (!out) {
            efail(e, "out of memory");
            return r;
        }
        int first = 1;
        for (size_t i = 0; i < v->nparts; i++) {
            if (pv[i].t != V_TEXT && pv[i].t != V_RAW) continue;
            if (!first) {
                memcpy(p, v->sep, seplen);
                p += seplen;
            }
            memcpy(p, pv[i].s, pv[i].n);
            p += pv[i].n;
            first = 0;
        }
        *p = 0;
        r.t = V_TEXT;
        r.s = out;
        r.n = (size_t)(p - out);
        return r;
    }
    case SRC_SUM:
    case SRC_MIN:
    case SRC_MAX: {
        struct collect c = {e, sc, v, absent(), 0};
        const struct idoc_segment *list;
        size_t n;
        if (v->path->control || v->path->nsteps == 0) {
            /* a single value: treat it as the only element */
            struct val x = eval_path(e, sc, v->path);
            if (x.t == V_NOCHANGE) return x;
            for (size_t i = 0; i < v->neach; i++)
                if (apply_xf(e, sc, &v->each[i], &x, v)) return r;
            if (v->src == SRC_SUM && to_dec(e, sc, &x, v->path->text)) return r;
            return x;
        }
        start_list(e, sc, v->path, &list, &n);
        if (find_all(list, n, v->path, 0, collect_one, &c)) return r;
        if (c.nochange) {
            r.t = V_NOCHANGE;
            return r;
        }
        return c.acc;
    }
    case SRC_WHEN:
        for (size_t i = 0; i < v->nwhens; i++) {
            int c = eval_cond(e, sc, v->whens[i].cond);
            if (e->failed) return r;
            if (c == C_TRUE) return eval(e, sc, v->whens[i].then);
            if (c == C_UNKNOWN) {
                r.t = V_NOCHANGE;
                return r;
            }
        }
        return r;
    case SRC_BIND:
    case SRC_LOOKUP: {
        struct val x = eval(e, sc, v->inner);
        if (e->failed) return r;
        if (x.t == V_NOCHANGE) return x;
        if (x.t != V_TEXT && x.t != V_DEC && x.t != V_RAW) return r;
        size_t n;
        const char *s = val_text(e, &x, &n);
        if (!s) {
            efail(e, "out of memory");
            return r;
        }
        struct mbuf b = {0};
        mapping_buf_putc(&b, '/');
        mapping_buf_puts(&b, v->entity);
        mapping_buf_putc(&b, '(');
        if (v->src == SRC_BIND) {
            mapping_buf_puts(&b, v->column);
            mapping_buf_putc(&b, '=');
            mapping_buf_key_literal(&b, s, n, 1);
            mapping_buf_putc(&b, ')');
            if (!b.oom && !e->classify && strl_add(&e->binds, b.p + 1)) b.oom = 1;
        } else {
            char *sv = adup(&e->ar, s, n);
            struct plookup *l = sv ? add_lookup(e, v, sv) : NULL;
            if (!l) {
                free(b.p);
                if (!e->failed) efail(e, "out of memory");
                return r;
            }
            if (l->state == MAPPING_LOOKUP_HIT) {
                mapping_buf_puts(&b, l->guid);
            } else {
                mapping_buf_puts(&b, "{{");
                mapping_buf_puts(&b, l->id);
                mapping_buf_puts(&b, "}}");
                if (!e->classify && strl_add(&e->needs, l->id)) b.oom = 1;
            }
            mapping_buf_putc(&b, ')');
        }
        if (b.oom) {
            free(b.p);
            efail(e, "out of memory");
            return r;
        }
        r.t = V_TEXT;
        r.s = adup(&e->ar, b.p, b.n);
        r.n = b.n;
        free(b.p);
        if (!r.s) efail(e, "out of memory");
        return r;
    }
    case SRC_OBJECT: {
        struct mbuf b = {0};
        mapping_buf_putc(&b, '{');
        int first = 1;
        for (size_t i = 0; i < v->nfields; i++) {
            struct val x = eval(e, sc, v->fields[i].v);
            if (e->failed) {
                free(b.p);
                return r;
            }
            if (x.t == V_NOCHANGE || x.t == V_OMIT) continue;
            if (!first) mapping_buf_putc(&b, ',');
            first = 0;
            mapping_buf_json_str(&b, v->fields[i].name, strlen(v->fields[i].name));
            mapping_buf_putc(&b, ':');
            if (x.t == V_TEXT) {
                size_t n = v->fields[i].maxlen ? mapping_utf8_prefix(x.s, x.n, (size_t)v->fields[i].maxlen) : x.n;
                mapping_buf_json_str(&b, x.s, n);
            } else if (x.t == V_RAW) {
                mapping_buf_put(&b, x.s, x.n);
            } else if (x.t == V_DEC) {
                char buf[64];
                size_t n = mapping_dec_format(&x.d, buf, sizeof buf);
                mapping_buf_put(&b, buf, n);
            } else {
                mapping_buf_puts(&b, "null");
            }
        }
        mapping_buf_putc(&b, '}');
        if (b.oom) {
            free(b.p);
            efail(e, "out of memory");
            return r;
        }
        r.t = V_RAW;
        r.s = adup(&e->ar, b.p, b.n);
        r.n = b.n;
        free(b.p);
        return r;
    }
    }
    return r;
}

static struct val eval(struct ectx *e, const struct scope *sc, const struct mvalue *v)
{
    struct val r = eval_inner(e, sc, v);
    if (e->failed) return absent();
    for (size_t i = 0; i < v->nxf; i++)
        if (apply_xf(e, sc, &v->xf[i], &r, v)) return absent();
    if ((r.t == V_ABSENT || r.t == V_NULL) && v->otherwise) {
        r = eval(e, sc, v->otherwise);
        if (e->failed) return absent();
    }
    if (r.t == V_TEXT && v->maxlen) r.n = mapping_utf8_prefix(r.s, r.n, (size_t)v->maxlen);
    return r;
}

static int eval_cond(struct ectx *e, const struct scope *sc, const struct mcond *c)
{
    switch (c->op) {
    case COND_ANY:
    case COND_ALL: {
        int unknown = 0;
        for (size_t i = 0; i < c->nsubs; i++) {
            int r = eval_cond(e, sc, &c->subs[i]);
            if (e->failed) return C_FALSE;
            if (c->op == COND_ANY && r == C_TRUE) return C_TRUE;
            if (c->op == COND_ALL && r == C_FALSE) return C_FALSE;
            if (r == C_UNKNOWN) unknown = 1;
        }
        if (unknown) return C_UNKNOWN;
        return c->op == COND_ALL ? C_TRUE : C_FALSE;
    }
    case COND_NOT: {
        int r = eval_cond(e, sc, &c->subs[0]);
        return r == C_UNKNOWN ? C_UNKNOWN : r == C_TRUE ? C_FALSE : C_TRUE;
    }
    default:
        break;
    }
    struct val v = eval(e, sc, c->v);
    if (e->failed) return C_FALSE;
    if (v.t == V_NOCHANGE) return C_UNKNOWN;
    int blank = v.t == V_ABSENT || v.t == V_NULL || v.t == V_OMIT;
    if (c->op == COND_BLANK) return blank ? C_TRUE : C_FALSE;
    if (c->op == COND_PRESENT) return blank ? C_FALSE : C_TRUE;
    size_t n = 0;
    const char *s = blank ? "" : val_text(e, &v, &n);
    if (!s) return C_FALSE;
    for (size_t i = 0; i < c->nvals; i++)
        if (strlen(c->vals[i]) == n && !strncmp(c->vals[i], s, n)) return C_TRUE;
    return C_FALSE;
}

/* ---- body writing ---------------------------------------------------------- */

static void put_field(struct mbuf *b, int *first, const char *name, const struct val *v, int maxlen)
{
    if (v->t == V_NOCHANGE || v->t == V_OMIT) return;
    mapping_buf_putc(b, *first ? '{' : ',');
    *first = 0;
    mapping_buf_json_str(b, name, strlen(name));
    mapping_buf_putc(b, ':');
    switch (v->t) {
    case V_TEXT: {
        size_t n = maxlen > 0 ? mapping_utf8_prefix(v->s, v->n, (size_t)maxlen) : v->n;
        mapping_buf_json_str(b, v->s, n);
        break;
    }
    case V_RAW:
        mapping_buf_put(b, v->s, v->n);
        break;
    case V_DEC: {
        char buf[64];
        size_t n = mapping_dec_format(&v->d, buf, sizeof buf);
        mapping_buf_put(b, buf, n);
        break;
    }
    default:
        mapping_buf_put(b, "null", 4);
    }
}

/* ---- ops ------------------------------------------------------------------- */

void mapping_ops_init(struct mapping_ops *ops)
{
    memset(ops, 0, sizeof *ops);
}

static void op_free(struct mapping_op *o)
{
    free(o->path);
    free(o->body);
    free(o->entity);
    free(o->key);
    free(o->lookup);
    free(o->lookup_id_column);
    for (size_t i = 0; i < o->nneeds; i++) free(o->needs[i]);
    free(o->needs);
    for (size_t i = 0; i < o->nbinds; i++) free(o->binds[i]);
    free(o->binds);
    free(o->warning);
}

void mapping_ops_clear(struct mapping_ops *ops)
{
    for (size_t i = 0; i < ops->n; i++) op_free(&ops->v[i]);
    ops->n = 0;
    ops->next_changeset = 0;
}

void mapping_ops_free(struct mapping_ops *ops)
{
    mapping_ops_clear(ops);
    free(ops->v);
    mapping_ops_init(ops);
}

static struct mapping_op *op_new(struct ectx *e, struct mapping_ops *ops)
{
    if (ops->n == ops->cap) {
        size_t nc = ops->cap ? ops->cap * 2 : 8;
        struct mapping_op *nv = realloc(ops->v, nc * sizeof *nv);
        if (!nv) {
            efail(e, "out of memory");
            return NULL;
        }
        ops->v = nv;
        ops->cap = nc;
    }
    struct mapping_op *o = &ops->v[ops->n++];
    memset(o, 0, sizeof *o);
    o->depends_on = -1;
    util_copy(o->docnum, sizeof o->docnum, e->doc->docnum);
    return o;
}

static char **take_strl(struct strl *l, size_t *n)
{
    char **v = l->v;
    *n = l->n;
    l->v = NULL;
    l->n = l->cap = 0;
    return v;
}

/* ---- links ------------------------------------------------------------------ */

static int link_get(struct ectx *e, const char *party, const char *number, struct mapping_link_rec *rec)
{
    memset(rec, 0, sizeof *rec);
    for (size_t i = e->npl; i-- > 0;)
        if (!strcmp(e->pl[i].party, party) && !strcmp(e->pl[i].number, number)) {
            *rec = e->pl[i].rec;
            return 1;
        }
    if (!e->links || !e->links->get) return 0;
    int rc = e->links->get(e->links->ud, party, number, rec);
    if (rc < 0) return efail(e, "link store: cannot read %s %s", party, number);
    if (rc == 0) memset(rec, 0, sizeof *rec);
    return rc;
}

static int link_put(struct ectx *e, const char *party, const char *number, const struct mapping_link_rec *rec)
{
    if (e->npl == e->cappl) {
        size_t nc = e->cappl ? e->cappl * 2 : 4;
        struct plink *np = realloc(e->pl, nc * sizeof *np);
        if (!np) return efail(e, "out of memory");
        e->pl = np;
        e->cappl = nc;
    }
    struct plink *p = &e->pl[e->npl++];
    util_copy(p->party, sizeof p->party, party);
    util_copy(p->number, sizeof p->number, number);
    p->rec = *rec;
    return 0;
}

static void set_rec(struct mapping_link_rec *r, const char *other, int exists, int merged)
{
    util_copy(r->other, sizeof r->other, other);
    r->exists = exists;
    r->merged = merged;
}

/* ---- records ------------------------------------------------------------------ */

struct segvec {
    const struct idoc_segment **v;
    size_t n, cap;
    struct arena *ar;
};

static int segvec_add(void *ud, const struct idoc_segment *s)
{
    struct segvec *sv = ud;
    if (sv->n == sv->cap) {
        size_t nc = sv->cap ? sv->cap * 2 : 16;
        const struct idoc_segment **nv = aalloc(sv->ar, nc * sizeof *nv);
        if (!nv) return -1;
        if (sv->n) memcpy(nv, sv->v, sv->n * sizeof *nv);
        sv->v = nv;
        sv->cap = nc;
    }
    sv->v[sv->n++] = s;
    return 0;
}

/* "party:value" as stored with a queued record: keys are space separated,
 * so blanks, control characters and '%' in the value are %XX-encoded. */
static char *business_key(struct ectx *e, const char *party, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(party) + 3 * strlen(value) + 2;
    char *s = aalloc(&e->ar, n), *p = s;
    if (!s) return NULL;
    p += UTIL_CONCAT(s, n, party, ":");
    for (const unsigned char *v = (const unsigned char *)value; *v; v++) {
        if (*v <= 0x20 || *v == '%' || *v == 0x7f) {
            *p++ = '%';
            *p++ = hex[*v >> 4];
            *p++ = hex[*v & 15];
        } else {
            *p++ = (char)*v;
        }
    }
    *p = 0;
    return s;
}

static int add_key(struct ectx *e, int level, const char *party, const char *value)
{
    char *s = business_key(e, party, value);
    if (!s) return efail(e, "out of memory");
    for (size_t i = 0; i < e->nkeys; i++)
        if (!strcmp(e->keys[i].s, s)) return 0;
    if (e->nkeys == e->capkeys) {
        size_t nc = e->capkeys ? e->capkeys * 2 : 8;
        void *nk = aalloc(&e->ar, nc * sizeof *e->keys);
        if (!nk) return efail(e, "out of memory");
        if (e->nkeys) memcpy(nk, e->keys, e->nkeys * sizeof *e->keys);
        e->keys = nk;
        e->capkeys = nc;
    }
    e->keys[e->nkeys].level = level;
    e->keys[e->nkeys].s = s;
    e->nkeys++;
    return 0;
}

static int run_record(struct ectx *e, const struct mrecord *r, const struct scope *parent, long parent_op,
                      int parent_cs, int level);

static int eval_key(struct ectx *e, const struct scope *sc, const struct mrecord *r, const char **key)
{
    struct val k = eval(e, sc, r->key);
    if (e->failed) return -1;
    if (k.t == V_NOCHANGE)
        return efail(e, "%s: key %s is '/' (no change) - a key must have a value", where_of(sc), r->key_column);
    size_t n = 0;
    const char *s = (k.t == V_TEXT || k.t == V_DEC || k.t == V_RAW) ? val_text(e, &k, &n) : NULL;
    if (!s || n == 0)
        return efail(e, "%s: no value for the key %s (%s)", where_of(sc), r->key_column, spec_text(r->key));
    if (n > 900 || (r->key_maxlen && mapping_utf8_prefix(s, n, (size_t)r->key_maxlen) < n))
        return efail(e, "%s: key %s '%.40s...' is longer than the key column allows", where_of(sc), r->key_column, s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20) return efail(e, "%s: key %s holds a control character", where_of(sc), r->key_column);
    char *p = adup(&e->ar, s, n);
    if (!p) return efail(e, "out of memory");
    *key = p;
    return 0;
}

static int one_record(struct ectx *e, const struct mrecord *r, struct scope *sc, long parent_op, int parent_cs,
                      int level)
{
    /* variables, in order (a variable may use the ones before it) */
    if (r->nvars) {
        sc->vars = aalloc(&e->ar, r->nvars * sizeof *sc->vars);
        if (!sc->vars) return efail(e, "out of memory");
        for (size_t i = 0; i < r->nvars; i++) sc->vars[i] = absent();
        for (size_t i = 0; i < r->nvars; i++) {
            sc->vars[i] = eval(e, sc, r->vars[i].v);
            if (e->failed) return -1;
        }
    }
    const char *key = NULL;
    if (eval_key(e, sc, r, &key)) return -1;

    /* link: the other party's number named by this IDoc */
    const char *other_doc = NULL;
    if (r->link) {
        struct val o = eval(e, sc, r->link->other);
        if (e->failed) return -1;
        size_t n;
        if (o.t == V_TEXT || o.t == V_DEC || o.t == V_RAW) {
            const char *s = val_text(e, &o, &n);
            if (!s) return efail(e, "out of memory");
            if (n >= MAPPING_NUMBER_MAX) return efail(e, "%s: linked number '%.40s' is too long", where_of(sc), s);
            other_doc = adup(&e->ar, s, n);
        }
    }

    if (e->classify) {
        if (r->business_key && add_key(e, level, r->business_key, key)) return -1;
        if (other_doc && add_key(e, level, r->link->other_party, other_doc)) return -1;
        for (size_t i = 0; i < r->nchildren; i++)
            if (run_record(e, &r->children[i], sc, -1, 0, level + 1)) return -1;
        return 0;
    }
    if (r->key_column && strlen(key) >= MAPPING_NUMBER_MAX && r->link)
        return efail(e, "%s: key '%.40s' is too long for linking", where_of(sc), key);

    int cs = parent_cs ? parent_cs : (r->changeset ? ++e->changesets : 0);
    const char *bkey = r->business_key ? business_key(e, r->business_key, key) : "";
    if (!bkey) return efail(e, "out of memory");

    int del = 0;
    if (r->delete_when) {
        del = eval_cond(e, sc, r->delete_when) == C_TRUE;
        if (e->failed) return -1;
    }
    strl_clear(&e->needs);
    strl_clear(&e->binds);
    if (del) {
        struct mapping_op *o = op_new(e, &e->ops);
        if (!o) return -1;
        o->kind = MAPPING_OP_DELETE;
        o->method = "DELETE";
        o->path = mapping_key_path(r->entity, r->key_column, key);
        o->entity = strdup(r->entity);
        o->key = bkey[0] ? strdup(bkey) : NULL;
        o->changeset = cs;
        o->not_found_ok = 1;
        o->depends_on = cs && cs == parent_cs ? -1 : parent_op;
        if (!o->path || !o->entity || (bkey[0] && !o->key)) return efail(e, "out of memory");
        return 0;  /* a deleted record's children and actions are not mapped */
    }

    /* where to write: own key, or (linking) the other party's key */
    const char *addr_col = r->key_column, *addr_val = key;
    const char *body_key_col = NULL, *body_key_val = NULL;
    int linked = 0;
    char warning[600] = "";
    if (r->link) {
        const struct mlink *L = r->link;
        struct mapping_link_rec rn, ro, tmp;
        if (link_get(e, L->party, key, &rn) < 0) return -1;
        const char *o = other_doc ? other_doc : (rn.other[0] ? rn.other : NULL);
        if (!o) {
            set_rec(&tmp, rn.other, 1, rn.merged);
            if (link_put(e, L->party, key, &tmp)) return -1;
        } else {
            if (other_doc && rn.other[0] && strcmp(rn.other, other_doc)) {
                /* SAP now links this number to another partner */
                struct mapping_link_rec old;
                if (link_get(e, L->other_party, rn.other, &old) < 0) return -1;
                snprintf(warning, sizeof warning, "link changed: %s %s was linked to %s %s, now to %s %s",
                         L->party, key, L->other_party, rn.other, L->other_party, other_doc);
                set_rec(&tmp, "", rn.merged ? 0 : old.exists, 0);
                if (link_put(e, L->other_party, rn.other, &tmp)) return -1;
                rn.merged = 0;
            }
            char *ocopy = adup(&e->ar, o, strlen(o));
            if (!ocopy) return efail(e, "out of memory");
            o = ocopy;
            if (link_get(e, L->other_party, o, &ro) < 0) return -1;
            int o_taken = ro.merged && ro.other[0] && strcmp(ro.other, key);
            if (rn.merged && !strcmp(rn.other, o)) {
                linked = 1;
            } else if (o_taken || (rn.exists && ro.exists)) {
                char *own = mapping_key_path(r->entity, r->key_column, key);
                char *oth = mapping_key_path(r->entity, L->other_key_column, o);
                size_t wl = strlen(warning);
                snprintf(warning + wl, sizeof warning - wl,
                         "%s%s %s and %s %s are linked in SAP but are separate accounts (%s, %s%s%s); "
                         "not merged, only %s is updated",
                         wl ? "; " : "", L->party, key, L->other_party, o, own ? own : "?", oth ? oth : "?",
                         o_taken ? ", which already carries " : "", o_taken ? ro.other : "", own ? own : "?");
                free(own);
                free(oth);
                set_rec(&tmp, o, 1, 0);
                if (link_put(e, L->party, key, &tmp)) return -1;
                set_rec(&tmp, o_taken ? ro.other : key, 1, ro.merged);
                if (link_put(e, L->other_party, o, &tmp)) return -1;
                o = NULL;
            } else if (ro.exists && !rn.exists) {
                /* only the other party's account exists: write into it */
                linked = 1;
                addr_col = L->other_key_column;
                addr_val = o;
                body_key_col = r->key_column;
                body_key_val = key;
            } else {
                linked = 1;
            }
            if (linked) {
                if (!body_key_col) {
                    body_key_col = L->other_key_column;
                    body_key_val = o;
                }
                set_rec(&tmp, o, 1, 1);
                if (link_put(e, L->party, key, &tmp)) return -1;
                set_rec(&tmp, key, 1, 1);
                if (link_put(e, L->other_party, o, &tmp)) return -1;
            }
        }
    }

    /* body */
    struct mbuf b = {0};
    int first = 1;
    for (size_t i = 0; i < r->ncolumns; i++) {
        const struct mfield *f = &r->columns[i];
        const struct mfield *ov = NULL;
        if (linked)
            for (size_t k = 0; k < r->link->ncolumns; k++)
                if (!strcmp(r->link->columns[k].name, f->name)) ov = &r->link->columns[k];
        if (ov) f = ov;
        struct val v = eval(e, sc, f->v);
        if (e->failed) {
            free(b.p);
            return -1;
        }
        put_field(&b, &first, f->name, &v, f->maxlen);
    }
    if (linked) {
        for (size_t k = 0; k < r->link->ncolumns; k++) {
            const struct mfield *f = &r->link->columns[k];
            int dup = 0;
            for (size_t i = 0; i < r->ncolumns; i++)
                if (!strcmp(r->columns[i].name, f->name)) dup = 1;
            if (dup) continue;
            struct val v = eval(e, sc, f->v);
            if (e->failed) {
                free(b.p);
                return -1;
            }
            put_field(&b, &first, f->name, &v, f->maxlen);
        }
        struct val kv = {V_TEXT, body_key_val, strlen(body_key_val), {0, 0}};
        put_field(&b, &first, body_key_col, &kv, 0);
    }
    if (first) mapping_buf_putc(&b, '{');
    mapping_buf_putc(&b, '}');
    if (b.oom) {
        free(b.p);
        return efail(e, "out of memory");
    }

    struct mapping_op *o = op_new(e, &e->ops);
    if (!o) {
        free(b.p);
        return -1;
    }
    long me = (long)e->ops.n - 1;
    o->kind = MAPPING_OP_UPSERT;
    o->method = "PATCH";
    o->body = b.p;
    o->path = mapping_key_path(r->entity, addr_col, addr_val);
    o->entity = strdup(r->entity);
    o->key = bkey[0] ? strdup(bkey) : NULL;
    o->changeset = cs;
    o->depends_on = cs && cs == parent_cs ? -1 : parent_op;
    o->needs = take_strl(&e->needs, &o->nneeds);
    o->binds = take_strl(&e->binds, &o->nbinds);
    if (warning[0]) o->warning = strdup(warning);
    if (!o->path || !o->entity || (bkey[0] && !o->key) || (warning[0] && !o->warning))
        return efail(e, "out of memory");

    for (size_t i = 0; i < r->nchildren; i++)
        if (run_record(e, &r->children[i], sc, me, cs, level + 1)) return -1;

    for (size_t i = 0; i < r->nactions; i++) {
        const struct maction *a = &r->actions[i];
        if (eval_cond(e, sc, a->when) != C_TRUE) {
            if (e->failed) return -1;
            continue;
        }
        strl_clear(&e->needs);
        strl_clear(&e->binds);
        struct mbuf ab = {0};
        int afirst = 1;
        for (size_t k = 0; k < a->nbody; k++) {
            struct val v = eval(e, sc, a->body[k].v);
            if (e->failed) {
                free(ab.p);
                return -1;
            }
            put_field(&ab, &afirst, a->body[k].name, &v, a->body[k].maxlen);
        }
        if (afirst) mapping_buf_putc(&ab, '{');
        mapping_buf_putc(&ab, '}');
        struct mapping_op *ao = op_new(e, &e->ops);
        if (!ao || ab.oom) {
            free(ab.p);
            return efail(e, "out of memory");
        }
        ao->kind = MAPPING_OP_ACTION;
        ao->method = "POST";
        ao->path = strdup(a->path);
        ao->body = ab.p;
        ao->entity = strdup(a->entity);
        ao->key = bkey[0] ? strdup(bkey) : NULL;
        ao->changeset = cs;
        ao->depends_on = cs ? -1 : me;
        ao->needs = take_strl(&e->needs, &ao->nneeds);
        ao->binds = take_strl(&e->binds, &ao->nbinds);
        if (!ao->path || !ao->entity) return efail(e, "out of memory");
    }
    return 0;
}

static int run_record(struct ectx *e, const struct mrecord *r, const struct scope *parent, long parent_op,
                      int parent_cs, int level)
{
    if (!r->for_each) {
        struct scope sc = {parent->seg, parent, r, NULL, parent->where};
        return one_record(e, r, &sc, parent_op, parent_cs, level);
    }
    struct segvec sv = {NULL, 0, 0, &e->ar};
    const struct idoc_segment *list;
    size_t n;
    start_list(e, parent, r->for_each, &list, &n);
    if (find_all(list, n, r->for_each, 0, segvec_add, &sv)) return efail(e, "out of memory");
    if (sv.n == 0 && r->required)
        return efail(e, "%s: no %s segment (route needs one)", where_of(parent), r->for_each->text);
    for (size_t i = 0; i < sv.n; i++) {
        /* "<parent>/<SEGMENT>[n]" for messages: built for every instance,
         * so without snprintf (it was 1.3 % of the delivery CPU). */
        char w[200], num[UTIL_U64_LEN];
        util_u64(num, i + 1);
        if (parent->where && *parent->where)
            UTIL_CONCAT(w, sizeof w, parent->where, "/", r->for_each->text, "[", num, "]");
        else
            UTIL_CONCAT(w, sizeof w, r->for_each->text, "[", num, "]");
        struct scope sc = {sv.v[i], parent, r, NULL, adup(&e->ar, w, strlen(w))};
        if (one_record(e, r, &sc, parent_op, parent_cs, level)) return -1;
    }
    return 0;
}

/* ---- routing ------------------------------------------------------------------ */

static int str_match(char *const *pats, size_t n, const char *v)
{
    if (n == 0) return 1;
    for (size_t i = 0; i < n; i++) {
        const char *p = pats[i];
        size_t pl = strlen(p);
        if (pl && p[pl - 1] == '*') {
            if (!strncmp(p, v, pl - 1)) return 1;
        } else if (!strcmp(p, v)) {
            return 1;
        }
    }
    return 0;
}

static int match(const struct mmatch *mm, const char *idoctyp, const char *mestyp, const char *cimtyp)
{
    return str_match(mm->idoctyp, mm->nidoctyp, idoctyp) && str_match(mm->mestyp, mm->nmestyp, mestyp) &&
           str_match(mm->cimtyp, mm->ncimtyp, cimtyp);
}

/* trimmed copies of the routing fields */
struct rkey {
    char idoctyp[64], mestyp[64], cimtyp[64];
};

static void trim_copy(char *dst, size_t n, const char *s)
{
    if (!s) s = "";
    while (is_blank(*s)) s++;
    size_t k = strlen(s);
    while (k > 0 && is_blank(s[k - 1])) k--;
    if (k >= n) k = n - 1;
    memcpy(dst, s, k);
    dst[k] = 0;
}

static void route_keys(const struct idoc *d, struct rkey *k)
{
    trim_copy(k->idoctyp, sizeof k->idoctyp, d->idoctyp);
    trim_copy(k->mestyp, sizeof k->mestyp, d->mestyp);
    trim_copy(k->cimtyp, sizeof k->cimtyp, d->cimtyp);
    /* no IDOCTYP: the root element names the basic type when there is no
     * extension (with an extension, IDOCTYP is what names the basic type) */
    if (!k->idoctyp[0] && !k->cimtyp[0]) trim_copy(k->idoctyp, sizeof k->idoctyp, d->root);
}

static int find_route(const struct mapping *m, const struct idoc *d, const struct mroute **out)
{
    struct rkey k;
    route_keys(d, &k);
    *out = NULL;
    for (size_t i = 0; i < m->nignore; i++)
        if (match(&m->ignore[i], k.idoctyp, k.mestyp, k.cimtyp)) return MAPPING_IGNORE;
    for (size_t i = 0; i < m->nroutes; i++)
        if (match(&m->routes[i].match, k.idoctyp, k.mestyp, k.cimtyp)) {
            *out = &m->routes[i];
            return MAPPING_DELIVER;
        }
    return MAPPING_UNSUPPORTED;
}

static void ectx_free(struct ectx *e)
{
    for (size_t i = 0; i < e->nlk; i++) {
        free(e->lk[i].id);
        free(e->lk[i].value);
        free(e->lk[i].guid);
    }
    free(e->lk);
    free(e->pl);
    strl_free(&e->needs);
    strl_free(&e->binds);
    mapping_ops_free(&e->ops);
    afree(&e->ar);
}

int mapping_classify(const struct mapping *m, const struct idoc *doc, struct mapping_class *out, char *err,
                     size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    memset(out, 0, sizeof *out);
    const struct mroute *rt;
    out->route = find_route(m, doc, &rt);
    if (out->route == MAPPING_IGNORE) {
        snprintf(out->target, sizeof out->target, "ignore");
        return 0;
    }
    if (out->route != MAPPING_DELIVER) return 0;
    snprintf(out->target, sizeof out->target, "%s", rt->name);
    struct ectx e = {.m = m, .doc = doc, .err = err, .errlen = errlen, .classify = 1};
    struct scope top = {NULL, NULL, NULL, NULL, ""};
    int rc = 0;
    for (size_t i = 0; i < rt->nrecords && rc == 0; i++) rc = run_record(&e, &rt->records[i], &top, -1, 0, 0);
    if (rc == 0 && !e.failed) {
        size_t len = 0;
        int maxlevel = 0;
        for (size_t i = 0; i < e.nkeys; i++)
            if (e.keys[i].level > maxlevel) maxlevel = e.keys[i].level;
        for (int lv = 0; lv <= maxlevel && rc == 0; lv++)
            for (size_t i = 0; i < e.nkeys; i++) {
                if (e.keys[i].level != lv) continue;
                size_t kl = strlen(e.keys[i].s);
                if (len + kl + (len ? 1 : 0) >= sizeof out->keys) {
                    if (lv == 0) rc = efail(&e, "too many business keys for one IDoc");
                    break;
                }
                if (len) out->keys[len++] = ' ';
                memcpy(out->keys + len, e.keys[i].s, kl + 1);
                len += kl;
            }
    }
    if (e.failed) rc = -1;
    ectx_free(&e);
    return rc;
}

/* ---- apply ---------------------------------------------------------------------- */

int mapping_apply(const struct mapping *m, const struct idoc *doc, const struct mapping_links *links,
                  const struct mapping_lookups *lookups, struct mapping_ops *out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = 0;
    const struct mroute *rt;
    int route = find_route(m, doc, &rt);
    if (route == MAPPING_IGNORE) return 1;
    if (route != MAPPING_DELIVER) {
        struct rkey k;
        route_keys(doc, &k);
        snprintf(err, errlen, "message type %s, basic type %s%s%s is not handled by the mapping", k.mestyp,
                 k.idoctyp, k.cimtyp[0] ? ", extension " : "", k.cimtyp);
        return -1;
    }
    struct ectx e = {.m = m, .doc = doc, .err = err, .errlen = errlen, .links = links, .lookups = lookups};
    struct scope top = {NULL, NULL, NULL, NULL, ""};
    int rc = 0;
    for (size_t i = 0; i < rt->nrecords && rc == 0; i++) rc = run_record(&e, &rt->records[i], &top, -1, 0, 0);
    if (e.failed) rc = -1;

    /* commit: lookup GETs, then the writes; then the link store */
    size_t base = out->n;
    size_t nget = 0;
    for (size_t i = 0; rc == 0 && i < e.nlk; i++) {
        if (e.lk[i].state != MAPPING_LOOKUP_MISS) continue;
        const struct mvalue *v = e.lk[i].spec;
        struct mbuf b = {0};
        mapping_buf_puts(&b, v->entity);
        mapping_buf_puts(&b, "?$select=");
        mapping_buf_puts(&b, v->id_column);
        mapping_buf_puts(&b, "&$filter=");
        mapping_buf_puts(&b, v->column);
        mapping_buf_puts(&b, "%20eq%20");
        mapping_buf_key_literal(&b, e.lk[i].value, strlen(e.lk[i].value), 1);
        mapping_buf_puts(&b, "&$top=1");
        struct mapping_op *o = b.oom ? NULL : op_new(&e, out);
        if (!o) {
            free(b.p);
            rc = efail(&e, "out of memory");
            break;
        }
        o->kind = MAPPING_OP_LOOKUP;
        o->method = "GET";
        o->path = b.p;
        o->entity = strdup(v->entity);
        o->lookup = strdup(e.lk[i].id);
        o->lookup_id_column = strdup(v->id_column);
        if (!o->entity || !o->lookup || !o->lookup_id_column) rc = efail(&e, "out of memory");
        nget++;
    }
    if (rc == 0 && out->n + e.ops.n > out->cap) {
        size_t nc = out->cap ? out->cap : 8;
        while (nc < out->n + e.ops.n) nc *= 2;
        struct mapping_op *nv = realloc(out->v, nc * sizeof *nv);
        if (!nv) rc = efail(&e, "out of memory");
        else {
            out->v = nv;
            out->cap = nc;
        }
    }
    if (rc == 0 && links && links->put) {
        for (size_t i = 0; i < e.npl; i++)
            if (links->put(links->ud, e.pl[i].party, e.pl[i].number, &e.pl[i].rec) != 0) {
                rc = efail(&e, "link store: cannot write %s %s", e.pl[i].party, e.pl[i].number);
                break;
            }
    }
    if (rc != 0) {
        for (size_t i = base; i < out->n; i++) op_free(&out->v[i]);
        out->n = base;
        ectx_free(&e);
        return -1;
    }
    size_t first_write = out->n;
    for (size_t i = 0; i < e.ops.n; i++) {
        struct mapping_op *o = &out->v[out->n++];
        *o = e.ops.v[i];
        if (o->depends_on >= 0) o->depends_on += (long)first_write;
        if (o->changeset) o->changeset += out->next_changeset;
    }
    out->next_changeset += e.changesets;
    e.ops.n = 0;  /* moved */
    if (lookups && lookups->planned)
        for (size_t i = base; i < base + nget; i++) lookups->planned(lookups->ud, out->v[i].lookup);
    ectx_free(&e);
    return 0;
}

/* ---- JSON output ------------------------------------------------------------------ */

static const char *kind_name(int k)
{
    switch (k) {
    case MAPPING_OP_UPSERT: return "upsert";
    case MAPPING_OP_DELETE: return "delete";
    case MAPPING_OP_ACTION: return "action";
    case MAPPING_OP_LOOKUP: return "lookup";
    }
    return "?";
}

static void kv_str(struct mbuf *b, const char *k, const char *v)
{
    mapping_buf_putc(b, ',');
    mapping_buf_json_str(b, k, strlen(k));
    mapping_buf_putc(b, ':');
    mapping_buf_json_str(b, v, strlen(v));
}

static void kv_list(struct mbuf *b, const char *k, char *const *v, size_t n)
{
    mapping_buf_putc(b, ',');
    mapping_buf_json_str(b, k, strlen(k));
    mapping_buf_put(b, ":[", 2);
    for (size_t i = 0; i < n; i++) {
        if (i) mapping_buf_putc(b, ',');
        mapping_buf_json_str(b, v[i], strlen(v[i]));
    }
    mapping_buf_putc(b, ']');
}

char *mapping_ops_to_json(const struct mapping_ops *ops, int pretty)
{
    struct mbuf all = {0};
    mapping_buf_putc(&all, '[');
    for (size_t i = 0; i < ops->n; i++) {
        const struct mapping_op *o = &ops->v[i];
        struct mbuf b = {0};
        mapping_buf_puts(&b, "{\"docnum\":");
        mapping_buf_json_str(&b, o->docnum, strlen(o->docnum));
        kv_str(&b, "kind", kind_name(o->kind));
        kv_str(&b, "method", o->method);
        kv_str(&b, "path", o->path);
        if (o->entity) kv_str(&b, "entity", o->entity);
        if (o->key) kv_str(&b, "key", o->key);
        if (o->changeset) {
            char n[32];
            snprintf(n, sizeof n, ",\"changeset\":%d", o->changeset);
            mapping_buf_puts(&b, n);
        }
        if (o->depends_on >= 0) {
            char n[40];
            snprintf(n, sizeof n, ",\"depends_on\":%ld", o->depends_on);
            mapping_buf_puts(&b, n);
        }
        if (o->not_found_ok) mapping_buf_puts(&b, ",\"not_found_ok\":true");
        if (o->lookup) {
            kv_str(&b, "lookup", o->lookup);
            kv_str(&b, "id_column", o->lookup_id_column);
        }
        if (o->nneeds) kv_list(&b, "needs", o->needs, o->nneeds);
        if (o->nbinds) kv_list(&b, "binds", o->binds, o->nbinds);
        if (o->warning) kv_str(&b, "warning", o->warning);
        if (o->body) {
            mapping_buf_puts(&b, ",\"body\":");
            mapping_buf_puts(&b, o->body);
        }
        mapping_buf_putc(&b, '}');
        if (b.oom) {
            free(b.p);
            free(all.p);
            return NULL;
        }
        if (pretty) {
            mapping_buf_puts(&all, i ? ",\n  " : "\n  ");
            mapping_buf_json_pretty(&all, b.p, 1);
        } else {
            if (i) mapping_buf_putc(&all, ',');
            mapping_buf_puts(&all, b.p);
        }
        free(b.p);
    }
    mapping_buf_puts(&all, pretty && ops->n ? "\n]\n" : (pretty ? "]\n" : "]"));
    if (all.oom) {
        free(all.p);
        return NULL;
    }
    return all.p;
}

/* ---- lookup results -------------------------------------------------------------------- */

int mapping_ops_resolve(struct mapping_ops *ops, const char *lookup_id, const char *guid)
{
    size_t gl = strlen(guid);
    if (gl == 0 || gl > 64) return -1;
    for (size_t i = 0; i < gl; i++) {
        char c = guid[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-')) return -1;
    }
    size_t il = strlen(lookup_id);
    char *ph = malloc(il + 5);
    if (!ph) return -1;
    memcpy(ph, "{{", 2);
    memcpy(ph + 2, lookup_id, il);
    memcpy(ph + 2 + il, "}}", 3);
    size_t pl = il + 4;
    int n = 0;
    for (size_t i = 0; i < ops->n; i++) {
        struct mapping_op *o = &ops->v[i];
        size_t k;
        for (k = 0; k < o->nneeds; k++)
            if (!strcmp(o->needs[k], lookup_id)) break;
        if (k == o->nneeds || !o->body) continue;
        struct mbuf b = {0};
        const char *p = o->body, *hit;
        while ((hit = strstr(p, ph)) != NULL) {
            mapping_buf_put(&b, p, (size_t)(hit - p));
            mapping_buf_put(&b, guid, gl);
            p = hit + pl;
        }
        mapping_buf_puts(&b, p);
        if (b.oom) {
            free(b.p);
            free(ph);
            return -1;
        }
        free(o->body);
        o->body = b.p;
        free(o->needs[k]);
        memmove(&o->needs[k], &o->needs[k + 1], (o->nneeds - k - 1) * sizeof *o->needs);
        o->nneeds--;
        n++;
    }
    free(ph);
    return n;
}

/* ---- in-memory link store and lookup cache ------------------------------------------ */

struct memlink {
    char party[32];
    char number[MAPPING_NUMBER_MAX];
    struct mapping_link_rec rec;
};

struct memlinks {
    struct mapping_links api;
    struct memlink *v;
    size_t n, cap;
};

static int memlinks_get(void *ud, const char *party, const char *number, struct mapping_link_rec *rec)
{
    struct memlinks *l = ud;
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].party, party) && !strcmp(l->v[i].number, number)) {
            *rec = l->v[i].rec;
            return 1;
        }
    return 0;
}

static int memlinks_put(void *ud, const char *party, const char *number, const struct mapping_link_rec *rec)
{
    struct memlinks *l = ud;
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].party, party) && !strcmp(l->v[i].number, number)) {
            l->v[i].rec = *rec;
            return 0;
        }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        struct memlink *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    struct memlink *x = &l->v[l->n++];
    util_copy(x->party, sizeof x->party, party);
    util_copy(x->number, sizeof x->number, number);
    x->rec = *rec;
    return 0;
}

struct mapping_links *mapping_links_mem_new(void)
{
    struct memlinks *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->api.ud = l;
    l->api.get = memlinks_get;
    l->api.put = memlinks_put;
    return &l->api;
}

void mapping_links_mem_free(struct mapping_links *api)
{
    if (!api) return;
    struct memlinks *l = api->ud;
    free(l->v);
    free(l);
}

struct memlk {
    char *id;
    char *guid;   /* NULL: planned (pending) */
};

struct memlookups {
    struct mapping_lookups api;
    struct memlk *v;
    size_t n, cap;
};

static struct memlk *memlk_find(struct memlookups *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].id, id)) return &l->v[i];
    return NULL;
}

static int memlk_get(void *ud, const char *id, char *guid, size_t guidlen)
{
    struct memlk *x = memlk_find(ud, id);
    if (!x) return MAPPING_LOOKUP_MISS;
    if (!x->guid) return MAPPING_LOOKUP_PENDING;
    snprintf(guid, guidlen, "%s", x->guid);
    return MAPPING_LOOKUP_HIT;
}

static struct memlk *memlk_add(struct memlookups *l, const char *id)
{
    struct memlk *x = memlk_find(l, id);
    if (x) return x;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct memlk *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return NULL;
        l->v = nv;
        l->cap = nc;
    }
    x = &l->v[l->n];
    x->id = strdup(id);
    x->guid = NULL;
    if (!x->id) return NULL;
    l->n++;
    return x;
}

static void memlk_planned(void *ud, const char *id)
{
    memlk_add(ud, id);
}

struct mapping_lookups *mapping_lookups_mem_new(void)
{
    struct memlookups *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->api.ud = l;
    l->api.get = memlk_get;
    l->api.planned = memlk_planned;
    return &l->api;
}

int mapping_lookups_mem_set(struct mapping_lookups *api, const char *id, const char *guid)
{
    struct memlookups *l = api->ud;
    struct memlk *x = memlk_add(l, id);
    if (!x) return -1;
    char *g = strdup(guid);
    if (!g) return -1;
    free(x->guid);
    x->guid = g;
    return 0;
}

void mapping_lookups_mem_free(struct mapping_lookups *api)
{
    if (!api) return;
    struct memlookups *l = api->ud;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].guid);
    }
    free(l->v);
    free(l);
}
