/*
 * fake_dataverse — a fake Microsoft Dataverse (Dynamics 365 Sales) Web API
 * and Entra ID token endpoint, for ml-connector's tests, `make demo` and the
 * benchmarks. libmicrohttpd + cJSON + OpenSSL; listens on 127.0.0.1 only.
 * Wire formats, error codes and limits follow
 * shared/reference/dataverse.md ("DV" below); what the records look like
 * follows shared/spec/MAPPING.md.
 *
 *   fake_dataverse --port 0 [--port-file FILE] [--token-lifetime S]
 *       [--client-id ID] [--client-secret SECRET] [--client-cert PEM]
 *       [--budget N --window S] [--max-concurrency N] [--retry-after S]
 *       [--latency-ms N] [--fail-503-every N] [--reset-every N]
 *       [--reset-phase before|after] [--part-429-every N]
 *       [--violation-grace-ms N] [--require-keys] [--key SET:COLUMN]...
 *       [--strict-columns] [--allow-state-patch] [--strict-close]
 *       [--changeset-failure-stops] [--allow-any-set] [--bare-schema]
 *       [--key-delay-ms N] [--key-fail SET:COLUMN]... [--dump-on-exit FILE]
 *
 * ---- Design ----------------------------------------------------------------
 * Threads. MHD runs one thread per connection (MHD_USE_INTERNAL_POLLING_THREAD
 * | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL), so an injected latency
 * (a sleep in the handler) stalls only its own connection. All state (config,
 * records, indexes, log, counters, users, tokens) sits behind ONE mutex, g.mu.
 * A request takes it twice: once when its headers are in (admission: auth,
 * budget, concurrency, violations, fault decisions) and once when its body is
 * in (execution: a single op or a whole $batch, as one critical section). The
 * latency sleep happens between the two, outside the lock. SIGINT/SIGTERM
 * handlers write into a pipe the main thread waits on; it then stops MHD
 * (which joins the connection threads), writes --dump-on-exit and frees all.
 *
 * Request life cycle. The URI log callback allocates the per-request struct
 * (raw request target, arrival time) — MHD gives the raw, undecoded URI only
 * there, and key predicates must be parsed from it. NOTIFY_COMPLETED frees it;
 * requests that never reach the handler are freed at exit (a live list).
 * The handler's first call does admission, body calls append to a buffer,
 * the last call answers (or returns MHD_NO for an injected reset).
 *
 * Store. Entity sets hold records in insertion order; each record has an id
 * (GUID), its columns (a cJSON object), its binds (nav property -> target),
 * and a version. Per set, a hash index maps "column\x1f<lower-cased value>" to
 * the record for every alternate-key column (declared ones, plus — unless
 * --require-keys — any column first used as a key in a URL). Keys are unique
 * and compared case-insensitively like Dataverse's SQL collation (but not
 * accent-insensitively). Every write runs in a transaction with an undo log:
 * a single request commits or rolls back alone; a change set commits or rolls
 * back as a whole (log entries of a rolled-back change set stay in the log
 * with "applied": false, "rolled_back": true).
 *
 * Service protection (DV §5), per user = the client_id of the bearer token:
 *  - budget: at most N admitted requests per sliding window of S seconds; a
 *    $batch is one request (DV §4). Over it: 429, code 0x80072322, Retry-After
 *    = seconds until the window has room (or --retry-after).
 *  - concurrency: more than N requests of the user in flight: 429, code
 *    0x80072326, Retry-After = --retry-after or 1.
 *  - a 429 opens a Retry-After window for the user. Every request of that
 *    user arriving while it is open is answered 429 again and counted as a
 *    VIOLATION — unless it arrived within --violation-grace-ms (default 50)
 *    of the 429 being issued: such a request was already on its way before the
 *    client could have read the 429 (counted as violations_in_grace instead).
 *    Use --violation-grace-ms 0 for the strict count.
 * Faults: every Nth Web API request that passes admission gets 503
 * (--fail-503-every); every Nth request (token or Web API) has its connection
 * closed without an answer (--reset-every; --reset-phase after = the request
 * is executed first, so the client cannot know it was applied); every Nth
 * operation inside a $batch answers 429 inside its part (--part-429-every).
 *
 * Control endpoints (no auth): GET /_fake/dump[?records=0&log=0&set=S] ->
 *   {"records": {"<set>": [{<columns>, "_id", "_version", "_binds": {"<nav>":
 *   {"set", "id", "ref"}}}]}, "counters": {... "max_concurrency" (peak Web API
 *   requests in flight), "mean_concurrency" (in-flight time summed over the
 *   span from first admission to last completion) ...}, "users": {"<client_id>":
 *   {...}}, "settings": {...}, "schema": {"<set>": {"custom_columns": [...],
 *   "keys": [{"schema", "attributes", "status", "solution"}]}}, "log": [{"seq",
 *   "t", "user", "method", "set", "key", "id", "status", "applied", "batch",
 *   "changeset", "body", "solution", ...}]};
 *   POST /_fake/reset (records and table definitions back to the start, log
 *   and counters cleared; tokens stay valid); GET|POST /_fake/config (settings, flag names with
 *   '_'); POST /_fake/revoke (every issued token becomes unknown -> 401).
 *
 * Table definitions (metadata Web API, for `ml-connector dataverse setup`).
 * Every set has a definition: its columns (the schema below, plus a lookup
 * column per navigation property) and its alternate keys, served at
 * EntityDefinitions(LogicalName='t') with $expand=Attributes,Keys, the
 * Attributes and Keys collections (POST creates a column or a key), the
 * StringAttributeMetadata cast (MaxLength) and asyncoperations(<AsyncJob>).
 * By default the fake is "already provisioned": the mlc_* columns exist and
 * the declared keys are Active, so other tests upsert by them at once. With
 * --bare-schema it starts as a stock Dynamics 365 Sales org: no mlc_* column
 * and no key; a write naming an mlc_* column that was not created is 400
 * (property does not exist) and an upsert or bind by a key that is not
 * Active is 400 0x80060890 (as with --require-keys). A created key is
 * Pending for --key-delay-ms (default 300), then Active (it becomes a
 * declared key) - or Failed when the set holds duplicate values for it or
 * --key-fail SET:COLUMN names it; the failure text is the message of its
 * AsyncJob. Pending keys are promoted lazily, when the next request comes.
 *
 * Where it is simplified or chooses what DV leaves open (also in the report):
 *  - codes DV marks UNCONFIRMED are used as DV gives them: 0x80060891 with 404
 *    for a bind/URL key that matches nothing, 0x8005F101 on 401, 401 for
 *    Entra's invalid_client. Texts DV does not give are Dataverse-like;
 *    the ones made up here start with "fake:".
 *  - execution-time limit (0x80072321) and entitlement limits: not modelled;
 *    the Retry-After window does not grow with repeated violations; 429s do
 *    not count toward the budget.
 *  - no paging ($top only), $filter: eq ne gt ge lt le and or not () and
 *    contains/startswith/endswith; no $expand, $orderby, FetchXML.
 *  - schema: known sets, columns, lengths and navigation properties of
 *    MAPPING.md (plus a few stock ones); unknown columns are accepted unless
 *    --strict-columns; choice values checked for customertypecode only.
 *  - metadata: no publishing, no solutions beyond recording the
 *    MSCRM.SolutionUniqueName header, no InProgress key status, no
 *    multi-column keys for addressing records, $select/$filter on data
 *    queries do not check that mlc_* columns exist; metadata texts the
 *    fake makes up start with "fake:".
 *  - closing a record that is already closed is a no-op (204) unless
 *    --strict-close; closed records stay editable; no pricing logic.
 *  - @odata.bind literals are percent-decoded (no request filtering there).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cJSON.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define API_PREFIX "/api/data/v9."
#define MAX_BODY (64u << 20)           /* 64 MiB request body limit -> 413 */
#define BATCH_MAX_OPS 1000             /* DV §4 */
#define DEFAULT_WINDOW 300.0           /* DV §5: 5-minute sliding window */

/* ======================================================================== */
/* Utilities                                                                */
/* ======================================================================== */

#define FMT(a, b) __attribute__((format(printf, a, b)))

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "fake_dataverse: out of memory\n"); abort(); }
    return p;
}
static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s ? s : 1);
    if (!p) { fprintf(stderr, "fake_dataverse: out of memory\n"); abort(); }
    return p;
}
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) { fprintf(stderr, "fake_dataverse: out of memory\n"); abort(); }
    return p;
}
static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}
static char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void rand_bytes(unsigned char *p, size_t n)
{
    if (RAND_bytes(p, (int)n) != 1) {
        for (size_t i = 0; i < n; i++) p[i] = (unsigned char)rand();
    }
}

/* A random version-4 GUID, lower case, 36 chars + NUL. */
static void new_guid(char out[37])
{
    unsigned char b[16];
    rand_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
             b[12], b[13], b[14], b[15]);
}

static int is_guid(const char *s, size_t n)
{
    if (n != 36) return 0;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) { if (s[i] != '-') return 0; }
        else if (!isxdigit((unsigned char)s[i])) return 0;
    }
    return 1;
}

/* ---- growable string buffer ---- */
struct sbuf { char *p; size_t n, cap; };

static void sb_reserve(struct sbuf *b, size_t add)
{
    if (b->n + add + 1 <= b->cap) return;
    size_t c = b->cap ? b->cap : 256;
    while (c < b->n + add + 1) c *= 2;
    b->p = xrealloc(b->p, c);
    b->cap = c;
}
static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(struct sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }
static FMT(2, 3) void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}
static const char *sb_str(const struct sbuf *b) { return b->p ? b->p : ""; }
static void sb_free(struct sbuf *b) { free(b->p); b->p = NULL; b->n = b->cap = 0; }

static FMT(1, 2) char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* ---- string hash map: char* key (copied) -> void* ---- */
struct hent { char *key; void *val; struct hent *next; };
struct hmap { struct hent **b; size_t nb, n; };

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ULL; }
    return h;
}
static void hm_grow(struct hmap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct hent **b = xcalloc(nb, sizeof *b);
    for (size_t i = 0; i < m->nb; i++) {
        struct hent *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            size_t k = hash_str(e->key) & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}
static void *hm_get(const struct hmap *m, const char *key)
{
    if (!m->nb) return NULL;
    for (struct hent *e = m->b[hash_str(key) & (m->nb - 1)]; e; e = e->next)
        if (!strcmp(e->key, key)) return e->val;
    return NULL;
}
static void hm_put(struct hmap *m, const char *key, void *val)
{
    if (m->n + 1 > m->nb * 3 / 4) hm_grow(m);
    size_t k = hash_str(key) & (m->nb - 1);
    for (struct hent *e = m->b[k]; e; e = e->next)
        if (!strcmp(e->key, key)) { e->val = val; return; }
    struct hent *e = xmalloc(sizeof *e);
    e->key = xstrdup(key);
    e->val = val;
    e->next = m->b[k];
    m->b[k] = e;
    m->n++;
}
/* Remove key; only when it maps to val (val NULL: whatever it maps to). */
static void hm_del(struct hmap *m, const char *key, const void *val)
{
    if (!m->nb) return;
    struct hent **pp = &m->b[hash_str(key) & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next) {
        struct hent *e = *pp;
        if (!strcmp(e->key, key)) {
            if (val && e->val != val) return;
            *pp = e->next;
            free(e->key);
            free(e);
            m->n--;
            return;
        }
    }
}
static void hm_free(struct hmap *m, void (*free_val)(void *))
{
    for (size_t i = 0; i < m->nb; i++) {
        struct hent *e = m->b[i], *nx;
        for (; e; e = nx) {
            nx = e->next;
            if (free_val) free_val(e->val);
            free(e->key);
            free(e);
        }
    }
    free(m->b);
    m->b = NULL;
    m->nb = m->n = 0;
}

/* ---- percent decoding, base64url, UTF-16 length ---- */
static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* Decode %XX (and '+' as a space when plus_space); malformed escapes stay. */
static char *pct_decode(const char *s, size_t n, int plus_space)
{
    char *o = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            o[j++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else if (plus_space && s[i] == '+') {
            o[j++] = ' ';
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = 0;
    return o;
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64url_encode(const unsigned char *p, size_t n)
{
    char *o = xmalloc(n * 4 / 3 + 4);
    size_t j = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[j++] = B64URL[v >> 18 & 63]; o[j++] = B64URL[v >> 12 & 63];
        o[j++] = B64URL[v >> 6 & 63];  o[j++] = B64URL[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[j++] = B64URL[v >> 18 & 63]; o[j++] = B64URL[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[j++] = B64URL[v >> 18 & 63]; o[j++] = B64URL[v >> 12 & 63];
        o[j++] = B64URL[v >> 6 & 63];
    }
    o[j] = 0;
    return o;
}
/* Accepts base64url and standard base64, with or without padding. Returns
 * a malloc'd buffer (NUL-terminated for convenience) or NULL when invalid. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *o = xmalloc(n * 3 / 4 + 4);
    uint32_t acc = 0;
    int bits = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i], v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '-' || c == '+') v = 62;
        else if (c == '_' || c == '/') v = 63;
        else if (c == '=') break;
        else { free(o); return NULL; }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; o[j++] = (unsigned char)(acc >> bits & 0xff); }
    }
    o[j] = 0;
    *outlen = j;
    return o;
}

/* Length as Dataverse counts text: UTF-16 code units. */
static size_t utf16_len(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xc0) == 0x80) continue;      /* continuation byte */
        n += (*p >= 0xf0) ? 2 : 1;
    }
    return n;
}

static void lower_into(char *dst, const char *src)
{
    for (; *src; src++) *dst++ = (char)tolower((unsigned char)*src);
    *dst = 0;
}

/* Canonical text of a JSON scalar (key comparison, $filter). NULL for
 * null/absent/objects. Returns a malloc'd string. */
static char *json_text(const cJSON *v)
{
    if (!v || cJSON_IsNull(v)) return NULL;
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsBool(v)) return xstrdup(cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15) return xasprintf("%lld", (long long)d);
        return xasprintf("%.15g", d);
    }
    return NULL;
}

static const char *reason(int st)
{
    switch (st) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default:  return "Unknown";
    }
}

/* ======================================================================== */
/* Schema: entity sets, columns (MAPPING.md / DV §2, §7), navigation         */
/* properties, declared alternate keys, close actions                        */
/* ======================================================================== */

enum ctype { T_STR, T_MEMO, T_INT, T_CHOICE, T_BOOL, T_DEC, T_MONEY, T_DATE };
#define CF_CREATE_ONLY 1   /* IsValidForUpdate = false: ignored on update */

struct colspec { const char *name; int type; int maxlen; int flags; const char *choices; };
struct navspec { const char *nav; const char *target; /* NULL: any set */ };
struct setspec {
    const char *set, *logical, *idcol;
    const char *keys[4];            /* declared single-column alternate keys */
    const struct colspec *cols;
    const struct navspec *navs;
};

#define STATE { "statecode", T_INT, 0, 0, NULL }, { "statuscode", T_INT, 0, 0, NULL }

static const struct colspec account_cols[] = {
    { "name", T_STR, 160, 0, NULL }, { "accountnumber", T_STR, 20, 0, NULL },
    { "address1_line1", T_STR, 250, 0, NULL }, { "address1_line2", T_STR, 250, 0, NULL },
    { "address1_line3", T_STR, 250, 0, NULL }, { "address1_city", T_STR, 80, 0, NULL },
    { "address1_postalcode", T_STR, 20, 0, NULL }, { "address1_stateorprovince", T_STR, 50, 0, NULL },
    { "address1_country", T_STR, 80, 0, NULL }, { "address1_county", T_STR, 50, 0, NULL },
    { "address1_postofficebox", T_STR, 20, 0, NULL },
    { "address1_addresstypecode", T_CHOICE, 0, 0, "1,2,3,4" },
    { "telephone1", T_STR, 50, 0, NULL }, { "telephone2", T_STR, 50, 0, NULL },
    { "fax", T_STR, 50, 0, NULL }, { "emailaddress1", T_STR, 100, 0, NULL },
    { "websiteurl", T_STR, 200, 0, NULL }, { "description", T_MEMO, 2000, 0, NULL },
    { "creditlimit", T_MONEY, 0, 0, NULL }, { "creditonhold", T_BOOL, 0, 0, NULL },
    { "paymenttermscode", T_INT, 0, 0, NULL },
    { "customertypecode", T_CHOICE, 0, 0, "1,2,3,4,5,6,7,8,9,10,11,12,13" },
    { "mlc_sapvendorid", T_STR, 100, 0, NULL }, { "mlc_sapcustomerid", T_STR, 100, 0, NULL },
    { "mlc_issapvendor", T_BOOL, 0, 0, NULL }, { "mlc_issapcustomer", T_BOOL, 0, 0, NULL },
    { "mlc_sappaymentterms", T_STR, 100, 0, NULL },
    STATE, { NULL, 0, 0, 0, NULL }
};
static const struct colspec contact_cols[] = {
    { "firstname", T_STR, 50, 0, NULL }, { "lastname", T_STR, 50, 0, NULL },
    { "middlename", T_STR, 50, 0, NULL }, { "jobtitle", T_STR, 100, 0, NULL },
    { "telephone1", T_STR, 50, 0, NULL }, { "mobilephone", T_STR, 50, 0, NULL },
    { "fax", T_STR, 50, 0, NULL }, { "emailaddress1", T_STR, 100, 0, NULL },
    { "description", T_MEMO, 2000, 0, NULL }, { "mlc_sapcontactid", T_STR, 100, 0, NULL },
    STATE, { NULL, 0, 0, 0, NULL }
};
static const struct colspec header_cols[] = {   /* opportunity, salesorder, quote */
    { "name", T_STR, 300, 0, NULL }, { "description", T_MEMO, 2000, 0, NULL },
    { "estimatedvalue", T_MONEY, 0, 0, NULL }, { "estimatedclosedate", T_DATE, 0, 0, NULL },
    { "requestdeliveryby", T_DATE, 0, 0, NULL }, { "mlc_sapponumber", T_STR, 100, 0, NULL },
    { "paymenttermscode", T_INT, 0, 0, NULL }, { "isrevenuesystemcalculated", T_BOOL, 0, 0, NULL },
    { "totalamount", T_MONEY, 0, 0, NULL },
    STATE, { NULL, 0, 0, 0, NULL }
};
static const struct colspec line_cols[] = {     /* opportunityproduct, salesorderdetail, quotedetail */
    { "productdescription", T_STR, 500, 0, NULL }, { "quantity", T_DEC, 0, 0, NULL },
    { "priceperunit", T_MONEY, 0, 0, NULL },
    { "isproductoverridden", T_BOOL, 0, CF_CREATE_ONLY, NULL },
    { "ispriceoverridden", T_BOOL, 0, 0, NULL }, { "mlc_sappoitemid", T_STR, 100, 0, NULL },
    { "description", T_MEMO, 2000, 0, NULL }, { "lineitemnumber", T_INT, 0, 0, NULL },
    { "requestdeliveryby", T_DATE, 0, 0, NULL },
    { "skippricecalculation", T_CHOICE, 0, 0, "0,1,2,3" },
    { NULL, 0, 0, 0, NULL }
};
static const struct colspec currency_cols[] = {
    { "isocurrencycode", T_STR, 5, 0, NULL }, { "currencyname", T_STR, 100, 0, NULL },
    { "currencysymbol", T_STR, 10, 0, NULL }, { "exchangerate", T_DEC, 0, 0, NULL },
    { "currencyprecision", T_INT, 0, 0, NULL }, STATE, { NULL, 0, 0, 0, NULL }
};
static const struct colspec pricelevel_cols[] = {
    { "name", T_STR, 100, 0, NULL }, { "description", T_MEMO, 2000, 0, NULL },
    STATE, { NULL, 0, 0, 0, NULL }
};
static const struct colspec close_cols[] = {
    { "subject", T_STR, 200, 0, NULL }, { "description", T_MEMO, 2000, 0, NULL },
    { "actualend", T_DATE, 0, 0, NULL }, { "actualrevenue", T_MONEY, 0, 0, NULL },
    STATE, { NULL, 0, 0, 0, NULL }
};

static const struct navspec account_navs[] = {
    { "transactioncurrencyid", "transactioncurrencies" }, { "parentaccountid", "accounts" },
    { "primarycontactid", "contacts" }, { "defaultpricelevelid", "pricelevels" },
    { "ownerid", NULL }, { NULL, NULL }
};
static const struct navspec contact_navs[] = {
    { "parentcustomerid_account", "accounts" }, { "parentcustomerid_contact", "contacts" },
    { "transactioncurrencyid", "transactioncurrencies" }, { "defaultpricelevelid", "pricelevels" },
    { "ownerid", NULL }, { NULL, NULL }
};
static const struct navspec opportunity_navs[] = {
    { "customerid_account", "accounts" }, { "customerid_contact", "contacts" },
    { "parentaccountid", "accounts" }, { "parentcontactid", "contacts" },
    { "transactioncurrencyid", "transactioncurrencies" }, { "pricelevelid", "pricelevels" },
    { "ownerid", NULL }, { NULL, NULL }
};
static const struct navspec salesorder_navs[] = {
    { "customerid_account", "accounts" }, { "customerid_contact", "contacts" },
    { "transactioncurrencyid", "transactioncurrencies" }, { "pricelevelid", "pricelevels" },
    { "opportunityid", "opportunities" }, { "quoteid", "quotes" }, { "ownerid", NULL }, { NULL, NULL }
};
static const struct navspec quote_navs[] = {
    { "customerid_account", "accounts" }, { "customerid_contact", "contacts" },
    { "transactioncurrencyid", "transactioncurrencies" }, { "pricelevelid", "pricelevels" },
    { "opportunityid", "opportunities" }, { "ownerid", NULL }, { NULL, NULL }
};
static const struct navspec opportunityproduct_navs[] = {
    { "opportunityid", "opportunities" }, { "productid", "products" }, { "uomid", "uoms" },
    { "transactioncurrencyid", "transactioncurrencies" }, { NULL, NULL }
};
static const struct navspec salesorderdetail_navs[] = {
    { "salesorderid", "salesorders" }, { "productid", "products" }, { "uomid", "uoms" },
    { "transactioncurrencyid", "transactioncurrencies" }, { NULL, NULL }
};
static const struct navspec quotedetail_navs[] = {
    { "quoteid", "quotes" }, { "productid", "products" }, { "uomid", "uoms" },
    { "transactioncurrencyid", "transactioncurrencies" }, { NULL, NULL }
};
static const struct navspec pricelevel_navs[] = {
    { "transactioncurrencyid", "transactioncurrencies" }, { NULL, NULL }
};
static const struct navspec opportunityclose_navs[] = { { "opportunityid", "opportunities" }, { NULL, NULL } };
static const struct navspec orderclose_navs[] = { { "salesorderid", "salesorders" }, { NULL, NULL } };
static const struct navspec quoteclose_navs[] = { { "quoteid", "quotes" }, { NULL, NULL } };
static const struct navspec no_navs[] = { { NULL, NULL } };

static const struct setspec SETS[] = {
    { "accounts", "account", "accountid", { "mlc_sapvendorid", "mlc_sapcustomerid", NULL, NULL }, account_cols, account_navs },
    { "contacts", "contact", "contactid", { "mlc_sapcontactid", NULL, NULL, NULL }, contact_cols, contact_navs },
    { "opportunities", "opportunity", "opportunityid", { "mlc_sapponumber", NULL, NULL, NULL }, header_cols, opportunity_navs },
    { "opportunityproducts", "opportunityproduct", "opportunityproductid", { "mlc_sappoitemid", NULL, NULL, NULL }, line_cols, opportunityproduct_navs },
    { "salesorders", "salesorder", "salesorderid", { "mlc_sapponumber", NULL, NULL, NULL }, header_cols, salesorder_navs },
    { "salesorderdetails", "salesorderdetail", "salesorderdetailid", { "mlc_sappoitemid", NULL, NULL, NULL }, line_cols, salesorderdetail_navs },
    { "quotes", "quote", "quoteid", { "mlc_sapponumber", NULL, NULL, NULL }, header_cols, quote_navs },
    { "quotedetails", "quotedetail", "quotedetailid", { "mlc_sappoitemid", NULL, NULL, NULL }, line_cols, quotedetail_navs },
    { "transactioncurrencies", "transactioncurrency", "transactioncurrencyid", { NULL, NULL, NULL, NULL }, currency_cols, no_navs },
    { "pricelevels", "pricelevel", "pricelevelid", { NULL, NULL, NULL, NULL }, pricelevel_cols, pricelevel_navs },
    { "products", "product", "productid", { NULL, NULL, NULL, NULL }, NULL, no_navs },
    { "uoms", "uom", "uomid", { NULL, NULL, NULL, NULL }, NULL, no_navs },
    { "systemusers", "systemuser", "systemuserid", { NULL, NULL, NULL, NULL }, NULL, no_navs },
    { "teams", "team", "teamid", { NULL, NULL, NULL, NULL }, NULL, no_navs },
    { "opportunitycloses", "opportunityclose", "activityid", { NULL, NULL, NULL, NULL }, close_cols, opportunityclose_navs },
    { "ordercloses", "orderclose", "activityid", { NULL, NULL, NULL, NULL }, close_cols, orderclose_navs },
    { "quotecloses", "quoteclose", "activityid", { NULL, NULL, NULL, NULL }, close_cols, quoteclose_navs },
};
#define NSETS (sizeof SETS / sizeof SETS[0])

/* Unbound close actions (Dynamics CRM 2016 Web API action reference:
 * LoseOpportunity/WinOpportunity take OpportunityClose + Status,
 * CancelSalesOrder takes OrderClose + Status, CloseQuote QuoteClose + Status;
 * none returns a value -> 204). statecode/statuscode per the entity refs. */
struct actionspec {
    const char *name, *param, *idnav, *target, *closeset, *state_name;
    int state;
    int statuses[4];
};
static const struct actionspec ACTIONS[] = {
    { "LoseOpportunity", "OpportunityClose", "opportunityid", "opportunities", "opportunitycloses", "Lost", 2, { 4, 5, 0, 0 } },
    { "WinOpportunity", "OpportunityClose", "opportunityid", "opportunities", "opportunitycloses", "Won", 1, { 3, 0, 0, 0 } },
    { "CancelSalesOrder", "OrderClose", "salesorderid", "salesorders", "ordercloses", "Canceled", 2, { 4, 0, 0, 0 } },
    { "CloseQuote", "QuoteClose", "quoteid", "quotes", "quotecloses", "Closed", 3, { 5, 6, 7, 0 } },
};
#define NACTIONS (sizeof ACTIONS / sizeof ACTIONS[0])

