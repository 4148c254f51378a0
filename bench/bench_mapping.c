/*
 * bench_mapping — throughput of the mapping engine (issue 3) next to the
 * parse cost of the same documents, one thread, in one run.
 *
 *   bench_mapping [-t SECONDS] [MAPPING.json]
 *
 * Generates two ORDERS05 purchase orders as an MM system sends them (the
 * smallest with >= 6 KiB and >= 30 KiB: E1EDK01, E1EDK14, E1EDK03, E1EDKA1
 * AG/LF/WE, E1EDK02, texts, items with E1EDP20/E1EDP19/E1EDP05, E1EDS01),
 * then measures for each, SECONDS (default 1.5) each after a warm-up:
 *   libxml2 DOM parse    xmlReadMemory + xmlFreeDoc (the ingest benchmark's
 *                        parse ceiling);
 *   idoc_parse           the project's parser building the IDoc model;
 *   mapping              mapping_apply on the parsed model (config/mapping.json,
 *                        lookup cache warm: the currency id is known, as in
 *                        steady-state delivery), ops freed each time.
 * and prints IDocs/s, us/IDoc and the cost ratio mapping / parse (target:
 * mapping costs less than half of parsing). Exit 1 if a step fails.
 */
#include <libxml/parser.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/mapping.h"
#include "idoc/idoc.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct sbuf {
    char *p;
    size_t n, cap;
};

static void put(struct sbuf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) {
        b->cap = (b->n + l + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->n, s, l + 1);
    b->n += l;
}

static void putf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp);
}

