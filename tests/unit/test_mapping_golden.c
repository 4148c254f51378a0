/*
 * test_mapping_golden — golden tests of the mapping engine on real IDoc-XML.
 *
 * Fixtures live in test-fixtures/mapping/:
 *   X.xml          one case: the IDocs of X.xml, mapped in order;
 *   X.seq          one case: the files named in X.seq (one per line), mapped in
 *                  order through one link store and one lookup cache (as
 *                  `ml-connector map a.xml b.xml` does);
 *   X.mapping.json the mapping for case X (else config/mapping.json);
 *   X.ops.json     the expected output, byte for byte what `map` prints;
 *   X.stderr       the expected diagnostics (ignored / not handled / not
 *                  mappable IDocs, warnings), as `map` prints them when run
 *                  in that folder; absent = none expected.
 * The engine runs in-process (idoc_parse + mapping_apply); the integration
 * script tests/integration/map_cli.sh runs the same cases through the CLI.
 * MLC_GOLDEN_UPDATE=1 rewrites the expected files (review the diff!).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/mapping.h"
#include "idoc/idoc.h"

static char g_dir[4096], g_default_mapping[4096];

struct gbuf {
    char *p;
    size_t n, cap;
};

static void gput(struct gbuf *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l + 1 > b->cap) {
        b->cap = (b->n + l + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, s, l + 1);
    b->n += l;
}

static void gprintf(struct gbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gprintf(struct gbuf *b, const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    gput(b, s);
    free(s);
}

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, n = 0, r;
    char *buf = malloc(cap);
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

struct run {
    const struct mapping *m;
    struct mapping_links *links;
    struct mapping_lookups *lookups;
    struct mapping_ops ops;
    struct gbuf diag;
    const char *file;
};

static int golden_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct run *r = ud;
    char e[512] = "";
    size_t before = r->ops.n;
    int rc = mapping_apply(r->m, doc, r->links, r->lookups, &r->ops, e, sizeof e);
    if (rc < 0)
        gprintf(&r->diag, "map: %s: IDoc %s (%s %s): %s\n", r->file, doc->docnum, doc->mestyp, doc->idoctyp, e);
    else if (rc == 1)
        gprintf(&r->diag, "map: %s: IDoc %s (%s %s): accept_and_ignore, not delivered\n", r->file, doc->docnum,
                doc->mestyp, doc->idoctyp);
    for (size_t i = before; i < r->ops.n; i++)
        if (r->ops.v[i].warning)
            gprintf(&r->diag, "map: warning: IDoc %s: %s\n", r->ops.v[i].docnum, r->ops.v[i].warning);
    return 0;
}

/* Invariants every output must hold (also checked by the property test). */
static void check_invariants(const struct mapping_ops *ops, const char *name)
{
    for (size_t i = 0; i < ops->n; i++) {
        const struct mapping_op *o = &ops->v[i];
        const char *open = strchr(o->path, '(');
        if (open && o->kind != MAPPING_OP_LOOKUP) {
            const char *close = strchr(open, ')');
            assert_non_null(close);
            for (const char *p = open + 1; p < close; p++)
                if (strchr("/<>*%&:\\?+", *p)) fail_msg("%s: unescaped '%c' in key: %s", name, *p, o->path);
        }
        if (o->depends_on >= (long)i) fail_msg("%s: op %zu depends on a later op", name, i);
    }
}

