/*
 * test_idoc — the IDoc model and the streaming IDoc-XML parser (idoc/).
 *
 * Fixtures are read relative to the repo root: $MLC_ROOT, else ".".
 * IDOC_TEST_FILTER=<glob> runs a subset (cmocka_set_test_filter).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "idoc/idoc.h"
#include "idoc/idoc_json.h"
#include "idoc/idoc_pack.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif
#ifndef UNDER_SANITIZER
#define UNDER_SANITIZER 0
#endif

/* Every valid fixture: file, number of IDocs. */
static const struct { const char *file; size_t n; } FIXTURES[] = {
    { "test-fixtures/idoc/cremas05_vendor.xml", 1 },
    { "test-fixtures/idoc/cremas06_packet.xml", 3 },
    { "test-fixtures/idoc/debmas06_customer.xml", 1 },
    { "test-fixtures/idoc/debmas07_customer_contacts.xml", 1 },
    { "test-fixtures/idoc/orders05_po.xml", 1 },
    { "test-fixtures/idoc/ordchg_po.xml", 1 },
    { "test-fixtures/idoc/orders05_extension_zseg.xml", 1 },
    { "test-fixtures/idoc/cremas05_latin1.xml", 1 },
    { "test-fixtures/idoc/debmas06_nodecl.xml", 1 },
    { "test-fixtures/idoc/cremas05_blanks.xml", 1 },
    { "test-fixtures/idoc/orders05_soap.xml", 1 },
    { "test-fixtures/idoc/ordrsp_other.xml", 1 },
};
#define NFIXTURES (sizeof FIXTURES / sizeof FIXTURES[0])

/* ------------------------------------------------------------------------ */
/* helpers */

static char *read_file(const char *rel, size_t *len)
{
    const char *root = getenv("MLC_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root != NULL && root[0] != '\0' ? root : ".", rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s (set MLC_ROOT to the repo root)\n", path,
                strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf != NULL && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MAXDOCS 16

/* What a parse delivered, copied out of the callbacks. */
struct collect {
    cJSON *docs;                   /* array of idoc_json objects */
    size_t n;                      /* callbacks */
    char root[MAXDOCS][96];
    char docnum[MAXDOCS][32], mestyp[MAXDOCS][32], idoctyp[MAXDOCS][32], cimtyp[MAXDOCS][40];
    char sndprn[MAXDOCS][16], sndpor[MAXDOCS][16], mandt[MAXDOCS][8], credat[MAXDOCS][16],
         cretim[MAXDOCS][16];
    char *xml[MAXDOCS];
    size_t xml_len[MAXDOCS];
    size_t index[MAXDOCS];
    size_t stop_at;                /* refuse the stop_at-th IDoc (1-based); 0 = never */
    const char *stop_text;         /* what the refusal writes into err */
    void (*check)(const struct idoc *doc, void *arg);
    void *arg;
};

static void collect_init(struct collect *c)
{
    memset(c, 0, sizeof *c);
    c->docs = cJSON_CreateArray();
}

static void collect_free(struct collect *c)
{
    cJSON_Delete(c->docs);
    for (size_t i = 0; i < MAXDOCS; i++)
        free(c->xml[i]);
    memset(c, 0, sizeof *c);
}

static int collect_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    struct collect *c = ud;
    size_t i = c->n++;
    if (c->stop_at != 0 && c->n == c->stop_at) {
        if (c->stop_text != NULL)
            snprintf(err, errlen, "%s", c->stop_text);
        return 1;
    }
    if (c->check != NULL)
        c->check(doc, c->arg);
    cJSON_AddItemToArray(c->docs, idoc_json(doc));
    if (i < MAXDOCS) {
        snprintf(c->root[i], sizeof c->root[i], "%s", doc->root);
        snprintf(c->docnum[i], sizeof c->docnum[i], "%s", doc->docnum);
        snprintf(c->mestyp[i], sizeof c->mestyp[i], "%s", doc->mestyp);
        snprintf(c->idoctyp[i], sizeof c->idoctyp[i], "%s", doc->idoctyp);
        snprintf(c->cimtyp[i], sizeof c->cimtyp[i], "%s", doc->cimtyp);
        snprintf(c->sndprn[i], sizeof c->sndprn[i], "%s", doc->sndprn);
        snprintf(c->sndpor[i], sizeof c->sndpor[i], "%s", doc->sndpor);
        snprintf(c->mandt[i], sizeof c->mandt[i], "%s", doc->mandt);
        snprintf(c->credat[i], sizeof c->credat[i], "%s", doc->credat);
        snprintf(c->cretim[i], sizeof c->cretim[i], "%s", doc->cretim);
        c->xml[i] = malloc(doc->xml_len + 1);
        memcpy(c->xml[i], doc->xml, doc->xml_len);
        c->xml[i][doc->xml_len] = '\0';
        c->xml_len[i] = doc->xml_len;
        c->index[i] = doc->index;
    }
    return 0;
}

/* Parse buf in pieces of `piece` bytes (0 = one piece). */
static int parse_pieces(const char *buf, size_t len, size_t piece, const struct idoc_limits *lim,
                        struct collect *c, char *err, size_t errlen)
{
    struct idoc_parser *p = idoc_parser_new(lim, collect_cb, c);
    assert_non_null(p);
    int rc = IDOC_OK;
    if (piece == 0)
        piece = len;
    for (size_t off = 0; off < len && rc == IDOC_OK; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        rc = idoc_parser_feed(p, buf + off, n, err, errlen);
    }
    if (rc == IDOC_OK)
        rc = idoc_parser_finish(p, err, errlen);
    if (rc == IDOC_OK)
        assert_int_equal(idoc_parser_count(p), c->n);
    idoc_parser_free(p);
    return rc;
}

/* Parse a fixture in one piece, expecting success with n IDocs. */
static void parse_fixture(const char *file, size_t n, struct collect *c)
{
    size_t len;
    char *buf = read_file(file, &len);
    assert_non_null(buf);
    char err[512] = "";
    int rc = parse_pieces(buf, len, 0, NULL, c, err, sizeof err);
    if (rc != IDOC_OK)
        fprintf(stderr, "%s: %s: %s\n", file, idoc_status_name(rc), err);
    assert_int_equal(rc, IDOC_OK);
    assert_int_equal(c->n, n);
    free(buf);
}

static char *json_string(const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(s);
    return s;
}

/* JSON lookups on the `parse` shape */
static const char *jctl(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "control"), name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* the k-th (0-based) segment called name in an array of segments */
static const cJSON *jseg(const cJSON *segments, const char *name, int k)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, segments) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(s, "segment");
        if (cJSON_IsString(nm) && strcmp(nm->valuestring, name) == 0 && k-- == 0)
            return s;
    }
    return NULL;
}

static const cJSON *jsegs(const cJSON *doc_or_seg)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc_or_seg, "segments");
    return a != NULL ? a : cJSON_GetObjectItemCaseSensitive(doc_or_seg, "children");
}

static const char *jfield(const cJSON *seg, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(seg, "fields"), name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const struct idoc_segment *mseg(const struct idoc_segment *segs, size_t n, const char *name,
                                       int k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(segs[i].name, name) == 0 && k-- == 0)
            return &segs[i];
    return NULL;
}

static const char *XMLDECL = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t l = strlen(suffix);
    return len >= l && memcmp(s + len - l, suffix, l) == 0;
}

/* ------------------------------------------------------------------------ */
/* Valid fixtures, one by one */

static void check_cremas05_vendor(const struct idoc *doc, void *arg)
{
    (void)arg;
    assert_string_equal(doc->root, "CREMAS05");
    assert_string_equal(doc->docnum, "0000000091000001");
    assert_string_equal(doc->mandt, "100");
    assert_string_equal(doc->sndprn, "PR1CLNT100");
    assert_string_equal(doc->sndpor, "SAPPR1");
    assert_string_equal(doc->idoctyp, "CREMAS05");
    assert_string_equal(doc->cimtyp, "");
    assert_string_equal(doc->mestyp, "CREMAS");
    assert_string_equal(doc->credat, "20240311");
    assert_string_equal(doc->cretim, "091522");
    assert_int_equal(doc->index, 0);
    assert_int_equal(doc->ncontrol, 20);
    assert_string_equal(doc->control[0].name, "TABNAM");
    assert_string_equal(doc->control[0].value, "EDI_DC40");
    assert_string_equal(doc->control[19].name, "SERIAL");
    assert_string_equal(idoc_control_get(doc, "RCVPOR"), "MLCXMLHTTP");
    assert_string_equal(idoc_control_get(doc, "CIMTYP"), "");
    assert_null(idoc_control_get(doc, "ARCKEY"));

    assert_int_equal(doc->nsegments, 1);
    const struct idoc_segment *lfa1 = &doc->segments[0];
    assert_string_equal(lfa1->name, "E1LFA1M");
    assert_string_equal(idoc_segment_get(lfa1, "LIFNR"), "0000100310");
    assert_string_equal(idoc_segment_get(lfa1, "NAME1"), "Hoffmann Industriebedarf");
    assert_string_equal(idoc_segment_get(lfa1, "NAME2"), "GmbH & Co. KG");
    assert_string_equal(idoc_segment_get(lfa1, "STRAS"), "Industriestra\xc3\x9f" "e 42");
    assert_string_equal(idoc_segment_get(lfa1, "ORT01"), "Stuttgart");
    assert_string_equal(idoc_segment_get(lfa1, "PSTLZ"), "70565");
    assert_string_equal(idoc_segment_get(lfa1, "REGIO"), "08");
    assert_string_equal(idoc_segment_get(lfa1, "LAND1"), "DE");
    assert_string_equal(idoc_segment_get(lfa1, "TELF1"), "0711 7820-0");
    assert_string_equal(idoc_segment_get(lfa1, "TELFX"), "0711 7820-199");
    assert_string_equal(idoc_segment_get(lfa1, "KUNNR"), "0000200145");
    assert_string_equal(idoc_segment_get(lfa1, "LOEVM"), "");
    assert_null(idoc_segment_get(lfa1, "NAME3"));
    assert_string_equal(lfa1->fields[0].name, "MSGFN");
    assert_string_equal(lfa1->fields[0].value, "005");

    assert_int_equal(lfa1->nchildren, 4);
    assert_string_equal(lfa1->children[0].name, "E1LFB1M");
    assert_string_equal(lfa1->children[1].name, "E1LFM1M");
    assert_string_equal(lfa1->children[2].name, "E1LFBKM");
    assert_string_equal(lfa1->children[3].name, "E1KNVKM");
    assert_string_equal(idoc_segment_get(&lfa1->children[0], "ZTERM"), "ZB30");
    assert_string_equal(idoc_segment_get(&lfa1->children[0], "BUKRS"), "1000");
    assert_string_equal(idoc_segment_get(&lfa1->children[1], "EKORG"), "1000");
    assert_string_equal(idoc_segment_get(&lfa1->children[1], "WAERS"), "EUR");
    assert_string_equal(idoc_segment_get(&lfa1->children[2], "IBAN"), "DE56600501017402051588");
    assert_string_equal(idoc_segment_get(&lfa1->children[2], "BANKA"),
                        "Baden-W\xc3\xbcrttembergische Bank");
    assert_string_equal(idoc_segment_get(&lfa1->children[3], "PARNR"), "0000310001");
    assert_string_equal(idoc_segment_get(&lfa1->children[3], "NAMEV"), "Sabine");
    assert_string_equal(idoc_segment_get(&lfa1->children[3], "NAME1"), "Krause");
    for (size_t i = 0; i < lfa1->nchildren; i++)
        assert_int_equal(lfa1->children[i].nchildren, 0);

    /* standalone UTF-8 document, NUL-terminated */
    assert_true(starts_with(doc->xml, XMLDECL));
    assert_true(starts_with(doc->xml + strlen(XMLDECL), "<CREMAS05><IDOC BEGIN=\"1\">"));
    assert_true(ends_with(doc->xml, doc->xml_len, "</IDOC></CREMAS05>"));
    assert_int_equal(strlen(doc->xml), doc->xml_len);
    assert_non_null(strstr(doc->xml, "<NAME2>GmbH &amp; Co. KG</NAME2>"));
    assert_non_null(strstr(doc->xml, "Industriestra\xc3\x9f" "e 42"));
}

static void test_cremas05_vendor(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    c.check = check_cremas05_vendor;
    parse_fixture("test-fixtures/idoc/cremas05_vendor.xml", 1, &c);
    collect_free(&c);
}

static void test_cremas06_packet(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/cremas06_packet.xml", 3, &c);
    const char *want[] = { "0000000091000011", "0000000091000012", "0000000091000013" };
    const char *lifnr[] = { "0000100320", "0000100321", "0000100322" };
    for (size_t i = 0; i < 3; i++) {
        const cJSON *d = cJSON_GetArrayItem(c.docs, (int)i);
        assert_string_equal(c.docnum[i], want[i]);
        assert_int_equal(c.index[i], i);
        assert_string_equal(c.root[i], "CREMAS06");
        assert_string_equal(c.idoctyp[i], "CREMAS06");
        assert_string_equal(jctl(d, "OUTMOD"), "4");
        assert_string_equal(jctl(d, "DOCNUM"), want[i]);
        const cJSON *lfa1 = jseg(jsegs(d), "E1LFA1M", 0);
        assert_non_null(lfa1);
        assert_string_equal(jfield(lfa1, "LIFNR"), lifnr[i]);
        /* each IDoc's xml holds only that IDoc */
        assert_non_null(strstr(c.xml[i], want[i]));
        for (size_t j = 0; j < 3; j++)
            if (j != i)
                assert_null(strstr(c.xml[i], want[j]));
    }
    const cJSON *d0 = cJSON_GetArrayItem(c.docs, 0);
    assert_string_equal(jfield(jseg(jsegs(d0), "E1LFA1M", 0), "ORT01"), "G\xc3\xb6teborg");
    const cJSON *d2 = cJSON_GetArrayItem(c.docs, 2);
    const cJSON *lfa1 = jseg(jsegs(d2), "E1LFA1M", 0);
    assert_string_equal(jfield(lfa1, "LOEVM"), "X");
    assert_string_equal(jfield(jseg(jsegs(lfa1), "E1LFB1M", 0), "ZTERM"), "ZB14");
    assert_null(jseg(jsegs(lfa1), "E1LFM1M", 0));
    collect_free(&c);
}

