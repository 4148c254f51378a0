/*
 * test_mapping_prop — property test of the mapping engine over generated
 * IDocs (deterministic seed, 2000 IDocs per mapping). For every IDoc,
 * mapping_classify and mapping_apply must not crash (ASan/UBSan in the
 * sanitizer run), must return a defined status, and every successful result
 * must hold these properties:
 *   - no alternate key in a path or in an @odata.bind value contains one of
 *     / < > * % & : \ ? + unescaped (a '%' only as a %XX escape);
 *   - every body is valid JSON;
 *   - no text is longer than its column (column_lengths of the mapping,
 *     counted as Dataverse counts: UTF-16 code units);
 *   - depends_on points backwards; ops of one change set are contiguous.
 * The generator mixes the segments the shipped mapping reads with random
 * ones, and values that are blank, "/", huge, multi-byte (incl. 4-byte
 * UTF-8), full of URL-special characters, or malformed numbers and dates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/mapping.h"

#define NDOCS 2000

static uint64_t g_rng;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static int chance(int pct) { return (int)(rnd() % 100) < pct; }

/* ---- value generator ---------------------------------------------------- */

static char *gen_value(void)
{
    static const char *const fixed[] = {
        "", " ", "   ", "/", " / ", "X", "003", "005", "001", "002", "0", "00000000", "20240229", "20230229",
        "2024133", "99991231", "100.00-", "-5.5", "1,5", "abc", "1e5", "0.000", "100", "1000", "PEINH", "EUR",
        "USD", "LF", "AG", "DP09", "0000100003", "12345678901234", "M\xc3\xbcller & S\xc3\xb6hne", "O'Brien",
        "A/B", "a<b>c", "50%", "x*y", "k&l", "m:n", "p\\q", "r?s", "t+u", "\xf0\x9f\x98\x80", "\t tab \t",
        "line\nbreak", "quote\"inside", "999999999999999999999999999999999999.99",
    };
    static const char *const pieces[] = {"a", "Z", "0", "9", " ", "/", "<", ">", "*", "%", "&", ":", "\\", "?",
                                         "+", "'", "\"", "-", ".", "\xc3\xa4", "\xe6\x97\xa5", "\xf0\x9f\x98\x80",
                                         "#", "@", "=", "(", ")", ",", ";", "\xc3\x9f"};
    if (chance(55)) return strdup(fixed[rnd() % (sizeof fixed / sizeof fixed[0])]);
    size_t len = chance(20) ? 100 + rnd() % 500 : rnd() % 40;
    char *s = malloc(len * 4 + 1);
    size_t n = 0;
    int mode = (int)(rnd() % 3);
    for (size_t i = 0; i < len; i++) {
        const char *p;
        if (mode == 0) p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
        else if (mode == 1) p = (const char *[]){"0", "1", "2", "5", "9", ".", "-"}[rnd() % 7];
        else p = (const char *[]){"A", "b", "\xc3\xbc", "\xe6\x97\xa5", " "}[rnd() % 5];
        size_t l = strlen(p);
        memcpy(s + n, p, l);
        n += l;
    }
    s[n] = 0;
    return s;
}

/* ---- IDoc model builder ------------------------------------------------- */

/* Mostly plausible values for the fields the mapping reads (so that most
 * IDocs map and the output properties get exercised), sometimes anything. */
static char *gen_field_value(const char *name)
{
    char buf[64];
    if (chance(25)) return gen_value();
    if (!strcmp(name, "LIFNR") || !strcmp(name, "KUNNR") || !strcmp(name, "PARNR") || !strcmp(name, "PARTN")) {
        if (chance(15)) return gen_value();  /* keys with special characters, too */
        snprintf(buf, sizeof buf, "%0*u", (int)(rnd() % 11), rnd() % 1000000);
        return strdup(buf);
    }
    if (!strcmp(name, "BELNR") || !strcmp(name, "POSEX")) {
        snprintf(buf, sizeof buf, "%u", rnd() % 100000000);
        return strdup(buf);
    }
    if (!strcmp(name, "MENGE") || !strcmp(name, "VPREI") || !strcmp(name, "PEINH") || !strcmp(name, "NETWR") ||
        !strcmp(name, "SUMME")) {
        snprintf(buf, sizeof buf, "%s%u.%0*u%s", chance(10) ? "-" : "", rnd() % 100000, (int)(rnd() % 4),
                 rnd() % 1000, chance(10) ? "-" : "");
        if (chance(5)) snprintf(buf, sizeof buf, "%u", rnd() % 1000);
        return strdup(buf);
    }
    if (!strcmp(name, "EDATU") || !strcmp(name, "DATUM")) {
        snprintf(buf, sizeof buf, "20%02u%02u%02u", rnd() % 100, 1 + rnd() % 12, 1 + rnd() % 28);
        return strdup(chance(10) ? "00000000" : buf);
    }
    return gen_value();
}