/* States that Update/PATCH may not set (the platform demands the special
 * message; text seen in bcolpaert/Colso.Xrm.DataTransporter#23). */
struct stateguard { const char *set; int state; const char *state_name, *request; };
static const struct stateguard STATE_GUARDS[] = {
    { "opportunities", 1, "Won", "WinOpportunityRequest" },
    { "opportunities", 2, "Lost", "LoseOpportunityRequest" },
    { "salesorders", 2, "Canceled", "CancelSalesOrderRequest" },
    { "salesorders", 3, "Fulfilled", "FulfillSalesOrderRequest" },
    { "quotes", 2, "Won", "WinQuoteRequest" },
    { "quotes", 3, "Closed", "CloseQuoteRequest" },
};

static const struct colspec *find_col(const struct setspec *ss, const char *col)
{
    if (!ss || !ss->cols) return NULL;
    for (const struct colspec *c = ss->cols; c->name; c++)
        if (!strcmp(c->name, col)) return c;
    return NULL;
}
static const struct actionspec *find_action(const char *name)
{
    for (size_t i = 0; i < NACTIONS; i++)
        if (!strcmp(ACTIONS[i].name, name)) return &ACTIONS[i];
    return NULL;
}

/* ======================================================================== */
/* Store: entity sets, records, alternate-key indexes, transactions          */
/* ======================================================================== */

struct rec {
    char id[37];
    cJSON *cols;       /* column -> value */
    cJSON *binds;      /* nav property -> {"set", "id", "ref"} */
    long version;
};

/* Table definitions as the metadata Web API shows them (EntityDefinitions):
 * a set's columns and alternate keys. Seeded from the schema above; the
 * metadata endpoints add custom columns and keys at run time. */
enum { KS_PENDING, KS_ACTIVE, KS_FAILED };
static const char *const KS_NAMES[] = { "Pending", "Active", "Failed" };

struct mdattr {
    char *logical, *schema;
    const char *type;               /* AttributeType: "String", "Boolean", "Lookup", ... (static) */
    int ctype;                      /* enum ctype for value checks; -1: not a value column */
    int maxlen, custom;
    char id[37];
    char *solution;                 /* MSCRM.SolutionUniqueName it was created with */
};

struct mdkey {
    char *logical, *schema, *solution;
    char **attrs;
    size_t nattrs;
    int status;                     /* KS_*; Pending until active_at */
    double active_at;               /* monotonic */
    char id[37], job[37];           /* MetadataId, AsyncJob (the index job) */
    char *fail_msg;
};

struct eset {
    char *name, *logical, *idcol;
    const struct setspec *spec;     /* NULL for a set made up by --allow-any-set */
    struct rec **v;
    size_t n, cap;
    struct hmap byid;               /* id -> rec */
    struct hmap bykey;              /* "col\x1f<lower-case value>" -> rec */
    char **keycols;                 /* declared keys first, then implicit ones */
    size_t nkeycols, ndeclared;
    char mdid[37];                  /* MetadataId of the table */
    struct mdattr **mattrs;         /* columns (metadata) */
    size_t nmattrs;
    struct hmap mbyname;            /* lower-case logical name -> mdattr */
    struct mdkey **mkeys;           /* alternate keys (metadata) */
    size_t nmkeys;
};

struct counters {
    long requests, token_requests, tokens_issued, token_errors, throttled_429, violations,
         violations_in_grace, max_concurrency, injected_503, resets, batches, batch_operations,
         unauthorized_401, budget_429, concurrency_429, part_429, failed_operations,
         header_warnings, writes;
};

struct user {
    char *client_id;
    double *ring;                   /* admission times inside the budget window */
    size_t ring_cap, ring_head, ring_n;
    double retry_until, window_t0;  /* open Retry-After window (monotonic s) */
    const char *window_code;
    char window_msg[200];
    long inflight, max_inflight;
    long requests, throttled, violations, violations_in_grace;
    struct user *next;
};

struct token {
    char *client_id;
    char tenant[128];
    double expires;                 /* monotonic */
    long gen;
};

struct cfg {
    double token_lifetime;
    long budget;
    double window;
    long max_concurrency;
    double retry_after;             /* 0 = computed */
    long latency_ms, fail_503_every, reset_every, part_429_every, violation_grace_ms;
    int reset_after;                /* --reset-phase after */
    int require_keys, strict_columns, allow_state_patch, strict_close,
        changeset_failure_stops, allow_any_set;
    int bare_schema;                /* --bare-schema: no mlc_* columns or keys until created */
    long key_delay_ms;              /* a new key's index: Pending this long, then Active */
};

struct req;   /* per-request state, defined with the MHD glue */

static struct {
    pthread_mutex_t mu;
    struct cfg cfg;
    const char *client_id, *client_secret;   /* accepted credentials (NULL: any) */
    struct eset **sets;
    size_t nsets;
    cJSON **log;
    size_t nlog, caplog;
    long seq;
    struct counters c;
    struct user *users;
    struct hmap tokens;
    long token_gen;
    long inflight_api;
    /* Mean Web API concurrency: the summed time requests were in flight
     * over the span from the first admission to the last completion since
     * the last reset — "did the client keep its slots busy?", which the
     * peak (max_concurrency) cannot tell. */
    double busy_s, first_admit, last_done;
    double exec_s, lock_wait_s;     /* executing API requests under mu; waiting for it */
    long reset_counter, fail503_counter, part_counter, batch_no;
    double t_start;
    char last_tenant[128];
    char **extra_keys;              /* --key SET:COLUMN */
    size_t nextra_keys;
    char **key_fail;                /* --key-fail SET:COLUMN: that key's index fails */
    size_t nkey_fail;
    EVP_PKEY *cert_key;
    char *cert_x5t, *cert_x5t256;
    int port;
    struct req *live;               /* requests not yet completed */
} g = { .mu = PTHREAD_MUTEX_INITIALIZER };

static char *key_index(const char *col, const char *val)
{
    size_t lc = strlen(col), lv = strlen(val);
    char *k = xmalloc(lc + lv + 2);
    memcpy(k, col, lc);
    k[lc] = '\x1f';
    lower_into(k + lc + 1, val);
    return k;
}

static int eset_is_key(const struct eset *s, const char *col)
{
    for (size_t i = 0; i < s->nkeycols; i++)
        if (!strcmp(s->keycols[i], col)) return 1;
    return 0;
}
static int eset_is_declared_key(const struct eset *s, const char *col)
{
    for (size_t i = 0; i < s->ndeclared; i++)
        if (!strcmp(s->keycols[i], col)) return 1;
    return 0;
}

static void idx_add(struct eset *s, struct rec *r)
{
    for (size_t i = 0; i < s->nkeycols; i++) {
        char *v = json_text(cJSON_GetObjectItemCaseSensitive(r->cols, s->keycols[i]));
        if (!v) continue;
        char *k = key_index(s->keycols[i], v);
        if (!hm_get(&s->bykey, k)) hm_put(&s->bykey, k, r);
        free(k);
        free(v);
    }
}
static void idx_del(struct eset *s, struct rec *r)
{
    for (size_t i = 0; i < s->nkeycols; i++) {
        char *v = json_text(cJSON_GetObjectItemCaseSensitive(r->cols, s->keycols[i]));
        if (!v) continue;
        char *k = key_index(s->keycols[i], v);
        hm_del(&s->bykey, k, r);
        free(k);
        free(v);
    }
}

/* Make col an alternate key of s (declared: counted as declared). */
static void eset_add_key(struct eset *s, const char *col, int declared)
{
    if (eset_is_key(s, col)) return;
    s->keycols = xrealloc(s->keycols, (s->nkeycols + 1) * sizeof *s->keycols);
    if (declared && s->ndeclared < s->nkeycols) {
        /* keep declared keys first */
        memmove(s->keycols + s->ndeclared + 1, s->keycols + s->ndeclared,
                (s->nkeycols - s->ndeclared) * sizeof *s->keycols);
        s->keycols[s->ndeclared] = xstrdup(col);
    } else {
        s->keycols[s->nkeycols] = xstrdup(col);
    }
    s->nkeycols++;
    if (declared) s->ndeclared++;
    for (size_t i = 0; i < s->n; i++) {
        char *v = json_text(cJSON_GetObjectItemCaseSensitive(s->v[i]->cols, col));
        if (!v) continue;
        char *k = key_index(col, v);
        if (!hm_get(&s->bykey, k)) hm_put(&s->bykey, k, s->v[i]);
        free(k);
        free(v);
    }
}

/* ---- metadata: columns and alternate keys (EntityDefinitions) ---- */

/* The custom columns of this fake's schema (what `dataverse setup` makes). */
static int is_custom_col(const char *col) { return !strncmp(col, "mlc_", 4); }

static const char *ctype_attr_type(const struct colspec *c)
{
    switch (c->type) {
    case T_STR: return "String";
    case T_MEMO: return "Memo";
    case T_INT: return !strcmp(c->name, "statecode") ? "State" : !strcmp(c->name, "statuscode") ? "Status" : "Integer";
    case T_CHOICE: return "Picklist";
    case T_BOOL: return "Boolean";
    case T_DEC: return "Decimal";
    case T_MONEY: return "Money";
    case T_DATE: return "DateTime";
    }
    return "String";
}

static struct mdattr *md_attr(const struct eset *s, const char *logical)
{
    char low[160];
    if (strlen(logical) >= sizeof low) return NULL;
    lower_into(low, logical);
    return hm_get(&s->mbyname, low);
}

static struct mdattr *md_add_attr(struct eset *s, const char *logical, const char *schema, const char *type,
                                  int ctype, int maxlen, int custom)
{
    struct mdattr *a = md_attr(s, logical);
    if (a) return a;
    a = xcalloc(1, sizeof *a);
    a->logical = xstrdup(logical);
    lower_into(a->logical, logical);
    a->schema = xstrdup(schema ? schema : logical);
    a->type = type;
    a->ctype = ctype;
    a->maxlen = maxlen;
    a->custom = custom;
    new_guid(a->id);
    s->mattrs = xrealloc(s->mattrs, (s->nmattrs + 1) * sizeof *s->mattrs);
    s->mattrs[s->nmattrs++] = a;
    hm_put(&s->mbyname, a->logical, a);
    return a;
}

static struct mdkey *md_add_key(struct eset *s, const char *schema, char **attrs, size_t n, int status)
{
    struct mdkey *k = xcalloc(1, sizeof *k);
    k->schema = xstrdup(schema);
    k->logical = xstrdup(schema);
    lower_into(k->logical, schema);
    k->attrs = xcalloc(n, sizeof *k->attrs);
    for (size_t i = 0; i < n; i++) {
        k->attrs[i] = xstrdup(attrs[i]);
        lower_into(k->attrs[i], attrs[i]);
    }
    k->nattrs = n;
    k->status = status;
    new_guid(k->id);
    new_guid(k->job);
    s->mkeys = xrealloc(s->mkeys, (s->nmkeys + 1) * sizeof *s->mkeys);
    s->mkeys[s->nmkeys++] = k;
    return k;
}

static void md_free(struct eset *s)
{
    for (size_t i = 0; i < s->nmattrs; i++) {
        free(s->mattrs[i]->logical);
        free(s->mattrs[i]->schema);
        free(s->mattrs[i]->solution);
        free(s->mattrs[i]);
    }
    free(s->mattrs);
    s->mattrs = NULL;
    s->nmattrs = 0;
    hm_free(&s->mbyname, NULL);
    for (size_t i = 0; i < s->nmkeys; i++) {
        struct mdkey *k = s->mkeys[i];
        for (size_t a = 0; a < k->nattrs; a++) free(k->attrs[a]);
        free(k->attrs);
        free(k->logical);
        free(k->schema);
        free(k->solution);
        free(k->fail_msg);
        free(k);
    }
    free(s->mkeys);
    s->mkeys = NULL;
    s->nmkeys = 0;
}

/* The definition a set starts with: its primary id, the schema's columns
 * (without the mlc_* ones under --bare-schema), one lookup column per
 * navigation property (customerid_account -> customerid), and an Active
 * key for every declared key. */
static void md_init(struct eset *s)
{
    new_guid(s->mdid);
    md_add_attr(s, s->idcol, NULL, "Uniqueidentifier", -1, 0, 0);
    if (s->spec && s->spec->cols)
        for (const struct colspec *c = s->spec->cols; c->name; c++) {
            if (g.cfg.bare_schema && is_custom_col(c->name)) continue;
            md_add_attr(s, c->name, NULL, ctype_attr_type(c), c->type, c->maxlen, is_custom_col(c->name));
        }
    if (s->spec)
        for (const struct navspec *n = s->spec->navs; n && n->nav; n++) {
            char col[128];
            const char *type = "Lookup";
            snprintf(col, sizeof col, "%s", n->nav);
            char *us = strrchr(col, '_');
            if (us && (!strcmp(us, "_account") || !strcmp(us, "_contact"))) {
                *us = 0;
                type = "Customer";
            } else if (!strcmp(col, "ownerid")) {
                type = "Owner";
            }
            md_add_attr(s, col, NULL, type, -1, 0, 0);
        }
    for (size_t i = 0; i < s->ndeclared; i++) {
        char schema[200];
        snprintf(schema, sizeof schema, "%s_%s", s->logical, s->keycols[i]);
        md_add_key(s, schema, &s->keycols[i], 1, KS_ACTIVE);
    }
}

static int key_fail_flag(const struct eset *s, const struct mdkey *k)
{
    for (size_t i = 0; i < g.nkey_fail; i++) {
        const char *c = strchr(g.key_fail[i], ':');
        if (!c || strncmp(g.key_fail[i], s->name, (size_t)(c - g.key_fail[i])) ||
            strlen(s->name) != (size_t)(c - g.key_fail[i]))
            continue;
        for (size_t a = 0; a < k->nattrs; a++)
            if (!strcasecmp(k->attrs[a], c + 1)) return 1;
    }
    return 0;
}

/* A duplicate value of the key's columns among the records, or NULL. */
static char *key_duplicate(const struct eset *s, const struct mdkey *k)
{
    struct hmap seen = { 0 };
    char *dup = NULL;
    for (size_t i = 0; i < s->n && !dup; i++) {
        struct sbuf b = { 0 };
        int all = 1;
        for (size_t a = 0; a < k->nattrs && all; a++) {
            char *v = json_text(cJSON_GetObjectItemCaseSensitive(s->v[i]->cols, k->attrs[a]));
            if (!v) { all = 0; break; }
            char *low = xstrdup(v);
            lower_into(low, v);
            if (a) sb_putn(&b, "\x1f", 1);
            sb_puts(&b, low);
            free(low);
            free(v);
        }
        if (all) {
            if (hm_get(&seen, sb_str(&b))) dup = xstrdup(sb_str(&b));
            else hm_put(&seen, sb_str(&b), (void *)1);
        }
        sb_free(&b);
    }
    hm_free(&seen, NULL);
    return dup;
}

/* Pending keys whose delay is over: build the "index" (Active: a declared
 * key from now on), or fail it (--key-fail, or duplicate values). */
static void md_tick(void)
{
    double now = mono_now();
    for (size_t i = 0; i < g.nsets; i++) {
        struct eset *s = g.sets[i];
        for (size_t k = 0; k < s->nmkeys; k++) {
            struct mdkey *mk = s->mkeys[k];
            if (mk->status != KS_PENDING || now < mk->active_at) continue;
            char *dup = NULL;
            if (key_fail_flag(s, mk)) {
                mk->status = KS_FAILED;
                mk->fail_msg = xasprintf("fake: index creation for key %s failed (--key-fail).", mk->schema);
            } else if ((dup = key_duplicate(s, mk))) {
                for (char *p = dup; *p; p++) if (*p == '\x1f') *p = ',';
                mk->status = KS_FAILED;
                mk->fail_msg = xasprintf("fake: the index for key %s could not be created: duplicate values "
                                         "'%s' in %s.", mk->schema, dup, s->logical);
                free(dup);
            } else {
                mk->status = KS_ACTIVE;
                if (mk->nattrs == 1) eset_add_key(s, mk->attrs[0], 1);
            }
        }
    }
}

static struct eset *eset_new(const char *name, const struct setspec *spec)
{
    struct eset *s = xcalloc(1, sizeof *s);
    s->name = xstrdup(name);
    s->spec = spec;
    if (spec) {
        s->logical = xstrdup(spec->logical);
        s->idcol = xstrdup(spec->idcol);
        for (int i = 0; i < 4 && spec->keys[i] && !g.cfg.bare_schema; i++) eset_add_key(s, spec->keys[i], 1);
    } else {
        size_t n = strlen(name);
        if (n > 3 && !strcmp(name + n - 3, "ies")) s->logical = xasprintf("%.*sy", (int)(n - 3), name);
        else if (n > 1 && name[n - 1] == 's') s->logical = xstrndup(name, n - 1);
        else s->logical = xstrdup(name);
        s->idcol = xasprintf("%sid", s->logical);
    }
    for (size_t i = 0; i < g.nextra_keys; i++) {
        const char *c = strchr(g.extra_keys[i], ':');
        if (c && (size_t)(c - g.extra_keys[i]) == strlen(name) && !strncmp(g.extra_keys[i], name, strlen(name)))
            eset_add_key(s, c + 1, 1);
    }
    md_init(s);
    g.sets = xrealloc(g.sets, (g.nsets + 1) * sizeof *g.sets);
    g.sets[g.nsets++] = s;
    return s;
}

static void rec_free(struct rec *r)
{
    if (!r) return;
    cJSON_Delete(r->cols);
    cJSON_Delete(r->binds);
    free(r);
}
static void rec_free_v(void *p) { (void)p; }   /* hmap values are borrowed */

static void eset_clear(struct eset *s)
{
    for (size_t i = 0; i < s->n; i++) rec_free(s->v[i]);
    s->n = 0;
    hm_free(&s->byid, rec_free_v);
    hm_free(&s->bykey, rec_free_v);
    /* drop implicit keys, keep declared ones */
    for (size_t i = s->ndeclared; i < s->nkeycols; i++) free(s->keycols[i]);
    s->nkeycols = s->ndeclared;
}
/* Back to the definition the set started with (for /_fake/reset): keys
 * and columns created through the metadata endpoints are dropped. Call on
 * an empty set (after eset_clear). */
static void eset_schema_reset(struct eset *s)
{
    for (size_t i = 0; i < s->nkeycols; i++) free(s->keycols[i]);
    s->nkeycols = s->ndeclared = 0;
    md_free(s);
    if (s->spec)
        for (int i = 0; i < 4 && s->spec->keys[i] && !g.cfg.bare_schema; i++) eset_add_key(s, s->spec->keys[i], 1);
    for (size_t i = 0; i < g.nextra_keys; i++) {
        const char *c = strchr(g.extra_keys[i], ':');
        if (c && (size_t)(c - g.extra_keys[i]) == strlen(s->name) && !strncmp(g.extra_keys[i], s->name, strlen(s->name)))
            eset_add_key(s, c + 1, 1);
    }
    md_init(s);
}

static void eset_free(struct eset *s)
{
    eset_clear(s);
    md_free(s);
    for (size_t i = 0; i < s->nkeycols; i++) free(s->keycols[i]);
    free(s->keycols);
    free(s->v);
    free(s->name);
    free(s->logical);
    free(s->idcol);
    free(s);
}

static struct eset *eset_find(const char *name)
{
    for (size_t i = 0; i < g.nsets; i++)
        if (!strcmp(g.sets[i]->name, name)) return g.sets[i];
    return NULL;
}
/* The set by name; an unknown name yields a new set only with
 * --allow-any-set (and a name that looks like an entity set). */
static struct eset *eset_get(const char *name)
{
    struct eset *s = eset_find(name);
    if (s || !g.cfg.allow_any_set) return s;
    if (!*name || strlen(name) > 100) return NULL;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return NULL;
    return eset_new(name, NULL);
}

static void eset_insert(struct eset *s, struct rec *r, size_t pos)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    if (pos > s->n) pos = s->n;
    memmove(s->v + pos + 1, s->v + pos, (s->n - pos) * sizeof *s->v);
    s->v[pos] = r;
    s->n++;
    hm_put(&s->byid, r->id, r);
    idx_add(s, r);
}
static size_t eset_remove(struct eset *s, struct rec *r)
{
    size_t pos = 0;
    while (pos < s->n && s->v[pos] != r) pos++;
    if (pos == s->n) return pos;
    idx_del(s, r);
    hm_del(&s->byid, r->id, r);
    memmove(s->v + pos, s->v + pos + 1, (s->n - pos - 1) * sizeof *s->v);
    s->n--;
    return pos;
}

static struct rec *find_by_id(struct eset *s, const char *id)
{
    char low[40];
    if (strlen(id) >= sizeof low) return NULL;
    lower_into(low, id);
    return hm_get(&s->byid, low);
}

/* One column=value part of a key predicate. */
struct keypart { char *col, *val; int quoted; };

static int text_eq_ci(const char *a, const char *b)
{
    return a && b && strcasecmp(a, b) == 0;
}

static struct rec *find_by_key(struct eset *s, const struct keypart *kp, int nkp)
{
    if (nkp == 1 && eset_is_key(s, kp[0].col)) {
        char *k = key_index(kp[0].col, kp[0].val);
        struct rec *r = hm_get(&s->bykey, k);
        free(k);
        return r;
    }
    for (size_t i = 0; i < s->n; i++) {
        int ok = 1;
        for (int j = 0; j < nkp && ok; j++) {
            char *v = json_text(cJSON_GetObjectItemCaseSensitive(s->v[i]->cols, kp[j].col));
            ok = text_eq_ci(v, kp[j].val);
            free(v);
        }
        if (ok) return s->v[i];
    }
    return NULL;
}

/* ---- transactions (undo log) ---- */
enum { U_CREATE, U_UPDATE, U_DELETE };
struct undo {
    int kind;
    struct eset *s;
    struct rec *r;
    cJSON *old_cols, *old_binds;
    long old_version;
    size_t pos;
};
struct txn {
    struct undo *v;
    size_t n, cap;
    size_t log_start;
};

static void txn_begin(struct txn *t)
{
    memset(t, 0, sizeof *t);
    t->log_start = g.nlog;
}
static struct undo *txn_push(struct txn *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = xrealloc(t->v, t->cap * sizeof *t->v);
    }
    struct undo *u = &t->v[t->n++];
    memset(u, 0, sizeof *u);
    return u;
}
static void txn_create(struct txn *t, struct eset *s, struct rec *r)
{
    eset_insert(s, r, s->n);
    struct undo *u = txn_push(t);
    u->kind = U_CREATE;
    u->s = s;
    u->r = r;
}
/* Before changing r's columns/binds: saves them and unindexes r.
 * txn_update_end re-indexes. */
static void txn_update_begin(struct txn *t, struct eset *s, struct rec *r)
{
    struct undo *u = txn_push(t);
    u->kind = U_UPDATE;
    u->s = s;
    u->r = r;
    u->old_cols = cJSON_Duplicate(r->cols, 1);
    u->old_binds = cJSON_Duplicate(r->binds, 1);
    u->old_version = r->version;
    idx_del(s, r);
}
static void txn_update_end(struct eset *s, struct rec *r)
{
    r->version++;
    idx_add(s, r);
}
static void txn_delete(struct txn *t, struct eset *s, struct rec *r)
{
    struct undo *u = txn_push(t);
    u->kind = U_DELETE;
    u->s = s;
    u->r = r;
    u->pos = eset_remove(s, r);
}
static void txn_commit(struct txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct undo *u = &t->v[i];
        cJSON_Delete(u->old_cols);
        cJSON_Delete(u->old_binds);
        if (u->kind == U_DELETE) rec_free(u->r);
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}
static void txn_rollback(struct txn *t)
{
    for (size_t i = t->n; i-- > 0;) {
        struct undo *u = &t->v[i];
        switch (u->kind) {
        case U_CREATE:
            eset_remove(u->s, u->r);
            rec_free(u->r);
            break;
        case U_UPDATE:
            idx_del(u->s, u->r);
            cJSON_Delete(u->r->cols);
            cJSON_Delete(u->r->binds);
            u->r->cols = u->old_cols;
            u->r->binds = u->old_binds;
            u->r->version = u->old_version;
            u->old_cols = u->old_binds = NULL;
            idx_add(u->s, u->r);
            break;
        case U_DELETE:
            eset_insert(u->s, u->r, u->pos);
            break;
        }
    }
    for (size_t i = t->log_start; i < g.nlog; i++) {
        cJSON *e = g.log[i];
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "applied"))) {
            cJSON_ReplaceItemInObjectCaseSensitive(e, "applied", cJSON_CreateFalse());
            cJSON_AddTrueToObject(e, "rolled_back");
        }
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* ---- seed data: currencies and the price list, fixed GUIDs ---- */
#define GUID_USD "7e0c0000-0000-4000-8000-000000000840"
#define GUID_EUR "7e0c0000-0000-4000-8000-000000000978"
#define GUID_GBP "7e0c0000-0000-4000-8000-000000000826"
#define GUID_PRICELIST "9c1e0000-0000-4000-8000-000000000001"

static struct rec *seed_rec(const char *id)
{
    struct rec *r = xcalloc(1, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->cols = cJSON_CreateObject();
    r->binds = cJSON_CreateObject();
    r->version = 1;
    return r;
}
static void seed(void)
{
    static const struct { const char *id, *iso, *name, *sym; } cur[] = {
        { GUID_USD, "USD", "US Dollar", "$" },
        { GUID_EUR, "EUR", "Euro", "\xe2\x82\xac" },
        { GUID_GBP, "GBP", "Pound Sterling", "\xc2\xa3" },
    };
    struct eset *tc = eset_find("transactioncurrencies");
    for (size_t i = 0; i < sizeof cur / sizeof cur[0]; i++) {
        struct rec *r = seed_rec(cur[i].id);
        cJSON_AddStringToObject(r->cols, "isocurrencycode", cur[i].iso);
        cJSON_AddStringToObject(r->cols, "currencyname", cur[i].name);
        cJSON_AddStringToObject(r->cols, "currencysymbol", cur[i].sym);
        cJSON_AddNumberToObject(r->cols, "exchangerate", 1);
        cJSON_AddNumberToObject(r->cols, "currencyprecision", 2);
        cJSON_AddNumberToObject(r->cols, "statecode", 0);
        cJSON_AddNumberToObject(r->cols, "statuscode", 1);
        eset_insert(tc, r, tc->n);
    }
    struct eset *pl = eset_find("pricelevels");
    struct rec *r = seed_rec(GUID_PRICELIST);
    cJSON_AddStringToObject(r->cols, "name", "SAP Default");
    cJSON_AddNumberToObject(r->cols, "statecode", 0);
    cJSON_AddNumberToObject(r->cols, "statuscode", 100001);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "set", "transactioncurrencies");
    cJSON_AddStringToObject(b, "id", GUID_EUR);
    cJSON_AddStringToObject(b, "ref", "/transactioncurrencies(" GUID_EUR ")");
    cJSON_AddItemToObject(r->binds, "transactioncurrencyid", b);
    eset_insert(pl, r, pl->n);
}

