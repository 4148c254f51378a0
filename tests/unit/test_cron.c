/* Unit tests for server/cron: parse errors (table), compiled masks, and next
 * firing times (table of expression, TZ, after, expected) including steps,
 * ranges, lists, names, the day-of-month/day-of-week OR rule, month ends, leap
 * years and the DST change days of Europe/Berlin and America/New_York; then a
 * brute-force cross-check of whole days around each DST change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/cron.h"

/* ---- helpers ---------------------------------------------------------- */

static long long days_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* "2026-03-29T03:00:00+02:00", "…Z"; seconds optional. The offset makes an
 * instant in a repeated hour unambiguous. */
static time_t iso(const char *s)
{
    int y, mo, d, h, mi, sec = 0, n = 0, oh = 0, om = 0;
    char sign = 'Z';
    if (sscanf(s, "%d-%d-%dT%d:%d%n", &y, &mo, &d, &h, &mi, &n) != 5)
        fail_msg("bad test time '%s'", s);
    const char *p = s + n;
    if (*p == ':') { sec = atoi(p + 1); p += 3; }
    if (*p == '+' || *p == '-') {
        sign = *p;
        if (sscanf(p + 1, "%d:%d", &oh, &om) != 2) fail_msg("bad offset in '%s'", s);
    } else if (*p != 'Z') {
        fail_msg("test time '%s' needs Z or an offset", s);
    }
    long long off = (oh * 3600 + om * 60) * (sign == '-' ? -1 : 1);
    return (time_t)(days_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off);
}

static const char *show(time_t t, char *buf, size_t len)
{
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%S%z %Z", &tm);
    return buf;
}

/* Sets TZ; returns 0 when the zone's file is missing (the caller skips). */
static int use_tz(const char *tz)
{
    if (tz[0] != ':' && strchr(tz, '/')) {
        char path[256];
        snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", tz);
        if (access(path, R_OK) != 0) return 0;
    }
    setenv("TZ", tz, 1);
    tzset();
    return 1;
}

static int have_zoneinfo(void)
{
    return access("/usr/share/zoneinfo", R_OK) == 0;
}

/* ---- parsing ---------------------------------------------------------- */

