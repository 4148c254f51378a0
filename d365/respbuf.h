/*
 * d365/respbuf — a bounded, growable buffer that libcurl writes a response
 * body into (CURLOPT_WRITEFUNCTION = d365_respbuf_write, CURLOPT_WRITEDATA =
 * the buffer). Used by the token client (d365/auth) and the Web API client
 * (d365/webapi), each with its own limit.
 *
 * The buffer is owned by its user: zero-initialise it with .max set, reuse it
 * across requests with d365_respbuf_reset, release it with d365_respbuf_free.
 * The text is always NUL-terminated (p may be NULL while len is 0). A body
 * over max bytes stops the transfer (the write callback returns 0, curl
 * reports CURLE_WRITE_ERROR) and sets overflow. Not shared between threads:
 * one buffer per curl handle.
 */
#ifndef MLC_D365_RESPBUF_H
#define MLC_D365_RESPBUF_H

#include <stddef.h>

struct d365_respbuf {
    char *p;
    size_t len, cap;
    size_t max;      /* largest body accepted, in bytes */
    int overflow;    /* the body was larger than max */
};

/* libcurl write callback; ud is a struct d365_respbuf. */
size_t d365_respbuf_write(char *ptr, size_t size, size_t n, void *ud);

/* Empty the buffer for the next response (keeps its memory). */
void d365_respbuf_reset(struct d365_respbuf *b);

/* Release the memory; the buffer may be reused after (empty). */
void d365_respbuf_free(struct d365_respbuf *b);

#endif
