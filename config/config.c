/*
 * config — load, interpolate and validate the JSON configuration.
 *
 * Design: every key lives in one table (`keys[]` below) with its JSON path,
 * type, default, limits and flags, in the manner of Redis' standardConfig and
 * Fluent Bit's config_map. Loading is three passes over that table:
 *   1. walk the JSON document and refuse any key the table does not declare
 *      (a typo must not be silently ignored);
 *   2. for each declared key take the file's value or the default, replace
 *      ${NAME} by the environment, convert and range-check it;
 *   3. cross-key rules (https-or-loopback, derived defaults, relative paths,
 *      the listener's TLS files loaded with GnuTLS as the server will).
 * Every error names the JSON path. cJSON is used only inside this file.
 *
 * Invariant: a returned struct config is complete (every field set or NULL
 * where the key is optional) and never changes afterwards.
 */
#include "config/config.h"

#include "common/util.h"
#include "config/cron.h"
#include "common/tls.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ctype { CT_STRING, CT_INT };

#define F_SECRET   0x1u  /* masked in config_dump */
#define F_REQUIRED 0x2u  /* no default: must be in the file */

struct key {
    const char *path;
    enum ctype type;
    size_t off;
    const char *def;   /* default as text; NULL = absent (optional) */
    int64_t min, max;  /* CT_INT limits */
    unsigned flags;
};

#define OFF(f) offsetof(struct config, f)

/* The one declaration of every configuration key. */
static const struct key keys[] = {
    {"listen.address",            CT_STRING, OFF(listen_address), "0.0.0.0", 0, 0, 0},
    {"listen.port",               CT_INT, OFF(listen_port), "8080", 0, 65535, 0},
    {"listen.threads",            CT_INT, OFF(listen_threads), "2", 1, 64, 0},
    {"listen.connection_limit",   CT_INT, OFF(listen_connection_limit), "512", 4, 65536, 0},
    {"listen.timeout_s",          CT_INT, OFF(listen_timeout_s), "60", 1, 3600, 0},
    {"listen.tls_cert",           CT_STRING, OFF(listen_tls_cert), NULL, 0, 0, 0},
    {"listen.tls_key",            CT_STRING, OFF(listen_tls_key), NULL, 0, 0, 0},
    {"listen.client_ca",          CT_STRING, OFF(listen_client_ca), NULL, 0, 0, 0},
    {"listen.client_subject",     CT_STRING, OFF(listen_client_subject), NULL, 0, 0, 0},
    {"listen.tls_priorities",     CT_STRING, OFF(listen_tls_priorities), TLS_DEFAULT_PRIORITIES, 0, 0, 0},
    {"sap.path",                  CT_STRING, OFF(sap_path), "/sap/idoc", 0, 0, 0},
    {"sap.username",              CT_STRING, OFF(sap_username), NULL, 0, 0, F_REQUIRED},
    {"sap.password",              CT_STRING, OFF(sap_password), NULL, 0, 0, F_REQUIRED | F_SECRET},
    {"sap.max_body_mb",           CT_INT, OFF(sap_max_body_mb), "64", 1, 4096, 0},
    {"sap.max_idocs",             CT_INT, OFF(sap_max_idocs), "100000", 1, 10000000, 0},
    {"queue.path",                CT_STRING, OFF(queue_path), "/var/lib/ml-connector", 0, 0, 0},
    {"queue.max_size_mb",         CT_INT, OFF(queue_max_size_mb), "1024", 1, 1048576, 0},
    {"dataverse.url",             CT_STRING, OFF(dv_url), NULL, 0, 0, F_REQUIRED},
    {"dataverse.tenant_id",       CT_STRING, OFF(dv_tenant_id), NULL, 0, 0, F_REQUIRED},
    {"dataverse.client_id",       CT_STRING, OFF(dv_client_id), NULL, 0, 0, F_REQUIRED},
    {"dataverse.client_secret",   CT_STRING, OFF(dv_client_secret), NULL, 0, 0, F_SECRET},
    {"dataverse.token_url",       CT_STRING, OFF(dv_token_url), NULL, 0, 0, 0},
    {"dataverse.scope",           CT_STRING, OFF(dv_scope), NULL, 0, 0, 0},
    {"dataverse.client_certificate", CT_STRING, OFF(dv_client_certificate), NULL, 0, 0, 0},
    {"dataverse.client_key",      CT_STRING, OFF(dv_client_key), NULL, 0, 0, F_SECRET},
    {"dataverse.assertion_alg",   CT_STRING, OFF(dv_assertion_alg), "PS256", 0, 0, 0},
    {"dataverse.timeout_s",       CT_INT, OFF(dv_timeout_s), "120", 5, 600, 0},
    {"mapping",                   CT_STRING, OFF(mapping_path), "config/mapping.json", 0, 0, 0},
    {"delivery.schedule",         CT_STRING, OFF(delivery_schedule), "continuous", 0, 0, 0},
    {"delivery.workers",          CT_INT, OFF(delivery_workers), "4", 1, 52, 0},
    {"delivery.batch_size",       CT_INT, OFF(delivery_batch_size), "100", 1, 1000, 0},
    {"delivery.max_concurrency",  CT_INT, OFF(delivery_max_concurrency), "8", 1, 52, 0},
    {"delivery.retry_base_s",     CT_INT, OFF(delivery_retry_base_s), "2", 1, 3600, 0},
    {"delivery.retry_cap_s",      CT_INT, OFF(delivery_retry_cap_s), "600", 1, 86400, 0},
    {"delivery.bind_retry_hours", CT_INT, OFF(delivery_bind_retry_hours), "24", 0, 720, 0},
    {"delivery.max_run_minutes",  CT_INT, OFF(delivery_max_run_minutes), "60", 1, 1440, 0},
    {"queue.retention_days",      CT_INT, OFF(queue_retention_days), "7", 0, 3650, 0},
    {"audit.retention_days",      CT_INT, OFF(audit_retention_days), "30", 1, 3650, 0},
    {"admin.token",               CT_STRING, OFF(admin_token), NULL, 0, 0, F_SECRET},
    {"log.level",                 CT_STRING, OFF(log_level), "info", 0, 0, 0},
    {"log.format",                CT_STRING, OFF(log_format), "text", 0, 0, 0},
};
#define NKEYS (sizeof keys / sizeof keys[0])


