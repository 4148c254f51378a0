/*
 * mapref — the mapping in use, swappable at run time (SIGHUP reload).
 *
 * Readers (ingest's MHD threads, delivery workers) take the current mapping
 * with mapref_get() for each IDoc and use it for that IDoc only. A reload
 * publishes a new mapping with a release store; the previous one is NOT
 * freed, because a reader may still be inside it — superseded mappings are
 * kept until mapref_free at exit (a reload is a rare, manual event and a
 * compiled mapping is small).
 *
 * Threads: get from any thread; set and free from the main thread only.
 */
#ifndef MLC_MAPREF_H
#define MLC_MAPREF_H

#include <stdatomic.h>
#include <stdlib.h>

#include "config/mapping.h"

struct mapref {
    _Atomic(const struct mapping *) cur;
    struct mapping **all;   /* every mapping ever published, for mapref_free */
    size_t n;
};

static inline const struct mapping *mapref_get(struct mapref *r)
{
    return atomic_load_explicit(&r->cur, memory_order_acquire);
}

/* Publish m (ownership passes to the mapref). Returns 0, or -1 on OOM (m
 * is then not published and still the caller's). */
static inline int mapref_set(struct mapref *r, struct mapping *m)
{
    struct mapping **na = realloc(r->all, (r->n + 1) * sizeof *na);
    if (!na) return -1;
    r->all = na;
    r->all[r->n++] = m;
    atomic_store_explicit(&r->cur, m, memory_order_release);
    return 0;
}

static inline void mapref_free(struct mapref *r)
{
    for (size_t i = 0; i < r->n; i++) mapping_free(r->all[i]);
    free(r->all);
    r->all = NULL;
    r->n = 0;
    atomic_store(&r->cur, NULL);
}

#endif
