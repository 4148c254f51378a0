/*
 * d365/governor — one gate in front of Dataverse for the whole process.
 *
 * Why a single gate: Dataverse's service protection counts per user (our
 * application user) per web server, and a 429's Retry-After means "this
 * user, nothing until then" — not "this connection". So the window is global:
 * once any worker sees a 429 every worker stops, and a request that would
 * start inside the window waits in acquire(). Sending into the window only
 * makes the server lengthen it (dataverse.md §5), so this is also the fastest
 * way through.
 *
 * State is one mutex + one condition variable on CLOCK_MONOTONIC (wall-clock
 * jumps must not shorten or stretch a window). Waiters use timed waits: a
 * window ends by the clock, not by a signal, so a waiter sleeps exactly until
 * the window's end (or its own deadline) and re-checks.
 *
 * Concurrency is AIMD, like TCP: the first 429 of a burst halves the limit;
 * a run of `grow_after` successes adds one. "Burst" = 429s that arrive while
 * the window opened by the first one is still open — those requests were
 * already in flight when we learned of the limit, and punishing each of them
 * again would collapse the limit to 1 for no reason.
 *
 * The limit never exceeds max_concurrency (default 8, at most Dataverse's 52)
 * and never drops below 1. Releasing a slot while the limit has just been
 * lowered simply leaves in_flight above limit for a moment; new acquires wait
 * until it has drained below.
 */
#include "d365/governor.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct d365_governor {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int cap, limit, in_flight, max_in_flight;
    int grow_after, successes;
    double ra_cap, ra_default;
    double window_until;        /* monotonic seconds; 0 = none */
    int shutdown;
    uint64_t acquired, throttled, windows, window_waits, slot_waits, decreases, increases;
};


static struct timespec mono_abs(double t)
{
    struct timespec ts;
    if (t < 0) t = 0;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

struct d365_governor *d365_governor_create(const struct d365_governor_config *cfg)
{
    struct d365_governor_config c = {0};
    if (cfg) c = *cfg;
    if (c.max_concurrency <= 0) c.max_concurrency = D365_CONCURRENCY_DEFAULT;
    if (c.max_concurrency > D365_CONCURRENCY_MAX) c.max_concurrency = D365_CONCURRENCY_MAX;
    if (c.start_concurrency <= 0 || c.start_concurrency > c.max_concurrency)
        c.start_concurrency = c.max_concurrency;
    if (c.grow_after <= 0) c.grow_after = 10;
    if (!(c.retry_after_cap > 0)) c.retry_after_cap = 300;
    if (!(c.default_retry_after > 0)) c.default_retry_after = 1;

    struct d365_governor *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&g->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        free(g);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->mu, NULL);
    g->cap = c.max_concurrency;
    g->limit = c.start_concurrency;
    g->grow_after = c.grow_after;
    g->ra_cap = c.retry_after_cap;
    g->ra_default = c.default_retry_after;
    return g;
}

