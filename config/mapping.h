/*
 * mapping — the SAP -> Dataverse mapping, loaded from a JSON data file
 * (config/mapping.json implements MAPPING.md) and compiled once at load.
 * The file format is documented in docs/mapping.md.
 *
 * Two faces:
 *   - ingest: mapping_classify() routes an IDoc (deliver / ignore / 422) and
 *     names the business keys it touches, stored with the queued record so
 *     that delivery can apply changes per key in SAP order;
 *   - delivery and `ml-connector map`: mapping_apply() turns one IDoc into
 *     the ordered list of Dataverse Web API operations (struct mapping_ops).
 *
 * Threads: a loaded mapping is immutable; any thread may classify or apply
 * concurrently. The link store and lookup cache passed to mapping_apply are
 * the caller's; the engine calls them from the calling thread only.
 *
 * ---- Operations -----------------------------------------------------------
 * Each op carries what the delivery engine ($batch) needs: method, path
 * relative to the Web API root (".../api/data/v9.2/"), JSON body text, the
 * entity set (metrics), the business key, the change-set number (ops with the
 * same non-zero number must go in one atomic change set: a PO header, its
 * lines and its close action), depends_on (index of an op that must have
 * succeeded first: a contact waits for its account), the bind targets (for
 * "record does not exist yet" retries), the lookups it needs, and warnings.
 *
 * Alternate keys in paths: values are OData string literals (single quotes
 * doubled). A value made only of ALPHA / DIGIT / "-" / "." / "_" / "~" / "'"
 * is written inline: accounts(mlc_sapvendorid='0000100003'). Any other value
 * (one of / < > * % & : \ ? + , a blank, non-ASCII, ...) is passed as a
 * parameter alias in the query string, percent-encoded:
 *     salesorders(mlc_sapponumber=@k)?@k='PO%2F17'
 * because Dataverse refuses those characters in the path even when they are
 * percent-encoded (ASP.NET request filtering decodes first; %2F becomes a
 * segment separator), while OData allows an alias in a key predicate and
 * the query string is not filtered. In @odata.bind values (JSON bodies, no
 * query string possible) the same characters are percent-encoded inside the
 * literal; delivery may fall back to resolving such a bind by a $filter
 * query (the op's binds list names the target) if Dataverse refuses it.
 *
 * ---- Lookups (currency by ISO code, price list by name) --------------------
 * A column of kind "lookup" needs a Dataverse id. The engine asks the
 * caller's cache (struct mapping_lookups). On a hit the body carries
 * "/transactioncurrencies(<guid>)". On a miss it emits, before the ops that
 * need it, an op of kind "lookup":
 *     GET transactioncurrencies?$select=transactioncurrencyid&$filter=isocurrencycode%20eq%20'EUR'&$top=1
 * with lookup id "transactioncurrencies:isocurrencycode=EUR", and the
 * dependent body holds the placeholder "{{transactioncurrencies:isocurrencycode=EUR}}"
 * where the guid goes; the dependent op lists the id in `needs`. Delivery
 * runs the GET (never inside a change set), stores the id in its cache and
 * either substitutes the placeholder (mapping_ops_resolve) or simply maps
 * the IDoc again (cheap; the cache now hits). `map` uses a cache with no network: the first IDoc
 * that needs a lookup shows the GET, later ones only the placeholder.
 *
 * ---- Vendor / customer linking (MAPPING.md "Linking") ----------------------
 * A record may declare a link to another party (vendor <-> customer). The
 * engine consults and updates a link store (struct mapping_links), one entry
 * per party number: the linked number of the other side, whether an account
 * carrying this number's key exists, and whether that account carries both
 * keys (merged). For a record of party P number n, linked (by this IDoc or
 * remembered) to party Q number o:
 *   - n and o already one account     -> upsert by n's key, with o's key, both
 *                                       flags and the linked columns (type 3);
 *   - accounts for n and o both exist, not merged, or o's account already
 *     carries another P number       -> CONFLICT: upsert by n's key with its
 *                                       own columns only, and a warning naming
 *                                       both accounts (for the audit log);
 *   - only o's account exists        -> upsert by o's key (so the existing
 *                                       account gets n's key, not a second
 *                                       account), with n's key in the body;
 *   - otherwise                      -> upsert by n's key with o's key.
 * When SAP changes a link (n was linked to o', now to o) the old partner is
 * released in the store and the op carries a "link changed" warning.
 * A blank KUNNR/LIFNR never removes a remembered link. Store updates are
 * made only when mapping_apply succeeds.
 *
 * How delivery backs it (issue 4): an LMDB table "links", key
 * "<party>:<number>" (e.g. "vendor:0000100003"), value
 * "<other number>\t<exists 0|1>\t<merged 0|1>". get/put run inside the
 * delivery write transaction that marks the record delivered, so a record
 * that fails leaves the store unchanged (abort). Records are mapped in SAP
 * order per key, so the store reflects what was sent. Dataverse lookups it
 * needs: the store only knows accounts the gateway wrote. Before mapping a
 * CREMAS/DEBMAS whose link partner o is not in the store, delivery asks
 *     GET accounts?$select=accountid,mlc_sapvendorid,mlc_sapcustomerid
 *         &$filter=mlc_sapvendorid eq 'n' or mlc_sapcustomerid eq 'o'
 * (for a vendor n; swapped for a customer) and seeds the store: one row with
 * both keys -> merged; a row per key -> both exist (the conflict case);
 * one row -> that number exists. `map` uses an in-memory store across the
 * files it is given, in order (mapping_links_mem_new).
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
                                     "vendor:0000100003 contact:0000152955".
                                     Primary keys come first; if the list
                                     would not fit, trailing child keys
                                     (contacts) are left out (their account
                                     key orders them anyway). */
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

