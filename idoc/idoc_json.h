/*
 * idoc_json — one IDoc as the JSON object of `ml-connector parse`
 * (CONTRACT.md):
 *
 *   {"control":  {"TABNAM": "EDI_DC40", "DOCNUM": "...", ...},
 *    "segments": [{"segment": "E1LFA1M", "fields": {"LIFNR": "...", ...},
 *                  "children": [ ...same shape... ]}, ...]}
 *
 * Every EDI_DC40 field as a string, as sent; fields and segments in document
 * order; values exactly as in the model (UTF-8, entities resolved, blanks
 * kept, "" for an empty element); Z-segments and "_-" names as in the XML.
 * The root (basic type / extension) name is not part of the object: it is
 * doc->root. A name repeated within one segment (not seen in SAP output) is
 * repeated as a key, in order.
 */
#ifndef MLC_IDOC_JSON_H
#define MLC_IDOC_JSON_H

#include <cjson/cJSON.h>

#include "idoc/idoc.h"

/* Returns a new cJSON object (the caller cJSON_Delete()s it), or NULL when
 * doc is NULL or memory runs out. Safe to call from the idoc callback (it
 * copies every string). */
cJSON *idoc_json(const struct idoc *doc);

#endif