void d365_governor_destroy(struct d365_governor *g)
{
    if (!g) return;
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int d365_governor_acquire(struct d365_governor *g, long timeout_ms)
{
    double deadline = timeout_ms >= 0 ? util_mono_s() + (double)timeout_ms / 1000.0 : 0;
    int waited_window = 0, waited_slot = 0, rc;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        if (g->shutdown) {
            rc = -1;
            break;
        }
        double now = util_mono_s();
        double wake;
        if (now < g->window_until) {
            /* A window is open: sleep until it ends (or our deadline). */
            waited_window = 1;
            wake = g->window_until;
        } else if (g->in_flight >= g->limit) {
            /* No slot: a release signals; the timed wait is only a guard. */
            waited_slot = 1;
            wake = now + 1.0;
        } else {
            g->in_flight++;
            if (g->in_flight > g->max_in_flight) g->max_in_flight = g->in_flight;
            g->acquired++;
            rc = 0;
            break;
        }
        if (timeout_ms >= 0) {
            if (now >= deadline) {
                rc = 1;
                break;
            }
            if (wake > deadline) wake = deadline;
        }
        struct timespec ts = mono_abs(wake);
        int e = pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        (void)e; /* ETIMEDOUT or a signal: re-check either way */
    }
    if (waited_window) g->window_waits++;
    if (waited_slot) g->slot_waits++;
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Open or extend the window; mu held. Returns 1 if no window was open. */
static int open_window(struct d365_governor *g, double now, double seconds)
{
    int fresh = now >= g->window_until;
    double until = now + seconds;
    if (until > g->window_until) {
        g->window_until = until;
        g->windows++;
    }
    return fresh;
}

static double clamp_ra(const struct d365_governor *g, double ra)
{
    if (!(ra > 0)) return 0; /* negative (past HTTP-date on curl < 8.12), NaN, 0 */
    if (ra > g->ra_cap) return g->ra_cap;
    return ra;
}

void d365_governor_release(struct d365_governor *g, int http_status, double retry_after)
{
    pthread_mutex_lock(&g->mu);
    double now = util_mono_s();
    if (g->in_flight > 0) g->in_flight--;
    if (http_status < 0) {
        /* nothing was sent (no token): neither success nor failure */
    } else if (http_status == 429) {
        double ra = clamp_ra(g, retry_after);
        if (ra <= 0) ra = g->ra_default;
        g->throttled++;
        g->successes = 0;
        if (open_window(g, now, ra)) {
            int before = g->limit;
            g->limit = g->limit / 2;
            if (g->limit < 1) g->limit = 1;
            if (g->limit != before) g->decreases++;
            log_info("d365: throttled (429), every request waits %.2f s; concurrency %d -> %d",
                     ra, before, g->limit);
        }
    } else if (http_status == 503 && clamp_ra(g, retry_after) > 0) {
        g->successes = 0;
        open_window(g, now, clamp_ra(g, retry_after));
    } else if (http_status == 0 || http_status == 408 || http_status >= 500) {
        g->successes = 0;
    } else {
        if (++g->successes >= g->grow_after) {
            g->successes = 0;
            if (g->limit < g->cap) {
                g->limit++;
                g->increases++;
            }
        }
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void d365_governor_pause(struct d365_governor *g, double seconds)
{
    pthread_mutex_lock(&g->mu);
    double s = clamp_ra(g, seconds);
    if (s > 0) open_window(g, util_mono_s(), s);
    pthread_mutex_unlock(&g->mu);
}

void d365_governor_shutdown(struct d365_governor *g)
{
    pthread_mutex_lock(&g->mu);
    g->shutdown = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void d365_governor_stats(struct d365_governor *g, struct d365_governor_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&g->mu);
    double now = util_mono_s();
    out->limit = g->limit;
    out->in_flight = g->in_flight;
    out->max_in_flight = g->max_in_flight;
    out->acquired = g->acquired;
    out->throttled = g->throttled;
    out->windows = g->windows;
    out->window_waits = g->window_waits;
    out->slot_waits = g->slot_waits;
    out->decreases = g->decreases;
    out->increases = g->increases;
    out->window_remaining = g->window_until > now ? g->window_until - now : 0;
    pthread_mutex_unlock(&g->mu);
}

/* ------------------------------------------------------------------------ */
/* Per-thread PRNG (xoshiro256**, seeded by splitmix64 from getrandom). No
 * rand(): it is shared process state and not thread-safe on every libc. */

static _Thread_local uint64_t rng_s[4];
static _Thread_local int rng_seeded;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void)
{
    if (!rng_seeded) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)&rng_s;
        }
        for (int i = 0; i < 4; i++) rng_s[i] = splitmix64(&seed);
        rng_seeded = 1;
    }
    uint64_t *s = rng_s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double d365_rand01(void) { return (double)(rng_next() >> 11) * 0x1.0p-53; }

double d365_backoff_delay(unsigned attempt, double base, double cap, double floor)
{
    if (attempt < 1) attempt = 1;
    if (!(base > 0)) base = 1;
    if (!(cap > 0)) cap = base;
    /* base * 2^(attempt-1) without overflow: stop doubling at the cap. */
    double ceiling = base;
    for (unsigned i = 1; i < attempt && ceiling < cap; i++) ceiling *= 2;
    if (ceiling > cap) ceiling = cap;
    double d = d365_rand01() * ceiling;
    if (floor > d) d = floor;
    return d;
}