static char **str_field(struct config *c, const struct key *k) { return (char **)((char *)c + k->off); }
static int64_t *int_field(struct config *c, const struct key *k) { return (int64_t *)((char *)c + k->off); }

/* Is `prefix` a section ("listen") of some declared key? */
static int is_section(const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < NKEYS; i++)
        if (strncmp(keys[i].path, prefix, n) == 0 && keys[i].path[n] == '.') return 1;
    return 0;
}

static const struct key *find_key(const char *path)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return &keys[i];
    return NULL;
}

/* Pass 1: every key in the file must be declared. */
static int check_unknown(const cJSON *obj, const char *prefix, char *err, size_t errlen)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        char path[256];
        if (prefix[0]) snprintf(path, sizeof path, "%s.%s", prefix, it->string);
        else snprintf(path, sizeof path, "%s", it->string);
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                util_seterr(err, errlen, "config: %s: duplicate key", path);
                return -1;
            }
        }
        if (find_key(path)) {
            if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
                util_seterr(err, errlen, "config: %s: expected a %s, got an %s", path,
                       find_key(path)->type == CT_INT ? "number" : "string",
                       cJSON_IsObject(it) ? "object" : "array");
                return -1;
            }
            continue;
        }
        if (is_section(path)) {
            if (!cJSON_IsObject(it)) {
                util_seterr(err, errlen, "config: %s: expected an object", path);
                return -1;
            }
            if (check_unknown(it, path, err, errlen) != 0) return -1;
            continue;
        }
        util_seterr(err, errlen, "config: %s: unknown key", path);
        return -1;
    }
    return 0;
}

static const cJSON *lookup(const cJSON *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *cur = root;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save)) {
        if (!cJSON_IsObject(cur)) return NULL;
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
        if (!cur) return NULL;
    }
    return cur;
}

/* Replace every ${NAME} by the environment variable NAME. A missing variable
 * is an error: a secret silently becoming "" would be worse. */
