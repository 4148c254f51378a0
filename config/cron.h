/*
 * cron — the sync schedule's cron expressions (delivery.schedule).
 *
 * Grammar: five fields separated by blanks, as in crontab(5):
 *
 *     minute  hour  day-of-month  month  day-of-week
 *     0-59    0-23  1-31          1-12   0-7 (0 and 7 = Sunday)
 *
 * Each field is a comma-separated list of elements; an element is `*`, a
 * number `a`, a range `a-b` (a <= b; no wrap-around), optionally followed by a
 * step `/n` (`*`/n, `a-b/n`, and `a/n` = from a to the field's maximum, where
 * the day-of-week maximum is 6). Months may be named JAN-DEC and weekdays
 * SUN-SAT (three letters, any case), also in ranges (`MON-FRI`). The macros
 * @yearly (= @annually) `0 0 1 1 *`, @monthly `0 0 1 * *`, @weekly
 * `0 0 * * 0`, @daily (= @midnight) `0 0 * * *` and @hourly `0 * * * *` stand
 * for a whole expression. Not supported (a parse error): @reboot, seconds or
 * year fields, `?`, `L`, `W`, `#`.
 *
 * Day rule (Vixie cron, as Debian's crontab(5) puts it): when both
 * day-of-month and day-of-week are restricted, i.e. neither field starts with
 * `*`, a day matches if EITHER matches ("0 0 13 * FRI" = every 13th and every
 * Friday). Otherwise both must match, so a field that starts with `*` (`*`,
 * `*`/2) combines with AND ("0 0 `*`/2 * MON" = Mondays with an odd date).
 *
 * cron_parse rejects expressions that can never fire: a day-of-month that
 * exists in none of the selected months while day-of-week does not widen it
 * ("0 0 30 2 *", "0 0 31 4,6,9,11 *").
 *
 * Time zone: expressions are in local time, i.e. the process's time zone (TZ,
 * else /etc/localtime). cron_next reads it through localtime_r(), which on
 * glibc does not re-read TZ: a program that changes TZ must call tzset()
 * afterwards (and not while another thread is inside cron_next).
 *
 * Daylight-saving time. A matching wall-clock time T fires at the first
 * instant at which the local clock reads T or later. Hence:
 *  - spring forward (a gap, e.g. Europe/Berlin 2026-03-29 02:00 -> 03:00):
 *    a time inside the gap does not exist, and its run happens at the first
 *    valid instant after the gap (03:00 local), as Vixie cron does for
 *    fixed-time jobs. Several gap times (`*`/15 at 02:00, 02:15, ...) give ONE
 *    run at 03:00; a daily 02:30 run is not lost that day.
 *  - fall back (an overlap, e.g. 2026-10-25 03:00 -> 02:00): a wall-clock time
 *    that occurs twice fires once, at its first occurrence (summer time); the
 *    repeated hour fires nothing, so "0 * * * *" runs at 02:00 CEST and next
 *    at 03:00 CET, two hours later. (Vixie cron would rerun wildcard-hour jobs
 *    in the repeated hour; for a sync schedule, once is what matters.)
 * The set of firing instants is thus independent of where a search starts:
 * cron_next(after) is the smallest of them that is > after, whatever after is
 * (including an instant inside the repeated hour).
 *
 * Threads: pure functions (no global state of their own), callable from any
 * thread; a parsed struct cron is read-only for cron_next.
 */
#ifndef MLC_CRON_H
#define MLC_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* A compiled expression: bit n of each mask set = value n matches. */
struct cron {
    uint64_t minute;     /* bits 0-59 */
    uint32_t hour;       /* bits 0-23 */
    uint32_t dom;        /* bits 1-31 */
    uint16_t month;      /* bits 1-12 */
    uint8_t  dow;        /* bits 0-6, 0 = Sunday (7 is stored as 0) */
    uint8_t  dom_star;   /* field 3 starts with '*' (see the day rule) */
    uint8_t  dow_star;   /* field 5 starts with '*' */
};

/* Years cron_next searches before it gives up: enough for rare but possible
 * expressions such as "0 0 29 2 *" (8 years across 2100) or "0 0 29 2 `*`/7"
 * (a Sunday 29 February: up to 28 years). Expressions that can never fire are
 * refused by cron_parse already, so hitting the bound means an odd case. */
#define CRON_SEARCH_YEARS 28

/*
 * Parse and compile expr into *out. Returns 0, or -1 with a message in err
 * (when err is not NULL) that names the field and the problem:
 *   "cron: field 2 (hour): 24 is out of range 0-23"
 * *out is written only on success. "continuous" is not a cron expression:
 * the caller handles it.
 */
int cron_parse(const char *expr, struct cron *out, char *err, size_t errlen);

/*
 * The first firing instant strictly after `after` (always at second 0 local
 * time; see the DST rules above) into *next. Returns 0, or -1 when nothing
 * fires within CRON_SEARCH_YEARS years or the time is outside what
 * localtime_r can represent (errno = ERANGE).
 */
int cron_next(const struct cron *c, time_t after, time_t *next);

#endif
