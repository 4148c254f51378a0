#!/usr/bin/env python3
"""Generate realistic ORDERS05 IDoc-XML documents for the ingest benchmark.

    gen_idocs.py OUTDIR [SIZE ...]      SIZE like 6k, 30k (default: 6k 30k)

For each SIZE it writes OUTDIR/orders05_<SIZE>.xml: one purchase order out of
MM (ECC, DOCREL 740) as an XML-HTTP port sends it -- UTF-8 declaration, root
ORDERS05, one <IDOC BEGIN="1">, EDI_DC40, header segments E1EDK01, E1EDK14 x4,
E1EDK03 x3, E1EDKA1 x3 (AG/LF/WE), E1EDK02, E1EDKT1/E1EDKT2 x2, then N
items E1EDP01 (each with E1EDP20, E1EDP19, E1EDP05) and E1EDS01 x2. N is chosen so the file is as close to SIZE as the items allow.
Values follow the IDoc conventions (see README and docs/mapping.md): zero-padded numbers, right-aligned
UPRBS, empty elements, an &amp; entity.

Two placeholders, each exactly as long as the value that replaces it, so a
load generator can splice in unique values without changing Content-Length:
    @@@@DOCNUM@@@@@@   (16 chars) -> EDI_DC40/DOCNUM, zero-padded 16 digits
    @@PONUM@@@         (10 chars) -> PO number (E1EDK01/BELNR, E1EDK02/BELNR)
Every request must get a unique DOCNUM: the gateway dedupes on
MANDT+SNDPRN+DOCNUM and a duplicate skips the commit.

Prints one line per file: "<path> <bytes> <items>".
"""
import os
import sys

DOCNUM_PH = "@@@@DOCNUM@@@@@@"
PONUM_PH = "@@PONUM@@@"
assert len(DOCNUM_PH) == 16 and len(PONUM_PH) == 10

IND = "\t"

MATERIALS = [
    ("000000000010004711", "Oak flooring 3/4in x 5in, prefinished natural", "FTK", "1.85"),
    ("000000000010004712", "Maple engineered plank 1/2in x 7in", "FTK", "2.42"),
    ("000000000010004713", "Underlayment foam 2mm, 100 sqft roll", "ROL", "18.90"),
    ("000000000010004714", "T-moulding oak 78in", "PCE", "24.75"),
    ("000000000010004715", "Hickory hand-scraped 3/4in x 6in &amp; random length", "FTK", "3.15"),
    ("000000000010004716", "Stair nose walnut 78in", "PCE", "39.99"),
    ("000000000010004717", "Vinyl plank click 6mm, grey wash", "FTK", "1.49"),
]


def seg(name, fields, depth, children=()):
    pad = IND * depth
    out = [f'{pad}<{name} SEGMENT="1">\n']
    for k, v in fields:
        if v is None:
            out.append(f"{pad}{IND}<{k}/>\n")
        else:
            out.append(f"{pad}{IND}<{k}>{v}</{k}>\n")
    for c in children:
        out.append(c)
    out.append(f"{pad}</{name}>\n")
    return "".join(out)


def control():
    f = [
        ("TABNAM", "EDI_DC40"), ("MANDT", "100"), ("DOCNUM", DOCNUM_PH), ("DOCREL", "740"),
        ("STATUS", "30"), ("DIRECT", "1"), ("OUTMOD", "2"), ("IDOCTYP", "ORDERS05"),
        ("MESTYP", "ORDERS"), ("SNDPOR", "SAPEQ2"), ("SNDPRT", "LS"), ("SNDPRN", "EQ2CLNT100"),
        ("RCVPOR", "MLCONNECT"), ("RCVPRT", "LS"), ("RCVPFC", "LS"), ("RCVPRN", "MLCONNECT"),
        ("CREDAT", "20240611"), ("CRETIM", "143320"), ("SERIAL", "20240611143320"),
    ]
    return seg("EDI_DC40", f, 2)