static void add_field(struct idoc_segment *s, const char *name)
{
    s->fields = realloc(s->fields, (s->nfields + 1) * sizeof *s->fields);
    s->fields[s->nfields].name = strdup(name);
    s->fields[s->nfields].value = gen_field_value(name);
    s->nfields++;
}

static struct idoc_segment *add_seg(struct idoc_segment **list, size_t *n, const char *name)
{
    *list = realloc(*list, (*n + 1) * sizeof **list);
    struct idoc_segment *s = &(*list)[(*n)++];
    memset(s, 0, sizeof *s);
    s->name = strdup(name);
    return s;
}

static const char *const SEGS[] = {"E1LFA1M", "E1KNA1M", "E1LFB1M", "E1KNB1M", "E1KNVKM", "E1EDK01", "E1EDK02",
                                   "E1EDK03", "E1EDKA1", "E1EDP01", "E1EDP19", "E1EDP20", "E1EDS01", "Z1LFA1M",
                                   "_-ACME_-Z1EDP01"};
static const char *const FIELDS[] = {"LIFNR", "KUNNR", "NAME1", "NAME2", "STRAS", "ORT01", "PSTLZ", "REGIO",
                                     "LAND1", "TELF1", "TELFX", "LOEVM", "MSGFN", "ZTERM", "PARNR", "NAMEV",
                                     "BELNR", "CURCY", "ACTION", "RECIPNT_NO", "QUALF", "IDDAT", "DATUM", "PARVW",
                                     "PARTN", "POSEX", "MENGE", "VPREI", "PEINH", "NETWR", "MATNR", "EDATU",
                                     "KTEXT", "IDTNR", "SUMID", "SUMME", "ZZCOLOR"};

static void fill_random(struct idoc_segment *s, int depth)
{
    int nf = (int)(rnd() % 12);
    for (int i = 0; i < nf; i++) add_field(s, FIELDS[rnd() % (sizeof FIELDS / sizeof FIELDS[0])]);
    if (depth < 3) {
        int nc = (int)(rnd() % 4);
        for (int i = 0; i < nc; i++) {
            struct idoc_segment *c = add_seg(&s->children, &s->nchildren, SEGS[rnd() % (sizeof SEGS / sizeof SEGS[0])]);
            fill_random(c, depth + 1);
        }
    }
}

static void fields_of(struct idoc_segment *s, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (chance(85)) add_field(s, names[i]);
}

