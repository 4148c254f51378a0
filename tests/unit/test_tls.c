/* Unit tests for common/tls: the listen.client_subject pin (attribute
 * matching, escapes, order, the cases a substring match would get wrong),
 * and the configuration rules that need no files (both-or-neither, what
 * requires what, the priority string, the default priorities' content). The
 * file checks (mismatched key, unreadable files) are in
 * tests/integration/tls.sh, with certificates made by openssl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <stdio.h>
#include <string.h>

#include "common/tls.h"

static const char *SAP = "CN=PR1CLNT100,OU=I0020012345,OU=SAP Web AS,O=SAP Trust Community,C=DE";

static void test_pin_matches(void **s)
{
    (void)s;
    assert_int_equal(tls_subject_matches(SAP, "CN=PR1CLNT100"), 1);
    /* STRUST's form: spaces after commas, any order, attribute case. */
    assert_int_equal(tls_subject_matches(SAP, "CN=PR1CLNT100, O=SAP Trust Community, C=DE"), 1);
    assert_int_equal(tls_subject_matches(SAP, "C=DE, cn = PR1CLNT100"), 1);
    assert_int_equal(tls_subject_matches(SAP, "OU=SAP Web AS, OU=I0020012345"), 1);
    assert_int_equal(tls_subject_matches(SAP, " CN=PR1CLNT100 "), 1);
    assert_int_equal(tls_subject_matches(SAP, "CN=\"PR1CLNT100\""), 1);
}

static void test_pin_mismatches(void **s)
{
    (void)s;
    /* What a substring test would wrongly accept. */
    assert_int_equal(tls_subject_matches("CN=PR1CLNT1000,O=SAP Trust Community", "CN=PR1CLNT100"), 0);
    assert_int_equal(tls_subject_matches("CN=XPR1CLNT100,O=SAP Trust Community", "CN=PR1CLNT100"), 0);
    assert_int_equal(tls_subject_matches("OU=CN=PR1CLNT100,CN=evil", "CN=PR1CLNT100"), 0);
    /* An escaped comma is part of the value, not a new attribute. */
    assert_int_equal(tls_subject_matches("CN=evil\\,CN=PR1CLNT100", "CN=PR1CLNT100"), 0);
    assert_int_equal(tls_subject_matches("CN=PR1CLNT100\\,O=Evil,C=DE", "CN=PR1CLNT100"), 0);
    /* Values compare exactly; every attribute of the pin must be there. */
    assert_int_equal(tls_subject_matches(SAP, "CN=pr1clnt100"), 0);
    assert_int_equal(tls_subject_matches(SAP, "CN=PR1CLNT100, O=Other"), 0);
    assert_int_equal(tls_subject_matches(SAP, "CN=PR1CLNT100, L=Walldorf"), 0);
    assert_int_equal(tls_subject_matches(SAP, "OU=SAP"), 0);
}

static void test_escapes_and_aliases(void **s)
{
    (void)s;
    assert_int_equal(tls_subject_matches("CN=Doe\\, John,O=X", "CN=Doe\\, John"), 1);
    assert_int_equal(tls_subject_matches("CN=Doe\\, John,O=X", "CN=\"Doe, John\""), 1);
    assert_int_equal(tls_subject_matches("CN=Doe\\, John,O=X", "CN=Doe"), 0);
    assert_int_equal(tls_subject_matches("CN=M\xc3\xbcller,C=DE", "CN=M\\C3\\BCller"), 1);
    assert_int_equal(tls_subject_matches("CN=M\xc3\xbcller,C=DE", "CN=M\xc3\xbcller"), 1);
    assert_int_equal(tls_subject_matches("street=\\ lead,CN=a", "STREET=\\ lead"), 1);
    /* GnuTLS prints emailAddress as EMAIL; SAP and OpenSSL say E / emailAddress. */
    assert_int_equal(tls_subject_matches("EMAIL=a@b.c,CN=x", "E=a@b.c"), 1);
    assert_int_equal(tls_subject_matches("EMAIL=a@b.c,CN=x", "emailAddress=a@b.c"), 1);
    assert_int_equal(tls_subject_matches("CN=x,ST=BW", "SP=BW"), 1);
    assert_int_equal(tls_subject_matches("CN=x,O=y", "2.5.4.3=x"), 1);
    /* Multi-valued RDN: each part is an attribute of its own. */
    assert_int_equal(tls_subject_matches("UID=u1+CN=x,O=y", "CN=x, UID=u1"), 1);
}