def header():
    s = []
    s.append(seg("E1EDK01", [
        ("ACTION", "000"), ("CURCY", "USD"), ("HWAER", "USD"), ("WKURS", "1.00000"),
        ("ZTERM", "NT30"), ("BSART", "ZMSP"), ("BELNR", PONUM_PH), ("NTGEW", "35708.160"),
        ("BRGEW", "35708.160"), ("GEWEI", "LBR"), ("RECIPNT_NO", "0000100131"), ("FKTYP", None),
    ], 2))
    for q, o in (("009", "100"), ("011", "1000"), ("013", "ZMSP"), ("014", "1000")):
        s.append(seg("E1EDK14", [("QUALF", q), ("ORGID", o)], 2))
    for q, d in (("012", "20240611"), ("011", "20240611"), ("002", "20240625")):
        s.append(seg("E1EDK03", [("IDDAT", q), ("DATUM", d)], 2))
    s.append(seg("E1EDKA1", [
        ("PARVW", "AG"), ("PARTN", "1000"), ("NAME1", "Purchasing Org 1000"),
        ("TELF1", "757-259-4280"), ("BNAME", "J. MILLER"), ("PAORG", "1000"), ("ORGTX", "Central Purchasing"),
        ("PAGRU", "100"),
    ], 2))
    s.append(seg("E1EDKA1", [
        ("PARVW", "LF"), ("PARTN", "0000100131"), ("LIFNR", "0000100131"),
        ("NAME1", "Appalachian Hardwood Mills &amp; Co."), ("NAME2", "Export Division"),
        ("STRAS", "4411 Industrial Park Rd"), ("ORT01", "Beckley"), ("PSTLZ", "25801"),
        ("LAND1", "US"), ("TELF1", "304-555-0142"), ("SPRAS", "E"), ("REGIO", "WV"),
        ("SPRAS_ISO", "EN"),
    ], 2))
    s.append(seg("E1EDKA1", [
        ("PARVW", "WE"), ("PARTN", "9444"), ("NAME1", "DC Toano"), ("STRAS", "3000 John Deere Rd"),
        ("ORT01", "Toano"), ("PSTLZ", "23168"), ("LAND1", "US"), ("SPRAS", "E"), ("REGIO", "VA"),
    ], 2))
    s.append(seg("E1EDK02", [("QUALF", "001"), ("BELNR", PONUM_PH), ("DATUM", "20240611")], 2))
    s.append(seg("E1EDKT1", [("TDID", "F01"), ("TSSPRAS", "E"), ("TSSPRAS_ISO", "EN")], 2, [
        seg("E1EDKT2", [("TDLINE", "Deliver between 07:00 and 15:00, dock 4. Call ahead."),
                        ("TDFORMAT", "*")], 3),
        seg("E1EDKT2", [("TDLINE", "Pallets max 48in high; shrink-wrapped; labels on two sides."),
                        ("TDFORMAT", "*")], 3),
    ]))
    return "".join(s)


def item(i):
    matnr, text, unit, price = MATERIALS[i % len(MATERIALS)]
    qty = 1000 + (i * 737) % 9000
    menge = f"{qty}.000"
    netwr = f"{qty * float(price):.2f}"
    return seg("E1EDP01", [
        ("POSEX", f"{(i + 1) * 10:05d}"), ("ACTION", "001"), ("PSTYP", "0"), ("MENGE", menge),
        ("MENEE", unit), ("BMNG2", menge), ("PMENE", unit), ("VPREI", price), ("PEINH", "1"),
        ("NETWR", netwr), ("NTGEW", f"{qty * 1.81:.3f}"), ("GEWEI", "LBR"), ("MATKL", "111408"),
        ("BPUMN", "1"), ("BPUMZ", "1"), ("BRGEW", f"{qty * 1.81:.3f}"), ("WERKS", "9444"),
        ("LGORT", "1000"),
    ], 2, [
        seg("E1EDP20", [("WMENG", menge), ("AMENG", "0.000"), ("EDATU", "20240625"), ("EZEIT", "000000")], 3),
        seg("E1EDP19", [("QUALF", "001"), ("IDTNR", matnr), ("KTEXT", text)], 3),
        seg("E1EDP05", [("ALCKZ", "+"), ("KSCHL", "PB00"), ("KOTXT", "Gross Price"), ("BETRG", netwr),
                        ("KRATE", price), ("UPRBS", "       1"), ("MEAUN", unit), ("MWSKZ", "I0"),
                        ("KOEIN", "USD")], 3),
    ])


def document(nitems):
    items = "".join(item(i) for i in range(nitems))
    total = sum(1000 + (i * 737) % 9000 for i in range(nitems))
    summary = (seg("E1EDS01", [("SUMID", "001"), ("SUMME", str(nitems))], 2) +
               seg("E1EDS01", [("SUMID", "002"), ("SUMME", f"{total * 1.9:.2f}"), ("SUNIT", "USD")], 2))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<ORDERS05>\n' + IND + '<IDOC BEGIN="1">\n' +
            control() + header() + items + summary + IND + "</IDOC>\n</ORDERS05>\n")


def parse_size(s):
    s = s.lower()
    mult = 1024 if s.endswith("k") else 1
    return int(s.rstrip("k")) * mult, s


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for arg in (sys.argv[2:] or ["6k", "30k"]):
        target, label = parse_size(arg)
        best = None
        for n in range(0, 2000):
            d = document(n).encode("utf-8")
            if best is None or abs(len(d) - target) < abs(len(best[1]) - target):
                best = (n, d)
            if len(d) > target:
                break
        n, data = best
        path = os.path.join(out, f"orders05_{label}.xml")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path} {len(data)} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
