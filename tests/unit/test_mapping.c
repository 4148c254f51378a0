/*
 * test_mapping — unit tests of the mapping module (issue 3): value
 * transforms (ALPHA, exact decimals, dates, UTF-8 truncation, key escaping),
 * routing and business keys for every basic type version, load errors that
 * name the JSON path, and engine semantics on hand-built IDoc models
 * (tests/unit/tdoc.h; no XML parser needed). The golden fixtures and the
 * property test live in test_mapping_golden.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/mapping.h"
#include "tests/unit/tdoc.h"

static char g_shipped[4096];

/* printf into a fresh heap string (tests only; the caller frees) */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    assert_non_null(s);
    return s;
}

static const char *root_dir(void)
{
    const char *r = getenv("MLC_ROOT");
    return r && *r ? r : ".";
}

/* absolute, so that files in /tmp can "extends" it */
static const char *shipped(void)
{
    char rel[1024];
    snprintf(rel, sizeof rel, "%s/config/mapping.json", root_dir());
    if (!realpath(rel, g_shipped)) snprintf(g_shipped, sizeof g_shipped, "%s", rel);
    return g_shipped;
}

static struct mapping *load_shipped(void)
{
    char err[512];
    struct mapping *m = mapping_load(shipped(), err, sizeof err);
    if (!m) fail_msg("%s", err);
    return m;
}

/* Write text to a temp file; returns its path (static buffer per slot). */
static const char *tmpfile_with(int slot, const char *text)
{
    static char paths[8][256];
    snprintf(paths[slot], sizeof paths[slot], "/tmp/test_mapping_%d_%d.json", (int)getpid(), slot);
    FILE *f = fopen(paths[slot], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

/* ---- transforms ---------------------------------------------------------- */

static void test_alpha10(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } t[] = {
        {"100003", "0000100003"},
        {"0000100003", "0000100003"},
        {"  42 ", "0000000042"},
        {"0", "0000000000"},
        {"000000000000", "0000000000"},
        {"1234567890", "1234567890"},
        {"12345678901", "12345678901"},        /* longer than 10: kept */
        {"00012345678901", "12345678901"},     /* zeros removed, still > 10 */
        {"dp09", "DP09"},                      /* non-numeric: upper-cased */
        {"ab-12x", "AB-12X"},
        {"0000ab", "0000AB"},                  /* non-numeric: zeros kept */
        {"12 34", "12 34"},
        {"m\xc3\xbcller", "M\xc3\xbcLLER"},    /* only ASCII letters change */
    };
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int n = mapping_alpha10(t[i].in, strlen(t[i].in), out, sizeof out);
        assert_true(n > 0);
        assert_string_equal(out, t[i].out);
    }
    assert_int_equal(mapping_alpha10("   ", 3, out, sizeof out), 0);
}

static void test_decimal(void **state)
{
    (void)state;
    static const struct { const char *in, *out; int rc; } t[] = {
        {"5602.800", "5602.8", 0}, {"100.00-", "-100", 0}, {"100.50-", "-100.5", 0},
        {"-100.20", "-100.2", 0}, {"       1", "1", 0}, {"0.000", "0", 0}, {"-0", "0", 0},
        {"0.00-", "0", 0}, {".5", "0.5", 0}, {"5.", "5", 0}, {"+3.10", "3.1", 0},
        {"10365.18", "10365.18", 0}, {" 1.00000 ", "1", 0}, {"007", "7", 0},
        {"123456789012345678901234567890.123456", "123456789012345678901234567890.123456", 0},
        {"1,5", NULL, -1}, {"abc", NULL, -1}, {"1e5", NULL, -1}, {"--1", NULL, -1},
        {"1.2.3", NULL, -1}, {"-", NULL, -1}, {".", NULL, -1}, {"1-2", NULL, -1}, {"-1-", NULL, -1},
        {"1234567890123456789012345678901234567890", NULL, -1},
        {"", NULL, 1}, {"   ", NULL, 1},
    };
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int rc = mapping_decimal(t[i].in, strlen(t[i].in), out, sizeof out);
        if (rc != t[i].rc) fail_msg("decimal('%s'): rc %d, want %d", t[i].in, rc, t[i].rc);
        if (rc == 0 && strcmp(out, t[i].out)) fail_msg("decimal('%s') = '%s', want '%s'", t[i].in, out, t[i].out);
    }
}