static char *interpolate(const char *path, const char *in, char *err, size_t errlen)
{
    size_t cap = strlen(in) + 1, len = 0;
    char *out = malloc(cap);
    if (!out) { util_seterr(err, errlen, "config: out of memory"); return NULL; }
    for (const char *p = in; *p;) {
        const char *add = p;
        size_t addlen = 1;
        const char *end;
        if (p[0] == '$' && p[1] == '{' && (end = strchr(p + 2, '}')) != NULL) {
            char name[128];
            size_t n = (size_t)(end - (p + 2));
            if (n == 0 || n >= sizeof name) {
                util_seterr(err, errlen, "config: %s: bad variable reference", path);
                free(out);
                return NULL;
            }
            memcpy(name, p + 2, n);
            name[n] = 0;
            for (size_t i = 0; i < n; i++) {
                if (!(isalnum((unsigned char)name[i]) || name[i] == '_')) {
                    util_seterr(err, errlen, "config: %s: bad variable name '%s'", path, name);
                    free(out);
                    return NULL;
                }
            }
            const char *v = getenv(name);
            if (!v) {
                util_seterr(err, errlen, "config: %s: environment variable %s is not set", path, name);
                free(out);
                return NULL;
            }
            add = v;
            addlen = strlen(v);
            p = end + 1;
        } else {
            p++;
        }
        if (len + addlen + 1 > cap) {
            cap = (len + addlen + 1) * 2;
            char *n2 = realloc(out, cap);
            if (!n2) { free(out); util_seterr(err, errlen, "config: out of memory"); return NULL; }
            out = n2;
        }
        memcpy(out + len, add, addlen);
        len += addlen;
    }
    out[len] = 0;
    return out;
}

static int set_value(struct config *c, const struct key *k, const cJSON *v, char *err, size_t errlen)
{
    const char *text = NULL;
    char numbuf[64];
    if (v) {
        if (cJSON_IsString(v)) {
            text = v->valuestring;
        } else if (cJSON_IsNumber(v) && k->type == CT_INT) {
            double d = v->valuedouble;
            if (d != (double)(int64_t)d) {
                util_seterr(err, errlen, "config: %s: expected a whole number", k->path);
                return -1;
            }
            snprintf(numbuf, sizeof numbuf, "%lld", (long long)(int64_t)d);
            text = numbuf;
        } else if (cJSON_IsNull(v) && !(k->flags & F_REQUIRED)) {
            text = NULL; /* explicit null: use the default */
            v = NULL;
        } else {
            util_seterr(err, errlen, "config: %s: expected a %s", k->path,
                   k->type == CT_INT ? "number" : "string");
            return -1;
        }
    }
    if (!v) text = k->def;
    if (!text) {
        if (k->flags & F_REQUIRED) {
            util_seterr(err, errlen, "config: %s: required key is missing", k->path);
            return -1;
        }
        return 0;
    }
    char *s = interpolate(k->path, text, err, errlen);
    if (!s) return -1;
    if (k->type == CT_STRING) {
        *str_field(c, k) = s;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || end == s || *end) {
        util_seterr(err, errlen, "config: %s: '%s' is not a whole number", k->path, s);
        free(s);
        return -1;
    }
    free(s);
    if (n < k->min || n > k->max) {
        util_seterr(err, errlen, "config: %s: %lld is outside %lld..%lld", k->path, n,
               (long long)k->min, (long long)k->max);
        return -1;
    }
    *int_field(c, k) = n;
    return 0;
}

/* http:// is accepted only for loopback hosts (local fakes and proxies). */
static int check_url(const char *path, const char *url, char *err, size_t errlen)
{
    if (strncmp(url, "https://", 8) == 0 && url[8]) return 0;
    if (strncmp(url, "http://", 7) == 0) {
        const char *h = url + 7;
        if (strncmp(h, "localhost", 9) == 0 && (h[9] == 0 || h[9] == ':' || h[9] == '/')) return 0;
        if (strncmp(h, "[::1]", 5) == 0) return 0;
        if (strncmp(h, "127.", 4) == 0) return 0;
        util_seterr(err, errlen, "config: %s: '%s' must be https:// (http:// only for a loopback host)", path, url);
        return -1;
    }
    util_seterr(err, errlen, "config: %s: '%s' is not an https:// URL", path, url);
    return -1;
}