static void store_init(void)
{
    for (size_t i = 0; i < NSETS; i++) eset_new(SETS[i].set, &SETS[i]);
    seed();
}

static void log_clear(void)
{
    for (size_t i = 0; i < g.nlog; i++) cJSON_Delete(g.log[i]);
    g.nlog = 0;
}
static void log_append(cJSON *e)
{
    if (g.nlog == g.caplog) {
        g.caplog = g.caplog ? g.caplog * 2 : 1024;
        g.log = xrealloc(g.log, g.caplog * sizeof *g.log);
    }
    g.log[g.nlog++] = e;
}

/* ---- users (service protection is per user) ---- */
static struct user *user_get(const char *client_id)
{
    for (struct user *u = g.users; u; u = u->next)
        if (!strcmp(u->client_id, client_id)) return u;
    struct user *u = xcalloc(1, sizeof *u);
    u->client_id = xstrdup(client_id);
    u->next = g.users;
    g.users = u;
    return u;
}
/* The budget ring follows cfg.budget (reallocated, emptied on change). */
static void user_ring_fit(struct user *u, long budget)
{
    if (budget <= 0) { u->ring_n = 0; return; }
    if (u->ring_cap == (size_t)budget) return;
    free(u->ring);
    u->ring = xcalloc((size_t)budget, sizeof *u->ring);
    u->ring_cap = (size_t)budget;
    u->ring_head = u->ring_n = 0;
}
static void user_reset(struct user *u)
{
    u->ring_head = u->ring_n = 0;
    u->retry_until = u->window_t0 = 0;
    u->window_code = NULL;
    u->window_msg[0] = 0;
    u->max_inflight = u->inflight;
    u->requests = u->throttled = u->violations = u->violations_in_grace = 0;
}

/* ======================================================================== */
/* Operations: context, responses, errors                                   */
/* ======================================================================== */

struct cidref { char *id; struct eset *s; struct rec *r; };

struct opctx {
    struct txn txn;
    char *base;                 /* "http://127.0.0.1:PORT/api/data/v9.2/" */
    const char *user;           /* client id, for the log */
    long batch_no;              /* 0: not in a $batch */
    int changeset_no;           /* 0: not in a change set */
    const char *content_id;     /* Content-ID of the current part */
    struct cidref *cids;        /* Content-IDs of the current change set */
    size_t ncids;
};

struct opreq {
    const char *method, *url;   /* url: relative to the service root, raw */
    const char *body;
    size_t body_len;
    const char *content_type, *if_match, *if_none_match, *prefer;
    const char *solution;       /* MSCRM.SolutionUniqueName (metadata writes) */
};

struct opresp {
    int status;
    struct sbuf hdr;            /* extra header lines, "Name: value\r\n" */
    char *body;                 /* JSON text or NULL */
    struct eset *s;             /* the record written (for Content-ID) */
    struct rec *r;
    char *err_code, *err_msg;
};

static void opresp_free(struct opresp *rs)
{
    sb_free(&rs->hdr);
    free(rs->body);
    free(rs->err_code);
    free(rs->err_msg);
    memset(rs, 0, sizeof *rs);
}

/* Dataverse's error shape (DV §2): {"error":{"code":"0x…","message":"…"}}. */
static FMT(4, 5) void op_error(struct opresp *rs, int status, const char *code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    free(rs->body);
    rs->body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    rs->status = status;
    char rid[37];
    new_guid(rid);
    sb_printf(&rs->hdr, "REQ_ID: %s\r\nContent-Type: application/json; odata.metadata=minimal\r\n", rid);
    free(rs->err_code);
    free(rs->err_msg);
    rs->err_code = xstrdup(code);
    rs->err_msg = xstrdup(msg);
}

static void op_json(struct opresp *rs, int status, cJSON *o)
{
    rs->status = status;
    free(rs->body);
    rs->body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sb_puts(&rs->hdr, "Content-Type: application/json; odata.metadata=minimal\r\n");
}

/* Error texts used in several places. */
#define E_KEY_MISSING   "0x80060891"   /* RecordNotFoundByEntityKey (DV §3) */
#define E_NOT_EXIST     "0x80040217"   /* ObjectDoesNotExist */
#define E_KEY_DUP       "0x80060892"   /* DuplicateRecordEntityKey (DV §3) */
#define E_KEY_UNDEFINED "0x80060890"   /* EntityKeyNotDefined (DV §3) */
#define E_DUPLICATE     "0x80040237"   /* DuplicateRecord (412, DV §2) */
#define E_VERSION       "0x80060882"   /* ConcurrencyVersionMismatch (412, DV §2) */
#define E_VALIDATION    "0x80044331"   /* length validation (DV §4 sample) */
#define E_PAYLOAD       "0x80048d19"   /* payload/type errors */
#define E_ODATA         "0x80060888"   /* OData URI/property errors */
#define E_SEGMENT       "0x8006088a"   /* resource not found for segment */
#define E_ARG           "0x80040203"   /* InvalidArgument */
#define E_BUDGET        "0x80072322"   /* DV §5 */
#define E_EXECTIME      "0x80072321"
#define E_CONCURRENCY   "0x80072326"   /* DV §5 */

static void err_key_missing(struct opresp *rs, const struct eset *s)
{
    op_error(rs, 404, E_KEY_MISSING, "A record with the specified key values does not exist in %s entity", s->logical);
}
static void err_id_missing(struct opresp *rs, const struct eset *s, const char *id)
{
    op_error(rs, 404, E_NOT_EXIST, "%s With Id = %s Does Not Exist", s->logical, id);
}

/* ======================================================================== */
/* URL parsing: entity set, key predicate (alternate keys, aliases),         */
/* query options                                                            */
/* ======================================================================== */

struct qparam { char *name, *val; };

#define MAX_KP 16
#define MAX_QP 32
struct target {
    char *path;                 /* percent-decoded path */
    char *set;                  /* entity set, action or function name */
    char *cid;                  /* "$n" reference: "n" */
    int has_pred, by_id;
    char id[37];
    struct keypart kp[MAX_KP];
    int nkp;
    char *prop;                 /* segment after the key predicate */
    struct qparam q[MAX_QP];
    int nq;
    char *keytext;              /* canonical key text for the log */
};

static void target_free(struct target *t)
{
    free(t->path);
    free(t->set);
    free(t->cid);
    for (int i = 0; i < t->nkp; i++) { free(t->kp[i].col); free(t->kp[i].val); }
    free(t->prop);
    for (int i = 0; i < t->nq; i++) { free(t->q[i].name); free(t->q[i].val); }
    free(t->keytext);
    memset(t, 0, sizeof *t);
}

static const char *tq(const struct target *t, const char *name)
{
    for (int i = 0; i < t->nq; i++)
        if (!strcasecmp(t->q[i].name, name)) return t->q[i].val;
    return NULL;
}

/* One OData literal: 'text' (quotes doubled inside) or a bare token. */
static int parse_literal(const char *s, size_t n, char **out, int *quoted)
{
    while (n && isspace((unsigned char)*s)) { s++; n--; }
    while (n && isspace((unsigned char)s[n - 1])) n--;
    if (!n) return -1;
    if (s[0] == '\'') {
        if (n < 2 || s[n - 1] != '\'') return -1;
        char *o = xmalloc(n);
        size_t j = 0;
        for (size_t i = 1; i < n - 1; i++) {
            if (s[i] == '\'') {
                if (i + 1 < n - 1 && s[i + 1] == '\'') { o[j++] = '\''; i++; }
                else { free(o); return -1; }
            } else {
                o[j++] = s[i];
            }
        }
        o[j] = 0;
        *out = o;
        *quoted = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\'' || s[i] == '(' || s[i] == ')' || s[i] == ',') return -1;
    *out = xstrndup(s, n);
    *quoted = 0;
    return 0;
}

static void append_keytext(struct sbuf *b, const char *col, const char *val, int quoted)
{
    if (b->n) sb_putn(b, ",", 1);
    sb_printf(b, "%s=", col);
    if (!quoted) { sb_puts(b, val); return; }
    sb_putn(b, "'", 1);
    for (const char *p = val; *p; p++) {
        if (*p == '\'') sb_putn(b, "''", 2);
        else sb_putn(b, p, 1);
    }
    sb_putn(b, "'", 1);
}

/* Characters that ASP.NET request filtering refuses in a path, even
 * percent-encoded (DV §3 "Key limits": / < > * % & : \ ? + break GET/PATCH
 * by key). An alias (col=@k ?@k='...') carries them in the query instead. */
static const char PATH_DANGEROUS[] = "<>*%&:\\?/+";

/* inner: the text between the parentheses, decoded. in_path: values written
 * inline in a path are subject to request filtering. */
static int parse_pred(const char *inner, struct target *t, int in_path, struct opresp *rs)
{
    size_t n = strlen(inner), start = 0;
    int inq = 0;
    struct sbuf kt = { 0 };
    for (size_t i = 0; i <= n; i++) {
        if (i < n && inner[i] == '\'') { inq = !inq; continue; }
        if (i < n && (inq || inner[i] != ',')) continue;
        /* segment [start, i) */
        const char *seg = inner + start;
        size_t sl = i - start;
        start = i + 1;
        const char *eq = NULL;
        int q2 = 0;
        for (size_t k = 0; k < sl; k++) {
            if (seg[k] == '\'') q2 = !q2;
            else if (seg[k] == '=' && !q2) { eq = seg + k; break; }
        }
        if (!eq) {
            /* unnamed: the primary key (a GUID) */
            char *v;
            int quoted;
            if (t->nkp || t->by_id || parse_literal(seg, sl, &v, &quoted) < 0) goto syntax;
            if (quoted || !is_guid(v, strlen(v))) { free(v); goto syntax; }
            lower_into(t->id, v);
            free(v);
            t->by_id = 1;
            continue;
        }
        if (t->by_id || t->nkp >= MAX_KP) goto syntax;
        const char *c0 = seg, *c1 = eq;
        while (c0 < c1 && isspace((unsigned char)*c0)) c0++;
        while (c1 > c0 && isspace((unsigned char)c1[-1])) c1--;
        if (c0 == c1) goto syntax;
        const char *v0 = eq + 1;
        size_t vl = sl - (size_t)(v0 - seg);
        while (vl && isspace((unsigned char)*v0)) { v0++; vl--; }
        char *val;
        int quoted;
        if (vl && *v0 == '@') {
            char *alias = xstrndup(v0, vl);
            while (strlen(alias) && isspace((unsigned char)alias[strlen(alias) - 1])) alias[strlen(alias) - 1] = 0;
            const char *av = tq(t, alias);
            if (!av) {
                op_error(rs, 400, E_ODATA, "The parameter alias '%s' is not defined in the query string.", alias);
                free(alias);
                sb_free(&kt);
                return -1;
            }
            free(alias);
            if (parse_literal(av, strlen(av), &val, &quoted) < 0) goto syntax;
        } else {
            if (parse_literal(v0, vl, &val, &quoted) < 0) goto syntax;
            if (in_path) {
                const char *bad = strpbrk(val, PATH_DANGEROUS);
                if (bad) {
                    op_error(rs, 400, "", "A potentially dangerous Request.Path value was detected from the client (%c).", *bad);
                    free(val);
                    sb_free(&kt);
                    return -1;
                }
            }
        }
        t->kp[t->nkp].col = xstrndup(c0, (size_t)(c1 - c0));
        t->kp[t->nkp].val = val;
        t->kp[t->nkp].quoted = quoted;
        append_keytext(&kt, t->kp[t->nkp].col, val, quoted);
        t->nkp++;
    }
    if (inq || (!t->nkp && !t->by_id)) goto syntax;
    t->has_pred = 1;
    t->keytext = t->by_id ? xstrdup(t->id) : xstrdup(sb_str(&kt));
    sb_free(&kt);
    return 0;
syntax:
    sb_free(&kt);
    op_error(rs, 400, E_ODATA, "Bad Request - Error in query syntax.");
    return -1;
}

/* Find the ')' closing the predicate that starts after p[0] == '('. */
static const char *pred_end(const char *p)
{
    int inq = 0;
    for (p++; *p; p++) {
        if (*p == '\'') inq = !inq;
        else if (*p == ')' && !inq) return p;
    }
    return NULL;
}

/* rel: the raw URL relative to the service root ("accounts(k='v')?$select=x"). */
static int parse_target(const char *rel, struct target *t, struct opresp *rs)
{
    memset(t, 0, sizeof *t);
    const char *qm = strchr(rel, '?');
    size_t plen = qm ? (size_t)(qm - rel) : strlen(rel);
    if (qm) {
        const char *p = qm + 1;
        while (*p && t->nq < MAX_QP) {
            size_t l = strcspn(p, "&");
            const char *eq = memchr(p, '=', l);
            if (l) {
                size_t nl = eq ? (size_t)(eq - p) : l;
                t->q[t->nq].name = pct_decode(p, nl, 1);
                t->q[t->nq].val = eq ? pct_decode(eq + 1, l - nl - 1, 1) : xstrdup("");
                t->nq++;
            }
            p += l;
            if (*p == '&') p++;
        }
    }
    t->path = pct_decode(rel, plen, 0);
    const char *p = t->path;
    if (p[0] == '$' && isdigit((unsigned char)p[1])) {
        size_t l = strspn(p + 1, "0123456789");
        t->cid = xstrndup(p + 1, l);
        p += 1 + l;
        if (*p == '/') t->prop = xstrdup(p + 1);
        else if (*p) goto syntax;
        return 0;
    }
    size_t n = strcspn(p, "(/");
    t->set = xstrndup(p, n);
    p += n;
    if (*p == '(') {
        const char *e = pred_end(p);
        if (!e) goto syntax;
        char *inner = xstrndup(p + 1, (size_t)(e - p - 1));
        int rc = parse_pred(inner, t, 1, rs);
        free(inner);
        if (rc < 0) return -1;
        p = e + 1;
    }
    if (*p == '/') t->prop = xstrdup(p + 1);
    else if (*p) goto syntax;
    return 0;
syntax:
    op_error(rs, 400, E_ODATA, "Bad Request - Error in query syntax.");
    return -1;
}

/* "/accounts(k='v')", "accounts(<guid>)", "https://host/api/data/v9.2/…",
 * "$1": strip to the part relative to the service root. */
static const char *strip_service_root(const char *ref)
{
    if (!strncmp(ref, "http://", 7) || !strncmp(ref, "https://", 8)) {
        const char *p = strchr(ref + 8, '/');
        ref = p ? p : ref + strlen(ref);
    }
    if (!strncmp(ref, API_PREFIX, strlen(API_PREFIX))) {
        const char *p = strchr(ref + strlen(API_PREFIX), '/');
        return p ? p + 1 : ref + strlen(ref);
    }
    if (*ref == '/') ref++;
    return ref;
}

/* ======================================================================== */
/* $filter: eq ne gt ge lt le, and or not, (), contains/startswith/endswith  */
/* ======================================================================== */

enum { F_OR, F_AND, F_NOT, F_CMP, F_FUNC };
enum { OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE };
enum { TK_END, TK_LP, TK_RP, TK_COMMA, TK_STR, TK_WORD, TK_BAD };

struct fnode {
    int kind, op;
    struct fnode *a, *b;
    char *col, *lit, *fn;
    int lit_null;
};

struct fparser {
    const char *s;
    size_t i;
    int tk;
    char *tv;
};

static void fnode_free(struct fnode *f)
{
    if (!f) return;
    fnode_free(f->a);
    fnode_free(f->b);
    free(f->col);
    free(f->lit);
    free(f->fn);
    free(f);
}

static void f_next(struct fparser *p)
{
    free(p->tv);
    p->tv = NULL;
    while (isspace((unsigned char)p->s[p->i])) p->i++;
    char c = p->s[p->i];
    if (!c) { p->tk = TK_END; return; }
    if (c == '(') { p->i++; p->tk = TK_LP; return; }
    if (c == ')') { p->i++; p->tk = TK_RP; return; }
    if (c == ',') { p->i++; p->tk = TK_COMMA; return; }
    if (c == '\'') {
        size_t j = p->i + 1;
        struct sbuf b = { 0 };
        sb_puts(&b, "");
        for (;;) {
            if (!p->s[j]) { sb_free(&b); p->tk = TK_BAD; return; }
            if (p->s[j] == '\'') {
                if (p->s[j + 1] == '\'') { sb_putn(&b, "'", 1); j += 2; continue; }
                j++;
                break;
            }
            sb_putn(&b, p->s + j, 1);
            j++;
        }
        p->i = j;
        p->tv = b.p;
        p->tk = TK_STR;
        return;
    }
    size_t j = p->i;
    while (p->s[j] && (isalnum((unsigned char)p->s[j]) || strchr("_.-:/@", p->s[j]))) j++;
    if (j == p->i) { p->tk = TK_BAD; return; }
    p->tv = xstrndup(p->s + p->i, j - p->i);
    p->i = j;
    p->tk = TK_WORD;
}

static struct fnode *f_or(struct fparser *p);

static struct fnode *f_unary(struct fparser *p)
{
    if (p->tk == TK_WORD && !strcmp(p->tv, "not")) {
        f_next(p);
        struct fnode *a = f_unary(p);
        if (!a) return NULL;
        struct fnode *f = xcalloc(1, sizeof *f);
        f->kind = F_NOT;
        f->a = a;
        return f;
    }
    if (p->tk == TK_LP) {
        f_next(p);
        struct fnode *a = f_or(p);
        if (!a || p->tk != TK_RP) { fnode_free(a); return NULL; }
        f_next(p);
        return a;
    }
    if (p->tk != TK_WORD) return NULL;
    char *name = p->tv;
    p->tv = NULL;
    f_next(p);
    if (p->tk == TK_LP) {   /* contains(col,'x') */
        struct fnode *f = xcalloc(1, sizeof *f);
        f->kind = F_FUNC;
        f->fn = name;
        f_next(p);
        if (p->tk != TK_WORD) { fnode_free(f); return NULL; }
        f->col = p->tv;
        p->tv = NULL;
        f_next(p);
        if (p->tk != TK_COMMA) { fnode_free(f); return NULL; }
        f_next(p);
        if (p->tk != TK_STR) { fnode_free(f); return NULL; }
        f->lit = p->tv;
        p->tv = NULL;
        f_next(p);
        if (p->tk != TK_RP || (strcmp(f->fn, "contains") && strcmp(f->fn, "startswith") && strcmp(f->fn, "endswith"))) {
            fnode_free(f);
            return NULL;
        }
        f_next(p);
        return f;
    }
    static const char *ops[] = { "eq", "ne", "gt", "ge", "lt", "le" };
    int op = -1;
    if (p->tk == TK_WORD)
        for (int i = 0; i < 6; i++)
            if (!strcmp(p->tv, ops[i])) op = i;
    if (op < 0) { free(name); return NULL; }
    f_next(p);
    struct fnode *f = xcalloc(1, sizeof *f);
    f->kind = F_CMP;
    f->op = op;
    f->col = name;
    if (p->tk == TK_STR) {
        f->lit = p->tv;
        p->tv = NULL;
    } else if (p->tk == TK_WORD) {
        if (!strcmp(p->tv, "null")) f->lit_null = 1;
        else { f->lit = p->tv; p->tv = NULL; }
    } else {
        fnode_free(f);
        return NULL;
    }
    f_next(p);
    return f;
}
static struct fnode *f_and(struct fparser *p)
{
    struct fnode *a = f_unary(p);
    while (a && p->tk == TK_WORD && !strcmp(p->tv, "and")) {
        f_next(p);
        struct fnode *b = f_unary(p);
        if (!b) { fnode_free(a); return NULL; }
        struct fnode *f = xcalloc(1, sizeof *f);
        f->kind = F_AND;
        f->a = a;
        f->b = b;
        a = f;
    }
    return a;
}
static struct fnode *f_or(struct fparser *p)
{
    struct fnode *a = f_and(p);
    while (a && p->tk == TK_WORD && !strcmp(p->tv, "or")) {
        f_next(p);
        struct fnode *b = f_and(p);
        if (!b) { fnode_free(a); return NULL; }
        struct fnode *f = xcalloc(1, sizeof *f);
        f->kind = F_OR;
        f->a = a;
        f->b = b;
        a = f;
    }
    return a;
}
static struct fnode *filter_parse(const char *s)
{
    struct fparser p = { s, 0, 0, NULL };
    f_next(&p);
    struct fnode *f = f_or(&p);
    if (f && p.tk != TK_END) { fnode_free(f); f = NULL; }
    free(p.tv);
    return f;
}

/* "parentcustomerid_account" -> "parentcustomerid" (the lookup attribute). */
static void nav_attr(const char *nav, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", nav);
    size_t n = strlen(out);
    static const char *sfx[] = { "_account", "_contact" };
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(sfx[i]);
        if (n > l + 2 && !strcmp(out + n - l, sfx[i]) && !strncmp(out + n - l - 2, "id", 2)) {
            out[n - l] = 0;
            return;
        }
    }
}

/* A column's text for $filter/$select: the id column, "_<lookup>_value"
 * (from the binds) or a stored column. NULL when absent or null. */
static char *rec_col_text(const struct eset *s, const struct rec *r, const char *col)
{
    if (!strcmp(col, s->idcol)) return xstrdup(r->id);
    size_t n = strlen(col);
    if (n > 7 && col[0] == '_' && !strcmp(col + n - 6, "_value")) {
        char attr[128];
        snprintf(attr, sizeof attr, "%.*s", (int)(n - 7), col + 1);
        cJSON *b;
        cJSON_ArrayForEach(b, r->binds) {
            char a2[128];
            nav_attr(b->string, a2, sizeof a2);
            if (!strcmp(a2, attr))
                return xstrdup(cJSON_GetObjectItemCaseSensitive(b, "id")->valuestring);
        }
        return NULL;
    }
    return json_text(cJSON_GetObjectItemCaseSensitive(r->cols, col));
}

static int num_parse(const char *s, double *d)
{
    char *end;
    errno = 0;
    *d = strtod(s, &end);
    return *s && !*end && !errno;
}

static int f_eval(const struct fnode *f, const struct eset *s, const struct rec *r)
{
    switch (f->kind) {
    case F_OR: return f_eval(f->a, s, r) || f_eval(f->b, s, r);
    case F_AND: return f_eval(f->a, s, r) && f_eval(f->b, s, r);
    case F_NOT: return !f_eval(f->a, s, r);
    case F_FUNC: {
        char *v = rec_col_text(s, r, f->col);
        int ok = 0;
        if (v) {
            size_t lv = strlen(v), ll = strlen(f->lit);
            if (!strcmp(f->fn, "contains")) ok = strcasestr(v, f->lit) != NULL;
            else if (!strcmp(f->fn, "startswith")) ok = !strncasecmp(v, f->lit, ll);
            else ok = lv >= ll && !strcasecmp(v + lv - ll, f->lit);
        }
        free(v);
        return ok;
    }
    default: break;
    }
    char *v = rec_col_text(s, r, f->col);
    int res;
    if (f->lit_null) {
        res = f->op == OP_EQ ? v == NULL : f->op == OP_NE ? v != NULL : 0;
    } else if (!v) {
        res = f->op == OP_NE;
    } else {
        double a, b;
        int c;
        if (num_parse(v, &a) && num_parse(f->lit, &b)) c = (a > b) - (a < b);
        else c = strcasecmp(v, f->lit);
        switch (f->op) {
        case OP_EQ: res = c == 0; break;
        case OP_NE: res = c != 0; break;
        case OP_GT: res = c > 0; break;
        case OP_GE: res = c >= 0; break;
        case OP_LT: res = c < 0; break;
        default: res = c <= 0; break;
        }
    }
    free(v);
    return res;
}

/* ======================================================================== */
/* Record representations                                                   */
/* ======================================================================== */

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        const char *a = p, *b = p + l;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if ((size_t)(b - a) == n && !strncmp(a, name, n)) return 1;
        p += l;
        if (*p == ',') p++;
    }
    return 0;
}

/* What GET returns: @odata.etag, the columns, the primary id column and
 * _<lookup>_value for every bind ($select narrows the columns). */