static void test_decimal_div(void **state)
{
    (void)state;
    static const struct { const char *a, *b; int scale; const char *out; } t[] = {
        {"100.50", "100", 2, "1.01"},   /* 1.005 -> half away from zero */
        {"100.50-", "100", 2, "-1.01"},
        {"-100.50", "100", 2, "-1.01"},
        {"10", "3", 2, "3.33"},
        {"20", "3", 2, "6.67"},
        {"2.5", "1", 0, "3"},
        {"-2.5", "1", 0, "-3"},
        {"0.125", "1", 2, "0.13"},
        {"0.124999", "1", 2, "0.12"},
        {"1.85", "1", 2, "1.85"},
        {"10365.18", "5602.800", 2, "1.85"},
        {"1", "8", 3, "0.125"},
        {"999999999999999.99", "0.01", 2, "99999999999999999"},
        {"1", "-3", 4, "-0.3333"},
        {"0.005", "1", 2, "0.01"},
        {"0.004", "1", 2, "0"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int rc = mapping_decimal_div(t[i].a, t[i].b, t[i].scale, out, sizeof out);
        if (rc != 0) fail_msg("%s / %s failed", t[i].a, t[i].b);
        if (strcmp(out, t[i].out)) fail_msg("%s / %s = %s, want %s", t[i].a, t[i].b, out, t[i].out);
    }
    assert_int_equal(mapping_decimal_div("1", "0", 2, out, sizeof out), -1);
    assert_int_equal(mapping_decimal_div("1", "0.000", 2, out, sizeof out), -1);
    assert_int_equal(mapping_decimal_div("1", "", 2, out, sizeof out), -1);
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    const char *m = "M\xc3\xbcller";                 /* Müller */
    assert_int_equal(mapping_utf8_prefix(m, strlen(m), 2), 3);   /* "Mü" */
    assert_int_equal(mapping_utf8_prefix(m, strlen(m), 1), 1);
    assert_int_equal(mapping_utf8_prefix(m, strlen(m), 100), strlen(m));
    const char *j = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";  /* 日本語 */
    assert_int_equal(mapping_utf8_prefix(j, strlen(j), 2), 6);
    const char *e = "a\xf0\x9f\x98\x80" "b";          /* a😀b: the emoji counts 2 (UTF-16) */
    assert_int_equal(mapping_utf8_prefix(e, strlen(e), 2), 1);
    assert_int_equal(mapping_utf8_prefix(e, strlen(e), 3), 5);
    const char *cut = "ab\xc3";                       /* a cut sequence: byte by byte */
    assert_int_equal(mapping_utf8_prefix(cut, strlen(cut), 3), 3);
    assert_int_equal(mapping_utf8_prefix("", 0, 5), 0);
}

static void test_key_path(void **state)
{
    (void)state;
    static const struct { const char *v, *path; } t[] = {
        {"0000100003", "accounts(mlc_sapvendorid='0000100003')"},
        {"O'BRIEN", "accounts(mlc_sapvendorid='O''BRIEN')"},
        {"4500-1.x_~", "accounts(mlc_sapvendorid='4500-1.x_~')"},
        {"A/B", "accounts(mlc_sapvendorid=@k)?@k='A%2FB'"},
        {"50%", "accounts(mlc_sapvendorid=@k)?@k='50%25'"},
        {"A B", "accounts(mlc_sapvendorid=@k)?@k='A%20B'"},
        {"a<b>*&:\\?+", "accounts(mlc_sapvendorid=@k)?@k='a%3Cb%3E%2A%26%3A%5C%3F%2B'"},
        {"O'B/1", "accounts(mlc_sapvendorid=@k)?@k='O''B%2F1'"},
        {"\xc3\x84", "accounts(mlc_sapvendorid=@k)?@k='%C3%84'"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *p = mapping_key_path("accounts", "mlc_sapvendorid", t[i].v);
        assert_non_null(p);
        if (strcmp(p, t[i].path)) fail_msg("key '%s' -> %s, want %s", t[i].v, p, t[i].path);
        free(p);
    }
}

/* ---- routing and business keys -------------------------------------------- */

static const char *VENDOR_SEGS =
    "E1LFA1M{MSGFN=005;LIFNR=100003;NAME1=Muster;KUNNR=17492;"
    "E1KNVKM{PARNR=152955;NAME1=Koch};E1KNVKM{PARNR=0000152956;NAME1=Ebert}}";
static const char *CUSTOMER_SEGS = "E1KNA1M{MSGFN=005;KUNNR=0000001990;NAME1=Kunde;E1KNVKM{PARNR=77}}";
static const char *PO_SEGS =
    "E1EDK01{BELNR=4500000123;CURCY=EUR};E1EDKA1{PARVW=LF;PARTN=100131};E1EDP01{POSEX=00010;MENGE=1}";

static void classify_one(const struct mapping *m, const char *control, const char *segs, int route,
                         const char *target, const char *keys)
{
    struct idoc *d = tdoc_new(control, segs);
    struct mapping_class mc;
    char err[256] = "";
    int rc = mapping_classify(m, d, &mc, err, sizeof err);
    if (rc != 0) fail_msg("%s: classify failed: %s", control, err);
    if (mc.route != route) fail_msg("%s: route %d, want %d", control, mc.route, route);
    if (target && strcmp(mc.target, target)) fail_msg("%s: target %s, want %s", control, mc.target, target);
    if (keys && strcmp(mc.keys, keys)) fail_msg("%s: keys '%s', want '%s'", control, mc.keys, keys);
    tdoc_free(d);
}

static void test_classify_versions(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char ctl[256];
    const char *vkeys = "vendor:0000100003 customer:0000017492 contact:0000152955 contact:0000152956";
    for (int v = 1; v <= 6; v++) {
        snprintf(ctl, sizeof ctl, "DOCNUM=1;IDOCTYP=CREMAS%02d;MESTYP=CREMAS", v);
        classify_one(m, ctl, VENDOR_SEGS, MAPPING_DELIVER, "vendor", vkeys);
    }
    for (int v = 1; v <= 7; v++) {
        snprintf(ctl, sizeof ctl, "DOCNUM=1;IDOCTYP=DEBMAS%02d;MESTYP=DEBMAS", v);
        classify_one(m, ctl, CUSTOMER_SEGS, MAPPING_DELIVER, "customer", "customer:0000001990 contact:0000000077");
    }
    for (int v = 1; v <= 5; v++) {
        snprintf(ctl, sizeof ctl, "DOCNUM=1;IDOCTYP=ORDERS%02d;MESTYP=ORDERS", v);
        classify_one(m, ctl, PO_SEGS, MAPPING_DELIVER, "purchase_order", "po:4500000123");
        snprintf(ctl, sizeof ctl, "DOCNUM=1;IDOCTYP=ORDERS%02d;MESTYP=ORDCHG", v);
        classify_one(m, ctl, PO_SEGS, MAPPING_DELIVER, "purchase_order", "po:4500000123");
    }
    /* other types: 422 */
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDRSP", PO_SEGS, MAPPING_UNSUPPORTED, NULL, "");
    classify_one(m, "DOCNUM=1;IDOCTYP=CREMAS07;MESTYP=CREMAS", VENDOR_SEGS, MAPPING_UNSUPPORTED, NULL, "");
    classify_one(m, "DOCNUM=1;IDOCTYP=DEBMAS08;MESTYP=DEBMAS", CUSTOMER_SEGS, MAPPING_UNSUPPORTED, NULL, "");
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS06;MESTYP=ORDERS", PO_SEGS, MAPPING_UNSUPPORTED, NULL, "");
    classify_one(m, "DOCNUM=1;IDOCTYP=MATMAS05;MESTYP=MATMAS", "E1MARAM{MATNR=1}", MAPPING_UNSUPPORTED, NULL, "");
    classify_one(m, "DOCNUM=1;IDOCTYP=DELFOR02;MESTYP=DELINS", "", MAPPING_UNSUPPORTED, NULL, "");
    mapping_free(m);
}

static void test_classify_extensions(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    /* CIMTYP: routed by the basic type behind it (IDOCTYP) */
    classify_one(m, "DOCNUM=1;IDOCTYP=CREMAS05;CIMTYP=ZCREMAS05X;MESTYP=/XYZ/VFI_CREMAS", VENDOR_SEGS,
                 MAPPING_DELIVER, "vendor", NULL);
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;CIMTYP=/LUMBERL/3PL_ORDERS05_EXT;MESTYP=ORDERS", PO_SEGS,
                 MAPPING_DELIVER, "purchase_order", "po:4500000123");
    classify_one(m, "DOCNUM=1;IDOCTYP=DEBMAS07;CIMTYP=ZDEBMAS07;MESTYP=ZDEBMAS", CUSTOMER_SEGS, MAPPING_DELIVER,
                 "customer", NULL);
    /* custom message types on master data are fine; on POs only ORDERS/ORDCHG */
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;CIMTYP=ZORD;MESTYP=/LUMBERL/VFI_ORDERS", PO_SEGS,
                 MAPPING_UNSUPPORTED, NULL, "");
    /* no IDOCTYP and no extension: the root element names the basic type */
    struct idoc *d = tdoc_new("DOCNUM=1;MESTYP=CREMAS", VENDOR_SEGS);
    d->root = "CREMAS05";
    struct mapping_class mc;
    char err[128];
    assert_int_equal(mapping_classify(m, d, &mc, err, sizeof err), 0);
    assert_int_equal(mc.route, MAPPING_DELIVER);
    tdoc_free(d);
    mapping_free(m);
}

