/*
 * test_d365 — the Dataverse delivery module (d365/): auth, batch, governor,
 * outcome table, and the Web API client against a tiny in-process HTTP server.
 *
 * No private key is committed: the certificate tests generate an RSA key and
 * a self-signed certificate with OpenSSL's API into a temp folder that is
 * removed afterwards.
 *
 * Threads other than cmocka's never call cmocka asserts: they record results
 * in atomics/arrays the test thread checks after joining them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/metrics.h"
#include "d365/auth.h"
#include "d365/batch.h"
#include "d365/d365.h"
#include "d365/governor.h"
#include "d365/respbuf.h"
#include "d365/webapi.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ======================================================================== */
/* Certificates (generated per test run)                                     */

struct certdir {
    char dir[256], cert[300], key[300], cert2[300], key2[300];
    EVP_PKEY *pkey;
    X509 *x509;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static X509 *self_signed(EVP_PKEY *k, const char *cn)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509_sign(x, k, EVP_sha256());
    return x;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (x) PEM_write_X509(f, x);
    if (k) PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static int cert_setup(void **state)
{
    struct certdir *c = calloc(1, sizeof *c);
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/mlc-d365-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(c->dir)) return -1;
    snprintf(c->cert, sizeof c->cert, "%s/cert.pem", c->dir);
    snprintf(c->key, sizeof c->key, "%s/key.pem", c->dir);
    snprintf(c->cert2, sizeof c->cert2, "%s/other-cert.pem", c->dir);
    snprintf(c->key2, sizeof c->key2, "%s/other-key.pem", c->dir);
    c->pkey = EVP_RSA_gen(2048);
    if (!c->pkey) return -1;
    c->x509 = self_signed(c->pkey, "ml-connector test");
    write_pem(c->cert, c->x509, NULL);
    write_pem(c->key, NULL, c->pkey);
    EVP_PKEY *k2 = EVP_RSA_gen(2048);
    X509 *x2 = self_signed(k2, "other");
    write_pem(c->cert2, x2, NULL);
    write_pem(c->key2, NULL, k2);
    X509_free(x2);
    EVP_PKEY_free(k2);
    *state = c;
    return 0;
}

static int cert_teardown(void **state)
{
    struct certdir *c = *state;
    nftw(c->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    EVP_PKEY_free(c->pkey);
    X509_free(c->x509);
    free(c);
    return 0;
}

/* base64url decode (no padding); returns malloc'd buffer. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *outlen)
{
    unsigned char *out = malloc(n * 3 / 4 + 3);
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int d = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
              : ch >= '0' && ch <= '9' ? ch - '0' + 52 : ch == '-' ? 62 : ch == '_' ? 63 : -1;
        if (d < 0) {
            free(out);
            return NULL;
        }
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    *outlen = o;
    return out;
}

static cJSON *decode_json_segment(const char *s, size_t n)
{
    size_t len;
    unsigned char *raw = b64url_decode(s, n, &len);
    assert_non_null(raw);
    cJSON *j = cJSON_ParseWithLength((const char *)raw, len);
    free(raw);
    assert_non_null(j);
    return j;
}

static int verify_sig(EVP_PKEY *pub, int pss, const char *input, size_t inlen, const unsigned char *sig,
                      size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, pub) == 1;
    if (ok && pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    if (ok) ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)input, inlen) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static void check_assertion(struct certdir *c, enum d365_assertion_alg alg)
{
    const char *url = "https://login.microsoftonline.com/tenant-guid/oauth2/v2.0/token";
    struct d365_auth_config cfg = {
        .token_url = url, .client_id = "11111111-2222-3333-4444-555555555555",
        .scope = "https://org.crm.dynamics.com/.default", .cert_file = c->cert,
        .key_file = c->key, .alg = alg};
    char err[256] = "";
    struct d365_auth *a = d365_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    char *jwt = NULL, *jwt2 = NULL;
    time_t now = 1700000000;
    assert_int_equal(d365_auth_assertion(a, now, &jwt, err, sizeof err), 0);
    assert_int_equal(d365_auth_assertion(a, now, &jwt2, err, sizeof err), 0);

    const char *d1 = strchr(jwt, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    assert_null(strchr(jwt, '='));   /* no padding */

    cJSON *h = decode_json_segment(jwt, (size_t)(d1 - jwt));
    cJSON *cl = decode_json_segment(d1 + 1, (size_t)(d2 - d1 - 1));
    int ps = alg == D365_ALG_PS256;
    assert_string_equal(cJSON_GetObjectItem(h, "alg")->valuestring, ps ? "PS256" : "RS256");
    assert_string_equal(cJSON_GetObjectItem(h, "typ")->valuestring, "JWT");
    /* thumbprint = base64url(SHA-256 or SHA-1 of DER cert) */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    X509_digest(c->x509, ps ? EVP_sha256() : EVP_sha1(), md, &mdlen);
    char *thumb = d365_base64url(md, mdlen);
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, ps ? "x5t#S256" : "x5t");
    assert_non_null(t);
    assert_string_equal(t->valuestring, thumb);
    assert_null(cJSON_GetObjectItemCaseSensitive(h, ps ? "x5t" : "x5t#S256"));
    free(thumb);

    assert_string_equal(cJSON_GetObjectItem(cl, "aud")->valuestring, url);
    assert_string_equal(cJSON_GetObjectItem(cl, "iss")->valuestring, cfg.client_id);
    assert_string_equal(cJSON_GetObjectItem(cl, "sub")->valuestring, cfg.client_id);
    const char *jti = cJSON_GetObjectItem(cl, "jti")->valuestring;
    assert_int_equal(strlen(jti), 36);
    assert_int_equal(jti[14], '4');      /* UUID v4 */
    assert_int_equal((long)cJSON_GetObjectItem(cl, "nbf")->valuedouble, (long)now);
    assert_int_equal((long)cJSON_GetObjectItem(cl, "iat")->valuedouble, (long)now);
    assert_int_equal((long)cJSON_GetObjectItem(cl, "exp")->valuedouble, (long)now + 600);
    /* a fresh jti per assertion */
    const char *e1 = strchr(jwt2, '.');
    const char *e2 = strchr(e1 + 1, '.');
    cJSON *cl2 = decode_json_segment(e1 + 1, (size_t)(e2 - e1 - 1));
    assert_string_not_equal(cJSON_GetObjectItem(cl2, "jti")->valuestring, jti);
    cJSON_Delete(cl2);

    /* signature: verifies with the certificate's public key, only with the
     * right padding */
    size_t siglen;
    unsigned char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &siglen);
    assert_non_null(sig);
    assert_int_equal(siglen, 256);
    EVP_PKEY *pub = X509_get_pubkey(c->x509);
    size_t inlen = (size_t)(d2 - jwt);
    assert_true(verify_sig(pub, ps, jwt, inlen, sig, siglen));
    assert_false(verify_sig(pub, !ps, jwt, inlen, sig, siglen));
    /* tampered claims do not verify */
    char *bad = strdup(jwt);
    bad[(d1 - jwt) + 3] ^= 1;
    assert_false(verify_sig(pub, ps, bad, inlen, sig, siglen));
    free(bad);
    EVP_PKEY_free(pub);
    free(sig);
    cJSON_Delete(h);
    cJSON_Delete(cl);
    free(jwt);
    free(jwt2);
    d365_auth_destroy(a);
}

static void test_jwt_ps256(void **state) { check_assertion(*state, D365_ALG_PS256); }
static void test_jwt_rs256(void **state) { check_assertion(*state, D365_ALG_RS256); }

static void test_auth_config_errors(void **state)
{
    struct certdir *c = *state;
    char err[256];
    struct d365_auth_config cfg = {.token_url = "http://127.0.0.1:1/t/oauth2/v2.0/token",
                                   .client_id = "id", .scope = "s/.default"};
    /* neither secret nor certificate */
    assert_null(d365_auth_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "client_secret"));
    /* key of another certificate */
    cfg.cert_file = c->cert;
    cfg.key_file = c->key2;
    assert_null(d365_auth_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "does not belong"));
    /* missing file */
    cfg.key_file = "/nonexistent/key.pem";
    assert_null(d365_auth_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "client_key"));
    /* both */
    cfg.key_file = c->key;
    cfg.client_secret = "x";
    assert_null(d365_auth_create(&cfg, err, sizeof err));
    /* a secret credential makes no assertion */
    cfg.cert_file = cfg.key_file = NULL;
    struct d365_auth *a = d365_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    char *jwt = (char *)"x";
    assert_int_equal(d365_auth_assertion(a, 0, &jwt, err, sizeof err), -1);
    assert_null(jwt);
    d365_auth_destroy(a);
}