static void test_debmas06_customer(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/debmas06_customer.xml", 1, &c);
    const cJSON *d = cJSON_GetArrayItem(c.docs, 0);
    assert_string_equal(c.root[0], "DEBMAS06");
    assert_string_equal(c.docnum[0], "0000000091000021");
    assert_string_equal(c.mestyp[0], "DEBMAS");
    const cJSON *kna1 = jseg(jsegs(d), "E1KNA1M", 0);
    assert_non_null(kna1);
    assert_string_equal(jfield(kna1, "KUNNR"), "0000200145");
    assert_string_equal(jfield(kna1, "LIFNR"), "0000100310");
    assert_string_equal(jfield(kna1, "NAME2"), "GmbH & Co. KG");
    const cJSON *knvv = jseg(jsegs(kna1), "E1KNVVM", 0);
    assert_non_null(knvv);
    assert_string_equal(jfield(knvv, "VKORG"), "1000");
    assert_string_equal(jfield(knvv, "VTWEG"), "10");
    assert_string_equal(jfield(knvv, "SPART"), "00");
    assert_int_equal(cJSON_GetArraySize(jsegs(knvv)), 5);
    const char *parvw[] = { "AG", "RE", "RG", "WE" };
    for (int i = 0; i < 4; i++)
        assert_string_equal(jfield(jseg(jsegs(knvv), "E1KNVPM", i), "PARVW"), parvw[i]);
    assert_string_equal(jfield(jseg(jsegs(knvv), "E1KNVIM", 0), "TATYP"), "MWST");
    const cJSON *knb1 = jseg(jsegs(kna1), "E1KNB1M", 0);
    assert_string_equal(jfield(knb1, "ZTERM"), "ZB30");
    assert_string_equal(jfield(knb1, "AKONT"), "0000140000");
    collect_free(&c);
}

static void test_debmas07_contacts(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/debmas07_customer_contacts.xml", 1, &c);
    const cJSON *d = cJSON_GetArrayItem(c.docs, 0);
    assert_string_equal(c.root[0], "DEBMAS07");
    assert_string_equal(c.idoctyp[0], "DEBMAS07");
    const cJSON *kna1 = jseg(jsegs(d), "E1KNA1M", 0);
    assert_string_equal(jfield(kna1, "KUNNR"), "0000200178");
    assert_string_equal(jfield(kna1, "NAME1"), "Alpenland Handels AG");
    assert_string_equal(jfield(jseg(jsegs(kna1), "E1KNVVM", 0), "VKORG"), "1000");
    assert_string_equal(jfield(jseg(jsegs(kna1), "E1KNB1M", 0), "ZTERM"), "ZB14");
    const cJSON *k1 = jseg(jsegs(kna1), "E1KNVKM", 0), *k2 = jseg(jsegs(kna1), "E1KNVKM", 1);
    assert_non_null(k1);
    assert_non_null(k2);
    assert_null(jseg(jsegs(kna1), "E1KNVKM", 2));
    assert_string_equal(jfield(k1, "PARNR"), "0000320041");
    assert_string_equal(jfield(k1, "NAMEV"), "Katharina");
    assert_string_equal(jfield(k1, "NAME1"), "Oberhofer");
    assert_string_equal(jfield(k1, "TELF1"), "+43 512 394 211");
    assert_string_equal(jfield(k2, "PARNR"), "0000320042");
    assert_string_equal(jfield(k2, "NAMEV"), "Florian");
    assert_string_equal(jfield(k2, "NAME1"), "Wechselberger");
    collect_free(&c);
}

static void check_orders05(const struct idoc *doc, void *arg)
{
    (void)arg;
    const struct idoc_segment *k01 = mseg(doc->segments, doc->nsegments, "E1EDK01", 0);
    assert_non_null(k01);
    assert_string_equal(idoc_segment_get(k01, "BELNR"), "4500017321");
    assert_string_equal(idoc_segment_get(k01, "CURCY"), "EUR");
    assert_string_equal(idoc_segment_get(k01, "ACTION"), "000");
    const char *parvw[] = { "LF", "AG", "WE" };
    for (int i = 0; i < 3; i++)
        assert_string_equal(idoc_segment_get(mseg(doc->segments, doc->nsegments, "E1EDKA1", i),
                                             "PARVW"), parvw[i]);
    assert_null(mseg(doc->segments, doc->nsegments, "E1EDKA1", 3));
    assert_string_equal(idoc_segment_get(mseg(doc->segments, doc->nsegments, "E1EDKA1", 0),
                                         "PARTN"), "0000100310");
    assert_string_equal(idoc_segment_get(mseg(doc->segments, doc->nsegments, "E1EDK02", 0),
                                         "QUALF"), "001");
    assert_non_null(mseg(doc->segments, doc->nsegments, "E1EDK03", 2));
    const char *posex[] = { "00010", "00020", "00030" };
    const char *netwr[] = { "900.00", "325.00", "240.00" };
    for (int i = 0; i < 3; i++) {
        const struct idoc_segment *p01 = mseg(doc->segments, doc->nsegments, "E1EDP01", i);
        assert_non_null(p01);
        assert_string_equal(idoc_segment_get(p01, "POSEX"), posex[i]);
        assert_string_equal(idoc_segment_get(p01, "NETWR"), netwr[i]);
        assert_non_null(mseg(p01->children, p01->nchildren, "E1EDP20", 0));
        const struct idoc_segment *p19 = mseg(p01->children, p01->nchildren, "E1EDP19", 0);
        assert_non_null(p19);
        assert_string_equal(idoc_segment_get(p19, "QUALF"), "001");
    }
    const struct idoc_segment *p3 = mseg(doc->segments, doc->nsegments, "E1EDP01", 2);
    assert_string_equal(idoc_segment_get(mseg(p3->children, p3->nchildren, "E1EDP20", 1), "EDATU"),
                        "20240416");
    assert_string_equal(idoc_segment_get(mseg(p3->children, p3->nchildren, "E1EDP19", 0), "KTEXT"),
                        "Washer A13 DIN 125 steel zinc plated");
    assert_null(mseg(doc->segments, doc->nsegments, "E1EDP01", 3));
    const struct idoc_segment *s1 = mseg(doc->segments, doc->nsegments, "E1EDS01", 0);
    const struct idoc_segment *s2 = mseg(doc->segments, doc->nsegments, "E1EDS01", 1);
    assert_string_equal(idoc_segment_get(s1, "SUMID"), "001");
    assert_string_equal(idoc_segment_get(s1, "SUMME"), "3");
    assert_string_equal(idoc_segment_get(s2, "SUMID"), "002");
    assert_string_equal(idoc_segment_get(s2, "SUMME"), "1465.00");
    /* the last segment is the summary */
    assert_string_equal(doc->segments[doc->nsegments - 1].name, "E1EDS01");
    /* every EDI_DC40 field, empty ones included, in document order */
    assert_int_equal(doc->ncontrol, 36);
    assert_string_equal(doc->control[7].name, "EXPRSS");
    assert_string_equal(doc->control[7].value, "");
    assert_string_equal(doc->control[35].name, "SERIAL");
    assert_string_equal(doc->control[35].value, "20240314101506");
}

static void test_orders05_po(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    c.check = check_orders05;
    parse_fixture("test-fixtures/idoc/orders05_po.xml", 1, &c);
    assert_string_equal(c.root[0], "ORDERS05");
    assert_string_equal(c.mestyp[0], "ORDERS");
    assert_string_equal(c.docnum[0], "0000000091000031");
    collect_free(&c);
}

/* the `parse` output for one fixture, against a checked-in file (made by an
 * independent implementation, not by this one) */
static void test_orders05_json_expected(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/orders05_po.xml", 1, &c);
    size_t len;
    char *want_text = read_file("test-fixtures/idoc/orders05_po.parse.json", &len);
    assert_non_null(want_text);
    cJSON *want = cJSON_Parse(want_text);
    assert_non_null(want);
    char *a = json_string(c.docs), *b = json_string(want);
    if (strcmp(a, b) != 0)
        fprintf(stderr, "got:  %.300s\nwant: %.300s\n", a, b);
    assert_string_equal(a, b);   /* order-sensitive: fields in document order */
    free(a);
    free(b);
    cJSON_Delete(want);
    free(want_text);
    collect_free(&c);
}

static void test_ordchg(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/ordchg_po.xml", 1, &c);
    const cJSON *d = cJSON_GetArrayItem(c.docs, 0);
    assert_string_equal(c.mestyp[0], "ORDCHG");
    assert_string_equal(c.idoctyp[0], "ORDERS05");
    assert_string_equal(jfield(jseg(jsegs(d), "E1EDK01", 0), "ACTION"), "004");
    assert_string_equal(jfield(jseg(jsegs(d), "E1EDK01", 0), "BELNR"), "4500017321");
    const cJSON *p1 = jseg(jsegs(d), "E1EDP01", 0), *p2 = jseg(jsegs(d), "E1EDP01", 1);
    assert_string_equal(jfield(p1, "POSEX"), "00020");
    assert_string_equal(jfield(p1, "ACTION"), "002");
    assert_string_equal(jfield(p1, "MENGE"), "8000.000");
    assert_string_equal(jfield(p2, "POSEX"), "00030");
    assert_string_equal(jfield(p2, "ACTION"), "003");
    assert_null(jseg(jsegs(d), "E1EDP01", 2));
    const cJSON *t2 = jseg(jsegs(jseg(jsegs(d), "E1EDKT1", 0)), "E1EDKT2", 0);
    assert_string_equal(jfield(t2, "TDLINE"),
                        "\xc3\x84nderung: Pos. 20 Menge erh\xc3\xb6ht, Pos. 30 storniert.");
    collect_free(&c);
}

static void check_extension(const struct idoc *doc, void *arg)
{
    (void)arg;
    assert_string_equal(doc->root, "_-ACME_-ORDERS05_EXT");
    assert_string_equal(doc->cimtyp, "/ACME/ORDERS05_EXT");
    assert_string_equal(doc->idoctyp, "ORDERS05");
    /* Z-segments nest under their standard parents, never at top level */
    assert_null(mseg(doc->segments, doc->nsegments, "_-ACME_-Z1EDP01", 0));
    assert_null(mseg(doc->segments, doc->nsegments, "_-ACME_-Z1EDK01", 0));
    const struct idoc_segment *k01 = mseg(doc->segments, doc->nsegments, "E1EDK01", 0);
    const struct idoc_segment *zk = mseg(k01->children, k01->nchildren, "_-ACME_-Z1EDK01", 0);
    assert_non_null(zk);
    assert_string_equal(idoc_segment_get(zk, "ZZPROJECT"), "PRJ-2024-017");
    const struct idoc_segment *p1 = mseg(doc->segments, doc->nsegments, "E1EDP01", 0);
    assert_int_equal(p1->nchildren, 3);
    assert_string_equal(p1->children[2].name, "_-ACME_-Z1EDP01");
    assert_string_equal(idoc_segment_get(&p1->children[2], "ZZDRAWING"), "DWG-40041-C");
    assert_string_equal(idoc_segment_get(&p1->children[2], "ZZCERT_REQUIRED"), "X");
    const struct idoc_segment *p2 = mseg(doc->segments, doc->nsegments, "E1EDP01", 1);
    const struct idoc_segment *z2 = mseg(p2->children, p2->nchildren, "_-ACME_-Z1EDP01", 0);
    assert_non_null(z2);
    assert_int_equal(z2->nfields, 3);
    assert_string_equal(idoc_segment_get(z2, "ZZDRAWING"), "");
    assert_true(starts_with(doc->xml + strlen(XMLDECL), "<_-ACME_-ORDERS05_EXT><IDOC BEGIN=\"1\">"));
    assert_true(ends_with(doc->xml, doc->xml_len, "</IDOC></_-ACME_-ORDERS05_EXT>"));
}

static void test_extension_zseg(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    c.check = check_extension;
    parse_fixture("test-fixtures/idoc/orders05_extension_zseg.xml", 1, &c);
    const cJSON *p1 = jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1EDP01", 0);
    assert_string_equal(jfield(jseg(jsegs(p1), "_-ACME_-Z1EDP01", 0), "ZZREVISION"), "C");
    collect_free(&c);
}

static void test_latin1(void **state)
{
    (void)state;
    size_t len;
    char *raw = read_file("test-fixtures/idoc/cremas05_latin1.xml", &len);
    assert_non_null(raw);
    /* the fixture really is Latin-1: 0xFC for u-umlaut, no UTF-8 sequence */
    assert_non_null(strstr(raw, "M\xfcller GmbH"));
    assert_null(strstr(raw, "\xc3\xbc"));
    free(raw);

    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/cremas05_latin1.xml", 1, &c);
    const cJSON *lfa1 = jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1LFA1M", 0);
    assert_string_equal(jfield(lfa1, "NAME1"), "M\xc3\xbcller GmbH");
    assert_string_equal(jfield(lfa1, "NAME2"), "Pr\xc3\xa4zisionsteile & Zubeh\xc3\xb6r");
    assert_string_equal(jfield(lfa1, "STRAS"), "Gartenstra\xc3\x9f" "e 15");
    assert_string_equal(jfield(lfa1, "ORT01"), "W\xc3\xbcrzburg");
    const cJSON *knvk = jseg(jsegs(lfa1), "E1KNVKM", 0);
    assert_string_equal(jfield(knvk, "NAMEV"), "J\xc3\xbcrgen");
    assert_string_equal(jfield(knvk, "NAME1"), "Wei\xc3\x9f");
    /* the re-serialised IDoc is UTF-8 and says so */
    assert_true(starts_with(c.xml[0], XMLDECL));
    assert_null(strstr(c.xml[0], "ISO-8859-1"));
    assert_non_null(strstr(c.xml[0], "<NAME1>M\xc3\xbcller GmbH</NAME1>"));
    assert_null(strstr(c.xml[0], "&#"));
    collect_free(&c);
}

static void test_nodecl(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/debmas06_nodecl.xml", 1, &c);
    assert_string_equal(c.root[0], "DEBMAS06");
    assert_string_equal(c.docnum[0], "0000000091000023");
    const cJSON *kna1 = jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1KNA1M", 0);
    assert_string_equal(jfield(kna1, "KUNNR"), "0000200190");
    assert_string_equal(jfield(kna1, "PSTLZ"), "LS11 5QN");
    assert_true(starts_with(c.xml[0], XMLDECL));
    collect_free(&c);
}

static void test_blanks(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/cremas05_blanks.xml", 1, &c);
    const cJSON *d = cJSON_GetArrayItem(c.docs, 0);
    /* control values as sent; the convenience copies trimmed */
    assert_string_equal(jctl(d, "MESTYP"), "CREMAS   ");
    assert_string_equal(c.mestyp[0], "CREMAS");
    assert_string_equal(jctl(d, "RCVPRN"), "MLCONNECT ");
    assert_string_equal(jctl(d, "TEST"), "");
    assert_string_equal(jctl(d, "EXPRSS"), "");
    assert_string_equal(c.cimtyp[0], "");
    const cJSON *lfa1 = jseg(jsegs(d), "E1LFA1M", 0);
    assert_string_equal(jfield(lfa1, "MSGFN"), "004");
    assert_string_equal(jfield(lfa1, "NAME1"), "Bauer & S\xc3\xb6hne Werkzeugbau");
    assert_string_equal(jfield(lfa1, "NAME2"), "   ");
    assert_string_equal(jfield(lfa1, "ORT01"), "Augsburg   ");
    assert_string_equal(jfield(lfa1, "STRAS"), " Haunstetter Str.  19 ");
    assert_string_equal(jfield(lfa1, "TELF1"), "  0821 45530");
    assert_string_equal(jfield(lfa1, "TELFX"), "/");
    assert_string_equal(jfield(lfa1, "SPERM"), "");
    assert_string_equal(jfield(lfa1, "LOEVM"), "");
    assert_string_equal(jfield(lfa1, "KUNNR"), "");
    const cJSON *lfb1 = jseg(jsegs(lfa1), "E1LFB1M", 0);
    assert_string_equal(jfield(lfb1, "BUKRS"), "1000  ");
    assert_string_equal(jfield(lfb1, "ZTERM"), "/");
    assert_string_equal(jfield(lfb1, "ZWELS"), "");
    assert_string_equal(jfield(lfb1, "WEBTR"), "      0.00");
    const cJSON *lfm1 = jseg(jsegs(lfa1), "E1LFM1M", 0);
    assert_string_equal(jfield(lfm1, "PLIFZ"), "  5");
    assert_string_equal(jfield(lfm1, "MINBW"), "          100.00-");
    assert_non_null(strstr(c.xml[0], "<NAME1>Bauer &amp; S\xc3\xb6hne Werkzeugbau</NAME1>"));
    assert_non_null(strstr(c.xml[0], "<NAME2>   </NAME2>"));
    collect_free(&c);
}

