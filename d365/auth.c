/*
 * d365/auth — one access token for the whole process, renewed by a single
 * refresher before it runs out.
 *
 * Design. The cached token and its times sit under one mutex. A caller that
 * finds the token due for renewal and nobody fetching becomes the refresher:
 * it sets `fetching`, drops the lock, talks to Entra on the manager's own
 * curl handle (only the refresher touches it), and re-takes the lock to
 * install the result and broadcast. Everybody else either copies the token
 * that is still valid (renewal starts well before expiry, so there usually is
 * one) or, when there is none (first use, after a 401), waits on the condition
 * variable for the refresher. That bounds token requests to one in flight —
 * no stampede when 50 workers start at once or all get 401 together.
 *
 * Why renew early: a token handed to a request may sit in a queue, a retry or
 * a slow batch for a while; renewing at 80% (or 5 min before, for long
 * lifetimes) leaves that slack. Microsoft's own client renews 1 min before.
 *
 * Failures: a transport error, 5xx or 429 from Entra is retried once at
 * once (100 ms). A failed fetch then sets `next_attempt_at` (1 s, doubling
 * to 60 s).
 * Until then callers with no valid token get the last error immediately — a
 * wrong secret costs Entra one request per back-off step, not one per record.
 *
 * Certificate credential: the certificate and key are loaded once at create;
 * each fetch signs a new assertion (fresh jti, nbf/iat = now, exp = now+10min)
 * with EVP_DigestSign: PS256 = RSA-PSS, SHA-256, MGF1-SHA-256, salt = 32
 * (RFC 7518 §3.5); RS256 = PKCS#1 v1.5.
 *
 * Secrets: the secret, the form body and the assertion are wiped after use
 * and never logged; logs carry the Entra error code, its meaning and the
 * first sentence of error_description (which holds no secret).
 */
#include "d365/auth.h"
#include "d365/respbuf.h"

#include "common/util.h"

#include "common/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESPONSE_MAX (1u << 20)
#define BACKOFF_MAX_S 60.0

struct d365_auth {
    char *token_url, *client_id, *scope, *secret, *aud;
    enum d365_assertion_alg alg;
    long connect_timeout_ms, timeout_ms;
    X509 *cert;
    EVP_PKEY *key;
    char *thumb;                /* x5t#S256 or x5t, base64url */

    CURL *curl;                 /* refresher only */
    int transient;              /* refresher only: last failure was transport/5xx/429 */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *token;                /* current token or NULL */
    double renew_at, usable_until, lifetime;
    int fetching;
    double next_attempt_at;
    unsigned failures_in_row;
    char last_err[512];
    struct d365_auth_stats st;
};



static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* ------------------------------------------------------------------------ */
/* AADSTS codes (dataverse.md §1 and Entra's error reference). */

static const struct { long code; const char *meaning; } aadsts[] = {
    {7000215, "invalid client secret (often the secret's ID was configured instead of its value)"},
    {7000222, "the client secret has expired; create a new one in the app registration"},
    {7000218, "no client_secret or client_assertion was sent"},
    {700016, "application (client_id) not found in the tenant: wrong client_id or tenant_id"},
    {90002, "tenant not found: wrong tenant_id, or the tenant has no active subscription"},
    {900023, "tenant identifier is not a valid tenant id or domain"},
    {70011, "invalid scope: it must be <environment url>/.default"},
    {700027, "client assertion signature invalid: the certificate is not uploaded to the app "
             "registration, or the key does not match it"},
    {700021, "client assertion issuer/subject does not match the client_id"},
    {700023, "client assertion audience does not match the token endpoint"},
    {700024, "client assertion is not within its valid time range (check the clock)"},
    {500011, "resource principal not found: the scope's environment URL is wrong, or the "
             "environment is not in this tenant"},
    {7000112, "the application is disabled"},
    {90014, "a required field is missing from the token request"},
    {50126, "invalid credentials"},
    {53003, "blocked by Conditional Access policy"},
};

