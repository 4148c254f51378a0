/*
 * util — error buffer, whole-file reading, clock, SHA-256 (see util.h).
 */
#include "common/util.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <stdlib.h>

void util_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

size_t util_copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (!cap) return n;
    size_t k = n < cap - 1 ? n : cap - 1;
    if (k) memcpy(dst, src, k);
    dst[k] = '\0';
    return n;
}

size_t util_concat(char *dst, size_t cap, ...)
{
    va_list ap;
    va_start(ap, cap);
    size_t total = 0, used = 0;
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL) {
        size_t n = strlen(s);
        total += n;
        if (cap && used < cap - 1) {
            size_t k = n < cap - 1 - used ? n : cap - 1 - used;
            memcpy(dst + used, s, k);
            used += k;
        }
    }
    va_end(ap);
    if (cap) dst[used] = '\0';
    return total;
}

size_t util_u64(char *buf, unsigned long long v)
{
    char tmp[UTIL_U64_LEN];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

int util_read_file(const char *path, size_t max, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 65536, n = 0, got;
    char *buf = malloc(cap + 1);
    int rc = 0;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (max && n > max) { rc = EFBIG; break; }
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    if (!rc && ferror(f)) rc = EIO;
    if (!rc && (!buf || n == cap)) rc = ENOMEM;
    fclose(f);
    if (rc) {
        free(buf);
        errno = rc;
        return -1;
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}

double util_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Fetched once and kept for the life of the process (never freed: one
 * small object); a fetched EVP_MD is immutable and safe to share between
 * threads, and pthread_once publishes it to all of them. */
static EVP_MD *g_sha256;
static pthread_once_t g_sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int util_sha256(const void *data, size_t len, unsigned char out[32])
{
    pthread_once(&g_sha256_once, sha256_fetch);
    unsigned int n = 0;
    if (!g_sha256 || !EVP_Digest(data, len, out, &n, g_sha256, NULL) || n != 32) {
        memset(out, 0, 32);
        return -1;
    }
    return 0;
}