static cJSON *rec_api_json(const struct eset *s, const struct rec *r, const char *select)
{
    cJSON *o = cJSON_CreateObject();
    char etag[32];
    snprintf(etag, sizeof etag, "W/\"%ld\"", r->version);
    cJSON_AddStringToObject(o, "@odata.etag", etag);
    if (select && *select) {
        for (const char *p = select; *p;) {
            size_t l = strcspn(p, ",");
            char *name = xstrndup(p, l);
            char *t = name;
            while (isspace((unsigned char)*t)) t++;
            if (*t && !cJSON_GetObjectItemCaseSensitive(o, t)) {
                size_t tl = strlen(t);
                if (tl > 7 && t[0] == '_' && !strcmp(t + tl - 6, "_value")) {
                    char *v = rec_col_text(s, r, t);
                    if (v) cJSON_AddStringToObject(o, t, v);
                    else cJSON_AddNullToObject(o, t);
                    free(v);
                } else if (strcmp(t, s->idcol)) {
                    cJSON *v = cJSON_GetObjectItemCaseSensitive(r->cols, t);
                    cJSON_AddItemToObject(o, t, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
                }
            }
            free(name);
            p += l;
            if (*p == ',') p++;
        }
    } else {
        cJSON *c;
        cJSON_ArrayForEach(c, r->cols) cJSON_AddItemToObject(o, c->string, cJSON_Duplicate(c, 1));
        cJSON *b;
        cJSON_ArrayForEach(b, r->binds) {
            char attr[128], name[160];
            nav_attr(b->string, attr, sizeof attr);
            snprintf(name, sizeof name, "_%s_value", attr);
            cJSON_AddStringToObject(o, name, cJSON_GetObjectItemCaseSensitive(b, "id")->valuestring);
        }
    }
    cJSON_AddStringToObject(o, s->idcol, r->id);
    return o;
}

/* What /_fake/dump shows: all columns plus _id, _version, _binds. */
static cJSON *rec_dump_json(const struct rec *r)
{
    cJSON *o = cJSON_Duplicate(r->cols, 1);
    cJSON_AddStringToObject(o, "_id", r->id);
    cJSON_AddNumberToObject(o, "_version", (double)r->version);
    cJSON_AddItemToObject(o, "_binds", cJSON_Duplicate(r->binds, 1));
    return o;
}

/* ======================================================================== */
/* Web API operations                                                       */
/* ======================================================================== */

struct opout {                  /* what the write log needs from an op */
    const char *set;            /* entity set (actions: the target's set) */
    char *key;                  /* key text as addressed */
    const char *action;
    cJSON *ignored;             /* columns dropped (URL keys, create-only) */
    int noop;
};

static int prefer_has(const char *prefer, const char *what)
{
    return prefer && strcasestr(prefer, what) != NULL;
}

/* accounts(accountid=<guid>) is the primary key; with --require-keys (and
 * with --bare-schema: keys exist once created and Active) only declared
 * single-column keys may address a record; otherwise a column used as a key
 * becomes an (implicit) unique key of the set. */
static int check_keys(struct eset *s, struct target *t, struct opresp *rs)
{
    if (t->by_id) return 0;
    if (t->nkp == 1 && !strcmp(t->kp[0].col, s->idcol) && is_guid(t->kp[0].val, strlen(t->kp[0].val))) {
        lower_into(t->id, t->kp[0].val);
        t->by_id = 1;
        return 0;
    }
    if (g.cfg.require_keys || g.cfg.bare_schema) {
        if (t->nkp != 1 || !eset_is_declared_key(s, t->kp[0].col)) {
            op_error(rs, 400, E_KEY_UNDEFINED,
                     "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.%s'. "
                     "Make sure both key names and values are valid.", s->logical);
            return -1;
        }
        return 0;
    }
    if (t->nkp == 1) eset_add_key(s, t->kp[0].col, 0);
    return 0;
}

static struct rec *lookup(struct eset *s, const struct target *t)
{
    return t->by_id ? find_by_id(s, t->id) : find_by_key(s, t->kp, t->nkp);
}

static void err_missing(struct opresp *rs, const struct eset *s, const struct target *t)
{
    if (t->by_id) err_id_missing(rs, s, t->id);
    else err_key_missing(rs, s);
}

static struct cidref *cid_find(struct opctx *x, const char *id)
{
    for (size_t i = 0; i < x->ncids; i++)
        if (!strcmp(x->cids[i].id, id)) return &x->cids[i];
    return NULL;
}

static void err_cid(struct opresp *rs, const char *id)
{
    op_error(rs, 400, E_ODATA, "Content-ID Reference: '$%s' does not exist in the batch context.", id);
}

/* Resolve an @odata.bind value to an existing record. */
static int resolve_ref(struct opctx *x, const char *ref, struct eset **ps, struct rec **pr, struct opresp *rs)
{
    if (ref[0] == '$' && isdigit((unsigned char)ref[1])) {
        struct cidref *c = x->changeset_no ? cid_find(x, ref + 1) : NULL;
        if (!c || !c->r) { err_cid(rs, ref + 1); return -1; }
        *ps = c->s;
        *pr = c->r;
        return 0;
    }
    char *dec = pct_decode(strip_service_root(ref), strlen(strip_service_root(ref)), 0);
    struct target t;
    memset(&t, 0, sizeof t);
    int rc = -1;
    size_t n = strcspn(dec, "(");
    const char *e = dec[n] ? pred_end(dec + n) : NULL;
    if (!e || e[1]) {
        op_error(rs, 400, E_ODATA, "The value '%s' of the @odata.bind annotation is not a valid entity reference.", ref);
        goto out;
    }
    t.set = xstrndup(dec, n);
    struct eset *s = eset_get(t.set);
    if (!s) {
        op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t.set);
        goto out;
    }
    char *inner = xstrndup(dec + n + 1, (size_t)(e - dec - n - 1));
    rc = parse_pred(inner, &t, 0, rs);
    free(inner);
    if (rc < 0) goto out;
    rc = -1;
    if (check_keys(s, &t, rs) < 0) goto out;
    struct rec *r = lookup(s, &t);
    if (!r) { err_missing(rs, s, &t); goto out; }
    *ps = s;
    *pr = r;
    rc = 0;
out:
    target_free(&t);
    free(dec);
    return rc;
}

static int check_nav(const struct eset *s, const char *nav, const char **target, struct opresp *rs)
{
    *target = NULL;
    if (!s->spec) return 0;
    for (const struct navspec *n = s->spec->navs; n && n->nav; n++)
        if (!strcmp(n->nav, nav)) { *target = n->target; return 0; }
    if (!strncmp(nav, "mlc_", 4)) return 0;
    op_error(rs, 400, E_ODATA,
             "An undeclared property '%s' which only has property annotations in the payload but no property "
             "value was found in the payload. In OData, only declared navigation properties and declared named "
             "streams can be represented as properties without values.", nav);
    return -1;
}

static void err_convert(struct opresp *rs, const struct eset *s, const cJSON *v, const char *edm)
{
    char *txt = cJSON_IsString(v) ? xstrdup(v->valuestring) : cJSON_PrintUnformatted(v);
    op_error(rs, 400, E_PAYLOAD,
             "Error identified in Payload provided by the user for Entity :'%s', Cause of the Error: "
             "Cannot convert the literal '%s' to the expected type '%s'.", s->name, txt ? txt : "", edm);
    free(txt);
}

static int is_date(const char *v)
{
    int y, m, d;
    char rest[64];
    int n = sscanf(v, "%4d-%2d-%2d%63s", &y, &m, &d, rest);
    if (n < 3 || m < 1 || m > 12 || d < 1 || d > 31) return 0;
    if (strlen(v) == 10) return 1;
    return v[10] == 'T';
}

/* Type and length validation for the columns the schema knows. */
static int check_col(const struct eset *s, const char *col, const cJSON *v, struct opresp *rs)
{
    const struct colspec *cs = find_col(s->spec, col);
    const struct mdattr *ma = md_attr(s, col);
    struct colspec dyn;
    if (!ma && g.cfg.bare_schema && is_custom_col(col)) {
        /* --bare-schema: a custom column exists once created */
        op_error(rs, 400, E_ODATA,
                 "The property '%s' does not exist on type 'Microsoft.Dynamics.CRM.%s'. "
                 "Make sure to only use property names that are defined by the type.", col, s->logical);
        return -1;
    }
    if (ma && ma->custom && ma->ctype >= 0) {
        /* a column created through the metadata endpoints: its definition rules */
        dyn.name = ma->logical;
        dyn.type = ma->ctype;
        dyn.maxlen = ma->maxlen;
        dyn.flags = cs ? cs->flags : 0;
        dyn.choices = cs ? cs->choices : NULL;
        cs = &dyn;
    }
    if (!cs) {
        if (g.cfg.strict_columns && s->spec && strcmp(col, "statecode") && strcmp(col, "statuscode")) {
            op_error(rs, 400, E_ODATA,
                     "The property '%s' does not exist on type 'Microsoft.Dynamics.CRM.%s'. "
                     "Make sure to only use property names that are defined by the type.", col, s->logical);
            return -1;
        }
        return 0;
    }
    if (cJSON_IsNull(v)) return 0;      /* ApplicationRequired is not enforced by the API (DV §2) */
    switch (cs->type) {
    case T_STR:
    case T_MEMO:
        if (!cJSON_IsString(v)) { err_convert(rs, s, v, "Edm.String"); return -1; }
        if (cs->maxlen && utf16_len(v->valuestring) > (size_t)cs->maxlen) {
            op_error(rs, 400, E_VALIDATION,
                     "A validation error occurred.  The length of the '%s' attribute of the '%s' entity "
                     "exceeded the maximum allowed length of '%d'.", col, s->logical, cs->maxlen);
            return -1;
        }
        return 0;
    case T_INT:
    case T_CHOICE: {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble > INT_MAX || v->valuedouble < INT_MIN) {
            err_convert(rs, s, v, "Edm.Int32");
            return -1;
        }
        if (cs->type == T_CHOICE) {
            char num[32];
            snprintf(num, sizeof num, "%d", (int)v->valuedouble);
            if (!in_list(cs->choices, num)) {
                op_error(rs, 400, "0x8004431a",
                         "A validation error occurred. The value %s of '%s' on record of type '%s' is outside "
                         "the valid range. Accepted Values: %s", num, col, s->logical, cs->choices);
                return -1;
            }
        }
        return 0;
    }
    case T_BOOL:
        if (!cJSON_IsBool(v)) { err_convert(rs, s, v, "Edm.Boolean"); return -1; }
        return 0;
    case T_DEC:
    case T_MONEY:
        if (!cJSON_IsNumber(v)) { err_convert(rs, s, v, "Edm.Decimal"); return -1; }
        return 0;
    case T_DATE:
        if (!cJSON_IsString(v) || !is_date(v->valuestring)) { err_convert(rs, s, v, "Edm.Date"); return -1; }
        return 0;
    }
    return 0;
}

static int check_state_guard(const struct eset *s, const cJSON *v, struct opresp *rs)
{
    if (g.cfg.allow_state_patch || !cJSON_IsNumber(v)) return 0;
    for (size_t i = 0; i < sizeof STATE_GUARDS / sizeof STATE_GUARDS[0]; i++) {
        const struct stateguard *sg = &STATE_GUARDS[i];
        if (!strcmp(sg->set, s->name) && sg->state == (int)v->valuedouble) {
            op_error(rs, 400, E_ARG,
                     "This message can not be used to set the state of %s to %s. In order to set state of %s "
                     "to %s, use the %s message instead.", s->logical, sg->state_name, s->logical,
                     sg->state_name, sg->request);
            return -1;
        }
    }
    return 0;
}

static int url_key_col(const struct target *t, const char *col)
{
    for (int i = 0; i < t->nkp; i++)
        if (!strcmp(t->kp[i].col, col)) return 1;
    return 0;
}

static void obj_set(cJSON *o, const char *name, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(o, name)) cJSON_ReplaceItemInObjectCaseSensitive(o, name, v);
    else cJSON_AddItemToObject(o, name, v);
}

static void note_ignored(struct opout *oo, const char *name)
{
    if (!oo->ignored) oo->ignored = cJSON_CreateArray();
    cJSON_AddItemToArray(oo->ignored, cJSON_CreateString(name));
}

/* Merge a JSON body into cols/binds: binds resolved (the target must exist),
 * columns validated; on update the URL's key columns and create-only columns
 * are dropped (DV §3 "Key values in the URL win on update"). */
static int apply_body(struct opctx *x, struct eset *s, const cJSON *body, int creating, const struct target *t,
                      cJSON *cols, cJSON *binds, struct opout *oo, struct opresp *rs)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, body) {
        const char *name = m->string;
        const char *at = strchr(name, '@');
        if (at) {
            if (strcmp(at, "@odata.bind")) continue;      /* other annotations */
            char nav[128];
            snprintf(nav, sizeof nav, "%.*s", (int)(at - name), name);
            const char *want;
            if (check_nav(s, nav, &want, rs) < 0) return -1;
            if (cJSON_IsNull(m)) { cJSON_DeleteItemFromObjectCaseSensitive(binds, nav); continue; }
            if (!cJSON_IsString(m)) { err_convert(rs, s, m, "Edm.String"); return -1; }
            struct eset *ts;
            struct rec *tr;
            if (resolve_ref(x, m->valuestring, &ts, &tr, rs) < 0) return -1;
            if (want && strcmp(want, ts->name)) {
                op_error(rs, 400, E_ODATA,
                         "fake: the navigation property '%s' of '%s' refers to '%s', not to '%s'.",
                         nav, s->logical, want, ts->name);
                return -1;
            }
            cJSON *b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "set", ts->name);
            cJSON_AddStringToObject(b, "id", tr->id);
            cJSON_AddStringToObject(b, "ref", m->valuestring);
            obj_set(binds, nav, b);
            continue;
        }
        if (!strcmp(name, s->idcol)) continue;            /* handled by the caller */
        if (cJSON_IsObject(m) || cJSON_IsArray(m)) {
            op_error(rs, 400, E_ODATA, "fake: deep insert / collection-valued property '%s' is not supported.", name);
            return -1;
        }
        if (check_col(s, name, m, rs) < 0) return -1;
        if (!creating && t && url_key_col(t, name)) { note_ignored(oo, name); continue; }
        const struct colspec *cs = find_col(s->spec, name);
        if (!creating && cs && (cs->flags & CF_CREATE_ONLY)) { note_ignored(oo, name); continue; }
        if (!strcmp(name, "statecode") && check_state_guard(s, m, rs) < 0) return -1;
        obj_set(cols, name, cJSON_Duplicate(m, 1));
    }
    return 0;
}

/* Alternate keys are unique per set (DV §3 DuplicateRecordEntityKey). */
static int check_unique(struct eset *s, const struct rec *self, const cJSON *cols, struct opresp *rs)
{
    for (size_t i = 0; i < s->nkeycols; i++) {
        char *v = json_text(cJSON_GetObjectItemCaseSensitive(cols, s->keycols[i]));
        if (!v) continue;
        char *k = key_index(s->keycols[i], v);
        struct rec *other = hm_get(&s->bykey, k);
        free(k);
        if (other && other != self) {
            op_error(rs, 412, E_KEY_DUP,
                     "A record that has the attribute values %s already exists. The entity key %skey requires "
                     "that this set of attributes contains unique values. Select unique values and try again.",
                     v, s->keycols[i]);
            free(v);
            return -1;
        }
        free(v);
    }
    return 0;
}

static cJSON *key_value_json(const struct keypart *kp)
{
    if (kp->quoted) return cJSON_CreateString(kp->val);
    double d;
    if (num_parse(kp->val, &d)) return cJSON_CreateNumber(d);
    if (!strcmp(kp->val, "true")) return cJSON_CreateTrue();
    if (!strcmp(kp->val, "false")) return cJSON_CreateFalse();
    return cJSON_CreateString(kp->val);
}

static void entity_headers(struct opctx *x, struct opresp *rs, const struct eset *s, const char *keytext)
{
    if (x->batch_no) sb_printf(&rs->hdr, "Location: %s%s(%s)\r\n", x->base, s->name, keytext);
    sb_printf(&rs->hdr, "OData-EntityId: %s%s(%s)\r\n", x->base, s->name, keytext);
}

static void representation(struct opctx *x, struct opresp *rs, int status, const struct eset *s,
                           const struct rec *r, const char *select)
{
    cJSON *o = rec_api_json(s, r, select);
    char *ctx = xasprintf("%s$metadata#%s/$entity", x->base, s->name);
    cJSON *c = cJSON_CreateString(ctx);
    free(ctx);
    /* @odata.context first, like Dataverse */
    c->next = o->child;
    if (o->child) { c->prev = o->child->prev; o->child->prev = c; } else c->prev = c;
    c->string = xstrdup("@odata.context");
    o->child = c;
    char etag[32];
    snprintf(etag, sizeof etag, "W/\"%ld\"", r->version);
    sb_printf(&rs->hdr, "ETag: %s\r\n", etag);
    op_json(rs, status, o);
}

/* PATCH set(key) — upsert by alternate key or id (DV §3, conditional
 * headers per COND); PATCH $n inside a change set. */
static void op_patch(struct opctx *x, const struct opreq *rq, struct target *t, const cJSON *body,
                     struct opresp *rs, struct opout *oo)
{
    struct eset *s;
    struct rec *r;
    if (t->cid) {
        struct cidref *c = x->changeset_no ? cid_find(x, t->cid) : NULL;
        if (!c || !c->r) { err_cid(rs, t->cid); return; }
        s = c->s;
        r = c->r;
        oo->set = s->name;
        oo->key = xstrdup(r->id);
    } else {
        s = eset_get(t->set);
        if (!s) { op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t->set); return; }
        oo->set = s->name;
        if (!t->has_pred) {
            op_error(rs, 405, "", "The requested resource does not support http method 'PATCH'.");
            return;
        }
        oo->key = xstrdup(t->keytext);
        if (check_keys(s, t, rs) < 0) return;
        r = lookup(s, t);
    }
    if (t->prop) { op_error(rs, 405, "", "The requested resource does not support http method 'PATCH'."); return; }
    const char *im = rq->if_match, *inm = rq->if_none_match;
    if (im && *im) {
        if (!r) {
            if (t->by_id || t->cid) op_error(rs, 404, "", "%s With Id = %s Does Not Exist", s->logical, t->cid ? t->cid : t->id);
            else err_key_missing(rs, s);
            return;
        }
        if (strcmp(im, "*")) {
            char etag[32], bare[32];
            snprintf(etag, sizeof etag, "W/\"%ld\"", r->version);
            snprintf(bare, sizeof bare, "\"%ld\"", r->version);
            if (strcmp(im, etag) && strcmp(im, bare)) {
                op_error(rs, 412, E_VERSION, "The version of the existing record doesn't match the RowVersion property provided.");
                return;
            }
        }
    }
    if (inm && !strcmp(inm, "*") && r) {
        op_error(rs, 412, E_DUPLICATE, "A record with matching key values already exists.");
        return;
    }
    if (!cJSON_IsObject(body)) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'%s', "
                 "Cause of the Error: The request body must be a JSON object.", s->name);
        return;
    }
    int creating = r == NULL;
    cJSON *cols = creating ? cJSON_CreateObject() : cJSON_Duplicate(r->cols, 1);
    cJSON *binds = creating ? cJSON_CreateObject() : cJSON_Duplicate(r->binds, 1);
    if (creating && !t->by_id)
        for (int i = 0; i < t->nkp; i++) {
            cJSON *kv = key_value_json(&t->kp[i]);
            if (check_col(s, t->kp[i].col, kv, rs) < 0) { cJSON_Delete(kv); goto fail; }
            obj_set(cols, t->kp[i].col, kv);
        }
    if (apply_body(x, s, body, creating, t, cols, binds, oo, rs) < 0) goto fail;
    char newid[37];
    if (creating) {
        const cJSON *bid = cJSON_GetObjectItemCaseSensitive(body, s->idcol);
        if (t->by_id) snprintf(newid, sizeof newid, "%s", t->id);
        else if (cJSON_IsString(bid) && is_guid(bid->valuestring, strlen(bid->valuestring))) lower_into(newid, bid->valuestring);
        else new_guid(newid);
        if (find_by_id(s, newid)) {
            op_error(rs, 412, E_DUPLICATE, "A record with matching key values already exists.");
            goto fail;
        }
    }
    if (check_unique(s, r, cols, rs) < 0) goto fail;
    if (creating) {
        r = xcalloc(1, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", newid);
        r->cols = cols;
        r->binds = binds;
        r->version = 1;
        txn_create(&x->txn, s, r);
    } else {
        txn_update_begin(&x->txn, s, r);
        cJSON_Delete(r->cols);
        cJSON_Delete(r->binds);
        r->cols = cols;
        r->binds = binds;
        txn_update_end(s, r);
    }
    rs->s = s;
    rs->r = r;
    const char *keytext = (t->by_id || t->cid) ? r->id : t->keytext;
    entity_headers(x, rs, s, keytext);
    if (prefer_has(rq->prefer, "return=representation")) {
        representation(x, rs, creating ? 201 : 200, s, r, tq(t, "$select"));
    } else {
        rs->status = 204;
    }
    return;
fail:
    cJSON_Delete(cols);
    cJSON_Delete(binds);
}

/* POST set — create. */
static void op_create(struct opctx *x, const struct opreq *rq, struct target *t, const cJSON *body,
                      struct opresp *rs, struct opout *oo)
{
    if (!t->set) {
        op_error(rs, 405, "", "The requested resource does not support http method 'POST'.");
        return;
    }
    struct eset *s = eset_get(t->set);
    if (!s) { op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t->set); return; }
    oo->set = s->name;
    if (t->has_pred || t->prop) {
        op_error(rs, 405, "", "The requested resource does not support http method 'POST'.");
        return;
    }
    if (!cJSON_IsObject(body)) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'%s', "
                 "Cause of the Error: The request body must be a JSON object.", s->name);
        return;
    }
    cJSON *cols = cJSON_CreateObject(), *binds = cJSON_CreateObject();
    if (apply_body(x, s, body, 1, NULL, cols, binds, oo, rs) < 0) goto fail;
    char newid[37];
    const cJSON *bid = cJSON_GetObjectItemCaseSensitive(body, s->idcol);
    if (cJSON_IsString(bid) && is_guid(bid->valuestring, strlen(bid->valuestring))) lower_into(newid, bid->valuestring);
    else new_guid(newid);
    if (find_by_id(s, newid)) {
        op_error(rs, 412, E_DUPLICATE, "A record with matching key values already exists.");
        goto fail;
    }
    if (check_unique(s, NULL, cols, rs) < 0) goto fail;
    struct rec *r = xcalloc(1, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", newid);
    r->cols = cols;
    r->binds = binds;
    r->version = 1;
    txn_create(&x->txn, s, r);
    rs->s = s;
    rs->r = r;
    oo->key = xstrdup(r->id);
    entity_headers(x, rs, s, r->id);
    if (prefer_has(rq->prefer, "return=representation")) representation(x, rs, 201, s, r, tq(t, "$select"));
    else rs->status = 204;
    return;
fail:
    cJSON_Delete(cols);
    cJSON_Delete(binds);
}

/* DELETE set(key) — 204, or 404 when missing. */
static void op_delete(struct opctx *x, struct target *t, struct opresp *rs, struct opout *oo)
{
    struct eset *s;
    struct rec *r;
    if (t->cid) {
        struct cidref *c = x->changeset_no ? cid_find(x, t->cid) : NULL;
        if (!c || !c->r) { err_cid(rs, t->cid); return; }
        s = c->s;
        r = c->r;
        oo->set = s->name;
        oo->key = xstrdup(r->id);
    } else {
        s = eset_get(t->set);
        if (!s) { op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t->set); return; }
        oo->set = s->name;
        if (!t->has_pred || t->prop) {
            op_error(rs, 405, "", "The requested resource does not support http method 'DELETE'.");
            return;
        }
        oo->key = xstrdup(t->keytext);
        if (check_keys(s, t, rs) < 0) return;
        r = lookup(s, t);
        if (!r) { err_missing(rs, s, t); return; }
    }
    txn_delete(&x->txn, s, r);
    /* forget Content-IDs pointing at it */
    for (size_t i = 0; i < x->ncids; i++)
        if (x->cids[i].r == r) x->cids[i].r = NULL;
    rs->status = 204;
}

/* PUT set(key)/column {"value": v} — update one column. */
static void op_put(struct opctx *x, struct target *t, const cJSON *body, struct opresp *rs, struct opout *oo)
{
    struct eset *s;
    struct rec *r;
    if (t->cid) {
        struct cidref *c = x->changeset_no ? cid_find(x, t->cid) : NULL;
        if (!c || !c->r) { err_cid(rs, t->cid); return; }
        s = c->s;
        r = c->r;
        oo->set = s->name;
        oo->key = xstrdup(r->id);
    } else {
        s = eset_get(t->set);
        if (!s) { op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t->set); return; }
        oo->set = s->name;
        if (!t->has_pred) { op_error(rs, 405, "", "The requested resource does not support http method 'PUT'."); return; }
        oo->key = xstrdup(t->keytext);
        if (check_keys(s, t, rs) < 0) return;
        r = lookup(s, t);
        if (!r) { err_missing(rs, s, t); return; }
    }
    if (!t->prop || !*t->prop || strchr(t->prop, '/') || t->prop[0] == '$') {
        op_error(rs, 405, "", "The requested resource does not support http method 'PUT'.");
        return;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "value");
    if (!cJSON_IsObject(body) || !v) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'%s', "
                 "Cause of the Error: A 'value' property is required.", s->name);
        return;
    }
    if (check_col(s, t->prop, v, rs) < 0) return;
    if (!strcmp(t->prop, "statecode") && check_state_guard(s, v, rs) < 0) return;
    cJSON *cols = cJSON_Duplicate(r->cols, 1);
    obj_set(cols, t->prop, cJSON_Duplicate(v, 1));
    if (check_unique(s, r, cols, rs) < 0) { cJSON_Delete(cols); return; }
    txn_update_begin(&x->txn, s, r);
    cJSON_Delete(r->cols);
    r->cols = cols;
    txn_update_end(s, r);
    rs->s = s;
    rs->r = r;
    rs->status = 204;
}

/* GET set(key) / GET set?$filter=…&$select=…&$top=n */
static void op_get(struct opctx *x, struct target *t, struct opresp *rs)
{
    struct eset *s;
    struct rec *r = NULL;
    if (t->cid) {
        struct cidref *c = x->changeset_no ? cid_find(x, t->cid) : NULL;
        if (!c || !c->r) { err_cid(rs, t->cid); return; }
        s = c->s;
        r = c->r;
    } else {
        s = eset_get(t->set);
        if (!s) { op_error(rs, 404, E_SEGMENT, "Resource not found for the segment '%s'.", t->set); return; }
        if (t->has_pred) {
            if (check_keys(s, t, rs) < 0) return;
            r = lookup(s, t);
            if (!r) { err_missing(rs, s, t); return; }
        }
    }
    if (t->prop) { op_error(rs, 400, E_ODATA, "fake: GET of a property path is not supported."); return; }
    const char *select = tq(t, "$select");
    if (r) {
        representation(x, rs, 200, s, r, select);
        return;
    }
    const char *filter = tq(t, "$filter"), *top = tq(t, "$top");
    struct fnode *f = NULL;
    if (filter && !(f = filter_parse(filter))) {
        op_error(rs, 400, E_ODATA, "The query specified in the URI is not valid. Syntax error in $filter '%s'.", filter);
        return;
    }
    long limit = top ? strtol(top, NULL, 10) : LONG_MAX;
    if (limit < 0) limit = 0;
    cJSON *o = cJSON_CreateObject();
    char *ctx = select ? xasprintf("%s$metadata#%s(%s)", x->base, s->name, select)
                       : xasprintf("%s$metadata#%s", x->base, s->name);
    cJSON_AddStringToObject(o, "@odata.context", ctx);
    free(ctx);
    cJSON *arr = cJSON_AddArrayToObject(o, "value");
    long n = 0;
    for (size_t i = 0; i < s->n && n < limit; i++) {
        if (f && !f_eval(f, s, s->v[i])) continue;
        cJSON_AddItemToArray(arr, rec_api_json(s, s->v[i], select));
        n++;
    }
    fnode_free(f);
    op_json(rs, 200, o);
}