static void test_ordrsp_other(void **state)
{
    (void)state;
    struct collect c;
    collect_init(&c);
    parse_fixture("test-fixtures/idoc/ordrsp_other.xml", 1, &c);
    assert_string_equal(c.mestyp[0], "ORDRSP");
    assert_string_equal(c.idoctyp[0], "ORDERS05");
    assert_string_equal(c.root[0], "ORDERS05");
    assert_string_equal(c.docnum[0], "0000000091000035");
    collect_free(&c);
}

/* ------------------------------------------------------------------------ */
/* SOAP: the fixture, and generated variants (SOAP 1.2 with a default
 * namespace on the root; every element prefixed; namespaced attributes) */

static char *strdup_range(const char *b, const char *e)
{
    char *r = malloc((size_t)(e - b) + 1);
    memcpy(r, b, (size_t)(e - b));
    r[e - b] = '\0';
    return r;
}

/* "<IDOC ...>...</IDOC>" of a document */
static char *idoc_body(const char *doc)
{
    const char *b = strstr(doc, "<IDOC");
    const char *e = strstr(doc, "</IDOC>");
    assert_non_null(b);
    assert_non_null(e);
    return strdup_range(b, e + strlen("</IDOC>"));
}

/* every tag of body prefixed with pfx: "<A>" -> "<ns0:A>", "</A>" -> "</ns0:A>" */
static char *prefix_tags(const char *body, const char *pfx)
{
    size_t n = 0;
    for (const char *s = body; *s; s++)
        n += (*s == '<') ? strlen(pfx) + 2 : 1;
    char *r = malloc(n + 1), *w = r;
    for (const char *s = body; *s; s++) {
        *w++ = *s;
        if (*s == '<') {
            if (s[1] == '/')
                *w++ = *++s;
            memcpy(w, pfx, strlen(pfx));
            w += strlen(pfx);
        }
    }
    *w = '\0';
    return r;
}

static char *concat(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *r = malloc(la + lb + lc + 1);
    memcpy(r, a, la);
    memcpy(r + la, b, lb);
    memcpy(r + la + lb, c, lc + 1);
    return r;
}

/* parse text, expect 1 IDoc; return its JSON text; check root and xml */
static char *parse_one_json(const char *text, const char *want_root, char **xml_out)
{
    struct collect c;
    collect_init(&c);
    char err[512] = "";
    int rc = parse_pieces(text, strlen(text), 0, NULL, &c, err, sizeof err);
    if (rc != IDOC_OK)
        fprintf(stderr, "%s: %s\n", idoc_status_name(rc), err);
    assert_int_equal(rc, IDOC_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.root[0], want_root);
    char *j = json_string(cJSON_GetArrayItem(c.docs, 0));
    if (xml_out != NULL) {
        *xml_out = c.xml[0];
        c.xml[0] = NULL;
    }
    collect_free(&c);
    return j;
}

static void test_soap(void **state)
{
    (void)state;
    size_t len;
    char *text = read_file("test-fixtures/idoc/orders05_soap.xml", &len);
    assert_non_null(text);
    char *xml = NULL;
    char *soap_json = parse_one_json(text, "ORDERS05", &xml);
    /* unwrapped: a plain IDoc-XML document, no envelope, no namespaces */
    assert_true(starts_with(xml, XMLDECL));
    assert_true(starts_with(xml + strlen(XMLDECL), "<ORDERS05><IDOC BEGIN=\"1\">"));
    assert_true(ends_with(xml, strlen(xml), "</IDOC></ORDERS05>"));
    assert_null(strstr(xml, "Envelope"));
    assert_null(strstr(xml, "Body"));
    assert_null(strstr(xml, "xmlns"));
    assert_null(strstr(xml, "ns0:"));
    char *again = parse_one_json(xml, "ORDERS05", NULL);
    assert_string_equal(again, soap_json);
    free(again);

    /* the same IDoc without any envelope gives the same JSON */
    char *body = idoc_body(text);
    char *plain = concat("<ORDERS05>", body, "</ORDERS05>");
    char *plain_json = parse_one_json(plain, "ORDERS05", NULL);
    assert_string_equal(plain_json, soap_json);
    cJSON *pj = cJSON_Parse(plain_json);
    assert_string_equal(jctl(pj, "DOCNUM"), "0000000091000034");
    assert_string_equal(jfield(jseg(jsegs(pj), "E1EDKA1", 0), "ORT01"), "G\xc3\xb6teborg");
    cJSON_Delete(pj);

    /* SOAP 1.2, root with a default namespace: IDOC and all below it are
     * in that namespace */
    char *v12 = concat("<?xml version=\"1.0\"?>\n<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/"
                       "soap-envelope\"><env:Header><x:Trace xmlns:x=\"urn:trace\">t</x:Trace>"
                       "</env:Header><env:Body><ORDERS05 xmlns=\"urn:sap-com:document:sap:idoc:soap:"
                       "messages\">", body, "</ORDERS05></env:Body></env:Envelope>");
    char *x12 = NULL;
    char *j12 = parse_one_json(v12, "ORDERS05", &x12);
    assert_string_equal(j12, plain_json);
    assert_null(strstr(x12, "xmlns"));
    char *j12b = parse_one_json(x12, "ORDERS05", NULL);
    assert_string_equal(j12b, plain_json);

    /* every element of the IDoc prefixed, plus namespaced attributes */
    char *pbody = prefix_tags(body, "ns0:");
    char *pref = concat("<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" "
                        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><SOAP-ENV:Body>"
                        "<ns0:ORDERS05 xmlns:ns0=\"urn:sap-com:document:sap:idoc:soap:messages\" "
                        "xsi:type=\"ns0:ORDERS05\">", pbody, "</ns0:ORDERS05></SOAP-ENV:Body>"
                        "</SOAP-ENV:Envelope>");
    char *xp = NULL;
    char *jp = parse_one_json(pref, "ORDERS05", &xp);
    assert_string_equal(jp, plain_json);
    assert_null(strstr(xp, "ns0:"));
    assert_null(strstr(xp, "xmlns"));
    char *jpb = parse_one_json(xp, "ORDERS05", NULL);
    assert_string_equal(jpb, plain_json);

    /* a namespaced attribute inside the IDoc is dropped from doc->xml,
     * SEGMENT and BEGIN stay */
    char *attr_body = concat("", body, "");
    char *k01 = strstr(attr_body, "<E1EDK01 SEGMENT=\"1\">");
    assert_non_null(k01);
    char *with_attr = malloc(strlen(attr_body) + 64);
    size_t head = (size_t)(k01 - attr_body);
    memcpy(with_attr, attr_body, head);
    sprintf(with_attr + head, "<E1EDK01 SEGMENT=\"1\" xsi:nil=\"false\">%s",
            k01 + strlen("<E1EDK01 SEGMENT=\"1\">"));
    char *ad = concat("<ns0:ORDERS05 xmlns:ns0=\"urn:sap-com:document:sap:idoc:soap:messages\" "
                      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">", with_attr,
                      "</ns0:ORDERS05>");
    char *xa = NULL;
    char *ja = parse_one_json(ad, "ORDERS05", &xa);
    assert_string_equal(ja, plain_json);
    assert_null(strstr(xa, "xsi:"));
    assert_non_null(strstr(xa, "<E1EDK01 SEGMENT=\"1\">"));

    free(ja); free(xa); free(ad); free(with_attr); free(attr_body);
    free(jpb); free(jp); free(xp); free(pref); free(pbody);
    free(j12b); free(j12); free(x12); free(v12);
    free(plain_json); free(plain); free(body);
    free(soap_json); free(xml); free(text);
}

/* ------------------------------------------------------------------------ */
/* Every fixture: re-parsing doc->xml gives the same model (JSON) and the same
 * xml again; feeding in pieces of any size gives the same result */

struct fixture_result {
    char *json;            /* JSON array text */
    char *xmls;            /* all xml, concatenated with "\n--\n" */
    size_t n;
};

static void result_of(const char *buf, size_t len, size_t piece, struct fixture_result *r)
{
    struct collect c;
    collect_init(&c);
    char err[512] = "";
    int rc = parse_pieces(buf, len, piece, NULL, &c, err, sizeof err);
    if (rc != IDOC_OK)
        fprintf(stderr, "piece %zu: %s: %s\n", piece, idoc_status_name(rc), err);
    assert_int_equal(rc, IDOC_OK);
    r->json = json_string(c.docs);
    size_t total = 1;
    for (size_t i = 0; i < c.n && i < MAXDOCS; i++)
        total += c.xml_len[i] + 4 + strlen(c.root[i]) + 2;
    r->xmls = malloc(total);
    r->xmls[0] = '\0';
    for (size_t i = 0; i < c.n && i < MAXDOCS; i++) {
        strcat(r->xmls, c.root[i]);
        strcat(r->xmls, ": ");
        strcat(r->xmls, c.xml[i]);
        strcat(r->xmls, "\n--\n");
    }
    r->n = c.n;
    collect_free(&c);
}

static void result_free(struct fixture_result *r)
{
    free(r->json);
    free(r->xmls);
}

static void test_roundtrip_all(void **state)
{
    (void)state;
    for (size_t f = 0; f < NFIXTURES; f++) {
        struct collect c;
        collect_init(&c);
        parse_fixture(FIXTURES[f].file, FIXTURES[f].n, &c);
        for (size_t i = 0; i < c.n; i++) {
            struct collect c2;
            collect_init(&c2);
            char err[512] = "";
            int rc = parse_pieces(c.xml[i], c.xml_len[i], 0, NULL, &c2, err, sizeof err);
            if (rc != IDOC_OK)
                fprintf(stderr, "%s #%zu: %s\n", FIXTURES[f].file, i, err);
            assert_int_equal(rc, IDOC_OK);
            assert_int_equal(c2.n, 1);
            assert_string_equal(c2.root[0], c.root[i]);
            assert_string_equal(c2.docnum[0], c.docnum[i]);
            char *a = json_string(cJSON_GetArrayItem(c.docs, (int)i));
            char *b = json_string(cJSON_GetArrayItem(c2.docs, 0));
            if (strcmp(a, b) != 0)
                fprintf(stderr, "%s #%zu: re-parse differs\n", FIXTURES[f].file, i);
            assert_string_equal(a, b);
            /* serialisation is a fixpoint */
            assert_string_equal(c2.xml[0], c.xml[i]);
            free(a);
            free(b);
            collect_free(&c2);
        }
        collect_free(&c);
    }
}

static void test_pieces_all(void **state)
{
    (void)state;
    static const size_t pieces[] = { 1, 2, 3, 5, 7, 13, 64, 1000, 4096, 65535, 65537 };
    for (size_t f = 0; f < NFIXTURES; f++) {
        size_t len;
        char *buf = read_file(FIXTURES[f].file, &len);
        assert_non_null(buf);
        struct fixture_result whole;
        result_of(buf, len, 0, &whole);
        assert_int_equal(whole.n, FIXTURES[f].n);
        for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
            struct fixture_result r;
            result_of(buf, len, pieces[k], &r);
            if (strcmp(r.json, whole.json) != 0 || strcmp(r.xmls, whole.xmls) != 0)
                fprintf(stderr, "%s: pieces of %zu differ\n", FIXTURES[f].file, pieces[k]);
            assert_string_equal(r.json, whole.json);
            assert_string_equal(r.xmls, whole.xmls);
            result_free(&r);
        }
        result_free(&whole);
        free(buf);
    }
}

/* ------------------------------------------------------------------------ */
/* Hostile and invalid inputs */

enum match { EXACT, PREFIX, CONTAINS };

static const struct {
    const char *file;
    int status;
    enum match how;
    const char *text;
    size_t delivered;     /* IDocs accepted before the error */
} HOSTILE[] = {
    { "billion_laughs.xml", IDOC_ERR_DOCTYPE, EXACT, "DOCTYPE is not allowed in an IDoc", 0 },
    { "xxe_file.xml", IDOC_ERR_DOCTYPE, EXACT, "DOCTYPE is not allowed in an IDoc", 0 },
    { "xxe_parameter.xml", IDOC_ERR_DOCTYPE, EXACT, "DOCTYPE is not allowed in an IDoc", 0 },
    { "doctype_external.xml", IDOC_ERR_DOCTYPE, EXACT, "DOCTYPE is not allowed in an IDoc", 0 },
    { "doctype_plain.xml", IDOC_ERR_DOCTYPE, EXACT, "DOCTYPE is not allowed in an IDoc", 0 },
    { "truncated.xml", IDOC_ERR_MALFORMED, EXACT,
      "malformed XML at line 85: document ends inside <NAME1> (truncated)", 0 },
    { "invalid_utf8.xml", IDOC_ERR_MALFORMED, PREFIX, "malformed XML at line 2: Input is not proper UTF-8", 0 },
    { "control_char.xml", IDOC_ERR_MALFORMED, PREFIX, "malformed XML at line 2: ", 0 },
    { "tag_mismatch.xml", IDOC_ERR_MALFORMED, EXACT,
      "malformed XML at line 12: Opening and ending tag mismatch: NAME1 line 11 and E1LFA1M", 0 },
    { "undefined_entity.xml", IDOC_ERR_MALFORMED, EXACT,
      "malformed XML at line 2: Entity 'nbsp' not defined", 0 },
    { "unknown_encoding.xml", IDOC_ERR_ENCODING, EXACT,
      "unsupported encoding \"X-UNKNOWN\" in the XML declaration", 0 },
    { "not_idoc.xml", IDOC_ERR_NOT_IDOC, EXACT, "no <IDOC> element: not an IDoc", 0 },
    { "no_control.xml", IDOC_ERR_NO_CONTROL, EXACT,
      "IDoc #1 in the packet has no control record (EDI_DC40)", 0 },
    { "no_docnum.xml", IDOC_ERR_NO_DOCNUM, EXACT,
      "IDoc #2 in the packet has no DOCNUM in its control record (EDI_DC40)", 1 },
};

static void check_text(const char *err, enum match how, const char *text)
{
    int ok = how == EXACT    ? strcmp(err, text) == 0
           : how == PREFIX   ? starts_with(err, text)
                             : strstr(err, text) != NULL;
    if (!ok)
        fprintf(stderr, "error text: \"%s\"\nwanted %s: \"%s\"\n", err,
                how == EXACT ? "exactly" : how == PREFIX ? "prefix" : "substring", text);
    assert_true(ok);
}

