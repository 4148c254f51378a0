/*
 * d365/auth — the token manager: OAuth2 client credentials against Microsoft
 * Entra ID, one cached access token for the whole process.
 *
 * Credentials: a client secret, or a certificate (PEM certificate + PEM
 * unencrypted RSA private key) from which a signed JWT client assertion is
 * made for every token request: PS256 with header `x5t#S256` (SHA-256
 * thumbprint of the DER certificate) by default, RS256 with `x5t` (SHA-1)
 * as an option. Claims: aud = token URL, iss = sub = client id, jti = random
 * UUID, nbf = iat = now, exp = now + 10 min.
 *
 * Renewal: a token of lifetime L (expires_in) is renewed from
 * max(0.75 L, min(0.8 L, L - 300 s)) after it was received — 80% of the
 * lifetime, or 5 min before expiry if that is earlier, but never before 75%
 * (so very short lifetimes are not renewed continuously). Only one caller
 * fetches at a time (the "refresher"); while it does, other callers keep
 * using the still-valid token, or — when there is none — wait for the fetch.
 * A failed fetch is not repeated for a back-off (1 s doubling to 60 s), so
 * a wrong secret cannot hammer Entra; callers then get the last error.
 *
 * Entra errors are logged with the AADSTS code's meaning; the secret, the
 * assertion and tokens are never logged.
 *
 * Threads: d365_auth_token / _invalidate / _stats from any thread;
 * create/destroy once. Ownership: create copies everything in the config
 * (the secret copy is wiped on destroy); the caller owns its buffers.
 */
#ifndef MLC_D365_AUTH_H
#define MLC_D365_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define D365_TOKEN_MAX 16384  /* buffer size that holds any access token */

enum d365_assertion_alg {
    D365_ALG_PS256 = 0,  /* RSASSA-PSS SHA-256, header x5t#S256 (current Entra doc) */
    D365_ALG_RS256 = 1,  /* RSASSA-PKCS1-v1_5 SHA-256, header x5t (pre-2025 doc) */
};

struct d365_auth_config {
    const char *token_url;      /* https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token */
    const char *client_id;
    const char *scope;          /* "<environment url>/.default" */
    const char *client_secret;  /* secret credential, or NULL for a certificate */
    const char *cert_file;      /* PEM certificate (certificate credential) */
    const char *key_file;       /* PEM private key, RSA, not encrypted */
    enum d365_assertion_alg alg;
    const char *assertion_aud;  /* aud claim; NULL → token_url */
    long connect_timeout_ms;    /* 0 → 10 s */
    long timeout_ms;            /* 0 → 30 s */
};

struct d365_auth;

struct d365_auth_stats {
    uint64_t fetches;           /* token requests sent */
    uint64_t fetch_failures;
    uint64_t invalidations;     /* invalidate() calls that dropped the current token */
    uint64_t waits;             /* callers that had to wait for a fetch */
    double lifetime;            /* expires_in of the current token (s), 0 if none */
};

/* Validates the config and, for a certificate, loads the certificate and key
 * (and checks that they match). No network. NULL + err on failure. */
struct d365_auth *d365_auth_create(const struct d365_auth_config *cfg, char *err, size_t errlen);
void d365_auth_destroy(struct d365_auth *a);

/* Copy a valid access token into buf (NUL-terminated). Fetches one when
 * there is none or it is due for renewal (single refresher, see above).
 * Returns 0, or -1 with err (Entra's error and its meaning, or transport). */
int d365_auth_token(struct d365_auth *a, char *buf, size_t bufsz, char *err, size_t errlen);

/* Dataverse answered 401 to `token`: if it is still the current token, drop
 * it so the next d365_auth_token fetches a new one. A stale token (already
 * replaced) is ignored, so N workers failing on the same token cause one
 * renewal, not N. */
void d365_auth_invalidate(struct d365_auth *a, const char *token);

/* Make sure a token will be there soon, without waiting for one: when the
 * token is missing or due for renewal and nobody is fetching (and no
 * back-off is running), the caller becomes the refresher and fetches now
 * (it waits for that fetch); otherwise it returns at once. For a delivery
 * worker at the start of a job: one worker fetches while the others
 * prepare theirs, instead of every worker finding no token at its first
 * send. Errors are logged as d365_auth_token logs them. Any thread. */
void d365_auth_prefetch(struct d365_auth *a);

void d365_auth_stats(struct d365_auth *a, struct d365_auth_stats *out);

/* The signed client assertion a certificate credential would send, for
 * issue time `now` (tests inspect it). Caller frees *jwt. -1 + err for a
 * secret credential or on OpenSSL failure. */
int d365_auth_assertion(struct d365_auth *a, time_t now, char **jwt, char *err, size_t errlen);

/* Meaning of an AADSTS error number, or NULL if not in the table. */
const char *d365_aadsts_meaning(long code);

/* Base64url without padding (RFC 7515 §2). Caller frees. NULL on OOM. */
char *d365_base64url(const unsigned char *data, size_t len);

#endif
