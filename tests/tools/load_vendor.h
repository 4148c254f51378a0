/*
 * load_vendor.h — the CREMAS05 vendor IDoc that the load tools post
 * (tests/tools/ingest_load) and that the delivery benchmark's ceiling maps
 * and sends itself (bench/bench_delivery): one template, so the ceiling's
 * requests are the gateway's requests byte for byte.
 *
 * load_vendor_idoc() writes one <IDOC> (no XML declaration, no root) for
 * DOCNUM docnum into out (cap bytes) and returns its length like snprintf.
 * The vendor number is 100000 + docnum % 1000000.
 */
#ifndef MLC_LOAD_VENDOR_H
#define MLC_LOAD_VENDOR_H

#include <stdio.h>

#define LOAD_VENDOR_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CREMAS05>"
#define LOAD_VENDOR_TAIL "</CREMAS05>"

static inline size_t load_vendor_idoc(char *out, size_t cap, unsigned long long docnum)
{
    return (size_t)snprintf(out, cap,
        "<IDOC BEGIN=\"1\"><EDI_DC40 SEGMENT=\"1\"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT>"
        "<DOCNUM>%016llu</DOCNUM><DOCREL>740</DOCREL><STATUS>30</STATUS><DIRECT>1</DIRECT>"
        "<OUTMOD>2</OUTMOD><IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><SNDPOR>SAPLOAD</SNDPOR>"
        "<SNDPRT>LS</SNDPRT><SNDPRN>LOADCLNT100</SNDPRN><RCVPOR>MLCONN</RCVPOR><RCVPRT>LS</RCVPRT>"
        "<RCVPRN>MLCONNECT</RCVPRN><CREDAT>20261128</CREDAT><CRETIM>101500</CRETIM></EDI_DC40>"
        "<E1LFA1M SEGMENT=\"1\"><MSGFN>005</MSGFN><LIFNR>%010llu</LIFNR><NAME1>Load Vendor %llu</NAME1>"
        "<STRAS>Industriestrasse 1</STRAS><ORT01>Walldorf</ORT01><PSTLZ>69190</PSTLZ><LAND1>DE</LAND1>"
        "</E1LFA1M></IDOC>",
        docnum, 100000 + docnum % 1000000, docnum);
}

#endif