static void test_hostile(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "test-fixtures/hostile/%s", HOSTILE[i].file);
        size_t len;
        char *buf = read_file(rel, &len);
        assert_non_null(buf);
        for (int mode = 0; mode < 3; mode++) {
            size_t piece = mode == 0 ? 0 : mode == 1 ? 1 : 64;
            struct collect c;
            collect_init(&c);
            char err[512] = "";
            double t0 = now_s();
            int rc = parse_pieces(buf, len, piece, NULL, &c, err, sizeof err);
            double dt = now_s() - t0;
            if (rc != HOSTILE[i].status)
                fprintf(stderr, "%s (piece %zu): got %s: %s\n", HOSTILE[i].file, piece,
                        idoc_status_name(rc), err);
            assert_int_equal(rc, HOSTILE[i].status);
            assert_int_equal(c.n, HOSTILE[i].delivered);
            assert_null(strchr(err, '\n'));
            assert_true(err[0] != '\0');
            assert_true(dt < 2.0);
            assert_null(strstr(err, "root:"));   /* nothing of /etc/passwd */
            if (mode != 1)
                check_text(err, HOSTILE[i].how, HOSTILE[i].text);
            else if (rc == IDOC_ERR_MALFORMED)
                /* libxml2 may word an error differently when the input
                 * arrives byte by byte; the status and the form hold */
                assert_true(starts_with(err, "malformed XML"));
            else
                check_text(err, HOSTILE[i].how, HOSTILE[i].text);
            collect_free(&c);
        }
        free(buf);
    }
}

static const char *DC_MIN =
    "<EDI_DC40 SEGMENT=\"1\"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT>"
    "<DOCNUM>0000000091009960</DOCNUM><IDOCTYP>ZTEST01</IDOCTYP><MESTYP>ZTEST</MESTYP>"
    "<SNDPRN>PR1CLNT100</SNDPRN></EDI_DC40>";

static int parse_text(const char *text, size_t len, size_t piece, const struct idoc_limits *lim,
                      struct collect *c, char *err, size_t errlen)
{
    return parse_pieces(text, len, piece, lim, c, err, errlen);
}

static void deep_case(const char *head, const char *open, const char *close, const char *tail,
                      int depth, int want)
{
    size_t lo = strlen(open), lc = strlen(close);
    size_t n = strlen(head) + strlen(tail) + (size_t)depth * (lo + lc) + 1;
    char *doc = malloc(n), *w = doc;
    w += sprintf(w, "%s", head);
    for (int i = 0; i < depth; i++)
        w += sprintf(w, "%s", open);
    for (int i = 0; i < depth; i++)
        w += sprintf(w, "%s", close);
    sprintf(w, "%s", tail);
    struct collect c;
    collect_init(&c);
    char err[512] = "";
    double t0 = now_s();
    int rc = parse_text(doc, strlen(doc), 65536, NULL, &c, err, sizeof err);
    double dt = now_s() - t0;
    if (rc != want)
        fprintf(stderr, "depth %d: %s: %s\n", depth, idoc_status_name(rc), err);
    assert_int_equal(rc, want);
    assert_true(dt < 2.0);
    if (want == IDOC_ERR_MALFORMED)
        assert_non_null(strstr(err, "nested deeper than 256 levels"));
    collect_free(&c);
    free(doc);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char head[1024];
    snprintf(head, sizeof head, "<ZTEST01><IDOC BEGIN=\"1\">%s", DC_MIN);
    /* 100k deep inside an IDoc, and outside any IDoc */
    deep_case(head, "<E1 SEGMENT=\"1\">", "</E1>", "</IDOC></ZTEST01>", 100000, IDOC_ERR_MALFORMED);
    deep_case("<ZTEST01>", "<A>", "</A>", "</ZTEST01>", 100000, IDOC_ERR_MALFORMED);
    deep_case("", "<A>", "</A>", "", 100000, IDOC_ERR_MALFORMED);
    /* a deep but legal IDoc: 200 nested segments */
    deep_case(head, "<E1 SEGMENT=\"1\"><F>x</F>", "</E1>", "</IDOC></ZTEST01>", 200, IDOC_OK);
}

static void test_other_errors(void **state)
{
    (void)state;
    static const struct { const char *text; int status; const char *err; } cases[] = {
        { "<IDOC BEGIN=\"1\"><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC>", IDOC_ERR_NOT_IDOC,
          "<IDOC> is the document element: the IDoc type's root element (e.g. <ORDERS05>) "
          "around it is missing" },
        { "   \n\t ", IDOC_ERR_MALFORMED, "malformed XML: no root element" },
        { "<?xml version=\"1.0\"?>\n", IDOC_ERR_MALFORMED, "malformed XML: no root element" },
        { "<ZTEST01/>", IDOC_ERR_NOT_IDOC, "no <IDOC> element: not an IDoc" },
        { "<ZTEST01><IDOC BEGIN=\"1\"><EDI_DC40 SEGMENT=\"1\"/></IDOC></ZTEST01>",
          IDOC_ERR_NO_DOCNUM,
          "IDoc #1 in the packet has no DOCNUM in its control record (EDI_DC40)" },
        { "<ZTEST01><IDOC BEGIN=\"1\"><EDI_DC40 SEGMENT=\"1\"><DOCNUM> \t </DOCNUM></EDI_DC40>"
          "</IDOC></ZTEST01>", IDOC_ERR_NO_DOCNUM,
          "IDoc #1 in the packet has no DOCNUM in its control record (EDI_DC40)" },
        { "<ns0:ZTEST01><IDOC/></ns0:ZTEST01>", IDOC_ERR_MALFORMED,
          "malformed XML at line 1: Namespace prefix ns0 on ZTEST01 is not defined" },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC></ZTEST01><X/>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: Extra content at the end of the document" },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC></ZTEST01>\n"
          "<!DOCTYPE x>", IDOC_ERR_MALFORMED, NULL },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1&#1;</DOCNUM></EDI_DC40></IDOC></ZTEST01>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: xmlParseCharRef: invalid xmlChar value 1" },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1\x01</DOCNUM></EDI_DC40></IDOC></ZTEST01>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: PCDATA invalid Char value 1" },
        { "<ZTEST01><IDOC><EDI_DC40 A=\"1\" A=\"2\"><DOCNUM>1</DOCNUM></EDI_DC40></IDOC></ZTEST01>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: Attribute A redefined" },
        { "<?xml version=\"1.0\" encoding=\"US-ASCII\"?>\n<ZTEST01><IDOC><EDI_DC40><DOCNUM>1\xff"
          "</DOCNUM></EDI_DC40></IDOC></ZTEST01>", IDOC_ERR_MALFORMED,
          "malformed XML at line 2: bytes not valid in the declared encoding US-ASCII" },
        { "<?xml version=\"1.0\" encoding=\"Shift_JIS\"?>\n<ZTEST01><IDOC><EDI_DC40><DOCNUM>1\x81 "
          "</DOCNUM></EDI_DC40></IDOC></ZTEST01>", IDOC_ERR_MALFORMED, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int mode = 0; mode < 2; mode++) {
            struct collect c;
            collect_init(&c);
            char err[512] = "";
            int rc = parse_text(cases[i].text, strlen(cases[i].text), mode ? 1 : 0, NULL, &c, err,
                                sizeof err);
            if (rc != cases[i].status)
                fprintf(stderr, "case %zu mode %d: %s: %s\n", i, mode, idoc_status_name(rc), err);
            assert_int_equal(rc, cases[i].status);
            assert_null(strchr(err, '\n'));
            if (cases[i].err != NULL && mode == 0)
                check_text(err, EXACT, cases[i].err);
            if (rc == IDOC_ERR_MALFORMED)
                assert_true(starts_with(err, "malformed XML"));
            collect_free(&c);
        }
    }
}

/* xml:id as libxml2's tree builder checked it (the parser used to build a
 * tree): a value must be an NCName, and no two elements the tree held at
 * the same time may share one (the open elements outside IDOCs, and the
 * whole IDOC being read) */
static void test_xml_id(void **state)
{
    (void)state;
    static const struct { const char *text; int status; const char *err; size_t n; } cases[] = {
        { "<R><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1 xml:id=\"1a\"><F>x</F></E1></IDOC></R>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: xml:id : attribute value 1a is not an NCName", 0 },
        { "<R xml:id=\"a:b\"><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC></R>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: xml:id : attribute value a:b is not an NCName", 0 },
        { "<R><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1 xml:id=\"q\"/><E2 xml:id=\"q\"/></IDOC></R>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: ID q already defined", 0 },
        { "<R xml:id=\"a\"><IDOC><EDI_DC40 xml:id=\"a\"><DOCNUM>1</DOCNUM></EDI_DC40></IDOC></R>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: ID a already defined", 0 },
        { "<R><A xml:id=\"x\"><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1 xml:id=\"x\"/></IDOC>"
          "</A></R>", IDOC_ERR_MALFORMED, "malformed XML at line 1: ID x already defined", 0 },
        /* closed elements outside IDOCs and finished IDOCs free their ids */
        { "<R><A xml:id=\"b\"/><A xml:id=\"b\"/><IDOC xml:id=\"i\"><EDI_DC40><DOCNUM>1</DOCNUM>"
          "</EDI_DC40><E1 xml:id=\"b\"/></IDOC><IDOC xml:id=\"i\"><EDI_DC40><DOCNUM>2</DOCNUM>"
          "</EDI_DC40><E1 xml:id=\"b\"/></IDOC></R>", IDOC_OK, "", 2 },
        /* ... except a value with a blank around it, which libxml2 never let go */
        { "<R><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E xml:id=\" a \"/></IDOC><IDOC>"
          "<EDI_DC40><DOCNUM>2</DOCNUM></EDI_DC40><E xml:id=\" a \"/></IDOC></R>",
          IDOC_ERR_MALFORMED, "malformed XML at line 1: ID a already defined", 1 },
        { "<R><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1 xml:id=\" ok \"/><E2 xml:id=\"ok\"/>"
          "</IDOC></R>", IDOC_OK, "", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int mode = 0; mode < 2; mode++) {
            struct collect c;
            collect_init(&c);
            char err[512] = "";
            int rc = parse_text(cases[i].text, strlen(cases[i].text), mode ? 1 : 0, NULL, &c, err,
                                sizeof err);
            if (rc != cases[i].status || strcmp(err, cases[i].err) != 0)
                fprintf(stderr, "case %zu mode %d: %s: %s\n", i, mode, idoc_status_name(rc), err);
            assert_int_equal(rc, cases[i].status);
            assert_string_equal(err, cases[i].err);
            assert_int_equal(c.n, cases[i].n);
            collect_free(&c);
        }
    }
}

