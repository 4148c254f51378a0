/*
 * cli_map — `ml-connector map -c FILE X.xml...`: print the Dataverse
 * operations the IDocs in the files would become, in send order, as the JSON
 * array of CONTRACT.md (each op with its docnum). No network.
 *
 * Design: the mapping comes from the config (-c / MLC_CONFIG, its "mapping"
 * key), or, without a config, from `--mapping FILE` (also allowed with a
 * config, to try another mapping). Files are mapped in the order given, all
 * IDocs through one in-memory link store (so a CREMAS then a DEBMAS of the
 * same partner show the merge) and one lookup cache with no network (the
 * first IDoc needing a currency shows the GET, later ones the placeholder).
 *
 * Output: stdout holds only the JSON array (pretty; --compact for one
 * line). stderr gets one line per IDoc that is ignored (accept_and_ignore),
 * not handled (422 at ingest) or cannot be mapped, and per warning.
 * Exit: 0 all mapped; 1 an IDoc or file could not be mapped or parsed (the
 * others are still printed); 2 usage or configuration error, naming the
 * argument or the key (a mapping-file mistake names its JSON path).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "config/config.h"
#include "config/mapping.h"
#include "idoc/idoc.h"
#include "server/cli.h"

struct map_run {
    const struct mapping *m;
    struct mapping_links *links;
    struct mapping_lookups *lookups;
    struct mapping_ops ops;
    const char *file;
    int failed;
};

static int map_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct map_run *r = ud;
    char e[512] = "";
    size_t before = r->ops.n;
    int rc = mapping_apply(r->m, doc, r->links, r->lookups, &r->ops, e, sizeof e);
    if (rc < 0) {
        fprintf(stderr, "map: %s: IDoc %s (%s %s): %s\n", r->file, doc->docnum, doc->mestyp, doc->idoctyp, e);
        r->failed = 1;
    } else if (rc == 1) {
        fprintf(stderr, "map: %s: IDoc %s (%s %s): accept_and_ignore, not delivered\n", r->file, doc->docnum,
                doc->mestyp, doc->idoctyp);
    }
    for (size_t i = before; i < r->ops.n; i++)
        if (r->ops.v[i].warning)
            fprintf(stderr, "map: warning: IDoc %s: %s\n", r->ops.v[i].docnum, r->ops.v[i].warning);
    return 0;
}


static void usage(void)
{
    fprintf(stderr, "map: usage: ml-connector map -c FILE [--mapping FILE] [--compact] FILE.xml...\n"
                    "     (without a config: ml-connector map --mapping FILE FILE.xml...)\n");
}

int cli_map(int argc, char **argv)
{
    const char *mapping_arg = NULL;
    int compact = 0;
    const char **files = calloc((size_t)(argc > 0 ? argc : 1), sizeof *files);
    int nfiles = 0;
    if (!files) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-c") || !strcmp(a, "--config") || !strcmp(a, "--mapping")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "map: %s: needs a file argument\n", a);
                usage();
                free(files);
                return 2;
            }
            if (!strcmp(a, "--mapping")) mapping_arg = argv[i + 1];
            i++;
        } else if (!strncmp(a, "--config=", 9)) {
            continue;
        } else if (!strncmp(a, "--mapping=", 10)) {
            mapping_arg = a + 10;
        } else if (!strcmp(a, "--compact")) {
            compact = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "map: %s: unknown option\n", a);
            usage();
            free(files);
            return 2;
        } else {
            files[nfiles++] = a;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "map: no IDoc files given\n");
        usage();
        free(files);
        return 2;
    }

    char err[1024];
    struct config *cfg = NULL;
    const char *mpath = mapping_arg;
    if (!mpath) {
        const char *cpath = config_path_from_args(argc, argv);
        if (!cpath) {
            fprintf(stderr, "map: no configuration: give -c FILE (or set MLC_CONFIG) or --mapping FILE\n");
            usage();
            free(files);
            return 2;
        }
        cfg = config_load(cpath, err, sizeof err);
        if (!cfg) {
            fprintf(stderr, "map: %s\n", err);
            free(files);
            return 2;
        }
        mpath = cfg->mapping_path;
    }
    struct mapping *m = mapping_load(mpath, err, sizeof err);
    if (!m) {
        fprintf(stderr, "map: %s%s\n", err, mapping_arg ? " (--mapping)" : " (config key \"mapping\")");
        config_free(cfg);
        free(files);
        return 2;
    }

    idoc_global_init();
    struct map_run r = {.m = m};
    r.links = mapping_links_mem_new();
    r.lookups = mapping_lookups_mem_new();
    mapping_ops_init(&r.ops);
    int rc = 0;
    if (!r.links || !r.lookups) rc = 1;
    for (int i = 0; i < nfiles && rc == 0; i++) {
        char *buf;
        size_t len;
        if (util_read_file(files[i], 0, &buf, &len) != 0) {
            fprintf(stderr, "map: %s: %s\n", files[i], strerror(errno));
            rc = 2;
            break;
        }
        r.file = files[i];
        char perr[512] = "";
        int st = idoc_parse(buf, len, NULL, map_cb, &r, perr, sizeof perr);
        free(buf);
        if (st != IDOC_OK) {
            fprintf(stderr, "map: %s: %s\n", files[i], perr);
            r.failed = 1;
        }
    }
    if (rc == 0) {
        char *json = mapping_ops_to_json(&r.ops, !compact);
        if (!json) {
            fprintf(stderr, "map: out of memory\n");
            rc = 1;
        } else {
            fputs(json, stdout);
            if (compact) fputc('\n', stdout);
            free(json);
        }
        if (rc == 0 && r.failed) rc = 1;
    }
    if (fflush(stdout) != 0 && rc == 0) rc = 1;
    mapping_ops_free(&r.ops);
    mapping_links_mem_free(r.links);
    mapping_lookups_mem_free(r.lookups);
    idoc_global_cleanup();
    mapping_free(m);
    config_free(cfg);
    free(files);
    return rc;
}