const char *d365_aadsts_meaning(long code)
{
    for (size_t i = 0; i < sizeof aadsts / sizeof aadsts[0]; i++)
        if (aadsts[i].code == code) return aadsts[i].meaning;
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Base64url, thumbprints, JWT */

char *d365_base64url(const unsigned char *data, size_t len)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len / 3 * 4 + 5), *p = out;
    if (!out) return NULL;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];
        *p++ = tbl[v >> 18 & 63];
        *p++ = tbl[v >> 12 & 63];
        *p++ = tbl[v >> 6 & 63];
        *p++ = tbl[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)data[i] << 16;
        *p++ = tbl[v >> 18 & 63];
        *p++ = tbl[v >> 12 & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8;
        *p++ = tbl[v >> 18 & 63];
        *p++ = tbl[v >> 12 & 63];
        *p++ = tbl[v >> 6 & 63];
    }
    *p = 0;
    return out;
}

static void ossl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    util_seterr(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
}

static int load_credentials(struct d365_auth *a, const char *cert_file, const char *key_file,
                            char *err, size_t errlen)
{
    BIO *b = BIO_new_file(cert_file, "r");
    if (!b) {
        ossl_err(err, errlen, "dataverse.client_certificate: cannot open");
        return -1;
    }
    a->cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!a->cert) {
        ossl_err(err, errlen, "dataverse.client_certificate: not a PEM certificate");
        return -1;
    }
    b = BIO_new_file(key_file, "r");
    if (!b) {
        ossl_err(err, errlen, "dataverse.client_key: cannot open");
        return -1;
    }
    a->key = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
    BIO_free(b);
    if (!a->key) {
        ossl_err(err, errlen, "dataverse.client_key: not an unencrypted PEM private key");
        return -1;
    }
    if (EVP_PKEY_get_base_id(a->key) != EVP_PKEY_RSA) {
        util_seterr(err, errlen, "dataverse.client_key: must be an RSA key (PS256/RS256)");
        return -1;
    }
    if (X509_check_private_key(a->cert, a->key) != 1) {
        ossl_err(err, errlen, "dataverse.client_key does not belong to dataverse.client_certificate");
        return -1;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    const EVP_MD *dg = a->alg == D365_ALG_RS256 ? EVP_sha1() : EVP_sha256();
    if (X509_digest(a->cert, dg, md, &mdlen) != 1) {
        ossl_err(err, errlen, "certificate thumbprint");
        return -1;
    }
    a->thumb = d365_base64url(md, mdlen);
    if (!a->thumb) {
        util_seterr(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int uuid4(char out[37])
{
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) return -1;
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
             r[13], r[14], r[15]);
    return 0;
}

static char *b64url_str(const char *s) { return d365_base64url((const unsigned char *)s, strlen(s)); }

int d365_auth_assertion(struct d365_auth *a, time_t now, char **jwt, char *err, size_t errlen)
{
    *jwt = NULL;
    if (!a->key) {
        util_seterr(err, errlen, "no certificate credential configured");
        return -1;
    }
    int ps = a->alg != D365_ALG_RS256;
    char jti[37];
    if (uuid4(jti) != 0) {
        ossl_err(err, errlen, "RAND_bytes");
        return -1;
    }
    /* Header: alg, typ, thumbprint. cJSON keeps member order. */
    cJSON *h = cJSON_CreateObject(), *c = cJSON_CreateObject();
    char *hs = NULL, *cs = NULL, *h64 = NULL, *c64 = NULL, *input = NULL, *s64 = NULL;
    unsigned char *sig = NULL;
    EVP_MD_CTX *md = NULL;
    int rc = -1;
    if (!h || !c) goto oom;
    cJSON_AddStringToObject(h, "alg", ps ? "PS256" : "RS256");
    cJSON_AddStringToObject(h, "typ", "JWT");
    cJSON_AddStringToObject(h, ps ? "x5t#S256" : "x5t", a->thumb);
    cJSON_AddStringToObject(c, "aud", a->aud);
    cJSON_AddStringToObject(c, "iss", a->client_id);
    cJSON_AddStringToObject(c, "sub", a->client_id);
    cJSON_AddStringToObject(c, "jti", jti);
    cJSON_AddNumberToObject(c, "nbf", (double)now);
    cJSON_AddNumberToObject(c, "iat", (double)now);
    cJSON_AddNumberToObject(c, "exp", (double)(now + 600));
    hs = cJSON_PrintUnformatted(h);
    cs = cJSON_PrintUnformatted(c);
    if (!hs || !cs) goto oom;
    h64 = b64url_str(hs);
    c64 = b64url_str(cs);
    if (!h64 || !c64) goto oom;
    size_t inlen = strlen(h64) + 1 + strlen(c64);
    input = malloc(inlen + 1);
    if (!input) goto oom;
    snprintf(input, inlen + 1, "%s.%s", h64, c64);

    md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t siglen = 0;
    if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, a->key) != 1) goto ossl;
    if (ps) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)
            goto ossl;
    } else if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
        goto ossl;
    }
    if (EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, inlen) != 1) goto ossl;
    sig = malloc(siglen);
    if (!sig) goto oom;
    if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, inlen) != 1) goto ossl;
    s64 = d365_base64url(sig, siglen);
    if (!s64) goto oom;
    size_t total = inlen + 1 + strlen(s64);
    *jwt = malloc(total + 1);
    if (!*jwt) goto oom;
    snprintf(*jwt, total + 1, "%s.%s", input, s64);
    rc = 0;
    goto out;
