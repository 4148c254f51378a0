/*
 * tdoc — build a `struct idoc` by hand for mapping tests, from a compact
 * text form (no XML parser involved):
 *
 *   control:  "DOCNUM=0000000030000001;IDOCTYP=CREMAS05;MESTYP=CREMAS"
 *   segments: "E1LFA1M{LIFNR=100003;NAME1=Muster GmbH;E1KNVKM{PARNR=1;NAME1=Ko}}"
 *
 * A segment is NAME{...}; inside, items are separated by ';' and are either
 * FIELD=value (value runs to the next unescaped ';' or '}', '\' escapes) or
 * a child segment. Several top-level segments follow each other.
 * Header-only; used by tests/unit/test_mapping*.c and bench/bench_mapping.c.
 */
#ifndef MLC_TDOC_H
#define MLC_TDOC_H

#include <stdlib.h>
#include <string.h>
#include "idoc/idoc.h"

struct tdoc {
    struct idoc doc;
};

static char *tdoc_word(const char **pp, const char *stop)
{
    const char *p = *pp;
    size_t cap = 16, n = 0;
    char *out = malloc(cap);
    while (*p && !strchr(stop, *p)) {
        char c = *p++;
        if (c == '\\' && *p) c = *p++;
        if (n + 2 > cap) out = realloc(out, cap *= 2);
        out[n++] = c;
    }
    out[n] = 0;
    *pp = p;
    return out;
}

static void tdoc_skip(const char **pp)
{
    while (**pp == ' ' || **pp == '\n' || **pp == '\t') (*pp)++;
}

static void tdoc_parse_list(const char **pp, struct idoc_segment **segs, size_t *nsegs, int nested);

static void tdoc_parse_seg(const char **pp, struct idoc_segment *s)
{
    memset(s, 0, sizeof *s);
    s->name = tdoc_word(pp, "{");
    if (**pp == '{') (*pp)++;
    size_t capf = 0;
    for (;;) {
        tdoc_skip(pp);
        if (**pp == '}' || !**pp) break;
        const char *save = *pp;
        char *name = tdoc_word(pp, "={;}");
        if (**pp == '=') {
            (*pp)++;
            char *val = tdoc_word(pp, ";}");
            if (s->nfields == capf) {
                capf = capf ? capf * 2 : 8;
                s->fields = realloc(s->fields, capf * sizeof *s->fields);
            }
            s->fields[s->nfields].name = name;
            s->fields[s->nfields].value = val;
            s->nfields++;
        } else if (**pp == '{') {
            free(name);
            *pp = save;
            s->children = realloc(s->children, (s->nchildren + 1) * sizeof *s->children);
            tdoc_parse_seg(pp, &s->children[s->nchildren++]);
        } else {
            free(name);
        }
        if (**pp == ';') (*pp)++;
    }
    if (**pp == '}') (*pp)++;
}

static void tdoc_parse_list(const char **pp, struct idoc_segment **segs, size_t *nsegs, int nested)
{
    (void)nested;
    for (;;) {
        while (**pp == ';' || **pp == ' ' || **pp == '\n' || **pp == '\t') (*pp)++;
        if (!**pp) break;
        *segs = realloc(*segs, (*nsegs + 1) * sizeof **segs);
        tdoc_parse_seg(pp, &(*segs)[(*nsegs)++]);
    }
}

static const char *tdoc_ctl(const struct idoc *d, const char *name)
{
    for (size_t i = 0; i < d->ncontrol; i++)
        if (!strcmp(d->control[i].name, name)) return d->control[i].value;
    return "";
}

static struct idoc *tdoc_new(const char *control, const char *segments)
{
    struct tdoc *t = calloc(1, sizeof *t);
    struct idoc *d = &t->doc;
    const char *p = control;
    size_t cap = 0;
    while (*p) {
        char *name = tdoc_word(&p, "=");
        if (*p == '=') p++;
        char *val = tdoc_word(&p, ";");
        if (*p == ';') p++;
        if (d->ncontrol == cap) {
            cap = cap ? cap * 2 : 8;
            d->control = realloc(d->control, cap * sizeof *d->control);
        }
        d->control[d->ncontrol].name = name;
        d->control[d->ncontrol].value = val;
        d->ncontrol++;
    }
    d->docnum = tdoc_ctl(d, "DOCNUM");
    d->mandt = tdoc_ctl(d, "MANDT");
    d->sndprn = tdoc_ctl(d, "SNDPRN");
    d->sndpor = tdoc_ctl(d, "SNDPOR");
    d->idoctyp = tdoc_ctl(d, "IDOCTYP");
    d->cimtyp = tdoc_ctl(d, "CIMTYP");
    d->mestyp = tdoc_ctl(d, "MESTYP");
    d->credat = tdoc_ctl(d, "CREDAT");
    d->cretim = tdoc_ctl(d, "CRETIM");
    d->root = d->cimtyp[0] ? d->cimtyp : d->idoctyp;
    d->xml = "";
    p = segments ? segments : "";
    tdoc_parse_list(&p, &d->segments, &d->nsegments, 0);
    return d;
}

static void tdoc_free_seg(struct idoc_segment *s)
{
    for (size_t i = 0; i < s->nfields; i++) {
        free((char *)s->fields[i].name);
        free((char *)s->fields[i].value);
    }
    free(s->fields);
    for (size_t i = 0; i < s->nchildren; i++) tdoc_free_seg(&s->children[i]);
    free(s->children);
    free((char *)s->name);
}

static void tdoc_free(struct idoc *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->ncontrol; i++) {
        free((char *)d->control[i].name);
        free((char *)d->control[i].value);
    }
    free(d->control);
    for (size_t i = 0; i < d->nsegments; i++) tdoc_free_seg(&d->segments[i]);
    free(d->segments);
    free(d);
}

#endif