static void test_empty(void **state)
{
    (void)state;
    char err[512] = "x";
    struct idoc_parser *p = idoc_parser_new(NULL, NULL, NULL);
    assert_non_null(p);
    assert_int_equal(idoc_parser_feed(p, "", 0, err, sizeof err), IDOC_OK);
    assert_string_equal(err, "");
    assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_string_equal(err, "malformed XML: empty body");
    assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_int_equal(idoc_parser_feed(p, "<A/>", 4, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_string_equal(err, "malformed XML: empty body");
    idoc_parser_free(p);
    assert_int_equal(idoc_parse("", 0, NULL, NULL, NULL, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_string_equal(err, "malformed XML: empty body");
    /* NULL / zero-size error buffers are fine */
    assert_int_equal(idoc_parse("", 0, NULL, NULL, NULL, NULL, 0), IDOC_ERR_MALFORMED);
}

/* After an error, feed and finish keep returning it, with the same text. */
static void test_sticky(void **state)
{
    (void)state;
    size_t len, glen;
    char *bad = read_file("test-fixtures/hostile/tag_mismatch.xml", &len);
    char *good = read_file("test-fixtures/idoc/cremas05_vendor.xml", &glen);
    assert_non_null(bad);
    assert_non_null(good);
    struct collect c;
    collect_init(&c);
    struct idoc_parser *p = idoc_parser_new(NULL, collect_cb, &c);
    char err[512], err2[512];
    assert_int_equal(idoc_parser_feed(p, bad, len, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_int_equal(idoc_parser_feed(p, good, glen, err2, sizeof err2), IDOC_ERR_MALFORMED);
    assert_string_equal(err2, err);
    assert_int_equal(idoc_parser_finish(p, err2, sizeof err2), IDOC_ERR_MALFORMED);
    assert_string_equal(err2, err);
    assert_int_equal(idoc_parser_finish(p, err2, sizeof err2), IDOC_ERR_MALFORMED);
    assert_string_equal(err2, err);
    assert_int_equal(idoc_parser_count(p), 0);
    assert_int_equal(c.n, 0);
    idoc_parser_free(p);

    /* a short error buffer gets a truncated, terminated line */
    char tiny[8];
    assert_int_equal(idoc_parse(bad, len, NULL, NULL, NULL, tiny, sizeof tiny), IDOC_ERR_MALFORMED);
    assert_string_equal(tiny, "malform");

    /* success, then more data: refused */
    p = idoc_parser_new(NULL, collect_cb, &c);
    assert_int_equal(idoc_parser_feed(p, good, glen, err, sizeof err), IDOC_OK);
    assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_OK);
    assert_string_equal(err, "");
    assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_OK);
    assert_int_equal(idoc_parser_feed(p, "<A/>", 4, err, sizeof err), IDOC_ERR_MALFORMED);
    assert_string_equal(err, "malformed XML: data after the end of the document");
    assert_int_equal(idoc_parser_count(p), 1);
    idoc_parser_free(p);
    collect_free(&c);
    free(bad);
    free(good);
}

static void test_callback_stop(void **state)
{
    (void)state;
    size_t len;
    char *buf = read_file("test-fixtures/idoc/cremas06_packet.xml", &len);
    assert_non_null(buf);
    for (int mode = 0; mode < 2; mode++) {
        struct collect c;
        collect_init(&c);
        c.stop_at = 2;
        c.stop_text = mode == 0 ? "queue full: IDoc 0000000091000012 not stored" : NULL;
        struct idoc_parser *p = idoc_parser_new(NULL, collect_cb, &c);
        char err[512];
        int rc = idoc_parser_feed(p, buf, len, err, sizeof err);
        assert_int_equal(rc, IDOC_ERR_CALLBACK);
        assert_int_equal(c.n, 2);                    /* the third was never offered */
        assert_int_equal(idoc_parser_count(p), 1);   /* accepted: the first only */
        if (mode == 0)
            assert_string_equal(err, "queue full: IDoc 0000000091000012 not stored");
        else
            assert_string_equal(err, "IDoc #2 (DOCNUM 0000000091000012) was refused");
        assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_ERR_CALLBACK);
        idoc_parser_free(p);
        collect_free(&c);
    }
    /* stopping on the last IDoc of a packet still stops the parse */
    struct collect c;
    collect_init(&c);
    c.stop_at = 3;
    char err[512];
    assert_int_equal(idoc_parse(buf, len, NULL, collect_cb, &c, err, sizeof err), IDOC_ERR_CALLBACK);
    assert_int_equal(c.n, 3);
    collect_free(&c);
    free(buf);
}

static void test_limits(void **state)
{
    (void)state;
    size_t len;
    char *buf = read_file("test-fixtures/idoc/cremas06_packet.xml", &len);
    assert_non_null(buf);
    struct collect c;
    char err[512];

    collect_init(&c);
    struct idoc_limits lim = { .max_idocs = 2 };
    assert_int_equal(parse_text(buf, len, 0, &lim, &c, err, sizeof err), IDOC_ERR_LIMIT);
    assert_string_equal(err, "more than 2 IDocs in one packet");
    assert_int_equal(c.n, 2);
    collect_free(&c);

    collect_init(&c);
    lim.max_idocs = 3;
    assert_int_equal(parse_text(buf, len, 0, &lim, &c, err, sizeof err), IDOC_OK);
    assert_int_equal(c.n, 3);
    collect_free(&c);
    free(buf);

    /* orders05_po has 27 data segments, 19 of them at top level (EDI_DC40 not counted) */
    buf = read_file("test-fixtures/idoc/orders05_po.xml", &len);
    assert_non_null(buf);
    collect_init(&c);
    struct idoc_limits seg = { .max_segments = 27 };
    assert_int_equal(parse_text(buf, len, 0, &seg, &c, err, sizeof err), IDOC_OK);
    collect_free(&c);
    collect_init(&c);
    seg.max_segments = 26;
    assert_int_equal(parse_text(buf, len, 0, &seg, &c, err, sizeof err), IDOC_ERR_LIMIT);
    assert_string_equal(err, "IDoc #1 has more than 26 segments");
    assert_int_equal(c.n, 0);
    collect_free(&c);
    free(buf);

    /* segments without SEGMENT= are counted when the IDoc is converted */
    const char *unmarked = "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40>"
                           "<E1><F>1</F><E2><G>2</G></E2></E1><E3><F>3</F></E3></IDOC></ZTEST01>";
    collect_init(&c);
    seg.max_segments = 3;
    assert_int_equal(parse_text(unmarked, strlen(unmarked), 0, &seg, &c, err, sizeof err), IDOC_OK);
    collect_free(&c);
    collect_init(&c);
    seg.max_segments = 2;
    assert_int_equal(parse_text(unmarked, strlen(unmarked), 0, &seg, &c, err, sizeof err),
                     IDOC_ERR_LIMIT);
    collect_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Segment/field rules, character data, encodings */

static void check_variants(const struct idoc *doc, void *arg)
{
    (void)arg;
    assert_string_equal(doc->root, "ZTEST01");
    assert_string_equal(doc->docnum, "0000000091009950");
    assert_string_equal(idoc_control_get(doc, "DOCNUM"), "  0000000091009950  ");
    assert_int_equal(doc->nsegments, 4);
    assert_string_equal(doc->segments[0].name, "E1A");
    assert_string_equal(doc->segments[1].name, "E1D");
    assert_string_equal(doc->segments[2].name, "EDI_DC40");   /* a second one is data */
    assert_string_equal(doc->segments[3].name, "IDOC");       /* nested IDOC: a segment */
    assert_string_equal(idoc_segment_get(&doc->segments[2], "DOCNUM"), "second");
    assert_string_equal(idoc_segment_get(&doc->segments[3], "NESTED"), "n");

    const struct idoc_segment *a = &doc->segments[0];
    assert_int_equal(a->nfields, 6);
    assert_string_equal(idoc_segment_get(a, "CDATA"), "a <b> & c");
    assert_string_equal(idoc_segment_get(a, "MIXED"), "ABC");
    assert_string_equal(idoc_segment_get(a, "ENT"), "<>&\"'\xe2\x82\xac\xc3\xa9");
    assert_string_equal(idoc_segment_get(a, "CR"), "line1\r\nline2");
    assert_string_equal(idoc_segment_get(a, "TAB"), "\ttab\t");
    assert_string_equal(idoc_segment_get(a, "EMPTY"), "");
    assert_int_equal(a->nchildren, 3);
    assert_string_equal(a->children[0].name, "E1B");
    assert_int_equal(a->children[0].nfields, 0);
    assert_int_equal(a->children[0].nchildren, 0);
    assert_string_equal(a->children[1].name, "E1C");
    assert_string_equal(idoc_segment_get(&a->children[1], "X"), "1");
    assert_string_equal(a->children[2].name, "LEAFSEG");
    assert_int_equal(a->children[2].nfields, 0);

    const struct idoc_segment *d = &doc->segments[1];
    assert_int_equal(d->nfields, 1);
    assert_string_equal(idoc_segment_get(d, "F"), "v");

    assert_null(strstr(doc->xml, "stray text"));
    assert_null(strstr(doc->xml, "before root"));
    assert_non_null(strstr(doc->xml, "<STRAY>"));   /* not data, but doc->xml is faithful */
    assert_non_null(strstr(doc->xml, "<CR>line1&#13;\nline2</CR>"));
    assert_non_null(strstr(doc->xml, "<CDATA><![CDATA[a <b> & c]]></CDATA>"));
    assert_non_null(strstr(doc->xml, "A<!-- x -->B"));
}

static void test_field_rules(void **state)
{
    (void)state;
    const char *doc =
        "<?xml version=\"1.0\"?>\n"
        "<!-- comment before root -->\n"
        "<ZTEST01>stray text outside\n"
        "  <IDOC BEGIN=\"1\">\n"
        "    <EDI_DC40 SEGMENT=\"1\"><TABNAM>EDI_DC40</TABNAM><DOCNUM>  0000000091009950  </DOCNUM>"
        "<MANDT>100</MANDT><IDOCTYP>ZTEST01</IDOCTYP><MESTYP>ZTEST</MESTYP></EDI_DC40>\n"
        "    <STRAY>an IDOC-level field is not data</STRAY>\n"
        "    <E1A SEGMENT=\"1\">\n"
        "      <CDATA><![CDATA[a <b> & c]]></CDATA>\n"
        "      <MIXED>A<!-- x -->B<?pi x?>C</MIXED>\n"
        "      <ENT>&lt;&gt;&amp;&quot;&apos;&#x20AC;&#233;</ENT>\n"
        "      <CR>line1&#13;\r\nline2</CR>\n"
        "      <TAB>\ttab\t</TAB>\n"
        "      <EMPTY/>\n"
        "      <E1B SEGMENT=\"1\"/>\n"
        "      <E1C><X>1</X></E1C>\n"
        "      <LEAFSEG SEGMENT=\"1\">text in a segment is not data</LEAFSEG>\n"
        "    </E1A>\n"
        "    <E1D SEGMENT=\"1\">junk<F>v</F>more junk</E1D>\n"
        "    <EDI_DC40 SEGMENT=\"1\"><DOCNUM>second</DOCNUM></EDI_DC40>\n"
        "    <IDOC><NESTED>n</NESTED></IDOC>\n"
        "  </IDOC>\n"
        "</ZTEST01>\n"
        "<!-- trailing comment -->\n";
    struct collect c;
    collect_init(&c);
    c.check = check_variants;
    char err[512] = "";
    int rc = parse_text(doc, strlen(doc), 0, NULL, &c, err, sizeof err);
    if (rc != IDOC_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, IDOC_OK);
    assert_int_equal(c.n, 1);
    /* and the same after a round trip through doc->xml */
    char *j1 = json_string(cJSON_GetArrayItem(c.docs, 0));
    char *j2 = parse_one_json(c.xml[0], "ZTEST01", NULL);
    assert_string_equal(j1, j2);
    free(j1);
    free(j2);
    collect_free(&c);
}

static void test_encodings(void **state)
{
    (void)state;
    /* UTF-8 BOM in front of a fixture: same result */
    size_t len;
    char *buf = read_file("test-fixtures/idoc/cremas05_vendor.xml", &len);
    assert_non_null(buf);
    char *bom = malloc(len + 3);
    memcpy(bom, "\xef\xbb\xbf", 3);
    memcpy(bom + 3, buf, len);
    struct fixture_result a, b;
    result_of(buf, len, 0, &a);
    result_of(bom, len + 3, 0, &b);
    assert_string_equal(a.json, b.json);
    assert_string_equal(a.xmls, b.xmls);
    result_free(&b);
    result_of(bom, len + 3, 1, &b);
    assert_string_equal(a.json, b.json);
    result_free(&a);
    result_free(&b);
    free(bom);
    free(buf);

    /* windows-1252: euro sign and curly quotes are not in Latin-1 */
    const char *cp = "<?xml version=\"1.0\" encoding=\"windows-1252\"?>\n<ZTEST01><IDOC BEGIN=\"1\">"
                     "<EDI_DC40 SEGMENT=\"1\"><DOCNUM>0000000091009951</DOCNUM></EDI_DC40>"
                     "<E1 SEGMENT=\"1\"><PRICE>\x80 12,50</PRICE><NAME>\x84Gr\xfc\xdf" "e\x93</NAME>"
                     "</E1></IDOC></ZTEST01>";
    for (int mode = 0; mode < 2; mode++) {
        struct collect c;
        collect_init(&c);
        char err[512] = "";
        assert_int_equal(parse_text(cp, strlen(cp), mode, NULL, &c, err, sizeof err), IDOC_OK);
        const cJSON *e1 = jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1", 0);
        assert_string_equal(jfield(e1, "PRICE"), "\xe2\x82\xac 12,50");
        assert_string_equal(jfield(e1, "NAME"), "\xe2\x80\x9eGr\xc3\xbc\xc3\x9f" "e\xe2\x80\x9c");
        assert_non_null(strstr(c.xml[0], "<PRICE>\xe2\x82\xac 12,50</PRICE>"));
        collect_free(&c);
    }

    /* UTF-16LE with a BOM */
    const char *l1 = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<ZTEST01><IDOC BEGIN=\"1\">"
                     "<EDI_DC40 SEGMENT=\"1\"><DOCNUM>0000000091009952</DOCNUM></EDI_DC40>"
                     "<E1 SEGMENT=\"1\"><NAME1>M\xfcller</NAME1></E1></IDOC></ZTEST01>";
    size_t n = strlen(l1);
    char *u16 = malloc(2 * n + 2);
    u16[0] = (char)0xff;
    u16[1] = (char)0xfe;
    for (size_t i = 0; i < n; i++) {
        u16[2 + 2 * i] = l1[i];
        u16[3 + 2 * i] = 0;
    }
    for (int mode = 0; mode < 2; mode++) {
        struct collect c;
        collect_init(&c);
        char err[512] = "";
        int rc = parse_text(u16, 2 * n + 2, mode ? 3 : 0, NULL, &c, err, sizeof err);
        if (rc != IDOC_OK)
            fprintf(stderr, "utf-16: %s\n", err);
        assert_int_equal(rc, IDOC_OK);
        assert_string_equal(c.docnum[0], "0000000091009952");
        assert_string_equal(jfield(jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1", 0), "NAME1"),
                            "M\xc3\xbcller");
        assert_true(starts_with(c.xml[0], XMLDECL));
        collect_free(&c);
    }
    free(u16);

    /* DEL (0x7F) is a legal XML 1.0 character: kept */
    const char *del = "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1><F>a\x7f" "b</F>"
                      "</E1></IDOC></ZTEST01>";
    struct collect c;
    collect_init(&c);
    char err[512];
    assert_int_equal(parse_text(del, strlen(del), 0, NULL, &c, err, sizeof err), IDOC_OK);
    assert_string_equal(jfield(jseg(jsegs(cJSON_GetArrayItem(c.docs, 0)), "E1", 0), "F"), "a\x7f" "b");
    collect_free(&c);
}

static void test_api_misc(void **state)
{
    (void)state;
    assert_string_equal(idoc_status_name(IDOC_OK), "ok");
    assert_string_equal(idoc_status_name(IDOC_ERR_MALFORMED), "malformed");
    assert_string_equal(idoc_status_name(IDOC_ERR_DOCTYPE), "doctype");
    assert_string_equal(idoc_status_name(IDOC_ERR_NOT_IDOC), "not_idoc");
    assert_string_equal(idoc_status_name(IDOC_ERR_NO_CONTROL), "no_control");
    assert_string_equal(idoc_status_name(IDOC_ERR_NO_DOCNUM), "no_docnum");
    assert_string_equal(idoc_status_name(IDOC_ERR_ENCODING), "encoding");
    assert_string_equal(idoc_status_name(IDOC_ERR_LIMIT), "limit");
    assert_string_equal(idoc_status_name(IDOC_ERR_CALLBACK), "callback");
    assert_string_equal(idoc_status_name(IDOC_ERR_NOMEM), "nomem");
    assert_string_equal(idoc_status_name(999), "unknown");
    assert_null(idoc_control_get(NULL, "DOCNUM"));
    assert_null(idoc_segment_get(NULL, "X"));
    assert_null(idoc_json(NULL));
    assert_int_equal(idoc_parser_count(NULL), 0);
    idoc_parser_free(NULL);
    /* no callback at all: parses and counts */
    size_t len;
    char *buf = read_file("test-fixtures/idoc/cremas06_packet.xml", &len);
    struct idoc_parser *p = idoc_parser_new(NULL, NULL, NULL);
    char err[512];
    assert_int_equal(idoc_parser_feed(p, buf, len, err, sizeof err), IDOC_OK);
    assert_int_equal(idoc_parser_finish(p, err, sizeof err), IDOC_OK);
    assert_int_equal(idoc_parser_count(p), 3);
    idoc_parser_free(p);
    /* freeing a parser in the middle of a document */
    p = idoc_parser_new(NULL, NULL, NULL);
    assert_int_equal(idoc_parser_feed(p, buf, len / 2, err, sizeof err), IDOC_OK);
    idoc_parser_free(p);
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Threads: 4 parsers at once, each result identical to the single-thread one */

#define NTHREADS 4

struct thread_job {
    char *buf[NFIXTURES];
    size_t len[NFIXTURES];
    char *want[NFIXTURES];
    int rounds;
    int id;
    int mismatches;
};

static char *whole_result(const char *buf, size_t len, size_t piece, int *rc_out)
{
    struct collect c;
    collect_init(&c);
    char err[512] = "";
    struct idoc_parser *p = idoc_parser_new(NULL, collect_cb, &c);
    int rc = IDOC_OK;
    for (size_t off = 0; off < len && rc == IDOC_OK; off += piece)
        rc = idoc_parser_feed(p, buf + off, len - off < piece ? len - off : piece, err, sizeof err);
    if (rc == IDOC_OK)
        rc = idoc_parser_finish(p, err, sizeof err);
    idoc_parser_free(p);
    *rc_out = rc;
    for (size_t i = 0; i < c.n && i < MAXDOCS; i++)
        cJSON_AddItemToArray(c.docs, cJSON_CreateString(c.xml[i]));
    char *s = cJSON_PrintUnformatted(c.docs);
    collect_free(&c);
    return s;
}

static void *thread_main(void *arg)
{
    struct thread_job *job = arg;
    for (int r = 0; r < job->rounds; r++) {
        for (size_t f = 0; f < NFIXTURES; f++) {
            size_t piece = 1 + (size_t)((job->id * 977 + r * 131 + (int)f * 17) % 5000);
            int rc;
            char *s = whole_result(job->buf[f], job->len[f], piece, &rc);
            if (rc != IDOC_OK || s == NULL || strcmp(s, job->want[f]) != 0)
                job->mismatches++;
            free(s);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct thread_job jobs[NTHREADS];
    struct thread_job base;
    memset(&base, 0, sizeof base);
    for (size_t f = 0; f < NFIXTURES; f++) {
        base.buf[f] = read_file(FIXTURES[f].file, &base.len[f]);
        assert_non_null(base.buf[f]);
        int rc;
        base.want[f] = whole_result(base.buf[f], base.len[f], base.len[f], &rc);
        assert_int_equal(rc, IDOC_OK);
    }
    pthread_t th[NTHREADS];
    double t0 = now_s();
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = base;
        jobs[i].id = i;
        jobs[i].rounds = UNDER_SANITIZER ? 10 : 40;
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    }
    int mismatches = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        mismatches += jobs[i].mismatches;
    }
    printf("    %d threads x %d rounds x %zu fixtures in %.2f s, %d mismatches\n", NTHREADS,
           jobs[0].rounds, NFIXTURES, now_s() - t0, mismatches);
    assert_int_equal(mismatches, 0);
    for (size_t f = 0; f < NFIXTURES; f++) {
        free(base.buf[f]);
        free(base.want[f]);
    }
}

/* ------------------------------------------------------------------------ */
/* Bounded memory: a ~50 MB packet fed in 64 KB pieces, in a child process so
 * that ru_maxrss is the child's own. */

struct big_state {
    size_t n;
    unsigned long long next;
    int bad;
};

static int big_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct big_state *s = ud;
    char want[32];
    snprintf(want, sizeof want, "%016llu", s->next++);
    if (strcmp(doc->docnum, want) != 0 || doc->index != s->n || doc->nsegments != 19 ||
        strcmp(doc->root, "ORDERS05") != 0)
        s->bad++;
    s->n++;
    return 0;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

struct big_report {
    long base_kb, built_kb, parsed_kb;
    size_t packet, idocs;
    int rc, bad;
    double seconds;
};

static void big_child(int fd, size_t target)
{
    struct big_report rep;
    memset(&rep, 0, sizeof rep);
    rep.base_kb = maxrss_kb();
    size_t len;
    char *fx = read_file("test-fixtures/idoc/orders05_po.xml", &len);
    char *body = fx != NULL ? idoc_body(fx) : NULL;
    size_t blen = body != NULL ? strlen(body) : 0;
    char *dn = body != NULL ? strstr(body, "<DOCNUM>") : NULL;
    size_t count = blen ? target / (blen + 3) : 0;
    size_t cap = count * (blen + 3) + 64;
    char *packet = malloc(cap);
    if (packet == NULL || dn == NULL) {
        rep.rc = -1;
        if (write(fd, &rep, sizeof rep) < 0)
            _exit(3);
        _exit(2);
    }
    size_t off = (size_t)(dn - body) + strlen("<DOCNUM>");
    char *w = packet;
    w += sprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ORDERS05>\n");
    for (size_t i = 0; i < count; i++) {
        memcpy(w, "  ", 2);
        memcpy(w + 2, body, blen);
        char num[20];
        snprintf(num, sizeof num, "%016llu", 9200000000000000ULL + i);
        memcpy(w + 2 + off, num, 16);
        w[2 + blen] = '\n';
        w += blen + 3;
    }
    w += sprintf(w, "</ORDERS05>\n");
    rep.packet = (size_t)(w - packet);
    rep.built_kb = maxrss_kb();

    struct big_state st = { 0, 9200000000000000ULL, 0 };
    struct idoc_parser *p = idoc_parser_new(NULL, big_cb, &st);
    char err[512] = "";
    int rc = IDOC_OK;
    double t0 = now_s();
    for (size_t o = 0; o < rep.packet && rc == IDOC_OK; o += 65536) {
        size_t n = rep.packet - o < 65536 ? rep.packet - o : 65536;
        rc = idoc_parser_feed(p, packet + o, n, err, sizeof err);
    }
    if (rc == IDOC_OK)
        rc = idoc_parser_finish(p, err, sizeof err);
    rep.seconds = now_s() - t0;
    idoc_parser_free(p);
    rep.parsed_kb = maxrss_kb();
    rep.rc = rc;
    rep.idocs = st.n;
    rep.bad = st.bad + (st.n != count);
    if (rc != IDOC_OK)
        fprintf(stderr, "big packet: %s\n", err);
    if (write(fd, &rep, sizeof rep) != (ssize_t)sizeof rep)
        _exit(3);
    free(packet);
    free(body);
    free(fx);
    _exit(0);
}

static void test_bounded_memory(void **state)
{
    (void)state;
    size_t target = UNDER_SANITIZER ? (size_t)8 << 20 : (size_t)50 << 20;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        big_child(fds[1], target);
    }
    close(fds[1]);
    struct big_report rep;
    ssize_t r = read(fds[0], &rep, sizeof rep);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(r, (ssize_t)sizeof rep);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rep.rc, IDOC_OK);
    assert_int_equal(rep.bad, 0);
    double mb = (double)rep.packet / (1 << 20);
    double growth = (double)(rep.parsed_kb - rep.base_kb) * 1024.0;
    double parser = (double)(rep.parsed_kb - rep.built_kb) * 1024.0;
    printf("    packet %.1f MB, %zu IDocs in %.2f s (%.0f IDocs/s, %.0f MB/s); peak RSS growth "
           "%.2fx the packet (packet itself included), parser's own peak %.1f MB\n",
           mb, rep.idocs, rep.seconds, (double)rep.idocs / rep.seconds, mb / rep.seconds,
           growth / (double)rep.packet, parser / (1 << 20));
    if (!UNDER_SANITIZER) {
        /* the packet itself is 1.0x; the parser must add little on top */
        assert_true(growth < 1.5 * (double)rep.packet);
        assert_true(parser < 16.0 * (1 << 20));
    }
}

/* ------------------------------------------------------------------------ */
/* Parser reuse: idoc_parser_free pools the parser on its thread and the
 * next idoc_parser_new on that thread resets and reuses one. Many documents
 * of every kind (encodings, SOAP, errors, refusals, abandoned parses) one
 * after the other on one thread, and several at once, interleaved, give
 * exactly what a fresh parser gives (each reference is made on a new
 * thread, which has no pooled parser yet). */

struct run_spec {
    const char *name;
    char *buf;
    size_t len;
    size_t piece;        /* 0 = one piece */
    size_t stop_at;      /* callback refuses the stop_at-th IDoc */
    int abandon;         /* feed half, then free without finish */
};

/* Everything observable about one parse, as one string (frees c). */
static char *result_string(const struct run_spec *s, struct collect *cp, int rc, const char *err,
                           size_t count)
{
    struct collect c = *cp;
    char *json = cJSON_PrintUnformatted(c.docs);
    size_t total = strlen(json) + 1024;
    for (size_t i = 0; i < c.n && i < MAXDOCS; i++)
        total += c.xml_len[i] + 8;
    char *r = malloc(total);
    int w = snprintf(r, total, "%s|%s|%zu|%zu|%s", s->abandon ? "abandoned" : idoc_status_name(rc),
                     s->abandon ? "" : err, count, c.n, json);
    for (size_t i = 0; i < c.n && i < MAXDOCS && c.xml[i] != NULL; i++)
        w += snprintf(r + w, total - (size_t)w, "\n--\n%s", c.xml[i]);
    free(json);
    collect_free(&c);
    return r;
}

static size_t spec_piece(const struct run_spec *s)
{
    return s->piece != 0 ? s->piece : (s->len != 0 ? s->len : 1);
}

static size_t spec_end(const struct run_spec *s)
{
    return s->abandon ? s->len / 2 : s->len;
}

/* One parse of s. No cmocka asserts: also runs on other threads. */
static char *run_result(const struct run_spec *s)
{
    struct collect c;
    collect_init(&c);
    c.stop_at = s->stop_at;
    char err[512] = "";
    struct idoc_parser *p = idoc_parser_new(NULL, collect_cb, &c);
    if (p == NULL)
        return NULL;
    size_t piece = spec_piece(s), end = spec_end(s);
    int rc = IDOC_OK;
    for (size_t off = 0; off < end && rc == IDOC_OK; off += piece)
        rc = idoc_parser_feed(p, s->buf + off, end - off < piece ? end - off : piece, err, sizeof err);
    if (!s->abandon && rc == IDOC_OK)
        rc = idoc_parser_finish(p, err, sizeof err);
    size_t count = idoc_parser_count(p);
    idoc_parser_free(p);
    return result_string(s, &c, rc, err, count);
}

static void *fresh_thread(void *arg)
{
    return run_result(arg);
}

/* run_result on a new thread: a parser made from scratch */
static char *fresh_result(const struct run_spec *s)
{
    pthread_t th;
    void *r = NULL;
    assert_int_equal(pthread_create(&th, NULL, fresh_thread, (void *)s), 0);
    assert_int_equal(pthread_join(th, &r), 0);
    assert_non_null(r);
    return r;
}

static char *to_utf16le(const char *s, size_t n, size_t *out_len)
{
    /* Latin-1 text -> UTF-16LE with a BOM */
    char *u = malloc(2 * n + 2);
    u[0] = (char)0xff;
    u[1] = (char)0xfe;
    for (size_t i = 0; i < n; i++) {
        u[2 + 2 * i] = s[i];
        u[3 + 2 * i] = 0;
    }
    *out_len = 2 * n + 2;
    return u;
}

static void test_reuse_many(void **state)
{
    (void)state;
    struct run_spec specs[64];
    size_t ns = 0;
    for (size_t f = 0; f < NFIXTURES; f++) {
        specs[ns].name = FIXTURES[f].file;
        specs[ns].buf = read_file(FIXTURES[f].file, &specs[ns].len);
        assert_non_null(specs[ns].buf);
        specs[ns].piece = (f % 3 == 0) ? 0 : (f % 3 == 1) ? 4096 : 777;
        specs[ns].stop_at = 0;
        specs[ns].abandon = 0;
        ns++;
    }
    const char *l1 = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<ZTEST01><IDOC BEGIN=\"1\">"
                     "<EDI_DC40 SEGMENT=\"1\"><DOCNUM>0000000091009980</DOCNUM></EDI_DC40>"
                     "<E1 SEGMENT=\"1\"><NAME1>M\xfcller</NAME1><X>&amp;&#x20AC;</X></E1></IDOC></ZTEST01>";
    const char *cp = "<?xml version=\"1.0\" encoding=\"windows-1252\"?>\n<ZTEST01><IDOC BEGIN=\"1\">"
                     "<EDI_DC40 SEGMENT=\"1\"><DOCNUM>0000000091009981</DOCNUM></EDI_DC40>"
                     "<E1 SEGMENT=\"1\"><PRICE>\x80 12,50</PRICE></E1></IDOC></ZTEST01>";
    const char *soap = "<S:Envelope xmlns:S=\"http://schemas.xmlsoap.org/soap/envelope/\"><S:Body>"
                       "<ns0:ZTEST01 xmlns:ns0=\"urn:sap-com:document:sap:idoc:soap:messages\">"
                       "<ns0:IDOC BEGIN=\"1\"><ns0:EDI_DC40 SEGMENT=\"1\"><ns0:DOCNUM>0000000091009982"
                       "</ns0:DOCNUM></ns0:EDI_DC40><ns0:E1 SEGMENT=\"1\"><ns0:F>v</ns0:F></ns0:E1>"
                       "</ns0:IDOC></ns0:ZTEST01></S:Body></S:Envelope>";
    const char *nodocnum = "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC>"
                           "<IDOC><EDI_DC40><MANDT>1</MANDT></EDI_DC40></IDOC></ZTEST01>";
    const char *names = "<ZTEST01><IDOC><EDI_DC40><DOCNUM>7</DOCNUM></EDI_DC40><QQ1 SEGMENT=\"1\">"
                        "<QQ2>a</QQ2><QQ3/></QQ1></IDOC></ZTEST01>";
    struct { const char *text; size_t piece, stop_at; int abandon, utf16; } extra[] = {
        { l1, 0, 0, 0, 1 },
        { cp, 5, 0, 0, 0 },
        { soap, 0, 0, 0, 0 },
        { soap, 1, 0, 0, 0 },
        { nodocnum, 0, 0, 0, 0 },
        { names, 3, 0, 0, 0 },
        { "", 0, 0, 0, 0 },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC><IDOC><EDI_DC40>"
          "<DOCNUM>2</DOCNUM></EDI_DC40></IDOC></ZTEST01>", 0, 2, 0, 0 },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1><F>x</F></E1></IDOC></ZTEST01>",
          7, 0, 1, 0 },
        { "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>", 0, 0, 0, 0 },
        { "<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40></IDOC><IDOC></ZTEST01>", 0, 0, 0, 0 },
    };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        struct run_spec *s = &specs[ns++];
        s->name = extra[i].text;
        if (extra[i].utf16) {
            s->buf = to_utf16le(extra[i].text, strlen(extra[i].text), &s->len);
        } else {
            s->len = strlen(extra[i].text);
            s->buf = malloc(s->len + 1);
            memcpy(s->buf, extra[i].text, s->len + 1);
        }
        s->piece = extra[i].piece;
        s->stop_at = extra[i].stop_at;
        s->abandon = extra[i].abandon;
    }
    /* the packet, abandoned half way (the parser is put aside mid-IDoc) and
     * refused at its second IDoc */
    specs[ns] = specs[1];
    specs[ns].abandon = 1;
    ns++;
    specs[ns] = specs[1];
    specs[ns].stop_at = 2;
    specs[ns].piece = 100;
    ns++;

    char *want[64];
    for (size_t i = 0; i < ns; i++)
        want[i] = fresh_result(&specs[i]);
    /* sanity: the references are what they should be */
    assert_true(starts_with(want[NFIXTURES + 0], "ok||1|1|"));
    assert_true(starts_with(want[NFIXTURES + 2], "ok||1|1|"));
    assert_true(starts_with(want[NFIXTURES + 4], "no_docnum|"));
    assert_true(starts_with(want[NFIXTURES + 6], "malformed|malformed XML: empty body"));
    assert_true(starts_with(want[NFIXTURES + 7], "callback|"));
    assert_true(starts_with(want[NFIXTURES + 9], "doctype|"));
    assert_true(starts_with(want[NFIXTURES + 10], "malformed|"));

    int rounds = UNDER_SANITIZER ? 120 : 600, mismatches = 0;
    for (int r = 0; r < rounds; r++) {
        size_t i = ((size_t)r * 7 + (size_t)r / (ns * 2)) % ns;
        char *got = run_result(&specs[i]);
        assert_non_null(got);
        if (strcmp(got, want[i]) != 0) {
            if (mismatches++ == 0)
                fprintf(stderr, "round %d (%.60s):\n got: %.300s\nwant: %.300s\n", r, specs[i].name,
                        got, want[i]);
        }
        free(got);
    }
    assert_int_equal(mismatches, 0);

    /* several parsers open at once on this thread, as on an HTTP worker
     * thread, fed in turns, finished and freed in another order than made */
    enum { K = 7 };
    struct open_parse {
        struct idoc_parser *p;
        struct collect c;
        size_t i, off;
        int rc;
        char err[512];
    } *a = calloc(K, sizeof *a);
    int batches = UNDER_SANITIZER ? 15 : 80;
    for (int b = 0; b < batches; b++) {
        for (size_t k = 0; k < K; k++) {
            a[k].i = ((size_t)b * 5 + k * 3) % ns;
            collect_init(&a[k].c);
            a[k].c.stop_at = specs[a[k].i].stop_at;
            a[k].p = idoc_parser_new(NULL, collect_cb, &a[k].c);
            assert_non_null(a[k].p);
            a[k].off = 0;
            a[k].rc = IDOC_OK;
            a[k].err[0] = '\0';
        }
        for (int more = 1; more;) {
            more = 0;
            for (size_t k = 0; k < K; k++) {
                const struct run_spec *s = &specs[a[k].i];
                size_t piece = spec_piece(s), end = spec_end(s);
                if (a[k].off >= end || a[k].rc != IDOC_OK)
                    continue;
                size_t n = end - a[k].off < piece ? end - a[k].off : piece;
                a[k].rc = idoc_parser_feed(a[k].p, s->buf + a[k].off, n, a[k].err, sizeof a[k].err);
                a[k].off += n;
                more = 1;
            }
        }
        for (size_t j = 0; j < K; j++) {
            size_t k = (j * 3 + (size_t)b) % K;   /* 3 and 7 coprime: all of them */
            const struct run_spec *s = &specs[a[k].i];
            if (!s->abandon && a[k].rc == IDOC_OK)
                a[k].rc = idoc_parser_finish(a[k].p, a[k].err, sizeof a[k].err);
            size_t count = idoc_parser_count(a[k].p);
            if (j % 2 == 0)
                idoc_parser_free(a[k].p);
            char *got = result_string(s, &a[k].c, a[k].rc, a[k].err, count);
            if (j % 2 != 0)
                idoc_parser_free(a[k].p);
            if (strcmp(got, want[a[k].i]) != 0) {
                if (mismatches++ == 0)
                    fprintf(stderr, "batch %d parser %zu (%.60s):\n got: %.300s\nwant: %.300s\n", b,
                            k, s->name, got, want[a[k].i]);
            }
            free(got);
        }
    }
    free(a);
    assert_int_equal(mismatches, 0);

    for (size_t i = 0; i < ns; i++) {
        free(want[i]);
        free(specs[i].buf == specs[1].buf && i != 1 ? NULL : specs[i].buf);
    }
}

/* Fed bytes vs serialised events: a UTF-8 IDoc without namespaces is handed
 * out as its own bytes; the same IDoc in a namespace (or in another encoding)
 * is serialised from the parse. Both describe the same model, and an IDoc
 * written the way the serialiser writes it comes out byte for byte the same
 * either way. */
static char *xml_of(const char *text, size_t len, char **json)
{
    struct collect c;
    collect_init(&c);
    char err[512] = "";
    int rc = parse_pieces(text, len, 0, NULL, &c, err, sizeof err);
    if (rc != IDOC_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, IDOC_OK);
    assert_int_equal(c.n, 1);
    char *x = c.xml[0];
    c.xml[0] = NULL;
    if (json != NULL)
        *json = json_string(cJSON_GetArrayItem(c.docs, 0));
    collect_free(&c);
    return x;
}

/* text with the first "<ROOT>" given a default namespace */
static char *with_default_ns(const char *text, const char *root)
{
    char tag[128];
    snprintf(tag, sizeof tag, "<%s>", root);
    const char *at = strstr(text, tag);
    assert_non_null(at);
    char *head = strdup_range(text, at);
    char opened[256];
    snprintf(opened, sizeof opened, "<%s xmlns=\"urn:test:ns\">", root);
    char *r = concat(head, opened, at + strlen(tag));
    free(head);
    return r;
}

static void test_raw_vs_serialised(void **state)
{
    (void)state;
    for (size_t f = 0; f < NFIXTURES; f++) {
        if (strstr(FIXTURES[f].file, "soap") != NULL || FIXTURES[f].n != 1)
            continue;
        size_t len;
        char *text = read_file(FIXTURES[f].file, &len);
        assert_non_null(text);
        char *json_raw = NULL, *json_ser = NULL, *json_again = NULL;
        char *raw = xml_of(text, len, &json_raw);
        /* the root element of the fixture: after "<?xml...?>\n" in raw */
        const char *r0 = raw + strlen(XMLDECL) + 1;
        char *root = strdup_range(r0, strchr(r0, '>'));
        char *nstext = with_default_ns(text, root);
        char *ser = xml_of(nstext, strlen(nstext), &json_ser);
        /* the same model */
        assert_string_equal(json_ser, json_raw);
        assert_true(starts_with(ser, XMLDECL));
        assert_null(strstr(ser, "xmlns"));
        assert_null(strstr(ser, "urn:test:ns"));
        /* the serialised form, parsed as plain UTF-8 (raw path), comes out
         * unchanged: the raw slice of it equals it */
        char *ser_raw = xml_of(ser, strlen(ser), &json_again);
        assert_string_equal(ser_raw, ser);
        assert_string_equal(json_again, json_raw);
        free(json_again);
        /* and serialising it once more changes nothing either */
        char *ser_ns = with_default_ns(ser, root);
        char *ser2 = xml_of(ser_ns, strlen(ser_ns), &json_again);
        assert_string_equal(ser2, ser);
        assert_string_equal(json_again, json_raw);
        /* the raw form keeps the sender's bytes inside <IDOC> (as far as the
         * fixture is UTF-8): its body is in the input */
        if (strstr(FIXTURES[f].file, "latin1") == NULL) {
            const char *b = strstr(raw, "<IDOC");
            char *body = strdup_range(b, raw + strlen(raw) - strlen(root) - 3);
            assert_non_null(strstr(text, body));
            free(body);
        }
        free(json_again); free(ser2); free(ser_ns); free(ser_raw);
        free(ser); free(nstext); free(root); free(raw); free(json_raw); free(json_ser); free(text);
    }

    /* a namespace first seen deep inside the IDoc: the part before it is
     * taken as sent, the rest serialised; no namespace survives */
    const char *doc =
        "<ZTEST01>\n  <IDOC BEGIN=\"1\">\n    <EDI_DC40 SEGMENT=\"1\"><DOCNUM>0000000091009990</DOCNUM>"
        "<CIMTYP></CIMTYP></EDI_DC40>\n"
        "    <E1 SEGMENT=\"1\"><F>a &amp; b</F><G></G></E1>\n"
        "    <E2 SEGMENT=\"1\" xmlns:q=\"urn:q\" q:x=\"1\" Y=\"t&amp;&lt;&quot;&#9;\"><q:H>c &lt; d</q:H>"
        "<I></I><!-- k --><J><![CDATA[<x>]]></J></E2>\n"
        "    <E3 SEGMENT=\"1\"><K>e</K></E3>\n"
        "  </IDOC>\n</ZTEST01>";
    char *json = NULL;
    char *x = xml_of(doc, strlen(doc), &json);
    const char *want =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ZTEST01><IDOC BEGIN=\"1\">\n    <EDI_DC40 "
        "SEGMENT=\"1\"><DOCNUM>0000000091009990</DOCNUM><CIMTYP></CIMTYP></EDI_DC40>\n"
        "    <E1 SEGMENT=\"1\"><F>a &amp; b</F><G></G></E1>\n"
        "    <E2 SEGMENT=\"1\" Y=\"t&amp;&lt;&quot;&#9;\"><H>c &lt; d</H><I/><!-- k --><J><![CDATA[<x>]]>"
        "</J></E2>\n    <E3 SEGMENT=\"1\"><K>e</K></E3>\n  </IDOC></ZTEST01>";
    assert_string_equal(x, want);
    cJSON *j = cJSON_Parse(json);
    const cJSON *e2 = jseg(jsegs(j), "E2", 0);
    assert_string_equal(jfield(e2, "H"), "c < d");
    assert_string_equal(jfield(e2, "I"), "");
    assert_string_equal(jfield(e2, "J"), "<x>");
    char *again = NULL;
    char *x2 = xml_of(x, strlen(x), &again);
    assert_string_equal(x2, x);
    assert_string_equal(again, json);
    cJSON_Delete(j);
    free(again); free(x2); free(x); free(json);
}

/* CR LF line ends and tabs everywhere, fed in pieces of every small size
 * (a piece may end between CR and LF) */
static void check_crlf(const struct idoc *doc, void *arg)
{
    (void)arg;
    assert_string_equal(doc->root, "ZTEST01");
    assert_string_equal(doc->docnum, "0000000091009970");
    assert_string_equal(idoc_control_get(doc, "DOCNUM"), "\t0000000091009970\t");
    assert_string_equal(idoc_control_get(doc, "MANDT"), "\t");
    assert_int_equal(doc->nsegments, 1);
    const struct idoc_segment *e1 = &doc->segments[0];
    assert_string_equal(e1->name, "E1");
    assert_int_equal(e1->nfields, 4);
    assert_string_equal(idoc_segment_get(e1, "TAB"), "\tA\tB\t");
    assert_string_equal(idoc_segment_get(e1, "CRLF"), "line1\nline2\nline3\n");
    assert_string_equal(idoc_segment_get(e1, "REF"), "x\ry\tz\r\n");
    assert_string_equal(idoc_segment_get(e1, "EMPTY"), "");
    assert_int_equal(e1->nchildren, 1);
    assert_string_equal(idoc_segment_get(&e1->children[0], "F"), "\t \t");
    assert_null(memchr(doc->xml, '\r', doc->xml_len));
}

static void test_crlf_tabs(void **state)
{
    (void)state;
    const char *body =
        "<ZTEST01>\r\n\t<IDOC BEGIN=\"1\">\r\n\t\t<EDI_DC40 SEGMENT=\"1\">\r\n"
        "\t\t\t<TABNAM>EDI_DC40</TABNAM>\r\n\t\t\t<DOCNUM>\t0000000091009970\t</DOCNUM>\r\n"
        "\t\t\t<MANDT>\t</MANDT>\r\n\t\t</EDI_DC40>\r\n"
        "\t\t<E1 SEGMENT=\"1\" NOTE=\"a\tb\r\nc\">\r\n"
        "\t\t\t<TAB>\tA\tB\t</TAB>\r\n"
        "\t\t\t<CRLF>line1\r\nline2\rline3\r\n</CRLF>\r\n"
        "\t\t\t<REF>x&#13;y&#9;z&#13;&#10;</REF>\r\n"
        "\t\t\t<EMPTY></EMPTY>\r\n"
        "\t\t\t<E2 SEGMENT=\"1\">\r\n\t\t\t\t<F>\t \t</F>\r\n\t\t\t</E2>\r\n"
        "\t\t</E1>\r\n\t</IDOC>\r\n</ZTEST01>\r\n";
    char *utf8 = concat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n", body, "");
    char *cp = concat("<?xml version=\"1.0\" encoding=\"windows-1252\"?>\r\n", body, "");
    static const size_t pieces[] = { 0, 1, 2, 3, 4, 5, 7, 13, 64, 4096 };
    char *want_json = NULL, *want_xml = NULL;
    for (int enc = 0; enc < 2; enc++) {
        const char *text = enc == 0 ? utf8 : cp;
        for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
            struct collect c;
            collect_init(&c);
            c.check = check_crlf;
            char err[512] = "";
            int rc = parse_pieces(text, strlen(text), pieces[k], NULL, &c, err, sizeof err);
            if (rc != IDOC_OK)
                fprintf(stderr, "enc %d piece %zu: %s\n", enc, pieces[k], err);
            assert_int_equal(rc, IDOC_OK);
            assert_int_equal(c.n, 1);
            char *j = json_string(c.docs);
            if (want_json == NULL) {
                want_json = j;
            } else {
                assert_string_equal(j, want_json);
                free(j);
            }
            if (enc == 0) {
                /* as sent, line ends normalised as XML does */
                assert_non_null(strstr(c.xml[0], "\n\t\t<E1 SEGMENT=\"1\" NOTE=\"a\tb\nc\">\n"));
                assert_non_null(strstr(c.xml[0], "<CRLF>line1\nline2\nline3\n</CRLF>"));
                assert_non_null(strstr(c.xml[0], "<REF>x&#13;y&#9;z&#13;&#10;</REF>"));
                assert_true(ends_with(c.xml[0], c.xml_len[0], "\n\t</IDOC></ZTEST01>"));
            } else {
                /* serialised: attribute blanks normalised, a CR escaped */
                assert_non_null(strstr(c.xml[0], "\n\t\t<E1 SEGMENT=\"1\" NOTE=\"a b c\">\n"));
                assert_non_null(strstr(c.xml[0], "<CRLF>line1\nline2\nline3\n</CRLF>"));
                assert_non_null(strstr(c.xml[0], "<REF>x&#13;y\tz&#13;\n</REF>"));
                assert_non_null(strstr(c.xml[0], "<EMPTY/>"));
            }
            if (k == 0 && enc == 0) {
                want_xml = c.xml[0];
                c.xml[0] = NULL;
            } else if (enc == 0) {
                assert_string_equal(c.xml[0], want_xml);
            }
            /* re-parsed: the same model, the same bytes */
            if (k == 0) {
                struct collect c2;
                collect_init(&c2);
                c2.check = check_crlf;
                const char *x = enc == 0 ? want_xml : c.xml[0];
                assert_int_equal(parse_pieces(x, strlen(x), 0, NULL, &c2, err, sizeof err), IDOC_OK);
                assert_string_equal(c2.xml[0], x);
                collect_free(&c2);
            }
            collect_free(&c);
        }
    }
    free(want_json);
    free(want_xml);
    free(utf8);
    free(cp);
}

