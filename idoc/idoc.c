/*
 * idoc.c — the IDoc model and the streaming IDoc-XML parser.
 *
 * Design
 * ------
 * Input is untrusted and may be large (a "collect IDocs" packet of thousands
 * of IDocs in one POST), so:
 *
 *  - libxml2 *push* parser (xmlParseChunk): the HTTP layer hands us body
 *    pieces as they arrive; nothing needs the whole body in memory. feed()
 *    slices large pieces into FEED_SLICE bytes so the parser's input buffer
 *    stays small and is shrunk as it is consumed.
 *
 *  - SAX only, no tree. Our own startElementNs/endElementNs/characters
 *    handlers build the `struct idoc` model directly, with a stack of open
 *    elements (p->fr, one frame per depth) and two scratch stacks of finished
 *    fields and segments (p->fst, p->sst). A finished element pushes itself
 *    onto the stack of its kind; when its parent closes, the parent's
 *    children are the top of those stacks (everything above the marks the
 *    parent's frame took when it opened): they are copied into the per-IDoc
 *    arena as the parent's arrays and popped. LIFO nesting makes one stack
 *    enough for all depths. Only the innermost open element receives text,
 *    so one text buffer (p->text) holds the value of the field being read.
 *    libxml2 still does what it does well (tokenising, well-formedness,
 *    entity/char-ref resolution, encoding conversion, line-end
 *    normalisation); the names in the model are libxml2's dictionary strings.
 *
 *  - doc->xml without a serialiser, mostly. The fast path (input without an
 *    encoding converter, i.e. UTF-8 or ASCII-compatible bytes taken as they
 *    are, and no namespace anywhere in the IDOC): the IDoc *is* the raw bytes
 *    of its <IDOC ...>...</IDOC> element. feed() keeps the bytes handed to
 *    libxml2 in p->raw (absolute offset p->raw_off of its first byte); the
 *    current position in libxml2's input, in the same bytes, is
 *    input->consumed + (input->cur - input->base) (libxml2 2.9.x: the push
 *    buffer shrinks by memmove and counts what it dropped in `consumed`). At
 *    startElementNs the position is at the start tag's closing '>' or "/>",
 *    so its '<' is the last '<' before it ('<' cannot occur inside a tag); at
 *    endElementNs it is just past "</IDOC>" (or "/>"). Both are checked
 *    against the bytes. The slice is copied out with line ends normalised as
 *    XML does (CR LF and lone CR -> LF), so re-parsing it gives the same
 *    characters; entity and character references stay as written. Between
 *    chunks, p->raw drops everything before the open IDOC's '<' (or before
 *    the current position when no IDOC is open): it holds at most one IDoc
 *    plus one slice.
 *    Otherwise (an encoding converter: ISO-8859-1, windows-1252, UTF-16...;
 *    or namespaces: SOAP), the IDOC is serialised from the SAX events as
 *    they arrive (p->out, "stream" mode), as libxml2's xmlNodeDumpOutput
 *    would write it: local names, no namespace declarations, namespaced
 *    attributes other than xml:* dropped, text escaped (& < > CR), attribute
 *    values escaped (& < > " CR LF TAB), comments, PIs and CDATA kept,
 *    empty elements as <X/>. A namespace that first appears deep inside an
 *    IDOC read in raw mode switches it to stream mode there: the raw bytes
 *    up to that start tag (namespace-free by construction) are copied, the
 *    rest is streamed.
 *
 *  - endElementNs of a top-level <IDOC> (local name IDOC, not nested in
 *    another IDOC): the model is finished (control checks, limits), doc->xml
 *    completed, the callback called, the arena reset. Text, comments, PIs
 *    and CDATA outside IDOCs are dropped as they arrive, so what is live is:
 *    the stack of open elements + the model and bytes of one IDoc.
 *
 *    Invariants:
 *      - p->idoc_depth != 0  <=>  we are inside a top-level IDOC whose start
 *        tag was at element depth p->idoc_depth; only then is anything kept.
 *      - every pointer in the model handed to the callback (names: the
 *        parser's dictionary; values, arrays: the arena or the scratch
 *        stacks; xml: p->out) stays valid until the callback returns and not
 *        one call longer.
 *      - p->status is sticky: the first error wins, the parser is stopped,
 *        and every later feed()/finish() returns the same status and text.
 *
 *  - Parser objects are cheap: idoc_parser_free puts the parser into a small
 *    pool of its thread (a pthread key; up to POOL_MAX parsers, because an
 *    HTTP worker thread has many requests, each with its parser, in flight
 *    at once; freed when the thread exits or by idoc_global_cleanup) and
 *    idoc_parser_new on that thread takes one from there: the libxml2
 *    context is reset with xmlCtxtResetPush (its dictionary stays warm),
 *    the arena and buffers are kept. A parser is not pooled after libxml2
 *    itself reported an error, nor when its dictionary holds more than
 *    DICT_MAX names (hostile names cannot grow it without bound across
 *    requests); buffers that grew large are freed first (KEEP_MAX).
 *
 *  - DOCTYPE is refused, always. An IDoc never needs a DTD, and on libxml2
 *    2.9.14 the entity-expansion guard is a ratio heuristic and several
 *    entity CVEs (2022-40303/40304, 2024-40896 XXE) are fixed only later.
 *    xmlParseDocTypeDecl calls the SAX internalSubset hook *before* it reads
 *    the "[...]" internal subset; our hook records IDOC_ERR_DOCTYPE and calls
 *    xmlStopParser, so no entity declaration is ever parsed (billion laughs
 *    and XXE never get a chance). Belt and braces: options are only
 *    NONET|NOERROR|NOWARNING (never NOENT, DTDLOAD, DTDATTR, DTDVALID,
 *    XINCLUDE, HUGE, NOBLANKS), there is no entity/reference SAX handler,
 *    and idoc_global_init installs a deny-all external entity loader.
 *    libxml2's default limits stay on (10 MB lookahead, 10 MB names and
 *    attribute values); nesting is capped at IDOC_MAX_DEPTH; and since no
 *    tree builder enforces libxml2's 10 MB text-node limit any more, we do:
 *    a run of character data inside an IDOC longer than XML_MAX_TEXT_LENGTH
 *    is an error, as it was.
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
 *    record (its leaf children are the control fields; anything nested
 *    deeper is ignored); a second EDI_DC40, if any, is kept as an ordinary
 *    segment.
 *  - Names are local names as written (no namespace prefix): "_-ACME_-Z1EDP01".
 *  - SOAP: an IDOC is found wherever it is, so a SOAP 1.1/1.2 envelope
 *    (soap:Envelope/soap:Body/<ns:ORDERS05 xmlns:ns="urn:sap-com:document:
 *    sap:idoc:soap:messages">/IDOC) just works: the root is the IDOC's parent
 *    (local name, "ORDERS05"), and doc->xml is a plain, namespace-free IDoc-XML
 *    document (see stream mode above). An IDOC that is itself the document
 *    element has no root: IDOC_ERR_NOT_IDOC.
 *  - Limits: max_idocs is checked when an IDOC starts; max_segments first on
 *    SEGMENT= start tags (early, bounded memory), then by counting the data
 *    segments as they close; that count is reported when the IDOC closes,
 *    after the control checks (as the tree-walking parser did), and once it
 *    is exceeded nothing more of that IDoc is built.
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
 *    is kept (and stays &#13; in doc->xml).
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
 * (each parser has its own libxml2 context and dictionary; the pool of
 * is per thread). The only process-wide state is what idoc_global_init sets
 * up, once, before threads, and the pthread key of the parser pools.
 */