ossl:
    ossl_err(err, errlen, "signing the client assertion");
    goto out;
oom:
    util_seterr(err, errlen, "out of memory");
out:
    cJSON_Delete(h);
    cJSON_Delete(c);
    free(hs);
    free(cs);
    free(h64);
    free(c64);
    free(input);
    free(sig);
    free(s64);
    EVP_MD_CTX_free(md);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* create / destroy */

struct d365_auth *d365_auth_create(const struct d365_auth_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->token_url || !*cfg->token_url) {
        util_seterr(err, errlen, "dataverse.token_url: missing");
        return NULL;
    }
    if (!cfg->client_id || !*cfg->client_id) {
        util_seterr(err, errlen, "dataverse.client_id: missing");
        return NULL;
    }
    if (!cfg->scope || !*cfg->scope) {
        util_seterr(err, errlen, "dataverse.scope: missing");
        return NULL;
    }
    int has_secret = cfg->client_secret && *cfg->client_secret;
    int has_cert = cfg->cert_file && *cfg->cert_file;
    if (has_secret == has_cert) {
        util_seterr(err, errlen, "dataverse: exactly one of client_secret or client_certificate "
                            "(+ client_key) is needed");
        return NULL;
    }
    if (has_cert && (!cfg->key_file || !*cfg->key_file)) {
        util_seterr(err, errlen, "dataverse.client_key: missing (needed with client_certificate)");
        return NULL;
    }
    struct d365_auth *a = calloc(1, sizeof *a);
    if (!a) {
        util_seterr(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->cv, &ca);
    pthread_condattr_destroy(&ca);
    a->token_url = dupstr(cfg->token_url);
    a->client_id = dupstr(cfg->client_id);
    a->scope = dupstr(cfg->scope);
    a->secret = has_secret ? dupstr(cfg->client_secret) : NULL;
    a->aud = dupstr(cfg->assertion_aud && *cfg->assertion_aud ? cfg->assertion_aud : cfg->token_url);
    a->alg = cfg->alg;
    a->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
    a->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    if (!a->token_url || !a->client_id || !a->scope || !a->aud || (has_secret && !a->secret)) {
        util_seterr(err, errlen, "out of memory");
        d365_auth_destroy(a);
        return NULL;
    }
    if (has_cert && load_credentials(a, cfg->cert_file, cfg->key_file, err, errlen) != 0) {
        d365_auth_destroy(a);
        return NULL;
    }
    return a;
}