static void test_aadsts_table(void **state)
{
    (void)state;
    assert_non_null(strstr(d365_aadsts_meaning(7000215), "secret"));
    assert_non_null(strstr(d365_aadsts_meaning(7000222), "expired"));
    assert_non_null(strstr(d365_aadsts_meaning(700016), "not found"));
    assert_non_null(strstr(d365_aadsts_meaning(90002), "tenant"));
    assert_non_null(strstr(d365_aadsts_meaning(70011), "scope"));
    assert_non_null(strstr(d365_aadsts_meaning(700027), "signature"));
    assert_non_null(strstr(d365_aadsts_meaning(500011), "resource"));
    assert_null(d365_aadsts_meaning(12345));
}

static void test_base64url(void **state)
{
    (void)state;
    const struct { const char *in, *out; } v[] = {
        {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"},
        {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char *s = d365_base64url((const unsigned char *)v[i].in, strlen(v[i].in));
        assert_string_equal(s, v[i].out);
        free(s);
    }
}

/* ======================================================================== */
/* $batch wire format                                                        */

static void test_batch_build_exact(void **state)
{
    (void)state;
    struct d365_op ops[4] = {
        {.method = "PATCH", .path = "accounts(mlc_sapvendorid='0000100042')",
         .body = "{\"name\":\"Muster GmbH\"}"},
        {.method = "DELETE", .path = "contacts(mlc_sapcontactid='0000000007')"},
        {.method = "PATCH", .path = "salesorders(mlc_sappo='4500000001')", .changeset = 1,
         .content_id = "1", .body = "{\"name\":\"PO 4500000001\"}"},
        {.method = "PATCH", .path = "salesorderdetails(mlc_sappoline='4500000001 10')", .changeset = 1,
         .content_id = "2", .if_match = "*", .body = "{\"salesorderid@odata.bind\":\"$1\",\"quantity\":2}"},
    };
    const char *want =
        "--batch_T1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "PATCH /api/data/v9.2/accounts(mlc_sapvendorid='0000100042') HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n"
        "\r\n"
        "{\"name\":\"Muster GmbH\"}\r\n"
        "--batch_T1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "DELETE /api/data/v9.2/contacts(mlc_sapcontactid='0000000007') HTTP/1.1\r\n"
        "\r\n"
        "\r\n"
        "--batch_T1\r\n"
        "Content-Type: multipart/mixed; boundary=\"changeset_T1_1\"\r\n"
        "\r\n"
        "--changeset_T1_1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 1\r\n"
        "\r\n"
        "PATCH /api/data/v9.2/salesorders(mlc_sappo='4500000001') HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n"
        "\r\n"
        "{\"name\":\"PO 4500000001\"}\r\n"
        "--changeset_T1_1\r\n"
        "Content-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: 2\r\n"
        "\r\n"
        "PATCH /api/data/v9.2/salesorderdetails(mlc_sappoline='4500000001%2010') HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n"
        "If-Match: *\r\n"
        "\r\n"
        "{\"salesorderid@odata.bind\":\"$1\",\"quantity\":2}\r\n"
        "--changeset_T1_1--\r\n"
        "--batch_T1--\r\n";
    char *out = NULL, err[128];
    size_t len = 0;
    assert_int_equal(d365_batch_build("/api/data/v9.2/", "T1", ops, 4, &out, &len, err, sizeof err), 0);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_batch_validate(void **state)
{
    (void)state;
    char err[128];
    struct d365_op ops[3] = {
        {.method = "PATCH", .path = "a(k='1')", .changeset = 1},
        {.method = "PATCH", .path = "b(k='1')"},
        {.method = "PATCH", .path = "c(k='1')", .changeset = 1},
    };
    assert_int_equal(d365_batch_validate(ops, 3, err, sizeof err), -1);
    assert_non_null(strstr(err, "contiguous"));
    ops[2].changeset = 2;
    assert_int_equal(d365_batch_validate(ops, 3, err, sizeof err), 0);
    ops[2].method = "GET";
    assert_int_equal(d365_batch_validate(ops, 3, err, sizeof err), -1);
    ops[2].method = "PATCH";
    ops[0].content_id = ops[2].content_id = "1";
    assert_int_equal(d365_batch_validate(ops, 3, err, sizeof err), -1);
    ops[2].content_id = "2";
    assert_int_equal(d365_batch_validate(ops, 3, err, sizeof err), 0);
    assert_int_equal(d365_batch_validate(ops, 0, err, sizeof err), -1);
    struct d365_op *many = calloc(D365_BATCH_MAX + 1, sizeof *many);
    for (int i = 0; i <= D365_BATCH_MAX; i++) many[i] = (struct d365_op){.method = "DELETE", .path = "x(1)"};
    assert_int_equal(d365_batch_validate(many, D365_BATCH_MAX, err, sizeof err), 0);
    assert_int_equal(d365_batch_validate(many, D365_BATCH_MAX + 1, err, sizeof err), -1);
    free(many);
}

/* The response Dataverse documents for continue-on-error, extended by a
 * change set, a throttled part and a failed change set. */
static const char batch_response[] =
    "--batchresponse_5a1c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "OData-EntityId: https://org.api.crm.dynamics.com/api/data/v9.2/accounts(accountnumber='0000100042')\r\n"
    "\r\n"
    "\r\n"
    "--batchresponse_5a1c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "REQ_ID: de4c5227\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the "
    "'firstname' attribute of the 'contact' entity exceeded the maximum allowed length of '50'.\"}}\r\n"
    "--batchresponse_5a1c\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_77\r\n"
    "\r\n"
    "--changesetresponse_77\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 2\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_77\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 201 Created\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_77--\r\n"
    "--batchresponse_5a1c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Retry-After: 7\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80072322\",\"message\":\"Number of requests exceeded the limit of 6000 over time window of 300 seconds.\"}}\r\n"
    "--batchresponse_5a1c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 404 Not Found\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80060891\",\"message\":\"A record with the specified key values does not exist in account entity\"}}\r\n"
    "--batchresponse_5a1c\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json\r\n"
    "\r\n"
    "{\"error\":{\"code\":\"0x80040203\",\"message\":\"Invalid property 'bogus'\"}}\r\n"
    "--batchresponse_5a1c--\r\n";

static void test_batch_parse(void **state)
{
    (void)state;
    struct d365_op ops[9] = {
        {.method = "PATCH", .path = "accounts(accountnumber='0000100042')"},   /* 204 */
        {.method = "POST", .path = "contacts"},                                /* 400 length */
        {.method = "PATCH", .path = "salesorders(k='1')", .changeset = 1, .content_id = "1"},
        {.method = "PATCH", .path = "salesorderdetails(k='1')", .changeset = 1, .content_id = "2"},
        {.method = "PATCH", .path = "accounts(k='2')"},                        /* 429 part */
        {.method = "PATCH", .path = "contacts(k='3')"},                        /* bind missing */
        {.method = "PATCH", .path = "salesorders(k='2')", .changeset = 2},     /* failed change set */
        {.method = "PATCH", .path = "salesorderdetails(k='2')", .changeset = 2},
        {.method = "PATCH", .path = "accounts(k='9')"},                        /* never answered */
    };
    d365_op_reset(ops, 9);
    char err[128];
    int n = d365_batch_parse("multipart/mixed; boundary=batchresponse_5a1c", batch_response,
                             strlen(batch_response), ops, 9, err, sizeof err);
    assert_int_equal(n, 8);
    assert_int_equal(ops[0].status, 204);
    assert_int_equal(ops[0].outcome, D365_DONE);
    assert_int_equal(ops[1].status, 400);
    assert_int_equal(ops[1].outcome, D365_FAILED);
    assert_string_equal(ops[1].code, "0x80044331");
    assert_non_null(strstr(ops[1].message, "exceeded the maximum allowed length of '50'"));
    /* change set answered in another order: matched by Content-ID */
    assert_int_equal(ops[2].status, 201);
    assert_int_equal(ops[3].status, 204);
    assert_int_equal(ops[2].outcome, D365_DONE);
    assert_int_equal(ops[3].outcome, D365_DONE);
    assert_int_equal(ops[4].status, 429);
    assert_int_equal(ops[4].outcome, D365_RETRY);
    assert_true(ops[4].retry_after == 7.0);
    assert_string_equal(ops[4].code, "0x80072322");
    assert_int_equal(ops[5].outcome, D365_RETRY);
    assert_string_equal(ops[5].code, D365_CODE_KEY_NOT_FOUND);
    /* failed change set: one response for both ops */
    for (int i = 6; i <= 7; i++) {
        assert_int_equal(ops[i].status, 400);
        assert_int_equal(ops[i].outcome, D365_FAILED);
        assert_string_equal(ops[i].code, "0x80040203");
        assert_int_equal(ops[i].batch_level, 0);
    }
    assert_int_equal(ops[8].outcome, D365_RETRY);
    assert_int_equal(ops[8].batch_level, 1);
    assert_string_equal(ops[8].code, "not_processed");
}

static void test_batch_parse_lf_and_quoted(void **state)
{
    (void)state;
    /* bare LF, quoted boundary, transport padding, no close delimiter */
    const char *body =
        "preamble\n"
        "--b-1  \n"
        "content-type: application/http\n"
        "\n"
        "HTTP/1.1 204 No Content\n"
        "\n"
        "--b-1\n"
        "Content-Type: application/http\n"
        "\n"
        "HTTP/1.1 412 Precondition Failed\n"
        "content-type: application/json\n"
        "\n"
        "{\"error\":{\"code\":\"0x80060892\",\"message\":\"A record with matching key values already exists.\"}}\n";
    struct d365_op ops[3] = {{.method = "DELETE", .path = "x(1)"}, {.method = "PATCH", .path = "x(2)"},
                             {.method = "DELETE", .path = "x(3)"}};
    d365_op_reset(ops, 3);
    int n = d365_batch_parse("multipart/mixed;charset=utf-8; boundary=\"b-1\"", body, strlen(body), ops,
                             3, NULL, 0);
    assert_int_equal(n, 2);
    assert_int_equal(ops[0].outcome, D365_DONE);
    assert_int_equal(ops[1].status, 412);
    assert_int_equal(ops[1].outcome, D365_FAILED);
    assert_string_equal(ops[1].code, "0x80060892");
    assert_int_equal(ops[2].outcome, D365_RETRY);
    /* not multipart at all */
    assert_int_equal(d365_batch_parse("application/json", "{}", 2, ops, 3, NULL, 0), -1);
    assert_int_equal(d365_batch_parse("multipart/mixed; boundary=zz", "{}", 2, ops, 3, NULL, 0), -1);
}

/* A failed change set answered with a nested multipart holding only the
 * failing op: the other ops of the set share its failure. */
static void test_batch_parse_changeset_partial(void **state)
{
    (void)state;
    const char *body =
        "--br\r\n"
        "Content-Type: multipart/mixed; boundary=csr\r\n"
        "\r\n"
        "--csr\r\n"
        "Content-Type: application/http\r\n"
        "Content-ID: 2\r\n"
        "\r\n"
        "HTTP/1.1 400 Bad Request\r\n"
        "Content-Type: application/json\r\n"
        "\r\n"
        "{\"error\":{\"code\":\"0x80044331\",\"message\":\"too long\"}}\r\n"
        "--csr--\r\n"
        "--br\r\n"
        "Content-Type: application/http\r\n"
        "\r\n"
        "HTTP/1.1 204 No Content\r\n"
        "\r\n"
        "\r\n"
        "--br--\r\n";
    struct d365_op ops[4] = {
        {.method = "PATCH", .path = "salesorders(k='1')", .changeset = 1, .content_id = "1"},
        {.method = "PATCH", .path = "salesorderdetails(k='1')", .changeset = 1, .content_id = "2"},
        {.method = "PATCH", .path = "salesorderdetails(k='2')", .changeset = 1, .content_id = "3"},
        {.method = "PATCH", .path = "accounts(k='1')"},
    };
    d365_op_reset(ops, 4);
    assert_int_equal(d365_batch_parse("multipart/mixed; boundary=br", body, strlen(body), ops, 4, NULL, 0), 4);
    assert_int_equal(ops[1].outcome, D365_FAILED);
    assert_string_equal(ops[1].message, "too long");
    for (int i = 0; i <= 2; i += 2) {
        assert_int_equal(ops[i].outcome, D365_FAILED);
        assert_int_equal(ops[i].status, 400);
        assert_string_equal(ops[i].code, "0x80044331");
        assert_string_equal(ops[i].message, "rolled back with its change set: too long");
    }
    assert_int_equal(ops[3].outcome, D365_DONE);
}

static void test_error_json_truncation(void **state)
{
    (void)state;
    /* a message longer than the buffer is cut on a UTF-8 boundary */
    size_t n = D365_MESSAGE_MAX + 100;
    char *msg = malloc(n * 2 + 64);
    strcpy(msg, "{\"error\":{\"code\":\"0x1\",\"message\":\"");
    size_t p = strlen(msg);
    for (size_t i = 0; i < n / 2; i++) {
        msg[p++] = '\xc3';
        msg[p++] = '\xa4'; /* ä */
    }
    msg[p++] = 'x';
    strcpy(msg + p, "\"}}");
    struct d365_op op = {0};
    d365_error_from_json(&op, msg, strlen(msg));
    size_t l = strlen(op.message);
    assert_true(l > 0 && l < D365_MESSAGE_MAX);
    assert_int_equal(l % 2, 0);
    assert_int_equal((unsigned char)op.message[l - 1], 0xa4);
    free(msg);
}

static void test_path_escape(void **state)
{
    (void)state;
    char *s = d365_path_escape("accounts(name='A B#%\xc3\xa4')?$select=accountid&x=1");
    assert_string_equal(s, "accounts(name='A%20B%23%25%C3%A4')?$select=accountid&x=1");
    free(s);
}

/* ======================================================================== */
/* Outcome table                                                             */

static void test_classify(void **state)
{
    (void)state;
    const struct { const char *m; int st; const char *code; enum d365_outcome want; } t[] = {
        {"PATCH", 200, NULL, D365_DONE},          {"PATCH", 204, NULL, D365_DONE},
        {"POST", 201, NULL, D365_DONE},           {"DELETE", 204, NULL, D365_DONE},
        {"DELETE", 404, "", D365_DONE},           {"DELETE", 404, "0x80060891", D365_DONE},
        {"PATCH", 404, "0x80040217", D365_FAILED},{"PATCH", 404, "0x80060891", D365_RETRY},
        {"PATCH", 400, "0x80060891", D365_RETRY}, {"GET", 404, "0x80060891", D365_FAILED},
        {"PATCH", 429, "0x80072322", D365_RETRY}, {"PATCH", 429, NULL, D365_RETRY},
        {"PATCH", 400, "0x80072326", D365_RETRY}, {"PATCH", 408, NULL, D365_RETRY},
        {"PATCH", 502, NULL, D365_RETRY},         {"PATCH", 503, NULL, D365_RETRY},
        {"PATCH", 504, NULL, D365_RETRY},         {"PATCH", 0, "transport", D365_RETRY},
        {"PATCH", 401, NULL, D365_RETRY},         {"PATCH", 500, "", D365_RETRY},
        {"PATCH", 500, "0x80044150", D365_RETRY}, {"PATCH", 500, "0x80040216", D365_FAILED},
        {"PATCH", 501, NULL, D365_FAILED},        {"PATCH", 400, "0x80044331", D365_FAILED},
        {"PATCH", 403, "0x80040220", D365_FAILED},{"PATCH", 412, "0x80060892", D365_FAILED},
        {"PATCH", 413, NULL, D365_FAILED},        {"PATCH", 405, NULL, D365_FAILED},
        {"PATCH", 304, NULL, D365_FAILED},        {NULL, 204, NULL, D365_DONE},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        enum d365_outcome got = d365_classify(t[i].m, t[i].st, t[i].code);
        if (got != t[i].want)
            fail_msg("%s %d %s: got %s want %s", t[i].m ? t[i].m : "-", t[i].st,
                     t[i].code ? t[i].code : "-", d365_outcome_name(got), d365_outcome_name(t[i].want));
    }
}

/* ======================================================================== */
/* Governor                                                                  */

struct gov_arg {
    struct d365_governor *g;
    double t_ok;       /* when acquire returned */
    int rc;
};

static void *acquirer(void *p)
{
    struct gov_arg *a = p;
    a->rc = d365_governor_acquire(a->g, -1);
    a->t_ok = now_s();
    if (a->rc == 0) d365_governor_release(a->g, 204, 0);
    return NULL;
}

static void test_governor_window_blocks_all(void **state)
{
    (void)state;
    struct d365_governor_config cfg = {.max_concurrency = 8};
    struct d365_governor *g = d365_governor_create(&cfg);
    /* one request is throttled with Retry-After 1 s */
    assert_int_equal(d365_governor_acquire(g, -1), 0);
    d365_governor_release(g, 429, 1.0);
    double t0 = now_s();
    struct gov_arg args[6];
    pthread_t th[6];
    for (int i = 0; i < 6; i++) {
        args[i] = (struct gov_arg){.g = g};
        pthread_create(&th[i], NULL, acquirer, &args[i]);
    }
    /* a timed acquire inside the window times out */
    assert_int_equal(d365_governor_acquire(g, 100), 1);
    for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(args[i].rc, 0);
        assert_true(args[i].t_ok - t0 >= 0.95);
        assert_true(args[i].t_ok - t0 < 3.0);
    }
    struct d365_governor_stats st;
    d365_governor_stats(g, &st);
    assert_int_equal(st.throttled, 1);
    assert_true(st.window_waits >= 6);
    assert_int_equal(st.in_flight, 0);
    assert_true(st.window_remaining == 0);
    d365_governor_destroy(g);
}

static void test_governor_aimd(void **state)
{
    (void)state;
    struct d365_governor_config cfg = {.max_concurrency = 8, .grow_after = 5,
                                       .retry_after_cap = 0.2};
    struct d365_governor *g = d365_governor_create(&cfg);
    struct d365_governor_stats st;
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 8);
    /* four requests in flight, all answered 429: one burst → one halving */
    for (int i = 0; i < 4; i++) assert_int_equal(d365_governor_acquire(g, 0), 0);
    for (int i = 0; i < 4; i++) d365_governor_release(g, 429, 30 /* clamped to 0.2 */);
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 4);
    assert_int_equal(st.decreases, 1);
    assert_int_equal(st.throttled, 4);
    assert_true(st.window_remaining > 0 && st.window_remaining <= 0.2);
    /* after the window, concurrency is capped at 4 */
    for (int i = 0; i < 4; i++) assert_int_equal(d365_governor_acquire(g, 1000), 0);
    assert_int_equal(d365_governor_acquire(g, 50), 1);
    for (int i = 0; i < 4; i++) d365_governor_release(g, 204, 0);
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 4);
    assert_int_equal(d365_governor_acquire(g, 0), 0);
    d365_governor_release(g, 204, 0);
    /* 5 successes → +1 */
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 5);
    /* transient errors neither grow nor shrink */
    for (int i = 0; i < 20; i++) {
        assert_int_equal(d365_governor_acquire(g, 0), 0);
        d365_governor_release(g, i % 2 ? 503 : 0, 0);
    }
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 5);
    /* growth stops at the cap */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(d365_governor_acquire(g, 0), 0);
        d365_governor_release(g, 200, 0);
    }
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 8);
    assert_true(st.max_in_flight <= 8);
    /* a second burst later halves again; never below 1 */
    for (int k = 0; k < 6; k++) {
        while (d365_governor_acquire(g, 2000) != 0) {}
        d365_governor_release(g, 429, 0.01);
        usleep(20000);
    }
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 1);
    d365_governor_destroy(g);
}