/* The value of "orders_target" in the loaded file (for logs). */
const char *mapping_orders_target(const struct mapping *m);

/* ---- operations ---------------------------------------------------------- */

enum mapping_op_kind {
    MAPPING_OP_UPSERT = 0,  /* PATCH set(key='v') */
    MAPPING_OP_DELETE,      /* DELETE set(key='v'); a 404 counts as done */
    MAPPING_OP_ACTION,      /* POST <action> (LoseOpportunity, CancelSalesOrder, ...) */
    MAPPING_OP_LOOKUP,      /* GET set?$select=id&$filter=...: resolve an id */
};

struct mapping_op {
    int kind;                /* enum mapping_op_kind */
    const char *method;      /* "PATCH", "DELETE", "POST", "GET" (static) */
    char *path;              /* relative to the Web API root, escaped */
    char *body;              /* compact JSON text; NULL for DELETE and GET */
    char *entity;            /* entity set ("accounts"); action: its target set */
    char *key;               /* business key ("vendor:0000100003"), or NULL */
    char docnum[24];
    int changeset;           /* 0: independent; ops with the same number > 0
                                form one atomic change set, in order */
    long depends_on;         /* index (in the same mapping_ops) of an op that
                                must succeed first, or -1 */
    int not_found_ok;        /* DELETE: a 404 means done */
    char *lookup;            /* MAPPING_OP_LOOKUP: the lookup id it resolves */
    char *lookup_id_column;  /* MAPPING_OP_LOOKUP: the id column to read */
    char **needs;            /* lookup ids whose placeholders are in body */
    size_t nneeds;
    char **binds;            /* bind targets in body ("accounts(mlc_sapvendorid='1')") */
    size_t nbinds;
    char *warning;           /* for the audit log, or NULL */
};

struct mapping_ops {
    struct mapping_op *v;
    size_t n, cap;
    int next_changeset;      /* internal: last change-set number used */
};

void mapping_ops_init(struct mapping_ops *ops);
void mapping_ops_free(struct mapping_ops *ops);   /* frees every op; reusable after */
void mapping_ops_clear(struct mapping_ops *ops);  /* drop the ops, keep capacity */

/* The ops as the JSON array CONTRACT.md describes for `map` (pretty when
 * pretty != 0, else compact), each op {"docnum", "kind", "method", "path",
 * "entity", "key", ... , "body"}. Caller frees. NULL on OOM. */
char *mapping_ops_to_json(const struct mapping_ops *ops, int pretty);

/* Put a resolved id in place of the placeholder of lookup_id in every op
 * that needs it (and drop it from `needs`). guid must be hex digits and
 * dashes. Returns the number of ops changed, or -1 (bad guid, OOM). */
int mapping_ops_resolve(struct mapping_ops *ops, const char *lookup_id, const char *guid);

/* ---- link store (vendor <-> customer) ------------------------------------ */

#define MAPPING_NUMBER_MAX 64

struct mapping_link_rec {
    char other[MAPPING_NUMBER_MAX];  /* linked number of the other party, "" none */
    int exists;                      /* an account carrying this number's key exists */
    int merged;                      /* that account also carries the other key */
};

struct mapping_links {
    void *ud;
    /* party: "vendor" / "customer" (the business-key prefix). Return 1 and
     * fill rec when known, 0 when unknown, -1 on a store error. */
    int (*get)(void *ud, const char *party, const char *number, struct mapping_link_rec *rec);
    /* Store rec for party:number. 0 ok, -1 on error. */
    int (*put)(void *ud, const char *party, const char *number, const struct mapping_link_rec *rec);
};

/* In-memory store (used by `map` and tests). */
struct mapping_links *mapping_links_mem_new(void);
void mapping_links_mem_free(struct mapping_links *l);

/* ---- lookup cache (ids that need Dataverse) ----------------------------- */

enum mapping_lookup_state {
    MAPPING_LOOKUP_MISS = 0,   /* unknown: the engine emits a GET op */
    MAPPING_LOOKUP_HIT = 1,    /* id known: written into the body */
    MAPPING_LOOKUP_PENDING = 2 /* a GET is already planned: placeholder only */
};