static void test_classify_key_errors(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    struct mapping_class mc;
    char err[256];
    struct {
        const char *ctl, *segs, *want;
    } t[] = {
        {"DOCNUM=1;IDOCTYP=CREMAS05;MESTYP=CREMAS", "E1LFA1M{NAME1=X}", "mlc_sapvendorid"},
        {"DOCNUM=1;IDOCTYP=CREMAS05;MESTYP=CREMAS", "E1LFA1M{LIFNR=/}", "'/'"},
        {"DOCNUM=1;IDOCTYP=CREMAS05;MESTYP=CREMAS", "E1LFA1A{X=1}", "no E1LFA1M segment"},
        {"DOCNUM=1;IDOCTYP=DEBMAS06;MESTYP=DEBMAS", "E1KNA1M{KUNNR=  }", "mlc_sapcustomerid"},
        {"DOCNUM=1;IDOCTYP=DEBMAS06;MESTYP=DEBMAS", "E1KNA1M{KUNNR=1;E1KNVKM{NAME1=x}}", "mlc_sapcontactid"},
        {"DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDERS", "E1EDK01{CURCY=EUR}", "mlc_sapponumber"},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        struct idoc *d = tdoc_new(t[i].ctl, t[i].segs);
        err[0] = 0;
        int rc = mapping_classify(m, d, &mc, err, sizeof err);
        if (rc != -1) fail_msg("%s: classify should fail", t[i].segs);
        if (!strstr(err, t[i].want)) fail_msg("%s: error '%s' lacks '%s'", t[i].segs, err, t[i].want);
        tdoc_free(d);
    }
    /* the PO number falls back to E1EDK02[QUALF=001] */
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDCHG", "E1EDK01{CURCY=EUR};E1EDK02{QUALF=002;BELNR=X};E1EDK02{QUALF=001;BELNR=4500000777}",
                 MAPPING_DELIVER, "purchase_order", "po:4500000777");
    mapping_free(m);
}

static void test_classify_many_keys(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char segs[20000] = "E1KNA1M{KUNNR=4711";
    for (int i = 0; i < 200; i++) {
        char c[64];
        snprintf(c, sizeof c, ";E1KNVKM{PARNR=%d}", 1000 + i);
        strcat(segs, c);
    }
    strcat(segs, "}");
    struct idoc *d = tdoc_new("DOCNUM=1;IDOCTYP=DEBMAS06;MESTYP=DEBMAS", segs);
    struct mapping_class mc;
    char err[128];
    assert_int_equal(mapping_classify(m, d, &mc, err, sizeof err), 0);
    assert_true(strncmp(mc.keys, "customer:0000004711 contact:0000001000", 38) == 0);
    assert_true(strlen(mc.keys) < MAPPING_KEYS_MAX);
    tdoc_free(d);
    mapping_free(m);
}

static void test_accept_and_ignore(void **state)
{
    (void)state;
    char *text = fmt("{\"extends\": \"%s\", \"accept_and_ignore\": [\"ORDRSP\", {\"idoctyp\": \"MATMAS0*\"}]}", shipped());
    char err[512];
    struct mapping *m = mapping_load(tmpfile_with(0, text), err, sizeof err);
    free(text);
    if (!m) fail_msg("%s", err);
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDRSP", PO_SEGS, MAPPING_IGNORE, "ignore", "");
    classify_one(m, "DOCNUM=1;IDOCTYP=MATMAS05;MESTYP=MATMAS", "", MAPPING_IGNORE, "ignore", "");
    classify_one(m, "DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDERS", PO_SEGS, MAPPING_DELIVER, "purchase_order", NULL);
    classify_one(m, "DOCNUM=1;IDOCTYP=DELFOR02;MESTYP=DELINS", "", MAPPING_UNSUPPORTED, NULL, NULL);
    struct idoc *d = tdoc_new("DOCNUM=1;IDOCTYP=ORDERS05;MESTYP=ORDRSP", PO_SEGS);
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    assert_int_equal(mapping_apply(m, d, NULL, NULL, &ops, err, sizeof err), 1);
    assert_int_equal(ops.n, 0);
    tdoc_free(d);
    mapping_free(m);
}

struct thr {
    const struct mapping *m;
    int bad;
};

static void *classify_thread(void *ud)
{
    struct thr *t = ud;
    struct idoc *d = tdoc_new("DOCNUM=1;IDOCTYP=CREMAS05;MESTYP=CREMAS", VENDOR_SEGS);
    for (int i = 0; i < 2000; i++) {
        struct mapping_class mc;
        char err[128];
        if (mapping_classify(t->m, d, &mc, err, sizeof err) != 0 || strncmp(mc.keys, "vendor:0000100003", 17)) t->bad++;
    }
    tdoc_free(d);
    return NULL;
}

static void test_classify_threads(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    pthread_t th[4];
    struct thr t[4];
    for (int i = 0; i < 4; i++) {
        t[i].m = m;
        t[i].bad = 0;
        assert_int_equal(pthread_create(&th[i], NULL, classify_thread, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].bad, 0);
    }
    mapping_free(m);
}

/* ---- load errors ------------------------------------------------------------ */

#define MINI_ROUTE                                                                                   \
    "{\"name\": \"vendor\", \"match\": {\"idoctyp\": \"CREMAS05\"}, \"records\": [{\"name\": \"v\", "         \
    "\"for_each\": \"E1LFA1M\", \"entity\": \"accounts\", \"key\": {\"column\": \"k\", \"value\": \"LIFNR\"}, " \
    "\"columns\": {%s}}]}"