static struct idoc *gen_doc(unsigned i)
{
    struct idoc *d = calloc(1, sizeof *d);
    static const char *const kinds[][2] = {{"CREMAS05", "CREMAS"}, {"DEBMAS06", "DEBMAS"}, {"ORDERS05", "ORDERS"},
                                           {"ORDERS05", "ORDCHG"}, {"CREMAS03", "/XYZ/VFI"}, {"ORDERS05", "ORDRSP"},
                                           {"MATMAS05", "MATMAS"}};
    int k = (int)(rnd() % 7);
    d->ncontrol = 4;
    d->control = calloc(4, sizeof *d->control);
    char docnum[32];
    snprintf(docnum, sizeof docnum, "%016u", 30000000u + i);
    const char *names[4] = {"DOCNUM", "IDOCTYP", "MESTYP", "CIMTYP"};
    const char *vals[4] = {docnum, kinds[k][0], kinds[k][1], chance(20) ? "ZEXT" : ""};
    for (int j = 0; j < 4; j++) {
        d->control[j].name = strdup(names[j]);
        d->control[j].value = strdup(vals[j]);
    }
    d->docnum = d->control[0].value;
    d->idoctyp = d->control[1].value;
    d->mestyp = d->control[2].value;
    d->cimtyp = d->control[3].value;
    d->mandt = d->sndprn = d->sndpor = d->credat = d->cretim = "";
    d->root = d->idoctyp;
    d->xml = "";
    static const char *const lfa[] = {"MSGFN", "LIFNR", "NAME1", "NAME2", "STRAS", "ORT01", "PSTLZ", "REGIO",
                                      "LAND1", "TELF1", "TELFX", "KUNNR", "LOEVM"};
    static const char *const kna[] = {"MSGFN", "KUNNR", "NAME1", "NAME2", "STRAS", "ORT01", "PSTLZ", "REGIO",
                                      "LAND1", "TELF1", "TELFX", "LIFNR", "LOEVM"};
    static const char *const knvk[] = {"PARNR", "NAMEV", "NAME1", "TELF1"};
    static const char *const k01[] = {"ACTION", "CURCY", "BELNR", "RECIPNT_NO"};
    static const char *const p01[] = {"POSEX", "ACTION", "MENGE", "VPREI", "PEINH", "NETWR", "MATNR"};
    if (k == 0 || k == 4 || k == 1) {
        int nseg = 1 + (int)(rnd() % 2);
        for (int s = 0; s < nseg; s++) {
            struct idoc_segment *a = add_seg(&d->segments, &d->nsegments, k == 1 ? "E1KNA1M" : "E1LFA1M");
            fields_of(a, k == 1 ? kna : lfa, 13);
            int nc = (int)(rnd() % 4);
            for (int c = 0; c < nc; c++) fields_of(add_seg(&a->children, &a->nchildren, "E1KNVKM"), knvk, 4);
            if (chance(60)) add_field(add_seg(&a->children, &a->nchildren, k == 1 ? "E1KNB1M" : "E1LFB1M"), "ZTERM");
            if (chance(30)) fill_random(add_seg(&a->children, &a->nchildren, "Z1LFA1M"), 1);
        }
    } else {
        if (chance(90)) fields_of(add_seg(&d->segments, &d->nsegments, "E1EDK01"), k01, 4);
        if (chance(40)) {
            struct idoc_segment *s = add_seg(&d->segments, &d->nsegments, "E1EDK02");
            add_field(s, "BELNR");
            s->fields = realloc(s->fields, (s->nfields + 1) * sizeof *s->fields);
            s->fields[s->nfields].name = strdup("QUALF");
            s->fields[s->nfields++].value = strdup(chance(70) ? "001" : "002");
        }
        if (chance(60)) {
            struct idoc_segment *s = add_seg(&d->segments, &d->nsegments, "E1EDKA1");
            s->fields = realloc(s->fields, sizeof *s->fields);
            s->fields[0].name = strdup("PARVW");
            s->fields[0].value = strdup(chance(80) ? "LF" : "AG");
            s->nfields = 1;
            add_field(s, "PARTN");
            add_field(s, "LIFNR");
        }
        int np = (int)(rnd() % 6);
        for (int p = 0; p < np; p++) {
            struct idoc_segment *s = add_seg(&d->segments, &d->nsegments, "E1EDP01");
            fields_of(s, p01, 7);
            if (chance(50)) add_field(add_seg(&s->children, &s->nchildren, "E1EDP20"), "EDATU");
            if (chance(50)) {
                struct idoc_segment *q = add_seg(&s->children, &s->nchildren, "E1EDP19");
                q->fields = realloc(q->fields, sizeof *q->fields);
                q->fields[0].name = strdup("QUALF");
                q->fields[0].value = strdup("001");
                q->nfields = 1;
                add_field(q, "KTEXT");
                add_field(q, "IDTNR");
            }
        }
        if (chance(50)) {
            struct idoc_segment *s = add_seg(&d->segments, &d->nsegments, "E1EDS01");
            s->fields = realloc(s->fields, sizeof *s->fields);
            s->fields[0].name = strdup("SUMID");
            s->fields[0].value = strdup("002");
            s->nfields = 1;
            add_field(s, "SUMME");
        }
    }
    int nr = (int)(rnd() % 3);
    for (int r = 0; r < nr; r++) fill_random(add_seg(&d->segments, &d->nsegments, SEGS[rnd() % 15]), 0);
    return d;
}