/* A field of a few MB (entities, multi-byte characters, CDATA) split over
 * feed pieces of any size; and the 10 MB text limit libxml2's tree builder
 * used to enforce. */
struct long_check {
    const char *want;
    size_t want_len;
    int seen;
};

static void check_long(const struct idoc *doc, void *arg)
{
    struct long_check *lc = arg;
    const char *v = idoc_segment_get(&doc->segments[0], "LONG");
    assert_non_null(v);
    assert_int_equal(strlen(v), lc->want_len);
    assert_memory_equal(v, lc->want, lc->want_len);
    assert_string_equal(idoc_segment_get(&doc->segments[0], "AFTER"), "z");
    lc->seen++;
}

static void test_long_field(void **state)
{
    (void)state;
    const char *unit_in = "Gr\xc3\xbc\xc3\x9f" "e &amp; &lt;tag&gt; &#x20AC;\t";
    const char *unit_out = "Gr\xc3\xbc\xc3\x9f" "e & <tag> \xe2\x82\xac\t";
    size_t reps = UNDER_SANITIZER ? 20000 : 100000;
    size_t li = strlen(unit_in), lo = strlen(unit_out);
    char *in = malloc(reps * li + 1), *out = malloc(reps * lo + 1);
    for (size_t i = 0; i < reps; i++) {
        memcpy(in + i * li, unit_in, li);
        memcpy(out + i * lo, unit_out, lo);
    }
    in[reps * li] = '\0';
    out[reps * lo] = '\0';

    for (int ns = 0; ns < 2; ns++) {
        char *head = concat(ns ? "<ZTEST01 xmlns=\"urn:x\">" : "<ZTEST01>",
                            "<IDOC BEGIN=\"1\"><EDI_DC40 SEGMENT=\"1\"><DOCNUM>1</DOCNUM></EDI_DC40>"
                            "<E1 SEGMENT=\"1\"><LONG>", "");
        char *doc = concat(head, in, "</LONG><AFTER>z</AFTER></E1></IDOC></ZTEST01>");
        static const size_t pieces[] = { 0, 1000, 4097, 65536, 65537 };
        for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
            struct long_check lc = { out, reps * lo, 0 };
            struct collect c;
            collect_init(&c);
            c.check = check_long;
            c.arg = &lc;
            char err[512] = "";
            assert_int_equal(parse_pieces(doc, strlen(doc), pieces[k], NULL, &c, err, sizeof err),
                             IDOC_OK);
            assert_int_equal(lc.seen, 1);
            if (k == 0) {
                /* doc->xml holds it too */
                struct long_check lc2 = { out, reps * lo, 0 };
                struct collect c2;
                collect_init(&c2);
                c2.check = check_long;
                c2.arg = &lc2;
                assert_int_equal(parse_pieces(c.xml[0], c.xml_len[0], 0, NULL, &c2, err, sizeof err),
                                 IDOC_OK);
                assert_int_equal(lc2.seen, 1);
                collect_free(&c2);
            }
            collect_free(&c);
        }
        free(doc);
        free(head);
    }

    /* a long CDATA section arrives in pieces: one field value, and one
     * section when serialised */
    size_t clen = (size_t)1 << 20;
    char *cdata = malloc(clen + 1);
    for (size_t i = 0; i < clen; i++)
        cdata[i] = (char)('a' + i % 26);
    cdata[clen] = '\0';
    char *cdoc = concat("<ZTEST01 xmlns=\"urn:x\"><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1>"
                        "<LONG><![CDATA[", cdata, "]]></LONG><AFTER>z</AFTER></E1></IDOC></ZTEST01>");
    struct long_check lc = { cdata, clen, 0 };
    struct collect c;
    collect_init(&c);
    c.check = check_long;
    c.arg = &lc;
    char err[512] = "";
    assert_int_equal(parse_pieces(cdoc, strlen(cdoc), 4097, NULL, &c, err, sizeof err), IDOC_OK);
    assert_int_equal(lc.seen, 1);
    const char *s1 = strstr(c.xml[0], "<![CDATA[");
    assert_non_null(s1);
    assert_null(strstr(s1 + 1, "<![CDATA["));
    assert_true(strlen(s1) > clen);
    collect_free(&c);
    free(cdoc);
    free(cdata);

    /* more than 10 MB of text in one run inside an IDoc: refused, as the
     * tree builder refused it; fed in pieces, memory stays bounded */
    size_t big = 10000001;
    char *huge = malloc(big + 1);
    memset(huge, 'x', big);
    huge[big] = '\0';
    char *hdoc = concat("<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1><F>", huge,
                        "</F></E1></IDOC></ZTEST01>");
    collect_init(&c);
    assert_int_equal(parse_pieces(hdoc, strlen(hdoc), 65536, NULL, &c, err, sizeof err),
                     IDOC_ERR_MALFORMED);
    assert_true(starts_with(err, "malformed XML at line 1: "));
    assert_non_null(strstr(err, "huge text node"));
    assert_int_equal(c.n, 0);
    collect_free(&c);
    /* just under the limit is fine */
    memcpy(hdoc + strlen("<ZTEST01><IDOC><EDI_DC40><DOCNUM>1</DOCNUM></EDI_DC40><E1><F>"), "<G/>", 4);
    collect_init(&c);
    assert_int_equal(parse_pieces(hdoc, strlen(hdoc), 65536, NULL, &c, err, sizeof err), IDOC_OK);
    collect_free(&c);
    free(hdoc);
    free(huge);
    free(in);
    free(out);
}

