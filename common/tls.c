/*
 * tls — GnuTLS helpers for the HTTPS listener: configuration checks, the
 * per-request client certificate check, and the subject pin.
 *
 * The configuration check loads the files exactly as libmicrohttpd will
 * (gnutls_certificate_set_x509_key_mem / _trust_mem on a credentials
 * object), so a file that passes here cannot make the daemon fail later,
 * and the operator gets an error naming the key instead of MHD's generic
 * "cannot start". Key material is wiped from memory after use and never
 * printed; paths are.
 */
#include "common/tls.h"

#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PEM_MAX_BYTES (1u << 20)
#define DN_MAX_AVAS 64
#define SHOW_MAX 200 /* characters of a DN shown in a reason */


void tls_free_secret(char *buf, size_t len)
{
    if (!buf) return;
    explicit_bzero(buf, len);
    free(buf);
}

char *tls_read_pem(const char *key, const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        util_seterr(err, errlen, "%s: cannot read %s: %s", key, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        util_seterr(err, errlen, "%s: %s is not a regular file", key, path);
        fclose(f);
        return NULL;
    }
    if (st.st_size <= 0 || (unsigned long long)st.st_size > PEM_MAX_BYTES) {
        util_seterr(err, errlen, "%s: %s is %s", key, path, st.st_size <= 0 ? "empty" : "larger than 1 MiB");
        fclose(f);
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *buf = malloc(cap);
    if (!buf) {
        util_seterr(err, errlen, "%s: out of memory", key);
        fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, cap - 1, f);
    int rerr = ferror(f) ? errno : 0;
    fclose(f);
    if (rerr || n == 0) {
        util_seterr(err, errlen, "%s: cannot read %s: %s", key, path, rerr ? strerror(rerr) : "empty");
        tls_free_secret(buf, cap);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* ---- distinguished names ---- */

struct ava {
    char attr[24];    /* canonical: upper case, aliases resolved */
    const char *val;  /* unescaped */
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Attribute names: case-insensitive, with the common aliases and OIDs. */
static int canon_attr(const char *a, size_t n, char *out, size_t outlen)
{
    static const struct { const char *from, *to; } alias[] = {
        {"E", "EMAIL"}, {"EMAILADDRESS", "EMAIL"}, {"1.2.840.113549.1.9.1", "EMAIL"},
        {"S", "ST"}, {"SP", "ST"}, {"2.5.4.8", "ST"},
        {"2.5.4.3", "CN"}, {"2.5.4.6", "C"}, {"2.5.4.7", "L"}, {"2.5.4.10", "O"}, {"2.5.4.11", "OU"},
        {"0.9.2342.19200300.100.1.25", "DC"}, {"0.9.2342.19200300.100.1.1", "UID"},
    };
    if (n == 0 || n >= outlen) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (!(isalnum(c) || c == '.' || c == '-')) return -1;
        out[i] = (char)toupper(c);
    }
    out[n] = 0;
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(out, alias[i].from) == 0) {
            snprintf(out, outlen, "%s", alias[i].to);
            break;
        }
    return 0;
}

/* Parse a DN ("CN=a,O=b", RFC 4514 escapes, RFC 1779 quotes and ';'
 * tolerated, '+' of multi-valued RDNs treated as a separator) in place:
 * `s` is a modifiable copy that the values point into. Returns the number
 * of attribute=value pairs, or -1. */
static int parse_dn(char *s, struct ava *out, int max)
{
    int n = 0;
    char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        if (!*p) return -1; /* empty, or a separator at the end */
        const char *attr = p;
        while (*p && *p != '=' && *p != ',' && *p != '+' && *p != ';') p++;
        if (*p != '=') return -1;
        const char *ae = p;
        while (ae > attr && ae[-1] == ' ') ae--;
        if (n == max) return -1;
        if (canon_attr(attr, (size_t)(ae - attr), out[n].attr, sizeof out[n].attr) != 0) return -1;
        p++;
        while (*p == ' ') p++;
        char *val = p, *w = p, *sig = p; /* sig: end of the value without trailing spaces */
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) p++;
                *w++ = *p++;
            }
            if (*p != '"') return -1;
            p++;
            sig = w;
            while (*p == ' ') p++;
            if (*p && *p != ',' && *p != '+' && *p != ';') return -1;
        } else {
            while (*p && *p != ',' && *p != '+' && *p != ';') {
                if (*p == '\\') {
                    int h = hexval((unsigned char)p[1]), l = h >= 0 ? hexval((unsigned char)p[2]) : -1;
                    if (h >= 0 && l >= 0) {
                        if (h == 0 && l == 0) return -1; /* no NUL inside a value */
                        *w++ = (char)(h * 16 + l);
                        p += 3;
                    } else if (p[1]) {
                        *w++ = p[1];
                        p += 2;
                    } else {
                        return -1;
                    }
                    sig = w;
                } else {
                    char c = *p++;
                    *w++ = c;
                    if (c != ' ') sig = w;
                }
            }
        }
        char sep = *p;
        *sig = 0; /* sig <= p: may overwrite the separator, saved above */
        out[n].val = val;
        n++;
        if (!sep) return n;
        p++;
    }
}

