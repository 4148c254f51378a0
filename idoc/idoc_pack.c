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
#define PACK_VERSION   2
#define PACK_HDR       10      /* magic, version, u32 LE segments, u32 LE fields */
#define PACK_MAX_DEPTH 256     /* the parser's nesting limit */

/* ---- pack: one pass ----
 *
 * Every string's length is taken once (strlen was half the cost of the
 * first, two-pass version). The writer counts what it would write and
 * copies only while it fits, so the same pass gives the size; the totals
 * go into fixed-size header slots once they are known. */

struct wr {
    unsigned char *p;   /* buffer, or NULL to measure only */
    size_t cap, n;      /* capacity, bytes produced so far */
    size_t ns, nf;      /* segments, fields */
    int deep;           /* deeper than PACK_MAX_DEPTH */
};

static void w_bytes(struct wr *w, const void *s, size_t l)
{
    if (w->p && l && w->n + l <= w->cap)
        memcpy(w->p + w->n, s, l);
    w->n += l;
}

static unsigned char *put_varint(unsigned char *o, size_t v)
{
    while (v >= 0x80) {
        *o++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *o++ = (unsigned char)v;
    return o;
}

static size_t varint_len(size_t v)
{
    size_t k = 1;
    while (v >= 0x80) {
        v >>= 7;
        k++;
    }
    return k;
}

static void w_varint(struct wr *w, size_t v)
{
    size_t k = v < 0x80 ? 1 : varint_len(v);
    if (w->p && w->n + k <= w->cap)
        put_varint(w->p + w->n, v);
    w->n += k;
}

/* Length, bytes, NUL — written in place when it fits (the common case:
 * short names and values, one strlen and one copy each). */
static void w_str(struct wr *w, const char *s)
{
    size_t l = s ? strlen(s) : 0;
    size_t k = l < 0x80 ? 1 : varint_len(l);
    if (w->p && w->n + k + l + 1 <= w->cap) {
        unsigned char *o = w->p + w->n;
        if (l < 0x80)
            *o++ = (unsigned char)l;
        else
            o = put_varint(o, l);
        if (l)
            memcpy(o, s, l);
        o[l] = 0;
    }
    w->n += k + l + 1;
}

static void w_fields(struct wr *w, const struct idoc_field *f, size_t n)
{
    w_varint(w, n);
    w->nf += n;
    for (size_t i = 0; i < n; i++) {
        w_str(w, f[i].name);
        w_str(w, f[i].value);
    }
}

static void w_seg(struct wr *w, const struct idoc_segment *seg, int depth)
{
    if (depth > PACK_MAX_DEPTH) {
        w->deep = 1;
        return;
    }
    w_str(w, seg->name);
    w_fields(w, seg->fields, seg->nfields);
    w_varint(w, seg->nchildren);
    w->ns += seg->nchildren;
    for (size_t i = 0; i < seg->nchildren && !w->deep; i++)
        w_seg(w, &seg->children[i], depth + 1);
}

static void put_u32(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

size_t idoc_pack_to(const struct idoc *doc, void *buf, size_t cap)
{
    struct wr w = { .p = buf, .cap = buf ? cap : 0 };
    unsigned char hdr[PACK_HDR] = { PACK_MAGIC, PACK_VERSION };
    w_bytes(&w, hdr, sizeof hdr); /* totals filled in below */
    const char *conv[10] = { doc->root, doc->docnum, doc->mandt, doc->sndprn, doc->sndpor,
                             doc->idoctyp, doc->cimtyp, doc->mestyp, doc->credat, doc->cretim };
    for (int i = 0; i < 10; i++)
        w_str(&w, conv[i]);
    w_fields(&w, doc->control, doc->ncontrol);
    w_varint(&w, doc->nsegments);
    w.ns += doc->nsegments;
    for (size_t i = 0; i < doc->nsegments && !w.deep; i++)
        w_seg(&w, &doc->segments[i], 1);
    if (w.deep || w.ns > UINT32_MAX || w.nf > UINT32_MAX)
        return 0;
    if (w.p && w.n <= w.cap) {
        put_u32(w.p + 2, w.ns);
        put_u32(w.p + 6, w.nf);
    }
    return w.n;
}

size_t idoc_pack_size(const struct idoc *doc)
{
    return idoc_pack_to(doc, NULL, 0);
}

size_t idoc_pack(const struct idoc *doc, void *buf, size_t len)
{
    /* A wrong len writes nothing usable: refuse before touching buf. */
    if (idoc_pack_size(doc) != len)
        return 0;
    return idoc_pack_to(doc, buf, len);
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

static size_t get_u32(const unsigned char *p)
{
    return (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
}

static int bad(struct rd *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return -1;
}

static __attribute__((noinline)) int get_varint_slow(struct rd *r, size_t *out)
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

/* Nearly every count and length is below 128: one byte, no loop. */
static inline int get_varint(struct rd *r, size_t *out)
{
    if (r->p < r->end && !(*r->p & 0x80)) {
        *out = *r->p++;
        return 0;
    }
    return get_varint_slow(r, out);
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
    if (len < PACK_HDR || r.p[0] != PACK_MAGIC || r.p[1] != PACK_VERSION) {
        if (err && errlen)
            snprintf(err, errlen, "not a version-%d packed IDoc model", PACK_VERSION);
        return -1;
    }
    r.nseg = get_u32(r.p + 2);
    r.nfield = get_u32(r.p + 6);
    r.p += PACK_HDR;
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
