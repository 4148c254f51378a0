/*
 * idoc.c — the IDoc model and the streaming IDoc-XML parser.
 *
 * Design
 * ------
 * Input is untrusted and may be large (a "collect IDocs" packet of thousands
 * of IDocs in one POST), so:
 *
 *  - libxml2 *push* parser (xmlCreatePushParserCtxt + xmlParseChunk): the
 *    HTTP layer hands us body pieces as they arrive; nothing needs the whole
 *    body in memory. feed() slices large pieces into FEED_SLICE bytes so the
 *    parser's input buffer stays small and is shrunk as it is consumed.
 *
 *  - SAX2 *tree-building* handlers (xmlSAXVersion(&sax, 2)) with a few
 *    overrides. Building a small DOM per IDoc lets libxml2 do what it does
 *    well (entity/char-ref resolution, encoding conversion, text coalescing,
 *    faithful re-serialisation with xmlNodeDumpOutput) while our code only
 *    walks a finished subtree. Pure SAX would need a hand-written serialiser;
 *    full DOM would need ~11x the packet in RAM.
 *
 *  - endElementNs: when a top-level <IDOC> closes (local name IDOC, not
 *    nested in another IDOC), its subtree is converted into a `struct idoc`
 *    (all memory from a per-parser bump arena), serialised as a standalone
 *    UTF-8 document, handed to the callback, then unlinked and freed and the
 *    arena reset. Elements that close *outside* any IDOC are freed too, and
 *    text, comments, PIs and CDATA outside IDOCs are dropped, so the live tree
 *    is at most: the chain of open ancestors + the IDOC being read.
 *
 *    Invariants:
 *      - p->idoc_depth != 0  <=>  we are inside a top-level IDOC whose start
 *        tag was at element depth p->idoc_depth; only then is text kept.
 *      - every pointer in the model handed to the callback (names: the
 *        parser's dictionary; values: text-node content or arena copies;
 *        xml: the output buffer) stays valid until the callback returns and
 *        not one call longer.
 *      - p->status is sticky: the first error wins, the parser is stopped,
 *        and every later feed()/finish() returns the same status and text.
 *
 *  - DOCTYPE is refused, always. An IDoc never needs a DTD, and on libxml2
 *    2.9.14 the entity-expansion guard is a ratio heuristic and several
 *    entity CVEs (2022-40303/40304, 2024-40896 XXE) are fixed only later.
 *    xmlParseDocTypeDecl calls the SAX internalSubset hook *before* it reads
 *    the "[...]" internal subset; our hook records IDOC_ERR_DOCTYPE and calls
 *    xmlStopParser, so no entity declaration is ever parsed (billion laughs
 *    and XXE never get a chance). Belt and braces: options are only
 *    NONET|NOERROR|NOWARNING (never NOENT, DTDLOAD, DTDATTR, DTDVALID,
 *    XINCLUDE, HUGE, NOBLANKS) and idoc_global_init installs a deny-all
 *    external entity loader. libxml2's default limits stay on (10 MB text
 *    node, 10 MB lookahead); nesting is capped at IDOC_MAX_DEPTH.
 *
 * Data rules
 *  - Segment vs field: an element with a SEGMENT attribute or with element
 *    children is a segment; a leaf element without SEGMENT is a field (an
 *    empty element gives ""). Field values are the element's character data
 *    (text and CDATA concatenated, comments skipped), entities resolved,
 *    blanks kept exactly. Whitespace-only text between elements is not data;
 *    neither is non-blank text mixed into a segment (it is ignored, as is a
 *    leaf element directly under IDOC other than EDI_DC40: IDoc-XML has no
 *    IDOC-level fields). The first EDI_DC40 child of IDOC is the control
 *    record (its leaf children are the control fields); a second EDI_DC40, if
 *    any, is kept as an ordinary segment.
 *  - Names are local names as written (no namespace prefix): "_-ACME_-Z1EDP01".
 *  - SOAP: an IDOC is found wherever it is, so a SOAP 1.1/1.2 envelope
 *    (soap:Envelope/soap:Body/<ns:ORDERS05 xmlns:ns="urn:sap-com:document:
 *    sap:idoc:soap:messages">/IDOC) just works: the root is the IDOC's parent
 *    (local name, "ORDERS05"), and doc->xml is a plain, namespace-free IDoc-XML
 *    document (element namespaces are dropped from the IDOC subtree,
 *    namespace-qualified attributes other than xml:* are removed). An IDOC
 *    that is itself the document element has no root: IDOC_ERR_NOT_IDOC.
 *  - Encodings: whatever the XML declaration names and iconv knows (UTF-8,
 *    ISO-8859-1, windows-1252, ...), no declaration (UTF-8), a BOM (UTF-8,
 *    UTF-16). A name libxml2/iconv does not know -> IDOC_ERR_ENCODING (415).
 *    Bytes invalid in the declared encoding -> IDOC_ERR_MALFORMED. The model,
 *    doc->xml and the JSON are always UTF-8.
 *  - Control characters: XML 1.0 forbids C0 controls other than TAB, LF, CR,
 *    raw or as character references (&#1;). libxml2 rejects them and so do
 *    we: IDOC_ERR_MALFORMED (400) naming the line. We deliberately do not
 *    strip or substitute them (as SAP CPI can): silently altering master data
 *    is worse than a 400 that tells the SAP admin where the bad byte is.
 *    Line ends are normalised by XML itself (CR LF -> LF); a CR sent as &#13;
 *    is kept and re-serialised as &#13;.
 *
 * Errors: the first error wins and becomes one line (newlines stripped):
 * "malformed XML at line N: <libxml2's message>". libxml2 errors reach us
 * through the context's structured handler (sax.serror); errors it raises
 * without a context (iconv converters) through the per-thread structured
 * handler, which we install only for the duration of each xmlParseChunk.
 * Errors libxml2 would recover from (namespace errors) stop us too. A few
 * misleading libxml2 messages are reworded (input ending inside an element is
 * "truncated", not "Extra content"). Whatever libxml2 reports, finish()
 * only says OK when the document element was closed and at least one IDOC
 * was delivered; libxml2 quirks cannot turn a cut-off packet into a 200.
 *
 * Threads: one parser per thread; any number of threads may parse at once
 * (each parser has its own libxml2 context and dictionary). The only
 * process-wide state is what idoc_global_init sets up, once, before threads.
 */