static void test_bad_pins(void **s)
{
    (void)s;
    const char *bad[] = {"", "   ", "PR1CLNT100", "CN", "=x", "CN=a,", "CN=a\\", "CN=a\\00b", "C N=x",
                         "CN=\"open", "CN=\"a\" b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (tls_subject_matches(SAP, bad[i]) != -1) fail_msg("pin '%s' was accepted", bad[i]);
    char err[300];
    assert_int_equal(tls_check_config("c", "k", "ca", "PR1CLNT100", TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.client_subject: 'PR1CLNT100' is not a distinguished name"));
}

static void test_config_rules(void **s)
{
    (void)s;
    char err[300];
    assert_int_equal(tls_check_config(NULL, NULL, NULL, NULL, TLS_DEFAULT_PRIORITIES, err, sizeof err), 0);
    assert_int_equal(tls_check_config("c.pem", NULL, NULL, NULL, TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.tls_key: missing"));
    assert_int_equal(tls_check_config(NULL, "k.pem", NULL, NULL, TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.tls_cert: missing"));
    assert_int_equal(tls_check_config(NULL, NULL, "ca.pem", NULL, TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.client_ca: requires listen.tls_cert"));
    assert_int_equal(tls_check_config("c", "k", NULL, "CN=x", TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.client_subject: requires listen.client_ca"));
    assert_int_equal(tls_check_config(NULL, NULL, NULL, NULL, "NORMAL:+BOGUS", err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.tls_priorities: invalid GnuTLS priority string near '+BOGUS'"));
    assert_int_equal(tls_check_config("/nonexistent/c.pem", "/nonexistent/k.pem", NULL, NULL,
                                      TLS_DEFAULT_PRIORITIES, err, sizeof err), -1);
    assert_non_null(strstr(err, "listen.tls_cert: cannot read /nonexistent/c.pem: No such file or directory"));
}

/* The default offers TLS 1.3 and 1.2, and SAP's TLS 1.2 suites. */
static void test_default_priorities(void **s)
{
    (void)s;
    gnutls_priority_t p;
    const char *at = NULL;
    assert_int_equal(gnutls_priority_init(&p, TLS_DEFAULT_PRIORITIES, &at), 0);
    int gcm128 = 0, gcm256 = 0, cbc = 0, rsa_kx = 0;
    for (unsigned i = 0;; i++) {
        unsigned idx;
        int rc = gnutls_priority_get_cipher_suite_index(p, i, &idx);
        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) break;
        if (rc < 0) continue;
        unsigned char id[2];
        gnutls_kx_algorithm_t kx;
        const char *name = gnutls_cipher_suite_info(idx, id, &kx, NULL, NULL, NULL);
        if (!name) continue;
        gcm128 |= strcmp(name, "TLS_ECDHE_RSA_AES_128_GCM_SHA256") == 0;
        gcm256 |= strcmp(name, "TLS_ECDHE_RSA_AES_256_GCM_SHA384") == 0;
        cbc |= strstr(name, "CBC") != NULL;
        rsa_kx |= kx == GNUTLS_KX_RSA;
    }
    const unsigned *vers;
    int nv = gnutls_priority_protocol_list(p, &vers);
    int v12 = 0, v13 = 0, old = 0;
    for (int i = 0; i < nv; i++) {
        v12 |= vers[i] == GNUTLS_TLS1_2;
        v13 |= vers[i] == GNUTLS_TLS1_3;
        old |= vers[i] == GNUTLS_TLS1_0 || vers[i] == GNUTLS_TLS1_1 || vers[i] == GNUTLS_SSL3;
    }
    gnutls_priority_deinit(p);
    assert_true(gcm128);
    assert_true(gcm256);
    assert_false(cbc);
    assert_false(rsa_kx);
    assert_true(v12 && v13);
    assert_false(old);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_matches),        cmocka_unit_test(test_pin_mismatches),
        cmocka_unit_test(test_escapes_and_aliases), cmocka_unit_test(test_bad_pins),
        cmocka_unit_test(test_config_rules),       cmocka_unit_test(test_default_priorities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