static void free_seg(struct idoc_segment *s)
{
    for (size_t i = 0; i < s->nfields; i++) {
        free((char *)s->fields[i].name);
        free((char *)s->fields[i].value);
    }
    free(s->fields);
    for (size_t i = 0; i < s->nchildren; i++) free_seg(&s->children[i]);
    free(s->children);
    free((char *)s->name);
}

static void free_doc(struct idoc *d)
{
    for (size_t i = 0; i < d->ncontrol; i++) {
        free((char *)d->control[i].name);
        free((char *)d->control[i].value);
    }
    free(d->control);
    for (size_t i = 0; i < d->nsegments; i++) free_seg(&d->segments[i]);
    free(d->segments);
    free(d);
}

/* ---- properties --------------------------------------------------------------- */

static int is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

/* the key part of "set(col='v')" / "set(col=@k)?@k='v'" / "/set(col='v')" */
static void check_key_ref(const char *ref, const char *what)
{
    const char *open = strchr(ref, '(');
    if (!open) fail_msg("%s: no key in '%s'", what, ref);
    const char *q = strchr(ref, '?');
    const char *end = q ? q : ref + strlen(ref);
    const char *close = end;
    while (close > open && *close != ')') close--;
    if (close <= open) fail_msg("%s: unbalanced key in '%s'", what, ref);
    for (const char *p = open + 1; p < close; p++) {
        if (*p == '%') {
            if (!is_hex(p[1]) || !is_hex(p[2])) fail_msg("%s: bare '%%' in key '%s'", what, ref);
            p += 2;
            continue;
        }
        if (strchr("/<>*&:\\?+", *p)) fail_msg("%s: unescaped '%c' in key '%s'", what, *p, ref);
        if ((unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f) fail_msg("%s: raw byte 0x%02x in key '%s'", what, (unsigned char)*p, ref);
    }
    if (q) {  /* alias value: only unreserved, quotes and %XX */
        const char *v = strchr(q, '=');
        if (!v) fail_msg("%s: alias without value '%s'", what, ref);
        for (const char *p = v + 1; *p; p++) {
            if (*p == '%') {
                if (!is_hex(p[1]) || !is_hex(p[2])) fail_msg("%s: bare '%%' in alias '%s'", what, ref);
                p += 2;
            } else if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~'", *p)) {
                fail_msg("%s: unescaped '%c' in alias '%s'", what, *p, ref);
            }
        }
    }
}

static size_t utf16_units(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p & 0xC0) == 0x80) continue;
        n += *p >= 0xF0 ? 2 : 1;
    }
    return n;
}

static const cJSON *g_lengths;

static void check_body_obj(const cJSON *obj, const char *entity, const char *docnum)
{
    const cJSON *lens = entity ? cJSON_GetObjectItemCaseSensitive(g_lengths, entity) : NULL;
    for (const cJSON *it = obj->child; it; it = it->next) {
        if (cJSON_IsObject(it)) {
            check_body_obj(it, NULL, docnum);
            continue;
        }
        if (!cJSON_IsString(it)) continue;
        size_t l = strlen(it->string);
        if (l > 11 && !strcmp(it->string + l - 11, "@odata.bind")) {
            if (strstr(it->valuestring, "{{") == NULL) check_key_ref(it->valuestring, docnum);
            continue;
        }
        const cJSON *max = lens ? cJSON_GetObjectItemCaseSensitive(lens, it->string) : NULL;
        if (max && utf16_units(it->valuestring) > (size_t)max->valuedouble)
            fail_msg("%s: %s.%s longer than %d", docnum, entity, it->string, (int)max->valuedouble);
    }
}