#include "idoc/idoc.h"

#include <libxml/globals.h>
#include <libxml/hash.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlIO.h>
#include <libxml/xmlerror.h>

#include <pthread.h>
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
#define DICT_MAX       10000    /* names in a context's dictionary before it is
                                   thrown away rather than reused */
#define KEEP_MAX       (256u << 10) /* buffers larger than this are freed,
                                       not kept, when a parser is pooled */
#define POOL_MAX       32       /* pooled parsers per thread */

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

static const char XML_DECL[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

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
/* Growable byte buffer */

struct buf {
    char *p;
    size_t n, cap;
};

/* Room for `more` bytes after n (and one more, for a NUL). */
static int buf_grow(struct buf *b, size_t more)
{
    if (more > SIZE_MAX / 4 - b->n)
        return -1;
    size_t need = b->n + more + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (np == NULL)
        return -1;
    b->p = np;
    b->cap = cap;
    return 0;
}

static inline int buf_add(struct buf *b, const void *s, size_t n)
{
    if (b->cap - b->n <= n && buf_grow(b, n) != 0)
        return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ------------------------------------------------------------------------ */
/* Parser state */

/* What an open element is, for the model. */
enum kind {
    K_OUT,          /* outside any IDOC */
    K_IDOC,         /* the top-level IDOC */
    K_CTRL,         /* the first EDI_DC40 child of the IDOC: control record */
    K_CTRL_CHILD,   /* a child of the control record: a leaf is a control field */
    K_SKIP,         /* deeper inside the control record: ignored */
    K_TOP,          /* another child of the IDOC: a segment is a top-level
                       segment, a leaf is not data */
    K_DATA,         /* inside a data segment: a leaf is a field */
};

/* How doc->xml of the open IDOC is being made. */
enum xmode {
    X_NONE,         /* not at all (no IDOC open, or the IDoc is over a limit) */
    X_RAW,          /* the raw input bytes, sliced at the end */
    X_STREAM,       /* serialised from the SAX events, into p->out */
};

enum run { RUN_NONE, RUN_TEXT, RUN_CDATA };

struct frame {
    const xmlChar *name;        /* local name (dictionary) */
    size_t fmark, smark;        /* p->fn, p->sn when the element opened */
    unsigned char kind;         /* enum kind */
    unsigned char seg_attr;     /* has a SEGMENT attribute */
    unsigned char has_child;    /* has had an element child */
    unsigned char want_text;    /* a field candidate: collect its text */
};

struct idoc_parser {
    xmlParserCtxtPtr ctxt;
    const xmlChar *nm_idoc, *nm_dc40, *nm_segment, *nm_xml; /* in ctxt->dict */
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
    size_t segments;            /* data segments closed in the open IDOC */
    size_t segattrs;            /* SEGMENT= elements in the IDOC being read */
    unsigned depth;             /* current element depth (document element = 1) */
    unsigned idoc_depth;        /* depth of the open top-level IDOC; 0 = none */
    int root_done;              /* the document element was closed */
    int terminating;            /* inside the final xmlParseChunk */
    int finished;               /* finish() ran */

    /* the model of the open IDOC */
    int ctl_seen;               /* its control record has started */
    size_t ctl_at, nctl;        /* control fields: p->fst[ctl_at, ctl_at+nctl) */
    int over_limit;             /* more than max_segments: stop building */
    struct idoc_field *fst;     /* finished fields not yet in a segment */
    size_t fn, fcap;
    struct idoc_segment *sst;   /* finished segments not yet in a parent */
    size_t sn, scap;
    struct buf text;            /* character data of the open field */
    size_t run_len;             /* length of the current run of character data */
    int run;                    /* enum run: its kind */

    /* doc->xml of the open IDOC */
    int xmode;                  /* enum xmode */
    int tag_open;               /* stream: a start tag still lacks its '>' */
    size_t cdata_end;           /* stream: p->out.n just after the last "]]>" */
    struct buf out;             /* the document handed out as doc->xml */
    int raw_ok;                 /* input bytes are what libxml2 parses (no
                                   encoding converter): raw mode possible */
    struct buf raw;             /* bytes fed, from absolute offset raw_off */
    size_t raw_off;
    size_t idoc_at;             /* X_RAW: absolute offset of the IDOC's '<' */

    /* xml:id values of the elements a tree builder would hold (see xml_id) */
    xmlHashTablePtr ids;
    struct idrec { xmlChar *value; unsigned depth; } *idstk;
    size_t nids, idcap;

    struct frame fr[IDOC_MAX_DEPTH + 1];   /* fr[depth]; fr[0] unused */
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
/* Small helpers */

static void nomem(struct idoc_parser *p)
{
    set_error(p, IDOC_ERR_NOMEM, "out of memory while reading IDoc #%zu", p->started);
}

/* Out of memory inside a SAX handler: record it and stop libxml2. */
static void oom(struct idoc_parser *p)
{
    nomem(p);
    xmlStopParser(p->ctxt);
}

/* a is the dictionary string for s (nm), or at least equal to s */
static inline int name_is(const xmlChar *a, const xmlChar *nm, const char *s)
{
    /* libxml2 hands names over from its dictionary, so the pointer test
     * decides; the string test is a cheap safety net */
    return a == nm || (a != NULL && a[0] == (xmlChar)s[0] && a[0] != '\0' &&
                       a[1] == (xmlChar)s[1] && strcmp((const char *)a, s) == 0);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Absolute offset, in the bytes fed, of libxml2's current position. Only
 * meaningful without an encoding converter (p->raw_ok). */
static size_t input_offset(const struct idoc_parser *p)
{
    const xmlParserInput *in = p->ctxt->input;
    if (in == NULL || in->cur == NULL || in->base == NULL || in->cur < in->base)
        return p->raw_off;
    return (size_t)in->consumed + (size_t)(in->cur - in->base);
}

static int has_encoder(const struct idoc_parser *p)
{
    const xmlParserInput *in = p->ctxt->input;
    return in != NULL && in->buf != NULL && in->buf->encoder != NULL;
}

/* ------------------------------------------------------------------------ */
/* doc->xml: raw slices and the stream serialiser */

static inline int out_add(struct idoc_parser *p, const void *s, size_t n)
{
    if (buf_add(&p->out, s, n) != 0) {
        oom(p);
        return -1;
    }
    return 0;
}

static inline int out_str(struct idoc_parser *p, const char *s)
{
    return out_add(p, s, strlen(s));
}

/* Copy raw bytes with XML line-end normalisation: CR LF -> LF, CR -> LF. */
static int out_raw(struct idoc_parser *p, const char *s, size_t n)
{
    const char *cr = memchr(s, '\r', n);
    if (cr == NULL)
        return out_add(p, s, n);
    if (buf_grow(&p->out, n) != 0) {
        oom(p);
        return -1;
    }
    char *w = p->out.p + p->out.n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\r') {
            *w++ = s[i];
        } else {
            *w++ = '\n';
            if (i + 1 < n && s[i + 1] == '\n')
                i++;
        }
    }
    p->out.n = (size_t)(w - p->out.p);
    return 0;
}

/* Text content, escaped as xmlNodeDumpOutput does for UTF-8 output. */
static void out_text(struct idoc_parser *p, const xmlChar *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep;
        switch (s[i]) {
        case '&':  rep = "&amp;"; break;
        case '<':  rep = "&lt;"; break;
        case '>':  rep = "&gt;"; break;
        case '\r': rep = "&#13;"; break;
        default:   continue;
        }
        if (out_add(p, s + from, i - from) != 0 || out_str(p, rep) != 0)
            return;
        from = i + 1;
    }
    out_add(p, s + from, n - from);
}

/* An attribute value from startElementNs. With replaceEntities off, libxml2
 * hands every '&' in a value over as the character reference "&#38;" (the
 * tree builder would decode it); every other reference is already replaced. */
static void out_attr_value(struct idoc_parser *p, const xmlChar *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep;
        size_t skip = 0;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            if (n - i >= 5 && memcmp(s + i, "&#38;", 5) == 0)
                skip = 4;
            break;
        case '<':  rep = "&lt;"; break;
        case '>':  rep = "&gt;"; break;
        case '"':  rep = "&quot;"; break;
        case '\r': rep = "&#13;"; break;
        case '\n': rep = "&#10;"; break;
        case '\t': rep = "&#9;"; break;
        default:   continue;
        }
        if (out_add(p, s + from, i - from) != 0 || out_str(p, rep) != 0)
            return;
        i += skip;
        from = i + 1;
    }
    out_add(p, s + from, n - from);
}

