/*
 * cli — the small subcommands: check-config, parse, queue.
 * (serve lives in serve.c, map in cli_map.c.)
 *
 * Output goes to stdout as JSON; diagnostics to stderr, one line each.
 * Exit codes: 0 ok, 1 runtime failure, 2 usage/configuration error.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "config/config.h"
#include "idoc/idoc.h"
#include "idoc/idoc_json.h"
#include "queue/queue.h"
#include "server/cli.h"
#include "server/record_json.h"

static struct config *load_config(int argc, char **argv, const char *cmd)
{
    const char *path = config_path_from_args(argc, argv);
    if (!path) {
        fprintf(stderr, "%s: no configuration: give -c FILE or set MLC_CONFIG\n", cmd);
        return NULL;
    }
    char err[512];
    struct config *c = config_load(path, err, sizeof err);
    if (!c) fprintf(stderr, "%s: %s\n", cmd, err);
    return c;
}

int cli_check_config(int argc, char **argv)
{
    struct config *c = load_config(argc, argv, "check-config");
    if (!c) return 2;
    char *dump = config_dump(c);
    if (dump) printf("%s\n", dump);
    free(dump);
    config_free(c);
    return dump ? 0 : 1;
}

/* ---- parse ---- */


static int parse_cb(const struct idoc *doc, void *ud, char *err, size_t errlen)
{
    cJSON *o = idoc_json(doc);
    if (!o) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    cJSON_AddItemToArray((cJSON *)ud, o);
    return 0;
}

int cli_parse(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "parse: usage: ml-connector parse FILE.xml...\n");
        return 2;
    }
    idoc_global_init();
    cJSON *all = cJSON_CreateArray();
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        char *buf;
        size_t len;
        if (util_read_file(argv[i], 0, &buf, &len) != 0) {
            fprintf(stderr, "parse: %s: %s\n", argv[i], strerror(errno));
            rc = 1;
            break;
        }
        char err[512];
        int st = idoc_parse(buf, len, NULL, parse_cb, all, err, sizeof err);
        free(buf);
        if (st != IDOC_OK) {
            fprintf(stderr, "parse: %s: %s\n", argv[i], err);
            rc = 1;
        }
    }
    if (rc == 0) {
        char *text = cJSON_Print(all);
        if (text) printf("%s\n", text);
        else rc = 1;
        free(text);
    }
    cJSON_Delete(all);
    idoc_global_cleanup();
    return rc;
}

/* ---- queue ---- */

static int print_json(cJSON *o, int pretty)
{
    if (!o) return 1;
    char *t = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) return 1;
    printf("%s\n", t);
    free(t);
    return 0;
}

static int list_cb(const struct queue_record *r, void *ud)
{
    (void)ud;
    return print_json(record_json(r, 0), 0);
}