static int run_case(const char *stem, char **files, size_t nfiles)
{
    char mpath[8192], expect[8192], expect_err[8192];
    snprintf(mpath, sizeof mpath, "%s/%s.mapping.json", g_dir, stem);
    if (!exists(mpath)) snprintf(mpath, sizeof mpath, "%s", g_default_mapping);
    char err[1024];
    struct mapping *m = mapping_load(mpath, err, sizeof err);
    if (!m) fail_msg("%s: %s", stem, err);
    struct run r = {.m = m};
    r.links = mapping_links_mem_new();
    r.lookups = mapping_lookups_mem_new();
    mapping_ops_init(&r.ops);
    gput(&r.diag, "");
    for (size_t i = 0; i < nfiles; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
        size_t len;
        char *xml = read_text(path, &len);
        if (!xml) fail_msg("%s: cannot read %s", stem, path);
        r.file = files[i];
        char perr[512] = "";
        int st = idoc_parse(xml, len, NULL, golden_cb, &r, perr, sizeof perr);
        if (st != IDOC_OK) gprintf(&r.diag, "map: %s: %s\n", files[i], perr);
        free(xml);
    }
    check_invariants(&r.ops, stem);
    char *json = mapping_ops_to_json(&r.ops, 1);
    assert_non_null(json);

    snprintf(expect, sizeof expect, "%s/%s.ops.json", g_dir, stem);
    snprintf(expect_err, sizeof expect_err, "%s/%s.stderr", g_dir, stem);
    int bad = 0;
    const char *upd = getenv("MLC_GOLDEN_UPDATE");
    if (upd && *upd == '1') {
        FILE *f = fopen(expect, "w");
        assert_non_null(f);
        fputs(json, f);
        fclose(f);
        if (r.diag.n) {
            f = fopen(expect_err, "w");
            assert_non_null(f);
            fputs(r.diag.p, f);
            fclose(f);
        } else {
            remove(expect_err);
        }
    } else {
        char *want = read_text(expect, NULL);
        if (!want) {
            printf("FAIL %s: no expected file %s (run with MLC_GOLDEN_UPDATE=1 and review)\n", stem, expect);
            bad = 1;
        } else if (strcmp(want, json)) {
            char got[8192];
            snprintf(got, sizeof got, "/tmp/%s.ops.json.got", stem);
            FILE *f = fopen(got, "w");
            if (f) {
                fputs(json, f);
                fclose(f);
            }
            printf("FAIL %s: output differs from %s (got: %s)\n", stem, expect, got);
            bad = 1;
        }
        free(want);
        char *want_err = read_text(expect_err, NULL);
        const char *we = want_err ? want_err : "";
        if (strcmp(we, r.diag.p)) {
            printf("FAIL %s: diagnostics differ:\n--- want\n%s--- got\n%s", stem, we, r.diag.p);
            bad = 1;
        }
        free(want_err);
    }
    /* the expected JSON itself must be valid JSON: checked by map_cli.sh with python */
    free(json);
    free(r.diag.p);
    mapping_ops_free(&r.ops);
    mapping_links_mem_free(r.links);
    mapping_lookups_mem_free(r.lookups);
    mapping_free(m);
    return bad;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_golden(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (!d) fail_msg("%s: %s", g_dir, strerror(errno));
    char *names[512];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        size_t l = strlen(de->d_name);
        if ((l > 4 && !strcmp(de->d_name + l - 4, ".xml")) || (l > 4 && !strcmp(de->d_name + l - 4, ".seq")))
            names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    size_t cases = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        char stem[256];
        size_t l = strlen(names[i]);
        snprintf(stem, sizeof stem, "%.*s", (int)(l - 4), names[i]);
        if (!strcmp(names[i] + l - 4, ".xml")) {
            char *files[1] = {names[i]};
            failed += run_case(stem, files, 1);
        } else {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", g_dir, names[i]);
            char *text = read_text(path, NULL);
            assert_non_null(text);
            char *files[32];
            size_t nf = 0;
            for (char *line = strtok(text, "\n"); line && nf < 32; line = strtok(NULL, "\n"))
                if (*line) files[nf++] = line;
            failed += run_case(stem, files, nf);
            free(text);
        }
        cases++;
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    printf("golden: %zu cases, %zu failed\n", cases, failed);
    assert_int_equal(failed, 0);
    assert_true(cases >= 30);
}

int main(void)
{
    const char *root = getenv("MLC_ROOT");
    if (!root || !*root) root = ".";
    snprintf(g_dir, sizeof g_dir, "%s/test-fixtures/mapping", root);
    snprintf(g_default_mapping, sizeof g_default_mapping, "%s/config/mapping.json", root);
    idoc_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    idoc_global_cleanup();
    return rc;
}