static inline void close_tag(struct idoc_parser *p)
{
    if (p->tag_open) {
        p->tag_open = 0;
        out_add(p, ">", 1);
    }
}

/* A start tag, namespace-free: local name, attributes without a namespace
 * (and xml:*), no declarations. Its '>' waits: <X/> if nothing follows. */
static void stream_start_tag(struct idoc_parser *p, const xmlChar *name, int nb_attributes,
                             const xmlChar **attributes)
{
    close_tag(p);
    out_add(p, "<", 1);
    out_str(p, (const char *)name);
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar **a = attributes + i * 5;
        if (a[2] != NULL) {
            if (strcmp((const char *)a[2], (const char *)XML_XML_NAMESPACE) != 0)
                continue;
            out_add(p, " xml:", 5);
        } else {
            out_add(p, " ", 1);
        }
        out_str(p, (const char *)a[0]);
        out_add(p, "=\"", 2);
        out_attr_value(p, a[3], (size_t)(a[4] - a[3]));
        out_add(p, "\"", 1);
    }
    p->tag_open = 1;
}

/* Where the start tag being reported begins in p->raw: libxml2 stands on its
 * closing '>' or "/>"; the tag's '<' is the last one before that. Checks
 * that the bytes there are "<" + the tag's name; -1 if anything is off. */
static long raw_tag_start(struct idoc_parser *p, const xmlChar *prefix, const xmlChar *name)
{
    size_t abs = input_offset(p);
    if (abs < p->raw_off || abs - p->raw_off >= p->raw.n)
        return -1;
    size_t at = abs - p->raw_off;
    if (p->raw.p[at] != '>' && p->raw.p[at] != '/')
        return -1;
    const char *lt = p->raw.p + at;
    while (lt > p->raw.p && *lt != '<')
        lt--;
    if (*lt != '<')
        return -1;
    size_t pos = (size_t)(lt - p->raw.p) + 1, left = at - pos;
    if (prefix != NULL) {
        size_t pl = strlen((const char *)prefix);
        if (left < pl + 1 || memcmp(p->raw.p + pos, prefix, pl) != 0 || p->raw.p[pos + pl] != ':')
            return -1;
        pos += pl + 1;
        left -= pl + 1;
    }
    size_t nl = strlen((const char *)name);
    if (left < nl || memcmp(p->raw.p + pos, name, nl) != 0)
        return -1;
    return lt - p->raw.p;
}

