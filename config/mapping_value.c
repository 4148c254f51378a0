/*
 * mapping_value — the value arithmetic of the mapping engine.
 *
 * Design: SAP sends every field as text; the mapping keeps it as text or as
 * an exact decimal (a 128-bit integer mantissa and a decimal scale). Binary
 * floating point never touches an amount: parsing, sums, division and
 * half-away-from-zero rounding are integer operations with overflow checks,
 * and a decimal goes out as JSON number text written by us (cJSON would go
 * through a double). The other helpers here are the text rules MAPPING.md
 * names: ALPHA conversion, dates, truncation that never splits a UTF-8
 * sequence, and the escaping of JSON strings and of alternate-key values in
 * URLs (see mapping.h for the key-escaping policy).
 */
#include "config/mapping_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 10^0 .. 10^38 fit in a signed 128-bit integer (max ~1.7e38). */
static __int128 pow10i(int n)
{
    __int128 r = 1;
    while (n-- > 0) r *= 10;
    return r;
}

#define DEC_LIMIT_DIGITS 36  /* |m| < 10^36: room for scaling by a few digits */

static int isblank_c(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int mapping_dec_parse(const char *s, size_t len, struct mdec *out)
{
    size_t a = 0, b = len;
    while (a < b && isblank_c(s[a])) a++;
    while (b > a && isblank_c(s[b - 1])) b--;
    if (a == b) return 1;
    int neg = 0;
    if (s[a] == '-' || s[a] == '+') {
        neg = s[a] == '-';
        a++;
        while (a < b && isblank_c(s[a])) a++;  /* "- 5" as some reports print it */
    } else if (s[b - 1] == '-') {              /* SAP trailing minus: "100.00-" */
        neg = 1;
        b--;
        while (b > a && isblank_c(s[b - 1])) b--;
    }
    if (a == b) return -1;
    __int128 m = 0;
    int digits = 0, scale = 0, point = 0, any = 0;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == '.') {
            if (point) return -1;
            point = 1;
            continue;
        }
        if (c < '0' || c > '9') return -1;
        any = 1;
        if (point) {
            if (scale == MDEC_MAX_SCALE) {
                if (c != '0') return -1;  /* more precision than we carry */
                continue;
            }
            scale++;
        }
        if (m != 0 || c != '0') digits++;
        if (digits > DEC_LIMIT_DIGITS) return -1;
        m = m * 10 + (c - '0');
    }
    if (!any) return -1;
    out->m = neg ? -m : m;
    out->scale = scale;
    return 0;
}

size_t mapping_dec_format(const struct mdec *d, char *out, size_t outlen)
{
    __int128 m = d->m;
    int scale = d->scale;
    while (scale > 0 && m % 10 == 0) {
        m /= 10;
        scale--;
    }
    int neg = m < 0;
    unsigned __int128 u = neg ? (unsigned __int128)(-(m + 1)) + 1 : (unsigned __int128)m;
    char tmp[64];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    while (n <= scale) tmp[n++] = '0';  /* at least one digit before the point */
    char buf[80];
    size_t k = 0;
    if (neg) buf[k++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        buf[k++] = tmp[i];
        if (i == scale && scale > 0) buf[k++] = '.';
    }
    buf[k] = 0;
    if (outlen == 0) return k;
    size_t c = k < outlen - 1 ? k : outlen - 1;
    memcpy(out, buf, c);
    out[c] = 0;
    return k;
}

/* 10^18, and the bounds used below, as constants (no shared mutable state). */
#define P18 ((__int128)1000000000000000000LL)
#define DEC_LIMIT (P18 * P18)            /* 10^36 */
#define P37 (P18 * P18 * 10)             /* 10^37 */

static int fits(__int128 m) { return m < DEC_LIMIT && m > -DEC_LIMIT; }

/* Bring a to scale s (s >= a->scale). -1 on overflow. */
static int rescale(const struct mdec *a, int s, __int128 *out)
{
    int up = s - a->scale;
    if (up < 0) return -1;
    __int128 f = pow10i(up);
    __int128 m = a->m;
    if (m != 0 && (m > P37 / f || m < -(P37 / f))) return -1;
    *out = m * f;
    return 0;
}

int mapping_dec_add(struct mdec *acc, const struct mdec *b)
{
    int s = acc->scale > b->scale ? acc->scale : b->scale;
    __int128 x, y;
    if (rescale(acc, s, &x) || rescale(b, s, &y)) return -1;
    __int128 r = x + y;
    if (!fits(r)) return -1;
    acc->m = r;
    acc->scale = s;
    return 0;
}

int mapping_dec_is_zero(const struct mdec *d) { return d->m == 0; }

/* q = n / d rounded half away from zero (d != 0). */
static __int128 div_round(__int128 n, __int128 d)
{
    int neg = (n < 0) != (d < 0);
    __int128 an = n < 0 ? -n : n, ad = d < 0 ? -d : d;
    __int128 q = an / ad, r = an % ad;
    if (r * 2 >= ad) q++;
    return neg ? -q : q;
}