static void expect_load_error(const char *text, const char *want)
{
    char err[512] = "";
    struct mapping *m = mapping_load(tmpfile_with(1, text), err, sizeof err);
    if (m) {
        mapping_free(m);
        fail_msg("loaded although it should fail with '%s':\n%s", want, text);
    }
    if (!strstr(err, want)) fail_msg("error '%s'\n  does not contain '%s'", err, want);
}

static void expect_column_error(const char *column_json, const char *want)
{
    /* two good routes, then the broken one: the error must name routes[2] */
    char *bad = fmt(MINI_ROUTE, column_json);
    char *good = fmt(MINI_ROUTE, "\"name\": \"NAME1\"");
    char *text = fmt("{\"routes\": [%s, %s, %s]}", good, good, bad);
    expect_load_error(text, want);
    free(text);
    free(good);
    free(bad);
}

static void test_load_errors(void **state)
{
    (void)state;
    char err[512];
    assert_null(mapping_load("/nonexistent/mapping.json", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/mapping.json"));

    expect_load_error("{\"routes\": [", "not valid JSON (line 1");
    expect_load_error("[]", "must hold a JSON object");
    expect_load_error("{\"colour\": 1, \"routes\": []}", "mapping: colour: unknown key");
    expect_load_error("{}", "missing \"routes\"");
    expect_load_error("{\"orders_target\": \"invoice\", \"routes\": []}", "mapping: orders_target: must be");
    expect_load_error("{\"version\": 2, \"routes\": []}", "mapping: version: must be 1");
    expect_load_error("{\"routes\": {}}", "mapping: routes: must be a list");
    expect_load_error("{\"routes\": [{\"name\": \"x\", \"records\": []}]}", "mapping: routes[0]: missing \"match\"");
    expect_load_error("{\"routes\": [{\"name\": \"x\", \"match\": {\"idoctyp\": \"CRE*MAS\"}, \"records\": []}]}",
                      "routes[0].match.idoctyp: '*' is allowed only at the end");
    expect_load_error("{\"routes\": [{\"name\": \"x\", \"match\": {}, \"records\": []}]}", "routes[0].match: matches nothing");
    expect_load_error("{\"accept_and_ignore\": [3], \"routes\": []}", "mapping: accept_and_ignore[0]: must be an object");
    expect_load_error("{\"value_tables\": {\"t\": {\"a\": 1.5}}, \"routes\": []}", "mapping: value_tables.t.a: numbers must be integers");
    expect_load_error("{\"column_lengths\": {\"accounts\": {\"name\": 0}}, \"routes\": []}",
                      "mapping: column_lengths.accounts.name: 0 is out of range");

    /* the example of the issue: routes[2]...path: unknown filter syntax */
    expect_column_error("\"name\": {\"path\": \"E1EDKA1[PARVW\"}",
                        "mapping: routes[2].records[0].columns.name.path: unknown filter syntax 'E1EDKA1[PARVW'");
    expect_column_error("\"name\": \"E1EDKA1[PARVW]/X\"", "routes[2].records[0].columns.name: unknown filter syntax");
    expect_column_error("\"name\": \"E1EDKA1[=LF]/X\"", "unknown filter syntax");
    expect_column_error("\"name\": \"A//B\"", "routes[2].records[0].columns.name: empty segment name");
    expect_column_error("\"name\": \"A/B[X=1]\"", "a field cannot have a filter");
    expect_column_error("\"name\": \"A$B\"", "unknown path syntax");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"transform\": [\"alpha11\"]}",
                        "routes[2].records[0].columns.name.transform[0]: unknown transform 'alpha11'");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"transform\": [{\"table\": \"nope\"}]}",
                        "columns.name.transform[0].table: unknown value table 'nope'");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"transform\": [{\"div\": \"PEINH\"}]}",
                        "columns.name.transform[0]: \"div\" needs \"round\"");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"transform\": [{\"div\": \"PEINH\", \"round\": 2, \"if_zero\": \"0\"}]}",
                        "columns.name.transform[0].if_zero: must be a non-zero decimal");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"const\": \"x\"}", "columns.name: has both \"path\" and \"const\"");
    expect_column_error("\"name\": {\"pth\": \"NAME1\"}", "columns.name: needs one of path");
    expect_column_error("\"name\": {\"path\": \"NAME1\", \"els\": 1}", "columns.name.els: unknown key");
    expect_column_error("\"name\": [1]", "columns.name: a value must be");
    expect_column_error("\"name\": 1.5", "columns.name: numbers must be integers");
    expect_column_error("\"name\": {\"setting\": \"colour\"}", "columns.name.setting: unknown setting 'colour'");
    expect_column_error("\"name\": {\"when\": [{\"if\": {\"path\": \"LOEVM\"}, \"then\": 1}]}",
                        "columns.name.when[0].if: a condition needs exactly one of");
    expect_column_error("\"name\": {\"when\": [{\"if\": {\"path\": \"LOEVM\", \"equals\": 1}, \"then\": 1}]}",
                        "columns.name.when[0].if.equals: must be a string");
    expect_column_error("\"name\": {\"bind\": {\"entity\": \"accounts\", \"value\": \"X\"}}",
                        "columns.name.bind: missing \"key\"");
    expect_column_error("\"name\": {\"lookup\": {\"entity\": \"x\", \"match\": \"y\", \"value\": \"X\"}}",
                        "columns.name.lookup: missing \"id\"");
    expect_column_error("\"k\": \"LIFNR\"", "columns.k: the key column is never repeated in the body");
    expect_column_error("\"bad name\": \"LIFNR\"", "is not a valid column name");
    expect_column_error("\"name\": \"NAME1\", \"name\": \"NAME2\"", "routes[2].records[0].columns.name: duplicate column");
    expect_column_error("\"name\": {\"concat\": []}", "columns.name.concat: must be a non-empty list");
    expect_column_error("\"name\": {\"path\": \"EDI_DC40/A/B\"}", "EDI_DC40 is the control record");
    expect_column_error("\"name\": {\"path\": \"X\", \"max_length\": \"1\"}", "columns.name.max_length: must be an integer");

    /* record-level mistakes */
    expect_load_error("{\"routes\": [{\"name\": \"v\", \"match\": {\"idoctyp\": \"X\"}, \"records\": [{\"name\": \"v\", "
                      "\"entity\": \"accounts\"}]}]}",
                      "mapping: routes[0].records[0]: missing \"key\"");
    expect_load_error("{\"routes\": [{\"name\": \"v\", \"match\": {\"idoctyp\": \"X\"}, \"records\": [{\"name\": \"v\", "
                      "\"entity\": \"accounts\", \"key\": {\"column\": \"k\", \"value\": \"K\"}, \"link\": {\"other_party\": "
                      "\"customer\", \"other\": \"KUNNR\", \"other_key_column\": \"c\"}}]}]}",
                      "routes[0].records[0].link: a linked record needs key.business_key");
    expect_load_error("{\"routes\": [{\"name\": \"v\", \"match\": {\"idoctyp\": \"X\"}, \"records\": [{\"name\": \"v\", "
                      "\"entity\": \"accounts\", \"key\": {\"column\": \"k\", \"value\": \"K\"}, \"children\": [{\"name\": "
                      "\"c\", \"entity\": \"contacts\", \"for_each\": \"E1[X\", \"key\": {\"column\": \"k\", \"value\": \"K\"}}]}]}]}",
                      "mapping: routes[0].records[0].children[0].for_each: unknown filter syntax 'E1[X'");
    expect_load_error("{\"routes\": [{\"name\": \"v\", \"match\": {\"idoctyp\": \"X\"}, \"records\": [{\"name\": \"v\", "
                      "\"entity\": \"accounts\", \"key\": {\"column\": \"k\", \"value\": \"K\"}, \"actions\": [{\"path\": "
                      "\"Lose\", \"entity\": \"x\"}]}]}]}",
                      "routes[0].records[0].actions[0]: missing \"when\"");
    expect_load_error("{\"routes\": [{\"name\": \"v\", \"match\": {\"idoctyp\": \"X\"}, \"records\": [{\"name\": \"v\", "
                      "\"entity\": \"accounts\", \"key\": {\"column\": \"k\", \"value\": \"K\"}, \"delete_when\": {\"any\": []}}]}]}",
                      "routes[0].records[0].delete_when.any: must be a non-empty list");
}