/* "<?xml ...?>\n<ROOT>" into an empty p->out */
static void out_head(struct idoc_parser *p, const xmlChar *root)
{
    p->out.n = 0;
    p->tag_open = 0;
    p->cdata_end = 0;
    out_add(p, XML_DECL, sizeof XML_DECL - 1);
    out_add(p, "<", 1);
    out_str(p, (const char *)root);
    out_add(p, ">", 1);
}

/* A namespace inside an IDOC read in raw mode: what came before this start
 * tag (namespace-free) is copied as it is, the rest is streamed. */
static void raw_to_stream(struct idoc_parser *p, const xmlChar *prefix, const xmlChar *name)
{
    long lt = raw_tag_start(p, prefix, name);
    if (lt < 0 || (size_t)lt + p->raw_off < p->idoc_at) {
        set_error(p, IDOC_ERR_NOMEM, "internal error: input position out of step at line %d",
                  input_line(p));
        xmlStopParser(p->ctxt);
        return;
    }
    out_head(p, p->fr[p->idoc_depth - 1].name);
    out_raw(p, p->raw.p + (p->idoc_at - p->raw_off), (size_t)lt - (p->idoc_at - p->raw_off));
    p->xmode = X_STREAM;
}

/* ------------------------------------------------------------------------ */
/* Building the model */

static int push_field(struct idoc_parser *p, const xmlChar *name, const char *value)
{
    if (p->fn == p->fcap) {
        size_t cap = p->fcap ? 2 * p->fcap : 64;
        struct idoc_field *n = realloc(p->fst, cap * sizeof *n);
        if (n == NULL)
            return -1;
        p->fst = n;
        p->fcap = cap;
    }
    p->fst[p->fn].name = (const char *)name;
    p->fst[p->fn].value = value;
    p->fn++;
    return 0;
}

/* A field has closed: its value is the text collected. */
static void end_field(struct idoc_parser *p, const struct frame *f)
{
    const char *v = "";
    if (p->text.n > 0) {
        v = arena_strndup(&p->arena, p->text.p, p->text.n);
        if (v == NULL) {
            oom(p);
            return;
        }
    }
    if (push_field(p, f->name, v) != 0)
        oom(p);
}

/* A data segment has closed: its fields and child segments are the top of
 * the stacks; they move into the arena and it takes their place. */
static void end_segment(struct idoc_parser *p, const struct frame *f)
{
    size_t nf = p->fn - f->fmark, nc = p->sn - f->smark;
    p->segments++;
    if (p->over_limit || (p->limits.max_segments != 0 && p->segments > p->limits.max_segments)) {
        /* the IDoc will be refused: build no more of it */
        p->over_limit = 1;
        p->xmode = X_NONE;
        p->fn = f->fmark;
        p->sn = f->smark;
        return;
    }
    struct idoc_segment seg = { (const char *)f->name, NULL, nf, NULL, nc };
    if (nf > 0) {
        seg.fields = arena_alloc(&p->arena, nf * sizeof *seg.fields);
        if (seg.fields == NULL) {
            oom(p);
            return;
        }
        memcpy(seg.fields, p->fst + f->fmark, nf * sizeof *seg.fields);
    }
    if (nc > 0) {
        seg.children = arena_alloc(&p->arena, nc * sizeof *seg.children);
        if (seg.children == NULL) {
            oom(p);
            return;
        }
        memcpy(seg.children, p->sst + f->smark, nc * sizeof *seg.children);
    }
    p->fn = f->fmark;
    p->sn = f->smark;
    if (p->sn == p->scap) {
        size_t cap = p->scap ? 2 * p->scap : 32;
        struct idoc_segment *n = realloc(p->sst, cap * sizeof *n);
        if (n == NULL) {
            oom(p);
            return;
        }
        p->sst = n;
        p->scap = cap;
    }
    p->sst[p->sn++] = seg;
}

static __attribute__((noinline, cold)) void stop_huge_text(struct idoc_parser *p)
{
    /* the tree builder's words for it */
    set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: xmlSAX2Characters: huge text node",
              input_line(p));
    xmlStopParser(p->ctxt);
}