#include "idoc/idoc.h"

#include <libxml/SAX2.h>
#include <libxml/globals.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlIO.h>
#include <libxml/xmlerror.h>

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDOC_MAX_DEPTH 256      /* libxml2's own default without XML_PARSE_HUGE */
#define FEED_SLICE     65536    /* bytes handed to xmlParseChunk at a time */
#define ERR_MAX        512
#define PARSE_OPTIONS  (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* ------------------------------------------------------------------------ */
/* Arena: a bump allocator. One arena per parser, reset after each IDoc; the
 * first standard block is kept for the next IDoc, the rest is freed, so what
 * stays allocated between IDocs is one block. */

#define ARENA_BLOCK 16384

struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    max_align_t data[];
};

struct arena {
    struct arena_block *head;   /* block being filled */
};

static void *arena_alloc(struct arena *a, size_t n)
{
    const size_t al = alignof(max_align_t);
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + al - 1) & ~(al - 1);

    struct arena_block *b = a->head;
    if (b != NULL && b->cap - b->used >= n) {
        void *r = (char *)b->data + b->used;
        b->used += n;
        return r;
    }
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    struct arena_block *nb = malloc(sizeof *nb + cap);
    if (nb == NULL)
        return NULL;
    nb->cap = cap;
    nb->used = n;
    if (b != NULL && n > ARENA_BLOCK / 4) {
        /* a big piece gets its own block behind the current one, so the
         * free space left in the current block is not wasted */
        nb->next = b->next;
        b->next = nb;
    } else {
        nb->next = b;
        a->head = nb;
    }
    return nb->data;
}

static void arena_reset(struct arena *a)
{
    struct arena_block *keep = NULL, *b = a->head;
    while (b != NULL) {
        struct arena_block *next = b->next;
        if (keep == NULL && b->cap == ARENA_BLOCK)
            keep = b;
        else
            free(b);
        b = next;
    }
    if (keep != NULL) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
}