/* Unbound close actions: LoseOpportunity, WinOpportunity, CancelSalesOrder,
 * CloseQuote. Set statecode/statuscode of the target and create the close
 * activity (opportunityclose, orderclose, quoteclose). */
static void op_action(struct opctx *x, const struct opreq *rq, const struct actionspec *a, const cJSON *body,
                      struct opresp *rs, struct opout *oo)
{
    oo->action = a->name;
    oo->set = a->target;
    if (strcmp(rq->method, "POST")) {
        op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method);
        return;
    }
    const cJSON *param = cJSON_GetObjectItemCaseSensitive(body, a->param);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(body, "Status");
    if (!cJSON_IsObject(param)) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'', "
                 "Cause of the Error: The parameter '%s' of the action '%s' is required.", a->param, a->name);
        return;
    }
    if (!cJSON_IsNumber(st) || st->valuedouble != floor(st->valuedouble)) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'', "
                 "Cause of the Error: The parameter 'Status' of the action '%s' is required (Edm.Int32).", a->name);
        return;
    }
    char bindname[64];
    snprintf(bindname, sizeof bindname, "%s@odata.bind", a->idnav);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(param, bindname);
    if (!cJSON_IsString(ref)) {
        op_error(rs, 400, E_ARG, "fake: %s.%s is required (the %s to close).", a->param, bindname, a->target);
        return;
    }
    const char *rel = strip_service_root(ref->valuestring);
    const char *lp = strchr(rel, '(');
    if (lp) {
        const char *e = pred_end(lp);
        oo->key = e ? xstrndup(lp + 1, (size_t)(e - lp - 1)) : xstrdup(rel);
    } else {
        oo->key = xstrdup(ref->valuestring);
    }
    struct eset *cs = eset_find(a->closeset), *ts = eset_find(a->target);
    cJSON *cols = cJSON_CreateObject(), *binds = cJSON_CreateObject();
    if (apply_body(x, cs, param, 1, NULL, cols, binds, oo, rs) < 0) goto fail;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(binds, a->idnav);
    struct rec *tr = find_by_id(ts, cJSON_GetObjectItemCaseSensitive(b, "id")->valuestring);
    int status = (int)st->valuedouble, ok = 0;
    for (int i = 0; i < 4 && a->statuses[i]; i++) ok |= a->statuses[i] == status;
    if (!ok) {
        op_error(rs, 400, E_ARG, "%d is not a valid status code for state code %sState.%s on %s with Id %s.",
                 status, ts->logical, a->state_name, ts->logical, tr->id);
        goto fail;
    }
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(tr->cols, "statecode");
    if (cJSON_IsNumber(cur) && (int)cur->valuedouble == a->state) {
        if (g.cfg.strict_close) {
            op_error(rs, 400, E_ARG, "fake: the %s with Id %s is already in state %s.", ts->logical, tr->id, a->state_name);
            goto fail;
        }
        oo->noop = 1;        /* lenient: closing a closed record again is a no-op */
        rs->s = ts;
        rs->r = tr;
        rs->status = 204;
        goto fail;           /* frees cols/binds; nothing written */
    }
    txn_update_begin(&x->txn, ts, tr);
    obj_set(tr->cols, "statecode", cJSON_CreateNumber(a->state));
    obj_set(tr->cols, "statuscode", cJSON_CreateNumber(status));
    txn_update_end(ts, tr);
    struct rec *cr = xcalloc(1, sizeof *cr);
    new_guid(cr->id);
    obj_set(cols, "statecode", cJSON_CreateNumber(1));
    cr->cols = cols;
    cr->binds = binds;
    cr->version = 1;
    txn_create(&x->txn, cs, cr);
    rs->s = ts;
    rs->r = tr;
    rs->status = 204;
    return;
fail:
    cJSON_Delete(cols);
    cJSON_Delete(binds);
}

static void op_whoami(struct opctx *x, struct opresp *rs)
{
    cJSON *o = cJSON_CreateObject();
    char *ctx = xasprintf("%s$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", x->base);
    cJSON_AddStringToObject(o, "@odata.context", ctx);
    free(ctx);
    cJSON_AddStringToObject(o, "BusinessUnitId", "0b5e0000-0000-4000-8000-000000000001");
    cJSON_AddStringToObject(o, "UserId", "0b5e0000-0000-4000-8000-000000000002");
    cJSON_AddStringToObject(o, "OrganizationId", "0b5e0000-0000-4000-8000-000000000003");
    sb_puts(&rs->hdr, "x-ms-dop-hint: 4\r\n");
    op_json(rs, 200, o);
}

static void op_log(struct opctx *x, const struct opreq *rq, const struct opout *oo, const struct opresp *rs,
                   const cJSON *body)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "seq", (double)++g.seq);
    cJSON_AddNumberToObject(e, "t", floor((mono_now() - g.t_start) * 1000.0) / 1000.0);
    cJSON_AddStringToObject(e, "user", x->user ? x->user : "");
    cJSON_AddStringToObject(e, "method", rq->method);
    if (oo->set) cJSON_AddStringToObject(e, "set", oo->set); else cJSON_AddNullToObject(e, "set");
    if (oo->key) cJSON_AddStringToObject(e, "key", oo->key); else cJSON_AddNullToObject(e, "key");
    if (rs->r && rs->status < 400) cJSON_AddStringToObject(e, "id", rs->r->id);
    else cJSON_AddNullToObject(e, "id");
    cJSON_AddNumberToObject(e, "status", rs->status);
    int applied = rs->status < 400 && !oo->noop;
    cJSON_AddBoolToObject(e, "applied", applied);
    if (oo->noop) cJSON_AddTrueToObject(e, "noop");
    if (oo->action) cJSON_AddStringToObject(e, "action", oo->action);
    if (x->batch_no) cJSON_AddNumberToObject(e, "batch", (double)x->batch_no);
    else cJSON_AddNullToObject(e, "batch");
    if (x->changeset_no) cJSON_AddNumberToObject(e, "changeset", x->changeset_no);
    else cJSON_AddNullToObject(e, "changeset");
    if (x->content_id) cJSON_AddStringToObject(e, "content_id", x->content_id);
    if (oo->ignored) cJSON_AddItemToObject(e, "ignored", cJSON_Duplicate(oo->ignored, 1));
    if (rq->solution) cJSON_AddStringToObject(e, "solution", rq->solution);
    if (rs->status >= 400) {
        cJSON *er = cJSON_AddObjectToObject(e, "error");
        cJSON_AddStringToObject(er, "code", rs->err_code ? rs->err_code : "");
        cJSON_AddStringToObject(er, "message", rs->err_msg ? rs->err_msg : "");
    }
    cJSON_AddItemToObject(e, "body", body ? cJSON_Duplicate(body, 1) : cJSON_CreateNull());
    log_append(e);
    if (applied) g.c.writes++;
}

/* ---- metadata endpoints (EntityDefinitions, asyncoperations) ----
 * GET  EntityDefinitions[?$select&$filter=EntitySetName|LogicalName eq '…']
 * GET  EntityDefinitions(LogicalName='t')[?$select&$expand=Attributes(…),Keys(…)]
 * GET  EntityDefinitions(LogicalName='t')/Attributes[/Microsoft.Dynamics.CRM.<Type>AttributeMetadata]
 * GET  EntityDefinitions(LogicalName='t')/Attributes(LogicalName='c')
 * POST EntityDefinitions(LogicalName='t')/Attributes    <…AttributeMetadata>  -> 204
 * GET  EntityDefinitions(LogicalName='t')/Keys[(LogicalName='k') | (<id>)]
 * POST EntityDefinitions(LogicalName='t')/Keys          <EntityKeyMetadata>   -> 204, Pending
 * GET  asyncoperations(<id>)      the index job of a key (why it failed)
 * $select on the base AttributeMetadata type refuses properties of derived
 * types (MaxLength), as OData does: read those through the type cast. */

static const char *const MD_ATTR_BASE[] = {
    "MetadataId", "LogicalName", "SchemaName", "AttributeType", "AttributeTypeName", "IsCustomAttribute",
    "EntityLogicalName", "IsPrimaryId", "DisplayName", "RequiredLevel", "IsValidForCreate", "IsValidForUpdate",
    "IsValidForRead", "AttributeOf", NULL
};
static const char *const MD_ATTR_STRING[] = { "MaxLength", "FormatName", "DatabaseLength", NULL };
static const char *const MD_KEY_PROPS[] = {
    "MetadataId", "LogicalName", "SchemaName", "KeyAttributes", "EntityKeyIndexStatus", "AsyncJob",
    "EntityLogicalName", "DisplayName", "IsManaged", NULL
};

static int name_in(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (!strcmp(*list, name)) return 1;
    return 0;
}

/* Every name of a $select list in one of the allowed lists; else writes
 * the first offending name into bad. */
static int select_ok(const char *select, const char *const *a, const char *const *b, char *bad, size_t bl)
{
    for (const char *p = select; p && *p;) {
        size_t l = strcspn(p, ",");
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(l < sizeof name ? l : sizeof name - 1), p);
        if (*name && !name_in(a, name) && !name_in(b, name)) {
            snprintf(bad, bl, "%s", name);
            return 0;
        }
        p += l;
        if (*p == ',') p++;
    }
    return 1;
}

static int selected(const char *select, const char *name) { return !select || in_list(select, name); }

/* One item of $expand: 1 if present; its $select (or "" for none) into sel. */
static int expand_item(const char *expand, const char *name, char *sel, size_t sl)
{
    size_t nl = strlen(name);
    int depth = 0;
    const char *start = expand;
    for (const char *p = expand;; p++) {
        if (*p == '(') depth++;
        else if (*p == ')') depth--;
        if (*p && (*p != ',' || depth > 0)) continue;
        /* item [start, p) */
        const char *q = start;
        while (q < p && *q == ' ') q++;
        if ((size_t)(p - q) >= nl && !strncmp(q, name, nl) && (q + nl == p || q[nl] == '(')) {
            sel[0] = 0;
            const char *o = q + nl;
            if (*o == '(') {
                const char *se = strstr(o, "$select=");
                if (se && se < p) {
                    se += 8;
                    size_t l = strcspn(se, ";)");
                    snprintf(sel, sl, "%.*s", (int)l, se);
                }
            }
            return 1;
        }
        if (!*p) return 0;
        start = p + 1;
    }
}

static const char *odata_attr_type(const char *type)
{
    static const struct { const char *t, *o; } M[] = {
        { "String", "StringAttributeMetadata" }, { "Memo", "MemoAttributeMetadata" },
        { "Integer", "IntegerAttributeMetadata" }, { "Picklist", "PicklistAttributeMetadata" },
        { "State", "StateAttributeMetadata" }, { "Status", "StatusAttributeMetadata" },
        { "Boolean", "BooleanAttributeMetadata" }, { "Decimal", "DecimalAttributeMetadata" },
        { "Money", "MoneyAttributeMetadata" }, { "DateTime", "DateTimeAttributeMetadata" },
        { "Lookup", "LookupAttributeMetadata" }, { "Customer", "LookupAttributeMetadata" },
        { "Owner", "LookupAttributeMetadata" }, { "Uniqueidentifier", "UniqueIdentifierAttributeMetadata" },
        { "Double", "DoubleAttributeMetadata" },
    };
    for (size_t i = 0; i < sizeof M / sizeof M[0]; i++)
        if (!strcmp(M[i].t, type)) return M[i].o;
    return "AttributeMetadata";
}

static cJSON *md_label(const char *text)
{
    cJSON *l = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(l, "LocalizedLabels");
    cJSON *ll = cJSON_CreateObject();
    cJSON_AddStringToObject(ll, "Label", text);
    cJSON_AddNumberToObject(ll, "LanguageCode", 1033);
    cJSON_AddItemToArray(arr, ll);
    cJSON_AddItemToObject(l, "UserLocalizedLabel", cJSON_Duplicate(ll, 1));
    return l;
}

static cJSON *md_attr_json(const struct eset *s, const struct mdattr *a, const char *select)
{
    cJSON *o = cJSON_CreateObject();
    char ot[96];
    snprintf(ot, sizeof ot, "#Microsoft.Dynamics.CRM.%s", odata_attr_type(a->type));
    cJSON_AddStringToObject(o, "@odata.type", ot);
    cJSON_AddStringToObject(o, "MetadataId", a->id);
    if (selected(select, "LogicalName")) cJSON_AddStringToObject(o, "LogicalName", a->logical);
    if (selected(select, "SchemaName")) cJSON_AddStringToObject(o, "SchemaName", a->schema);
    if (selected(select, "EntityLogicalName")) cJSON_AddStringToObject(o, "EntityLogicalName", s->logical);
    if (selected(select, "AttributeType")) cJSON_AddStringToObject(o, "AttributeType", a->type);
    if (selected(select, "AttributeTypeName")) {
        char tn[64];
        snprintf(tn, sizeof tn, "%sType", a->type);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "AttributeTypeName"), "Value", tn);
    }
    if (selected(select, "IsCustomAttribute")) cJSON_AddBoolToObject(o, "IsCustomAttribute", a->custom);
    if (selected(select, "IsPrimaryId")) cJSON_AddBoolToObject(o, "IsPrimaryId", !strcmp(a->logical, s->idcol));
    if (selected(select, "DisplayName")) cJSON_AddItemToObject(o, "DisplayName", md_label(a->schema));
    if ((!strcmp(a->type, "String") || !strcmp(a->type, "Memo")) && selected(select, "MaxLength"))
        cJSON_AddNumberToObject(o, "MaxLength", a->maxlen);
    return o;
}

static cJSON *md_key_json(const struct eset *s, const struct mdkey *k, const char *select)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "MetadataId", k->id);
    if (selected(select, "LogicalName")) cJSON_AddStringToObject(o, "LogicalName", k->logical);
    if (selected(select, "SchemaName")) cJSON_AddStringToObject(o, "SchemaName", k->schema);
    if (selected(select, "EntityLogicalName")) cJSON_AddStringToObject(o, "EntityLogicalName", s->logical);
    if (selected(select, "KeyAttributes")) {
        cJSON *arr = cJSON_AddArrayToObject(o, "KeyAttributes");
        for (size_t i = 0; i < k->nattrs; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(k->attrs[i]));
    }
    if (selected(select, "EntityKeyIndexStatus")) cJSON_AddStringToObject(o, "EntityKeyIndexStatus", KS_NAMES[k->status]);
    if (selected(select, "AsyncJob")) cJSON_AddStringToObject(o, "AsyncJob", k->job);
    if (selected(select, "IsManaged")) cJSON_AddFalseToObject(o, "IsManaged");
    if (selected(select, "DisplayName")) cJSON_AddItemToObject(o, "DisplayName", md_label(k->schema));
    return o;
}

static void md_entity_props(cJSON *o, const struct eset *s, const char *select)
{
    cJSON_AddStringToObject(o, "MetadataId", s->mdid);
    if (selected(select, "LogicalName")) cJSON_AddStringToObject(o, "LogicalName", s->logical);
    if (selected(select, "EntitySetName")) cJSON_AddStringToObject(o, "EntitySetName", s->name);
    if (selected(select, "SchemaName")) {
        char sn[128];
        snprintf(sn, sizeof sn, "%s", s->logical);
        sn[0] = (char)toupper((unsigned char)sn[0]);
        cJSON_AddStringToObject(o, "SchemaName", sn);
    }
    if (selected(select, "PrimaryIdAttribute")) cJSON_AddStringToObject(o, "PrimaryIdAttribute", s->idcol);
    if (selected(select, "IsCustomEntity")) cJSON_AddBoolToObject(o, "IsCustomEntity", 0);
}

static struct eset *md_entity(const char *logical)
{
    for (size_t i = 0; i < g.nsets; i++)
        if (!strcasecmp(g.sets[i]->logical, logical)) return g.sets[i];
    return NULL;
}

static void md_not_found(struct opresp *rs, const char *logical)
{
    op_error(rs, 404, E_NOT_EXIST, "Could not find an entity with specified entity name: %s", logical);
}

static struct mdkey *md_key_find(const struct eset *s, const char *name_or_id)
{
    for (size_t i = 0; i < s->nmkeys; i++)
        if (!strcasecmp(s->mkeys[i]->logical, name_or_id) || !strcasecmp(s->mkeys[i]->id, name_or_id))
            return s->mkeys[i];
    return NULL;
}

/* "Name('x')" / "Name(LogicalName='x')" / "Name(<guid>)" -> x; NULL when prop is just "Name". */
static char *md_pred(const char *prop, const char *name, int *bad)
{
    size_t nl = strlen(name);
    *bad = 0;
    if (strncmp(prop, name, nl)) { *bad = 1; return NULL; }
    const char *p = prop + nl;
    if (!*p || *p == '/') return NULL;
    const char *e = *p == '(' ? strchr(p, ')') : NULL;
    if (!e || e[1]) { *bad = 1; return NULL; }
    const char *v = p + 1;
    if (!strncmp(v, "LogicalName=", 12)) v += 12;
    size_t vl = (size_t)(e - v);
    if (vl >= 2 && v[0] == '\'' && v[vl - 1] == '\'') { v++; vl -= 2; }
    return xstrndup(v, vl);
}

static const char *label_text(const cJSON *label)
{
    const cJSON *ll = cJSON_GetObjectItemCaseSensitive(label, "LocalizedLabels");
    const cJSON *first = cJSON_IsArray(ll) ? cJSON_GetArrayItem(ll, 0) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(first, "Label");
    return cJSON_IsString(t) && *t->valuestring ? t->valuestring : NULL;
}

/* "sample_BankName": a customization prefix, '_', a name; letters, digits, '_'. */
static int schema_name_ok(const char *n)
{
    const char *us = n ? strchr(n, '_') : NULL;
    if (!us || us == n || !us[1] || strlen(n) > 50) return 0;
    for (const char *p = n; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_') return 0;
    return isalpha((unsigned char)n[0]);
}

static void md_create_attr(struct opctx *x, const struct opreq *rq, struct eset *s, const cJSON *body,
                           struct opresp *rs, struct opout *oo)
{
    static const struct { const char *odata, *type; int ctype; } T[] = {
        { "StringAttributeMetadata", "String", T_STR }, { "MemoAttributeMetadata", "Memo", T_MEMO },
        { "BooleanAttributeMetadata", "Boolean", T_BOOL }, { "DecimalAttributeMetadata", "Decimal", T_DEC },
        { "IntegerAttributeMetadata", "Integer", T_INT }, { "DateTimeAttributeMetadata", "DateTime", T_DATE },
        { "MoneyAttributeMetadata", "Money", T_MONEY }, { "DoubleAttributeMetadata", "Double", T_DEC },
    };
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(body, "@odata.type");
    const char *o = cJSON_IsString(ot) ? ot->valuestring : "";
    if (*o == '#') o++;
    if (!strncmp(o, "Microsoft.Dynamics.CRM.", 23)) o += 23;
    size_t ti = 0;
    while (ti < sizeof T / sizeof T[0] && strcmp(T[ti].odata, o)) ti++;
    if (ti == sizeof T / sizeof T[0]) {
        op_error(rs, 400, E_PAYLOAD, "fake: @odata.type '%s' cannot be created here (String, Memo, Boolean, "
                 "Decimal, Integer, DateTime, Money, Double AttributeMetadata; lookups need a relationship).",
                 cJSON_IsString(ot) ? ot->valuestring : "");
        return;
    }
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(body, "SchemaName");
    if (!cJSON_IsString(sn) || !schema_name_ok(sn->valuestring)) {
        op_error(rs, 400, E_ARG, "fake: SchemaName must be a customization prefix, '_' and a name "
                 "(letters, digits, '_'), at most 50 characters.");
        return;
    }
    if (!label_text(cJSON_GetObjectItemCaseSensitive(body, "DisplayName"))) {
        op_error(rs, 400, E_ARG, "fake: DisplayName needs a LocalizedLabels entry.");
        return;
    }
    char logical[64];
    lower_into(logical, sn->valuestring);
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(body, "LogicalName");
    if (cJSON_IsString(ln) && strcmp(ln->valuestring, logical)) {
        op_error(rs, 400, E_ARG, "fake: LogicalName must be the lower case of SchemaName.");
        return;
    }
    if (md_attr(s, logical)) {
        op_error(rs, 400, E_DUPLICATE, "fake: an attribute with the name %s already exists on entity %s.",
                 logical, s->logical);
        return;
    }
    int maxlen = 0;
    const cJSON *ml = cJSON_GetObjectItemCaseSensitive(body, "MaxLength");
    if (T[ti].ctype == T_STR || T[ti].ctype == T_MEMO) {
        int top = T[ti].ctype == T_STR ? 4000 : 1048576;
        if (!cJSON_IsNumber(ml) || ml->valuedouble < 1 || ml->valuedouble > top) {
            op_error(rs, 400, E_ARG, "fake: MaxLength must be between 1 and %d.", top);
            return;
        }
        maxlen = (int)ml->valuedouble;
    }
    if (T[ti].ctype == T_BOOL) {
        const cJSON *os = cJSON_GetObjectItemCaseSensitive(body, "OptionSet");
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(os, "TrueOption");
        const cJSON *fo = cJSON_GetObjectItemCaseSensitive(os, "FalseOption");
        if (!cJSON_IsObject(to) || !cJSON_IsObject(fo) ||
            !label_text(cJSON_GetObjectItemCaseSensitive(to, "Label")) ||
            !label_text(cJSON_GetObjectItemCaseSensitive(fo, "Label"))) {
            op_error(rs, 400, E_ARG, "fake: a Boolean attribute needs OptionSet.TrueOption and "
                     "OptionSet.FalseOption with labels.");
            return;
        }
    }
    struct mdattr *a = md_add_attr(s, logical, sn->valuestring, T[ti].type, T[ti].ctype, maxlen, 1);
    if (rq->solution) a->solution = xstrdup(rq->solution);
    oo->key = xasprintf("LogicalName='%s'/Attributes(%s)", s->logical, logical);
    sb_printf(&rs->hdr, "OData-EntityId: %sEntityDefinitions(LogicalName='%s')/Attributes(%s)\r\n", x->base,
              s->logical, a->id);
    rs->status = 204;
}

static void md_create_key(struct opctx *x, const struct opreq *rq, struct eset *s, const cJSON *body,
                          struct opresp *rs, struct opout *oo)
{
    static const char *const keyable[] = { "String", "Integer", "Decimal", "DateTime", "Lookup", "Customer",
                                           "Owner", "Picklist", NULL };
    const cJSON *ot = cJSON_GetObjectItemCaseSensitive(body, "@odata.type");
    if (ot && (!cJSON_IsString(ot) || !strstr(ot->valuestring, "EntityKeyMetadata"))) {
        op_error(rs, 400, E_PAYLOAD, "fake: the body must be an EntityKeyMetadata.");
        return;
    }
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(body, "SchemaName");
    const cJSON *ka = cJSON_GetObjectItemCaseSensitive(body, "KeyAttributes");
    if (!cJSON_IsString(sn) || !schema_name_ok(sn->valuestring)) {
        op_error(rs, 400, E_ARG, "fake: SchemaName must be a customization prefix, '_' and a name.");
        return;
    }
    int n = cJSON_IsArray(ka) ? cJSON_GetArraySize(ka) : 0;
    if (n < 1 || n > 16) {
        op_error(rs, 400, E_ARG, "fake: KeyAttributes must list 1 to 16 attributes.");
        return;
    }
    if (s->nmkeys >= 10) {
        op_error(rs, 400, E_ARG, "fake: entity %s already has 10 keys, the maximum.", s->logical);
        return;
    }
    char *attrs[16];
    int na = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ka) {
        const struct mdattr *a = cJSON_IsString(it) ? md_attr(s, it->valuestring) : NULL;
        if (!a) {
            op_error(rs, 400, E_ARG, "fake: attribute '%s' does not exist on entity %s.",
                     cJSON_IsString(it) ? it->valuestring : "?", s->logical);
            return;
        }
        if (!name_in(keyable, a->type)) {
            op_error(rs, 400, E_ARG, "fake: attribute %s of type %s cannot be part of a key.", a->logical, a->type);
            return;
        }
        attrs[na++] = a->logical;
    }
    char low[64];
    lower_into(low, sn->valuestring);
    for (size_t i = 0; i < s->nmkeys; i++) {
        const struct mdkey *k = s->mkeys[i];
        int same = k->nattrs == (size_t)na;
        for (int a = 0; same && a < na; a++) {
            int hit = 0;
            for (size_t b = 0; b < k->nattrs; b++) hit |= !strcmp(attrs[a], k->attrs[b]);
            same = hit;
        }
        if (!strcmp(k->logical, low) || same) {
            op_error(rs, 400, E_DUPLICATE, "fake: entity %s already has a key %s on these attributes or with "
                     "this name.", s->logical, k->schema);
            return;
        }
    }
    struct mdkey *k = md_add_key(s, sn->valuestring, attrs, (size_t)na, KS_PENDING);
    k->active_at = mono_now() + (double)g.cfg.key_delay_ms / 1000.0;
    if (rq->solution) k->solution = xstrdup(rq->solution);
    oo->key = xasprintf("LogicalName='%s'/Keys(%s)", s->logical, k->logical);
    sb_printf(&rs->hdr, "OData-EntityId: %sEntityDefinitions(LogicalName='%s')/Keys(%s)\r\n", x->base,
              s->logical, k->id);
    rs->status = 204;
}