/* Character data inside an IDOC (text or CDATA). */
static inline void chardata(struct idoc_parser *p, const xmlChar *ch, int len, int run)
{
    if (p->run != run) {
        p->run = run;
        p->run_len = 0;
    }
    p->run_len += (size_t)len;
    if (p->run_len > XML_MAX_TEXT_LENGTH) {
        stop_huge_text(p);
        return;
    }
    if (p->fr[p->depth].want_text && buf_add(&p->text, ch, (size_t)len) != 0)
        oom(p);
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

/* Everything of the open IDOC is forgotten (after delivery or an error). */
static void idoc_reset(struct idoc_parser *p)
{
    arena_reset(&p->arena);
    p->fn = p->sn = 0;
    p->text.n = 0;
    p->ctl_seen = 0;
    p->ctl_at = p->nctl = 0;
    p->over_limit = 0;
    p->segments = 0;
    p->xmode = X_NONE;
    p->tag_open = 0;
    p->run = RUN_NONE;
}

/* The top-level IDOC (frame f) has just closed: finish the model and the
 * xml, call back. */
static void idoc_done(struct idoc_parser *p, const struct frame *f, unsigned depth)
{
    struct idoc *doc = NULL;

    if (depth <= 1) {
        set_error(p, IDOC_ERR_NOT_IDOC, "<IDOC> is the document element: the IDoc type's root "
                  "element (e.g. <ORDERS05>) around it is missing");
        goto done;
    }
    const xmlChar *root = p->fr[depth - 1].name;
    doc = arena_alloc(&p->arena, sizeof *doc);
    if (doc == NULL) {
        nomem(p);
        goto done;
    }
    memset(doc, 0, sizeof *doc);
    doc->root = (const char *)root;
    doc->index = p->started - 1;

    if (!p->ctl_seen) {
        set_error(p, IDOC_ERR_NO_CONTROL,
                  "IDoc #%zu in the packet has no control record (EDI_DC40)", p->started);
        goto done;
    }
    doc->control = p->nctl > 0 ? p->fst + p->ctl_at : NULL;
    doc->ncontrol = p->nctl;
    struct { const char **dst; const char *name; } conv[] = {
        { &doc->docnum, "DOCNUM" }, { &doc->mandt, "MANDT" },     { &doc->sndprn, "SNDPRN" },
        { &doc->sndpor, "SNDPOR" }, { &doc->idoctyp, "IDOCTYP" }, { &doc->cimtyp, "CIMTYP" },
        { &doc->mestyp, "MESTYP" }, { &doc->credat, "CREDAT" },   { &doc->cretim, "CRETIM" },
    };
    for (size_t i = 0; i < sizeof conv / sizeof conv[0]; i++) {
        *conv[i].dst = control_trimmed(p, doc, conv[i].name);
        if (*conv[i].dst == NULL) {
            nomem(p);
            goto done;
        }
    }
    if (doc->docnum[0] == '\0') {
        set_error(p, IDOC_ERR_NO_DOCNUM,
                  "IDoc #%zu in the packet has no DOCNUM in its control record (EDI_DC40)",
                  p->started);
        goto done;
    }
    if (p->over_limit) {
        set_error(p, IDOC_ERR_LIMIT, "IDoc #%zu has more than %zu segments", p->started,
                  p->limits.max_segments);
        goto done;
    }
    /* the top-level segments are the stack above the IDOC's mark; the
     * stack does not move before the callback returns */
    doc->nsegments = p->sn - f->smark;
    doc->segments = doc->nsegments > 0 ? p->sst + f->smark : NULL;

    if (p->xmode == X_RAW) {
        size_t end = input_offset(p);
        if (end < p->idoc_at || end > p->raw_off + p->raw.n || end - p->raw_off < 1 ||
            p->raw.p[end - p->raw_off - 1] != '>') {
            set_error(p, IDOC_ERR_NOMEM, "internal error: input position out of step at line %d",
                      input_line(p));
            goto done;
        }
        out_head(p, root);
        out_raw(p, p->raw.p + (p->idoc_at - p->raw_off), end - p->idoc_at);
    } else if (p->xmode != X_STREAM) {
        set_error(p, IDOC_ERR_NOMEM, "internal error: no XML kept for IDoc #%zu", p->started);
        goto done;
    }
    out_add(p, "</", 2);
    out_str(p, (const char *)root);
    out_add(p, ">", 1);
    if (p->status != IDOC_OK)
        goto done;
    p->out.p[p->out.n] = '\0';   /* buf_add leaves room for it */
    doc->xml = p->out.p;
    doc->xml_len = p->out.n;

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
    idoc_reset(p);
    if (p->status != IDOC_OK)
        xmlStopParser(p->ctxt);
}

/* ------------------------------------------------------------------------ */
/* xml:id, as libxml2's tree builder checked it. The tree-building parser
 * this one replaces let xmlSAX2AttributeNs see every attribute, and for
 * xml:id that raised errors (which stop us): a value that is not an NCName
 * ("xml:id : attribute value %s is not an NCName"), and a value already
 * held by an element still in the tree ("ID %s already defined"). The tree
 * held the open elements outside IDOCs (each freed when it closed, the
 * document element never) and the whole of the open IDOC (freed when it
 * closed). Same here: a stack of the values with the depth of their
 * element, and a hash of them. One quirk kept: libxml2 looks a value up
 * with its spaces normalised when the element is freed (xmlRemoveID), so a
 * value with a leading or trailing space was never released and stays
 * taken until the end of the document. Costs nothing without xml:id. */

/* xmlRemoveID would find and release this value */
static int id_releasable(const xmlChar *v)
{
    size_t n = strlen((const char *)v);
    if (n == 0 || v[0] == ' ' || v[n - 1] == ' ')
        return 0;
    return strstr((const char *)v, "  ") == NULL;
}

static void ids_pop(struct idoc_parser *p, unsigned depth)
{
    while (p->nids > 0 && p->idstk[p->nids - 1].depth >= depth) {
        struct idrec *r = &p->idstk[--p->nids];
        if (id_releasable(r->value))
            xmlHashRemoveEntry(p->ids, r->value, NULL);
        xmlFree(r->value);
    }
}

static void ids_clear(struct idoc_parser *p)
{
    ids_pop(p, 0);
    if (p->ids != NULL) {
        xmlHashFree(p->ids, NULL);
        p->ids = NULL;
    }
}

/* An xml:id attribute of the element opening at depth d; -1 on error. */
static int xml_id(struct idoc_parser *p, const xmlChar *value, const xmlChar *end, unsigned d)
{
    xmlChar *v = xmlStrndup(value, (int)(end - value));
    if (v == NULL) {
        oom(p);
        return -1;
    }
    if (xmlValidateNCName(v, 1) != 0) {
        set_error(p, IDOC_ERR_MALFORMED,
                  "malformed XML at line %d: xml:id : attribute value %s is not an NCName",
                  input_line(p), (const char *)v);
        xmlFree(v);
        xmlStopParser(p->ctxt);
        return -1;
    }
    if (p->ids == NULL && (p->ids = xmlHashCreate(0)) == NULL) {
        xmlFree(v);
        oom(p);
        return -1;
    }
    if (xmlHashLookup(p->ids, v) != NULL) {
        set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: ID %s already defined",
                  input_line(p), (const char *)v);
        xmlFree(v);
        xmlStopParser(p->ctxt);
        return -1;
    }
    if (p->nids == p->idcap) {
        size_t cap = p->idcap ? 2 * p->idcap : 16;
        struct idrec *n = realloc(p->idstk, cap * sizeof *n);
        if (n == NULL) {
            xmlFree(v);
            oom(p);
            return -1;
        }
        p->idstk = n;
        p->idcap = cap;
    }
    if (xmlHashAddEntry(p->ids, v, (void *)1) != 0) {
        xmlFree(v);
        oom(p);
        return -1;
    }
    p->idstk[p->nids].value = v;
    p->idstk[p->nids].depth = d;
    p->nids++;
    return 0;
}

/* The xml:id attributes of a start tag (after the checks that came first
 * in the tree-building parser); -1 on error. */
