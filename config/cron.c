/*
 * cron — parser and next-time search. See cron.h for the grammar and the DST
 * rules.
 *
 * The search walks the civil (wall-clock) calendar with its own arithmetic, so
 * DST never disturbs it; only a matching wall-clock time T is turned into an
 * instant, as the first instant whose local time reads T or later (fire_at).
 */
#include "config/cron.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, NFIELDS };

static const struct field {
    const char *name;
    int min, max;        /* accepted values */
    int open_max;        /* the end of `*` and of `a/n` */
} fields[NFIELDS] = {
    [F_MINUTE] = {"minute",       0, 59, 59},
    [F_HOUR]   = {"hour",         0, 23, 23},
    [F_DOM]    = {"day-of-month", 1, 31, 31},
    [F_MONTH]  = {"month",        1, 12, 12},
    [F_DOW]    = {"day-of-week",  0,  7,  6},
};

static const char *const month_names[] = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const day_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

static const struct macro {
    const char *name, *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define FAIL_FIELD(fi, fmt, ...) \
    fail(err, errlen, "cron: field %d (%s): " fmt, (fi) + 1, fields[fi].name, __VA_ARGS__)

/* ---- parsing ---------------------------------------------------------- */

/* Reads a value (number or name) at *p. The token is the longest run of
 * alphanumerics, so "5x" and "MONDAY" are reported whole. */
static int parse_value(int fi, const char **p, const char *end, int *out, char *err, size_t errlen)
{
    const char *s = *p, *e = s;
    while (e < end && isalnum((unsigned char)*e)) e++;
    int len = (int)(e - s);
    if (len == 0) {
        if (s >= end) return FAIL_FIELD(fi, "%s", "a value is missing at the end");
        return FAIL_FIELD(fi, "unexpected '%c'", *s);
    }
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        for (const char *q = s; q < e; q++) {
            if (!isdigit((unsigned char)*q))
                return FAIL_FIELD(fi, "'%.*s' is not a number", len, s);
            if (v < 100000) v = v * 10 + (*q - '0');
        }
        if (v < fields[fi].min || v > fields[fi].max)
            return FAIL_FIELD(fi, "%.*s is out of range %d-%d", len > 12 ? 12 : len, s,
                              fields[fi].min, fields[fi].max);
        *out = (int)v;
        *p = e;
        return 0;
    }
    if (fi == F_MONTH || fi == F_DOW) {
        const char *const *names = fi == F_MONTH ? month_names : day_names;
        int n = fi == F_MONTH ? 12 : 7;
        if (len == 3)
            for (int i = 0; i < n; i++)
                if (strncasecmp(s, names[i], 3) == 0) {
                    *out = fi == F_MONTH ? i + 1 : i;
                    *p = e;
                    return 0;
                }
        return FAIL_FIELD(fi, "'%.*s' is not a number or a %s name (%s)", len > 20 ? 20 : len, s,
                          fi == F_MONTH ? "month" : "day",
                          fi == F_MONTH ? "JAN-DEC" : "SUN-SAT");
    }
    return FAIL_FIELD(fi, "'%.*s' is not a number", len > 20 ? 20 : len, s);
}

/* One field [s, end) into a mask of values min..max. *star: starts with '*'. */
static int parse_field(int fi, const char *s, const char *end, uint64_t *mask, int *star,
                       char *err, size_t errlen)
{
    const struct field *f = &fields[fi];
    uint64_t m = 0;
    *star = *s == '*';
    const char *p = s;
    for (;;) {
        if (p >= end || *p == ',')
            return FAIL_FIELD(fi, "%s", "empty list element");
        int lo, hi;
        int single = 0;
        if (*p == '*') {
            lo = f->min;
            hi = f->open_max;
            p++;
        } else {
            if (parse_value(fi, &p, end, &lo, err, errlen)) return -1;
            hi = lo;
            single = 1;
            if (p < end && *p == '-') {
                p++;
                if (parse_value(fi, &p, end, &hi, err, errlen)) return -1;
                single = 0;
                if (hi < lo)
                    return FAIL_FIELD(fi, "range %d-%d is backwards (write it as two ranges)", lo, hi);
            }
        }
        int step = 1;
        if (p < end && *p == '/') {
            p++;
            const char *q = p;
            long v = 0;
            while (q < end && isdigit((unsigned char)*q)) {
                if (v < 100000) v = v * 10 + (*q - '0');
                q++;
            }
            if (q == p)
                return FAIL_FIELD(fi, "%s", "a number must follow '/'");
            int span = f->max - f->min + 1;
            if (v < 1 || v > span)
                return FAIL_FIELD(fi, "step %.*s is out of range 1-%d", (int)(q - p > 12 ? 12 : q - p), p, span);
            step = (int)v;
            p = q;
            if (single) hi = f->open_max;   /* a/n: from a to the end */
        }
        if (p < end && *p != ',')
            return FAIL_FIELD(fi, "unexpected '%c'", *p);
        for (int v = lo; v <= hi; v += step)
            m |= (uint64_t)1 << (fi == F_DOW && v == 7 ? 0 : v);
        if (p >= end) break;
        p++;   /* ',' */
    }
    *mask = m;
    return 0;
}