static void arena_free(struct arena *a)
{
    struct arena_block *b = a->head;
    while (b != NULL) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

static char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *r = arena_alloc(a, n + 1);
    if (r != NULL) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

/* ------------------------------------------------------------------------ */
/* Parser state */

struct idoc_parser {
    xmlParserCtxtPtr ctxt;
    struct idoc_limits limits;
    idoc_cb cb;
    void *ud;
    struct arena arena;

    int status;                 /* enum idoc_status; sticky */
    char err[ERR_MAX];          /* one line, valid when status != IDOC_OK */
    char cberr[ERR_MAX];        /* handed to the callback */

    size_t fed;                 /* bytes fed so far */
    size_t started;             /* top-level IDOC start tags seen */
    size_t delivered;           /* callbacks that returned 0 */
    size_t segments;            /* segments in the IDoc being converted */
    size_t segattrs;            /* SEGMENT= elements in the IDOC being read */
    unsigned depth;             /* current element depth (document element = 1) */
    unsigned idoc_depth;        /* depth of the open top-level IDOC; 0 = none */
    int ns_seen;                /* some element or attribute had a namespace */
    int root_done;              /* the document element was closed */
    int terminating;            /* inside the final xmlParseChunk */
    int finished;               /* finish() ran */
};

static void one_line(char *s)
{
    /* control characters (libxml2 messages end in "\n" and some have one in
     * the middle) become single blanks; trailing blanks go */
    char *w = s;
    int blank = 0;
    for (const char *r = s; *r != '\0'; r++) {
        unsigned char c = (unsigned char)*r;
        if (c < 0x20 || c == 0x7f || c == ' ') {
            if (!blank && w != s)
                *w++ = ' ';
            blank = 1;
        } else {
            *w++ = (char)c;
            blank = 0;
        }
    }
    while (w > s && w[-1] == ' ')
        w--;
    *w = '\0';
}

static PRINTF_LIKE(3, 4)
void set_error(struct idoc_parser *p, int status, const char *fmt, ...)
{
    if (p->status != IDOC_OK)
        return;
    p->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    one_line(p->err);
}

static void copy_error(const struct idoc_parser *p, char *err, size_t errlen)
{
    if (err == NULL || errlen == 0)
        return;
    if (p->status == IDOC_OK)
        err[0] = '\0';
    else
        snprintf(err, errlen, "%s", p->err);
}

static int input_line(const struct idoc_parser *p)
{
    return (p->ctxt != NULL && p->ctxt->input != NULL) ? p->ctxt->input->line : 0;
}

/* Bytes waiting in front of the encoding converter. libxml2 converts all it
 * can at each push, so a backlog means the converter refused a byte sequence
 * (some converters, e.g. the built-in US-ASCII one, say nothing and stall). */
static size_t unconverted(const struct idoc_parser *p)
{
    const xmlParserInputBuffer *in =
        (p->ctxt != NULL && p->ctxt->input != NULL) ? p->ctxt->input->buf : NULL;
    if (in == NULL || in->encoder == NULL || in->raw == NULL)
        return 0;
    return xmlBufUse(in->raw);
}

static const char *encoder_name(const struct idoc_parser *p)
{
    const xmlParserInputBuffer *in = p->ctxt->input->buf;
    return (in->encoder->name != NULL) ? in->encoder->name : "?";
}

static void stalled_converter(struct idoc_parser *p)
{
    set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: bytes not valid in the declared "
              "encoding %s", input_line(p), encoder_name(p));
}

/* Record a libxml2 error (first one wins). */
static void record_xml_error(struct idoc_parser *p, const xmlError *e)
{
    const char *msg = (e->message != NULL && e->message[0] != '\0') ? e->message : "parse error";
    if (e->domain == XML_FROM_I18N) {
        /* bytes the declared encoding's converter refused */
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: bytes not valid in the "
                  "declared encoding (%s)", input_line(p), msg);
    } else if (e->code == XML_ERR_DOCUMENT_END && p->terminating && unconverted(p) > 0) {
        stalled_converter(p);
    } else if (e->code == XML_ERR_DOCUMENT_END && p->terminating && p->depth > 0 &&
               p->ctxt->name != NULL) {
        /* libxml2 says "Extra content at the end of the document" when the
         * input stops inside an element; the truth is the opposite */
        set_error(p, IDOC_ERR_MALFORMED,
                  "malformed XML at line %d: document ends inside <%s> (truncated)",
                  e->line > 0 ? e->line : input_line(p), (const char *)p->ctxt->name);
    } else if (e->code == XML_ERR_DOCUMENT_END && p->terminating && !p->root_done &&
               p->depth == 0) {
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML: no root element");
    } else if (e->code == XML_ERR_INTERNAL_ERROR && e->message != NULL &&
               strstr(e->message, "error in element content") != NULL) {
        /* what the push parser says when text holds an invalid byte
         * sequence that ends a piece of input */
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: invalid character in "
                  "element content (not valid UTF-8, or not allowed in XML)",
                  e->line > 0 ? e->line : input_line(p));
    } else if (e->code == XML_ERR_UNSUPPORTED_ENCODING || e->code == XML_ERR_UNKNOWN_ENCODING) {
        if (e->str1 != NULL)
            set_error(p, IDOC_ERR_ENCODING, "unsupported encoding \"%s\" in the XML declaration",
                      e->str1);
        else
            set_error(p, IDOC_ERR_ENCODING, "unsupported encoding: %s", msg);
    } else if (e->line > 0) {
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: %s", e->line, msg);
    } else {
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML: %s", msg);
    }
}

