/*
 * mapping — the SAP -> Dataverse mapping, loaded from a JSON data file
 * (config/mapping.json implements MAPPING.md) and compiled once at load.
 *
 * This header is the contract ingest relies on (routing and business keys).
 * The mapping engine (operations) is added behind it; see docs/mapping.md.
 *
 * Threads: a loaded mapping is immutable; any thread may use it concurrently.
 */
#ifndef MLC_MAPPING_H
#define MLC_MAPPING_H

#include <stddef.h>
#include "idoc/idoc.h"

enum mapping_route {
    MAPPING_UNSUPPORTED = 0,  /* no route: ingest answers 422 */
    MAPPING_DELIVER,          /* a route maps it: queue as pending */
    MAPPING_IGNORE,           /* accept_and_ignore: queue as ignored */
};

#define MAPPING_KEYS_MAX 1024

/* Ingest's view of one IDoc. */
struct mapping_class {
    int route;                    /* enum mapping_route */
    char target[32];              /* route name: "vendor", "customer", "purchase_order", ... */
    char keys[MAPPING_KEYS_MAX];  /* business keys, space separated:
                                     "vendor:0000100003 contact:0000152955" */
};

struct mapping;

/* Load and validate a mapping file. On error returns NULL and writes a
 * one-line message naming the JSON path of the mistake into err. */
struct mapping *mapping_load(const char *path, char *err, size_t errlen);
void mapping_free(struct mapping *m);

/* Route one IDoc (by IDOCTYP, the basic type behind CIMTYP, and MESTYP) and
 * compute its business keys. Returns 0; or -1 with a reason in err when the
 * IDoc lacks what its route needs to form a key (e.g. no E1LFA1M/LIFNR). */
int mapping_classify(const struct mapping *m, const struct idoc *doc,
                     struct mapping_class *out, char *err, size_t errlen);

#endif