static int days_in_month(long y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return dim[m - 1];
}

int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen)
{
    if (!expr) return fail(err, errlen, "cron: no expression");
    while (isspace((unsigned char)*expr)) expr++;
    if (*expr == '@') {
        const char *e = expr;
        while (*e && !isspace((unsigned char)*e)) e++;
        const char *rest = e;
        while (isspace((unsigned char)*rest)) rest++;
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (strlen(macros[i].name) == (size_t)(e - expr) &&
                strncasecmp(expr, macros[i].name, (size_t)(e - expr)) == 0) {
                if (*rest)
                    return fail(err, errlen, "cron: %s takes no fields (found '%s')", macros[i].name, rest);
                return cron_parse(macros[i].expr, out, err, errlen);
            }
        return fail(err, errlen, "cron: unknown macro '%.*s' (use @hourly, @daily, @weekly, @monthly or @yearly)",
                    (int)(e - expr > 20 ? 20 : e - expr), expr);
    }

    const char *start[NFIELDS], *end[NFIELDS];
    int n = 0;
    for (const char *p = expr; *p;) {
        if (isspace((unsigned char)*p)) { p++; continue; }
        const char *q = p;
        while (*q && !isspace((unsigned char)*q)) q++;
        if (n < NFIELDS) { start[n] = p; end[n] = q; }
        n++;
        p = q;
    }
    if (n == 0) return fail(err, errlen, "cron: empty expression");
    if (n != NFIELDS)
        return fail(err, errlen, "cron: expected 5 fields (minute hour day-of-month month day-of-week), got %d", n);

    uint64_t mask[NFIELDS];
    int star[NFIELDS];
    for (int i = 0; i < NFIELDS; i++)
        if (parse_field(i, start[i], end[i], &mask[i], &star[i], err, errlen)) return -1;

    struct cron c = {
        .minute = mask[F_MINUTE],
        .hour = (uint32_t)mask[F_HOUR],
        .dom = (uint32_t)mask[F_DOM],
        .month = (uint16_t)mask[F_MONTH],
        .dow = (uint8_t)mask[F_DOW],
        .dom_star = (uint8_t)star[F_DOM],
        .dow_star = (uint8_t)star[F_DOW],
    };
    /* Only day-of-month decides the day when day-of-week starts with '*' and
     * day-of-month does not; then one selected day must exist in one selected
     * month (February counted with 29 days). */
    if (!c.dom_star && c.dow_star) {
        int ok = 0;
        for (int m = 1; m <= 12 && !ok; m++)
            if (c.month & (1u << m))
                for (int d = 1; d <= days_in_month(2000, m); d++)
                    if (c.dom & (1u << d)) { ok = 1; break; }
        if (!ok)
            return FAIL_FIELD(F_DOM, "%s", "none of these days exists in the selected months, so it never fires");
    }
    *out = c;
    return 0;
}

/* ---- next time -------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static long long days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The wall-clock time of t, as seconds since 1970-01-01 00:00 of the local
 * calendar (i.e. t + the UTC offset in effect at t). */