/* Structured error handler. Warnings are ignored; any error stops us, even
 * the ones libxml2 itself would recover from (namespace errors such as an
 * undeclared prefix). We must not halt libxml2 from in here (it may still
 * hold pointers into its input), so the SAX handlers stop it at the next
 * element event, and feed() returns the status after xmlParseChunk. */
static void on_xml_error(void *ctx, xmlErrorPtr e)
{
    xmlParserCtxtPtr ctxt = ctx;
    if (ctxt == NULL || e == NULL || e->level < XML_ERR_ERROR)
        return;
    struct idoc_parser *p = ctxt->_private;
    if (p != NULL)
        record_xml_error(p, e);
}

/* Errors libxml2 raises without a parser context (the encoding converters)
 * go to the per-thread structured handler, which we point here only while
 * one of our xmlParseChunk calls runs (see parse_chunk). */
static void on_global_error(void *ud, xmlErrorPtr e)
{
    struct idoc_parser *p = ud;
    if (p != NULL && e != NULL && e->level >= XML_ERR_ERROR)
        record_xml_error(p, e);
}

static void parse_chunk(struct idoc_parser *p, const char *buf, int len, int terminate)
{
    xmlStructuredErrorFunc saved = xmlStructuredError;
    void *saved_ctx = xmlStructuredErrorContext;
    xmlSetStructuredErrorFunc(p, on_global_error);
    xmlParseChunk(p->ctxt, buf, len, terminate);
    xmlSetStructuredErrorFunc(saved_ctx, saved);
}

/* After xmlParseChunk: turn a libxml2 failure we were not told about through
 * on_xml_error (e.g. an input-conversion failure, reported without context)
 * into a status. */
static void check_ctxt(struct idoc_parser *p)
{
    xmlParserCtxtPtr ctxt = p->ctxt;
    if (p->status != IDOC_OK)
        return;
    if (unconverted(p) > 4 * FEED_SLICE) {
        stalled_converter(p);
        return;
    }
    if (ctxt->wellFormed && ctxt->errNo == XML_ERR_OK &&
        !(ctxt->instate == XML_PARSER_EOF && !p->finished))
        return;
    xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
    if (e != NULL && e->code != XML_ERR_OK && e->level >= XML_ERR_ERROR) {
        record_xml_error(p, e);
        return;
    }
    set_error(p, IDOC_ERR_MALFORMED, "malformed XML: the parser stopped (libxml2 code %d)",
              ctxt->errNo);
}

/* ------------------------------------------------------------------------ */
/* Building the model from a finished IDOC subtree */

static int is_name(const xmlChar *a, const char *b)
{
    return a != NULL && strcmp((const char *)a, b) == 0;
}

static int has_segment_attr(xmlNodePtr n)
{
    for (xmlAttrPtr a = n->properties; a != NULL; a = a->next)
        if (is_name(a->name, "SEGMENT"))
            return 1;
    return 0;
}

static int is_segment(xmlNodePtr n)
{
    if (has_segment_attr(n))
        return 1;
    for (xmlNodePtr c = n->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            return 1;
    return 0;
}

/* The character data of a leaf element, as sent. Usually one text node: point
 * at its content (valid until the subtree is freed); else concatenate. */
static const char *field_value(struct idoc_parser *p, xmlNodePtr n)
{
    size_t len = 0, pieces = 0;
    const xmlChar *only = NULL;
    for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content != NULL) {
            len += strlen((const char *)c->content);
            only = c->content;
            pieces++;
        }
    }
    if (pieces == 0)
        return "";
    if (pieces == 1)
        return (const char *)only;
    char *v = arena_alloc(&p->arena, len + 1), *w = v;
    if (v == NULL)
        return NULL;
    for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content != NULL) {
            size_t l = strlen((const char *)c->content);
            memcpy(w, c->content, l);
            w += l;
        }
    }
    *w = '\0';
    return v;
}

static void nomem(struct idoc_parser *p)
{
    set_error(p, IDOC_ERR_NOMEM, "out of memory while reading IDoc #%zu", p->started);
}

/* Fill out->fields from the leaf children of n. */
static int build_fields(struct idoc_parser *p, xmlNodePtr n, struct idoc_field **fields,
                        size_t *nfields, size_t nf)
{
    *fields = NULL;
    *nfields = 0;
    if (nf == 0)
        return 0;
    struct idoc_field *f = arena_alloc(&p->arena, nf * sizeof *f);
    if (f == NULL) {
        nomem(p);
        return -1;
    }
    size_t i = 0;
    for (xmlNodePtr c = n->children; c != NULL && i < nf; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || is_segment(c))
            continue;
        f[i].name = (const char *)c->name;
        f[i].value = field_value(p, c);
        if (f[i].value == NULL) {
            nomem(p);
            return -1;
        }
        i++;
    }
    *fields = f;
    *nfields = i;
    return 0;
}