static void md_list_entities(struct opctx *x, struct target *t, struct opresp *rs)
{
    const char *select = tq(t, "$select"), *filter = tq(t, "$filter");
    char fcol[32] = "", fval[128] = "";
    if (filter && (sscanf(filter, "%31s eq '%127[^']'", fcol, fval) != 2 ||
                   (strcmp(fcol, "EntitySetName") && strcmp(fcol, "LogicalName")))) {
        op_error(rs, 400, E_ODATA, "fake: $filter on EntityDefinitions supports \"EntitySetName eq '...'\" and "
                 "\"LogicalName eq '...'\" only.");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    char *ctx = xasprintf("%s$metadata#EntityDefinitions", x->base);
    cJSON_AddStringToObject(o, "@odata.context", ctx);
    free(ctx);
    cJSON *arr = cJSON_AddArrayToObject(o, "value");
    for (size_t i = 0; i < g.nsets; i++) {
        const struct eset *s = g.sets[i];
        if (*fcol && strcasecmp(!strcmp(fcol, "EntitySetName") ? s->name : s->logical, fval)) continue;
        cJSON *e = cJSON_CreateObject();
        md_entity_props(e, s, select);
        cJSON_AddItemToArray(arr, e);
    }
    op_json(rs, 200, o);
}

static void md_execute(struct opctx *x, const struct opreq *rq, struct target *t, const cJSON *body,
                       struct opresp *rs, struct opout *oo)
{
    int get = !strcmp(rq->method, "GET"), post = !strcmp(rq->method, "POST");
    oo->set = "EntityDefinitions";
    if (!strcmp(t->set, "asyncoperations")) {
        if (!get || !t->by_id || t->prop) {
            op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method);
            return;
        }
        for (size_t i = 0; i < g.nsets; i++)
            for (size_t k = 0; k < g.sets[i]->nmkeys; k++) {
                const struct mdkey *mk = g.sets[i]->mkeys[k];
                if (strcasecmp(mk->job, t->id)) continue;
                cJSON *o = cJSON_CreateObject();
                cJSON_AddStringToObject(o, "asyncoperationid", mk->job);
                char *nm = xasprintf("Create index for EntityKey %s", mk->schema);
                cJSON_AddStringToObject(o, "name", nm);
                free(nm);
                int st = mk->status == KS_ACTIVE ? 30 : mk->status == KS_FAILED ? 31 : 0;
                cJSON_AddNumberToObject(o, "statecode", st ? 3 : 0);
                cJSON_AddNumberToObject(o, "statuscode", st);
                if (mk->fail_msg) {
                    cJSON_AddStringToObject(o, "message", mk->fail_msg);
                    cJSON_AddStringToObject(o, "friendlymessage", mk->fail_msg);
                } else {
                    cJSON_AddNullToObject(o, "message");
                    cJSON_AddNullToObject(o, "friendlymessage");
                }
                op_json(rs, 200, o);
                return;
            }
        op_error(rs, 404, E_NOT_EXIST, "asyncoperation With Id = %s Does Not Exist", t->id);
        return;
    }
    if (!t->has_pred) {
        if (!get) { op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method); return; }
        md_list_entities(x, t, rs);
        return;
    }
    if (t->by_id || t->nkp != 1 || strcmp(t->kp[0].col, "LogicalName")) {
        op_error(rs, 400, E_ODATA, "fake: address a table as EntityDefinitions(LogicalName='name').");
        return;
    }
    struct eset *s = md_entity(t->kp[0].val);
    if (!s) { md_not_found(rs, t->kp[0].val); return; }
    const char *select = tq(t, "$select"), *expand = tq(t, "$expand");
    char bad[128];
    if (!t->prop) {                                   /* the table */
        if (!get) { op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method); return; }
        cJSON *o = cJSON_CreateObject();
        char *ctx = xasprintf("%s$metadata#EntityDefinitions/$entity", x->base);
        cJSON_AddStringToObject(o, "@odata.context", ctx);
        free(ctx);
        md_entity_props(o, s, select);
        char sel[512];
        if (expand && expand_item(expand, "Attributes", sel, sizeof sel)) {
            if (*sel && !select_ok(sel, MD_ATTR_BASE, NULL, bad, sizeof bad)) {
                cJSON_Delete(o);
                op_error(rs, 400, E_ODATA, "Could not find a property named '%s' on type "
                         "'Microsoft.Dynamics.CRM.AttributeMetadata'.", bad);
                return;
            }
            cJSON *arr = cJSON_AddArrayToObject(o, "Attributes");
            for (size_t i = 0; i < s->nmattrs; i++) cJSON_AddItemToArray(arr, md_attr_json(s, s->mattrs[i], *sel ? sel : NULL));
        }
        if (expand && expand_item(expand, "Keys", sel, sizeof sel)) {
            if (*sel && !select_ok(sel, MD_KEY_PROPS, NULL, bad, sizeof bad)) {
                cJSON_Delete(o);
                op_error(rs, 400, E_ODATA, "Could not find a property named '%s' on type "
                         "'Microsoft.Dynamics.CRM.EntityKeyMetadata'.", bad);
                return;
            }
            cJSON *arr = cJSON_AddArrayToObject(o, "Keys");
            for (size_t i = 0; i < s->nmkeys; i++) cJSON_AddItemToArray(arr, md_key_json(s, s->mkeys[i], *sel ? sel : NULL));
        }
        op_json(rs, 200, o);
        return;
    }
    int badp = 0;
    if (!strncmp(t->prop, "Attributes", 10)) {
        const char *cast = t->prop[10] == '/' ? t->prop + 11 : NULL;
        char *one = cast ? NULL : md_pred(t->prop, "Attributes", &badp);
        if (badp) { op_error(rs, 400, E_ODATA, "Bad Request - Error in query syntax."); return; }
        if (post) {
            if (one || cast) { op_error(rs, 405, "", "The requested resource does not support http method 'POST'."); free(one); return; }
            oo->set = "EntityDefinitions";
            md_create_attr(x, rq, s, body, rs, oo);
            return;
        }
        if (!get) { free(one); op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method); return; }
        const char *type = NULL;
        if (cast) {
            if (strncmp(cast, "Microsoft.Dynamics.CRM.", 23) || !strstr(cast, "AttributeMetadata")) {
                op_error(rs, 400, E_ODATA, "fake: unknown type cast '%s'.", cast);
                return;
            }
            type = cast + 23;
        }
        int stringish = type && (!strcmp(type, "StringAttributeMetadata") || !strcmp(type, "MemoAttributeMetadata"));
        if (select && !select_ok(select, MD_ATTR_BASE, stringish ? MD_ATTR_STRING : NULL, bad, sizeof bad)) {
            free(one);
            op_error(rs, 400, E_ODATA, "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.",
                     bad, type ? type : "AttributeMetadata");
            return;
        }
        if (one) {
            const struct mdattr *a = md_attr(s, one);
            if (!a) {
                op_error(rs, 404, E_NOT_EXIST, "Could not find attribute with name %s on entity %s", one, s->logical);
                free(one);
                return;
            }
            free(one);
            op_json(rs, 200, md_attr_json(s, a, select));
            return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "value");
        for (size_t i = 0; i < s->nmattrs; i++) {
            if (type && strcmp(odata_attr_type(s->mattrs[i]->type), type)) continue;
            cJSON_AddItemToArray(arr, md_attr_json(s, s->mattrs[i], select));
        }
        op_json(rs, 200, o);
        return;
    }
    if (!strncmp(t->prop, "Keys", 4)) {
        char *one = md_pred(t->prop, "Keys", &badp);
        if (badp) { op_error(rs, 400, E_ODATA, "Bad Request - Error in query syntax."); return; }
        if (post) {
            if (one) { op_error(rs, 405, "", "The requested resource does not support http method 'POST'."); free(one); return; }
            md_create_key(x, rq, s, body, rs, oo);
            return;
        }
        if (!get) { free(one); op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method); return; }
        if (select && !select_ok(select, MD_KEY_PROPS, NULL, bad, sizeof bad)) {
            free(one);
            op_error(rs, 400, E_ODATA, "Could not find a property named '%s' on type "
                     "'Microsoft.Dynamics.CRM.EntityKeyMetadata'.", bad);
            return;
        }
        if (one) {
            const struct mdkey *k = md_key_find(s, one);
            if (!k) {
                op_error(rs, 404, E_NOT_EXIST, "fake: no key %s on entity %s.", one, s->logical);
                free(one);
                return;
            }
            free(one);
            op_json(rs, 200, md_key_json(s, k, select));
            return;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "value");
        for (size_t i = 0; i < s->nmkeys; i++) cJSON_AddItemToArray(arr, md_key_json(s, s->mkeys[i], select));
        op_json(rs, 200, o);
        return;
    }
    op_error(rs, 400, E_ODATA, "fake: EntityDefinitions supports the Attributes and Keys navigation properties only.");
}

/* Execute one Web API request (top level or a $batch part). The caller owns
 * the transaction (x->txn) and commits or rolls back. Called with g.mu held. */
static void api_execute(struct opctx *x, const struct opreq *rq, struct opresp *rs)
{
    struct target t;
    struct opout oo = { 0 };
    cJSON *body = NULL;
    int write = strcmp(rq->method, "GET") != 0;
    md_tick();
    if (parse_target(rq->url, &t, rs) < 0) goto done;
    if (t.cid && !x->changeset_no) {        /* $n only means something in a change set */
        err_cid(rs, t.cid);
        goto done;
    }
    if (t.set && !strcmp(t.set, "$batch")) {
        op_error(rs, 400, E_ODATA, "fake: a $batch cannot be nested in a batch.");
        goto done;
    }
    if (rq->body_len) {
        if (!rq->content_type || strncasecmp(rq->content_type, "application/json", 16)) {
            op_error(rs, 415, "", "The request entity's media type '%s' is not supported for this resource.",
                     rq->content_type ? rq->content_type : "");
            goto done;
        }
        body = cJSON_ParseWithLength(rq->body, rq->body_len);
        if (!body) {
            op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'%s', "
                     "Cause of the Error: The JSON in the request body is not valid.", t.set ? t.set : "");
            goto done;
        }
    } else if (!strcmp(rq->method, "PATCH") || !strcmp(rq->method, "POST") || !strcmp(rq->method, "PUT")) {
        op_error(rs, 400, E_PAYLOAD, "Error identified in Payload provided by the user for Entity :'%s', "
                 "Cause of the Error: The request body is empty.", t.set ? t.set : "");
        goto done;
    }
    const struct actionspec *a = t.set ? find_action(t.set) : NULL;
    if (t.set && (!strcmp(t.set, "EntityDefinitions") || (!strcmp(t.set, "asyncoperations") && !eset_find(t.set))))
        md_execute(x, rq, &t, body, rs, &oo);
    else if (a && !t.has_pred) op_action(x, rq, a, body, rs, &oo);
    else if (t.set && !strcmp(t.set, "WhoAmI")) op_whoami(x, rs);
    else if (!strcmp(rq->method, "GET")) op_get(x, &t, rs);
    else if (!strcmp(rq->method, "PATCH")) op_patch(x, rq, &t, body, rs, &oo);
    else if (!strcmp(rq->method, "POST")) op_create(x, rq, &t, body, rs, &oo);
    else if (!strcmp(rq->method, "DELETE")) op_delete(x, &t, rs, &oo);
    else if (!strcmp(rq->method, "PUT")) op_put(x, &t, body, rs, &oo);
    else op_error(rs, 405, "", "The requested resource does not support http method '%s'.", rq->method);
done:
    if (write) {
        if (!oo.set && t.set) oo.set = t.set;
        if (!oo.key && t.keytext) oo.key = xstrdup(t.keytext);
        op_log(x, rq, &oo, rs, body);
    }
    if (rs->status >= 400) g.c.failed_operations++;
    if (rs->status >= 400) { rs->s = NULL; rs->r = NULL; }
    free(oo.key);
    cJSON_Delete(oo.ignored);
    cJSON_Delete(body);
    target_free(&t);
}

/* ======================================================================== */
/* $batch (DV §4): multipart/mixed, change sets, Content-ID, continue-on-error */
/* ======================================================================== */

struct bop {                    /* one request inside the batch */
    char *method, *url, *content_type, *if_match, *if_none_match, *prefer, *content_id;
    const char *body;
    size_t body_len;
};
struct bitem {                  /* a top-level part: one request or a change set */
    int changeset;
    struct bop *ops;
    size_t nops;
};

static void bop_free(struct bop *o)
{
    free(o->method); free(o->url); free(o->content_type); free(o->if_match);
    free(o->if_none_match); free(o->prefer); free(o->content_id);
}
static void bitems_free(struct bitem *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < it[i].nops; j++) bop_free(&it[i].ops[j]);
        free(it[i].ops);
    }
    free(it);
}

/* Value of header `name` in a block of "Name: value" lines; malloc'd. */
static char *block_header(const char *h, size_t n, const char *name)
{
    size_t nl = strlen(name);
    const char *end = h + n;
    while (h < end) {
        const char *eol = memchr(h, '\n', (size_t)(end - h));
        if (!eol) eol = end;
        const char *le = eol;
        if (le > h && le[-1] == '\r') le--;
        if ((size_t)(le - h) > nl && !strncasecmp(h, name, nl) && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (v < le && (*v == ' ' || *v == '\t')) v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            return xstrndup(v, (size_t)(ve - v));
        }
        h = eol + 1;
    }
    return NULL;
}

/* boundary parameter of a multipart Content-Type; malloc'd or NULL. */
static char *ct_boundary(const char *ct)
{
    if (!ct || strncasecmp(ct, "multipart/mixed", 15)) return NULL;
    const char *p = strcasestr(ct, "boundary=");
    if (!p) return NULL;
    p += 9;
    if (*p == '"') {
        const char *e = strchr(p + 1, '"');
        return e && e > p + 1 ? xstrndup(p + 1, (size_t)(e - p - 1)) : NULL;
    }
    size_t l = strcspn(p, "; \t\r\n");
    return l ? xstrndup(p, l) : NULL;
}

/* Position of the next "--boundary" at the start of a line, from `from`. */
static long find_delim(const char *b, size_t n, size_t from, const char *d, size_t dl)
{
    while (from + dl <= n) {
        const char *p = memmem(b + from, n - from, d, dl);
        if (!p) return -1;
        size_t pos = (size_t)(p - b);
        size_t after = pos + dl;
        int at_line = pos == 0 || b[pos - 1] == '\n';
        int term = after >= n || b[after] == '\r' || b[after] == '\n' || b[after] == ' ' ||
                   b[after] == '\t' || (after + 1 < n && b[after] == '-' && b[after + 1] == '-');
        if (at_line && term) return (long)pos;
        from = pos + 1;
    }
    return -1;
}

struct mpart { const char *hdr; size_t hdr_len; const char *body; size_t body_len; };

/* Split a multipart body into parts (headers / content). -1 when malformed. */
static int mp_split(const char *b, size_t n, const char *boundary, struct mpart **out, size_t *nout)
{
    size_t dl = strlen(boundary) + 2;
    char *d = xmalloc(dl + 1);
    snprintf(d, dl + 1, "--%s", boundary);
    struct mpart *v = NULL;
    size_t nv = 0;
    long pos = find_delim(b, n, 0, d, dl);
    if (pos < 0) goto bad;
    for (;;) {
        size_t after = (size_t)pos + dl;
        if (after + 1 < n && b[after] == '-' && b[after + 1] == '-') break;     /* close delimiter */
        while (after < n && b[after] != '\n') after++;
        if (after >= n) goto bad;
        after++;
        long next = find_delim(b, n, after, d, dl);
        if (next < 0) goto bad;
        size_t end = (size_t)next;
        if (end > after && b[end - 1] == '\n') end--;
        if (end > after && b[end - 1] == '\r') end--;
        struct mpart m = { b + after, 0, NULL, 0 };
        const char *p = b + after, *e = b + end;
        if (p < e && (*p == '\n' || (*p == '\r' && p + 1 < e && p[1] == '\n'))) {
            m.hdr_len = 0;
            m.body = p + (*p == '\r' ? 2 : 1);
        } else {
            const char *s1 = memmem(p, (size_t)(e - p), "\r\n\r\n", 4);
            const char *s2 = memmem(p, (size_t)(e - p), "\n\n", 2);
            if (s1 && (!s2 || s1 < s2)) { m.hdr_len = (size_t)(s1 - p); m.body = s1 + 4; }
            else if (s2) { m.hdr_len = (size_t)(s2 - p); m.body = s2 + 2; }
            else { m.hdr_len = (size_t)(e - p); m.body = e; }
        }
        m.body_len = (size_t)(e - m.body);
        v = xrealloc(v, (nv + 1) * sizeof *v);
        v[nv++] = m;
        pos = next;
    }
    free(d);
    *out = v;
    *nout = nv;
    return 0;
bad:
    free(d);
    free(v);
    return -1;
}

/* An application/http part: request line, headers, blank line, body. */
static int parse_http_part(const struct mpart *m, struct bop *o)
{
    memset(o, 0, sizeof *o);
    const char *p = m->body, *e = m->body + m->body_len;
    while (p < e && (*p == '\r' || *p == '\n')) p++;
    const char *eol = memchr(p, '\n', (size_t)(e - p));
    if (!eol) eol = e;
    const char *le = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
    const char *sp1 = memchr(p, ' ', (size_t)(le - p));
    if (!sp1) return -1;
    const char *u = sp1 + 1;
    const char *sp2 = memchr(u, ' ', (size_t)(le - u));
    if (!sp2) sp2 = le;
    o->method = xstrndup(p, (size_t)(sp1 - p));
    char *url = xstrndup(u, (size_t)(sp2 - u));
    o->url = xstrdup(url[0] == '$' ? url : strip_service_root(url));
    free(url);
    const char *h = eol < e ? eol + 1 : e;
    const char *he = h, *body = e;
    while (he < e) {
        const char *l2 = memchr(he, '\n', (size_t)(e - he));
        if (!l2) { he = e; body = e; break; }
        const char *lstart = he;
        he = l2 + 1;
        if (l2 == lstart || (l2 == lstart + 1 && *lstart == '\r')) { body = he; he = lstart; break; }
    }
    size_t hl = (size_t)(he - h);
    o->content_type = block_header(h, hl, "Content-Type");
    o->if_match = block_header(h, hl, "If-Match");
    o->if_none_match = block_header(h, hl, "If-None-Match");
    o->prefer = block_header(h, hl, "Prefer");
    o->content_id = block_header(h, hl, "Content-ID");
    const char *be = e;
    while (be > body && isspace((unsigned char)be[-1])) be--;
    o->body = body;
    o->body_len = (size_t)(be - body);
    return 0;
}

/* Parse the whole batch; on error writes the reason into err. */
static int batch_parse(const char *body, size_t len, const char *boundary, struct bitem **out, size_t *nout,
                       size_t *nops, char *err, size_t errlen)
{
    struct mpart *parts = NULL;
    size_t np = 0;
    struct bitem *items = NULL;
    size_t ni = 0;
    *nops = 0;
    if (mp_split(body, len, boundary, &parts, &np) < 0) {
        snprintf(err, errlen, "fake: the batch body is not valid multipart/mixed with boundary '%s'.", boundary);
        return -1;
    }
    items = xcalloc(np, sizeof *items);
    for (size_t i = 0; i < np; i++) {
        char *ct = block_header(parts[i].hdr, parts[i].hdr_len, "Content-Type");
        char *cb = ct_boundary(ct);
        struct bitem *it = &items[ni++];
        if (cb) {
            struct mpart *cp = NULL;
            size_t ncp = 0;
            it->changeset = 1;
            if (mp_split(parts[i].body, parts[i].body_len, cb, &cp, &ncp) < 0) {
                snprintf(err, errlen, "fake: change set %zu is not valid multipart/mixed with boundary '%s'.", i + 1, cb);
                free(ct); free(cb);
                goto bad;
            }
            it->ops = xcalloc(ncp, sizeof *it->ops);
            for (size_t j = 0; j < ncp; j++) {
                char *ct2 = block_header(cp[j].hdr, cp[j].hdr_len, "Content-Type");
                int nested = ct2 && !strncasecmp(ct2, "multipart/", 10);
                free(ct2);
                if (nested) {
                    snprintf(err, errlen, "fake: change sets cannot be nested (change set %zu).", i + 1);
                    free(cp); free(ct); free(cb);
                    goto bad;
                }
                if (parse_http_part(&cp[j], &it->ops[j]) < 0) {
                    snprintf(err, errlen, "fake: part %zu of change set %zu has no valid request line.", j + 1, i + 1);
                    it->nops = j + 1;
                    free(cp); free(ct); free(cb);
                    goto bad;
                }
                it->nops = j + 1;
                char *cid = block_header(cp[j].hdr, cp[j].hdr_len, "Content-ID");
                if (cid) { free(it->ops[j].content_id); it->ops[j].content_id = cid; }
            }
            free(cp);
        } else {
            it->ops = xcalloc(1, sizeof *it->ops);
            if (parse_http_part(&parts[i], &it->ops[0]) < 0) {
                snprintf(err, errlen, "fake: part %zu has no valid request line.", i + 1);
                it->nops = 1;
                free(ct);
                goto bad;
            }
            it->nops = 1;
            char *cid = block_header(parts[i].hdr, parts[i].hdr_len, "Content-ID");
            if (cid) { free(it->ops[0].content_id); it->ops[0].content_id = cid; }
        }
        *nops += it->nops;
        free(ct);
        free(cb);
    }
    free(parts);
    *out = items;
    *nout = ni;
    return 0;
bad:
    free(parts);
    bitems_free(items, ni);
    return -1;
}