static int xml_ids(struct idoc_parser *p, int nb_attributes, const xmlChar **attributes,
                   unsigned d)
{
    for (int i = 0; i < nb_attributes; i++) {
        const xmlChar **a = attributes + i * 5;
        if (a[1] == p->nm_xml && a[0][0] == 'i' && a[0][1] == 'd' && a[0][2] == '\0' &&
            xml_id(p, a[3], a[4], d) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* SAX handlers. ctx is always the parser context (userData == ctxt). */

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

/* A top-level IDOC starts (frame f at depth d). */
static void idoc_start(struct idoc_parser *p, struct frame *f, unsigned d, const xmlChar *prefix,
                       int has_ns, int nb_attributes, const xmlChar **attributes)
{
    p->started++;
    p->idoc_depth = d;
    p->segattrs = 0;
    idoc_reset(p);
    f->kind = K_IDOC;
    f->fmark = f->smark = 0;
    f->seg_attr = f->has_child = f->want_text = 0;
    if (d <= 1)
        return;   /* no root: refused when it closes, as before */
    if (!p->raw_ok || has_encoder(p))
        p->raw_ok = 0;
    long lt = (p->raw_ok && !has_ns) ? raw_tag_start(p, prefix, f->name) : -1;
    if (lt >= 0) {
        p->xmode = X_RAW;
        p->idoc_at = p->raw_off + (size_t)lt;
    } else {
        p->xmode = X_STREAM;
        out_head(p, p->fr[d - 1].name);
        stream_start_tag(p, f->name, nb_attributes, attributes);
    }
}

/* The rare ways out of on_start, kept out of its way. */
static __attribute__((noinline, cold)) void stop_depth(struct idoc_parser *p)
{
    set_error(p, IDOC_ERR_MALFORMED, "malformed XML at line %d: elements nested deeper than %d levels",
              input_line(p), IDOC_MAX_DEPTH);
    xmlStopParser(p->ctxt);
}

static __attribute__((noinline, cold)) void stop_segments(struct idoc_parser *p)
{
    /* early check, before a huge IDoc is read: SAP marks every segment
     * with SEGMENT="1"; unmarked ones are counted as they close */
    set_error(p, IDOC_ERR_LIMIT, "IDoc #%zu has more than %zu segments", p->started,
              p->limits.max_segments);
    xmlStopParser(p->ctxt);
}

static void on_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                     int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    (void)namespaces;
    (void)nb_defaulted;
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status != IDOC_OK) {
        xmlStopParser(ctxt);
        return;
    }
    if (p->depth >= IDOC_MAX_DEPTH) {
        stop_depth(p);
        return;
    }
    unsigned d = ++p->depth;
    struct frame *f = &p->fr[d];
    f->name = localname;

    int has_ns = uri != NULL || nb_namespaces > 0;
    int seg_attr = 0, xmlid = 0;
    for (int i = 0; i < nb_attributes; i++) {
        if (attributes[i * 5 + 2] != NULL) {
            has_ns = 1;
            if (attributes[i * 5 + 1] == p->nm_xml)
                xmlid = 1;
        }
        if (name_is(attributes[i * 5], p->nm_segment, "SEGMENT"))
            seg_attr = 1;
    }

    if (p->idoc_depth == 0) {
        f->kind = K_OUT;
        if (!name_is(localname, p->nm_idoc, "IDOC")) {
            if (xmlid)
                xml_ids(p, nb_attributes, attributes, d);
            return;
        }
        if (p->limits.max_idocs != 0 && p->started >= p->limits.max_idocs) {
            set_error(p, IDOC_ERR_LIMIT, "more than %zu IDocs in one packet", p->limits.max_idocs);
            xmlStopParser(ctxt);
            return;
        }
        if (xmlid && xml_ids(p, nb_attributes, attributes, d) != 0)
            return;
        idoc_start(p, f, d, prefix, has_ns, nb_attributes, attributes);
        return;
    }

    /* inside an IDOC */
    struct frame *up = &p->fr[d - 1];
    int is_dc40 = name_is(localname, p->nm_dc40, "EDI_DC40");
    if (seg_attr && p->limits.max_segments != 0 && !is_dc40 &&
        ++p->segattrs > p->limits.max_segments) {
        stop_segments(p);
        return;
    }
    if (xmlid && xml_ids(p, nb_attributes, attributes, d) != 0)
        return;
    up->has_child = 1;
    up->want_text = 0;
    p->text.n = 0;
    p->run = RUN_NONE;

    switch (up->kind) {
    case K_IDOC:
        if (!p->ctl_seen && is_dc40) {
            p->ctl_seen = 1;
            f->kind = K_CTRL;
        } else {
            f->kind = K_TOP;
        }
        break;
    case K_CTRL:
        f->kind = K_CTRL_CHILD;
        break;
    case K_CTRL_CHILD:
    case K_SKIP:
        f->kind = K_SKIP;
        break;
    default:
        f->kind = K_DATA;
        break;
    }
    f->fmark = p->fn;
    f->smark = p->sn;
    f->seg_attr = (unsigned char)seg_attr;
    f->has_child = 0;
    f->want_text = (f->kind == K_DATA || f->kind == K_CTRL_CHILD) && !seg_attr;

    if (p->xmode == X_RAW && has_ns)
        raw_to_stream(p, prefix, localname);
    if (p->xmode == X_STREAM)
        stream_start_tag(p, localname, nb_attributes, attributes);
}

static void on_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri)
{
    (void)localname;
    (void)prefix;
    (void)uri;
    xmlParserCtxtPtr ctxt = ctx;
    struct idoc_parser *p = ctxt->_private;
    if (p->status != IDOC_OK) {
        xmlStopParser(ctxt);
        return;
    }
    unsigned d = p->depth;
    if (d == 0) {
        set_error(p, IDOC_ERR_NOMEM, "internal error: element depth out of step at line %d",
                  input_line(p));
        xmlStopParser(ctxt);
        return;
    }
    p->depth--;
    if (p->idoc_depth == 0) {
        if (p->nids > 0 && d > 1)
            ids_pop(p, d);
        if (p->depth == 0)
            p->root_done = 1;
        return;
    }
    const struct frame *f = &p->fr[d];
    p->run = RUN_NONE;
    if (p->xmode == X_STREAM) {
        if (p->tag_open) {
            p->tag_open = 0;
            out_add(p, "/>", 2);
        } else {
            out_add(p, "</", 2);
            out_str(p, (const char *)f->name);
            out_add(p, ">", 1);
        }
    }
    if (d == p->idoc_depth) {
        p->idoc_depth = 0;
        if (p->status == IDOC_OK)
            idoc_done(p, f, d);
        if (p->nids > 0)
            ids_pop(p, d);
        if (p->depth == 0)
            p->root_done = 1;
        return;
    }
    int leaf = !f->seg_attr && !f->has_child;
    switch (f->kind) {
    case K_CTRL:
        /* its fields stay at the bottom of the field stack */
        p->ctl_at = f->fmark;
        p->nctl = p->fn - f->fmark;
        p->sn = f->smark;
        break;
    case K_CTRL_CHILD:
        if (leaf)
            end_field(p, f);
        break;
    case K_TOP:
        if (!leaf)
            end_segment(p, f);
        break;
    case K_DATA:
        if (leaf)
            end_field(p, f);
        else
            end_segment(p, f);
        break;
    default:
        break;
    }
    p->text.n = 0;
}

