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
 * What is an IDoc here (design notes in idoc.c):
 *  - every element with local name IDOC that is not inside another IDOC, at
 *    any depth; its parent element is the root (doc->root: the basic type or
 *    extension name, local name as written). So a SOAP-wrapped body
 *    (soap:Envelope/soap:Body/ns0:ORDERS05/IDOC, SOAP 1.1 or 1.2, any prefix,
 *    root in urn:sap-com:document:sap:idoc:soap:messages or none) just works;
 *    doc->xml is then a plain, namespace-free <ORDERS05><IDOC ...> document.
 *  - the first EDI_DC40 child of IDOC is the control record; other element
 *    children are segments. An element with a SEGMENT attribute or with
 *    element children is a segment; a leaf without SEGMENT is a field.
 *    Whitespace between elements, text outside IDOCs and text mixed into a
 *    segment are not data.
 *  - encodings: the XML declaration (or BOM) decides: UTF-8, ISO-8859-1,
 *    windows-1252, UTF-16, whatever iconv knows; none = UTF-8. Everything
 *    handed out (model, xml, JSON) is UTF-8. Control characters XML 1.0
 *    forbids (raw or as &#1;) are rejected as malformed, not stripped.
 *
 * Threads: a parser object belongs to one thread at a time; any number of
 * threads may each run their own parser concurrently. idoc_global_init()
 * must run once in main() before any thread parses.
 */
#ifndef MLC_IDOC_H
#define MLC_IDOC_H

#include <stddef.h>

/* Parser outcome codes. The HTTP layer maps them to status codes. */
enum idoc_status {
    IDOC_OK = 0,
    IDOC_ERR_MALFORMED,   /* not well-formed XML, invalid UTF-8 (or bytes
                             invalid in the declared encoding), forbidden
                             control characters, truncated, nesting deeper
                             than 256, empty body                           -> 400 */
    IDOC_ERR_DOCTYPE,     /* a DOCTYPE declaration is present              -> 400 */
    IDOC_ERR_NOT_IDOC,    /* well-formed XML but no <IDOC> element         -> 400 */
    IDOC_ERR_NO_CONTROL,  /* an <IDOC> without EDI_DC40                     -> 400 */
    IDOC_ERR_NO_DOCNUM,   /* EDI_DC40 without a non-blank DOCNUM            -> 400 */
    IDOC_ERR_ENCODING,    /* declared encoding unknown to libxml2/iconv     -> 415 */
    IDOC_ERR_LIMIT,       /* a configured limit (IDocs per packet, segments
                             per IDoc) was exceeded                         -> 413 */
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
 * are nested segments in document order. Names are as in the XML (local
 * names), including namespaced Z-segments ("_-LUMBERL_-Z1EDP01"). An array
 * with a count of 0 may be NULL. */
struct idoc_segment {
    const char *name;
    struct idoc_field *fields;
    size_t nfields;
    struct idoc_segment *children;
    size_t nchildren;
};

/* One IDoc. All memory belongs to the parser and is valid only during the
 * callback; copy what you keep (doc->xml is the whole IDoc, ready to store;
 * idoc_parse() on it gives the same model back). */
struct idoc {
    const char *root;            /* name of the element holding the IDOC (the
                                    basic type or extension), SOAP unwrapped */
    struct idoc_field *control;  /* every EDI_DC40 field, in document order */
    size_t ncontrol;
    /* Convenience copies of control fields (never NULL: "" when absent),
     * trimmed of leading/trailing blanks; `control` keeps them as sent. */
    const char *docnum, *mandt, *sndprn, *sndpor, *idoctyp, *cimtyp, *mestyp,
               *credat, *cretim;
    struct idoc_segment *segments; /* top-level data segments, in order */
    size_t nsegments;
    const char *xml;             /* this IDoc re-serialised as a standalone
                                    UTF-8 document: <?xml version="1.0"
                                    encoding="UTF-8"?>\n<ROOT><IDOC
                                    BEGIN="1">...</IDOC></ROOT>, formatting
                                    inside IDOC as sent, no namespaces (SOAP
                                    unwrapped); NUL-terminated */
    size_t xml_len;              /* bytes, without the NUL */
    size_t index;                /* 0-based position in the packet */
};

struct idoc_limits {
    size_t max_idocs;     /* per packet; 0 = unlimited. Checked when the
                             (max_idocs+1)-th <IDOC> starts. */
    size_t max_segments;  /* data segments per IDoc (EDI_DC40 not counted,
                             nested ones counted); 0 = unlimited. Checked as
                             SEGMENT="1" start tags arrive, and again when
                             the IDoc is converted. */
};

/* Called once per complete IDoc, in document order, from inside
 * idoc_parser_feed/finish. Return 0 to go on; any other value stops the parse
 * with IDOC_ERR_CALLBACK (write a reason into err, at most errlen bytes,
 * NUL-terminated; left empty, the reason names the IDoc and its DOCNUM).
 * The callback must not call feed/finish/free on the parser that calls it. */
typedef int (*idoc_cb)(const struct idoc *doc, void *ud, char *err, size_t errlen);

struct idoc_parser;

/* Once per process, before threads start: libxml2 init, a deny-all
 * external entity loader, and libxml2's generic error printer silenced
 * (errors come back through the err buffers, never on stderr). */
void idoc_global_init(void);
void idoc_global_cleanup(void);

/* Create a parser. limits may be NULL (no limits). Returns NULL on OOM. */
struct idoc_parser *idoc_parser_new(const struct idoc_limits *limits, idoc_cb cb, void *ud);

/* Feed the next piece of the document (any size, including 0; pieces may
 * split characters and tags anywhere). IDocs completed by this piece are
 * delivered to the callback before it returns. On error returns an
 * idoc_status and writes a one-line reason into err (e.g. "malformed XML at
 * line 12: Opening and ending tag mismatch: NAME1 line 11 and E1LFA1M"); the
 * parser is then finished and further calls return the same status and
 * reason. err may be NULL; on success it is set to "". */
int idoc_parser_feed(struct idoc_parser *p, const char *buf, size_t len, char *err, size_t errlen);

/* Signal end of input. Returns IDOC_OK when the document was complete,
 * well-formed and held at least one IDoc, each with a control record and a
 * DOCNUM; else an error status and a one-line reason. */
int idoc_parser_finish(struct idoc_parser *p, char *err, size_t errlen);

/* Number of IDocs delivered to the callback so far and accepted by it
 * (callbacks that returned 0). */
size_t idoc_parser_count(const struct idoc_parser *p);

void idoc_parser_free(struct idoc_parser *p);

/* Convenience: parse a whole buffer (feed + finish). */
int idoc_parse(const char *buf, size_t len, const struct idoc_limits *limits,
               idoc_cb cb, void *ud, char *err, size_t errlen);

/* Short name of a status ("malformed", "doctype", ...), for logs and metrics. */
const char *idoc_status_name(int status);

/* Lookups on the model (NULL when absent; the first one when a name repeats).
 * A field value is returned as sent, not trimmed. */
const char *idoc_control_get(const struct idoc *doc, const char *name);
const char *idoc_segment_get(const struct idoc_segment *seg, const char *field);

#endif