void d365_auth_destroy(struct d365_auth *a)
{
    if (!a) return;
    if (a->curl) curl_easy_cleanup(a->curl);
    wipe_free(a->token);
    wipe_free(a->secret);
    free(a->token_url);
    free(a->client_id);
    free(a->scope);
    free(a->aud);
    free(a->thumb);
    X509_free(a->cert);
    EVP_PKEY_free(a->key);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ------------------------------------------------------------------------ */
/* One token request (refresher only, no lock held). */

/* Append "&name=<escaped value>"; value may be secret (the escaped copy is wiped). */
static int form_add(CURL *h, char **form, size_t *len, const char *name, const char *value)
{
    char *esc = curl_easy_escape(h, value, 0);
    if (!esc) return -1;
    size_t add = strlen(name) + strlen(esc) + 2;
    char *p = realloc(*form, *len + add + 1);
    if (!p) {
        OPENSSL_cleanse(esc, strlen(esc));
        curl_free(esc);
        return -1;
    }
    *form = p;
    *len += (size_t)snprintf(p + *len, add + 1, "%s%s=%s", *len ? "&" : "", name, esc);
    OPENSSL_cleanse(esc, strlen(esc));
    curl_free(esc);
    return 0;
}

/* First sentence-ish of error_description: up to CR/LF or " Trace ID". */
static void describe_first(const char *d, char *out, size_t outlen)
{
    size_t n = 0;
    if (!d) d = "";
    const char *trace = strstr(d, " Trace ID");
    size_t lim = trace ? (size_t)(trace - d) : strlen(d);
    while (n < lim && d[n] != '\r' && d[n] != '\n' && n + 1 < outlen) n++;
    memcpy(out, d, n);
    out[n] = 0;
}

/* Parse Entra's error body into err (and log it). */
static void entra_error(long status, const char *body, char *err, size_t errlen)
{
    cJSON *j = body ? cJSON_Parse(body) : NULL;
    const char *error = NULL, *desc = NULL;
    long code = 0;
    if (j) {
        cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "error_description");
        cJSON *codes = cJSON_GetObjectItemCaseSensitive(j, "error_codes");
        if (cJSON_IsString(e)) error = e->valuestring;
        if (cJSON_IsString(d)) desc = d->valuestring;
        if (cJSON_IsArray(codes) && cJSON_IsNumber(cJSON_GetArrayItem(codes, 0)))
            code = (long)cJSON_GetArrayItem(codes, 0)->valuedouble;
    }
    if (!code && desc) {
        const char *p = strstr(desc, "AADSTS");
        if (p) code = strtol(p + 6, NULL, 10);
    }
    char first[200];
    describe_first(desc, first, sizeof first);
    const char *meaning = code ? d365_aadsts_meaning(code) : NULL;
    if (code)
        util_seterr(err, errlen, "token endpoint: HTTP %ld %s AADSTS%ld: %s%s%s%s", status,
               error ? error : "", code, meaning ? meaning : "(unknown code)",
               *first ? " [" : "", first, *first ? "]" : "");
    else if (error || *first)
        util_seterr(err, errlen, "token endpoint: HTTP %ld %s%s%s", status, error ? error : "",
               *first ? " " : "", first);
    else
        util_seterr(err, errlen, "token endpoint: HTTP %ld (no Entra error in the answer)", status);
    cJSON_Delete(j);
}

