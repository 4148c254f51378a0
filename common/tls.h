/*
 * tls — GnuTLS helpers for the HTTPS listener (the listen.tls_* keys):
 *   - read the PEM files and check them once, at configuration time
 *     (readable, parseable, key matches certificate, CA bundle not empty,
 *     priority string valid); every error names the configuration key;
 *   - per request, verify the client certificate of a TLS session against
 *     the server's trust list (listen.client_ca) and match its subject
 *     against listen.client_subject.
 *
 * Subject pin (listen.client_subject): a DN in the usual "CN=..., O=..."
 * form, as STRUST shows it. It matches when EVERY attribute=value of the
 * pin occurs in the certificate's subject; order, spaces after commas and
 * the case of attribute names do not matter; values compare exactly (case
 * and all). "CN=PR1CLNT100" matches "CN=PR1CLNT100, OU=I0020012345,
 * O=SAP Trust Community, C=DE" but not "CN=PR1CLNT1000, ...".
 *
 * Threads: every function is reentrant; tls_check_client runs on MHD's
 * pool threads, each call with its own connection's session.
 */
#ifndef MLC_TLS_H
#define MLC_TLS_H

#include <stddef.h>

/* Modern, and SAP's TLS 1.2 suites (ECDHE-RSA-AES128/256-GCM) included:
 * TLS 1.3 and 1.2 only, no static-RSA key exchange, no CBC. */
#define TLS_DEFAULT_PRIORITIES                                                                      \
    "SECURE256:+SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-RSA:-AES-256-CBC:-AES-128-CBC:"      \
    "%SERVER_PRECEDENCE"

/* Read a PEM file (at most 1 MiB) into a NUL-terminated buffer; *len
 * excludes the NUL. On error NULL and one line "KEY: PATH: reason" in err.
 * Free key material with tls_free_secret. */
char *tls_read_pem(const char *key, const char *path, size_t *len, char *err, size_t errlen);
void tls_free_secret(char *buf, size_t len);

/* Check the listener's settings: cert and key (both or neither), the
 * optional CA bundle and pin, the priority string (always). Loads them with
 * GnuTLS as the server will. 0, or -1 with "listen.KEY: ..." in err. */
int tls_check_config(const char *cert, const char *key, const char *client_ca, const char *client_subject,
                     const char *priorities, char *err, size_t errlen);

/* Does the subject (RFC 4514 text, as GnuTLS prints it) satisfy the pin?
 * 1 yes, 0 no, -1 the pin or the subject cannot be parsed. */
int tls_subject_matches(const char *subject, const char *pin);

/* Verify the client certificate of `session` (a gnutls_session_t) against
 * the trust list of its credentials, for client authentication, and match
 * its subject against `pin` (NULL: any subject). 0 when accepted, else -1
 * with a one-line reason for SAP's admin in `reason`. */
int tls_check_client(void *session, const char *pin, char *reason, size_t len);

#endif