static int local_secs(time_t t, long long *out)
{
    struct tm tm;
    if (!localtime_r(&t, &tm)) return -1;
    *out = days_from_civil((long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 +
           tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return 0;
}

/* An instant within 18 h of the wall-clock time u reads it, whatever the
 * offset (UTC-12 .. UTC+14). */
#define WINDOW (18 * 3600)

/*
 * The first instant whose wall clock reads u or later: where u occurs, its
 * first occurrence; where u falls in a gap, the end of the gap.
 */
static int fire_at(long long u, time_t *out)
{
    if (u < -(1LL << 50) || u > (1LL << 50)) return -1;   /* no overflow below */
    /* Occurrences: t = u - offset, for the offsets in effect around u. */
    long long best = 0;
    int found = 0;
    for (int i = -1; i <= 1; i++) {
        time_t probe = (time_t)(u + i * WINDOW);
        long long l;
        if (local_secs(probe, &l)) return -1;
        long long t = u - (l - (long long)probe);
        if (local_secs((time_t)t, &l)) return -1;
        if (l == u && (!found || t < best)) { best = t; found = 1; }
    }
    if (found) { *out = (time_t)best; return 0; }
    /* A gap: the wall clock jumps over u. Binary search for its end in
     * (lo, hi], where lo reads before u and hi after it. */
    long long lo = u - WINDOW, hi = u + WINDOW, l;
    if (local_secs((time_t)lo, &l) || l >= u) return -1;
    if (local_secs((time_t)hi, &l) || l < u) return -1;
    while (hi - lo > 1) {
        long long mid = lo + (hi - lo) / 2;
        if (local_secs((time_t)mid, &l)) return -1;
        if (l >= u) hi = mid; else lo = mid;
    }
    *out = (time_t)hi;
    return 0;
}

struct civil { long long y; int mo, d, h, mi; };

/* Carries overflowing fields upward (each at most one over). */
static void carry(struct civil *c)
{
    if (c->mi > 59) { c->mi = 0; c->h++; }
    if (c->h > 23) { c->h = 0; c->d++; }
    if (c->mo <= 12 && c->d > days_in_month((long)c->y, c->mo)) { c->d = 1; c->mo++; }
    if (c->mo > 12) { c->mo = 1; c->y++; }
}

static int day_matches(const struct cron *c, const struct civil *t)
{
    int dom = (c->dom >> t->d) & 1;
    long long days = days_from_civil(t->y, t->mo, t->d);
    int wd = (int)(((days % 7) + 7 + 4) % 7);   /* 1970-01-01 was a Thursday */
    int dow = (c->dow >> wd) & 1;
    if (c->dom_star || c->dow_star) return dom && dow;
    return dom || dow;
}

int cron_next(const struct cron *c, time_t after, time_t *next)
{
    long long now;
    if (local_secs(after, &now)) { errno = ERANGE; return -1; }
    /* The wall-clock minute after the one `after` reads: an instant that
     * fires later than `after` has a wall-clock time later than its reading
     * (see cron.h), and the firing instants grow with the wall-clock time. */
    long long days = now >= 0 ? now / 86400 : -((-now + 86399) / 86400);
    long long sod = now - days * 86400;
    /* civil_from_days */
    long long z = days + 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    struct civil t = {
        .d = (int)(doy - (153 * mp + 2) / 5 + 1),
        .mo = (int)(mp < 10 ? mp + 3 : mp - 9),
        .h = (int)(sod / 3600),
        .mi = (int)(sod % 3600 / 60) + 1,
    };
    t.y = yoe + era * 400 + (t.mo <= 2);
    carry(&t);

    long long limit = t.y + CRON_SEARCH_YEARS;
    while (t.y <= limit) {
        if (!((c->month >> t.mo) & 1)) {
            t.mo++; t.d = 1; t.h = 0; t.mi = 0;
            carry(&t);
            continue;
        }
        if (!day_matches(c, &t)) {
            t.d++; t.h = 0; t.mi = 0;
            carry(&t);
            continue;
        }
        if (!((c->hour >> t.h) & 1)) {
            t.h++; t.mi = 0;
            carry(&t);
            continue;
        }
        if (!((c->minute >> t.mi) & 1)) {
            t.mi++;
            carry(&t);
            continue;
        }
        time_t at;
        long long u = days_from_civil(t.y, t.mo, t.d) * 86400 + t.h * 3600 + t.mi * 60;
        if (fire_at(u, &at)) { errno = ERANGE; return -1; }
        if (at > after) { *next = at; return 0; }
        /* In a repeated hour: this time already fired at its first occurrence. */
        t.mi++;
        carry(&t);
    }
    errno = ERANGE;
    return -1;
}