static void test_governor_clamp_and_cap(void **state)
{
    (void)state;
    struct d365_governor_config cfg = {.max_concurrency = 500, .default_retry_after = 0.3};
    struct d365_governor *g = d365_governor_create(&cfg);
    struct d365_governor_stats st;
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, D365_CONCURRENCY_MAX);
    /* negative Retry-After (a past HTTP-date on curl 7.88) → the default */
    assert_int_equal(d365_governor_acquire(g, 0), 0);
    d365_governor_release(g, 429, -12345);
    d365_governor_stats(g, &st);
    assert_true(st.window_remaining > 0.2 && st.window_remaining <= 0.3);
    d365_governor_destroy(g);
    /* default cap is 8; the cap bounds concurrency under contention */
    g = d365_governor_create(NULL);
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, D365_CONCURRENCY_DEFAULT);
    /* 503 with Retry-After opens a window without halving */
    assert_int_equal(d365_governor_acquire(g, 0), 0);
    d365_governor_release(g, 503, 0.2);
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 8);
    assert_true(st.window_remaining > 0);
    assert_int_equal(d365_governor_acquire(g, 20), 1);
    /* a slot given back unsent (-1) changes nothing */
    d365_governor_destroy(g);
    g = d365_governor_create(&(struct d365_governor_config){.max_concurrency = 4, .grow_after = 1});
    assert_int_equal(d365_governor_acquire(g, 0), 0);
    d365_governor_release(g, -1, 0);
    d365_governor_stats(g, &st);
    assert_int_equal(st.limit, 4);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.increases + st.decreases, 0);
    /* pause() opens a window too; shutdown wakes and refuses */
    d365_governor_pause(g, 5);
    d365_governor_shutdown(g);
    assert_int_equal(d365_governor_acquire(g, -1), -1);
    d365_governor_destroy(g);
}