static void write_part(struct sbuf *o, const char *boundary, const char *content_id, const struct opresp *rs)
{
    sb_printf(o, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n", boundary);
    if (content_id) sb_printf(o, "Content-ID: %s\r\n", content_id);
    sb_printf(o, "\r\nHTTP/1.1 %d %s\r\nOData-Version: 4.0\r\n%s\r\n%s\r\n", rs->status, reason(rs->status),
              sb_str(&rs->hdr), rs->body ? rs->body : "");
}

/* Open (or extend) the user's Retry-After window; returns the whole seconds
 * advertised. exact: seconds until the limit has room again. */
static int open_window(struct user *u, double now, double exact, const char *code, const char *msg)
{
    int ra = (int)ceil(exact - 1e-9);
    if (g.cfg.retry_after > 0) ra = (int)ceil(g.cfg.retry_after);
    if (ra < 1) ra = 1;
    if (now >= u->retry_until) {
        u->window_t0 = now;
        u->retry_until = now + ra;
    } else if (now + ra > u->retry_until) {
        u->retry_until = now + ra;
    }
    u->window_code = code;
    snprintf(u->window_msg, sizeof u->window_msg, "%s", msg);
    return ra;
}

static void budget_msg(char *buf, size_t n)
{
    snprintf(buf, n, "Number of requests exceeded the limit of %ld over time window of %g seconds.",
             g.cfg.budget > 0 ? g.cfg.budget : 6000, g.cfg.budget > 0 ? g.cfg.window : 300.0);
}

/* --part-429-every: this batch operation answers 429 inside its part. */
static int inject_part_429(struct user *u, struct opresp *rs)
{
    if (g.cfg.part_429_every <= 0 || ++g.part_counter % g.cfg.part_429_every) return 0;
    char msg[200];
    budget_msg(msg, sizeof msg);
    int ra = u ? open_window(u, mono_now(), 1.0, E_BUDGET, msg) : 1;
    op_error(rs, 429, E_BUDGET, "%s", msg);
    sb_printf(&rs->hdr, "Retry-After: %d\r\n", ra);
    g.c.throttled_429++;
    g.c.part_429++;
    if (u) u->throttled++;
    return 1;
}

static struct opreq bop_req(const struct bop *b)
{
    struct opreq rq = { b->method, b->url, b->body, b->body_len, b->content_type, b->if_match,
                        b->if_none_match, b->prefer, NULL };
    return rq;
}

/* Execute a parsed batch into `out` (multipart body). Returns the outer
 * status: 200, or the failing status without continue-on-error. */
static int batch_run(struct opctx *x, struct user *u, struct bitem *items, size_t ni, int coe,
                     const char *rb, struct sbuf *out)
{
    int outer = 200;
    static int cs_counter;
    for (size_t i = 0; i < ni; i++) {
        struct bitem *it = &items[i];
        int failed_status = 0;
        if (!it->changeset) {
            struct bop *b = &it->ops[0];
            struct opreq rq = bop_req(b);
            struct opresp rs = { 0 };
            x->content_id = b->content_id;
            x->changeset_no = 0;
            if (!inject_part_429(u, &rs)) {
                txn_begin(&x->txn);
                api_execute(x, &rq, &rs);
                if (rs.status >= 400) txn_rollback(&x->txn);
                else txn_commit(&x->txn);
            }
            write_part(out, rb, b->content_id, &rs);
            if (rs.status >= 400) failed_status = rs.status;
            opresp_free(&rs);
        } else {
            char cbid[37];
            new_guid(cbid);
            x->changeset_no = ++cs_counter;
            x->ncids = 0;
            txn_begin(&x->txn);
            struct opresp *rsv = xcalloc(it->nops, sizeof *rsv);
            size_t done = 0;
            long fail_at = -1;
            for (size_t j = 0; j < it->nops; j++) {
                struct bop *b = &it->ops[j];
                struct opreq rq = bop_req(b);
                x->content_id = b->content_id;
                done = j + 1;
                if (!strcmp(b->method, "GET")) {
                    op_error(&rsv[j], 400, E_ODATA, "fake: GET requests are not allowed in a change set.");
                } else if (!inject_part_429(u, &rsv[j])) {
                    api_execute(x, &rq, &rsv[j]);
                }
                if (rsv[j].status >= 400) { fail_at = (long)j; break; }
                if (b->content_id && rsv[j].r) {
                    x->cids = xrealloc(x->cids, (x->ncids + 1) * sizeof *x->cids);
                    x->cids[x->ncids].id = b->content_id;
                    x->cids[x->ncids].s = rsv[j].s;
                    x->cids[x->ncids].r = rsv[j].r;
                    x->ncids++;
                }
            }
            sb_printf(out, "--%s\r\nContent-Type: multipart/mixed; boundary=changesetresponse_%s\r\n\r\n", rb, cbid);
            char csb[64];
            snprintf(csb, sizeof csb, "changesetresponse_%s", cbid);
            if (fail_at >= 0) {
                /* the whole change set is rolled back; only the failing
                 * response is returned (as in powerapps-docs#2843) */
                txn_rollback(&x->txn);
                write_part(out, csb, it->ops[fail_at].content_id, &rsv[fail_at]);
                failed_status = rsv[fail_at].status;
            } else {
                txn_commit(&x->txn);
                for (size_t j = 0; j < done; j++) write_part(out, csb, it->ops[j].content_id, &rsv[j]);
            }
            sb_printf(out, "--%s--\r\n", csb);
            for (size_t j = 0; j < it->nops; j++) opresp_free(&rsv[j]);
            free(rsv);
            x->ncids = 0;
            x->changeset_no = 0;
        }
        x->content_id = NULL;
        if (failed_status) {
            if (!coe) { outer = failed_status; break; }
            if (it->changeset && g.cfg.changeset_failure_stops) break;
        }
    }
    sb_printf(out, "--%s--\r\n", rb);
    return outer;
}

/* ======================================================================== */
/* Token endpoint (DV §1): POST /{tenant}/oauth2/v2.0/token                  */
/* ======================================================================== */

struct reply {                  /* what the MHD glue turns into a response */
    int status;
    struct sbuf hdr;            /* "Name: value\r\n" lines */
    char *body;                 /* malloc'd, or NULL */
    size_t len;
};

static void reply_json(struct reply *o, int status, cJSON *j)
{
    o->status = status;
    free(o->body);
    o->body = cJSON_PrintUnformatted(j);
    o->len = strlen(o->body);
    cJSON_Delete(j);
    sb_puts(&o->hdr, "Content-Type: application/json; charset=utf-8\r\n");
}

static void utc_stamp(char *buf, size_t n, double t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%SZ", &tm);
}

/* Entra's error shape (DV §1): error, error_description "AADSTSnnnnn: …
 * Trace ID … Correlation ID … Timestamp …", error_codes, timestamp,
 * trace_id, correlation_id, error_uri. */
static FMT(5, 6) void entra_error(struct reply *o, int status, const char *error, int code, const char *fmt, ...)
{
    char msg[1024], ts[32], trace[37], corr[37];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utc_stamp(ts, sizeof ts, wall_now());
    new_guid(trace);
    new_guid(corr);
    char *desc = xasprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", code, msg, trace, corr, ts);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "error", error);
    cJSON_AddStringToObject(j, "error_description", desc);
    cJSON *codes = cJSON_AddArrayToObject(j, "error_codes");
    cJSON_AddItemToArray(codes, cJSON_CreateNumber(code));
    cJSON_AddStringToObject(j, "timestamp", ts);
    cJSON_AddStringToObject(j, "trace_id", trace);
    cJSON_AddStringToObject(j, "correlation_id", corr);
    char uri[96];
    snprintf(uri, sizeof uri, "https://login.microsoftonline.com/error?code=%d", code);
    cJSON_AddStringToObject(j, "error_uri", uri);
    free(desc);
    reply_json(o, status, j);
    sb_puts(&o->hdr, "Cache-Control: no-store, no-cache\r\nPragma: no-cache\r\n");
}

static char *form_get(const char *body, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *p = body, *e = body + len;
    while (p < e) {
        const char *amp = memchr(p, '&', (size_t)(e - p));
        if (!amp) amp = e;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        if (eq) {
            char *k = pct_decode(p, (size_t)(eq - p), 1);
            int hit = !strcmp(k, name);
            free(k);
            if (hit) return pct_decode(eq + 1, (size_t)(amp - eq - 1), 1);
        } else if ((size_t)(amp - p) == nl && !strncmp(p, name, nl)) {
            return xstrdup("");
        }
        p = amp + 1;
    }
    return NULL;
}

static int jwt_time(const cJSON *claims, const char *name, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(claims, name);
    if (!cJSON_IsNumber(v)) return 0;
    *out = v->valuedouble;
    return 1;
}

/* The certificate credential: a JWT client assertion (DV §1 CERT). */
static int verify_assertion(const char *jwt, const char *client_id, const char *tenant, const char *host,
                            struct reply *o)
{
    const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    cJSON *hdr = NULL, *cl = NULL;
    unsigned char *hb = NULL, *pb = NULL, *sig = NULL;
    size_t hl, pl, sl;
    int rc = -1;
    if (!d1 || !d2 || strchr(d2 + 1, '.') ||
        !(hb = b64_decode(jwt, (size_t)(d1 - jwt), &hl)) ||
        !(pb = b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl)) ||
        !(sig = b64_decode(d2 + 1, strlen(d2 + 1), &sl)) ||
        !(hdr = cJSON_ParseWithLength((const char *)hb, hl)) || !cJSON_IsObject(hdr) ||
        !(cl = cJSON_ParseWithLength((const char *)pb, pl)) || !cJSON_IsObject(cl)) {
        entra_error(o, 400, "invalid_request", 50027, "JWT token is invalid or malformed.");
        goto out;
    }
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
    int ps256 = cJSON_IsString(alg) && !strcmp(alg->valuestring, "PS256");
    int rs256 = cJSON_IsString(alg) && !strcmp(alg->valuestring, "RS256");
    if (!ps256 && !rs256) {
        entra_error(o, 401, "invalid_client", 5002738,
                    "Invalid JWT token. '%s' is not a supported signature algorithm. Supported signing algorithms are: 'PS256,RS256'.",
                    cJSON_IsString(alg) ? alg->valuestring : "");
        goto out;
    }
    const cJSON *x5t256 = cJSON_GetObjectItemCaseSensitive(hdr, "x5t#S256");
    const cJSON *x5t = cJSON_GetObjectItemCaseSensitive(hdr, "x5t");
    if (!cJSON_IsString(x5t256) && !cJSON_IsString(x5t)) {
        entra_error(o, 401, "invalid_client", 700027,
                    "Client assertion failed signature validation. [Reason - The key was not found. The "
                    "assertion header has neither 'x5t#S256' nor 'x5t'.]");
        goto out;
    }
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(cl, "aud");
    char *a1 = xasprintf("http://%s/%s/oauth2/v2.0/token", host, tenant);
    char *a2 = xasprintf("https://%s/%s/oauth2/v2.0/token", host, tenant);
    char *a3 = xasprintf("https://login.microsoftonline.com/%s/oauth2/v2.0/token", tenant);
    int aud_ok = cJSON_IsString(aud) && (!strcmp(aud->valuestring, a1) || !strcmp(aud->valuestring, a2) ||
                                         !strcmp(aud->valuestring, a3));
    free(a1); free(a2); free(a3);
    if (!aud_ok) {
        entra_error(o, 401, "invalid_client", 700023,
                    "Client assertion audience claim does not match Realm issuer. Review the documentation at "
                    "https://learn.microsoft.com/entra/identity-platform/certificate-credentials .");
        goto out;
    }
    const cJSON *iss = cJSON_GetObjectItemCaseSensitive(cl, "iss"), *sub = cJSON_GetObjectItemCaseSensitive(cl, "sub");
    if (!cJSON_IsString(iss) || !cJSON_IsString(sub) || strcmp(iss->valuestring, client_id) ||
        strcmp(sub->valuestring, client_id)) {
        entra_error(o, 401, "invalid_client", 700021,
                    "Client assertion application identifier doesn't match 'client_id' parameter. Review the "
                    "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .");
        goto out;
    }
    double now = wall_now(), exp = 0, nbf = 0;
    int has_exp = jwt_time(cl, "exp", &exp), has_nbf = jwt_time(cl, "nbf", &nbf);
    if (!has_exp || exp <= now || (has_nbf && nbf > now)) {
        char tn[32], tf[32], te[32];
        utc_stamp(tn, sizeof tn, now);
        utc_stamp(tf, sizeof tf, has_nbf ? nbf : 0);
        utc_stamp(te, sizeof te, has_exp ? exp : 0);
        entra_error(o, 401, "invalid_client", 700024,
                    "Client assertion is not within its valid time range. Current time: %s, assertion valid "
                    "from %s, expiry time of assertion %s.", tn, tf, te);
        goto out;
    }
    if (g.cert_key) {
        int tp_ok = (cJSON_IsString(x5t256) && !strcmp(x5t256->valuestring, g.cert_x5t256)) ||
                    (cJSON_IsString(x5t) && !strcmp(x5t->valuestring, g.cert_x5t));
        if (!tp_ok) {
            entra_error(o, 401, "invalid_client", 700027,
                        "Client assertion failed signature validation. [Reason - The key was not found., "
                        "Thumbprint of key used by client: '%s']",
                        cJSON_IsString(x5t256) ? x5t256->valuestring : x5t->valuestring);
            goto out;
        }
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        int ok = md && EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, g.cert_key) == 1;
        if (ok && ps256)
            ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                 EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
                 EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
        if (ok) ok = EVP_DigestVerify(md, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt)) == 1;
        EVP_MD_CTX_free(md);
        if (!ok) {
            entra_error(o, 401, "invalid_client", 700027, "Client assertion failed signature validation.");
            goto out;
        }
    }
    rc = 0;
out:
    cJSON_Delete(hdr);
    cJSON_Delete(cl);
    free(hb);
    free(pb);
    free(sig);
    return rc;
}

static char *issue_token(const char *client_id, const char *tenant, const char *resource, double lifetime)
{
    double now = wall_now();
    cJSON *h = cJSON_CreateObject(), *p = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "typ", "JWT");
    cJSON_AddStringToObject(h, "alg", "RS256");
    cJSON_AddStringToObject(h, "kid", "fake-dataverse");
    char oid[37], iss[200];
    new_guid(oid);
    snprintf(iss, sizeof iss, "https://sts.windows.net/%s/", tenant);
    cJSON_AddStringToObject(p, "aud", resource);
    cJSON_AddStringToObject(p, "iss", iss);
    cJSON_AddNumberToObject(p, "iat", floor(now));
    cJSON_AddNumberToObject(p, "nbf", floor(now));
    cJSON_AddNumberToObject(p, "exp", floor(now + lifetime));
    cJSON_AddStringToObject(p, "appid", client_id);
    cJSON_AddStringToObject(p, "oid", oid);
    cJSON_AddStringToObject(p, "tid", tenant);
    char *hs = cJSON_PrintUnformatted(h), *ps = cJSON_PrintUnformatted(p);
    unsigned char sig[48];
    rand_bytes(sig, sizeof sig);
    char *h64 = b64url_encode((unsigned char *)hs, strlen(hs)), *p64 = b64url_encode((unsigned char *)ps, strlen(ps));
    char *s64 = b64url_encode(sig, sizeof sig);
    char *tok = xasprintf("%s.%s.%s", h64, p64, s64);
    free(hs); free(ps); free(h64); free(p64); free(s64);
    cJSON_Delete(h);
    cJSON_Delete(p);
    return tok;
}

static void token_free(void *p)
{
    struct token *t = p;
    if (!t) return;
    free(t->client_id);
    free(t);
}

/* Called with g.mu held. */
static void token_endpoint(const char *tenant, const char *host, const char *basic_auth, const char *body,
                           size_t len, struct reply *o)
{
    char *grant = form_get(body, len, "grant_type"), *cid = form_get(body, len, "client_id");
    char *secret = form_get(body, len, "client_secret"), *scope = form_get(body, len, "scope");
    char *atype = form_get(body, len, "client_assertion_type"), *assertion = form_get(body, len, "client_assertion");
    if (basic_auth && !strncasecmp(basic_auth, "Basic ", 6)) {      /* RFC 6749 §2.3.1 */
        size_t bl;
        unsigned char *dec = b64_decode(basic_auth + 6, strlen(basic_auth + 6), &bl);
        char *colon = dec ? strchr((char *)dec, ':') : NULL;
        if (colon) {
            *colon = 0;
            if (!cid) cid = pct_decode((char *)dec, strlen((char *)dec), 1);
            if (!secret) secret = pct_decode(colon + 1, strlen(colon + 1), 1);
        }
        free(dec);
    }
    snprintf(g.last_tenant, sizeof g.last_tenant, "%s", tenant);
    if (!grant || !*grant) {
        entra_error(o, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.");
    } else if (strcmp(grant, "client_credentials")) {
        entra_error(o, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '%s'.", grant);
    } else if (!cid || !*cid) {
        entra_error(o, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.");
    } else if (g.client_id && strcmp(cid, g.client_id)) {
        entra_error(o, 400, "unauthorized_client", 700016,
                    "Application with identifier '%s' was not found in the directory '%s'. This can happen if the "
                    "application has not been installed by the administrator of the tenant or consented to by any "
                    "user in the tenant. You may have sent your authentication request to the wrong tenant.", cid, tenant);
    } else if (!scope || !*scope) {
        entra_error(o, 400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.");
    } else if (strlen(scope) < 9 || strcmp(scope + strlen(scope) - 9, "/.default") || strchr(scope, ' ')) {
        entra_error(o, 400, "invalid_scope", 70011,
                    "The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. "
                    "Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
                    scope);
    } else if (assertion && *assertion) {
        if (!atype || strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")) {
            entra_error(o, 400, "invalid_request", 900144,
                        "The request body must contain the following parameter: 'client_assertion_type' "
                        "(urn:ietf:params:oauth:client-assertion-type:jwt-bearer).");
        } else if (verify_assertion(assertion, cid, tenant, host, o) == 0) {
            goto issue;
        }
    } else if (secret && *secret) {
        if (g.client_secret && strcmp(secret, g.client_secret)) {
            entra_error(o, 401, "invalid_client", 7000215,
                        "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                        "secret value, not the client secret ID, for a secret added to app '%s'.", cid);
        } else {
            goto issue;
        }
    } else {
        entra_error(o, 401, "invalid_client", 7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.");
    }
    g.c.token_errors++;
    goto out;
issue: {
        char *resource = xstrndup(scope, strlen(scope) - 9);
        double life = g.cfg.token_lifetime;
        char *tok = issue_token(cid, tenant, resource, life);
        struct token *t = xcalloc(1, sizeof *t);
        t->client_id = xstrdup(cid);
        snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
        t->expires = mono_now() + life;
        t->gen = g.token_gen;
        hm_put(&g.tokens, tok, t);
        g.c.tokens_issued++;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "token_type", "Bearer");
        cJSON_AddNumberToObject(j, "expires_in", floor(life));
        cJSON_AddNumberToObject(j, "ext_expires_in", floor(life));
        cJSON_AddStringToObject(j, "access_token", tok);
        reply_json(o, 200, j);
        sb_puts(&o->hdr, "Cache-Control: no-store, no-cache\r\nPragma: no-cache\r\n");
        free(tok);
        free(resource);
    }
out:
    free(grant); free(cid); free(secret); free(scope); free(atype); free(assertion);
}

static int load_client_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "fake_dataverse: --client-cert %s: %s\n", path, strerror(errno)); return -1; }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) { fprintf(stderr, "fake_dataverse: --client-cert %s: no PEM certificate\n", path); return -1; }
    unsigned char *der = NULL;
    int dl = i2d_X509(x, &der);
    unsigned char h1[EVP_MAX_MD_SIZE], h2[EVP_MAX_MD_SIZE];
    unsigned int l1 = 0, l2 = 0;
    if (dl <= 0 || EVP_Digest(der, (size_t)dl, h1, &l1, EVP_sha1(), NULL) != 1 ||
        EVP_Digest(der, (size_t)dl, h2, &l2, EVP_sha256(), NULL) != 1) {
        OPENSSL_free(der);
        X509_free(x);
        return -1;
    }
    OPENSSL_free(der);
    g.cert_x5t = b64url_encode(h1, l1);
    g.cert_x5t256 = b64url_encode(h2, l2);
    g.cert_key = X509_get_pubkey(x);
    X509_free(x);
    return g.cert_key ? 0 : -1;
}

/* ======================================================================== */
/* Control endpoints: /_fake/dump, /_fake/reset, /_fake/config, /_fake/revoke */
/* ======================================================================== */

static cJSON *cfg_json(void)
{
    const struct cfg *c = &g.cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "token_lifetime", c->token_lifetime);
    cJSON_AddNumberToObject(j, "budget", (double)c->budget);
    cJSON_AddNumberToObject(j, "window", c->window);
    cJSON_AddNumberToObject(j, "max_concurrency", (double)c->max_concurrency);
    cJSON_AddNumberToObject(j, "retry_after", c->retry_after);
    cJSON_AddNumberToObject(j, "latency_ms", (double)c->latency_ms);
    cJSON_AddNumberToObject(j, "fail_503_every", (double)c->fail_503_every);
    cJSON_AddNumberToObject(j, "reset_every", (double)c->reset_every);
    cJSON_AddStringToObject(j, "reset_phase", c->reset_after ? "after" : "before");
    cJSON_AddNumberToObject(j, "part_429_every", (double)c->part_429_every);
    cJSON_AddNumberToObject(j, "violation_grace_ms", (double)c->violation_grace_ms);
    cJSON_AddBoolToObject(j, "require_keys", c->require_keys);
    cJSON_AddBoolToObject(j, "strict_columns", c->strict_columns);
    cJSON_AddBoolToObject(j, "allow_state_patch", c->allow_state_patch);
    cJSON_AddBoolToObject(j, "strict_close", c->strict_close);
    cJSON_AddBoolToObject(j, "changeset_failure_stops", c->changeset_failure_stops);
    cJSON_AddBoolToObject(j, "allow_any_set", c->allow_any_set);
    cJSON_AddBoolToObject(j, "bare_schema", c->bare_schema);
    cJSON_AddNumberToObject(j, "key_delay_ms", (double)c->key_delay_ms);
    if (g.client_id) cJSON_AddStringToObject(j, "client_id", g.client_id);
    else cJSON_AddNullToObject(j, "client_id");
    return j;
}

/* Apply {"name": value, ...}; all or nothing. */
static int cfg_apply(const cJSON *j, char *err, size_t errlen)
{
    struct cfg c = g.cfg;
    const cJSON *m;
    if (!cJSON_IsObject(j)) { snprintf(err, errlen, "the body must be a JSON object"); return -1; }
    cJSON_ArrayForEach(m, j) {
        const char *k = m->string;
        struct { const char *name; double *d; long *l; int *b; double min; } f[] = {
            { "token_lifetime", &c.token_lifetime, NULL, NULL, 0.001 },
            { "budget", NULL, &c.budget, NULL, 0 },
            { "window", &c.window, NULL, NULL, 0.001 },
            { "max_concurrency", NULL, &c.max_concurrency, NULL, 1 },
            { "retry_after", &c.retry_after, NULL, NULL, 0 },
            { "latency_ms", NULL, &c.latency_ms, NULL, 0 },
            { "fail_503_every", NULL, &c.fail_503_every, NULL, 0 },
            { "reset_every", NULL, &c.reset_every, NULL, 0 },
            { "part_429_every", NULL, &c.part_429_every, NULL, 0 },
            { "violation_grace_ms", NULL, &c.violation_grace_ms, NULL, 0 },
            { "key_delay_ms", NULL, &c.key_delay_ms, NULL, 0 },
            { "require_keys", NULL, NULL, &c.require_keys, 0 },
            { "strict_columns", NULL, NULL, &c.strict_columns, 0 },
            { "allow_state_patch", NULL, NULL, &c.allow_state_patch, 0 },
            { "strict_close", NULL, NULL, &c.strict_close, 0 },
            { "changeset_failure_stops", NULL, NULL, &c.changeset_failure_stops, 0 },
            { "allow_any_set", NULL, NULL, &c.allow_any_set, 0 },
        };
        size_t i, nf = sizeof f / sizeof f[0];
        if (!strcmp(k, "reset_phase")) {
            if (!cJSON_IsString(m) || (strcmp(m->valuestring, "before") && strcmp(m->valuestring, "after"))) {
                snprintf(err, errlen, "reset_phase must be \"before\" or \"after\"");
                return -1;
            }
            c.reset_after = !strcmp(m->valuestring, "after");
            continue;
        }
        for (i = 0; i < nf && strcmp(f[i].name, k); i++) {}
        if (i == nf) { snprintf(err, errlen, "unknown setting '%s'", k); return -1; }
        if (f[i].b) {
            if (!cJSON_IsBool(m) && !cJSON_IsNumber(m)) { snprintf(err, errlen, "%s must be a boolean", k); return -1; }
            *f[i].b = cJSON_IsBool(m) ? cJSON_IsTrue(m) : m->valuedouble != 0;
            continue;
        }
        if (!cJSON_IsNumber(m) || m->valuedouble < f[i].min || (f[i].l && m->valuedouble > 1e12)) {
            snprintf(err, errlen, "%s must be a number >= %g", k, f[i].min);
            return -1;
        }
        if (f[i].d) *f[i].d = m->valuedouble;
        else *f[i].l = (long)m->valuedouble;
    }
    g.cfg = c;
    return 0;
}

static void counters_json(cJSON *o)
{
    const struct counters *c = &g.c;
    struct { const char *n; long v; } f[] = {
        { "requests", c->requests }, { "token_requests", c->token_requests },
        { "tokens_issued", c->tokens_issued }, { "token_errors", c->token_errors },
        { "throttled_429", c->throttled_429 }, { "violations", c->violations },
        { "violations_in_grace", c->violations_in_grace }, { "max_concurrency", c->max_concurrency },
        { "inflight", g.inflight_api }, { "injected_503", c->injected_503 }, { "resets", c->resets },
        { "batches", c->batches }, { "batch_operations", c->batch_operations },
        { "unauthorized_401", c->unauthorized_401 }, { "budget_429", c->budget_429 },
        { "concurrency_429", c->concurrency_429 }, { "part_429", c->part_429 },
        { "failed_operations", c->failed_operations }, { "header_warnings", c->header_warnings },
        { "writes", c->writes },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) cJSON_AddNumberToObject(o, f[i].n, (double)f[i].v);
    double span = g.last_done - g.first_admit;
    cJSON_AddNumberToObject(o, "mean_concurrency", span > 0 ? g.busy_s / span : 0);
    cJSON_AddNumberToObject(o, "active_s", span > 0 ? span : 0); /* first admitted to last answered */
    cJSON_AddNumberToObject(o, "exec_s", g.exec_s);          /* executing requests (one at a time) */
    cJSON_AddNumberToObject(o, "lock_wait_s", g.lock_wait_s); /* requests waiting to execute, summed */
}

static cJSON *dump_json(int with_records, int with_log, const char *only_set)
{
    cJSON *o = cJSON_CreateObject();
    if (with_records) {
        cJSON *rs = cJSON_AddObjectToObject(o, "records");
        for (size_t i = 0; i < g.nsets; i++) {
            struct eset *s = g.sets[i];
            if (only_set && strcmp(only_set, s->name)) continue;
            cJSON *arr = cJSON_AddArrayToObject(rs, s->name);
            for (size_t k = 0; k < s->n; k++) cJSON_AddItemToArray(arr, rec_dump_json(s->v[k]));
        }
    }
    counters_json(cJSON_AddObjectToObject(o, "counters"));
    cJSON *us = cJSON_AddObjectToObject(o, "users");
    for (struct user *u = g.users; u; u = u->next) {
        cJSON *x = cJSON_AddObjectToObject(us, u->client_id);
        cJSON_AddNumberToObject(x, "requests", (double)u->requests);
        cJSON_AddNumberToObject(x, "throttled_429", (double)u->throttled);
        cJSON_AddNumberToObject(x, "violations", (double)u->violations);
        cJSON_AddNumberToObject(x, "violations_in_grace", (double)u->violations_in_grace);
        cJSON_AddNumberToObject(x, "max_concurrency", (double)u->max_inflight);
        cJSON_AddNumberToObject(x, "inflight", (double)u->inflight);
    }
    cJSON_AddItemToObject(o, "settings", cfg_json());
    /* table definitions: custom columns and every alternate key, per set */
    cJSON *sc = cJSON_AddObjectToObject(o, "schema");
    for (size_t i = 0; i < g.nsets; i++) {
        struct eset *s = g.sets[i];
        if (only_set && strcmp(only_set, s->name)) continue;
        if (!s->nmkeys && !s->spec) continue;
        cJSON *x = cJSON_AddObjectToObject(sc, s->name);
        cJSON *cols = cJSON_AddArrayToObject(x, "custom_columns");
        for (size_t k = 0; k < s->nmattrs; k++) {
            const struct mdattr *a = s->mattrs[k];
            if (!a->custom) continue;
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "logical", a->logical);
            cJSON_AddStringToObject(c, "schema", a->schema);
            cJSON_AddStringToObject(c, "type", a->type);
            if (a->maxlen) cJSON_AddNumberToObject(c, "max_length", a->maxlen);
            if (a->solution) cJSON_AddStringToObject(c, "solution", a->solution);
            cJSON_AddItemToArray(cols, c);
        }
        cJSON *keys = cJSON_AddArrayToObject(x, "keys");
        for (size_t k = 0; k < s->nmkeys; k++) {
            const struct mdkey *mk = s->mkeys[k];
            cJSON *c = cJSON_CreateObject();
            cJSON_AddStringToObject(c, "schema", mk->schema);
            cJSON *arr = cJSON_AddArrayToObject(c, "attributes");
            for (size_t a = 0; a < mk->nattrs; a++) cJSON_AddItemToArray(arr, cJSON_CreateString(mk->attrs[a]));
            cJSON_AddStringToObject(c, "status", KS_NAMES[mk->status]);
            if (mk->solution) cJSON_AddStringToObject(c, "solution", mk->solution);
            cJSON_AddItemToArray(keys, c);
        }
    }
    if (with_log) {
        cJSON *arr = cJSON_AddArrayToObject(o, "log");
        for (size_t i = 0; i < g.nlog; i++) cJSON_AddItemReferenceToArray(arr, g.log[i]);
    }
    return o;
}

static void store_reset(void)
{
    for (size_t i = 0; i < g.nsets; i++) {
        eset_clear(g.sets[i]);
        eset_schema_reset(g.sets[i]);
    }
    seed();
    log_clear();
    g.seq = 0;
    memset(&g.c, 0, sizeof g.c);
    g.c.max_concurrency = g.inflight_api;
    g.busy_s = g.first_admit = g.last_done = 0;
    g.exec_s = g.lock_wait_s = 0;
    for (struct user *u = g.users; u; u = u->next) user_reset(u);
    g.reset_counter = g.fail503_counter = g.part_counter = g.batch_no = 0;
}

static int query_flag(const char *query, const char *name, int dflt)
{
    char *v = query ? form_get(query, strlen(query), name) : NULL;
    int r = v ? !(strcmp(v, "0") == 0 || strcmp(v, "false") == 0) : dflt;
    free(v);
    return r;
}