/* An ORDERS05 purchase order with n items. */
static char *gen_orders_n(int items, size_t *len)
{
    static const char *const mat[][3] = {
        {"000000000010004711", "Oak flooring 3/4in x 5in, prefinished natural", "1.85"},
        {"000000000010004712", "Maple engineered plank 1/2in x 7in", "2.42"},
        {"000000000010004713", "Underlayment foam 2mm, 100 sqft roll", "18.90"},
        {"000000000010004714", "T-moulding oak 78in", "24.75"},
        {"000000000010004715", "Hickory hand-scraped 3/4in x 6in &amp; random length", "3.15"},
    };
    struct sbuf b = {0};
    put(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ORDERS05>\n<IDOC BEGIN=\"1\">\n"
            "<EDI_DC40 SEGMENT=\"1\"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT><DOCNUM>0000000039000001</DOCNUM>"
            "<DOCREL>740</DOCREL><STATUS>30</STATUS><DIRECT>1</DIRECT><OUTMOD>4</OUTMOD><IDOCTYP>ORDERS05</IDOCTYP>"
            "<MESTYP>ORDERS</MESTYP><STDMES>ORDERS</STDMES><SNDPOR>SAPPR1</SNDPOR><SNDPRT>LS</SNDPRT>"
            "<SNDPRN>PR1CLNT100</SNDPRN><RCVPOR>MLCXMLHTTP</RCVPOR><RCVPRT>LI</RCVPRT><RCVPFC>LF</RCVPFC>"
            "<RCVPRN>0000100310</RCVPRN><CREDAT>20240311</CREDAT><CRETIM>101500</CRETIM>"
            "<SERIAL>20240311101500</SERIAL></EDI_DC40>\n");
    put(&b, "<E1EDK01 SEGMENT=\"1\"><CURCY>EUR</CURCY><HWAER>EUR</HWAER><WKURS>1.00000</WKURS><ZTERM>ZB30</ZTERM>"
            "<BSART>NB</BSART><BELNR>4500017321</BELNR><NTGEW>1250.000</NTGEW><GEWEI>KGM</GEWEI>"
            "<RECIPNT_NO>0000100310</RECIPNT_NO></E1EDK01>\n");
    static const char *const k14[][2] = {{"014", "1000"}, {"009", "100"}, {"013", "NB"}, {"011", "1000"}};
    for (int i = 0; i < 4; i++)
        putf(&b, "<E1EDK14 SEGMENT=\"1\"><QUALF>%s</QUALF><ORGID>%s</ORGID></E1EDK14>\n", k14[i][0], k14[i][1]);
    putf(&b, "<E1EDK03 SEGMENT=\"1\"><IDDAT>012</IDDAT><DATUM>20240311</DATUM></E1EDK03>\n"
             "<E1EDK03 SEGMENT=\"1\"><IDDAT>011</IDDAT><DATUM>20240311</DATUM></E1EDK03>\n"
             "<E1EDK03 SEGMENT=\"1\"><IDDAT>002</IDDAT><DATUM>20240415</DATUM></E1EDK03>\n");
    put(&b, "<E1EDKA1 SEGMENT=\"1\"><PARVW>AG</PARVW><PARTN>1000</PARTN><NAME1>Muster AG Einkauf</NAME1>"
            "<STRAS>Industriestrasse 1</STRAS><ORT01>Walldorf</ORT01><PSTLZ>69190</PSTLZ><LAND1>DE</LAND1>"
            "<TELF1>06227 7000</TELF1><BNAME>MKOWALSKI</BNAME></E1EDKA1>\n"
            "<E1EDKA1 SEGMENT=\"1\"><PARVW>LF</PARVW><PARTN>0000100310</PARTN><NAME1>Hoffmann Industriebedarf</NAME1>"
            "<STRAS>Industriestrasse 42</STRAS><ORT01>Stuttgart</ORT01><PSTLZ>70565</PSTLZ><LAND1>DE</LAND1>"
            "<SPRAS>D</SPRAS></E1EDKA1>\n"
            "<E1EDKA1 SEGMENT=\"1\"><PARVW>WE</PARVW><PARTN>1000</PARTN><NAME1>Werk Walldorf</NAME1>"
            "<ORT01>Walldorf</ORT01><LAND1>DE</LAND1></E1EDKA1>\n"
            "<E1EDK02 SEGMENT=\"1\"><QUALF>001</QUALF><BELNR>4500017321</BELNR><DATUM>20240311</DATUM></E1EDK02>\n"
            "<E1EDKT1 SEGMENT=\"1\"><TDID>F01</TDID><TSSPRAS>E</TSSPRAS>"
            "<E1EDKT2 SEGMENT=\"1\"><TDLINE>Deliver to gate 3, 7:00-15:00. Call 2 hours before arrival.</TDLINE>"
            "<TDFORMAT>*</TDFORMAT></E1EDKT2></E1EDKT1>\n");
    long total_cents = 0;
    for (int i = 0; i < items; i++) {
        const char *const *m = mat[i % 5];
        int qty = 100 + (i * 37) % 900;
        putf(&b,
             "<E1EDP01 SEGMENT=\"1\"><POSEX>%05d</POSEX><ACTION>001</ACTION><PSTYP>0</PSTYP><MENGE>%d.000</MENGE>"
             "<MENEE>FTK</MENEE><BMNG2>%d.000</BMNG2><PMENE>FTK</PMENE><ABFTZ>       1</ABFTZ><VPREI>%s</VPREI>"
             "<PEINH>1</PEINH><NETWR>%d.%02d</NETWR><NTGEW>%d.000</NTGEW><GEWEI>KGM</GEWEI><MATKL>001</MATKL>"
             "<WERKS>1000</WERKS><LGORT>0001</LGORT><MATNR>%s</MATNR>\n"
             "<E1EDP20 SEGMENT=\"1\"><WMENG>%d.000</WMENG><AMENG>%d.000</AMENG><EDATU>202404%02d</EDATU>"
             "<EZEIT>000000</EZEIT></E1EDP20>\n"
             "<E1EDP19 SEGMENT=\"1\"><QUALF>001</QUALF><IDTNR>%s</IDTNR><KTEXT>%s</KTEXT></E1EDP19>\n"
             "<E1EDP05 SEGMENT=\"1\"><KSCHL>PB00</KSCHL><KOTXT>Gross price</KOTXT><BETRG>%s</BETRG>"
             "<KPERC></KPERC><KRATE>%s</KRATE><UPRBS>       1</UPRBS><MEAUN>FTK</MEAUN></E1EDP05>\n"
             "</E1EDP01>\n",
             (i + 1) * 10, qty, qty, m[2], qty * 2, (qty * 7) % 100, qty / 10, m[0], qty, qty, 1 + i % 28, m[0],
             m[1], m[2], m[2]);
        total_cents += qty * 200 + (qty * 7) % 100;
    }
    putf(&b, "<E1EDS01 SEGMENT=\"1\"><SUMID>001</SUMID><SUMME>%d</SUMME></E1EDS01>\n"
             "<E1EDS01 SEGMENT=\"1\"><SUMID>002</SUMID><SUMME>%ld.%02ld</SUMME><SUNIT>EUR</SUNIT></E1EDS01>\n"
             "</IDOC>\n</ORDERS05>\n",
         items, total_cents / 100, total_cents % 100);
    *len = b.n;
    return b.p;
}

/* The smallest order of at least `target` bytes (items added one by one). */
static char *gen_orders(size_t target, int *items, size_t *len)
{
    for (int n = 1;; n++) {
        char *x = gen_orders_n(n, len);
        if (*len >= target || n >= 10000) {
            *items = n;
            return x;
        }
        free(x);
    }
}

static int noop_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)doc;
    (void)err;
    (void)errlen;
    ++*(long *)ud;
    return 0;
}

struct mapbench {
    const struct mapping *m;
    const struct mapping_lookups *lk;
    double secs;
    long n;
    double elapsed;
    size_t nops;
    int failed;
    char err[512];
};