/* Returns 0 with *token (malloc'd) and *lifetime, or -1 with err. */
static int fetch_token(struct d365_auth *a, char **token, double *lifetime, char *err, size_t errlen)
{
    *token = NULL;
    if (!a->curl) {
        a->curl = curl_easy_init();
        if (!a->curl) {
            util_seterr(err, errlen, "token endpoint: curl_easy_init failed");
            return -1;
        }
    }
    CURL *h = a->curl;
    char *form = NULL, *assertion = NULL;
    size_t flen = 0;
    int rc = -1;
    struct d365_respbuf resp = {.max = RESPONSE_MAX};
    struct curl_slist *hdrs = NULL;
    a->transient = 0;

    if (form_add(h, &form, &flen, "client_id", a->client_id) ||
        form_add(h, &form, &flen, "scope", a->scope) ||
        form_add(h, &form, &flen, "grant_type", "client_credentials")) {
        util_seterr(err, errlen, "out of memory");
        goto out;
    }
    if (a->secret) {
        if (form_add(h, &form, &flen, "client_secret", a->secret)) {
            util_seterr(err, errlen, "out of memory");
            goto out;
        }
    } else {
        if (d365_auth_assertion(a, time(NULL), &assertion, err, errlen) != 0) goto out;
        if (form_add(h, &form, &flen, "client_assertion_type",
                     "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") ||
            form_add(h, &form, &flen, "client_assertion", assertion)) {
            util_seterr(err, errlen, "out of memory");
            goto out;
        }
    }

    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_setopt(h, CURLOPT_URL, a->token_url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, a->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)flen);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, d365_respbuf_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ml-connector");
    CURLcode cr = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (cr != CURLE_OK) {
        a->transient = 1;
        util_seterr(err, errlen, "token endpoint: %s", resp.overflow ? "response too large"
                                                   : *errbuf ? errbuf : curl_easy_strerror(cr));
        goto out;
    }
    if (status != 200) {
        a->transient = status >= 500 || status == 429 || status == 408;
        entra_error(status, resp.p, err, errlen);
        goto out;
    }
    cJSON *j = resp.p ? cJSON_Parse(resp.p) : NULL;
    cJSON *at = j ? cJSON_GetObjectItemCaseSensitive(j, "access_token") : NULL;
    cJSON *ei = j ? cJSON_GetObjectItemCaseSensitive(j, "expires_in") : NULL;
    cJSON *tt = j ? cJSON_GetObjectItemCaseSensitive(j, "token_type") : NULL;
    if (!cJSON_IsString(at) || !*at->valuestring) {
        util_seterr(err, errlen, "token endpoint: HTTP 200 without access_token");
        cJSON_Delete(j);
        goto out;
    }
    double life = 0;
    if (cJSON_IsNumber(ei)) life = ei->valuedouble;
    else if (cJSON_IsString(ei)) life = strtod(ei->valuestring, NULL); /* v1 endpoints send a string */
    if (!(life > 0)) {
        log_warn("d365 auth: token response without a usable expires_in; assuming 300 s");
        life = 300;
    }
    if (cJSON_IsString(tt) && strcasecmp(tt->valuestring, "Bearer") != 0)
        log_warn("d365 auth: unexpected token_type '%.20s'", tt->valuestring);
    *token = strdup(at->valuestring);
    OPENSSL_cleanse(at->valuestring, strlen(at->valuestring));
    cJSON_Delete(j);
    if (!*token) {
        util_seterr(err, errlen, "out of memory");
        goto out;
    }
    *lifetime = life;
    rc = 0;
out:
    curl_slist_free_all(hdrs);
    if (resp.p) OPENSSL_cleanse(resp.p, resp.len);
    d365_respbuf_free(&resp);
    wipe_free(form);
    wipe_free(assertion);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int copy_token(const struct d365_auth *a, char *buf, size_t bufsz, char *err, size_t errlen)
{
    size_t n = strlen(a->token);
    if (n + 1 > bufsz) {
        util_seterr(err, errlen, "access token longer than the caller's buffer (%zu bytes)", n);
        return -1;
    }
    memcpy(buf, a->token, n + 1);
    return 0;
}

/* d365_auth_token; with nowait, a caller that would have to wait for
 * somebody else's fetch returns -1 at once instead (d365_auth_prefetch). */