static int build_segment(struct idoc_parser *p, xmlNodePtr n, struct idoc_segment *out)
{
    if (p->limits.max_segments != 0 && ++p->segments > p->limits.max_segments) {
        set_error(p, IDOC_ERR_LIMIT, "IDoc #%zu has more than %zu segments", p->started,
                  p->limits.max_segments);
        return -1;
    }
    size_t nf = 0, nc = 0;
    for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (is_segment(c))
            nc++;
        else
            nf++;
    }
    out->name = (const char *)n->name;
    out->children = NULL;
    out->nchildren = 0;
    if (build_fields(p, n, &out->fields, &out->nfields, nf) != 0)
        return -1;
    if (nc == 0)
        return 0;
    out->children = arena_alloc(&p->arena, nc * sizeof *out->children);
    if (out->children == NULL) {
        nomem(p);
        return -1;
    }
    for (xmlNodePtr c = n->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || !is_segment(c))
            continue;
        if (build_segment(p, c, &out->children[out->nchildren]) != 0)
            return -1;
        out->nchildren++;
    }
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Trimmed copy of a control field ("" when absent). */
static const char *control_trimmed(struct idoc_parser *p, const struct idoc *doc, const char *name)
{
    const char *v = idoc_control_get(doc, name);
    if (v == NULL)
        return "";
    size_t len = strlen(v);
    size_t b = 0, e = len;
    while (b < e && is_blank(v[b]))
        b++;
    while (e > b && is_blank(v[e - 1]))
        e--;
    if (b == 0 && e == len)
        return v;
    return arena_strndup(&p->arena, v + b, e - b);
}

static int build_model(struct idoc_parser *p, struct idoc *doc, xmlNodePtr idoc)
{
    xmlNodePtr dc = NULL;
    size_t nseg = 0;
    for (xmlNodePtr c = idoc->children; c != NULL; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (dc == NULL && is_name(c->name, "EDI_DC40"))
            dc = c;
        else if (is_segment(c))
            nseg++;
    }
    if (dc == NULL) {
        set_error(p, IDOC_ERR_NO_CONTROL,
                  "IDoc #%zu in the packet has no control record (EDI_DC40)", p->started);
        return -1;
    }

    size_t nf = 0;
    for (xmlNodePtr c = dc->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !is_segment(c))
            nf++;
    if (build_fields(p, dc, &doc->control, &doc->ncontrol, nf) != 0)
        return -1;

    struct { const char **dst; const char *name; } conv[] = {
        { &doc->docnum, "DOCNUM" }, { &doc->mandt, "MANDT" },     { &doc->sndprn, "SNDPRN" },
        { &doc->sndpor, "SNDPOR" }, { &doc->idoctyp, "IDOCTYP" }, { &doc->cimtyp, "CIMTYP" },
        { &doc->mestyp, "MESTYP" }, { &doc->credat, "CREDAT" },   { &doc->cretim, "CRETIM" },
    };
    for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
        *conv[i].dst = control_trimmed(p, doc, conv[i].name);
        if (*conv[i].dst == NULL) {
            nomem(p);
            return -1;
        }
    }
    if (doc->docnum[0] == '\0') {
        set_error(p, IDOC_ERR_NO_DOCNUM,
                  "IDoc #%zu in the packet has no DOCNUM in its control record (EDI_DC40)",
                  p->started);
        return -1;
    }

    doc->segments = NULL;
    doc->nsegments = 0;
    p->segments = 0;
    if (nseg == 0)
        return 0;
    doc->segments = arena_alloc(&p->arena, nseg * sizeof *doc->segments);
    if (doc->segments == NULL) {
        nomem(p);
        return -1;
    }
    for (xmlNodePtr c = idoc->children; c != NULL; c = c->next) {
        if (c == dc || c->type != XML_ELEMENT_NODE || !is_segment(c))
            continue;
        if (build_segment(p, c, &doc->segments[doc->nsegments]) != 0)
            return -1;
        doc->nsegments++;
    }
    return 0;
}

/* Make an unlinked subtree namespace-free (SOAP): element namespaces are
 * dropped, namespace-qualified attributes other than xml:* removed, and the
 * declarations freed. Post-order, so nothing points at a freed declaration. */
static void strip_namespaces(xmlNodePtr n)
{
    for (; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        xmlAttrPtr a = n->properties;
        while (a != NULL) {
            xmlAttrPtr next = a->next;
            if (a->ns != NULL && !xmlStrEqual(a->ns->href, XML_XML_NAMESPACE))
                xmlRemoveProp(a);
            a = next;
        }
        strip_namespaces(n->children);
        n->ns = NULL;
        if (n->nsDef != NULL) {
            xmlFreeNsList(n->nsDef);
            n->nsDef = NULL;
        }
    }
}