static void check_ops(const struct mapping_ops *ops, size_t from)
{
    for (size_t i = from; i < ops->n; i++) {
        const struct mapping_op *o = &ops->v[i];
        if (o->kind != MAPPING_OP_LOOKUP && o->kind != MAPPING_OP_ACTION) check_key_ref(o->path, o->docnum);
        if (o->key && strpbrk(o->key, " \t\r\n")) fail_msg("%s: blank in business key '%s'", o->docnum, o->key);
        for (size_t b = 0; b < o->nbinds; b++) check_key_ref(o->binds[b], o->docnum);
        if (o->depends_on >= (long)i) fail_msg("%s: depends_on forward", o->docnum);
        if (o->changeset && i > from && ops->v[i - 1].changeset != o->changeset)
            for (size_t k = from; k < i; k++)
                if (ops->v[k].changeset == o->changeset) fail_msg("%s: change set %d interrupted", o->docnum, o->changeset);
        if (o->body) {
            cJSON *b = cJSON_Parse(o->body);
            if (!b) fail_msg("%s: body is not JSON: %s", o->docnum, o->body);
            check_body_obj(b, o->kind == MAPPING_OP_UPSERT ? o->entity : NULL, o->docnum);
            cJSON_Delete(b);
        }
    }
}

static void run_property(const char *mapping_path, uint64_t seed)
{
    char err[512];
    struct mapping *m = mapping_load(mapping_path, err, sizeof err);
    if (!m) fail_msg("%s", err);
    struct mapping_links *links = mapping_links_mem_new();
    struct mapping_lookups *lk = mapping_lookups_mem_new();
    struct mapping_ops ops;
    mapping_ops_init(&ops);
    g_rng = seed;
    int ok = 0, failed = 0, other = 0;
    for (unsigned i = 0; i < NDOCS; i++) {
        struct idoc *d = gen_doc(i);
        struct mapping_class mc;
        int crc = mapping_classify(m, d, &mc, err, sizeof err);
        assert_true(crc == 0 || crc == -1);
        assert_true(strlen(mc.keys) < MAPPING_KEYS_MAX);
        if (crc == 0 && (strstr(mc.keys, "  ") || mc.keys[0] == ' ')) fail_msg("bad key list '%s'", mc.keys);
        size_t before = ops.n;
        int rc = mapping_apply(m, d, i % 3 ? links : NULL, i % 5 ? lk : NULL, &ops, err, sizeof err);
        assert_true(rc == 0 || rc == 1 || rc == -1);
        if (rc == -1) {
            assert_int_equal(ops.n, before);
            assert_true(err[0] != 0);
            failed++;
            if (getenv("PROP_DEBUG")) fprintf(stderr, "refused: %s\n", err);
        } else if (rc == 0) {
            check_ops(&ops, before);
            ok++;
        } else {
            other++;
        }
        if (ops.n > 5000) {
            char *j = mapping_ops_to_json(&ops, i & 1);
            assert_non_null(j);
            cJSON *parsed = cJSON_Parse(j);  /* the `map` output (pretty or compact) is valid JSON */
            if (!parsed) fail_msg("map output is not valid JSON");
            assert_int_equal(cJSON_GetArraySize(parsed), (int)ops.n);
            cJSON_Delete(parsed);
            free(j);
            mapping_ops_clear(&ops);
        }
        free_doc(d);
    }
    char *j = mapping_ops_to_json(&ops, 1);
    assert_non_null(j);
    cJSON *parsed = cJSON_Parse(j);
    if (!parsed) fail_msg("map output is not valid JSON");
    cJSON_Delete(parsed);
    free(j);
    printf("property %s: %d mapped, %d refused, %d ignored\n", mapping_path, ok, failed, other);
    assert_true(ok > NDOCS / 5);
    mapping_ops_free(&ops);
    mapping_links_mem_free(links);
    mapping_lookups_mem_free(lk);
    mapping_free(m);
}

static char g_root[2048];

static void test_property_default(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/config/mapping.json", g_root);
    run_property(path, 0x9E3779B97F4A7C15ull);
}

static void test_property_salesorder(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/test-fixtures/mapping/orders05_salesorder.mapping.json", g_root);
    run_property(path, 0xD1B54A32D192ED03ull);
}

int main(void)
{
    const char *root = getenv("MLC_ROOT");
    snprintf(g_root, sizeof g_root, "%s", root && *root ? root : ".");
    /* column lengths from the shipped mapping (the test reads the JSON; the engine never does) */
    char path[4096];
    snprintf(path, sizeof path, "%s/config/mapping.json", g_root);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *root_json = cJSON_Parse(text);
    g_lengths = cJSON_GetObjectItemCaseSensitive(root_json, "column_lengths");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_property_default),
        cmocka_unit_test(test_property_salesorder),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(root_json);
    return rc;
}