int mapping_dec_div(const struct mdec *a, const struct mdec *b, int scale, struct mdec *out)
{
    if (b->m == 0 || scale < 0 || scale > MDEC_MAX_SCALE) return -1;
    /* a/b = (am/10^as) / (bm/10^bs); result*10^scale = am*10^(bs+scale) / (bm*10^as) */
    int up = b->scale + scale;
    int down = a->scale;
    __int128 n = a->m, d = b->m;
    /* reduce the common powers of ten to keep numbers small */
    int c = up < down ? up : down;
    up -= c;
    down -= c;
    if (up > 37 || down > 37) return -1;
    __int128 fu = pow10i(up), fd = pow10i(down);
    if (n != 0 && (n > P37 / fu || n < -(P37 / fu))) return -1;
    n *= fu;
    if (d > P37 / fd || d < -(P37 / fd)) return -1;
    d *= fd;
    __int128 q = div_round(n, d);
    if (!fits(q)) return -1;
    out->m = q;
    out->scale = scale;
    return 0;
}

int mapping_dec_round(const struct mdec *a, int scale, struct mdec *out)
{
    if (scale < 0 || scale > MDEC_MAX_SCALE) return -1;
    if (a->scale <= scale) {
        *out = *a;
        return 0;
    }
    out->m = div_round(a->m, pow10i(a->scale - scale));
    out->scale = scale;
    return 0;
}

int mapping_decimal(const char *in, size_t len, char *out, size_t outlen)
{
    struct mdec d;
    int rc = mapping_dec_parse(in, len, &d);
    if (rc != 0) return rc;
    mapping_dec_format(&d, out, outlen);
    return 0;
}

int mapping_decimal_div(const char *a, const char *b, int scale, char *out, size_t outlen)
{
    struct mdec x, y, q;
    if (mapping_dec_parse(a, strlen(a), &x) != 0) return -1;
    if (mapping_dec_parse(b, strlen(b), &y) != 0) return -1;
    if (mapping_dec_div(&x, &y, scale, &q) != 0) return -1;
    mapping_dec_format(&q, out, outlen);
    return 0;
}

/* ---- ALPHA, dates, UTF-8 ------------------------------------------------- */

int mapping_alpha10(const char *in, size_t len, char *out, size_t outlen)
{
    size_t a = 0, b = len;
    while (a < b && isblank_c(in[a])) a++;
    while (b > a && isblank_c(in[b - 1])) b--;
    if (outlen == 0) return -1;
    int digits = a < b;
    for (size_t i = a; i < b; i++)
        if (in[i] < '0' || in[i] > '9') { digits = 0; break; }
    size_t k = 0;
    if (digits) {
        while (a < b && in[a] == '0') a++;
        size_t n = b - a;
        size_t pad = n < 10 ? 10 - n : 0;
        if (pad + n + 1 > outlen) return -1;
        memset(out, '0', pad);
        memcpy(out + pad, in + a, n);
        k = pad + n;
    } else {
        if (b - a + 1 > outlen) return -1;
        for (size_t i = a; i < b; i++) {
            char c = in[i];
            out[k++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
    }
    out[k] = 0;
    return (int)k;
}

static int is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int mapping_date(const char *s, size_t len, char *out)
{
    size_t a = 0, b = len;
    while (a < b && isblank_c(s[a])) a++;
    while (b > a && isblank_c(s[b - 1])) b--;
    if (a == b) return 1;
    if (b - a != 8) return -1;
    int v[8];
    for (int i = 0; i < 8; i++) {
        char c = s[a + (size_t)i];
        if (c < '0' || c > '9') return -1;
        v[i] = c - '0';
    }
    int y = v[0] * 1000 + v[1] * 100 + v[2] * 10 + v[3];
    int mo = v[4] * 10 + v[5], d = v[6] * 10 + v[7];
    if (y == 0 && mo == 0 && d == 0) return 1;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y == 0 || mo < 1 || mo > 12 || d < 1) return -1;
    int md = mdays[mo - 1] + (mo == 2 && is_leap(y));
    if (d > md) return -1;
    memcpy(out, s + a, 4);
    out[4] = '-';
    memcpy(out + 5, s + a + 4, 2);
    out[7] = '-';
    memcpy(out + 8, s + a + 6, 2);
    out[10] = 0;
    return 0;
}

size_t mapping_utf8_prefix(const char *s, size_t len, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, units = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n = 1, u = 1;
        if (c >= 0xF0 && c < 0xF8) { n = 4; u = 2; }
        else if (c >= 0xE0) { n = c < 0xF0 ? 3 : 1; }
        else if (c >= 0xC0) n = 2;
        /* a broken or cut sequence counts as one character per byte */
        if (n > 1) {
            if (i + n > len) n = 1, u = 1;
            else
                for (size_t k = 1; k < n; k++)
                    if ((p[i + k] & 0xC0) != 0x80) { n = 1; u = 1; break; }
        }
        if (units + u > max) break;
        units += u;
        i += n;
    }
    return i;
}