/* Hostile names cannot grow a reused parser's dictionary without bound: a
 * thread's parser is thrown away once its dictionary is large. Measured in a
 * child process (ru_maxrss of the child's own). */
static void names_child(int fd)
{
    int ndocs = 100, nnames = 3000;
    size_t cap = (size_t)nnames * 48 + 256;
    char *doc = malloc(cap);
    long before = 0;
    int bad = 0;
    for (int d = 0; d < ndocs; d++) {
        char *w = doc;
        w += sprintf(w, "<ZTEST01><IDOC><EDI_DC40><DOCNUM>%d</DOCNUM></EDI_DC40><E1>", d + 1);
        for (int i = 0; i < nnames; i++)
            w += sprintf(w, "<N%05d_%05d>v</N%05d_%05d>", d, i, d, i);
        w += sprintf(w, "</E1></IDOC></ZTEST01>");
        char err[512];
        struct idoc_parser *p = idoc_parser_new(NULL, NULL, NULL);
        if (idoc_parser_feed(p, doc, (size_t)(w - doc), err, sizeof err) != IDOC_OK ||
            idoc_parser_finish(p, err, sizeof err) != IDOC_OK || idoc_parser_count(p) != 1)
            bad++;
        idoc_parser_free(p);
        if (d == 9)
            before = maxrss_kb();
    }
    long growth = maxrss_kb() - before;
    free(doc);
    long rep[2] = { growth, bad };
    if (write(fd, rep, sizeof rep) != (ssize_t)sizeof rep)
        _exit(3);
    _exit(0);
}