/* <?xml version="1.0" encoding="UTF-8"?>\n<ROOT><IDOC ...>...</IDOC></ROOT> */
static xmlOutputBufferPtr serialise(struct idoc_parser *p, const xmlChar *root, xmlNodePtr idoc)
{
    xmlOutputBufferPtr out = xmlAllocOutputBuffer(NULL);
    if (out == NULL)
        return NULL;
    xmlOutputBufferWriteString(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
    xmlOutputBufferWriteString(out, (const char *)root);
    xmlOutputBufferWriteString(out, ">");
    xmlNodeDumpOutput(out, p->ctxt->myDoc, idoc, 0, 0, "UTF-8");
    xmlOutputBufferWriteString(out, "</");
    xmlOutputBufferWriteString(out, (const char *)root);
    xmlOutputBufferWriteString(out, ">");
    if (out->error != 0 || xmlOutputBufferGetContent(out) == NULL) {
        xmlOutputBufferClose(out);
        return NULL;
    }
    return out;
}

/* A top-level IDOC has just been closed: convert, serialise, call back, free. */
static void idoc_done(struct idoc_parser *p, xmlNodePtr node)
{
    xmlNodePtr parent = node->parent;
    xmlOutputBufferPtr out = NULL;
    struct idoc *doc = NULL;

    if (parent == NULL || parent->type != XML_ELEMENT_NODE) {
        set_error(p, IDOC_ERR_NOT_IDOC, "<IDOC> is the document element: the IDoc type's root "
                  "element (e.g. <ORDERS05>) around it is missing");
        goto done;
    }
    doc = arena_alloc(&p->arena, sizeof *doc);
    if (doc == NULL) {
        nomem(p);
        goto done;
    }
    memset(doc, 0, sizeof *doc);
    doc->root = (const char *)parent->name;
    doc->index = p->started - 1;
    if (build_model(p, doc, node) != 0)
        goto done;

    xmlUnlinkNode(node);
    if (p->ns_seen)
        strip_namespaces(node);
    out = serialise(p, parent->name, node);
    if (out == NULL) {
        nomem(p);
        goto done;
    }
    doc->xml = (const char *)xmlOutputBufferGetContent(out);
    doc->xml_len = xmlOutputBufferGetSize(out);

    if (p->cb != NULL) {
        p->cberr[0] = '\0';
        if (p->cb(doc, p->ud, p->cberr, sizeof p->cberr) != 0) {
            p->cberr[sizeof p->cberr - 1] = '\0';
            if (p->cberr[0] != '\0')
                set_error(p, IDOC_ERR_CALLBACK, "%s", p->cberr);
            else
                set_error(p, IDOC_ERR_CALLBACK, "IDoc #%zu (DOCNUM %s) was refused", p->started,
                          doc->docnum);
            goto done;
        }
    }
    p->delivered++;

done:
    if (out != NULL)
        xmlOutputBufferClose(out);
    xmlUnlinkNode(node);
    xmlFreeNode(node);
    arena_reset(&p->arena);
    if (p->status != IDOC_OK)
        xmlStopParser(p->ctxt);
}

/* ------------------------------------------------------------------------ */
/* SAX overrides. ctx is always the parser context (userData == ctxt). */

static void on_internal_subset(void *ctx, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    (void)name;
    (void)external_id;
    (void)system_id;
    xmlParserCtxtPtr ctxt = ctx;
    set_error(ctxt->_private, IDOC_ERR_DOCTYPE, "DOCTYPE is not allowed in an IDoc");
    xmlStopParser(ctxt);
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                     int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status != IDOC_OK) {
        xmlStopParser(ctxt);
        return;
    }
    if (p->depth >= IDOC_MAX_DEPTH) {
        set_error(p, IDOC_ERR_MALFORMED,
                  "malformed XML at line %d: elements nested deeper than %d levels",
                  xmlSAX2GetLineNumber(ctx), IDOC_MAX_DEPTH);
        xmlStopParser(ctxt);
        return;
    }
    p->depth++;

    if (p->idoc_depth == 0) {
        if (is_name(localname, "IDOC")) {
            if (p->limits.max_idocs != 0 && p->started >= p->limits.max_idocs) {
                set_error(p, IDOC_ERR_LIMIT, "more than %zu IDocs in one packet",
                          p->limits.max_idocs);
                xmlStopParser(ctxt);
                return;
            }
            p->started++;
            p->idoc_depth = p->depth;
            p->segattrs = 0;
        }
    } else if (p->limits.max_segments != 0 && !is_name(localname, "EDI_DC40")) {
        /* early check, before the DOM of a huge IDoc is built: SAP marks every
         * segment with SEGMENT="1"; unmarked ones are counted at conversion */
        for (int i = 0; i < nb_attributes; i++) {
            if (is_name(attributes[i * 5], "SEGMENT")) {
                if (++p->segattrs > p->limits.max_segments) {
                    set_error(p, IDOC_ERR_LIMIT, "IDoc #%zu has more than %zu segments",
                              p->started, p->limits.max_segments);
                    xmlStopParser(ctxt);
                    return;
                }
                break;
            }
        }
    }

    if (uri != NULL || nb_namespaces > 0)
        p->ns_seen = 1;
    for (int i = 0; i < nb_attributes && !p->ns_seen; i++)
        if (attributes[i * 5 + 2] != NULL)
            p->ns_seen = 1;

    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces,
                          nb_attributes, nb_defaulted, attributes);
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status != IDOC_OK) {
        xmlStopParser(ctxt);
        return;
    }
    xmlNodePtr cur = ctxt->node;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
    unsigned depth = p->depth;
    if (p->depth > 0)
        p->depth--;

    if (cur == NULL || cur->type != XML_ELEMENT_NODE || !xmlStrEqual(cur->name, localname)) {
        /* the tree builder did not follow (it reports its own errors) */
        if (p->status == IDOC_OK)
            set_error(p, IDOC_ERR_NOMEM, "internal error: XML tree out of step at line %d",
                      xmlSAX2GetLineNumber(ctx));
        xmlStopParser(ctxt);
        return;
    }
    if (p->idoc_depth != 0) {
        if (depth == p->idoc_depth) {
            p->idoc_depth = 0;
            idoc_done(p, cur);
        }
        return;
    }
    /* outside any IDOC: nothing of it is needed any more (its IDOCs are
     * gone already); keep only the document element */
    if (cur->parent != NULL && cur->parent->type == XML_ELEMENT_NODE) {
        xmlUnlinkNode(cur);
        xmlFreeNode(cur);
    }
    if (p->depth == 0)
        p->root_done = 1;
}

