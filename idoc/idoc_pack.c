/*
 * idoc_pack.c — struct idoc <-> compact binary value (format in idoc_pack.h).
 *
 * Design: one pre-order walk each way. The totals in the header let unpack
 * make ONE allocation for every segment and field array: a segment's
 * children (and fields) must be contiguous, so when a segment's count is
 * read, that many slots are taken from the pools at once (a bump pointer)
 * and the children are then unpacked into them, each taking its own slots
 * further on. Strings are never copied: each is NUL-terminated in the value.
 *
 * Invariants of unpack (the value is read from disk, so it is checked like
 * input): every varint ends inside the value and fits in size_t; every
 * string's bytes and its NUL lie inside the value; the pools are never
 * taken beyond the totals the header announced; nesting stops at
 * PACK_MAX_DEPTH; the value ends exactly after the last segment. A value
 * failing any of these is refused whole (-1), never half-used.
 */
#include "idoc/idoc_pack.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PACK_MAGIC     'I'
#define PACK_VERSION   1
#define PACK_MAX_DEPTH 256     /* the parser's nesting limit */

/* ---- sizes ---- */

static size_t varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t str_len(const char *s)
{
    size_t l = s ? strlen(s) : 0;
    return varint_len(l) + l + 1;
}

static size_t fields_len(const struct idoc_field *f, size_t n)
{
    size_t sum = varint_len(n);
    for (size_t i = 0; i < n; i++)
        sum += str_len(f[i].name) + str_len(f[i].value);
    return sum;
}

/* Bytes of seg and its subtree; counts segments and fields into *ns, *nf.
 * 0 when deeper than PACK_MAX_DEPTH. */
static size_t seg_len(const struct idoc_segment *seg, int depth, size_t *ns, size_t *nf)
{
    if (depth > PACK_MAX_DEPTH)
        return 0;
    size_t sum = str_len(seg->name) + fields_len(seg->fields, seg->nfields) +
                 varint_len(seg->nchildren);
    *nf += seg->nfields;
    *ns += seg->nchildren;
    for (size_t i = 0; i < seg->nchildren; i++) {
        size_t c = seg_len(&seg->children[i], depth + 1, ns, nf);
        if (!c)
            return 0;
        sum += c;
    }
    return sum;
}

static const char *const *conv(const struct idoc *d, const char *out[10])
{
    out[0] = d->root; out[1] = d->docnum; out[2] = d->mandt; out[3] = d->sndprn;
    out[4] = d->sndpor; out[5] = d->idoctyp; out[6] = d->cimtyp; out[7] = d->mestyp;
    out[8] = d->credat; out[9] = d->cretim;
    return out;
}

/* Body size (everything after the header) and the totals. */
static size_t body_len(const struct idoc *doc, size_t *ns, size_t *nf)
{
    const char *c[10];
    conv(doc, c);
    size_t sum = 0;
    for (int i = 0; i < 10; i++)
        sum += str_len(c[i]);
    sum += fields_len(doc->control, doc->ncontrol);
    *nf = doc->ncontrol;
    *ns = doc->nsegments;
    sum += varint_len(doc->nsegments);
    for (size_t i = 0; i < doc->nsegments; i++) {
        size_t s = seg_len(&doc->segments[i], 1, ns, nf);
        if (!s)
            return 0;
        sum += s;
    }
    return sum;
}

size_t idoc_pack_size(const struct idoc *doc)
{
    size_t ns = 0, nf = 0;
    size_t body = body_len(doc, &ns, &nf);
    if (!body)
        return 0;
    return 2 + varint_len(ns) + varint_len(nf) + body;
}

/* ---- pack ---- */

static unsigned char *put_varint(unsigned char *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
    size_t l = s ? strlen(s) : 0;
    p = put_varint(p, l);
    if (l)
        memcpy(p, s, l);
    p[l] = 0;
    return p + l + 1;
}

static unsigned char *put_fields(unsigned char *p, const struct idoc_field *f, size_t n)
{
    p = put_varint(p, n);
    for (size_t i = 0; i < n; i++) {
        p = put_str(p, f[i].name);
        p = put_str(p, f[i].value);
    }
    return p;
}

static unsigned char *put_seg(unsigned char *p, const struct idoc_segment *seg)
{
    p = put_str(p, seg->name);
    p = put_fields(p, seg->fields, seg->nfields);
    p = put_varint(p, seg->nchildren);
    for (size_t i = 0; i < seg->nchildren; i++)
        p = put_seg(p, &seg->children[i]);
    return p;
}

size_t idoc_pack(const struct idoc *doc, void *buf, size_t len)
{
    size_t ns = 0, nf = 0;
    size_t body = body_len(doc, &ns, &nf);
    if (!body || len != 2 + varint_len(ns) + varint_len(nf) + body)
        return 0;
    unsigned char *p = buf;
    *p++ = PACK_MAGIC;
    *p++ = PACK_VERSION;
    p = put_varint(p, ns);
    p = put_varint(p, nf);
    const char *c[10];
    conv(doc, c);
    for (int i = 0; i < 10; i++)
        p = put_str(p, c[i]);
    p = put_fields(p, doc->control, doc->ncontrol);
    p = put_varint(p, doc->nsegments);
    /* (recursion depth was bounded by body_len above) */
    for (size_t i = 0; i < doc->nsegments; i++)
        p = put_seg(p, &doc->segments[i]);
    return (size_t)(p - (unsigned char *)buf);
}

/* ---- unpack ---- */