static void test_dict_growth(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        names_child(fds[1]);
    }
    close(fds[1]);
    long rep[2] = { -1, -1 };
    ssize_t r = read(fds[0], rep, sizeof rep);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_int_equal(r, (ssize_t)sizeof rep);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(rep[1], 0);
    printf("    100 documents x 3000 new names each on one thread: peak RSS grew %ld KB after "
           "the 10th\n", rep[0]);
    if (!UNDER_SANITIZER)
        assert_true(rep[0] < 8 * 1024);
}

/* Speed report (no assertion): docs/s for the ~6 KB ORDERS05 fixture. */
/* ------------------------------------------------------------------------ */
/* idoc_pack: the model as stored for delivery                              */

struct pack_ctx {
    size_t n;
    unsigned char *biggest;   /* the largest packed value seen, for mutation */
    size_t biggest_len;
};

static char *model_string(const struct idoc *doc)
{
    cJSON *j = idoc_json(doc);
    assert_non_null(j);
    cJSON_AddStringToObject(j, "root", doc->root);
    const char *conv[][2] = { { "docnum", doc->docnum }, { "mandt", doc->mandt },
                              { "sndprn", doc->sndprn }, { "sndpor", doc->sndpor },
                              { "idoctyp", doc->idoctyp }, { "cimtyp", doc->cimtyp },
                              { "mestyp", doc->mestyp }, { "credat", doc->credat },
                              { "cretim", doc->cretim } };
    for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++)
        cJSON_AddStringToObject(j, conv[i][0], conv[i][1]);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* Pack each IDoc in the callback, unpack it, and compare everything the
 * model holds (structure, names, values, the trimmed convenience copies). */
static int pack_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)err, (void)errlen;
    struct pack_ctx *c = ud;
    size_t len = idoc_pack_size(doc);
    assert_true(len > 2);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(idoc_pack(doc, buf, len - 1), 0); /* wrong length: refused */
    assert_int_equal(idoc_pack(doc, buf, len), len);
    /* One pass into a buffer too small says how much is needed, writes
     * nothing past it; with enough room it gives the same bytes. */
    unsigned char *small = malloc(len / 2 + 1), *big = malloc(len + 64);
    assert_int_equal(idoc_pack_to(doc, small, len / 2), len);
    assert_int_equal(idoc_pack_to(doc, big, len + 64), len);
    assert_memory_equal(big, buf, len);
    free(small);
    free(big);
    struct idoc *u = NULL;
    char why[160];
    assert_int_equal(idoc_unpack(buf, len, &u, why, sizeof why), 0);
    assert_null(u->xml);
    char *a = model_string(doc), *b = model_string(u);
    assert_string_equal(a, b);
    free(a);
    free(b);
    idoc_unpack_free(u);
    if (len > c->biggest_len) {
        free(c->biggest);
        c->biggest = buf;
        c->biggest_len = len;
    } else {
        free(buf);
    }
    c->n++;
    return 0;
}

static void test_pack_roundtrip(void **state)
{
    (void)state;
    struct pack_ctx c = { 0 };
    size_t want = 0;
    for (size_t i = 0; i < NFIXTURES; i++) {
        size_t len;
        char *buf = read_file(FIXTURES[i].file, &len);
        assert_non_null(buf);
        char err[512];
        assert_int_equal(idoc_parse(buf, len, NULL, pack_cb, &c, err, sizeof err), IDOC_OK);
        want += FIXTURES[i].n;
        free(buf);
    }
    assert_int_equal(c.n, want);

    /* Damaged values are refused whole, never read outside the value
     * (ASan checks that): every truncation, and every byte replaced. */
    const unsigned char *v = c.biggest;
    size_t n = c.biggest_len;
    struct idoc *u;
    char why[160];
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *t = malloc(cut ? cut : 1);
        memcpy(t, v, cut);
        assert_int_equal(idoc_unpack(t, cut, &u, why, sizeof why), -1);
        assert_null(u);
        free(t);
    }
    static const unsigned char repl[] = { 0x00, 0x01, 0x7f, 0x80, 0xff };
    size_t accepted = 0;
    unsigned char *t = malloc(n);
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t k = 0; k < sizeof repl; k++) {
            if (v[pos] == repl[k])
                continue;
            memcpy(t, v, n);
            t[pos] = repl[k];
            int rc = idoc_unpack(t, n, &u, why, sizeof why);
            assert_true(rc == 0 || rc == -1);
            if (rc == 0) {
                /* a changed character inside a string: a valid model */
                char *s = model_string(u);
                free(s);
                idoc_unpack_free(u);
                accepted++;
            } else {
                assert_non_null(strstr(why, "packed IDoc model"));
            }
        }
    }
    assert_true(accepted > 0);
    free(t);

    /* Another version, and totals that announce more than the value can hold. */
    unsigned char other[] = { 'I', 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(idoc_unpack(other, sizeof other, &u, why, sizeof why), -1);
    assert_string_equal(why, "not a version-2 packed IDoc model");
    unsigned char huge[] = { 'I', 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0 };
    assert_int_equal(idoc_unpack(huge, sizeof huge, &u, why, sizeof why), -1);
    assert_non_null(strstr(why, "totals"));
    free(c.biggest);
}

/* A model nested deeper than the parser allows cannot be packed (0); one at
 * the limit can, and comes back intact. */
static void test_pack_depth(void **state)
{
    (void)state;
    enum { DEEP = 300 };
    struct idoc_segment *segs = calloc(DEEP, sizeof *segs);
    struct idoc_field fld = { "F", "v" };
    for (size_t i = 0; i < DEEP; i++) {
        segs[i].name = "S";
        segs[i].fields = &fld;
        segs[i].nfields = 1;
        segs[i].children = i + 1 < DEEP ? &segs[i + 1] : NULL;
        segs[i].nchildren = i + 1 < DEEP ? 1 : 0;
    }
    struct idoc_field ctl = { "DOCNUM", "1" };
    struct idoc d = { .root = "R", .control = &ctl, .ncontrol = 1, .docnum = "1", .mandt = "",
                      .sndprn = "", .sndpor = "", .idoctyp = "", .cimtyp = "", .mestyp = "",
                      .credat = "", .cretim = "", .segments = segs, .nsegments = 1 };
    assert_int_equal(idoc_pack_size(&d), 0);
    segs[255].children = NULL; /* depth 256: the limit */
    segs[255].nchildren = 0;
    size_t len = idoc_pack_size(&d);
    assert_true(len > 0);
    unsigned char *buf = malloc(len);
    assert_int_equal(idoc_pack(&d, buf, len), len);
    struct idoc *u;
    assert_int_equal(idoc_unpack(buf, len, &u, NULL, 0), 0);
    const struct idoc_segment *s = u->segments;
    size_t depth = 1;
    while (s->nchildren) {
        assert_string_equal(s->name, "S");
        assert_string_equal(s->fields[0].value, "v");
        s = s->children;
        depth++;
    }
    assert_int_equal(depth, 256);
    idoc_unpack_free(u);
    free(buf);
    free(segs);
}

static void test_speed_report(void **state)
{
    (void)state;
    size_t len;
    char *buf = read_file("test-fixtures/idoc/orders05_po.xml", &len);
    assert_non_null(buf);
    int iters = UNDER_SANITIZER ? 500 : 20000;
    char err[512];
    size_t n = 0;
    double t0 = now_s();
    for (int i = 0; i < iters; i++) {
        struct idoc_parser *p = idoc_parser_new(NULL, NULL, NULL);
        if (idoc_parser_feed(p, buf, len, err, sizeof err) == IDOC_OK &&
            idoc_parser_finish(p, err, sizeof err) == IDOC_OK)
            n += idoc_parser_count(p);
        idoc_parser_free(p);
    }
    double dt = now_s() - t0;
    assert_int_equal(n, (size_t)iters);
    printf("    %zu-byte ORDERS05: %.0f docs/s single thread (%.1f us/doc, parser per doc)%s\n",
           len, iters / dt, dt / iters * 1e6, UNDER_SANITIZER ? " [sanitizer build]" : "");
    free(buf);
}

int main(void)
{
    idoc_global_init();
    const char *filter = getenv("IDOC_TEST_FILTER");
    if (filter != NULL && filter[0] != '\0')
        cmocka_set_test_filter(filter);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cremas05_vendor),
        cmocka_unit_test(test_cremas06_packet),
        cmocka_unit_test(test_debmas06_customer),
        cmocka_unit_test(test_debmas07_contacts),
        cmocka_unit_test(test_orders05_po),
        cmocka_unit_test(test_orders05_json_expected),
        cmocka_unit_test(test_ordchg),
        cmocka_unit_test(test_extension_zseg),
        cmocka_unit_test(test_latin1),
        cmocka_unit_test(test_nodecl),
        cmocka_unit_test(test_blanks),
        cmocka_unit_test(test_soap),
        cmocka_unit_test(test_ordrsp_other),
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_pieces_all),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_other_errors),
        cmocka_unit_test(test_xml_id),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_sticky),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_field_rules),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_api_misc),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_bounded_memory),
        cmocka_unit_test(test_reuse_many),
        cmocka_unit_test(test_raw_vs_serialised),
        cmocka_unit_test(test_crlf_tabs),
        cmocka_unit_test(test_long_field),
        cmocka_unit_test(test_dict_growth),
        cmocka_unit_test(test_pack_roundtrip),
        cmocka_unit_test(test_pack_depth),
        cmocka_unit_test(test_speed_report),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    idoc_global_cleanup();
    return failed;
}