/* Character data: kept only inside IDOCs. Used for both characters and
 * ignorableWhitespace. */
static void on_characters(void *ctx, const xmlChar *ch, int len)
{
    struct idoc_parser *p = ((xmlParserCtxtPtr)ctx)->_private;
    if (p->idoc_depth == 0 || p->status != IDOC_OK)
        return;
    chardata(p, ch, len, RUN_TEXT);
    if (p->xmode == X_STREAM) {
        close_tag(p);
        out_text(p, ch, (size_t)len);
    }
}

static void on_cdata(void *ctx, const xmlChar *value, int len)
{
    struct idoc_parser *p = ((xmlParserCtxtPtr)ctx)->_private;
    if (p->idoc_depth == 0 || p->status != IDOC_OK)
        return;
    /* the push parser hands a long CDATA section over in pieces: one section
     * in the output, as the tree builder coalesced them */
    int merge = p->xmode == X_STREAM && p->run == RUN_CDATA && p->cdata_end == p->out.n &&
                p->out.n >= 3;
    chardata(p, value, len, RUN_CDATA);
    if (p->xmode == X_STREAM) {
        if (merge) {
            p->out.n -= 3;
        } else {
            close_tag(p);
            out_add(p, "<![CDATA[", 9);
        }
        out_add(p, value, (size_t)len);
        out_add(p, "]]>", 3);
        p->cdata_end = p->out.n;
    }
}

static void on_comment(void *ctx, const xmlChar *value)
{
    struct idoc_parser *p = ((xmlParserCtxtPtr)ctx)->_private;
    if (p->idoc_depth == 0 || p->status != IDOC_OK)
        return;
    p->run = RUN_NONE;
    if (p->xmode == X_STREAM) {
        close_tag(p);
        out_add(p, "<!--", 4);
        out_str(p, (const char *)value);
        out_add(p, "-->", 3);
    }
}

static void on_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
    struct idoc_parser *p = ((xmlParserCtxtPtr)ctx)->_private;
    if (p->idoc_depth == 0 || p->status != IDOC_OK)
        return;
    p->run = RUN_NONE;
    if (p->xmode == X_STREAM) {
        close_tag(p);
        out_add(p, "<?", 2);
        out_str(p, (const char *)target);
        if (data != NULL) {
            out_add(p, " ", 1);
            out_str(p, (const char *)data);
        }
        out_add(p, "?>", 2);
    }
}

/* ------------------------------------------------------------------------ */
/* Raw input bytes */

/* Before a piece goes to libxml2: keep it, for raw slices. */
static void raw_append(struct idoc_parser *p, const char *buf, size_t len)
{
    if (!p->raw_ok)
        return;
    if (buf_add(&p->raw, buf, len) != 0)
        nomem(p);
}

/* After a piece was parsed: forget the bytes no slice can need any more
 * (everything before the open IDOC's '<', or before libxml2's position). */
