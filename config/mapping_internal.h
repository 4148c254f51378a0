/*
 * mapping_internal — the compiled form of a mapping file, shared by
 * mapping_load.c (JSON -> compiled), mapping.c (classify, engine, ops) and
 * mapping_value.c (decimals, ALPHA, dates, UTF-8, escaping, JSON text).
 * Not for use outside config/mapping*.c.
 *
 * Everything is resolved at load: paths split into steps with parsed
 * filters, value tables as sorted arrays, column lengths attached to their
 * columns, settings (orders_target, price_list) baked into routes. Evaluating
 * an IDoc touches no JSON.
 */
#ifndef MLC_MAPPING_INTERNAL_H
#define MLC_MAPPING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "config/mapping.h"

/* ---- paths -------------------------------------------------------------- */

struct mfilter {
    char *field;
    char *value;
    int neg;                   /* [F!=V] */
};

struct mstep {
    char *seg;                 /* segment name as in the XML */
    struct mfilter *filters;   /* all must hold (trimmed field value == value) */
    size_t nfilters;
};

struct mpath {
    int absolute;              /* "/E1EDK01/BELNR": from the IDoc's top level */
    int control;               /* "EDI_DC40/MESTYP": a control-record field */
    struct mstep *steps;
    size_t nsteps;
    char *field;               /* NULL for a segment path (for_each) */
    char *text;                /* as written, for messages */
};

/* ---- values ------------------------------------------------------------- */

enum msrc {
    SRC_PATH, SRC_CONST, SRC_VAR, SRC_CONCAT, SRC_SUM, SRC_MIN, SRC_MAX,
    SRC_WHEN, SRC_BIND, SRC_LOOKUP, SRC_OBJECT,
};

enum mconst { CONST_TEXT, CONST_RAW, CONST_NULL };

enum mxf {
    XF_TRIM, XF_UPPER, XF_LOWER, XF_ALPHA10, XF_DECIMAL, XF_DATE, XF_TABLE,
    XF_DIV, XF_ROUND, XF_TRUNCATE,
};

struct mtable_entry {
    char *key;
    char *out;                 /* text, or raw JSON when raw */
    int raw;
};

struct mtable {
    char *name;
    struct mtable_entry *e;    /* sorted by key (strcmp) */
    size_t n;
};

struct mvalue;
struct mcond;

struct mxform {
    int kind;                  /* enum mxf */
    const struct mtable *table;/* XF_TABLE (owned by the mapping or inline) */
    struct mtable *own_table;  /* inline table owned here */
    struct mvalue *divisor;    /* XF_DIV */
    char *if_zero;             /* XF_DIV: divisor used when blank or 0, or NULL */
    int n;                     /* XF_DIV/XF_ROUND scale, XF_TRUNCATE length */
};

struct mwhen {
    struct mcond *cond;
    struct mvalue *then;
};

struct mfield {                /* a column of a record, or a field of an object */
    char *name;
    struct mvalue *v;
    int maxlen;                /* text length limit (0 none) */
};

struct mvalue {
    int src;                   /* enum msrc */
    struct mpath *path;        /* PATH, SUM, MIN, MAX */
    int const_kind;            /* CONST: enum mconst */
    char *text;                /* CONST text/raw; VAR name */
    struct mvalue **parts;     /* CONCAT */
    size_t nparts;
    char *sep;                 /* CONCAT */
    int all;                   /* CONCAT: absent if any part is absent */
    struct mxform *each;       /* SUM/MIN/MAX: per element, before combining */
    size_t neach;
    struct mwhen *whens;       /* WHEN */
    size_t nwhens;
    char *entity;              /* BIND/LOOKUP target set */
    char *column;              /* BIND: key column; LOOKUP: match column */
    char *id_column;           /* LOOKUP: the id to select */
    struct mvalue *inner;      /* BIND/LOOKUP: the value */
    struct mfield *fields;     /* OBJECT */
    size_t nfields;
    struct mxform *xf;         /* transforms, in order */
    size_t nxf;
    struct mvalue *otherwise;  /* "else": when the result is absent */
    int maxlen;                /* "max_length" */
};

/* ---- conditions --------------------------------------------------------- */

enum mcondop { COND_EQ, COND_IN, COND_BLANK, COND_PRESENT, COND_ANY, COND_ALL, COND_NOT };