static void control(const char *method, const char *uri, const char *body, size_t len, struct reply *o)
{
    const char *qm = strchr(uri, '?');
    size_t pl = qm ? (size_t)(qm - uri) : strlen(uri);
    const char *query = qm ? qm + 1 : NULL;
    pthread_mutex_lock(&g.mu);
    md_tick();
    if (pl == 11 && !strncmp(uri, "/_fake/dump", pl) && !strcmp(method, "GET")) {
        char *set = query ? form_get(query, strlen(query), "set") : NULL;
        reply_json(o, 200, dump_json(query_flag(query, "records", 1), query_flag(query, "log", 1), set));
        free(set);
    } else if (pl == 12 && !strncmp(uri, "/_fake/reset", pl) && !strcmp(method, "POST")) {
        store_reset();
        cJSON *j = cJSON_CreateObject();
        cJSON_AddTrueToObject(j, "reset");
        reply_json(o, 200, j);
    } else if (pl == 13 && !strncmp(uri, "/_fake/config", pl) && (!strcmp(method, "GET") || !strcmp(method, "POST"))) {
        char err[200] = "";
        cJSON *j = len ? cJSON_ParseWithLength(body, len) : NULL;
        if (!strcmp(method, "POST") && (!j || cfg_apply(j, err, sizeof err) < 0)) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "error", *err ? err : "the body must be a JSON object");
            reply_json(o, 400, e);
        } else {
            reply_json(o, 200, cfg_json());
        }
        cJSON_Delete(j);
    } else if (pl == 13 && !strncmp(uri, "/_fake/revoke", pl) && !strcmp(method, "POST")) {
        g.token_gen++;
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "revoked", (double)g.tokens.n);
        reply_json(o, 200, j);
    } else {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "unknown control endpoint (GET /_fake/dump, POST /_fake/reset, "
                                "GET|POST /_fake/config, POST /_fake/revoke)");
        reply_json(o, 404, e);
    }
    pthread_mutex_unlock(&g.mu);
}

/* ======================================================================== */
/* MHD glue: per-request state, admission, the handler                       */
/* ======================================================================== */

enum { R_OTHER, R_CONTROL, R_TOKEN, R_API };

struct req {
    struct req *prev, *next;    /* g.live */
    char *uri;                  /* raw request target */
    double t_arrival;           /* monotonic, when the request line came in */
    int started, route;
    struct sbuf body;
    int too_large;
    struct user *user;          /* counted in user->inflight */
    int api_counted;            /* counted in g.inflight_api */
    double t_admit;             /* monotonic, when it was counted */
    int pre_status, pre_ra;     /* decided at admission: 401 / 429 */
    char pre_code[16], pre_msg[256];
    int do_reset;
    long latency_ms, burst_remaining;
    char tenant[128];
};

static void req_free(struct req *q)
{
    sb_free(&q->body);
    free(q->uri);
    free(q);
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct req *q = xcalloc(1, sizeof *q);
    q->uri = xstrdup(uri ? uri : "");
    q->t_arrival = mono_now();
    q->burst_remaining = -1;
    pthread_mutex_lock(&g.mu);
    q->next = g.live;
    if (g.live) g.live->prev = q;
    g.live = q;
    pthread_mutex_unlock(&g.mu);
    return q;
}

static void completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct req *q = *req_cls;
    if (!q) return;
    pthread_mutex_lock(&g.mu);
    if (q->user) q->user->inflight--;
    if (q->api_counted) {
        g.inflight_api--;
        /* Only requests admitted since the last reset count. */
        if (g.first_admit > 0 && q->t_admit >= g.first_admit) {
            double now = mono_now();
            g.busy_s += now - q->t_admit;
            g.last_done = now;
        }
    }
    if (q->prev) q->prev->next = q->next;
    else g.live = q->next;
    if (q->next) q->next->prev = q->prev;
    pthread_mutex_unlock(&g.mu);
    req_free(q);
    *req_cls = NULL;
}

static int classify(const char *uri, char *tenant, size_t tlen)
{
    size_t pl = strcspn(uri, "?");
    if (!strncmp(uri, "/_fake/", 7)) return R_CONTROL;
    size_t ap = strlen(API_PREFIX);
    if (pl > ap + 1 && !strncmp(uri, API_PREFIX, ap) && isdigit((unsigned char)uri[ap]) && uri[ap + 1] == '/')
        return R_API;
    const char *sfx = "/oauth2/v2.0/token";
    size_t sl = strlen(sfx);
    if (pl > sl + 1 && uri[0] == '/' && !strncmp(uri + pl - sl, sfx, sl)) {
        size_t tl = pl - sl - 1;
        if (tl && tl < tlen && !memchr(uri + 1, '/', tl)) {
            memcpy(tenant, uri + 1, tl);
            tenant[tl] = 0;
            return R_TOKEN;
        }
    }
    return R_OTHER;
}

static const char *hdr(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

struct hcat { const char *name; struct sbuf *b; };
static enum MHD_Result hcat_it(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct hcat *h = cls;
    if (key && value && !strcasecmp(key, h->name)) {
        if (h->b->n) sb_puts(h->b, ", ");
        sb_puts(h->b, value);
    }
    return MHD_YES;
}
/* All values of a (possibly repeated) header, comma-joined. */
static char *hdr_all(struct MHD_Connection *c, const char *name)
{
    struct sbuf b = { 0 };
    struct hcat h = { name, &b };
    MHD_get_connection_values(c, MHD_HEADER_KIND, hcat_it, &h);
    return b.p;
}

/* First call of a Web API request: auth, service protection, faults. */
static void admit_api(struct MHD_Connection *c, struct req *q)
{
    const char *auth = hdr(c, "Authorization");
    const char *ov = hdr(c, "OData-Version"), *omv = hdr(c, "OData-MaxVersion"), *acc = hdr(c, "Accept");
    pthread_mutex_lock(&g.mu);
    g.c.requests++;
    q->api_counted = 1;
    q->t_admit = mono_now();
    if (g.first_admit == 0) g.first_admit = q->t_admit;
    if (++g.inflight_api > g.c.max_concurrency) g.c.max_concurrency = g.inflight_api;
    q->latency_ms = g.cfg.latency_ms;
    if (!ov || strcmp(ov, "4.0") || !omv || strcmp(omv, "4.0") || !acc || !strcasestr(acc, "application/json"))
        g.c.header_warnings++;
    struct token *t = NULL;
    if (auth && !strncasecmp(auth, "Bearer ", 7)) {
        const char *tk = auth + 7;
        while (*tk == ' ') tk++;
        t = hm_get(&g.tokens, tk);
    }
    double now = mono_now();
    if (!t || t->gen != g.token_gen || now >= t->expires) {
        q->pre_status = 401;
        snprintf(q->tenant, sizeof q->tenant, "%s", t ? t->tenant : (g.last_tenant[0] ? g.last_tenant : "common"));
        g.c.unauthorized_401++;
        pthread_mutex_unlock(&g.mu);
        return;
    }
    struct user *u = user_get(t->client_id);
    q->user = u;
    if (++u->inflight > u->max_inflight) u->max_inflight = u->inflight;
    u->requests++;
    char msg[200];
    if (now < u->retry_until) {
        if (q->t_arrival > u->window_t0 + (double)g.cfg.violation_grace_ms / 1000.0) {
            g.c.violations++;
            u->violations++;
        } else {
            g.c.violations_in_grace++;
            u->violations_in_grace++;
        }
        q->pre_status = 429;
        q->pre_ra = (int)ceil(u->retry_until - now - 1e-9);
        if (q->pre_ra < 1) q->pre_ra = 1;
        snprintf(q->pre_code, sizeof q->pre_code, "%s", u->window_code ? u->window_code : E_BUDGET);
        snprintf(q->pre_msg, sizeof q->pre_msg, "%s", u->window_msg);
    } else if (u->inflight > g.cfg.max_concurrency) {
        snprintf(msg, sizeof msg, "Number of concurrent requests exceeded the limit of %ld.", g.cfg.max_concurrency);
        q->pre_status = 429;
        q->pre_ra = open_window(u, now, 1.0, E_CONCURRENCY, msg);
        snprintf(q->pre_code, sizeof q->pre_code, "%s", E_CONCURRENCY);
        snprintf(q->pre_msg, sizeof q->pre_msg, "%s", msg);
        g.c.concurrency_429++;
    } else if (g.cfg.budget > 0) {
        double w = g.cfg.window > 0 ? g.cfg.window : DEFAULT_WINDOW;
        user_ring_fit(u, g.cfg.budget);
        while (u->ring_n && u->ring[u->ring_head] <= now - w) {
            u->ring_head = (u->ring_head + 1) % u->ring_cap;
            u->ring_n--;
        }
        if ((long)u->ring_n >= g.cfg.budget) {
            budget_msg(msg, sizeof msg);
            q->pre_status = 429;
            q->pre_ra = open_window(u, now, u->ring[u->ring_head] + w - now, E_BUDGET, msg);
            snprintf(q->pre_code, sizeof q->pre_code, "%s", E_BUDGET);
            snprintf(q->pre_msg, sizeof q->pre_msg, "%s", msg);
            g.c.budget_429++;
        } else {
            u->ring[(u->ring_head + u->ring_n) % u->ring_cap] = now;
            u->ring_n++;
            q->burst_remaining = g.cfg.budget - (long)u->ring_n;
        }
    }
    if (q->pre_status == 429) {
        g.c.throttled_429++;
        u->throttled++;
    } else if (g.cfg.reset_every > 0 && ++g.reset_counter % g.cfg.reset_every == 0) {
        q->do_reset = 1;
    }
    pthread_mutex_unlock(&g.mu);
}

static void admit_token(struct req *q)
{
    pthread_mutex_lock(&g.mu);
    g.c.token_requests++;
    if (g.cfg.reset_every > 0 && ++g.reset_counter % g.cfg.reset_every == 0) q->do_reset = 1;
    pthread_mutex_unlock(&g.mu);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct reply *o)
{
    struct MHD_Response *r;
    if (o->body) {
        r = MHD_create_response_from_buffer(o->len, o->body, MHD_RESPMEM_MUST_FREE);
        o->body = NULL;
    } else {
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!r) { sb_free(&o->hdr); return MHD_NO; }
    const char *p = sb_str(&o->hdr);
    while (*p) {
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon) {
            char *name = xstrndup(p, (size_t)(colon - p));
            const char *v = colon + 1;
            while (*v == ' ') v++;
            char *val = xstrndup(v, (size_t)(eol - v));
            MHD_add_response_header(r, name, val);
            free(name);
            free(val);
        }
        p = eol + 2;
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)o->status, r);
    MHD_destroy_response(r);
    sb_free(&o->hdr);
    return ret;
}

static void reply_from_op(struct reply *o, struct opresp *rs)
{
    o->status = rs->status;
    sb_puts(&o->hdr, "OData-Version: 4.0\r\n");
    sb_puts(&o->hdr, sb_str(&rs->hdr));
    o->body = rs->body;
    o->len = rs->body ? strlen(rs->body) : 0;
    rs->body = NULL;
}

static void reply_error(struct reply *o, int status, const char *code, const char *msg)
{
    struct opresp rs = { 0 };
    op_error(&rs, status, code, "%s", msg);
    reply_from_op(o, &rs);
    opresp_free(&rs);
}

/* Last call of a Web API request. Returns -1 to close the connection. */
static int finish_api(struct MHD_Connection *c, struct req *q, const char *method, struct reply *o)
{
    const char *host = hdr(c, "Host");
    char hostbuf[64];
    if (!host) { snprintf(hostbuf, sizeof hostbuf, "127.0.0.1:%d", g.port); host = hostbuf; }
    if (q->pre_status == 401) {
        reply_error(o, 401, "0x8005F101", "The requested resource requires authentication.");
        sb_printf(&o->hdr, "WWW-Authenticate: Bearer authorization_uri=http://%s/%s/oauth2/authorize, resource_id=http://%s/\r\n",
                  host, q->tenant, host);
        return 0;
    }
    if (q->pre_status == 429) {
        reply_error(o, 429, q->pre_code, q->pre_msg);
        sb_printf(&o->hdr, "Retry-After: %d\r\n", q->pre_ra);
        return 0;
    }
    if (q->too_large) {
        reply_error(o, 413, "", "fake: the request body exceeds 64 MiB.");
        return 0;
    }
    if (q->do_reset && !g.cfg.reset_after) {
        pthread_mutex_lock(&g.mu);
        g.c.resets++;
        pthread_mutex_unlock(&g.mu);
        return -1;
    }
    if (q->latency_ms > 0) sleep_ms(q->latency_ms);
    const char *rel = q->uri + strlen(API_PREFIX) + 2;
    char *base = xasprintf("http://%s%.*s", host, (int)(rel - q->uri), q->uri);
    const char *ct = hdr(c, "Content-Type");
    char *prefer = hdr_all(c, "Prefer");
    double t_wait = mono_now();
    pthread_mutex_lock(&g.mu);
    double t_exec = mono_now();
    g.lock_wait_s += t_exec - t_wait;
    if (g.cfg.fail_503_every > 0 && ++g.fail503_counter % g.cfg.fail_503_every == 0) {
        g.c.injected_503++;
        reply_error(o, 503, "", "fake: injected 503 Service Unavailable. The service is temporarily unavailable; retry later.");
    } else if (!strncmp(rel, "$batch", 6) && (!rel[6] || rel[6] == '?')) {
        char *boundary = ct_boundary(ct);
        struct bitem *items = NULL;
        size_t ni = 0, nops = 0;
        char err[256];
        if (strcmp(method, "POST")) {
            reply_error(o, 405, "", "The requested resource does not support http method 'GET'.");
        } else if (!boundary) {
            reply_error(o, 400, E_ODATA, "fake: a $batch request needs Content-Type: multipart/mixed; boundary=...");
        } else if (batch_parse(q->body.p ? q->body.p : "", q->body.n, boundary, &items, &ni, &nops, err, sizeof err) < 0) {
            reply_error(o, 400, E_ODATA, err);
        } else if (nops > BATCH_MAX_OPS) {
            snprintf(err, sizeof err, "fake: the batch holds %zu requests; the limit is %d.", nops, BATCH_MAX_OPS);
            reply_error(o, 400, E_ODATA, err);
        } else {
            struct opctx x = { 0 };
            x.base = base;
            x.user = q->user->client_id;
            x.batch_no = ++g.batch_no;
            g.c.batches++;
            g.c.batch_operations += (long)nops;
            int coe = prefer_has(prefer, "odata.continue-on-error");
            char rbid[37], rb[64];
            new_guid(rbid);
            snprintf(rb, sizeof rb, "batchresponse_%s", rbid);
            struct sbuf out = { 0 };
            o->status = batch_run(&x, q->user, items, ni, coe, rb, &out);
            free(x.cids);
            sb_printf(&o->hdr, "OData-Version: 4.0\r\nContent-Type: multipart/mixed; boundary=%s\r\n", rb);
            if (coe) sb_puts(&o->hdr, "Preference-Applied: odata.continue-on-error\r\n");
            o->body = out.p;
            o->len = out.n;
        }
        if (items) bitems_free(items, ni);
        free(boundary);
    } else {
        struct opctx x = { 0 };
        x.base = base;
        x.user = q->user->client_id;
        struct opreq rq = { method, rel, q->body.p, q->body.n, ct, hdr(c, "If-Match"), hdr(c, "If-None-Match"), prefer,
                            hdr(c, "MSCRM.SolutionUniqueName") };
        struct opresp rs = { 0 };
        txn_begin(&x.txn);
        api_execute(&x, &rq, &rs);
        if (rs.status >= 400) txn_rollback(&x.txn);
        else txn_commit(&x.txn);
        reply_from_op(o, &rs);
        opresp_free(&rs);
    }
    if (q->burst_remaining >= 0)
        sb_printf(&o->hdr, "x-ms-ratelimit-burst-remaining-xrm-requests: %ld\r\n", q->burst_remaining);
    int reset = q->do_reset;   /* --reset-phase after: executed, then dropped */
    if (reset) g.c.resets++;
    g.exec_s += mono_now() - t_exec;
    pthread_mutex_unlock(&g.mu);
    free(prefer);
    free(base);
    return reset ? -1 : 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **req_cls)
{
    (void)cls;
    (void)url;
    (void)version;
    struct req *q = *req_cls;
    if (!q) return MHD_NO;
    if (!q->started) {
        q->started = 1;
        q->route = classify(q->uri, q->tenant, sizeof q->tenant);
        if (q->route == R_API) admit_api(c, q);
        else if (q->route == R_TOKEN) admit_token(q);
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (q->too_large || q->body.n + *upload_data_size > MAX_BODY) q->too_large = 1;
        else sb_putn(&q->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    struct reply o = { 0 };
    switch (q->route) {
    case R_CONTROL:
        control(method, q->uri, q->body.p, q->body.n, &o);
        break;
    case R_TOKEN: {
        if (q->do_reset && !g.cfg.reset_after) {
            pthread_mutex_lock(&g.mu);
            g.c.resets++;
            pthread_mutex_unlock(&g.mu);
            return MHD_NO;
        }
        const char *host = hdr(c, "Host");
        char hostbuf[64];
        if (!host) { snprintf(hostbuf, sizeof hostbuf, "127.0.0.1:%d", g.port); host = hostbuf; }
        pthread_mutex_lock(&g.mu);
        if (strcmp(method, "POST")) {
            entra_error(&o, 405, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a %s request.", method);
        } else if (q->too_large) {
            entra_error(&o, 400, "invalid_request", 900144, "The request body is too large.");
        } else {
            token_endpoint(q->tenant, host, hdr(c, "Authorization"), q->body.p ? q->body.p : "", q->body.n, &o);
        }
        int reset = q->do_reset;
        if (reset) g.c.resets++;
        pthread_mutex_unlock(&g.mu);
        if (reset) { free(o.body); sb_free(&o.hdr); return MHD_NO; }
        break;
    }
    case R_API:
        if (finish_api(c, q, method, &o) < 0) { free(o.body); sb_free(&o.hdr); return MHD_NO; }
        break;
    default: {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "error", "fake_dataverse: no such endpoint");
        reply_json(&o, 404, e);
    }
    }
    return send_reply(c, &o);
}

/* ======================================================================== */
/* main                                                                     */
/* ======================================================================== */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: fake_dataverse --port N [--port-file FILE] [--token-lifetime S]\n"
        "         [--client-id ID] [--client-secret SECRET] [--client-cert PEM]\n"
        "         [--budget N] [--window S] [--max-concurrency N] [--retry-after S]\n"
        "         [--latency-ms N] [--fail-503-every N] [--reset-every N] [--reset-phase before|after]\n"
        "         [--part-429-every N] [--violation-grace-ms N] [--require-keys] [--key SET:COLUMN]...\n"
        "         [--strict-columns] [--allow-state-patch] [--strict-close] [--changeset-failure-stops]\n"
        "         [--allow-any-set] [--bare-schema] [--key-delay-ms N] [--key-fail SET:COLUMN]...\n"
        "         [--dump-on-exit FILE]\n"
        "Binds 127.0.0.1. Token: POST /{tenant}/oauth2/v2.0/token. Web API: /api/data/v9.2/.\n"
        "Control: GET /_fake/dump[?log=0&records=0&set=S], POST /_fake/reset, GET|POST /_fake/config,\n"
        "POST /_fake/revoke.\n");
}

static int num_arg(const char *flag, const char *v, double min, double *out)
{
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || d < min || d > 1e12) {
        fprintf(stderr, "fake_dataverse: %s needs a number >= %g\n", flag, min);
        return -1;
    }
    *out = d;
    return 0;
}

static int write_port_file(const char *path, int port)
{
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) { free(tmp); return -1; }
    fprintf(f, "%d\n", port);
    int rc = fclose(f) == 0 && rename(tmp, path) == 0 ? 0 : -1;
    free(tmp);
    return rc;
}

static void cleanup_all(void)
{
    for (size_t i = 0; i < g.nsets; i++) eset_free(g.sets[i]);
    free(g.sets);
    log_clear();
    free(g.log);
    for (struct user *u = g.users, *nx; u; u = nx) {
        nx = u->next;
        free(u->ring);
        free(u->client_id);
        free(u);
    }
    hm_free(&g.tokens, token_free);
    for (struct req *q = g.live, *nx; q; q = nx) {
        nx = q->next;
        req_free(q);
    }
    for (size_t i = 0; i < g.nextra_keys; i++) free(g.extra_keys[i]);
    free(g.extra_keys);
    for (size_t i = 0; i < g.nkey_fail; i++) free(g.key_fail[i]);
    free(g.key_fail);
    EVP_PKEY_free(g.cert_key);
    free(g.cert_x5t);
    free(g.cert_x5t256);
}

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t n = write(sig_pipe[1], &b, 1);
    (void)n;
    errno = saved;
}

int main(int argc, char **argv)
{
    double port = 0, d;
    const char *port_file = NULL, *dump_file = NULL, *cert = NULL;
    g.cfg.token_lifetime = 3599;
    g.cfg.max_concurrency = 52;
    g.cfg.window = DEFAULT_WINDOW;
    g.cfg.violation_grace_ms = 50;
    g.cfg.key_delay_ms = 300;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NUM(flag, min, dst) if (!strcmp(a, flag)) { if (num_arg(flag, v, min, &d) < 0) return 2; dst; i++; continue; }
        NUM("--port", 0, port = d)
        NUM("--token-lifetime", 0.001, g.cfg.token_lifetime = d)
        NUM("--budget", 0, g.cfg.budget = (long)d)
        NUM("--window", 0.001, g.cfg.window = d)
        NUM("--max-concurrency", 1, g.cfg.max_concurrency = (long)d)
        NUM("--retry-after", 0, g.cfg.retry_after = d)
        NUM("--latency-ms", 0, g.cfg.latency_ms = (long)d)
        NUM("--fail-503-every", 0, g.cfg.fail_503_every = (long)d)
        NUM("--reset-every", 0, g.cfg.reset_every = (long)d)
        NUM("--part-429-every", 0, g.cfg.part_429_every = (long)d)
        NUM("--violation-grace-ms", 0, g.cfg.violation_grace_ms = (long)d)
        NUM("--key-delay-ms", 0, g.cfg.key_delay_ms = (long)d)
#undef NUM
        if (!strcmp(a, "--port-file") && v) { port_file = v; i++; continue; }
        if (!strcmp(a, "--dump-on-exit") && v) { dump_file = v; i++; continue; }
        if (!strcmp(a, "--client-id") && v) { g.client_id = v; i++; continue; }
        if (!strcmp(a, "--client-secret") && v) { g.client_secret = v; i++; continue; }
        if (!strcmp(a, "--client-cert") && v) { cert = v; i++; continue; }
        if (!strcmp(a, "--reset-phase") && v && (!strcmp(v, "before") || !strcmp(v, "after"))) {
            g.cfg.reset_after = !strcmp(v, "after");
            i++;
            continue;
        }
        if (!strcmp(a, "--key") && v && strchr(v, ':') && v[0] != ':' && strchr(v, ':')[1]) {
            g.extra_keys = xrealloc(g.extra_keys, (g.nextra_keys + 1) * sizeof *g.extra_keys);
            g.extra_keys[g.nextra_keys++] = xstrdup(v);
            i++;
            continue;
        }
        if (!strcmp(a, "--require-keys")) { g.cfg.require_keys = 1; continue; }
        if (!strcmp(a, "--strict-columns")) { g.cfg.strict_columns = 1; continue; }
        if (!strcmp(a, "--allow-state-patch")) { g.cfg.allow_state_patch = 1; continue; }
        if (!strcmp(a, "--strict-close")) { g.cfg.strict_close = 1; continue; }
        if (!strcmp(a, "--changeset-failure-stops")) { g.cfg.changeset_failure_stops = 1; continue; }
        if (!strcmp(a, "--allow-any-set")) { g.cfg.allow_any_set = 1; continue; }
        if (!strcmp(a, "--bare-schema")) { g.cfg.bare_schema = 1; continue; }
        if (!strcmp(a, "--key-fail") && v && strchr(v, ':') && v[0] != ':' && strchr(v, ':')[1]) {
            g.key_fail = xrealloc(g.key_fail, (g.nkey_fail + 1) * sizeof *g.key_fail);
            g.key_fail[g.nkey_fail++] = xstrdup(v);
            i++;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        fprintf(stderr, "fake_dataverse: bad argument '%s'\n", a);
        usage(stderr);
        return 2;
    }
    if (port > 65535) { fprintf(stderr, "fake_dataverse: --port out of range\n"); return 2; }
    if (g.client_secret && !*g.client_secret) g.client_secret = NULL;
    if (g.client_id && !*g.client_id) g.client_id = NULL;
    if (cert && load_client_cert(cert) < 0) { cleanup_all(); return 2; }

    g.t_start = mono_now();
    store_init();

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = { 0 };
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        fprintf(stderr, "fake_dataverse: cannot listen on 127.0.0.1:%d: %s\n", (int)port, strerror(errno));
        if (fd >= 0) close(fd);
        cleanup_all();
        return 1;
    }
    g.port = ntohs(sa.sin_port);

    /* SIGINT/SIGTERM: the handler writes the signal number into a pipe the
     * main thread waits on. (Blocking them and using sigwait() is not
     * enough: threads MHD creates may run with them unblocked.) */
    if (pipe2(sig_pipe, O_CLOEXEC) < 0) {
        fprintf(stderr, "fake_dataverse: pipe: %s\n", strerror(errno));
        close(fd);
        cleanup_all();
        return 1;
    }
    struct sigaction sa_sig;
    memset(&sa_sig, 0, sizeof sa_sig);
    sa_sig.sa_handler = on_signal;
    sigemptyset(&sa_sig.sa_mask);
    sigaction(SIGINT, &sa_sig, NULL);
    sigaction(SIGTERM, &sa_sig, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *dmn = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL, 0, NULL, NULL,
        handler, NULL,
        MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)300,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)2000,
        MHD_OPTION_END);
    if (!dmn) {
        fprintf(stderr, "fake_dataverse: cannot start the HTTP daemon\n");
        close(fd);
        cleanup_all();
        return 1;
    }
    fprintf(stderr, "fake_dataverse: listening on 127.0.0.1:%d\n", g.port);
    fflush(stderr);
    if (port_file && write_port_file(port_file, g.port) < 0)
        fprintf(stderr, "fake_dataverse: cannot write %s: %s\n", port_file, strerror(errno));

    unsigned char sigb = 0;
    while (read(sig_pipe[0], &sigb, 1) < 0 && errno == EINTR) {}
    int sig = sigb;
    MHD_stop_daemon(dmn);
    close(sig_pipe[0]);
    close(sig_pipe[1]);

    int rc = 0;
    if (dump_file) {
        pthread_mutex_lock(&g.mu);
        cJSON *j = dump_json(1, 1, NULL);
        pthread_mutex_unlock(&g.mu);
        char *s = cJSON_Print(j);
        cJSON_Delete(j);
        FILE *f = fopen(dump_file, "w");
        if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "fake_dataverse: cannot write %s\n", dump_file);
            rc = 1;
        }
        free(s);
    }
    fprintf(stderr, "fake_dataverse: stopped (signal %d)\n", sig);
    cleanup_all();
    return rc;
}