static void test_load_errors_extends(void **state)
{
    (void)state;
    char *text;
    expect_load_error("{\"extends\": \"/nonexistent/base.json\", \"orders_target\": \"quote\"}", "/nonexistent/base.json");
    text = fmt("{\"extends\": \"%s\", \"add_columns\": {\"nobody\": {\"x\": \"Y\"}}}", shipped());
    expect_load_error(text, "mapping: add_columns.nobody: no record named 'nobody'");
    free(text);
    text = fmt("{\"extends\": \"%s\", \"add_columns\": {\"vendor\": {\"mlc_x\": {\"path\": \"Z1[A\"}}}}", shipped());
    expect_load_error(text, "mapping: add_columns.vendor.mlc_x.path: unknown filter syntax 'Z1[A'");
    free(text);
    text = fmt("{\"extends\": \"%s\", \"orders_target\": \"invoice\"}", shipped());
    expect_load_error(text, "mapping: orders_target: must be");
    free(text);
    expect_load_error("{\"add_columns\": {}, \"routes\": []}", "add_columns: only allowed together with \"extends\"");
    /* a loop */
    const char *self = tmpfile_with(1, "");
    text = fmt("{\"extends\": \"%s\"}", self);
    FILE *f = fopen(self, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    char err[512];
    assert_null(mapping_load(self, err, sizeof err));
    assert_non_null(strstr(err, "levels"));
}

static void test_load_shipped_targets(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    assert_string_equal(mapping_orders_target(m), "opportunity");
    mapping_free(m);
    static const char *const targets[] = {"salesorder", "quote"};
    for (int i = 0; i < 2; i++) {
        char err[512];
        char *text = fmt("{\"extends\": \"%s\", \"orders_target\": \"%s\"}", shipped(), targets[i]);
        m = mapping_load(tmpfile_with(2, text), err, sizeof err);
        free(text);
        if (!m) fail_msg("%s", err);
        assert_string_equal(mapping_orders_target(m), targets[i]);
        mapping_free(m);
    }
}

/* ---- engine semantics on hand-built models ------------------------------------- */

static char *map_json(const struct mapping *m, const struct mapping_links *links, const struct mapping_lookups *lk,
                      const char *ctl, const char *segs, int want_rc, char *err, size_t errlen)
{
    struct idoc *d = tdoc_new(ctl, segs);
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    int rc = mapping_apply(m, d, links, lk, &ops, err, errlen);
    if (rc != want_rc) fail_msg("apply rc %d (want %d): %s", rc, want_rc, err);
    char *j = mapping_ops_to_json(&ops, 0);
    mapping_ops_free(&ops);
    tdoc_free(d);
    return j;
}

static void expect_in(const char *json, const char *want)
{
    if (!strstr(json, want)) fail_msg("output lacks %s\n%s", want, json);
}

static void expect_not_in(const char *json, const char *want)
{
    if (strstr(json, want)) fail_msg("output should not contain %s\n%s", want, json);
}

static const char *CREMAS = "DOCNUM=0000000030000001;IDOCTYP=CREMAS05;MESTYP=CREMAS";
static const char *DEBMAS = "DOCNUM=0000000030000002;IDOCTYP=DEBMAS06;MESTYP=DEBMAS";
static const char *ORDERS = "DOCNUM=0000000030000003;IDOCTYP=ORDERS05;MESTYP=ORDERS";

static void test_apply_vendor_columns(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char err[256];
    char *j = map_json(m, NULL, NULL, CREMAS,
                       "E1LFA1M{LIFNR=100003;NAME1=  Muster  ;NAME2=GmbH;STRAS=/;ORT01=;TELF1=069 1;LOEVM=X;"
                       "E1LFB1M{ZTERM=0001};E1LFB1M{ZTERM=0002}}",
                       0, err, sizeof err);
    expect_in(j, "\"path\":\"accounts(mlc_sapvendorid='0000100003')\"");
    expect_in(j, "\"name\":\"Muster GmbH\"");
    expect_not_in(j, "address1_line1");               /* "/" = not sent */
    expect_in(j, "\"address1_city\":null");           /* blank = null */
    expect_in(j, "\"address1_postalcode\":null");     /* missing = null */
    expect_in(j, "\"mlc_sappaymentterms\":\"0001\""); /* first E1LFB1M */
    expect_not_in(j, "paymenttermscode");             /* empty value table: not sent */
    expect_in(j, "\"customertypecode\":11");
    expect_in(j, "\"statecode\":1,\"statuscode\":2");
    expect_not_in(j, "mlc_sapvendorid\":");           /* key never in the body */
    free(j);
    /* MSGFN 003 also deactivates; LOEVM "/" with no MSGFN 003 leaves the state alone */
    j = map_json(m, NULL, NULL, CREMAS, "E1LFA1M{LIFNR=1;MSGFN=003}", 0, err, sizeof err);
    expect_in(j, "\"statecode\":1,\"statuscode\":2");
    free(j);
    j = map_json(m, NULL, NULL, CREMAS, "E1LFA1M{LIFNR=1;MSGFN=005;LOEVM=/}", 0, err, sizeof err);
    expect_not_in(j, "statecode");
    free(j);
    j = map_json(m, NULL, NULL, CREMAS, "E1LFA1M{LIFNR=1;MSGFN=005}", 0, err, sizeof err);
    expect_in(j, "\"statecode\":0,\"statuscode\":1");
    expect_in(j, "\"name\":null");
    free(j);
    j = map_json(m, NULL, NULL, CREMAS, "E1LFA1M{LIFNR=1;NAME2=Zwei}", 0, err, sizeof err);
    expect_in(j, "\"name\":\"Zwei\"");
    free(j);
    j = map_json(m, NULL, NULL, CREMAS, "E1LFA1M{LIFNR=1;NAME1=Eins;NAME2=/}", 0, err, sizeof err);
    expect_not_in(j, "\"name\"");
    free(j);
    mapping_free(m);
}

static void test_apply_truncation(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char err[256], segs[4096], name[1024] = "";
    /* 170 x "ü" (2 bytes each): cut to 160 characters, never inside a sequence */
    for (int i = 0; i < 170; i++) strcat(name, "\xc3\xbc");
    snprintf(segs, sizeof segs, "E1LFA1M{LIFNR=1;NAME1=%s;PSTLZ=123456789012345678901234}", name);
    char *j = map_json(m, NULL, NULL, CREMAS, segs, 0, err, sizeof err);
    char want[1024] = "\"name\":\"";
    for (int i = 0; i < 160; i++) strcat(want, "\xc3\xbc");
    strcat(want, "\"");
    expect_in(j, want);
    expect_in(j, "\"address1_postalcode\":\"12345678901234567890\"");
    free(j);
    mapping_free(m);
}

static void test_apply_link_orders(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char err[256];
    /* 1: vendor names the customer, then the customer arrives with a blank LIFNR */
    struct mapping_links *l = mapping_links_mem_new();
    char *j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;KUNNR=200001;NAME1=V}", 0, err, sizeof err);
    expect_in(j, "accounts(mlc_sapvendorid='0000100003')");
    expect_in(j, "\"customertypecode\":3");
    expect_in(j, "\"mlc_issapcustomer\":true,\"mlc_sapcustomerid\":\"0000200001\"");
    free(j);
    j = map_json(m, l, NULL, DEBMAS, "E1KNA1M{KUNNR=200001;NAME1=C}", 0, err, sizeof err);
    expect_in(j, "accounts(mlc_sapcustomerid='0000200001')");
    expect_in(j, "\"mlc_issapvendor\":true,\"mlc_sapvendorid\":\"0000100003\"");
    expect_in(j, "\"customertypecode\":3");
    free(j);
    /* a later CREMAS with blank KUNNR keeps the link */
    j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;NAME1=V}", 0, err, sizeof err);
    expect_in(j, "\"customertypecode\":3");
    expect_in(j, "\"mlc_sapcustomerid\":\"0000200001\"");
    free(j);
    mapping_links_mem_free(l);

    /* 2: the customer exists first; the vendor names it: the vendor is written into the customer's account */
    l = mapping_links_mem_new();
    j = map_json(m, l, NULL, DEBMAS, "E1KNA1M{KUNNR=200001;NAME1=C}", 0, err, sizeof err);
    expect_in(j, "accounts(mlc_sapcustomerid='0000200001')");
    expect_not_in(j, "mlc_sapvendorid");
    free(j);
    j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;KUNNR=200001;NAME1=V;E1KNVKM{PARNR=5}}", 0, err, sizeof err);
    expect_in(j, "\"path\":\"accounts(mlc_sapcustomerid='0000200001')\"");
    expect_in(j, "\"mlc_issapvendor\":true");
    expect_in(j, "\"mlc_issapcustomer\":true,\"mlc_sapvendorid\":\"0000100003\"");
    expect_in(j, "\"parentcustomerid_account@odata.bind\":\"/accounts(mlc_sapvendorid='0000100003')\"");
    free(j);
    mapping_links_mem_free(l);

    /* 3: both exist separately, then the link appears: conflict warning, no merge */
    l = mapping_links_mem_new();
    free(map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;NAME1=V}", 0, err, sizeof err));
    free(map_json(m, l, NULL, DEBMAS, "E1KNA1M{KUNNR=200001;NAME1=C}", 0, err, sizeof err));
    j = map_json(m, l, NULL, DEBMAS, "E1KNA1M{KUNNR=200001;LIFNR=100003;NAME1=C}", 0, err, sizeof err);
    expect_in(j, "\"path\":\"accounts(mlc_sapcustomerid='0000200001')\"");
    expect_in(j, "\"warning\":\"customer 0000200001 and vendor 0000100003 are linked in SAP but are separate accounts");
    expect_not_in(j, "mlc_sapvendorid\":");
    expect_not_in(j, "mlc_issapvendor");
    free(j);
    mapping_links_mem_free(l);

    /* 4: the customer is already merged with another vendor: conflict, no second merge */
    l = mapping_links_mem_new();
    free(map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;KUNNR=200001}", 0, err, sizeof err));
    j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100004;KUNNR=200001}", 0, err, sizeof err);
    expect_in(j, "\"path\":\"accounts(mlc_sapvendorid='0000100004')\"");
    expect_in(j, "which already carries 0000100003");
    expect_in(j, "\"customertypecode\":11");
    free(j);
    /* 5: SAP links the vendor to another customer: the new link wins, with a warning */
    j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100003;KUNNR=200002}", 0, err, sizeof err);
    expect_in(j, "\"warning\":\"link changed: vendor 0000100003 was linked to customer 0000200001, now to customer 0000200002\"");
    expect_in(j, "\"mlc_sapcustomerid\":\"0000200002\"");
    free(j);
    /* the released customer can now be linked to the second vendor */
    j = map_json(m, l, NULL, CREMAS, "E1LFA1M{LIFNR=100004;KUNNR=200001}", 0, err, sizeof err);
    expect_not_in(j, "warning");
    expect_in(j, "\"mlc_sapcustomerid\":\"0000200001\"");
    free(j);
    mapping_links_mem_free(l);

    /* without a store, the IDoc's own link still gives one account */
    j = map_json(m, NULL, NULL, DEBMAS, "E1KNA1M{KUNNR=200001;LIFNR=100003}", 0, err, sizeof err);
    expect_in(j, "\"mlc_issapvendor\":true,\"mlc_sapvendorid\":\"0000100003\"");
    free(j);
    mapping_free(m);
}