struct mcond {
    int op;
    struct mvalue *v;          /* EQ, IN, BLANK, PRESENT */
    char **vals;               /* EQ (1), IN */
    size_t nvals;
    struct mcond *subs;        /* ANY, ALL, NOT (1) */
    size_t nsubs;
};

/* ---- records, routes ----------------------------------------------------- */

struct mvar {
    char *name;
    struct mvalue *v;
};

struct mlink {
    char *party;               /* this record's party (= its business_key) */
    char *other_party;         /* "customer" */
    struct mvalue *other;      /* the linked number named by the IDoc */
    char *other_key_column;    /* "mlc_sapcustomerid" */
    struct mfield *columns;    /* added/overriding when linked */
    size_t ncolumns;
};

struct maction {
    struct mcond *when;
    char *path;                /* "LoseOpportunity" */
    char *entity;              /* the set it acts on (metrics) */
    struct mfield *body;
    size_t nbody;
};

struct mrecord {
    char *name;
    struct mpath *for_each;    /* NULL: once, in the parent's context */
    int required;              /* at least one occurrence (top level default) */
    char *entity;
    char *key_column;
    struct mvalue *key;
    int key_maxlen;
    char *business_key;        /* "vendor", or NULL */
    struct mvar *vars;
    size_t nvars;
    struct mfield *columns;
    size_t ncolumns;
    struct mcond *delete_when;
    struct mlink *link;
    struct maction *actions;
    size_t nactions;
    struct mrecord *children;
    size_t nchildren;
    int changeset;             /* this record, its children and actions: one change set */
};

struct mmatch {
    char **idoctyp; size_t nidoctyp;
    char **mestyp;  size_t nmestyp;
    char **cimtyp;  size_t ncimtyp;
};

struct mroute {
    char *name;
    struct mmatch match;
    struct mrecord *records;
    size_t nrecords;
};

struct mapping {
    char *path;
    char *orders_target;
    char *price_list;
    struct mroute *routes;     /* only the routes active for orders_target */
    size_t nroutes;
    struct mmatch *ignore;     /* accept_and_ignore */
    size_t nignore;
    struct mtable *tables;
    size_t ntables;
};

/* ---- load helpers (mapping_load.c) --------------------------------------- */

void mapping_free_value(struct mvalue *v);
void mapping_free_cond(struct mcond *c);
void mapping_free_record(struct mrecord *r);

/* ---- value helpers (mapping_value.c) ------------------------------------- */

/* A decimal: m * 10^-scale, exact. */
struct mdec {
    __int128 m;
    int scale;
};

#define MDEC_MAX_SCALE 18

/* Parse SAP decimal text (trims blanks; leading or trailing minus; a point).
 * 0 ok, 1 blank, -1 not a decimal or out of range. */
int mapping_dec_parse(const char *s, size_t len, struct mdec *out);
/* Canonical text: no trailing zeros, "-0" -> "0". out >= 48 bytes. */
size_t mapping_dec_format(const struct mdec *d, char *out, size_t outlen);
int mapping_dec_add(struct mdec *acc, const struct mdec *b);           /* -1 overflow */
int mapping_dec_div(const struct mdec *a, const struct mdec *b, int scale, struct mdec *out);
int mapping_dec_round(const struct mdec *a, int scale, struct mdec *out);
int mapping_dec_is_zero(const struct mdec *d);

/* YYYYMMDD -> YYYY-MM-DD (out 11 bytes). 0 ok, 1 absent (00000000), -1 invalid. */
int mapping_date(const char *s, size_t len, char *out);

/* A growable text buffer. */
struct mbuf {
    char *p;
    size_t n, cap;
    int oom;
};
void mapping_buf_put(struct mbuf *b, const char *s, size_t n);
void mapping_buf_puts(struct mbuf *b, const char *s);
void mapping_buf_putc(struct mbuf *b, char c);
void mapping_buf_json_str(struct mbuf *b, const char *s, size_t n);  /* "..." escaped */
/* OData string literal for a key/bind: quotes doubled; bytes outside the
 * safe set percent-encoded when pct != 0. */
void mapping_buf_key_literal(struct mbuf *b, const char *s, size_t n, int pct);
/* Percent-encode for a query string value (everything but unreserved). */
void mapping_buf_pct(struct mbuf *b, const char *s, size_t n);
/* 1 if the value can be written inline in a key predicate. */
int mapping_key_is_safe(const char *s, size_t n);
/* Re-indent compact JSON text (2 spaces, starting at `indent` levels). */
void mapping_buf_json_pretty(struct mbuf *b, const char *json, int indent);

#endif