static int parse_seq(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static void queue_usage(void)
{
    fprintf(stderr, "queue: usage: ml-connector queue -c FILE stats | list [--state S] [--after SEQ] [--limit N]"
                    " | show SEQ | replay SEQ...|--failed | audit [SEQ] [--limit N]\n");
}

static int audit_cb(const struct queue_audit *a, void *ud)
{
    (void)ud;
    return print_json(record_json_audit(a), 0);
}

int cli_queue(int argc, char **argv)
{
    /* Skip -c FILE wherever it is; the rest is the action and its args. */
    char *args[64];
    int nargs = 0;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) { i++; continue; }
        if (strncmp(argv[i], "--config=", 9) == 0) continue;
        if (nargs < 64) args[nargs++] = argv[i];
    }
    if (nargs == 0) { queue_usage(); return 2; }
    const char *action = args[0];
    int writes = strcmp(action, "replay") == 0;
    if (!writes && strcmp(action, "stats") && strcmp(action, "list") && strcmp(action, "show") &&
        strcmp(action, "audit")) {
        fprintf(stderr, "queue: unknown action '%s'\n", action);
        queue_usage();
        return 2;
    }
    struct config *c = load_config(argc, argv, "queue");
    if (!c) return 2;
    char err[512];
    struct queue_opts qo = {.path = c->queue_path, .max_size_bytes = (uint64_t)c->queue_max_size_mb << 20, .readonly = !writes};
    struct queue *q = queue_open(&qo, err, sizeof err);
    config_free(c);
    if (!q) {
        fprintf(stderr, "queue: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (strcmp(action, "stats") == 0) {
        struct queue_stats st;
        if (queue_stats(q, &st, err, sizeof err) != QUEUE_OK) {
            fprintf(stderr, "queue: stats: %s\n", err);
            rc = 1;
        } else {
            rc = print_json(record_json_stats(&st), 1);
        }
    } else if (strcmp(action, "list") == 0) {
        int state = -1;
        uint64_t after = 0, limit = 0;
        for (int i = 1; i < nargs && rc == 0; i++) {
            if (strcmp(args[i], "--state") == 0 && i + 1 < nargs) {
                state = queue_state_parse(args[++i]);
                if (state < 0) { fprintf(stderr, "queue: --state: unknown state '%s'\n", args[i]); rc = 2; }
            } else if (strcmp(args[i], "--after") == 0 && i + 1 < nargs) {
                if (parse_seq(args[++i], &after)) { fprintf(stderr, "queue: --after: '%s' is not a number\n", args[i]); rc = 2; }
            } else if (strcmp(args[i], "--limit") == 0 && i + 1 < nargs) {
                if (parse_seq(args[++i], &limit)) { fprintf(stderr, "queue: --limit: '%s' is not a number\n", args[i]); rc = 2; }
            } else {
                fprintf(stderr, "queue: list: unknown argument '%s'\n", args[i]);
                rc = 2;
            }
        }
        if (rc == 0 && queue_list(q, state, after, (size_t)limit, list_cb, NULL, err, sizeof err) != QUEUE_OK) {
            fprintf(stderr, "queue: list: %s\n", err);
            rc = 1;
        }
    } else if (strcmp(action, "show") == 0) {
        uint64_t seq;
        if (nargs != 2 || parse_seq(args[1], &seq)) {
            fprintf(stderr, "queue: show: give one sequence number\n");
            rc = 2;
        } else {
            struct queue_record *r = NULL;
            int st = queue_get(q, seq, 1, &r, err, sizeof err);
            if (st == QUEUE_ERR_NOTFOUND) {
                fprintf(stderr, "queue: show: no record with seq %llu\n", (unsigned long long)seq);
                rc = 1;
            } else if (st != QUEUE_OK) {
                fprintf(stderr, "queue: show: %s\n", err);
                rc = 1;
            } else {
                rc = print_json(record_json(r, 1), 1);
                queue_record_free(r);
            }
        }
    } else if (strcmp(action, "audit") == 0) {
        uint64_t seq = 0, limit = 100;
        for (int i = 1; i < nargs && rc == 0; i++) {
            if (strcmp(args[i], "--limit") == 0 && i + 1 < nargs) {
                if (parse_seq(args[++i], &limit)) { fprintf(stderr, "queue: --limit: '%s' is not a number\n", args[i]); rc = 2; }
            } else if (parse_seq(args[i], &seq)) {
                fprintf(stderr, "queue: audit: '%s' is not a sequence number\n", args[i]);
                rc = 2;
            }
        }
        if (rc == 0 && queue_audit_list(q, seq, 0, (size_t)limit, audit_cb, NULL, err, sizeof err) != QUEUE_OK) {
            fprintf(stderr, "queue: audit: %s\n", err);
            rc = 1;
        }
    } else { /* replay */
        size_t changed = 0;
        int st;
        if (nargs == 2 && strcmp(args[1], "--failed") == 0) {
            st = queue_move_all(q, QUEUE_FAILED, QUEUE_PENDING, &changed, err, sizeof err);
        } else if (nargs >= 2) {
            uint64_t *seqs = calloc((size_t)nargs, sizeof *seqs);
            size_t n = 0;
            for (int i = 1; i < nargs && rc == 0; i++) {
                if (!seqs || parse_seq(args[i], &seqs[n++])) {
                    fprintf(stderr, "queue: replay: '%s' is not a sequence number\n", args[i]);
                    rc = 2;
                }
            }
            st = rc ? QUEUE_ERR_INVALID
                    : queue_set_state(q, seqs, n, QUEUE_FAILED, QUEUE_PENDING, &changed, err, sizeof err);
            free(seqs);
        } else {
            fprintf(stderr, "queue: replay: give sequence numbers or --failed\n");
            rc = 2;
            st = QUEUE_ERR_INVALID;
        }
        if (rc == 0 && st != QUEUE_OK) {
            fprintf(stderr, "queue: replay: %s\n", err);
            rc = 1;
        } else if (rc == 0) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "replayed", (double)changed);
            rc = print_json(o, 0);
        }
    }
    queue_close(q);
    return rc;
}