static int token_get(struct d365_auth *a, char *buf, size_t bufsz, char *err, size_t errlen, int nowait)
{
    int rc, waited = 0;
    double wait_deadline = util_mono_s() + (double)(a->connect_timeout_ms + a->timeout_ms) / 1000.0 + 5;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        double now = util_mono_s();
        int valid = a->token && now < a->usable_until;
        if (valid && (now < a->renew_at || a->fetching || now < a->next_attempt_at)) {
            /* Fresh, or due but somebody is renewing / renewal is backing off. */
            rc = copy_token(a, buf, bufsz, err, errlen);
            break;
        }
        if (!valid && a->fetching && nowait) {
            util_seterr(err, errlen, "the access token is being fetched");
            rc = -1;
            break;
        }
        if (!valid && a->fetching) {
            if (!waited++) a->st.waits++;
            if (now >= wait_deadline) {
                util_seterr(err, errlen, "timed out waiting for the access token");
                rc = -1;
                break;
            }
            double wake = now + 1.0 < wait_deadline ? now + 1.0 : wait_deadline;
            struct timespec ts = {(time_t)wake, (long)((wake - (double)(time_t)wake) * 1e9)};
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
            continue;
        }
        if (!valid && now < a->next_attempt_at) {
            util_seterr(err, errlen, "%s (next attempt in %.0f s)", a->last_err, a->next_attempt_at - now);
            rc = -1;
            break;
        }
        /* Become the refresher. */
        a->fetching = 1;
        a->st.fetches++;
        pthread_mutex_unlock(&a->mu);
        char ferr[512] = "";
        char *tok = NULL;
        double life = 0;
        int fr = fetch_token(a, &tok, &life, ferr, sizeof ferr);
        if (fr != 0 && a->transient) {
            /* a dropped connection or a 5xx/429 from Entra: once more at once */
            usleep(100000);
            fr = fetch_token(a, &tok, &life, ferr, sizeof ferr);
        }
        pthread_mutex_lock(&a->mu);
        a->fetching = 0;
        now = util_mono_s();
        if (fr == 0) {
            wipe_free(a->token);
            a->token = tok;
            a->lifetime = life;
            double renew = 0.8 * life;
            if (life - 300 < renew) renew = life - 300;
            if (renew < 0.75 * life) renew = 0.75 * life;
            double margin = 0.1 * life < 30 ? 0.1 * life : 30;
            a->renew_at = now + renew;
            a->usable_until = now + life - margin;
            a->failures_in_row = 0;
            a->next_attempt_at = 0;
            a->last_err[0] = 0;
            log_info("d365 auth: access token acquired (expires in %.0f s, renewal after %.1f s)",
                     life, renew);
        } else {
            a->st.fetch_failures++;
            double back = 1;
            for (unsigned i = 0; i < a->failures_in_row && back < BACKOFF_MAX_S; i++) back *= 2;
            if (back > BACKOFF_MAX_S) back = BACKOFF_MAX_S;
            a->failures_in_row++;
            a->next_attempt_at = now + back;
            snprintf(a->last_err, sizeof a->last_err, "%s", ferr);
            log_error("d365 auth: %s", ferr);
        }
        pthread_cond_broadcast(&a->cv);
        if (fr != 0 && !(a->token && now < a->usable_until)) {
            util_seterr(err, errlen, "%s", ferr);
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int d365_auth_token(struct d365_auth *a, char *buf, size_t bufsz, char *err, size_t errlen)
{
    return token_get(a, buf, bufsz, err, errlen, 0);
}

void d365_auth_prefetch(struct d365_auth *a)
{
    pthread_mutex_lock(&a->mu);
    double now = util_mono_s();
    int fresh = a->token && now < a->usable_until && now < a->renew_at;
    int idle = fresh || a->fetching || now < a->next_attempt_at;
    pthread_mutex_unlock(&a->mu);
    if (idle) return; /* the common case, without the scratch buffer */
    /* Whether to become the refresher is decided again under the lock
     * (token_get); a caller that lost the race returns at once (nowait).
     * The scratch copy is wiped like any copy of a token. */
    char *buf = malloc(D365_TOKEN_MAX), err[512];
    if (!buf) return;
    (void)token_get(a, buf, D365_TOKEN_MAX, err, sizeof err, 1);
    OPENSSL_cleanse(buf, D365_TOKEN_MAX);
    free(buf);
}

void d365_auth_invalidate(struct d365_auth *a, const char *token)
{
    if (!token) return;
    pthread_mutex_lock(&a->mu);
    if (a->token && strcmp(a->token, token) == 0 && a->usable_until > 0) {
        a->usable_until = 0;
        a->renew_at = 0;
        a->next_attempt_at = 0;   /* a 401 is news: fetch now, even after a failure */
        a->st.invalidations++;
        log_info("d365 auth: Dataverse rejected the access token (401); renewing");
    }
    pthread_mutex_unlock(&a->mu);
}

void d365_auth_stats(struct d365_auth *a, struct d365_auth_stats *out)
{
    pthread_mutex_lock(&a->mu);
    *out = a->st;
    out->lifetime = a->token ? a->lifetime : 0;
    pthread_mutex_unlock(&a->mu);
}