static int map_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct mapbench *b = ud;
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    /* warm-up */
    for (int i = 0; i < 200; i++) {
        if (mapping_apply(b->m, doc, NULL, b->lk, &ops, b->err, sizeof b->err) != 0) {
            b->failed = 1;
            mapping_ops_free(&ops);
            return 0;
        }
        b->nops = ops.n;
        mapping_ops_clear(&ops);
    }
    double t0 = now_s(), t;
    long n = 0;
    do {
        for (int i = 0; i < 100; i++) {
            mapping_apply(b->m, doc, NULL, b->lk, &ops, b->err, sizeof b->err);
            mapping_ops_clear(&ops);
        }
        n += 100;
        t = now_s();
    } while (t - t0 < b->secs);
    b->n = n;
    b->elapsed = t - t0;
    mapping_ops_free(&ops);
    return 0;
}

/* docs/s of fn over `secs` */
static double rate_dom(const char *buf, size_t len, double secs)
{
    for (int i = 0; i < 50; i++) xmlFreeDoc(xmlReadMemory(buf, (int)len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
    double t0 = now_s(), t;
    long n = 0;
    do {
        for (int i = 0; i < 20; i++) {
            xmlDocPtr d = xmlReadMemory(buf, (int)len, NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
            if (!d) return -1;
            xmlFreeDoc(d);
        }
        n += 20;
        t = now_s();
    } while (t - t0 < secs);
    return (double)n / (t - t0);
}

static double rate_idoc(const char *buf, size_t len, double secs)
{
    long got = 0;
    char err[256];
    for (int i = 0; i < 50; i++)
        if (idoc_parse(buf, len, NULL, noop_cb, &got, err, sizeof err) != IDOC_OK) return -1;
    double t0 = now_s(), t;
    long n = 0;
    do {
        for (int i = 0; i < 20; i++) idoc_parse(buf, len, NULL, noop_cb, &got, err, sizeof err);
        n += 20;
        t = now_s();
    } while (t - t0 < secs);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    double secs = 1.5;
    const char *mpath = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) secs = atof(argv[++i]);
        else mpath = argv[i];
    }
    char def[4096];
    if (!mpath) {
        const char *root = getenv("MLC_ROOT");
        snprintf(def, sizeof def, "%s/config/mapping.json", root && *root ? root : ".");
        mpath = def;
    }
    if (secs <= 0) secs = 1.5;
    idoc_global_init();
    char err[1024];
    struct mapping *m = mapping_load(mpath, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench_mapping: %s\n", err);
        return 1;
    }
    struct mapping_lookups *lk = mapping_lookups_mem_new();
    mapping_lookups_mem_set(lk, "transactioncurrencies:isocurrencycode=EUR", "6a1b2c3d-0000-4000-8000-00000000e0e0");
    mapping_lookups_mem_set(lk, "pricelevels:name=SAP Standard", "6a1b2c3d-0000-4000-8000-0000000000a1");
    printf("bench_mapping: mapping %s (orders_target %s), one thread, %.1f s per measurement, lookup cache warm\n",
           mpath, mapping_orders_target(m), secs);
    static const struct { const char *label; size_t bytes; } docs[] = {{"6k", 6 * 1024}, {"30k", 30 * 1024}};
    int rc = 0;
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        size_t len;
        int items;
        char *xml = gen_orders(docs[d].bytes, &items, &len);
        double dom = rate_dom(xml, len, secs);
        double ip = rate_idoc(xml, len, secs);
        struct mapbench mb = {.m = m, .lk = lk, .secs = secs};
        int st = idoc_parse(xml, len, NULL, map_cb, &mb, err, sizeof err);
        if (dom < 0 || ip < 0 || st != IDOC_OK || mb.failed || mb.n == 0) {
            fprintf(stderr, "bench_mapping: %s: %s\n", docs[d].label, mb.failed ? mb.err : "parse failed");
            rc = 1;
            free(xml);
            continue;
        }
        double mr = (double)mb.n / mb.elapsed;
        double ratio_dom = dom / mr, ratio_ip = ip / mr;
        printf("MAPBENCH doc=%s bytes=%zu items=%d ops=%zu libxml2_dom_per_s=%.0f idoc_parse_per_s=%.0f "
               "map_per_s=%.0f map_us=%.2f map_vs_dom=%.3f map_vs_idoc_parse=%.3f\n",
               docs[d].label, len, items, mb.nops, dom, ip, mr, 1e6 / mr, ratio_dom, ratio_ip);
        printf("  %-3s ORDERS05 %6zu bytes, %2d items, %zu ops/IDoc: libxml2 DOM parse %7.0f IDocs/s (%6.1f us) | "
               "idoc_parse %7.0f IDocs/s (%6.1f us) | mapping %7.0f IDocs/s (%6.1f us)\n",
               docs[d].label, len, items, mb.nops, dom, 1e6 / dom, ip, 1e6 / ip, mr, 1e6 / mr);
        printf("      mapping costs %.0f%% of the libxml2 parse and %.0f%% of idoc_parse (target < 50%%: %s)\n",
               100 * ratio_dom, 100 * ratio_ip, ratio_dom < 0.5 ? "met" : "NOT MET");
        free(xml);
    }
    mapping_lookups_mem_free(lk);
    mapping_free(m);
    idoc_global_cleanup();
    return rc;
}