static void raw_trim(struct idoc_parser *p)
{
    if (p->raw_ok && has_encoder(p))
        p->raw_ok = 0;
    if (!p->raw_ok || p->status != IDOC_OK) {
        p->raw_off += p->raw.n;
        p->raw.n = 0;
        return;
    }
    size_t keep = (p->idoc_depth != 0 && p->xmode == X_RAW) ? p->idoc_at : input_offset(p);
    size_t end = p->raw_off + p->raw.n;
    if (keep > end)
        keep = end;
    if (keep <= p->raw_off)
        return;
    size_t drop = keep - p->raw_off;
    memmove(p->raw.p, p->raw.p + drop, p->raw.n - drop);
    p->raw.n -= drop;
    p->raw_off = keep;
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

/* A pool of parsers per thread (see the design notes). */
struct pool {
    size_t n;
    struct idoc_parser *p[POOL_MAX];
};

static pthread_key_t pool_key;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_key_ok;

static void parser_destroy(struct idoc_parser *p)
{
    if (p->ctxt != NULL) {
        if (p->ctxt->myDoc != NULL) {
            xmlFreeDoc(p->ctxt->myDoc);
            p->ctxt->myDoc = NULL;
        }
        xmlFreeParserCtxt(p->ctxt);
    }
    ids_clear(p);
    free(p->idstk);
    arena_free(&p->arena);
    free(p->fst);
    free(p->sst);
    buf_free(&p->text);
    buf_free(&p->out);
    buf_free(&p->raw);
    free(p);
}

static void pool_destroy(struct pool *pool)
{
    while (pool->n > 0)
        parser_destroy(pool->p[--pool->n]);
    free(pool);
}

static void pool_destructor(void *v)
{
    if (v != NULL)
        pool_destroy(v);
}

static void pool_key_init(void)
{
    pool_key_ok = pthread_key_create(&pool_key, pool_destructor) == 0;
}

/* This thread's pool; created on first use when create is set. */
static struct pool *pool_get(int create)
{
    pthread_once(&pool_once, pool_key_init);
    if (!pool_key_ok)
        return NULL;
    struct pool *pool = pthread_getspecific(pool_key);
    if (pool == NULL && create) {
        pool = calloc(1, sizeof *pool);
        if (pool != NULL && pthread_setspecific(pool_key, pool) != 0) {
            free(pool);
            pool = NULL;
        }
    }
    return pool;
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
    pthread_once(&pool_once, pool_key_init);
}

void idoc_global_cleanup(void)
{
    struct pool *pool = pool_get(0);
    if (pool != NULL) {
        pthread_setspecific(pool_key, NULL);
        pool_destroy(pool);
    }
    xmlCleanupParser();
}

/* libxml2 defaults are per-thread and process-wide: pin what matters. */
static void ctxt_settings(xmlParserCtxtPtr ctxt)
{
    xmlCtxtUseOptions(ctxt, PARSE_OPTIONS);
    ctxt->replaceEntities = 0;
    ctxt->loadsubset = 0;
    ctxt->validate = 0;
    ctxt->recovery = 0;
    ctxt->keepBlanks = 1;
}

static xmlParserCtxtPtr new_ctxt(struct idoc_parser *p)
{
    xmlSAXHandler sax;
    memset(&sax, 0, sizeof sax);
    sax.initialized = XML_SAX2_MAGIC;
    sax.internalSubset = on_internal_subset;
    sax.startElementNs = on_start;
    sax.endElementNs = on_end;
    sax.characters = on_characters;
    sax.ignorableWhitespace = on_characters;
    sax.cdataBlock = on_cdata;
    sax.comment = on_comment;
    sax.processingInstruction = on_pi;
    sax.serror = on_xml_error;

    /* no initial chunk: the encoding is detected from the first 4 bytes fed */
    xmlParserCtxtPtr ctxt = xmlCreatePushParserCtxt(&sax, NULL, NULL, 0, NULL);
    if (ctxt == NULL)
        return NULL;
    ctxt->_private = p;
    ctxt_settings(ctxt);
    p->nm_idoc = xmlDictLookup(ctxt->dict, BAD_CAST "IDOC", -1);
    p->nm_dc40 = xmlDictLookup(ctxt->dict, BAD_CAST "EDI_DC40", -1);
    p->nm_segment = xmlDictLookup(ctxt->dict, BAD_CAST "SEGMENT", -1);
    p->nm_xml = xmlDictLookup(ctxt->dict, BAD_CAST "xml", -1);
    return ctxt;
}

/* The per-document state of a new or recycled parser. */
static void parser_start(struct idoc_parser *p, const struct idoc_limits *limits, idoc_cb cb,
                         void *ud)
{
    if (limits != NULL)
        p->limits = *limits;
    else
        memset(&p->limits, 0, sizeof p->limits);
    p->cb = cb;
    p->ud = ud;
    p->status = IDOC_OK;
    p->err[0] = '\0';
    p->fed = p->started = p->delivered = p->segattrs = 0;
    p->depth = p->idoc_depth = 0;
    p->root_done = p->terminating = p->finished = 0;
    idoc_reset(p);
    ids_clear(p);
    p->out.n = 0;
    p->raw.n = 0;
    p->raw_off = 0;
    p->raw_ok = 1;
    p->idoc_at = 0;
}

struct idoc_parser *idoc_parser_new(const struct idoc_limits *limits, idoc_cb cb, void *ud)
{
    struct pool *pool = pool_get(0);
    struct idoc_parser *p = (pool != NULL && pool->n > 0) ? pool->p[--pool->n] : NULL;
    if (p != NULL) {
        if (xmlCtxtResetPush(p->ctxt, NULL, 0, NULL, NULL) == 0) {
            /* as xmlCreatePushParserCtxt does without a first chunk: the
             * encoding is detected from the first bytes fed */
            p->ctxt->charset = XML_CHAR_ENCODING_NONE;
            /* not reset by xmlCtxtReset; 0 in a new context */
            p->ctxt->progressive = 0;
            p->ctxt->_private = p;
            ctxt_settings(p->ctxt);
        } else {
            parser_destroy(p);
            p = NULL;
        }
    }
    if (p == NULL) {
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return NULL;
        p->ctxt = new_ctxt(p);
        if (p->ctxt == NULL) {
            free(p);
            return NULL;
        }
    }
    parser_start(p, limits, cb, ud);
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
        raw_append(p, buf, (size_t)n);
        if (p->status != IDOC_OK)
            break;
        parse_chunk(p, buf, n, 0);
        p->fed += (size_t)n;
        buf += n;
        len -= (size_t)n;
        check_ctxt(p);
        raw_trim(p);
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
        /* nothing of the input is needed any more */
        p->raw_off += p->raw.n;
        p->raw.n = 0;
    }
    copy_error(p, err, errlen);
    return p->status;
}

size_t idoc_parser_count(const struct idoc_parser *p)
{
    return p != NULL ? p->delivered : 0;
}

/* May this parser's libxml2 context serve the next document? Not after
 * libxml2 itself failed (its state is then its own business), nor with a
 * dictionary grown large. */
static int reusable(const struct idoc_parser *p)
{
    switch (p->status) {
    case IDOC_OK:
    case IDOC_ERR_NOT_IDOC:
    case IDOC_ERR_NO_CONTROL:
    case IDOC_ERR_NO_DOCNUM:
    case IDOC_ERR_LIMIT:
    case IDOC_ERR_CALLBACK:
        break;
    default:
        return 0;
    }
    return p->ctxt != NULL && p->ctxt->dict != NULL && xmlDictSize(p->ctxt->dict) <= DICT_MAX;
}

void idoc_parser_free(struct idoc_parser *p)
{
    if (p == NULL)
        return;
    struct pool *pool = reusable(p) ? pool_get(1) : NULL;
    if (pool != NULL && pool->n < POOL_MAX) {
        /* what the last document left in libxml2 (its input buffer) goes
         * now; xmlCtxtResetPush starts the next one */
        xmlCtxtReset(p->ctxt);
        idoc_reset(p);
        p->cb = NULL;
        p->ud = NULL;
        /* keep what is small; a huge IDoc's buffers go */
        if (p->out.cap > KEEP_MAX)
            buf_free(&p->out);
        if (p->raw.cap > KEEP_MAX)
            buf_free(&p->raw);
        if (p->text.cap > KEEP_MAX)
            buf_free(&p->text);
        if (p->fcap * sizeof *p->fst > KEEP_MAX) {
            free(p->fst);
            p->fst = NULL;
            p->fcap = 0;
        }
        if (p->scap * sizeof *p->sst > KEEP_MAX) {
            free(p->sst);
            p->sst = NULL;
            p->scap = 0;
        }
        p->out.n = p->raw.n = 0;
        pool->p[pool->n++] = p;
        return;
    }
    parser_destroy(p);
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