/* ---- text buffer and escaping ------------------------------------------- */

/* The slow half of grow, out of line: grow runs for every byte and piece
 * put (100k calls a second per delivery worker), and almost always finds
 * room. */
static __attribute__((noinline)) int grow_slow(struct mbuf *b, size_t need)
{
    if (b->oom) return -1;
    /* 1 KiB first: an op body (the common case) mostly fits, where 256
     * bytes took three reallocs to get there. */
    size_t nc = b->cap ? b->cap : 1024;
    while (nc < b->n + need + 1) nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = nc;
    return 0;
}

static inline int grow(struct mbuf *b, size_t need)
{
    return !b->oom && b->n + need + 1 <= b->cap ? 0 : grow_slow(b, need);
}

void mapping_buf_put(struct mbuf *b, const char *s, size_t n)
{
    if (grow(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void mapping_buf_puts(struct mbuf *b, const char *s) { mapping_buf_put(b, s, strlen(s)); }

void mapping_buf_putc(struct mbuf *b, char c)
{
    if (grow(b, 1)) return;
    b->p[b->n++] = c;
    b->p[b->n] = 0;
}

void mapping_buf_json_str(struct mbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Write straight into the buffer (18 values per record went through
     * three checked puts each: 6 % of the delivery CPU). Room for the text
     * as it is, quotes and NUL once; an escape makes room for itself and
     * the rest, so a long value never reserves six times its size. */
    if (grow(b, n + 2)) return;
    char *o = b->p + b->n;
    *o++ = '"';
    /* Bytes that need an escape: controls, '"' and '\\' (a table: one load a
     * byte instead of three compares). */
    static const unsigned char esc[256] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        ['"'] = 1, ['\\'] = 1,
    };
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!esc[c]) continue;
        if (i > run) memcpy(o, s + run, i - run);
        o += i - run;
        run = i + 1;
        b->n = (size_t)(o - b->p);
        if (grow(b, 6 + (n - i) + 1)) return; /* this escape, the rest, the quote */
        o = b->p + b->n;
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = hex[c >> 4]; *o++ = hex[c & 15];
        }
    }
    if (n > run) memcpy(o, s + run, n - run);
    o += n - run;
    *o++ = '"';
    *o = 0;
    b->n = (size_t)(o - b->p);
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

int mapping_key_is_safe(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!unreserved(c) && c != '\'') return 0;
    }
    return 1;
}

static void put_pct(struct mbuf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char e[3] = {'%', hex[c >> 4], hex[c & 15]};
    mapping_buf_put(b, e, 3);
}

void mapping_buf_key_literal(struct mbuf *b, const char *s, size_t n, int pct)
{
    mapping_buf_putc(b, '\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\'') mapping_buf_put(b, "''", 2);
        else if (!pct || unreserved(c)) mapping_buf_putc(b, (char)c);
        else put_pct(b, c);
    }
    mapping_buf_putc(b, '\'');
}

void mapping_buf_pct(struct mbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || c == '\'') mapping_buf_putc(b, (char)c);
        else put_pct(b, c);
    }
}

char *mapping_key_path(const char *set, const char *column, const char *value)
{
    struct mbuf b = {0};
    size_t n = strlen(value);
    mapping_buf_puts(&b, set);
    mapping_buf_putc(&b, '(');
    mapping_buf_puts(&b, column);
    if (mapping_key_is_safe(value, n)) {
        mapping_buf_putc(&b, '=');
        mapping_buf_key_literal(&b, value, n, 0);
        mapping_buf_putc(&b, ')');
    } else {
        /* parameter alias: the value travels in the query string */
        mapping_buf_puts(&b, "=@k)?@k=");
        mapping_buf_key_literal(&b, value, n, 1);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- pretty printing of our own compact JSON ----------------------------- */

static void indent_to(struct mbuf *b, int level)
{
    mapping_buf_putc(b, '\n');
    for (int i = 0; i < level; i++) mapping_buf_put(b, "  ", 2);
}

void mapping_buf_json_pretty(struct mbuf *b, const char *j, int level)
{
    int instr = 0;
    for (const char *p = j; *p; p++) {
        char c = *p;
        if (instr) {
            mapping_buf_putc(b, c);
            if (c == '\\' && p[1]) mapping_buf_putc(b, *++p);
            else if (c == '"') instr = 0;
            continue;
        }
        switch (c) {
        case '"':
            instr = 1;
            mapping_buf_putc(b, c);
            break;
        case '{':
        case '[':
            mapping_buf_putc(b, c);
            if (p[1] == '}' || p[1] == ']') {
                mapping_buf_putc(b, *++p);
                break;
            }
            indent_to(b, ++level);
            break;
        case '}':
        case ']':
            indent_to(b, --level);
            mapping_buf_putc(b, c);
            break;
        case ',':
            mapping_buf_putc(b, c);
            indent_to(b, level);
            break;
        case ':':
            mapping_buf_put(b, ": ", 2);
            break;
        default:
            mapping_buf_putc(b, c);
        }
    }
}