static void test_apply_po(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    char err[256];
    struct mapping_lookups *lk = mapping_lookups_mem_new();
    const char *segs =
        "E1EDK01{ACTION=001;CURCY=EUR;BELNR=4500000123};E1EDKA1{PARVW=AG;PARTN=1};E1EDKA1{PARVW=LF;LIFNR=100131};"
        "E1EDP01{POSEX=00010;MENGE=5602.800;VPREI=100.50;PEINH=100;NETWR=10365.18;MATNR=M1;"
        "E1EDP20{EDATU=20240305};E1EDP19{QUALF=002;KTEXT=no};E1EDP19{QUALF=001;KTEXT=Board}};"
        "E1EDP01{POSEX=00020;ACTION=003};"
        "E1EDP01{POSEX=00030;MENGE=1;VPREI=1.85;PEINH=0;NETWR=100.00-;E1EDP20{EDATU=20240301}}";
    char *j = map_json(m, NULL, lk, ORDERS, segs, 0, err, sizeof err);
    /* the lookup GET first, then one change set: header, lines, close */
    expect_in(j, "[{\"docnum\":\"0000000030000003\",\"kind\":\"lookup\",\"method\":\"GET\","
                 "\"path\":\"transactioncurrencies?$select=transactioncurrencyid&$filter=isocurrencycode%20eq%20'EUR'&$top=1\"");
    expect_in(j, "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies({{transactioncurrencies:isocurrencycode=EUR}})\"");
    expect_in(j, "\"customerid_account@odata.bind\":\"/accounts(mlc_sapvendorid='0000100131')\"");
    expect_in(j, "\"estimatedvalue\":10265.18");          /* sum of NETWR incl. a trailing minus */
    expect_in(j, "\"estimatedclosedate\":\"2024-03-01\""); /* earliest EDATU */
    expect_in(j, "\"productdescription\":\"Board\"");
    expect_in(j, "\"quantity\":5602.8");
    expect_in(j, "\"priceperunit\":1.01");
    expect_in(j, "\"kind\":\"delete\",\"method\":\"DELETE\",\"path\":\"opportunityproducts(mlc_sappoitemid='4500000123-00020')\"");
    expect_in(j, "\"productdescription\":\"Item 00030\",\"quantity\":1,\"priceperunit\":1.85");
    expect_in(j, "\"kind\":\"action\",\"method\":\"POST\",\"path\":\"LoseOpportunity\"");
    expect_in(j, "\"Status\":4");
    free(j);
    /* the cache now knows a GET is planned: the next IDoc only shows the placeholder; then a hit */
    j = map_json(m, NULL, lk, ORDERS, segs, 0, err, sizeof err);
    expect_not_in(j, "\"kind\":\"lookup\"");
    expect_in(j, "{{transactioncurrencies:isocurrencycode=EUR}}");
    free(j);
    mapping_lookups_mem_set(lk, "transactioncurrencies:isocurrencycode=EUR", "11111111-2222-3333-4444-555555555555");
    j = map_json(m, NULL, lk, ORDERS, segs, 0, err, sizeof err);
    expect_in(j, "\"/transactioncurrencies(11111111-2222-3333-4444-555555555555)\"");
    expect_not_in(j, "needs");
    free(j);
    mapping_lookups_mem_free(lk);

    /* delivery can resolve a placeholder in place after running the GET */
    {
        struct idoc *d = tdoc_new(ORDERS, segs);
        struct mapping_ops ops;
        mapping_ops_init(&ops);
        assert_int_equal(mapping_apply(m, d, NULL, NULL, &ops, err, sizeof err), 0);
        assert_int_equal(mapping_ops_resolve(&ops, "transactioncurrencies:isocurrencycode=EUR", "x'}"), -1);
        assert_int_equal(mapping_ops_resolve(&ops, "transactioncurrencies:isocurrencycode=EUR", "0a0b-0c"), 1);
        j = mapping_ops_to_json(&ops, 0);
        expect_in(j, "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(0a0b-0c)\"");
        expect_not_in(j, "\"needs\"");
        free(j);
        mapping_ops_free(&ops);
        tdoc_free(d);
    }

    /* bad data: a non-decimal quantity names the segment */
    j = map_json(m, NULL, NULL, ORDERS, "E1EDK01{BELNR=1};E1EDP01{POSEX=10};E1EDP01{POSEX=20;MENGE=1x}", -1, err,
                 sizeof err);
    free(j);
    assert_non_null(strstr(err, "E1EDP01[2]/MENGE: '1x' is not a decimal"));
    j = map_json(m, NULL, NULL, ORDERS, "E1EDK01{BELNR=1};E1EDK03{IDDAT=002;DATUM=20230231}", -1, err, sizeof err);
    free(j);
    assert_non_null(strstr(err, "'20230231' is not a date"));
    mapping_free(m);
}