static int one_of(const char *path, const char *v, const char *const *allowed, char *err, size_t errlen)
{
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp(v, allowed[i]) == 0) return 0;
    util_seterr(err, errlen, "config: %s: '%s' is not one of the allowed values", path, v);
    return -1;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

/* A relative path names a file in the config file's folder. */
static int relative_to_config(const struct config *c, char **path, char *err, size_t errlen)
{
    if ((*path)[0] == '/') return 0;
    char *dup = strdup(c->source_path);
    if (!dup) { util_seterr(err, errlen, "config: out of memory"); return -1; }
    char *abs = xasprintf("%s/%s", dirname(dup), *path);
    free(dup);
    if (!abs) { util_seterr(err, errlen, "config: out of memory"); return -1; }
    free(*path);
    *path = abs;
    return 0;
}

/* Pass 3: rules between keys and derived defaults. */
static int validate(struct config *c, char *err, size_t errlen)
{
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    static const char *const formats[] = {"text", "json", NULL};
    if (c->sap_path[0] != '/') {
        util_seterr(err, errlen, "config: sap.path: '%s' must start with /", c->sap_path);
        return -1;
    }
    if (strncmp(c->sap_path, "/admin", 6) == 0 || strcmp(c->sap_path, "/healthz") == 0 ||
        strcmp(c->sap_path, "/readyz") == 0 || strcmp(c->sap_path, "/metrics") == 0) {
        util_seterr(err, errlen, "config: sap.path: '%s' collides with a built-in endpoint", c->sap_path);
        return -1;
    }
    if (!c->sap_username[0]) { util_seterr(err, errlen, "config: sap.username: must not be empty"); return -1; }
    if (!c->sap_password[0]) { util_seterr(err, errlen, "config: sap.password: must not be empty"); return -1; }
    if (check_url("dataverse.url", c->dv_url, err, errlen)) return -1;
    /* Drop a trailing slash so "{url}/api/data/..." never has "//". */
    size_t ul = strlen(c->dv_url);
    while (ul > 0 && c->dv_url[ul - 1] == '/') c->dv_url[--ul] = 0;
    if (!c->dv_token_url) {
        c->dv_token_url = xasprintf("https://login.microsoftonline.com/%s/oauth2/v2.0/token", c->dv_tenant_id);
        if (!c->dv_token_url) { util_seterr(err, errlen, "config: out of memory"); return -1; }
    }
    if (check_url("dataverse.token_url", c->dv_token_url, err, errlen)) return -1;
    if (!c->dv_scope) {
        c->dv_scope = xasprintf("%s/.default", c->dv_url);
        if (!c->dv_scope) { util_seterr(err, errlen, "config: out of memory"); return -1; }
    }
    int has_secret = c->dv_client_secret && c->dv_client_secret[0];
    int has_cert = c->dv_client_certificate != NULL;
    if (has_cert != (c->dv_client_key != NULL)) {
        util_seterr(err, errlen, "config: dataverse.%s: client_certificate and client_key go together",
               has_cert ? "client_key" : "client_certificate");
        return -1;
    }
    if (!has_secret && !has_cert) {
        util_seterr(err, errlen, "config: dataverse.client_secret: required (or client_certificate + client_key)");
        return -1;
    }
    static const char *const algs[] = {"PS256", "RS256", NULL};
    if (one_of("dataverse.assertion_alg", c->dv_assertion_alg, algs, err, errlen)) return -1;
    if (one_of("log.level", c->log_level, levels, err, errlen)) return -1;
    if (one_of("log.format", c->log_format, formats, err, errlen)) return -1;
    if (strcmp(c->delivery_schedule, "continuous") != 0) {
        struct cron cr;
        char cerr[200];
        if (cron_parse(c->delivery_schedule, &cr, cerr, sizeof cerr) != 0) {
            util_seterr(err, errlen, "config: delivery.schedule: '%s' is neither \"continuous\" nor a valid cron expression: %s",
                   c->delivery_schedule, cerr);
            return -1;
        }
    }
    if (c->admin_token && !c->admin_token[0]) {
        util_seterr(err, errlen, "config: admin.token: must not be empty (leave the key out to disable /admin/)");
        return -1;
    }
    /* HTTPS: the files are loaded with GnuTLS here, as the listener will
     * load them, so check-config and serve report a bad file by its key. */
    static const char *const tls_keys[] = {"listen.tls_cert", "listen.tls_key", "listen.client_ca",
                                           "listen.client_subject", "listen.tls_priorities"};
    const char *tls_vals[] = {c->listen_tls_cert, c->listen_tls_key, c->listen_client_ca,
                              c->listen_client_subject, c->listen_tls_priorities};
    for (size_t i = 0; i < sizeof tls_keys / sizeof tls_keys[0]; i++) {
        if (tls_vals[i] && !tls_vals[i][0]) {
            util_seterr(err, errlen, "config: %s: must not be empty (leave the key out%s)", tls_keys[i],
                   i < 2 ? " for plain HTTP" : "");
            return -1;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        char **f = i == 0 ? &c->listen_tls_cert : i == 1 ? &c->listen_tls_key : &c->listen_client_ca;
        if (*f && relative_to_config(c, f, err, errlen)) return -1;
    }
    char terr[400];
    if (tls_check_config(c->listen_tls_cert, c->listen_tls_key, c->listen_client_ca, c->listen_client_subject,
                         c->listen_tls_priorities, terr, sizeof terr) != 0) {
        util_seterr(err, errlen, "config: %s", terr);
        return -1;
    }
    /* The mapping path is relative to the config file's folder. */
    if (relative_to_config(c, &c->mapping_path, err, errlen)) return -1;
    return 0;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    char *buf;
    if (util_read_file(path, (size_t)16 << 20, &buf, NULL) != 0) {
        util_seterr(err, errlen, "config: cannot read %s: %s", path,
                    errno == EFBIG ? "larger than 16 MiB" : strerror(errno));
        return NULL;
    }
    return buf;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    char *text = read_file(path, err, errlen);
    if (!text) return NULL;
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
        util_seterr(err, errlen, "config: %s: invalid JSON near line %d", path, line);
        free(text);
        return NULL;
    }
    free(text);
    struct config *c = calloc(1, sizeof *c);
    if (!c) { cJSON_Delete(root); util_seterr(err, errlen, "config: out of memory"); return NULL; }
    c->source_path = strdup(path);
    int rc = c->source_path ? 0 : -1;
    if (rc == 0 && !cJSON_IsObject(root)) {
        util_seterr(err, errlen, "config: %s: the top level must be an object", path);
        rc = -1;
    }
    if (rc == 0) rc = check_unknown(root, "", err, errlen);
    for (size_t i = 0; rc == 0 && i < NKEYS; i++)
        rc = set_value(c, &keys[i], lookup(root, keys[i].path), err, errlen);
    if (rc == 0) rc = validate(c, err, errlen);
    cJSON_Delete(root);
    if (rc != 0) {
        config_free(c);
        return NULL;
    }
    return c;
}