struct rd {
    const unsigned char *p, *end;
    struct idoc_segment *segs;   /* pool */
    size_t nseg, useg;           /* size, used */
    struct idoc_field *fields;   /* pool */
    size_t nfield, ufield;
    const char *why;             /* first problem; the value is refused */
};

static int bad(struct rd *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return -1;
}

static int get_varint(struct rd *r, size_t *out)
{
    size_t v = 0;
    for (unsigned shift = 0; shift < sizeof(size_t) * 8; shift += 7) {
        if (r->p >= r->end)
            return bad(r, "truncated count");
        unsigned char b = *r->p++;
        size_t part = (size_t)(b & 0x7f);
        if (shift && part >> (sizeof(size_t) * 8 - shift))
            return bad(r, "count out of range");
        v |= part << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return bad(r, "count out of range");
}

static int get_str(struct rd *r, const char **out)
{
    size_t l;
    if (get_varint(r, &l))
        return -1;
    if (l >= (size_t)(r->end - r->p) || r->p[l] != 0)
        return bad(r, "string out of bounds");
    *out = (const char *)r->p;
    r->p += l + 1;
    return 0;
}

static int get_fields(struct rd *r, struct idoc_field **out, size_t *n)
{
    size_t c;
    if (get_varint(r, &c))
        return -1;
    /* each field takes at least 4 bytes: two empty strings */
    if (c > r->nfield - r->ufield || c > (size_t)(r->end - r->p) / 4)
        return bad(r, "more fields than announced");
    struct idoc_field *f = c ? r->fields + r->ufield : NULL;
    r->ufield += c;
    for (size_t i = 0; i < c; i++)
        if (get_str(r, &f[i].name) || get_str(r, &f[i].value))
            return -1;
    *out = f;
    *n = c;
    return 0;
}

/* Take c contiguous segment slots (children of one parent). */
static int take_segs(struct rd *r, size_t c, struct idoc_segment **out)
{
    /* each segment takes at least 4 bytes: empty name, two zero counts */
    if (c > r->nseg - r->useg || c > (size_t)(r->end - r->p) / 4)
        return bad(r, "more segments than announced");
    *out = c ? r->segs + r->useg : NULL;
    r->useg += c;
    return 0;
}

static int get_seg(struct rd *r, struct idoc_segment *seg, int depth)
{
    if (depth > PACK_MAX_DEPTH)
        return bad(r, "nested too deep");
    if (get_str(r, &seg->name) || get_fields(r, &seg->fields, &seg->nfields) ||
        get_varint(r, &seg->nchildren) || take_segs(r, seg->nchildren, &seg->children))
        return -1;
    for (size_t i = 0; i < seg->nchildren; i++)
        if (get_seg(r, &seg->children[i], depth + 1))
            return -1;
    return 0;
}

int idoc_unpack(const void *buf, size_t len, struct idoc **out, char *err, size_t errlen)
{
    *out = NULL;
    struct rd r = { .p = buf, .end = (const unsigned char *)buf + len };
    if (len < 2 || r.p[0] != PACK_MAGIC || r.p[1] != PACK_VERSION) {
        if (err && errlen)
            snprintf(err, errlen, "not a version-%d packed IDoc model", PACK_VERSION);
        return -1;
    }
    r.p += 2;
    if (get_varint(&r, &r.nseg) || get_varint(&r, &r.nfield))
        goto refused;
    /* A bound from the value's size (each takes >= 4 bytes) before we
     * allocate for the announced totals. */
    if (r.nseg > len / 4 || r.nfield > len / 4) {
        bad(&r, "totals larger than the value");
        goto refused;
    }
    size_t bytes = sizeof(struct idoc) + r.nseg * sizeof(struct idoc_segment) +
                   r.nfield * sizeof(struct idoc_field);
    struct idoc *doc = calloc(1, bytes);
    if (!doc) {
        if (err && errlen)
            snprintf(err, errlen, "out of memory");
        return -2;
    }
    r.segs = (struct idoc_segment *)(doc + 1);
    r.fields = (struct idoc_field *)(r.segs + r.nseg);

    const char **c[10] = { &doc->root, &doc->docnum, &doc->mandt, &doc->sndprn,
                           &doc->sndpor, &doc->idoctyp, &doc->cimtyp, &doc->mestyp,
                           &doc->credat, &doc->cretim };
    int rc = 0;
    for (int i = 0; i < 10 && !rc; i++)
        rc = get_str(&r, c[i]);
    if (!rc)
        rc = get_fields(&r, &doc->control, &doc->ncontrol);
    if (!rc)
        rc = get_varint(&r, &doc->nsegments);
    if (!rc)
        rc = take_segs(&r, doc->nsegments, &doc->segments);
    for (size_t i = 0; !rc && i < doc->nsegments; i++)
        rc = get_seg(&r, &doc->segments[i], 1);
    if (!rc && r.p != r.end)
        rc = bad(&r, "bytes after the last segment");
    if (!rc && (r.useg != r.nseg || r.ufield != r.nfield))
        rc = bad(&r, "totals do not match the content");
    if (rc) {
        free(doc);
        goto refused;
    }
    *out = doc;
    if (err && errlen)
        err[0] = '\0';
    return 0;

refused:
    if (err && errlen)
        snprintf(err, errlen, "damaged packed IDoc model: %s", r.why ? r.why : "?");
    return -1;
}

void idoc_unpack_free(struct idoc *doc)
{
    free(doc);
}