/* Format features the shipped mapping does not use: control-record and
 * absolute paths, [F!=V], in/blank/not/all, max, round, truncate, case,
 * inline tables with a "" entry, object values, actions on a condition,
 * a child in its parent's change set, business keys with blanks. */
static const char *FEATURES =
    "{\"value_tables\": {\"flags\": {\"X\": true, \"\": false}},"
    " \"column_lengths\": {\"things\": {\"short\": 3}},"
    " \"routes\": [{\"name\": \"thing\", \"match\": {\"idoctyp\": \"ZTHING0*\", \"mestyp\": [\"ZT\"]},"
    "  \"records\": [{\"name\": \"thing\", \"for_each\": \"Z1HEAD\", \"entity\": \"things\", \"changeset\": true,"
    "   \"key\": {\"column\": \"mlc_id\", \"business_key\": \"thing\", \"value\": \"ID\"},"
    "   \"columns\": {"
    "     \"sender\": \"EDI_DC40/SNDPRN\","
    "     \"top\": \"/Z1TOP/VAL\","
    "     \"not_b\": {\"max\": \"Z1ITEM[KIND!=B]/AMT\", \"each\": [\"decimal\"]},"
    "     \"in\": {\"when\": [{\"if\": {\"path\": \"CODE\", \"in\": [\"A\", \"C\"]}, \"then\": {\"const\": \"yes\"}}], \"else\": {\"const\": \"no\"}},"
    "     \"blank\": {\"when\": [{\"if\": {\"all\": [{\"path\": \"NOPE\", \"blank\": true}, {\"not\": {\"path\": \"CODE\", \"present\": true}}]}, \"then\": 1}], \"else\": 2},"
    "     \"rounded\": {\"path\": \"AMT\", \"transform\": [{\"round\": 1}]},"
    "     \"short\": {\"path\": \"TEXT\", \"transform\": [\"upper\"]},"
    "     \"cut\": {\"path\": \"TEXT\", \"transform\": [\"lower\", {\"truncate\": 2}]},"
    "     \"flag\": {\"path\": \"FLAG\", \"transform\": [{\"table\": \"flags\"}]},"
    "     \"obj\": {\"object\": {\"a\": \"CODE\", \"b\": {\"const\": null}, \"c\": \"SLASH\"}}"
    "   },"
    "   \"children\": [{\"name\": \"item\", \"for_each\": \"Z1ITEM\", \"entity\": \"items\","
    "     \"key\": {\"column\": \"mlc_item\", \"value\": {\"concat\": [\"/Z1HEAD/ID\", \"KIND\"], \"sep\": \".\"}},"
    "     \"columns\": {\"amt\": {\"path\": \"AMT\", \"transform\": [\"decimal\"]}}}],"
    "   \"actions\": [{\"when\": {\"path\": \"CODE\", \"equals\": \"C\"}, \"path\": \"Close\", \"entity\": \"things\","
    "     \"body\": {\"Status\": 5}}]}]}]}";