#define HAMMER_N 300

struct hammer_arg {
    struct d365_governor *g;
    atomic_int *in_flight, *max_seen;
    int id;
    double acq_start[HAMMER_N], acq_done[HAMMER_N];   /* acquire called / returned */
    double thr_start[HAMMER_N], thr_done[HAMMER_N];   /* 429 release called / returned */
    int nthr;
};

static void *hammer(void *p)
{
    struct hammer_arg *a = p;
    for (int i = 0; i < HAMMER_N; i++) {
        a->acq_start[i] = now_s();
        if (d365_governor_acquire(a->g, -1) != 0) break;
        a->acq_done[i] = now_s();
        int f = atomic_fetch_add(a->in_flight, 1) + 1;
        int m = atomic_load(a->max_seen);
        while (f > m && !atomic_compare_exchange_weak(a->max_seen, &m, f)) {}
        usleep(200);
        atomic_fetch_sub(a->in_flight, 1);
        int throttle = (i % 97) == (a->id * 13) % 97;
        if (throttle) a->thr_start[a->nthr] = now_s();
        d365_governor_release(a->g, throttle ? 429 : 204, throttle ? 0.05 : 0);
        if (throttle) a->thr_done[a->nthr++] = now_s();
    }
    return NULL;
}

static void test_governor_threads(void **state)
{
    (void)state;
    struct d365_governor_config cfg = {.max_concurrency = 4, .grow_after = 3};
    struct d365_governor *g = d365_governor_create(&cfg);
    atomic_int in_flight = 0, max_seen = 0;
    enum { NT = 12 };
    pthread_t th[NT];
    struct hammer_arg *args = calloc(NT, sizeof *args);
    for (int i = 0; i < NT; i++) {
        args[i].g = g;
        args[i].in_flight = &in_flight;
        args[i].max_seen = &max_seen;
        args[i].id = i;
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    /* No acquire that began after a 429 was reported may return before that
     * 429's window (0.05 s from the report) ended. */
    int violations = 0, throttles = 0;
    for (int t = 0; t < NT; t++)
        for (int k = 0; k < args[t].nthr; k++) {
            throttles++;
            double opened = args[t].thr_done[k], ends = args[t].thr_start[k] + 0.05;
            for (int u = 0; u < NT; u++)
                for (int i = 0; i < HAMMER_N; i++)
                    if (args[u].acq_start[i] > opened && args[u].acq_done[i] < ends - 1e-4) violations++;
        }
    struct d365_governor_stats st;
    d365_governor_stats(g, &st);
    assert_true(throttles > 10);
    assert_int_equal(violations, 0);
    assert_true(atomic_load(&max_seen) <= 4);
    assert_true(st.max_in_flight <= 4);
    assert_int_equal((int)st.throttled, throttles);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.acquired, NT * HAMMER_N);
    free(args);
    d365_governor_destroy(g);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    for (unsigned attempt = 1; attempt <= 12; attempt++) {
        double ceiling = 0.5;
        for (unsigned i = 1; i < attempt; i++) ceiling *= 2;
        if (ceiling > 30) ceiling = 30;
        double sum = 0, mn = 1e9, mx = 0;
        for (int k = 0; k < 2000; k++) {
            double d = d365_backoff_delay(attempt, 0.5, 30, 0);
            assert_true(d >= 0 && d <= ceiling);
            sum += d;
            if (d < mn) mn = d;
            if (d > mx) mx = d;
        }
        double mean = sum / 2000;
        /* full jitter: uniform over [0, ceiling] */
        assert_true(mean > ceiling * 0.4 && mean < ceiling * 0.6);
        assert_true(mn < ceiling * 0.05);
        assert_true(mx > ceiling * 0.95);
    }
    /* Retry-After is the floor, even above the cap */
    for (int k = 0; k < 1000; k++) {
        double d = d365_backoff_delay(3, 1, 4, 2.5);
        assert_true(d >= 2.5 && d <= 4);
        assert_true(d365_backoff_delay(1, 1, 4, 37) == 37);
    }
    /* huge attempt numbers do not overflow */
    double d = d365_backoff_delay(100000, 1, 60, 0);
    assert_true(d >= 0 && d <= 60);
}

/* ======================================================================== */
/* A tiny HTTP server for auth and Web API client tests                      */

struct hreq {
    char method[16], target[1024];
    char headers[8192];
    char *body;
    size_t body_len;
};

struct hresp {
    int status;
    char headers[512];        /* extra header lines, each ending in \r\n */
    char *body;               /* malloc'd or NULL */
    int close;                /* drop the connection without answering */
};

typedef void (*handler_fn)(void *ud, const struct hreq *rq, struct hresp *rs);

#define MAX_CONN 32

struct mini {
    int lfd, port;
    handler_fn fn;
    void *ud;
    pthread_t acceptor;
    pthread_mutex_t mu;
    int conns[MAX_CONN];
    pthread_t threads[MAX_CONN];
    int nconn;
    atomic_int requests;
    atomic_int stop;
};

struct conn_arg {
    struct mini *m;
    int fd;
};

