/*
 * idoc — the IDoc model and the IDoc-XML parser.
 *
 * Input is untrusted. The parser is a libxml2 push parser (xmlParseChunk) fed
 * in pieces as the body arrives; each complete <IDOC> element is turned into a
 * `struct idoc`, handed to the caller's callback, and freed before the next one
 * is built, so memory stays bounded by one IDoc (plus what the callback keeps),
 * not by the packet. Any DOCTYPE is refused before its internal subset is read
 * (no DTD, no entities, no network, no external loads).
 *
 * Threads: a parser object belongs to one thread at a time. idoc_global_init()
 * must run once in main() before any thread parses.
 */
#ifndef MLC_IDOC_H
#define MLC_IDOC_H

#include <stddef.h>

/* Parser outcome codes. The HTTP layer maps them to status codes. */
enum idoc_status {
    IDOC_OK = 0,
    IDOC_ERR_MALFORMED,   /* not well-formed XML, invalid UTF-8, truncated  -> 400 */
    IDOC_ERR_DOCTYPE,     /* a DOCTYPE declaration is present              -> 400 */
    IDOC_ERR_NOT_IDOC,    /* well-formed XML but no <IDOC> element         -> 400 */
    IDOC_ERR_NO_CONTROL,  /* an <IDOC> without EDI_DC40                     -> 400 */
    IDOC_ERR_NO_DOCNUM,   /* EDI_DC40 without a non-blank DOCNUM            -> 400 */
    IDOC_ERR_ENCODING,    /* declared encoding unknown to libxml2/iconv     -> 415 */
    IDOC_ERR_LIMIT,       /* a configured limit (IDocs per packet, segment
                             count, depth) was exceeded                     -> 413 */
    IDOC_ERR_CALLBACK,    /* the callback returned non-zero (its own error
                             text is in the error buffer)                   */
    IDOC_ERR_NOMEM,
};

/* A field: <NAME1>value</NAME1>. Values are UTF-8, entities resolved, blanks
 * kept exactly as sent; an empty element gives "". */
struct idoc_field {
    const char *name;
    const char *value;
};

/* A segment: an element with SEGMENT="1" or with element children. Children
 * are nested segments in document order. Names are as in the XML, including
 * namespaced Z-segments ("_-LUMBERL_-Z1EDP01"). */
struct idoc_segment {
    const char *name;
    struct idoc_field *fields;
    size_t nfields;
    struct idoc_segment *children;
    size_t nchildren;
};

/* One IDoc. All memory belongs to the parser and is valid only during the
 * callback; copy what you keep (or call idoc_xml to serialise it). */
struct idoc {
    const char *root;            /* name of the element holding the IDOC (the
                                    basic type or extension), SOAP unwrapped */
    struct idoc_field *control;  /* every EDI_DC40 field, in document order */
    size_t ncontrol;
    /* Convenience pointers into `control` (never NULL: "" when absent).
     * Values here are trimmed of leading/trailing blanks. */
    const char *docnum, *mandt, *sndprn, *sndpor, *idoctyp, *cimtyp, *mestyp,
               *credat, *cretim;
    struct idoc_segment *segments; /* top-level data segments, in order */
    size_t nsegments;
    const char *xml;             /* this IDoc re-serialised as a standalone
                                    UTF-8 document: <?xml ...?><ROOT><IDOC
                                    BEGIN="1">...</IDOC></ROOT> */
    size_t xml_len;
    size_t index;                /* 0-based position in the packet */
};

struct idoc_limits {
    size_t max_idocs;     /* per packet; 0 = unlimited */
    size_t max_segments;  /* per IDoc; 0 = unlimited */
};

/* Called once per complete IDoc, in document order. Return 0 to go on; any
 * other value stops the parse with IDOC_ERR_CALLBACK (write a reason into
 * err, at most errlen bytes, NUL-terminated). */
typedef int (*idoc_cb)(const struct idoc *doc, void *ud, char *err, size_t errlen);

struct idoc_parser;

/* Once per process, before threads start: libxml2 init and a deny-all
 * external entity loader. */
void idoc_global_init(void);
void idoc_global_cleanup(void);

/* Create a parser. limits may be NULL (no limits). Returns NULL on OOM. */
struct idoc_parser *idoc_parser_new(const struct idoc_limits *limits, idoc_cb cb, void *ud);

/* Feed the next piece of the document (any size, including 0). On error
 * returns an idoc_status and writes a one-line reason into err; the parser is
 * then finished and further calls return the same status. */
int idoc_parser_feed(struct idoc_parser *p, const char *buf, size_t len, char *err, size_t errlen);

/* Signal end of input. Returns IDOC_OK when the document was complete,
 * well-formed and held at least one IDoc, each with a control record and a
 * DOCNUM; else an error status and a one-line reason. */
int idoc_parser_finish(struct idoc_parser *p, char *err, size_t errlen);

/* Number of IDocs delivered to the callback so far. */
size_t idoc_parser_count(const struct idoc_parser *p);

void idoc_parser_free(struct idoc_parser *p);

/* Convenience: parse a whole buffer (feed + finish). */
int idoc_parse(const char *buf, size_t len, const struct idoc_limits *limits,
               idoc_cb cb, void *ud, char *err, size_t errlen);

/* Short name of a status ("malformed", "doctype", ...), for logs and metrics. */
const char *idoc_status_name(int status);

/* Lookups on the model (NULL when absent). A field value is returned as sent. */
const char *idoc_control_get(const struct idoc *doc, const char *name);
const char *idoc_segment_get(const struct idoc_segment *seg, const char *field);

#endif