int tls_subject_matches(const char *subject, const char *pin)
{
    char *s = strdup(subject), *q = strdup(pin);
    struct ava *sa = malloc(2 * DN_MAX_AVAS * sizeof *sa);
    int rc = -1;
    if (s && q && sa) {
        struct ava *pa = sa + DN_MAX_AVAS;
        int ns = parse_dn(s, sa, DN_MAX_AVAS), np = parse_dn(q, pa, DN_MAX_AVAS);
        if (ns > 0 && np > 0) {
            rc = 1;
            for (int i = 0; i < np && rc == 1; i++) {
                int found = 0;
                for (int j = 0; j < ns && !found; j++)
                    found = strcmp(pa[i].attr, sa[j].attr) == 0 && strcmp(pa[i].val, sa[j].val) == 0;
                if (!found) rc = 0;
            }
        }
    }
    free(s);
    free(q);
    free(sa);
    return rc;
}

/* ---- configuration check ---- */

static int load_certs(const char *path, const gnutls_datum_t *pem, char *err, size_t errlen)
{
    gnutls_x509_crt_t *list = NULL;
    unsigned n = 0;
    int rc = gnutls_x509_crt_list_import2(&list, &n, pem, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || n == 0) {
        util_seterr(err, errlen, "listen.tls_cert: %s: no PEM certificate (BEGIN CERTIFICATE) could be read: %s", path,
               rc < 0 ? gnutls_strerror(rc) : "none found");
        return -1;
    }
    for (unsigned i = 0; i < n; i++) gnutls_x509_crt_deinit(list[i]);
    gnutls_free(list);
    return 0;
}

int tls_check_config(const char *cert, const char *key, const char *client_ca, const char *client_subject,
                     const char *priorities, char *err, size_t errlen)
{
    if (!cert != !key) {
        util_seterr(err, errlen, "%s: missing: listen.tls_cert and listen.tls_key go together (both or neither)",
               cert ? "listen.tls_key" : "listen.tls_cert");
        return -1;
    }
    if (client_ca && !cert) {
        util_seterr(err, errlen, "listen.client_ca: requires listen.tls_cert and listen.tls_key "
                            "(client certificates need HTTPS)");
        return -1;
    }
    if (client_subject && !client_ca) {
        util_seterr(err, errlen, "listen.client_subject: requires listen.client_ca");
        return -1;
    }
    if (client_subject) {
        char *copy = strdup(client_subject);
        struct ava *a = malloc(DN_MAX_AVAS * sizeof *a);
        int n = copy && a ? parse_dn(copy, a, DN_MAX_AVAS) : -1;
        free(copy);
        free(a);
        if (n <= 0) {
            util_seterr(err, errlen, "listen.client_subject: '%s' is not a distinguished name like \"CN=PR1CLNT100\" "
                                "or \"CN=PR1CLNT100, O=Example, C=DE\"", client_subject);
            return -1;
        }
    }
    gnutls_priority_t prio;
    const char *at = NULL;
    int rc = gnutls_priority_init(&prio, priorities, &at);
    if (rc < 0) {
        util_seterr(err, errlen, "listen.tls_priorities: invalid GnuTLS priority string near '%.60s': %s",
               at ? at : priorities, gnutls_strerror(rc));
        return -1;
    }
    gnutls_priority_deinit(prio);
    if (!cert) return 0;

    int ret = -1;
    size_t clen = 0, klen = 0, calen = 0;
    char *cpem = NULL, *kpem = NULL, *capem = NULL;
    gnutls_certificate_credentials_t cred = NULL;
    if (!(cpem = tls_read_pem("listen.tls_cert", cert, &clen, err, errlen))) goto out;
    if (!(kpem = tls_read_pem("listen.tls_key", key, &klen, err, errlen))) goto out;
    gnutls_datum_t cd = {(unsigned char *)cpem, (unsigned)clen}, kd = {(unsigned char *)kpem, (unsigned)klen};
    if (load_certs(cert, &cd, err, errlen) != 0) goto out;

    gnutls_x509_privkey_t pk;
    if (gnutls_x509_privkey_init(&pk) < 0) { util_seterr(err, errlen, "listen.tls_key: out of memory"); goto out; }
    rc = gnutls_x509_privkey_import2(pk, &kd, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
    gnutls_x509_privkey_deinit(pk);
    if (rc < 0) {
        util_seterr(err, errlen, "listen.tls_key: %s: not a usable unencrypted PEM private key: %s", key,
               gnutls_strerror(rc));
        goto out;
    }
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        util_seterr(err, errlen, "listen.tls_cert: out of memory");
        goto out;
    }
    rc = gnutls_certificate_set_x509_key_mem(cred, &cd, &kd, GNUTLS_X509_FMT_PEM);
    if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        util_seterr(err, errlen, "listen.tls_key: %s does not belong to the certificate in %s (listen.tls_cert)", key,
               cert);
        goto out;
    }
    if (rc < 0) {
        util_seterr(err, errlen, "listen.tls_cert: %s with listen.tls_key %s: %s", cert, key, gnutls_strerror(rc));
        goto out;
    }
    if (client_ca) {
        if (!(capem = tls_read_pem("listen.client_ca", client_ca, &calen, err, errlen))) goto out;
        gnutls_datum_t ad = {(unsigned char *)capem, (unsigned)calen};
        rc = gnutls_certificate_set_x509_trust_mem(cred, &ad, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            util_seterr(err, errlen, "listen.client_ca: %s: no PEM certificate (BEGIN CERTIFICATE) could be read%s%s",
                   client_ca, rc < 0 ? ": " : "", rc < 0 ? gnutls_strerror(rc) : "");
            goto out;
        }
    }
    ret = 0;