static int read_request(int fd, char *buf, size_t cap, size_t *have, struct hreq *rq)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            size_t cl = 0;
            memset(rq, 0, sizeof *rq);
            sscanf(buf, "%15s %1023s", rq->method, rq->target);
            size_t cp = hl < sizeof rq->headers - 1 ? hl : sizeof rq->headers - 1;
            memcpy(rq->headers, buf, cp);
            for (char *p = rq->headers; (p = strcasestr(p, "\ncontent-length:")); p++) cl = strtoul(p + 16, NULL, 10);
            while (*have < hl + cl) {
                if (*have == cap) return -1;
                ssize_t r = recv(fd, buf + *have, cap - *have, 0);
                if (r <= 0) return -1;
                *have += (size_t)r;
            }
            rq->body = malloc(cl + 1);
            memcpy(rq->body, buf + hl, cl);
            rq->body[cl] = 0;
            rq->body_len = cl;
            memmove(buf, buf + hl + cl, *have - hl - cl);
            *have -= hl + cl;
            return 0;
        }
        if (*have == cap) return -1;
        ssize_t r = recv(fd, buf + *have, cap - *have, 0);
        if (r <= 0) return -1;
        *have += (size_t)r;
    }
}

static void *conn_main(void *p)
{
    struct conn_arg *a = p;
    struct mini *m = a->m;
    int fd = a->fd;
    free(a);
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap);
    struct hreq rq;
    while (!atomic_load(&m->stop) && read_request(fd, buf, cap, &have, &rq) == 0) {
        atomic_fetch_add(&m->requests, 1);
        struct hresp rs = {.status = 200};
        m->fn(m->ud, &rq, &rs);
        free(rq.body);
        if (rs.close) {
            free(rs.body);
            break;
        }
        size_t bl = rs.body ? strlen(rs.body) : 0;
        char *out = malloc(bl + 1024);
        int hl = snprintf(out, 1024, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", rs.status, bl,
                          rs.headers);
        if (bl) memcpy(out + hl, rs.body, bl);
        ssize_t sent = send(fd, out, (size_t)hl + bl, MSG_NOSIGNAL); /* one write: no Nagle stall */
        free(out);
        free(rs.body);
        if (sent < 0) break;
    }
    free(buf);
    shutdown(fd, SHUT_RDWR);
    return NULL;
}

static void *accept_main(void *p)
{
    struct mini *m = p;
    for (;;) {
        int fd = accept(m->lfd, NULL, NULL);
        if (fd < 0) break;
        if (atomic_load(&m->stop)) {
            close(fd);
            break;
        }
        pthread_mutex_lock(&m->mu);
        if (m->nconn == MAX_CONN) {
            pthread_mutex_unlock(&m->mu);
            close(fd);
            continue;
        }
        struct conn_arg *a = malloc(sizeof *a);
        a->m = m;
        a->fd = fd;
        m->conns[m->nconn] = fd;
        pthread_create(&m->threads[m->nconn], NULL, conn_main, a);
        m->nconn++;
        pthread_mutex_unlock(&m->mu);
    }
    return NULL;
}

static struct mini *mini_start(handler_fn fn, void *ud)
{
    struct mini *m = calloc(1, sizeof *m);
    m->fn = fn;
    m->ud = ud;
    pthread_mutex_init(&m->mu, NULL);
    m->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(m->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(m->lfd, 64), 0);
    socklen_t sl = sizeof sa;
    getsockname(m->lfd, (struct sockaddr *)&sa, &sl);
    m->port = ntohs(sa.sin_port);
    pthread_create(&m->acceptor, NULL, accept_main, m);
    return m;
}

static void mini_stop(struct mini *m)
{
    atomic_store(&m->stop, 1);
    shutdown(m->lfd, SHUT_RDWR);
    pthread_join(m->acceptor, NULL);
    close(m->lfd);
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nconn; i++) shutdown(m->conns[i], SHUT_RDWR);
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < m->nconn; i++) {
        pthread_join(m->threads[i], NULL);
        close(m->conns[i]);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* ---- token endpoint + Web API behaviour shared by the tests. The server's
 * threads and the test thread share `cfg` and `seen` under `mu` only (TSan
 * cannot see the ordering a socket gives). */

struct api_cfg {
    int status;                /* for single Web API requests */
    char headers[256];         /* extra response header lines */
    const char *body;
    int batch_status;
    const char *batch_ct, *batch_body;
    int reject_below;          /* 401 for tokens numbered below this */
    int fail_mode;             /* token endpoint: 0 ok, 1 AADSTS7000215, 2 HTTP 500 */
};

struct api_seen {
    char method[16], target[1024], headers[8192], body[65536];
    char form[4096];           /* last token request body */
};

struct tok_state {
    atomic_int issued;
    atomic_int api_requests;
    int lifetime, delay_ms;    /* set before the server starts */
    pthread_mutex_t mu;
    struct api_cfg cfg;
    struct api_seen seen;
};

static struct api_seen seen_buf;

static const struct api_seen *seen(struct tok_state *t)
{
    pthread_mutex_lock(&t->mu);
    seen_buf = t->seen;
    pthread_mutex_unlock(&t->mu);
    return &seen_buf;
}

static void set_api(struct tok_state *t, int status, const char *headers, const char *body)
{
    pthread_mutex_lock(&t->mu);
    t->cfg.status = status;
    snprintf(t->cfg.headers, sizeof t->cfg.headers, "%s", headers ? headers : "");
    t->cfg.body = body;
    pthread_mutex_unlock(&t->mu);
}

static void set_batch(struct tok_state *t, int status, const char *ct, const char *body)
{
    pthread_mutex_lock(&t->mu);
    t->cfg.batch_status = status;
    t->cfg.batch_ct = ct;
    t->cfg.batch_body = body;
    pthread_mutex_unlock(&t->mu);
}

static void set_int(struct tok_state *t, int *field, int v)
{
    pthread_mutex_lock(&t->mu);
    *field = v;
    pthread_mutex_unlock(&t->mu);
}

static void handle(void *ud, const struct hreq *rq, struct hresp *rs)
{
    struct tok_state *t = ud;
    pthread_mutex_lock(&t->mu);
    struct api_cfg cfg = t->cfg;
    if (strstr(rq->target, "/oauth2/v2.0/token")) {
        snprintf(t->seen.form, sizeof t->seen.form, "%s", rq->body);
    } else {
        snprintf(t->seen.headers, sizeof t->seen.headers, "%s", rq->headers);
        snprintf(t->seen.body, sizeof t->seen.body, "%s", rq->body);
        snprintf(t->seen.target, sizeof t->seen.target, "%s", rq->target);
        snprintf(t->seen.method, sizeof t->seen.method, "%s", rq->method);
    }
    pthread_mutex_unlock(&t->mu);
    if (strstr(rq->target, "/oauth2/v2.0/token")) {
        if (t->delay_ms) usleep((useconds_t)t->delay_ms * 1000);
        if (cfg.fail_mode == 1) {
            rs->status = 401;
            snprintf(rs->headers, sizeof rs->headers, "Content-Type: application/json\r\n");
            rs->body = strdup("{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid "
                              "client secret provided. Ensure the secret being sent in the request is the "
                              "client secret value.\\r\\nTrace ID: abc\\r\\nCorrelation ID: def\","
                              "\"error_codes\":[7000215],\"trace_id\":\"abc\"}");
            return;
        }
        if (cfg.fail_mode == 2) {
            rs->status = 500;
            rs->body = strdup("oops");
            return;
        }
        int n = atomic_fetch_add(&t->issued, 1) + 1;
        char body[256];
        snprintf(body, sizeof body, "{\"token_type\":\"Bearer\",\"expires_in\":%d,\"ext_expires_in\":%d,"
                 "\"access_token\":\"tok-%d\"}", t->lifetime, t->lifetime, n);
        rs->body = strdup(body);
        snprintf(rs->headers, sizeof rs->headers, "Content-Type: application/json\r\n");
        return;
    }
    atomic_fetch_add(&t->api_requests, 1);
    const char *auth = strcasestr(rq->headers, "\nAuthorization: Bearer tok-");
    int tok = auth ? atoi(auth + 27) : 0;
    if (tok < cfg.reject_below) {
        rs->status = 401;
        snprintf(rs->headers, sizeof rs->headers,
                 "WWW-Authenticate: Bearer authorization_uri=https://login.microsoftonline.com/x/oauth2/authorize\r\n");
        return;
    }
    if (strstr(rq->target, "$batch")) {
        rs->status = cfg.batch_status;
        snprintf(rs->headers, sizeof rs->headers, "Content-Type: %s\r\n%s", cfg.batch_ct, cfg.headers);
        rs->body = strdup(cfg.batch_body);
        return;
    }
    rs->status = cfg.status;
    snprintf(rs->headers, sizeof rs->headers, "%s", cfg.headers);
    if (cfg.body) rs->body = strdup(cfg.body);
}

static struct tok_state *tok_new(int lifetime)
{
    struct tok_state *t = calloc(1, sizeof *t);
    t->lifetime = lifetime;
    t->cfg.status = 204;
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

static void tok_free(struct tok_state *t)
{
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static struct d365_auth *secret_auth(int port)
{
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/tenant/oauth2/v2.0/token", port);
    struct d365_auth_config cfg = {.token_url = url, .client_id = "cid",
                                   .scope = "http://127.0.0.1/.default",
                                   .client_secret = "s3cr&t=value"};
    struct d365_auth *a = d365_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    return a;
}

struct tok_arg {
    struct d365_auth *a;
    char tok[64];
    int rc;
};

static void *get_token(void *p)
{
    struct tok_arg *x = p;
    char err[256];
    x->rc = d365_auth_token(x->a, x->tok, sizeof x->tok, err, sizeof err);
    return NULL;
}

static void test_auth_single_refresher(void **state)
{
    (void)state;
    struct tok_state *t = tok_new(3600);
    t->delay_ms = 200;  /* a slow token endpoint: everybody arrives during the fetch */
    struct mini *m = mini_start(handle, t);
    struct d365_auth *a = secret_auth(m->port);
    struct tok_arg args[16];
    pthread_t th[16];
    for (int i = 0; i < 16; i++) {
        args[i] = (struct tok_arg){.a = a};
        pthread_create(&th[i], NULL, get_token, &args[i]);
    }
    for (int i = 0; i < 16; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(args[i].rc, 0);
        assert_string_equal(args[i].tok, "tok-1");
    }
    assert_int_equal(atomic_load(&t->issued), 1);
    /* the form: URL-encoded secret, grant type, scope */
    assert_non_null(strstr(seen(t)->form, "client_secret=s3cr%26t%3Dvalue"));
    assert_non_null(strstr(seen(t)->form, "grant_type=client_credentials"));
    assert_non_null(strstr(seen(t)->form, "client_id=cid"));
    assert_non_null(strstr(seen(t)->form, "scope=http%3A%2F%2F127.0.0.1%2F.default"));

    /* 16 workers get 401 on tok-1 and invalidate it: one renewal */
    for (int i = 0; i < 16; i++) d365_auth_invalidate(a, "tok-1");
    for (int i = 0; i < 16; i++) {
        args[i] = (struct tok_arg){.a = a};
        pthread_create(&th[i], NULL, get_token, &args[i]);
    }
    for (int i = 0; i < 16; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 16; i++) assert_string_equal(args[i].tok, "tok-2");
    /* a late invalidate of the old token does nothing */
    d365_auth_invalidate(a, "tok-1");
    char buf[64], err[256];
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), 0);
    assert_string_equal(buf, "tok-2");
    assert_int_equal(atomic_load(&t->issued), 2);
    struct d365_auth_stats st;
    d365_auth_stats(a, &st);
    assert_int_equal(st.fetches, 2);
    assert_int_equal(st.invalidations, 1);
    /* buffer too small */
    char tiny[3];
    assert_int_equal(d365_auth_token(a, tiny, sizeof tiny, err, sizeof err), -1);
    d365_auth_destroy(a);
    mini_stop(m);
    tok_free(t);
}

static void *prefetch(void *p)
{
    d365_auth_prefetch(p);
    return NULL;
}

/* d365_auth_prefetch: the first caller without a token fetches one and waits
 * for it; callers that come during that fetch return at once, without a
 * token and without a second fetch; with a fresh token nobody fetches. */
static void test_auth_prefetch(void **state)
{
    (void)state;
    struct tok_state *t = tok_new(3600);
    t->delay_ms = 600;
    struct mini *m = mini_start(handle, t);
    struct d365_auth *a = secret_auth(m->port);
    pthread_t first;
    pthread_create(&first, NULL, prefetch, a);
    usleep(150000); /* the first one is fetching now (the endpoint takes 600 ms) */
    for (int i = 0; i < 4; i++) d365_auth_prefetch(a);
    /* They returned before the token was issued: they did not wait. */
    assert_int_equal(atomic_load(&t->issued), 0);
    pthread_join(first, NULL);
    assert_int_equal(atomic_load(&t->issued), 1);
    char buf[64], err[256];
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), 0);
    assert_string_equal(buf, "tok-1");
    d365_auth_prefetch(a); /* fresh: nothing to do */
    struct d365_auth_stats st;
    d365_auth_stats(a, &st);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.waits, 0);
    d365_auth_destroy(a);
    mini_stop(m);
    tok_free(t);
}

