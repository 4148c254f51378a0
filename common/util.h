/*
 * util — the few helpers every layer needs: the caller-supplied error
 * buffer, bounded string copies, reading a whole file, the monotonic clock, and the SHA-256 that
 * secrets are compared through.
 *
 * Threads: any thread.
 */
#ifndef MLC_UTIL_H
#define MLC_UTIL_H

#include <stddef.h>

/* Format one line into err (errlen bytes, always NUL-terminated); a NULL
 * err or errlen 0 is allowed and ignored. */
void util_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copy src (NULL: "") into dst (cap >= 1 bytes), cut to cap - 1 bytes,
 * always NUL-terminated: snprintf(dst, cap, "%s", src) without the format
 * machinery (it costs ~20x more, and the delivery path copies keys and
 * link values several times per record). Returns strlen(src). */
size_t util_copy(char *dst, size_t cap, const char *src);

/* Concatenate the strings that follow cap, up to a NULL, into dst, as
 * util_copy does (cut to fit, always NUL-terminated). Returns the length
 * the whole would have had. */
size_t util_concat(char *dst, size_t cap, ...);
#define UTIL_CONCAT(dst, cap, ...) util_concat((dst), (cap), __VA_ARGS__, (const char *)NULL)

/* v in decimal into buf (UTIL_U64_LEN bytes hold any value), NUL-terminated;
 * returns the length. For numbers inside UTIL_CONCAT pieces. */
#define UTIL_U64_LEN 21
size_t util_u64(char *buf, unsigned long long v);

/* Read the whole file into a new NUL-terminated buffer (*out, caller frees;
 * *len without the NUL, len may be NULL). max > 0 refuses larger files
 * (errno EFBIG). Returns 0, or -1 with errno set. */
int util_read_file(const char *path, size_t max, char **out, size_t *len);

/* Seconds on CLOCK_MONOTONIC (for timeouts, windows and durations: wall-
 * clock jumps must not stretch or shorten them). */
double util_mono_s(void);

/* SHA-256 of len bytes into out (32 bytes), through one SHA-256
 * implementation fetched from OpenSSL once per process: the one-shot
 * SHA256() fetches it again on every call (OpenSSL 3), which cost more than
 * the hashing on the ingest path. Returns 0, or -1 if OpenSSL failed (out
 * is then zeroed, so it never matches a real digest). */
int util_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