struct mapping_lookups {
    void *ud;
    /* id: "transactioncurrencies:isocurrencycode=EUR". On a hit, copy the
     * guid into guid (NUL-terminated) and return MAPPING_LOOKUP_HIT. */
    int (*get)(void *ud, const char *id, char *guid, size_t guidlen);
    /* Called by the engine for every GET op it emitted (so a cache can
     * answer PENDING next time). May be NULL. */
    void (*planned)(void *ud, const char *id);
};

/* In-memory cache: set(id, guid) to pre-fill; planned ids become PENDING. */
struct mapping_lookups *mapping_lookups_mem_new(void);
int mapping_lookups_mem_set(struct mapping_lookups *l, const char *id, const char *guid);
void mapping_lookups_mem_free(struct mapping_lookups *l);

/* ---- the engine --------------------------------------------------------- */

/* Map one IDoc and append its ops to out, in send order. links and lookups
 * may be NULL (no linking memory; every lookup a miss shown as GET).
 * Returns 0 (ops appended), 1 when the IDoc is accept_and_ignore (nothing
 * appended), or -1 with a reason in err (no route, or data the mapping
 * cannot turn into operations, e.g. "E1EDP01[2]/MENGE: '1x' is not a
 * decimal"); on -1 nothing is appended and the link store is unchanged. */
int mapping_apply(const struct mapping *m, const struct idoc *doc,
                  const struct mapping_links *links, const struct mapping_lookups *lookups,
                  struct mapping_ops *out, char *err, size_t errlen);

/* ---- helpers (exported for delivery and tests) -------------------------- */

/* SAP ALPHA conversion (MAPPING.md alpha10) of the trimmed input. */
int mapping_alpha10(const char *in, size_t len, char *out, size_t outlen);
/* Exact decimal: parse SAP text ("100.00-", "-5.5", " 1.000") into a
 * canonical JSON number ("-100", "-5.5", "1"). 0 ok, 1 blank (absent),
 * -1 not a decimal. */
int mapping_decimal(const char *in, size_t len, char *out, size_t outlen);
/* a / b rounded to `scale` decimals, half away from zero, exact. b blank or
 * 0 is an error (-1) here; the mapping's div step can treat it as 1. */
int mapping_decimal_div(const char *a, const char *b, int scale, char *out, size_t outlen);
/* Length of the longest prefix of s (len bytes) that holds at most max
 * characters, never splitting a UTF-8 sequence. Characters are counted as
 * Dataverse counts text length (UTF-16 code units: a character beyond
 * U+FFFF counts 2), which equals the character count for all text SAP holds. */
size_t mapping_utf8_prefix(const char *s, size_t len, size_t max);
/* Path for an alternate key: "set(col='v')" or "set(col=@k)?@k='...'"
 * (see above). Caller frees. */
char *mapping_key_path(const char *set, const char *column, const char *value);

/* ---- schema: what a loaded mapping writes (config/mapping_schema.c) ------ */

/* Kinds of column values, as mapping_apply will send them. */
enum mapping_schema_kind {
    MAPPING_SCHEMA_KEY = 0,  /* alternate-key column (one-column key, text):
                                a record's key, a link's other_key_column, or
                                the key column an @odata.bind addresses */
    MAPPING_SCHEMA_TEXT,
    MAPPING_SCHEMA_BOOL,
    MAPPING_SCHEMA_DECIMAL,
    MAPPING_SCHEMA_INTEGER,  /* whole number or choice value */
    MAPPING_SCHEMA_DATE,
    MAPPING_SCHEMA_LOOKUP,   /* "<nav>@odata.bind": column is <nav> */
    MAPPING_SCHEMA_ANY,      /* the mapping cannot tell (null constant, empty value table) */
};

struct mapping_schema_item {
    const char *entity;      /* entity set: "accounts" */
    const char *column;      /* column logical name; a lookup's navigation property */
    int kind;                /* enum mapping_schema_kind */
    int max_length;          /* text/key: the length the mapping truncates to
                                (column_lengths, max_length); 0 = none given */
    /* lookups only (else NULL): */
    const char *target;      /* entity set it points to: "accounts", "transactioncurrencies" */
    const char *target_key;  /* bound by alternate key: that key column (first seen) */
    const char *match;       /* looked up by id: the column matched ("isocurrencycode") */
    const char *match_value; /* ... the constant matched ("SAP Standard"), NULL when from the IDoc */
};

/* Call cb for every (entity set, column) the loaded mapping writes or
 * addresses by key, once each, in first-seen order (routes of the loaded
 * orders_target only). A column that is a key anywhere is reported as a key.
 * Strings live until cb returns. Returns 0, cb's first non-zero return
 * (which stops the walk), or -1 (out of memory, NULL arguments). */
int mapping_schema(const struct mapping *m, int (*cb)(const struct mapping_schema_item *it, void *ud), void *ud);
/* "key", "text", "bool", "decimal", "integer", "date", "lookup", "any". */
const char *mapping_schema_kind_name(int kind);

#endif