static void test_auth_renewal_early(void **state)
{
    (void)state;
    struct tok_state *t = tok_new(2); /* 2 s tokens: renewal after 1.5 s */
    struct mini *m = mini_start(handle, t);
    struct d365_auth *a = secret_auth(m->port);
    char buf[64], err[256];
    double t0 = now_s();
    int failures = 0;
    char last[64] = "";
    int changes = 0;
    while (now_s() - t0 < 4.2) {
        if (d365_auth_token(a, buf, sizeof buf, err, sizeof err) != 0) failures++;
        else if (strcmp(buf, last) != 0) {
            changes++;
            snprintf(last, sizeof last, "%s", buf);
        }
        usleep(10000);
    }
    assert_int_equal(failures, 0);
    /* 4.2 s / 1.5 s → tokens at 0, 1.5, 3.0 */
    assert_int_equal(atomic_load(&t->issued), 3);
    assert_int_equal(changes, 3);
    d365_auth_destroy(a);
    mini_stop(m);
    tok_free(t);
}

static void test_auth_entra_error(void **state)
{
    (void)state;
    struct tok_state *t = tok_new(3600);
    set_int(t, &t->cfg.fail_mode, 1);
    struct mini *m = mini_start(handle, t);
    struct d365_auth *a = secret_auth(m->port);
    char buf[64], err[512];
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), -1);
    assert_non_null(strstr(err, "AADSTS7000215"));
    assert_non_null(strstr(err, "invalid client secret"));
    assert_null(strstr(err, "s3cr"));
    assert_null(strstr(err, "Trace ID"));
    int before = atomic_load(&m->requests);
    /* within the back-off: the last error, no new request */
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), -1);
    assert_non_null(strstr(err, "AADSTS7000215"));
    assert_int_equal(atomic_load(&m->requests), before);
    /* fixed: after the back-off (1 s) a token comes */
    set_int(t, &t->cfg.fail_mode, 0);
    usleep(1100000);
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), 0);
    assert_string_equal(buf, "tok-1");
    d365_auth_destroy(a);
    mini_stop(m);
    tok_free(t);
}