out:
    if (cred) gnutls_certificate_free_credentials(cred);
    free(cpem);
    tls_free_secret(kpem, klen);
    free(capem);
    return ret;
}

/* ---- per request ---- */

/* A DN for a one-line message: control characters replaced, shortened. */
static void show(const gnutls_datum_t *dn, char *out, size_t outlen)
{
    size_t o = 0, max = outlen > SHOW_MAX + 4 ? SHOW_MAX : outlen - 4;
    for (unsigned i = 0; dn && dn->data && i < dn->size && o < max; i++) {
        unsigned char c = dn->data[i];
        out[o++] = (c < 0x20 || c == 0x7f || c == '\'') ? '?' : (char)c;
    }
    if (dn && dn->size > max) { memcpy(out + o, "...", 3); o += 3; }
    out[o] = 0;
}

int tls_check_client(void *session, const char *pin, char *reason, size_t len)
{
    gnutls_session_t s = session;
    unsigned n = 0;
    const gnutls_datum_t *certs = s ? gnutls_certificate_get_peers(s, &n) : NULL;
    if (!certs || n == 0) {
        snprintf(reason, len, "client certificate required (SSL client PSE in SM59)");
        return -1;
    }
    if (gnutls_certificate_type_get2(s, GNUTLS_CTYPE_CLIENT) != GNUTLS_CRT_X509) {
        snprintf(reason, len, "client certificate must be X.509");
        return -1;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0) {
        snprintf(reason, len, "client certificate check: out of memory");
        return -1;
    }
    int ret = -1;
    char subj[SHOW_MAX + 8] = "?", iss[SHOW_MAX + 8] = "?";
    gnutls_datum_t sdn = {NULL, 0}, idn = {NULL, 0};
    int rc = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
    if (rc < 0) {
        snprintf(reason, len, "client certificate unreadable: %s", gnutls_strerror(rc));
        goto out;
    }
    if (gnutls_x509_crt_get_dn3(crt, &sdn, 0) < 0 || gnutls_x509_crt_get_issuer_dn3(crt, &idn, 0) < 0) {
        snprintf(reason, len, "client certificate has an unreadable subject or issuer");
        goto out;
    }
    show(&sdn, subj, sizeof subj);
    show(&idn, iss, sizeof iss);

    /* Chain to the trust list (listen.client_ca), validity dates, and the
     * key purpose: a certificate whose extended key usage excludes client
     * authentication is refused (none at all is accepted). */
    gnutls_typed_vdata_st vd = {.type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT};
    unsigned status = 0;
    rc = gnutls_certificate_verify_peers(s, &vd, 1, &status);
    if (rc < 0) {
        snprintf(reason, len, "client certificate could not be verified: %s", gnutls_strerror(rc));
        goto out;
    }
    if (status) {
        if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA | GNUTLS_CERT_SIGNATURE_FAILURE)) {
            snprintf(reason, len, "client certificate not signed by listen.client_ca (subject '%s', issuer '%s')",
                     subj, iss);
        } else if (status & GNUTLS_CERT_EXPIRED) {
            snprintf(reason, len, "client certificate expired (subject '%s')", subj);
        } else if (status & GNUTLS_CERT_NOT_ACTIVATED) {
            snprintf(reason, len, "client certificate not yet valid (subject '%s')", subj);
        } else if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
            snprintf(reason, len, "client certificate not for client authentication: its extended key usage "
                                  "lacks clientAuth (subject '%s')", subj);
        } else {
            gnutls_datum_t txt = {NULL, 0};
            char why[200] = "rejected";
            if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &txt, 0) == 0) {
                show(&txt, why, sizeof why);
                gnutls_free(txt.data);
            }
            snprintf(reason, len, "client certificate not accepted: %s (subject '%s')", why, subj);
        }
        goto out;
    }
    if (pin && tls_subject_matches((const char *)sdn.data, pin) != 1) {
        snprintf(reason, len, "client certificate subject '%s' does not match listen.client_subject", subj);
        goto out;
    }
    ret = 0;
out:
    gnutls_free(sdn.data);
    gnutls_free(idn.data);
    gnutls_x509_crt_deinit(crt);
    return ret;
}
