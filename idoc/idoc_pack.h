/*
 * idoc_pack — the IDoc model (struct idoc) as a compact binary value.
 *
 * Why: ingest already holds the parsed model when it stores an IDoc; delivery
 * needs the same model again, and re-parsing the stored XML with libxml2 was
 * the largest single cost of delivering a record (about a third of the
 * gateway's CPU per record). So ingest stores the model packed next to the
 * XML, and delivery unpacks it: no XML parse, strings used in place.
 *
 * The packed value is a cache of the XML, never its replacement: the XML
 * stays the record of what SAP sent, and a value this code does not
 * recognise (another version, damaged, absent) is simply not used — the
 * caller parses the XML instead (idoc_unpack returns -1).
 *
 * Encoding, version 2 (counts and lengths unsigned LEB128 varints unless
 * said otherwise; every string is its length, its bytes and a NUL, so
 * unpacked strings point into the value itself):
 *   byte 'I', byte 2 (version)
 *   u32 LE nseg_total, u32 LE nfield_total (every segment at any depth;
 *                               every field, control fields included;
 *                               fixed size so that the packer can fill
 *                               them in after its single pass)
 *   str root, docnum, mandt, sndprn, sndpor, idoctyp, cimtyp, mestyp,
 *       credat, cretim         (the convenience copies, as the parser trimmed them)
 *   ncontrol, (str name, str value) x ncontrol
 *   nsegments, segment x nsegments
 *   segment := str name, nfields, (str name, str value) x nfields,
 *              nchildren, segment x nchildren
 *   nothing after the last segment.
 * doc->xml and doc->index are not packed (the XML is stored on its own).
 *
 * Threads: pure functions; any thread.
 */
#ifndef MLC_IDOC_PACK_H
#define MLC_IDOC_PACK_H

#include <stddef.h>

#include "idoc/idoc.h"

/* Pack doc into buf (cap bytes; buf may be NULL with cap 0) in one pass and
 * return the size of the whole value. When that is more than cap, buf holds
 * nothing usable: call again with a buffer of that size. 0 when the model is
 * deeper than the parser's nesting limit (a parsed model never is) or holds
 * more than 2^32 - 1 segments or fields. May be called from the parser's
 * callback (doc is only read). */
size_t idoc_pack_to(const struct idoc *doc, void *buf, size_t cap);

/* Bytes idoc_pack needs for doc (idoc_pack_to with no buffer). */
size_t idoc_pack_size(const struct idoc *doc);

/* Write doc into buf, which has exactly idoc_pack_size(doc) bytes (len must
 * be that). Returns the bytes written, or 0 when len is wrong. May be called
 * from the parser's callback (doc is only read). */
size_t idoc_pack(const struct idoc *doc, void *buf, size_t len);

/* Unpack a value written by idoc_pack(_to). On success returns 0 and *out: a
 * model whose arrays are one allocation owned by the caller (idoc_unpack_free)
 * and whose strings point INTO buf, which must stay unchanged and alive as
 * long as *out is used. out->xml is NULL, xml_len and index 0 (set them if
 * you have the XML). Returns -1 with a one-line reason in err (may be NULL)
 * when the value is not a version-2 packed model or is damaged (every count,
 * length and terminator is checked against len; nothing is read outside
 * buf), and -2 when memory runs out. */
int idoc_unpack(const void *buf, size_t len, struct idoc **out, char *err, size_t errlen);
void idoc_unpack_free(struct idoc *doc);

#endif