static void test_auth_certificate_form(void **state)
{
    struct certdir *c = *state;
    struct tok_state *t = tok_new(3600);
    struct mini *m = mini_start(handle, t);
    char url[128], err[256], buf[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/tenant/oauth2/v2.0/token", m->port);
    struct d365_auth_config cfg = {.token_url = url, .client_id = "cid", .scope = "x/.default",
                                   .cert_file = c->cert, .key_file = c->key};
    struct d365_auth *a = d365_auth_create(&cfg, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(d365_auth_token(a, buf, sizeof buf, err, sizeof err), 0);
    assert_non_null(strstr(seen(t)->form, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
    assert_non_null(strstr(seen(t)->form, "client_assertion=ey"));
    assert_null(strstr(seen(t)->form, "client_secret"));
    d365_auth_destroy(a);
    mini_stop(m);
    tok_free(t);
}

/* ======================================================================== */
/* Web API client against the mini server                                    */

struct api_fx {
    struct tok_state *t;
    struct mini *m;
    struct d365_auth *a;
    struct d365_governor *g;
    struct d365_client *c;
};

static int api_setup(void **state)
{
    struct api_fx *f = calloc(1, sizeof *f);
    f->t = tok_new(3600);
    f->m = mini_start(handle, f->t);
    f->a = secret_auth(f->m->port);
    f->g = d365_governor_create(NULL);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/org/", f->m->port);
    struct d365_client_config cc = {.url = url, .timeout_ms = 5000};
    f->c = d365_client_create(&cc, f->a, f->g, err, sizeof err);
    if (!f->c) return -1;
    d365_lookup_cache_clear();
    *state = f;
    return 0;
}

static int api_teardown(void **state)
{
    struct api_fx *f = *state;
    d365_client_destroy(f->c);
    d365_governor_destroy(f->g);
    d365_auth_destroy(f->a);
    mini_stop(f->m);
    tok_free(f->t);
    free(f);
    d365_lookup_cache_clear();
    return 0;
}

static void test_api_headers_and_401(void **state)
{
    struct api_fx *f = *state;
    struct d365_op op = {.method = "PATCH", .path = "accounts(mlc_sapvendorid='0000100003')",
                         .body = "{\"name\":\"A\"}"};
    assert_int_equal(d365_send_one(f->c, &op), D365_DONE);
    assert_int_equal(op.status, 204);
    assert_string_equal(seen(f->t)->method, "PATCH");
    assert_string_equal(seen(f->t)->target, "/org/api/data/v9.2/accounts(mlc_sapvendorid='0000100003')");
    const char *h = seen(f->t)->headers;
    assert_non_null(strstr(h, "\r\nAuthorization: Bearer tok-1\r\n"));
    assert_non_null(strstr(h, "\r\nAccept: application/json\r\n"));
    assert_non_null(strstr(h, "\r\nOData-MaxVersion: 4.0\r\n"));
    assert_non_null(strstr(h, "\r\nOData-Version: 4.0\r\n"));
    assert_non_null(strstr(h, "\r\nIf-None-Match: null\r\n"));
    assert_non_null(strstr(h, "\r\nContent-Type: application/json\r\n"));
    assert_null(strstr(h, "Expect:"));
    assert_string_equal(seen(f->t)->body, "{\"name\":\"A\"}");

    /* Dataverse rejects tok-1: renewed once, sent again with tok-2 */
    set_int(f->t, &f->t->cfg.reject_below, 2);
    int before = atomic_load(&f->t->api_requests);
    assert_int_equal(d365_send_one(f->c, &op), D365_DONE);
    assert_int_equal(atomic_load(&f->t->api_requests), before + 2);
    assert_int_equal(atomic_load(&f->t->issued), 2);
    assert_non_null(strstr(seen(f->t)->headers, "Bearer tok-2\r\n"));
    /* a persistent 401: one renewal, one retry, then RETRY with 401 */
    set_int(f->t, &f->t->cfg.reject_below, 1000);
    before = atomic_load(&f->t->api_requests);
    assert_int_equal(d365_send_one(f->c, &op), D365_RETRY);
    assert_int_equal(op.status, 401);
    assert_int_equal(atomic_load(&f->t->api_requests), before + 2);
    assert_int_equal(atomic_load(&f->t->issued), 3);
    struct d365_client_stats cs;
    d365_client_stats(f->c, &cs);
    assert_int_equal(cs.renewals, 2);
}

static void test_api_errors(void **state)
{
    struct api_fx *f = *state;
    struct d365_op op = {.method = "PATCH", .path = "contacts(mlc_sapcontactid='1')", .body = "{}"};
    /* 400 with Dataverse's error: FAILED, verbatim */
    set_api(f->t, 400, NULL, "{\"error\":{\"code\":\"0x80044331\",\"message\":\"The length of the 'firstname' "
                             "attribute of the 'contact' entity exceeded the maximum allowed length of '50'.\"}}");
    assert_int_equal(d365_send_one(f->c, &op), D365_FAILED);
    assert_string_equal(op.code, "0x80044331");
    assert_non_null(strstr(op.message, "maximum allowed length of '50'"));
    /* bind target missing: RETRY */
    set_api(f->t, 404, NULL, "{\"error\":{\"code\":\"0x80060891\",\"message\":\"A record with the specified key "
                             "values does not exist in account entity\"}}");
    assert_int_equal(d365_send_one(f->c, &op), D365_RETRY);
    assert_string_equal(op.code, D365_CODE_KEY_NOT_FOUND);
    /* DELETE of a missing key: DONE */
    struct d365_op del = {.method = "DELETE", .path = "contacts(mlc_sapcontactid='1')"};
    assert_int_equal(d365_send_one(f->c, &del), D365_DONE);
    assert_string_equal(seen(f->t)->method, "DELETE");
    /* 503 from a proxy with an HTML page */
    set_api(f->t, 503, NULL, "<html>\n<body>Service Unavailable</body></html>");
    assert_int_equal(d365_send_one(f->c, &op), D365_RETRY);
    assert_non_null(strstr(op.message, "Service Unavailable"));
    assert_null(strchr(op.message, '\n'));
    /* 429: RETRY with Retry-After, the governor closes the window for all */
    uint64_t thr0 = metrics_get("mlc_dataverse_throttled_total", NULL);
    set_api(f->t, 429, "Retry-After: 1\r\n",
            "{\"error\":{\"code\":\"0x80072322\",\"message\":\"Number of requests exceeded the limit\"}}");
    assert_int_equal(d365_send_one(f->c, &op), D365_RETRY);
    assert_true(op.retry_after == 1.0);
    assert_int_equal(metrics_get("mlc_dataverse_throttled_total", NULL), thr0 + 1);
    struct d365_governor_stats gs;
    d365_governor_stats(f->g, &gs);
    assert_true(gs.window_remaining > 0.5);
    assert_int_equal(gs.limit, 4);
    /* the next request waits for the window */
    set_api(f->t, 204, NULL, NULL);
    double t0 = now_s();
    assert_int_equal(d365_send_one(f->c, &op), D365_DONE);
    assert_true(now_s() - t0 >= 0.5);
    /* transport error: the server drops the connection — status 0, RETRY */
    d365_governor_stats(f->g, &gs);
    assert_int_equal(gs.in_flight, 0);
}

static void test_api_transport_error(void **state)
{
    (void)state;
    struct tok_state *t = tok_new(3600);
    struct mini *m = mini_start(handle, t);
    struct d365_auth *a = secret_auth(m->port);
    char err[256];
    struct d365_client_config cc = {.url = "http://127.0.0.1:1", .connect_timeout_ms = 1000};
    struct d365_client *c = d365_client_create(&cc, a, NULL, err, sizeof err);
    assert_non_null(c);
    uint64_t m0 = metrics_get("mlc_dataverse_requests_total", "0");
    struct d365_op op = {.method = "PATCH", .path = "accounts(k='1')", .body = "{}"};
    assert_int_equal(d365_send_one(c, &op), D365_RETRY);
    assert_int_equal(op.status, 0);
    assert_string_equal(op.code, "transport");
    assert_true(op.message[0] != 0);
    assert_int_equal(metrics_get("mlc_dataverse_requests_total", "0"), m0 + 1);
    /* no token: RETRY "auth", nothing sent to Dataverse */
    set_int(t, &t->cfg.fail_mode, 2);
    struct d365_auth *a2 = secret_auth(m->port);
    struct d365_client *c2 = d365_client_create(&cc, a2, NULL, err, sizeof err);
    assert_int_equal(d365_send_one(c2, &op), D365_RETRY);
    assert_string_equal(op.code, "auth");
    assert_int_equal(metrics_get("mlc_dataverse_requests_total", "0"), m0 + 1);
    /* a bad URL */
    struct d365_client_config bad = {.url = "ftp://x"};
    assert_null(d365_client_create(&bad, a, NULL, err, sizeof err));
    d365_client_destroy(c);
    d365_client_destroy(c2);
    d365_auth_destroy(a);
    d365_auth_destroy(a2);
    mini_stop(m);
    tok_free(t);
}

static void test_api_batch(void **state)
{
    struct api_fx *f = *state;
    struct d365_op ops[9] = {
        {.method = "PATCH", .path = "accounts(accountnumber='0000100042')", .body = "{\"name\":\"A\"}"},
        {.method = "POST", .path = "contacts", .body = "{\"firstname\":\"x\"}"},
        {.method = "PATCH", .path = "salesorders(k='1')", .changeset = 1, .content_id = "1", .body = "{}"},
        {.method = "PATCH", .path = "salesorderdetails(k='1')", .changeset = 1, .content_id = "2",
         .body = "{\"salesorderid@odata.bind\":\"$1\"}"},
        {.method = "PATCH", .path = "accounts(k='2')", .body = "{}"},
        {.method = "PATCH", .path = "contacts(k='3')", .body = "{}"},
        {.method = "PATCH", .path = "salesorders(k='2')", .changeset = 2, .body = "{}"},
        {.method = "PATCH", .path = "salesorderdetails(k='2')", .changeset = 2, .body = "{}"},
        {.method = "PATCH", .path = "accounts(k='9')", .body = "{}"},
    };
    set_batch(f->t, 200, "multipart/mixed; boundary=batchresponse_5a1c", batch_response);
    char err[128];
    uint64_t thr0 = metrics_get("mlc_dataverse_throttled_total", NULL);
    assert_int_equal(d365_batch_send(f->c, ops, 9, err, sizeof err), 0);
    assert_string_equal(seen(f->t)->method, "POST");
    assert_string_equal(seen(f->t)->target, "/org/api/data/v9.2/$batch");
    assert_non_null(strstr(seen(f->t)->headers, "\r\nPrefer: odata.continue-on-error\r\n"));
    assert_non_null(strstr(seen(f->t)->headers, "\r\nContent-Type: multipart/mixed; boundary=\"batch_"));
    assert_non_null(strstr(seen(f->t)->body, "PATCH /org/api/data/v9.2/salesorders(k='1') HTTP/1.1\r\n"));
    assert_int_equal(ops[0].outcome, D365_DONE);
    assert_int_equal(ops[1].outcome, D365_FAILED);
    assert_int_equal(ops[2].outcome, D365_DONE);
    assert_int_equal(ops[4].outcome, D365_RETRY);
    assert_int_equal(ops[5].outcome, D365_RETRY);
    assert_int_equal(ops[6].outcome, D365_FAILED);
    assert_int_equal(ops[8].outcome, D365_RETRY);
    /* the 429 part throttles every worker: window of its Retry-After (7 s) */
    struct d365_governor_stats gs;
    d365_governor_stats(f->g, &gs);
    assert_true(gs.window_remaining > 6);
    assert_int_equal(metrics_get("mlc_dataverse_throttled_total", NULL), thr0 + 1);
    struct d365_client_stats cs;
    d365_client_stats(f->c, &cs);
    assert_int_equal(cs.parts_429, 1);

    /* whole-batch 429 */
    d365_governor_destroy(f->g);
    f->g = d365_governor_create(NULL);
    d365_client_destroy(f->c);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/org", f->m->port);
    struct d365_client_config cc = {.url = url};
    f->c = d365_client_create(&cc, f->a, f->g, err, sizeof err);
    set_batch(f->t, 429, "application/json",
              "{\"error\":{\"code\":\"0x80072326\",\"message\":\"Number of concurrent requests exceeded the limit of 52.\"}}");
    set_api(f->t, 204, "Retry-After: 2\r\n", NULL);
    assert_int_equal(d365_batch_send(f->c, ops, 3, err, sizeof err), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ops[i].outcome, D365_RETRY);
        assert_int_equal(ops[i].status, 429);
        assert_int_equal(ops[i].batch_level, 1);
        assert_true(ops[i].retry_after == 2.0);
        assert_string_equal(ops[i].code, "0x80072326");
    }
    d365_governor_stats(f->g, &gs);
    assert_true(gs.window_remaining > 1);
    /* whole-batch 400 (JSON): FAILED at batch level (ungoverned client from
     * here: the 2 s window above is not this test's subject) */
    d365_client_destroy(f->c);
    f->c = d365_client_create(&cc, f->a, NULL, err, sizeof err);
    set_api(f->t, 204, NULL, NULL);
    set_batch(f->t, 400, "application/json", "{\"error\":{\"code\":\"0x0\",\"message\":\"bad batch\"}}");
    assert_int_equal(d365_batch_send(f->c, ops, 2, err, sizeof err), 0);
    assert_int_equal(ops[0].outcome, D365_FAILED);
    assert_int_equal(ops[1].batch_level, 1);
    assert_string_equal(ops[1].message, "bad batch");
    /* 200 with garbage: RETRY not_processed */
    set_batch(f->t, 200, "multipart/mixed; boundary=zzz", "garbage");
    assert_int_equal(d365_batch_send(f->c, ops, 2, err, sizeof err), 0);
    assert_int_equal(ops[0].outcome, D365_RETRY);
    assert_string_equal(ops[0].code, "not_processed");
    /* invalid input: -1, nothing sent */
    int before = atomic_load(&f->t->api_requests);
    ops[0].changeset = 5;
    ops[1].changeset = 0;
    ops[2].changeset = 5;
    assert_int_equal(d365_batch_send(f->c, ops, 3, err, sizeof err), -1);
    assert_int_equal(atomic_load(&f->t->api_requests), before);
}

static void test_api_lookup(void **state)
{
    struct api_fx *f = *state;
    set_api(f->t, 200, "Content-Type: application/json\r\n",
            "{\"@odata.context\":\"x\",\"value\":[{\"@odata.etag\":\"W/\\\"1\\\"\","
            "\"transactioncurrencyid\":\"0b0d6c1e-1a2b-4c3d-8e9f-001122334455\"}]}");
    char id[37], err[256];
    assert_int_equal(d365_lookup_id(f->c, "transactioncurrencies", "isocurrencycode", "USD", id, err, sizeof err),
                     D365_LOOKUP_FOUND);
    assert_string_equal(id, "0b0d6c1e-1a2b-4c3d-8e9f-001122334455");
    assert_string_equal(seen(f->t)->method, "GET");
    assert_string_equal(seen(f->t)->target,
                        "/org/api/data/v9.2/transactioncurrencies?$select=transactioncurrencyid"
                        "&$filter=isocurrencycode%20eq%20%27USD%27&$top=1");
    /* cached: no second request */
    int before = atomic_load(&f->t->api_requests);
    assert_int_equal(d365_lookup_id(f->c, "transactioncurrencies", "isocurrencycode", "USD", id, err, sizeof err),
                     D365_LOOKUP_FOUND);
    assert_int_equal(atomic_load(&f->t->api_requests), before);
    assert_true(d365_lookup_cache_hits() >= 1);
    /* not found, cached negatively; quote doubled in the filter */
    set_api(f->t, 200, NULL, "{\"value\":[]}");
    assert_int_equal(d365_lookup_id(f->c, "pricelevels", "name", "O'Brien & Co", id, err, sizeof err),
                     D365_LOOKUP_NOT_FOUND);
    assert_non_null(strstr(seen(f->t)->target, "pricelevels?$select=pricelevelid&$filter=name%20eq%20%27O%27%27Brien%20%26%20Co%27"));
    before = atomic_load(&f->t->api_requests);
    assert_int_equal(d365_lookup_id(f->c, "pricelevels", "name", "O'Brien & Co", id, err, sizeof err),
                     D365_LOOKUP_NOT_FOUND);
    assert_int_equal(atomic_load(&f->t->api_requests), before);
    /* negative entries expire */
    d365_lookup_cache_ttl(3600, 0.05);
    assert_int_equal(d365_lookup_id(f->c, "uoms", "name", "kg", id, err, sizeof err), D365_LOOKUP_NOT_FOUND);
    usleep(100000);
    before = atomic_load(&f->t->api_requests);
    assert_int_equal(d365_lookup_id(f->c, "uoms", "name", "kg", id, err, sizeof err), D365_LOOKUP_NOT_FOUND);
    assert_int_equal(atomic_load(&f->t->api_requests), before + 1);
    d365_lookup_cache_ttl(3600, 60);
    /* errors: 400 FAILED, 503 RETRY (not cached) */
    set_api(f->t, 400, NULL, "{\"error\":{\"code\":\"0x0\",\"message\":\"Could not find a property named 'bogus'\"}}");
    assert_int_equal(d365_lookup_id(f->c, "pricelevels", "bogus", "x", id, err, sizeof err), D365_LOOKUP_FAILED);
    assert_non_null(strstr(err, "bogus"));
    set_api(f->t, 503, NULL, NULL);
    assert_int_equal(d365_lookup_id(f->c, "pricelevels", "name", "y", id, err, sizeof err), D365_LOOKUP_RETRY);
    set_api(f->t, 200, NULL, "{\"value\":[{\"pricelevelid\":\"11111111-2222-3333-4444-555555555555\"}]}");
    assert_int_equal(d365_lookup_id(f->c, "pricelevels", "name", "y", id, err, sizeof err), D365_LOOKUP_FOUND);
}

/* The response buffer: appends stay NUL-terminated, the limit stops the
 * transfer and says so, reset empties it for the next response. */
static void test_respbuf(void **state)
{
    (void)state;
    struct d365_respbuf b = {.max = 40000};
    char chunk[10000];
    memset(chunk, 'x', sizeof chunk);
    assert_int_equal(d365_respbuf_write(chunk, 1, 10, &b), 10);
    assert_int_equal(b.len, 10);
    assert_int_equal(strlen(b.p), 10);
    for (int i = 0; i < 3; i++) assert_int_equal(d365_respbuf_write(chunk, 100, 100, &b), 10000);
    assert_int_equal(b.len, 30010);
    assert_int_equal(b.p[b.len], 0);
    assert_false(b.overflow);
    /* 40,010 bytes + NUL would pass the limit: refused, nothing appended */
    assert_int_equal(d365_respbuf_write(chunk, 1, sizeof chunk, &b), 0);
    assert_true(b.overflow);
    assert_int_equal(b.len, 30010);
    d365_respbuf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_false(b.overflow);
    assert_string_equal(b.p, "");
    assert_int_equal(d365_respbuf_write("ok", 1, 2, &b), 2);
    assert_string_equal(b.p, "ok");
    d365_respbuf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    metrics_init();
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jwt_ps256, cert_setup, cert_teardown),
        cmocka_unit_test_setup_teardown(test_jwt_rs256, cert_setup, cert_teardown),
        cmocka_unit_test_setup_teardown(test_auth_config_errors, cert_setup, cert_teardown),
        cmocka_unit_test(test_respbuf),
        cmocka_unit_test(test_aadsts_table),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_batch_build_exact),
        cmocka_unit_test(test_batch_validate),
        cmocka_unit_test(test_batch_parse),
        cmocka_unit_test(test_batch_parse_lf_and_quoted),
        cmocka_unit_test(test_batch_parse_changeset_partial),
        cmocka_unit_test(test_error_json_truncation),
        cmocka_unit_test(test_path_escape),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_governor_window_blocks_all),
        cmocka_unit_test(test_governor_aimd),
        cmocka_unit_test(test_governor_clamp_and_cap),
        cmocka_unit_test(test_governor_threads),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_auth_single_refresher),
        cmocka_unit_test(test_auth_prefetch), cmocka_unit_test(test_auth_renewal_early),
        cmocka_unit_test(test_auth_entra_error),
        cmocka_unit_test_setup_teardown(test_auth_certificate_form, cert_setup, cert_teardown),
        cmocka_unit_test_setup_teardown(test_api_headers_and_401, api_setup, api_teardown),
        cmocka_unit_test_setup_teardown(test_api_errors, api_setup, api_teardown),
        cmocka_unit_test(test_api_transport_error),
        cmocka_unit_test_setup_teardown(test_api_batch, api_setup, api_teardown),
        cmocka_unit_test_setup_teardown(test_api_lookup, api_setup, api_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
