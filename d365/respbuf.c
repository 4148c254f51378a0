/*
 * d365/respbuf — see respbuf.h. Invariant: len < cap whenever p != NULL, and
 * p[len] == 0, so users can hand p to string functions and parsers at once.
 * Growth doubles (from 16 KiB) so a large $batch answer costs few reallocs.
 */
#include "d365/respbuf.h"

#include <stdlib.h>
#include <string.h>

size_t d365_respbuf_write(char *ptr, size_t size, size_t n, void *ud)
{
    struct d365_respbuf *b = ud;
    size_t add = size * n;
    if (b->len + add + 1 > b->max) {
        b->overflow = 1;
        return 0;
    }
    if (b->len + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        while (cap < b->len + add + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, add);
    b->len += add;
    b->p[b->len] = 0;
    return add;
}

void d365_respbuf_reset(struct d365_respbuf *b)
{
    b->len = 0;
    b->overflow = 0;
    if (b->p) b->p[0] = 0;
}

void d365_respbuf_free(struct d365_respbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->overflow = 0;
}