/* Character data outside IDOCs is not data: drop it (bounded memory). Used
 * for both characters and ignorableWhitespace. */
static void on_characters(void *ctx, const xmlChar *ch, int len)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status == IDOC_OK && p->idoc_depth != 0)
        xmlSAX2Characters(ctx, ch, len);
}

static void on_cdata(void *ctx, const xmlChar *value, int len)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status == IDOC_OK && p->idoc_depth != 0)
        xmlSAX2CDataBlock(ctx, value, len);
}

static void on_comment(void *ctx, const xmlChar *value)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status == IDOC_OK && p->idoc_depth != 0)
        xmlSAX2Comment(ctx, value);
}

static void on_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status == IDOC_OK && p->idoc_depth != 0)
        xmlSAX2ProcessingInstruction(ctx, target, data);
}

/* ------------------------------------------------------------------------ */
/* Public API */

static xmlParserInputPtr deny_entity_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void)url;
    (void)id;
    (void)ctxt;
    return NULL;
}

static void silent_generic_error(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

void idoc_global_init(void)
{
    xmlInitParser();
    xmlSetExternalEntityLoader(deny_entity_loader);
    /* libxml2 reports some errors (encoding conversion) without a parser
     * context, through the per-thread generic handler, which prints to
     * stderr. We get them from xmlGetLastError instead: silence the handler
     * for this thread and as the default for threads created later. */
    xmlSetGenericErrorFunc(NULL, silent_generic_error);
    xmlThrDefSetGenericErrorFunc(NULL, silent_generic_error);
}

void idoc_global_cleanup(void)
{
    xmlCleanupParser();
}

struct idoc_parser *idoc_parser_new(const struct idoc_limits *limits, idoc_cb cb, void *ud)
{
    struct idoc_parser *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    if (limits != NULL)
        p->limits = *limits;
    p->cb = cb;
    p->ud = ud;

    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    xmlSAXVersion(&sax, 2);
    sax.internalSubset = on_internal_subset;
    sax.externalSubset = NULL;
    sax.startElementNs = on_start;
    sax.endElementNs = on_end;
    sax.characters = on_characters;
    sax.ignorableWhitespace = on_characters;
    sax.cdataBlock = on_cdata;
    sax.comment = on_comment;
    sax.processingInstruction = on_pi;
    sax.warning = NULL;
    sax.error = NULL;
    sax.fatalError = NULL;
    sax.serror = on_xml_error;

    /* no initial chunk: the encoding is detected from the first 4 bytes fed */
    p->ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    if (p->ctxt == NULL) {
        free(p);
        return NULL;
    }
    p->ctxt->_private = p;
    xmlCtxtUseOptions(p->ctxt, PARSE_OPTIONS);
    /* defence in depth against process-wide libxml2 defaults */
    p->ctxt->replaceEntities = 0;
    p->ctxt->loadsubset = 0;
    p->ctxt->validate = 0;
    p->ctxt->recovery = 0;
    return p;
}

int idoc_parser_feed(struct idoc_parser *p, const char *buf, size_t len, char *err, size_t errlen)
{
    if (p == NULL)
        return IDOC_ERR_NOMEM;
    if (p->status == IDOC_OK && p->finished && len > 0)
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML: data after the end of the document");
    while (p->status == IDOC_OK && len > 0) {
        int n = len > FEED_SLICE ? FEED_SLICE : (int)len;
        parse_chunk(p, buf, n, 0);
        p->fed += (size_t)n;
        buf += n;
        len -= (size_t)n;
        check_ctxt(p);
    }
    copy_error(p, err, errlen);
    return p->status;
}

int idoc_parser_finish(struct idoc_parser *p, char *err, size_t errlen)
{
    if (p == NULL)
        return IDOC_ERR_NOMEM;
    if (p->status == IDOC_OK && !p->finished) {
        p->finished = 1;
        if (p->fed == 0) {
            set_error(p, IDOC_ERR_MALFORMED, "malformed XML: empty body");
        } else {
            p->terminating = 1;
            parse_chunk(p, NULL, 0, 1);
            p->terminating = 0;
            check_ctxt(p);
            /* whatever libxml2 thought: a complete document closed its
             * document element, and every IDOC that opened was delivered */
            if (p->status == IDOC_OK && (!p->root_done || p->depth != 0))
                set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: document incomplete%s%s%s",
                          input_line(p), p->ctxt->name ? " (ends inside <" : "",
                          p->ctxt->name ? (const char *)p->ctxt->name : "",
                          p->ctxt->name ? ">)" : "");
            if (p->status == IDOC_OK && p->started == 0)
                set_error(p, IDOC_ERR_NOT_IDOC, "no <IDOC> element: not an IDoc");
        }
    }
    copy_error(p, err, errlen);
    return p->status;
}

