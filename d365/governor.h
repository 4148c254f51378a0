/*
 * d365/governor — the throttle governor: one per process (per Dataverse
 * user), shared by every worker's Web API client.
 *
 * Service protection is evaluated per user, so every request to Dataverse
 * takes a slot here first and gives it back with its result:
 *
 *   d365_governor_acquire()   blocks until (a) no Retry-After window is open
 *                             and (b) fewer than `limit` requests are in
 *                             flight. No request may start inside a window.
 *   d365_governor_release()   reports the HTTP status (and Retry-After):
 *     429                     opens (or extends) a window of Retry-After
 *                             seconds, clamped to [0, retry_after_cap]; a 429
 *                             without a usable Retry-After opens a window of
 *                             `default_retry_after`. The first 429 of a burst
 *                             halves `limit` (multiplicative decrease); 429s
 *                             arriving while the window is already open are the
 *                             same burst and do not halve again.
 *     503 with Retry-After    opens a window too (the server asked), no halving
 *     < 0                     nothing was sent (e.g. no token): slot back only
 *     5xx, 408, 0 (transport) neutral: the success run starts over
 *     anything else           a success; after `grow_after` successes in a
 *                             row `limit` grows by one up to `max_concurrency`
 *                             (additive increase)
 *
 * Back-off for a record to be sent again is d365_backoff_delay(): exponential
 * with full jitter, capped, with the server's Retry-After as the floor, drawn
 * from a per-thread PRNG.
 *
 * Threads: all functions may be called from any thread. create/destroy once.
 * Ownership: the governor owns nothing of the caller's.
 */
#ifndef MLC_D365_GOVERNOR_H
#define MLC_D365_GOVERNOR_H

#include <stdint.h>

#define D365_CONCURRENCY_DEFAULT 8
#define D365_CONCURRENCY_MAX     52   /* Dataverse's concurrent-request limit */

struct d365_governor_config {
    int max_concurrency;        /* cap; 0 → 8; clamped to [1, 52] */
    int start_concurrency;      /* initial limit; 0 → max_concurrency */
    int grow_after;             /* successes in a row before limit+1; 0 → 10 */
    double retry_after_cap;     /* s; 0 → 300 */
    double default_retry_after; /* s, for a 429 without Retry-After; 0 → 1 */
};

struct d365_governor;

struct d365_governor_stats {
    int limit;                  /* current adaptive concurrency limit */
    int in_flight;
    int max_in_flight;          /* highest in_flight ever seen */
    uint64_t acquired;          /* slots handed out */
    uint64_t throttled;         /* 429s reported */
    uint64_t windows;           /* windows opened or extended */
    uint64_t window_waits;      /* acquires that waited for a window to pass */
    uint64_t slot_waits;        /* acquires that waited for a free slot */
    uint64_t decreases, increases; /* AIMD steps */
    double window_remaining;    /* seconds until the current window ends (0 = none) */
};

/* Returns NULL only on allocation failure. cfg may be NULL (all defaults). */
struct d365_governor *d365_governor_create(const struct d365_governor_config *cfg);
void d365_governor_destroy(struct d365_governor *g);

/* Wait for a slot. timeout_ms < 0 waits as long as it takes.
 * Returns 0 with a slot held (release it exactly once), 1 on timeout, -1 when
 * the governor is shut down. */
int d365_governor_acquire(struct d365_governor *g, long timeout_ms);

/* Give the slot back with the request's HTTP status (0 = transport error,
 * -1 = not sent) and the server's Retry-After in seconds (any value; clamped
 * here). */
void d365_governor_release(struct d365_governor *g, int http_status, double retry_after);

/* Open a window without holding a slot (e.g. a 429 seen by other means). */
void d365_governor_pause(struct d365_governor *g, double seconds);

/* Wake every waiter; from now on acquire returns -1. */
void d365_governor_shutdown(struct d365_governor *g);

void d365_governor_stats(struct d365_governor *g, struct d365_governor_stats *out);

/* Seconds to wait before attempt number `attempt` (1 = first retry):
 * uniform in [0, min(cap, base * 2^(attempt-1))] (full jitter), then at least
 * `floor` (the Retry-After). Uses a per-thread PRNG seeded from the OS. */
double d365_backoff_delay(unsigned attempt, double base, double cap, double floor);

/* A uniform double in [0, 1) from the calling thread's PRNG. */
double d365_rand01(void);

#endif