static void test_apply_format_features(void **state)
{
    (void)state;
    char err[512];
    struct mapping *m = mapping_load(tmpfile_with(3, FEATURES), err, sizeof err);
    if (!m) fail_msg("%s", err);
    const char *ctl = "DOCNUM=0000000030009999;IDOCTYP=ZTHING01;MESTYP=ZT;SNDPRN=PR1CLNT100";
    char *j = map_json(m, NULL, NULL, ctl,
                       "Z1TOP{VAL=top value};"
                       "Z1HEAD{ID=H 1;CODE=C;AMT=2.25-;TEXT=Abcdef;FLAG=;SLASH=/;"
                       "Z1ITEM{KIND=A;AMT=5.5};Z1ITEM{KIND=B;AMT=99};Z1ITEM{KIND=C;AMT=7}}",
                       0, err, sizeof err);
    expect_in(j, "\"path\":\"things(mlc_id=@k)?@k='H%201'\",\"entity\":\"things\",\"key\":\"thing:H%201\",\"changeset\":1");
    expect_in(j, "\"sender\":\"PR1CLNT100\",\"top\":\"top value\",\"not_b\":7,\"in\":\"yes\",\"blank\":2,"
                 "\"rounded\":-2.3,\"short\":\"ABC\",\"cut\":\"ab\",\"flag\":false,\"obj\":{\"a\":\"C\",\"b\":null}");
    expect_in(j, "\"path\":\"items(mlc_item=@k)?@k='H%201.A'\",\"entity\":\"items\",\"changeset\":1,\"body\":{\"amt\":5.5}");
    expect_not_in(j, "depends_on");  /* same change set: no depends_on */
    expect_in(j, "\"kind\":\"action\",\"method\":\"POST\",\"path\":\"Close\",\"entity\":\"things\",\"key\":\"thing:H%201\","
                 "\"changeset\":1,\"body\":{\"Status\":5}");
    free(j);
    /* routing by prefix and by message type */
    classify_one(m, "DOCNUM=1;IDOCTYP=ZTHING02;MESTYP=ZT", "Z1HEAD{ID=7}", MAPPING_DELIVER, "thing", "thing:7");
    classify_one(m, "DOCNUM=1;IDOCTYP=ZTHING02;MESTYP=ZX", "Z1HEAD{ID=7}", MAPPING_UNSUPPORTED, NULL, "");
    /* a condition on "/" is unknown: "in" not sent; the action does not fire */
    j = map_json(m, NULL, NULL, ctl, "Z1HEAD{ID=2;CODE=/;FLAG=X}", 0, err, sizeof err);
    expect_not_in(j, "\"in\"");
    expect_not_in(j, "\"blank\"");
    expect_in(j, "\"flag\":true");
    expect_not_in(j, "Close");
    free(j);
    mapping_free(m);
}

static void test_ops_json_pretty(void **state)
{
    (void)state;
    struct mapping *m = load_shipped();
    struct idoc *d = tdoc_new(CREMAS, "E1LFA1M{LIFNR=1;NAME1=A \"quoted\" \\\\ name}");
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    char err[128];
    assert_int_equal(mapping_apply(m, d, NULL, NULL, &ops, err, sizeof err), 0);
    char *p = mapping_ops_to_json(&ops, 1);
    assert_non_null(strstr(p, "\n    \"body\": {\n      \"name\": \"A \\\"quoted\\\" \\\\ name\",\n"));
    free(p);
    mapping_ops_free(&ops);
    mapping_ops_init(&ops);
    p = mapping_ops_to_json(&ops, 1);
    assert_string_equal(p, "[]\n");
    free(p);
    tdoc_free(d);
    mapping_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alpha10),
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_decimal_div),
        cmocka_unit_test(test_utf8_prefix),
        cmocka_unit_test(test_key_path),
        cmocka_unit_test(test_classify_versions),
        cmocka_unit_test(test_classify_extensions),
        cmocka_unit_test(test_classify_key_errors),
        cmocka_unit_test(test_classify_many_keys),
        cmocka_unit_test(test_accept_and_ignore),
        cmocka_unit_test(test_classify_threads),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_errors_extends),
        cmocka_unit_test(test_load_shipped_targets),
        cmocka_unit_test(test_apply_vendor_columns),
        cmocka_unit_test(test_apply_truncation),
        cmocka_unit_test(test_apply_link_orders),
        cmocka_unit_test(test_apply_po),
        cmocka_unit_test(test_apply_format_features),
        cmocka_unit_test(test_ops_json_pretty),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < 8; i++) {  /* the temp files of tmpfile_with */
        char p[256];
        snprintf(p, sizeof p, "/tmp/test_mapping_%d_%d.json", (int)getpid(), i);
        remove(p);
    }
    return rc;
}