static const struct {
    const char *expr, *error;   /* error: a substring of the message */
} parse_errors[] = {
    {"",                         "cron: empty expression"},
    {"   ",                      "cron: empty expression"},
    {"* * * *",                  "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
    {"* * * * * *",              "got 6"},
    {"* * * * * /bin/true",      "got 6"},
    {"60 * * * *",               "cron: field 1 (minute): 60 is out of range 0-59"},
    {"* 24 * * *",               "cron: field 2 (hour): 24 is out of range 0-23"},
    {"* * 0 * *",                "cron: field 3 (day-of-month): 0 is out of range 1-31"},
    {"* * 32 * *",               "cron: field 3 (day-of-month): 32 is out of range 1-31"},
    {"* * * 0 *",                "cron: field 4 (month): 0 is out of range 1-12"},
    {"* * * 13 *",               "cron: field 4 (month): 13 is out of range 1-12"},
    {"* * * * 8",                "cron: field 5 (day-of-week): 8 is out of range 0-7"},
    {"0-60 * * * *",             "field 1 (minute): 60 is out of range 0-59"},
    {"99999999999999999999 * * * *", "field 1 (minute): 999999999999 is out of range 0-59"},
    {"*/0 * * * *",              "field 1 (minute): step 0 is out of range 1-60"},
    {"*/61 * * * *",             "field 1 (minute): step 61 is out of range 1-60"},
    {"* */25 * * *",             "field 2 (hour): step 25 is out of range 1-24"},
    {"*/ * * * *",               "field 1 (minute): a number must follow '/'"},
    {"*/x * * * *",              "field 1 (minute): a number must follow '/'"},
    {"1/2/3 * * * *",            "field 1 (minute): unexpected '/'"},
    {"30-10 * * * *",            "field 1 (minute): range 30-10 is backwards"},
    {"* * * * FRI-MON",          "field 5 (day-of-week): range 5-1 is backwards"},
    {"1,,2 * * * *",             "field 1 (minute): empty list element"},
    {",1 * * * *",               "field 1 (minute): empty list element"},
    {"1, * * * *",               "field 1 (minute): empty list element"},
    {"1-2-3 * * * *",            "field 1 (minute): unexpected '-'"},
    {"-1 * * * *",               "field 1 (minute): unexpected '-'"},
    {"1- * * * *",               "field 1 (minute): a value is missing at the end"},
    {"** * * * *",               "field 1 (minute): unexpected '*'"},
    {"*5 * * * *",               "field 1 (minute): unexpected '5'"},
    {"5x * * * *",               "field 1 (minute): '5x' is not a number"},
    {"a * * * *",                "field 1 (minute): 'a' is not a number"},
    {"? * * * *",                "field 1 (minute): unexpected '?'"},
    {"0 0 L * *",                "field 3 (day-of-month): 'L' is not a number"},
    {"0 0 15W * *",              "field 3 (day-of-month): '15W' is not a number"},
    {"* * * FOO *",              "field 4 (month): 'FOO' is not a number or a month name (JAN-DEC)"},
    {"* * * MON *",              "field 4 (month): 'MON' is not a number or a month name"},
    {"* * * January *",          "field 4 (month): 'January' is not a number or a month name"},
    {"* * * * JAN",              "field 5 (day-of-week): 'JAN' is not a number or a day name (SUN-SAT)"},
    {"* * * * MONDAY",           "field 5 (day-of-week): 'MONDAY' is not a number or a day name"},
    {"* * * * 1#2",              "field 5 (day-of-week): unexpected '#'"},
    {"0 0 30 2 *",               "field 3 (day-of-month): none of these days exists in the selected months"},
    {"0 0 31 4,6,9,11 *",        "field 3 (day-of-month): none of these days exists"},
    {"0 0 30-31 FEB */2",        "never fires"},   /* dow starts with '*': AND */
    {"@reboot",                  "cron: unknown macro '@reboot'"},
    {"@every 5m",                "cron: unknown macro '@every'"},
    {"@daily 5",                 "cron: @daily takes no fields"},
};

static void test_parse_errors(void **s)
{
    (void)s;
    for (size_t i = 0; i < sizeof parse_errors / sizeof parse_errors[0]; i++) {
        struct cron c;
        memset(&c, 0xab, sizeof c);
        struct cron before = c;
        char err[256] = "";
        int rc = cron_parse(parse_errors[i].expr, &c, err, sizeof err);
        if (rc != -1)
            fail_msg("'%s' parsed, expected an error containing '%s'", parse_errors[i].expr,
                     parse_errors[i].error);
        if (!strstr(err, parse_errors[i].error))
            fail_msg("'%s': error '%s' does not contain '%s'", parse_errors[i].expr, err,
                     parse_errors[i].error);
        assert_memory_equal(&c, &before, sizeof c);   /* *out untouched */
    }
    /* NULL expression, NULL or tiny error buffers. */
    struct cron c;
    char err[8];
    assert_int_equal(cron_parse(NULL, &c, NULL, 0), -1);
    assert_int_equal(cron_parse("61 * * * *", &c, NULL, 0), -1);
    assert_int_equal(cron_parse("61 * * * *", &c, err, sizeof err), -1);
    assert_string_equal(err, "cron: f");
}

static struct cron parse_ok(const char *expr)
{
    struct cron c;
    char err[256] = "";
    if (cron_parse(expr, &c, err, sizeof err) != 0) fail_msg("'%s' failed: %s", expr, err);
    return c;
}

static void test_parse_masks(void **s)
{
    (void)s;
    struct cron c = parse_ok("*/15 */6 1-31/10 JAN-mar,Dec mon-FRI");
    assert_true(c.minute == ((1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45)));
    assert_int_equal(c.hour, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    assert_int_equal(c.dom, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    assert_int_equal(c.month, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
    assert_int_equal(c.dow, 0x3e);
    assert_int_equal(c.dom_star, 0);
    assert_int_equal(c.dow_star, 0);

    c = parse_ok("  0\t0 * * 7 ");           /* blanks, 7 = Sunday */
    assert_int_equal(c.dow, 1);
    assert_int_equal(c.dom_star, 1);
    assert_int_equal(c.dow_star, 0);
    c = parse_ok("0 0 * * 0,7");
    assert_int_equal(c.dow, 1);
    c = parse_ok("0 0 * * 5-7");             /* Fri, Sat, Sun */
    assert_int_equal(c.dow, (1 << 5) | (1 << 6) | 1);
    c = parse_ok("0 0 * * */2");             /* `*` ends at 6: Sun Tue Thu Sat */
    assert_int_equal(c.dow, (1 << 0) | (1 << 2) | (1 << 4) | (1 << 6));
    assert_int_equal(c.dow_star, 1);
    c = parse_ok("0 0 * * 1/2");             /* a/n ends at 6: Mon Wed Fri */
    assert_int_equal(c.dow, (1 << 1) | (1 << 3) | (1 << 5));
    c = parse_ok("0 0 * * 0-7");
    assert_int_equal(c.dow, 0x7f);
    c = parse_ok("10/20 * * * *");           /* a/n: 10, 30, 50 */
    assert_true(c.minute == ((1ull << 10) | (1ull << 30) | (1ull << 50)));
    c = parse_ok("59 23 * * *");
    assert_true(c.minute == 1ull << 59);
    assert_int_equal(c.hour, 1u << 23);
    c = parse_ok("0 0 * 1-12/4 *");
    assert_int_equal(c.month, (1u << 1) | (1u << 5) | (1u << 9));
    c = parse_ok("*/60 * * * *");
    assert_true(c.minute == 1);
    c = parse_ok("0 0 31 2 MON");            /* OR rule: fires on Mondays */
    assert_int_equal(c.dom, 1u << 31);
    c = parse_ok("0 0 29 2 *");              /* leap day exists */
    assert_int_equal(c.dom, 1u << 29);

    /* Macros, any case. */
    struct { const char *macro, *expr; } m[] = {
        {"@yearly", "0 0 1 1 *"}, {"@ANNUALLY", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"}, {"@Daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
        {" @hourly ", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        struct cron a = parse_ok(m[i].macro), b = parse_ok(m[i].expr);
        assert_true(a.minute == b.minute && a.hour == b.hour && a.dom == b.dom &&
                    a.month == b.month && a.dow == b.dow && a.dom_star == b.dom_star &&
                    a.dow_star == b.dow_star);
    }
}

/* ---- next ------------------------------------------------------------- */

static const struct next_case {
    const char *expr, *tz, *after, *want, *why;
} next_cases[] = {
    /* Basics (UTC). */
    {"* * * * *",        "UTC0", "2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "strictly after"},
    {"* * * * *",        "UTC0", "2026-01-01T00:00:30Z", "2026-01-01T00:01:00Z", "second 0"},
    {"0 2 * * *",        "UTC0", "2026-01-01T01:59:59Z", "2026-01-01T02:00:00Z", ""},
    {"0 2 * * *",        "UTC0", "2026-01-01T02:00:00Z", "2026-01-02T02:00:00Z", "not the same minute"},
    {"*/15 * * * *",     "UTC0", "2026-01-01T10:07:00Z", "2026-01-01T10:15:00Z", "step"},
    {"*/15 * * * *",     "UTC0", "2026-01-01T10:45:00Z", "2026-01-01T11:00:00Z", "step wraps the hour"},
    {"5-10/2 * * * *",   "UTC0", "2026-01-01T10:06:00Z", "2026-01-01T10:07:00Z", "range step"},
    {"5-10/2 * * * *",   "UTC0", "2026-01-01T10:09:00Z", "2026-01-01T11:05:00Z", "range step ends at 9"},
    {"10/20 * * * *",    "UTC0", "2026-01-01T10:31:00Z", "2026-01-01T10:50:00Z", "a/n"},
    {"1,2,59 * * * *",   "UTC0", "2026-01-01T10:02:00Z", "2026-01-01T10:59:00Z", "list"},
    {"0 9-17 * * MON-FRI", "UTC0", "2026-01-02T17:00:00Z", "2026-01-05T09:00:00Z", "Fri evening -> Mon"},
    {"0 9-17 * * MON-FRI", "UTC0", "2026-01-05T09:30:00Z", "2026-01-05T10:00:00Z", "within the hours"},
    {"0 0 * * sun",        "UTC0", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z", "day name"},
    {"0 0 * * 7",          "UTC0", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z", "7 = Sunday"},
    {"0 0 * * 5-7",        "UTC0", "2026-01-03T00:00:00Z", "2026-01-04T00:00:00Z", "5-7 includes Sunday"},
    {"0 0 * * 5-7",        "UTC0", "2026-01-04T00:00:00Z", "2026-01-09T00:00:00Z", "then Friday"},
    {"0 0 1 jan,Jul *",    "UTC0", "2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z", "month names"},
    {"0 0 1 */3 *",        "UTC0", "2026-01-15T00:00:00Z", "2026-04-01T00:00:00Z", "month step"},
    {"0 0 1 OCT-DEC *",    "UTC0", "2026-12-01T00:00:00Z", "2027-10-01T00:00:00Z", "next year"},
    /* Day-of-month OR day-of-week when both are restricted. */
    {"0 0 13 * FRI",       "UTC0", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "OR: a Friday"},
    {"0 0 13 * FRI",       "UTC0", "2026-01-09T00:00:00Z", "2026-01-13T00:00:00Z", "OR: the 13th (a Tuesday)"},
    {"0 0 13 * FRI",       "UTC0", "2026-02-12T00:00:00Z", "2026-02-13T00:00:00Z", "OR: both"},
    {"0 0 31 2 MON",       "UTC0", "2026-01-01T00:00:00Z", "2026-02-02T00:00:00Z", "OR: no 31 Feb, Mondays in Feb"},
    {"0 0 */2 * MON",      "UTC0", "2026-01-01T00:00:00Z", "2026-01-05T00:00:00Z", "AND: `*`/2 is unrestricted"},
    {"0 0 */2 * MON",      "UTC0", "2026-01-05T00:00:00Z", "2026-01-19T00:00:00Z", "AND: odd-dated Monday"},
    {"0 0 1 * */7",        "UTC0", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "AND: the 1st on a Sunday"},
    {"0 0 * * 1",          "UTC0", "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z", "dom `*`: Mondays"},
    /* Month ends, year ends, leap years. */
    {"0 0 31 * *",         "UTC0", "2026-01-31T00:00:00Z", "2026-03-31T00:00:00Z", "skips Feb"},
    {"0 0 31 * *",         "UTC0", "2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z", "skips Apr"},
    {"0 0 30 * *",         "UTC0", "2026-01-30T00:00:00Z", "2026-03-30T00:00:00Z", "no 30 Feb"},
    {"59 23 31 12 *",      "UTC0", "2026-06-01T00:00:00Z", "2026-12-31T23:59:00Z", "last minute of the year"},
    {"0 0 1 1 *",          "UTC0", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00Z", "year rollover"},
    {"* * * * *",          "UTC0", "2026-12-31T23:59:00Z", "2027-01-01T00:00:00Z", "carry into the year"},
    {"0 0 29 2 *",         "UTC0", "2026-01-01T00:00:00Z", "2028-02-29T00:00:00Z", "next leap day"},
    {"0 0 29 2 *",         "UTC0", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "the one after"},
    {"0 0 29 2 *",         "UTC0", "2099-03-01T00:00:00Z", "2104-02-29T00:00:00Z", "2100 is no leap year"},
    {"0 0 29 2 */7",       "UTC0", "2026-01-01T00:00:00Z", "2032-02-29T00:00:00Z", "Feb 29 on a Sunday"},
    {"0 12 28-31 2 *",     "UTC0", "2027-02-28T12:00:00Z", "2028-02-28T12:00:00Z", "no 29 in 2027"},
    {"0 12 28-31 2 *",     "UTC0", "2028-02-28T12:00:00Z", "2028-02-29T12:00:00Z", "29 in 2028"},
    /* Macros. */
    {"@hourly",  "UTC0", "2026-01-01T10:30:00Z", "2026-01-01T11:00:00Z", ""},
    {"@daily",   "UTC0", "2026-01-01T10:30:00Z", "2026-01-02T00:00:00Z", ""},
    {"@weekly",  "UTC0", "2026-01-01T10:30:00Z", "2026-01-04T00:00:00Z", "Sunday"},
    {"@monthly", "UTC0", "2026-01-01T10:30:00Z", "2026-02-01T00:00:00Z", ""},
    {"@yearly",  "UTC0", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", ""},
    /* A fixed-offset zone: local time, not UTC. */
    {"0 2 * * *", "EST5", "2026-01-01T06:00:00Z", "2026-01-01T07:00:00Z", "02:00 EST"},

    /* Europe/Berlin, spring forward 2026-03-29 02:00 CET -> 03:00 CEST. */
    {"30 2 * * *",   "Europe/Berlin", "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "gap: runs when it ends"},
    {"30 2 * * *",   "Europe/Berlin", "2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00", "gap"},
    {"30 2 * * *",   "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "once"},
    {"0 2 * * *",    "Europe/Berlin", "2026-03-29T00:00:00+01:00", "2026-03-29T03:00:00+02:00", "gap start"},
    {"59 2 * * *",   "Europe/Berlin", "2026-03-29T00:00:00+01:00", "2026-03-29T03:00:00+02:00", "gap end"},
    {"0 3 * * *",    "Europe/Berlin", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "first valid time"},
    {"59 1 * * *",   "Europe/Berlin", "2026-03-28T02:00:00+01:00", "2026-03-29T01:59:00+01:00", "before the gap"},
    {"0 * * * *",    "Europe/Berlin", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "hourly over the gap"},
    {"0 * * * *",    "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00", "no second run"},
    {"*/15 * * * *", "Europe/Berlin", "2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "gap times coalesce"},
    {"*/15 * * * *", "Europe/Berlin", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00", ""},
    {"0 12 * * *",   "Europe/Berlin", "2026-03-28T12:00:00+01:00", "2026-03-29T12:00:00+02:00", "23 h later"},
    {"0 0 29 3 *",   "Europe/Berlin", "2026-01-01T00:00:00+01:00", "2026-03-29T00:00:00+01:00", ""},
    /* Europe/Berlin, fall back 2026-10-25 03:00 CEST -> 02:00 CET. */
    {"30 2 * * *",   "Europe/Berlin", "2026-10-25T00:00:00+02:00", "2026-10-25T02:30:00+02:00", "first occurrence"},
    {"30 2 * * *",   "Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "not again at 02:30 CET"},
    {"30 2 * * *",   "Europe/Berlin", "2026-10-25T02:10:00+01:00", "2026-10-26T02:30:00+01:00", "after from the repeated hour"},
    {"0 * * * *",    "Europe/Berlin", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "repeated hour fires nothing"},
    {"0 * * * *",    "Europe/Berlin", "2026-10-25T01:59:00+02:00", "2026-10-25T02:00:00+02:00", ""},
    {"*/30 * * * *", "Europe/Berlin", "2026-10-25T02:30:00+02:00", "2026-10-25T03:00:00+01:00", ""},
    {"*/30 * * * *", "Europe/Berlin", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00", "from inside the repeat"},
    {"0 3 * * *",    "Europe/Berlin", "2026-10-25T02:59:00+02:00", "2026-10-25T03:00:00+01:00", "61 min later"},
    {"0 12 * * *",   "Europe/Berlin", "2026-10-24T12:00:00+02:00", "2026-10-25T12:00:00+01:00", "25 h later"},

    /* America/New_York, spring forward 2026-03-08 02:00 EST -> 03:00 EDT. */
    {"30 2 * * *",   "America/New_York", "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "gap"},
    {"0 2 * * SUN",  "America/New_York", "2026-03-07T00:00:00-05:00", "2026-03-08T03:00:00-04:00", "weekly job in the gap"},
    {"0 2 * * SUN",  "America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-15T02:00:00-04:00", "next week normal"},
    {"0 * * * *",    "America/New_York", "2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", ""},
    {"0 1 * * *",    "America/New_York", "2026-03-07T01:00:00-05:00", "2026-03-08T01:00:00-05:00", ""},
    /* America/New_York, fall back 2026-11-01 02:00 EDT -> 01:00 EST. */
    {"30 1 * * *",   "America/New_York", "2026-11-01T00:00:00-04:00", "2026-11-01T01:30:00-04:00", "first occurrence"},
    {"30 1 * * *",   "America/New_York", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "once"},
    {"*/20 1 * * *", "America/New_York", "2026-11-01T01:40:00-04:00", "2026-11-02T01:00:00-05:00", "repeated hour fires nothing"},
    {"0 * * * *",    "America/New_York", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2 h later"},
    {"0 * * * *",    "America/New_York", "2026-11-01T01:20:00-05:00", "2026-11-01T02:00:00-05:00", "from inside the repeat"},
    {"0 2 * * *",    "America/New_York", "2026-11-01T00:00:00-04:00", "2026-11-01T02:00:00-05:00", ""},

    /* Australia/Lord_Howe: 30-minute DST, 2026-10-04 02:00 -> 02:30, 2026-04-05 02:00 -> 01:30. */
    {"15 2 * * *",   "Australia/Lord_Howe", "2026-10-04T00:00:00+10:30", "2026-10-04T02:30:00+11:00", "half-hour gap"},
    {"45 1 * * *",   "Australia/Lord_Howe", "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30", "half-hour repeat"},
};

/* The rows of one zone (only_tz), or of the zones needing no tzdata (NULL). */
static void run_cases(const char *only_tz)
{
    for (size_t i = 0; i < sizeof next_cases / sizeof next_cases[0]; i++) {
        const struct next_case *k = &next_cases[i];
        if (only_tz && strcmp(k->tz, only_tz) != 0) continue;
        if (!only_tz && strchr(k->tz, '/')) continue;
        if (!use_tz(k->tz)) fail_msg("cannot use TZ %s", k->tz);
        struct cron c = parse_ok(k->expr);
        time_t after = iso(k->after), want = iso(k->want), got = 0;
        char a[64], b[64], g[64];
        if (cron_next(&c, after, &got) != 0)
            fail_msg("%s [%s] after %s: no next time (want %s) %s", k->expr, k->tz,
                     show(after, a, sizeof a), show(want, b, sizeof b), k->why);
        if (got != want)
            fail_msg("%s [%s] after %s: got %s, want %s (%s)", k->expr, k->tz, show(after, a, sizeof a),
                     show(got, g, sizeof g), show(want, b, sizeof b), k->why);
    }
}

static void test_next_fixed_zones(void **s)
{
    (void)s;
    run_cases(NULL);
}

static void zone_cases(const char *tz)
{
    if (!have_zoneinfo() || !use_tz(tz)) {
        print_message("SKIP: /usr/share/zoneinfo/%s is missing (install tzdata): its DST cases did not run\n", tz);
        skip();
    }
    run_cases(tz);
}

static void test_next_berlin(void **s) { (void)s; zone_cases("Europe/Berlin"); }
static void test_next_new_york(void **s) { (void)s; zone_cases("America/New_York"); }
static void test_next_lord_howe(void **s) { (void)s; zone_cases("Australia/Lord_Howe"); }

static void test_next_errors(void **s)
{
    (void)s;
    use_tz("UTC0");
    /* An impossible expression that bypassed cron_parse's check. */
    struct cron c = parse_ok("0 0 1 2 *");
    c.dom = 1u << 30;
    time_t t = 12345;
    errno = 0;
    assert_int_equal(cron_next(&c, iso("2026-01-01T00:00:00Z"), &t), -1);
    assert_int_equal(errno, ERANGE);
    assert_int_equal(t, 12345);
    /* Times localtime cannot represent. */
    c = parse_ok("* * * * *");
    if (sizeof(time_t) >= 8)
        assert_int_equal(cron_next(&c, (time_t)1 << 62, &t), -1);
    /* Before 1970 works too. */
    assert_int_equal(cron_next(&c, iso("1969-12-31T23:59:30Z"), &t), 0);
    assert_int_equal(t, 0);
}

/* ---- brute force -------------------------------------------------------- */

/* Reference matcher, written from crontab(5) independently of cron.c. */
static int ref_match(const struct cron *c, long long civil)
{
    time_t t = (time_t)civil;
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!((c->minute >> tm.tm_min) & 1) || !((c->hour >> tm.tm_hour) & 1) ||
        !((c->month >> (tm.tm_mon + 1)) & 1))
        return 0;
    int dom = (c->dom >> tm.tm_mday) & 1, dow = (c->dow >> tm.tm_wday) & 1;
    return (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
}

static long long wall(time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm);
    return (long long)timegm(&tm);
}

/* Every minute instant in (from, to]: it fires when some matching wall-clock
 * minute lies in (the latest wall-clock reading before it, its reading] —
 * i.e. first occurrences fire, a repeated hour does not, and the times a gap
 * skips fire at its end. The chain of cron_next must give the same list. */
static void brute(const char *tz, const char *expr, const char *from_s, const char *to_s)
{
    struct cron c = parse_ok(expr);
    time_t from = iso(from_s), to = iso(to_s);
    long long seen = wall(from);
    time_t x = from, nx;
    int count = 0;
    for (time_t t = from + 60; t <= to; t += 60) {
        long long w = wall(t);
        int fires = 0;
        for (long long m = seen + 60; m <= w && !fires; m += 60) fires = ref_match(&c, m);
        if (w > seen) seen = w;
        if (!fires) continue;
        char a[64], b[64];
        if (cron_next(&c, x, &nx) != 0) fail_msg("%s [%s]: cron_next failed after %s", expr, tz, show(x, a, sizeof a));
        if (nx != t)
            fail_msg("%s [%s] after %s: cron_next %s, brute force %s", expr, tz, show(x, a, sizeof a),
                     show(nx, b, sizeof b), show(t, a + 32, 32));
        x = nx;
        count++;
    }
    /* Nothing more before `to`. */
    if (cron_next(&c, x, &nx) != 0 || nx <= to) fail_msg("%s [%s]: extra firing before %s", expr, tz, to_s);
    (void)count;
}

static void test_brute_force(void **s)
{
    (void)s;
    static const char *exprs[] = {
        "* * * * *", "*/15 * * * *", "30 2 * * *", "0 * * * *", "59 1 * * *", "0,30 1-3 * * *",
        "* 2 * * *", "15,45 * * * *", "0 0-3 * * SUN", "*/7 1,2 * * *", "0 2 25,29 * SUN",
    };
    static const struct { const char *tz, *from, *to; } windows[] = {
        {"UTC0",                "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z"},
        {"Europe/Berlin",       "2026-03-28T00:00:00+01:00", "2026-03-30T12:00:00+02:00"},
        {"Europe/Berlin",       "2026-10-24T00:00:00+02:00", "2026-10-26T12:00:00+01:00"},
        {"America/New_York",    "2026-03-07T00:00:00-05:00", "2026-03-09T12:00:00-04:00"},
        {"America/New_York",    "2026-10-31T00:00:00-04:00", "2026-11-02T12:00:00-05:00"},
        {"Australia/Lord_Howe", "2026-04-04T00:00:00+11:00", "2026-04-06T12:00:00+10:30"},
        {"Australia/Lord_Howe", "2026-10-03T00:00:00+10:30", "2026-10-05T12:00:00+11:00"},
    };
    int ran = 0;
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        if (!use_tz(windows[w].tz)) {
            print_message("SKIP: brute force in %s: zoneinfo missing\n", windows[w].tz);
            continue;
        }
        ran++;
        for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++)
            brute(windows[w].tz, exprs[e], windows[w].from, windows[w].to);
    }
    assert_true(ran > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_masks),
        cmocka_unit_test(test_next_fixed_zones),
        cmocka_unit_test(test_next_berlin),
        cmocka_unit_test(test_next_new_york),
        cmocka_unit_test(test_next_lord_howe),
        cmocka_unit_test(test_next_errors),
        cmocka_unit_test(test_brute_force),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