size_t idoc_parser_count(const struct idoc_parser *p)
{
    return p != NULL ? p->delivered : 0;
}

void idoc_parser_free(struct idoc_parser *p)
{
    if (p == NULL)
        return;
    if (p->ctxt != NULL) {
        if (p->ctxt->myDoc != NULL) {
            xmlFreeDoc(p->ctxt->myDoc);
            p->ctxt->myDoc = NULL;
        }
        xmlFreeParserCtxt(p->ctxt);
    }
    arena_free(&p->arena);
    free(p);
}

int idoc_parse(const char *buf, size_t len, const struct idoc_limits *limits,
               idoc_cb cb, void *ud, char *err, size_t errlen)
{
    struct idoc_parser *p = idoc_parser_new(limits, cb, ud);
    if (p == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        return IDOC_ERR_NOMEM;
    }
    int rc = idoc_parser_feed(p, buf, len, err, errlen);
    if (rc == IDOC_OK)
        rc = idoc_parser_finish(p, err, errlen);
    idoc_parser_free(p);
    return rc;
}

const char *idoc_status_name(int status)
{
    switch (status) {
    case IDOC_OK:             return "ok";
    case IDOC_ERR_MALFORMED:  return "malformed";
    case IDOC_ERR_DOCTYPE:    return "doctype";
    case IDOC_ERR_NOT_IDOC:   return "not_idoc";
    case IDOC_ERR_NO_CONTROL: return "no_control";
    case IDOC_ERR_NO_DOCNUM:  return "no_docnum";
    case IDOC_ERR_ENCODING:   return "encoding";
    case IDOC_ERR_LIMIT:      return "limit";
    case IDOC_ERR_CALLBACK:   return "callback";
    case IDOC_ERR_NOMEM:      return "nomem";
    default:                  return "unknown";
    }
}

const char *idoc_control_get(const struct idoc *doc, const char *name)
{
    if (doc == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < doc->ncontrol; i++)
        if (strcmp(doc->control[i].name, name) == 0)
            return doc->control[i].value;
    return NULL;
}

const char *idoc_segment_get(const struct idoc_segment *seg, const char *field)
{
    if (seg == NULL || field == NULL)
        return NULL;
    for (size_t i = 0; i < seg->nfields; i++)
        if (strcmp(seg->fields[i].name, field) == 0)
            return seg->fields[i].value;
    return NULL;
}