void config_free(struct config *c)
{
    if (!c) return;
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == CT_STRING) {
            char **f = str_field(c, &keys[i]);
            if (*f && (keys[i].flags & F_SECRET)) memset(*f, 0, strlen(*f));
            free(*f);
        }
    }
    free(c->source_path);
    free(c);
}

/* Find or create the object for a dotted path's parent. */
static cJSON *section(cJSON *root, const char *path, const char **leaf)
{
    const char *dot = strchr(path, '.');
    if (!dot) { *leaf = path; return root; }
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(dot - path), path);
    cJSON *s = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!s) s = cJSON_AddObjectToObject(root, name);
    *leaf = dot + 1;
    return s;
}

char *config_dump(const struct config *c)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        const char *leaf;
        cJSON *s = section(root, k->path, &leaf);
        if (!s) continue;
        if (k->type == CT_INT) {
            cJSON_AddNumberToObject(s, leaf, (double)*int_field((struct config *)c, k));
        } else {
            const char *v = *str_field((struct config *)c, k);
            if (!v) cJSON_AddNullToObject(s, leaf);
            else if (k->flags & F_SECRET) cJSON_AddStringToObject(s, leaf, "********");
            else cJSON_AddStringToObject(s, leaf, v);
        }
    }
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    return out;
}

const char *config_path_from_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
    }
    const char *env = getenv("MLC_CONFIG");
    return env && *env ? env : NULL;
}
