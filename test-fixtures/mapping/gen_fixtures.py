# Writes the golden-test IDoc fixtures of test-fixtures/mapping/ (the XML
# files are checked in; rerun this after changing it, then regenerate the
# expected *.ops.json with MLC_GOLDEN_UPDATE=1 build/tests/test_mapping_golden
# and review the diff). Usage: python3 test-fixtures/mapping/gen_fixtures.py
import os
OUT = os.path.dirname(os.path.abspath(__file__))

def esc(v):
    return v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

def seg(name, fields=(), children=(), ind=4):
    pad = " " * ind
    out = [f'{pad}<{name} SEGMENT="1">']
    for k, v in fields:
        if v is None:
            out.append(f"{pad}  <{k}/>")
        else:
            out.append(f"{pad}  <{k}>{esc(v)}</{k}>")
    for c in children:
        out.append(c(ind + 2))
    out.append(f"{pad}</{name}>")
    return "\n".join(out)

def S(name, *fields, kids=()):
    return lambda ind: seg(name, fields, kids, ind)

def control(docnum, idoctyp, mestyp, cimtyp="", credat="20240311", cretim="101500", sndprn="PR1CLNT100"):
    f = [("TABNAM", "EDI_DC40"), ("MANDT", "100"), ("DOCNUM", docnum), ("DOCREL", "750"), ("STATUS", "30"),
         ("DIRECT", "1"), ("OUTMOD", "2"), ("IDOCTYP", idoctyp), ("CIMTYP", cimtyp if cimtyp else None),
         ("MESTYP", mestyp), ("SNDPOR", "SAPPR1"), ("SNDPRT", "LS"), ("SNDPRN", sndprn),
         ("RCVPOR", "MLCXMLHTTP"), ("RCVPRT", "LS"), ("RCVPFC", "LS"), ("RCVPRN", "MLCONNECT"),
         ("CREDAT", credat), ("CRETIM", cretim), ("SERIAL", credat + cretim)]
    return S("EDI_DC40", *f)

def idoc(ctl, segs):
    return lambda: "\n".join(['  <IDOC BEGIN="1">', ctl(4)] + [s(4) for s in segs] + ["  </IDOC>"])

def write(name, root, idocs, encoding="UTF-8", decl=True):
    body = "\n".join(i() for i in idocs)
    text = (f'<?xml version="1.0" encoding="{encoding}"?>\n' if decl else "") + f"<{root}>\n{body}\n</{root}>\n"
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(text.encode("latin-1" if encoding.upper() == "ISO-8859-1" else "utf-8"))

D = lambda n: "00000000300%05d" % n

# ---------------------------------------------------------------- vendors
def lfa1(lifnr, name1, name2=None, extra=(), kids=(), msgfn="005", kunnr=None, loevm=None):
    f = [("MSGFN", msgfn), ("LIFNR", lifnr), ("ANRED", "Company"), ("ERDAT", "20190514"), ("ERNAM", "MKOWALSKI"),
         ("KTOKK", "LIEF")]
    if kunnr is not None: f.append(("KUNNR", kunnr))
    f += [("LAND1", "DE"), ("LOEVM", loevm), ("NAME1", name1)]
    if name2 is not None: f.append(("NAME2", name2))
    f += list(extra)
    return S("E1LFA1M", *f, kids=kids)

def lfb1(zterm, bukrs="1000"):
    return S("E1LFB1M", ("MSGFN", "005"), ("LIFNR", None), ("BUKRS", bukrs), ("AKONT", "0000160000"), ("ZTERM", zterm),
             ("ZWELS", "U"))

def knvk(parnr, namev, name1, telf1=None, abtnr="0003", pafkt="02"):
    f = [("MSGFN", "005"), ("PARNR", parnr), ("NAMEV", namev), ("NAME1", name1), ("ABTNR", abtnr), ("PAFKT", pafkt)]
    if telf1 is not None: f.append(("TELF1", telf1))
    f += [("UEPAR", "000000"), ("SPNAM", None)]
    return S("E1KNVKM", *f)

ADDR = [("ORT01", "Stuttgart"), ("PSTLZ", "70565"), ("REGIO", "08"), ("SORTL", "HOFFMANN"), ("SPRAS", "D"),
        ("STRAS", "Industriestrasse 42"), ("TELF1", "0711 7820-0"), ("TELFX", "0711 7820-199")]

write("cremas03_vendor.xml", "CREMAS03", [idoc(control(D(1), "CREMAS03", "CREMAS"), [
    lfa1("0000100301", "Becker Stahlhandel", "GmbH", extra=[("ORT01", "Duisburg"), ("PSTLZ", "47051"), ("REGIO", "05"),
         ("STRAS", "Hafenstrasse 7"), ("TELF1", "0203 99120")],
         kids=[lfb1("0002"), lfb1("0001", "2000"), S("E1LFM1M", ("EKORG", "1000"), ("WAERS", "EUR"))])])])

write("cremas05_vendor_contacts.xml", "CREMAS05", [idoc(control(D(2), "CREMAS05", "CREMAS"), [
    lfa1("100310", "Hoffmann Industriebedarf", "GmbH & Co. KG", kunnr="", extra=ADDR,
         kids=[lfb1("ZB30"), knvk("0000310001", "Sabine", "Krause", "0711 7820-131"),
               knvk("310002", "Jörg", "Weiß", None), knvk("0000310003", "", "Einkauf Zentral", "0711 7820-100")])])])

write("cremas06_deleted.xml", "CREMAS06", [idoc(control(D(3), "CREMAS06", "CREMAS"), [
    lfa1("0000100777", "Altlieferant Nord", None, loevm="X", extra=[("ORT01", "Kiel"), ("SPERR", "X"), ("SPERM", "X")],
         kids=[lfb1("0001")])])])

write("cremas05_msgfn003.xml", "CREMAS05", [idoc(control(D(4), "CREMAS05", "CREMAS"), [
    lfa1("0000100778", "Geloescht AG", None, msgfn="003", extra=[("ORT01", "Bremen")])])])

# reduced message type: '/' = no change; blanks and missing fields = null
write("cremas05_reduced.xml", "CREMAS05", [idoc(control(D(5), "CREMAS05", "ZCREMAS_RED"), [
    lfa1("0000100310", "Hoffmann Industriebedarf", "/", loevm="/", extra=[("ORT01", ""), ("PSTLZ", "/"),
         ("REGIO", "   "), ("STRAS", "/"), ("TELF1", "0711 7820-0"), ("TELFX", "/")],
         kids=[S("E1LFB1M", ("MSGFN", "005"), ("BUKRS", "1000"), ("ZTERM", "/"))])])])

write("cremas05_latin1.xml", "CREMAS05", [idoc(control(D(6), "CREMAS05", "CREMAS"), [
    lfa1("0000100405", "Müller & Söhne Gärtnerei", "Groß- und Einzelhandel", extra=[("ORT01", "München"),
         ("PSTLZ", "80331"), ("REGIO", "09"), ("STRAS", "Hauptstraße 5"), ("TELF1", "089 123456")],
         kids=[knvk("0000405001", "Jürgen", "Öztürk", "089 123456-12")])])], encoding="ISO-8859-1")

write("cremas05_truncation.xml", "CREMAS05", [idoc(control(D(7), "CREMAS05", "CREMAS"), [
    lfa1("0000100406", "Ä" * 100, "Öß" * 40, extra=[("ORT01", "Bad Münstereifel-" + "Ü" * 80), ("PSTLZ", "D-53902-123456789012"),
         ("REGIO", "05"), ("STRAS", "x" * 255), ("TELF1", "+49 " + "1" * 60)],
         kids=[knvk("0000406001", "Maximilian-Alexander-Friedrich-Wilhelm-Ferdinand-Karl", "von und zu " + "é" * 45)])])])

# extension with a Z-segment (root = extension name, custom message type)
write("cremas05_zseg.xml", "ZCREMAS05EXT", [idoc(control(D(8), "CREMAS05", "/XYZ/VFI_CREMAS", cimtyp="ZCREMAS05EXT"), [
    lfa1("0000100500", "Nordholz Logistik", "KG", extra=[("ORT01", "Hamburg"), ("PSTLZ", "20457"), ("STRAS", "Kehrwieder 2")],
         kids=[S("Z1LFA1M", ("ZZRATING", "A+"), ("ZZCERT", "ISO 9001"), ("ZZAUDIT", "20230915")), lfb1("0001")])])])

write("cremas06_packet.xml", "CREMAS06", [
    idoc(control(D(9), "CREMAS06", "CREMAS", cretim="101500"), [lfa1("0000100601", "Alpha Metall", None, extra=[("ORT01", "Essen")])]),
    idoc(control(D(10), "CREMAS06", "CREMAS", cretim="101501"), [lfa1("0000100602", "Beta Kunststoff", "AG", extra=[("ORT01", "Köln")],
         kids=[knvk("0000602001", "Petra", "Lang", "0221 555")])]),
    idoc(control(D(11), "CREMAS06", "CREMAS", cretim="101502"), [lfa1("DP09", "Gamma Dienstleistungen", None, extra=[("ORT01", "Bonn")])]),
])

# ---------------------------------------------------------------- customers
def kna1(kunnr, name1, name2=None, extra=(), kids=(), msgfn="005", lifnr=None, loevm=None):
    f = [("MSGFN", msgfn), ("KUNNR", kunnr), ("ANRED", "Firma"), ("KTOKD", "0001"), ("LAND1", "DE")]
    if lifnr is not None: f.append(("LIFNR", lifnr))
    f += [("LOEVM", loevm), ("NAME1", name1)]
    if name2 is not None: f.append(("NAME2", name2))
    f += list(extra)
    return S("E1KNA1M", *f, kids=kids)

def knb1(zterm, bukrs="1000"):
    return S("E1KNB1M", ("MSGFN", "005"), ("KUNNR", None), ("BUKRS", bukrs), ("AKONT", "0000140000"), ("ZTERM", zterm))

def knvv():
    return S("E1KNVVM", ("MSGFN", "005"), ("VKORG", "1000"), ("VTWEG", "10"), ("SPART", "00"), ("KDGRP", "01"),
             ("WAERS", "EUR"), ("ZTERM", "0004"),
             kids=[S("E1KNVPM", ("MSGFN", "005"), ("PARVW", "AG"), ("KUNN2", "0000200145"))])

write("debmas05_customer.xml", "DEBMAS05", [idoc(control(D(20), "DEBMAS05", "DEBMAS"), [
    kna1("200210", "Schneider Bau", "GmbH", extra=[("ORT01", "Leipzig"), ("PSTLZ", "04109"), ("REGIO", "14"),
         ("STRAS", "Markt 1"), ("TELF1", "0341 22334")], kids=[knvv(), knb1("0001"), knb1("0030", "2000")])])])

write("debmas06_contacts.xml", "DEBMAS06", [idoc(control(D(21), "DEBMAS06", "DEBMAS"), [
    kna1("0000200220", "Richter Elektro", None, extra=[("ORT01", "Dresden"), ("PSTLZ", "01067"), ("TELF1", "0351 7788")],
         kids=[knvv(), knb1("0002"), knvk("0000152955", "Anna", "Vogel", "0351 7788-20"),
               knvk("152956", "", "Wareneingang", None), knvk("0000152957", "Lars", "Becker", "/")])])])

write("debmas07_linked_vendor.xml", "DEBMAS07", [idoc(control(D(22), "DEBMAS07", "DEBMAS"), [
    kna1("0000200145", "Hoffmann Industriebedarf", "GmbH & Co. KG", lifnr="0000100310", extra=ADDR,
         kids=[knb1("0001")])])])

write("debmas06_deleted.xml", "DEBMAS06", [idoc(control(D(23), "DEBMAS06", "DEBMAS"), [
    kna1("0000200299", "Insolvent KG", None, loevm="X", extra=[("ORT01", "Halle")])])])

write("debmas07_extension.xml", "ZDEBMAS07", [idoc(control(D(24), "DEBMAS07", "ZDEBMAS", cimtyp="ZDEBMAS07"), [
    kna1("0000200230", "Krüger Handel", None, extra=[("ORT01", "Rostock")],
         kids=[S("Z1KNA1M", ("ZZSEGMENT", "KEY")), knb1("0001")])])], decl=False)

# link scenarios: vendor 100900 <-> customer 200900
write("link_cremas_names_customer.xml", "CREMAS05", [idoc(control(D(30), "CREMAS05", "CREMAS"), [
    lfa1("0000100900", "Wagner Maschinenbau", "GmbH", kunnr="200900", extra=[("ORT01", "Ulm"), ("STRAS", "Donaustrasse 1")],
         kids=[knvk("0000900001", "Ute", "Wagner", "0731 1")])])])
write("link_debmas_blank.xml", "DEBMAS06", [idoc(control(D(31), "DEBMAS06", "DEBMAS"), [
    kna1("0000200900", "Wagner Maschinenbau", "GmbH", lifnr="", extra=[("ORT01", "Ulm"), ("STRAS", "Donaustrasse 1")],
         kids=[knb1("0001")])])])
write("link_cremas_blank.xml", "CREMAS05", [idoc(control(D(32), "CREMAS05", "CREMAS"), [
    lfa1("0000100900", "Wagner Maschinenbau", "GmbH", kunnr="", extra=[("ORT01", "Ulm-Donautal"), ("STRAS", "Donaustrasse 1")])])])
write("link_debmas_names_vendor.xml", "DEBMAS06", [idoc(control(D(33), "DEBMAS06", "DEBMAS"), [
    kna1("0000200900", "Wagner Maschinenbau", "GmbH", lifnr="100900", extra=[("ORT01", "Ulm"), ("STRAS", "Donaustrasse 1")])])])

# ---------------------------------------------------------------- purchase orders
def k01(belnr=None, curcy="EUR", action=None, recipnt=None, extra=()):
    f = []
    if action is not None: f.append(("ACTION", action))
    f += [("CURCY", curcy), ("HWAER", "EUR"), ("WKURS", "1.00000"), ("ZTERM", "0001"), ("BSART", "NB")]
    if belnr is not None: f.append(("BELNR", belnr))
    if recipnt is not None: f.append(("RECIPNT_NO", recipnt))
    return S("E1EDK01", *(f + list(extra)))

def k14(q, v): return S("E1EDK14", ("QUALF", q), ("ORGID", v))
def k03(q, d): return S("E1EDK03", ("IDDAT", q), ("DATUM", d), ("UZEIT", "000000"))
def ka1(parvw, partn=None, lifnr=None, name1=None):
    f = [("PARVW", parvw)]
    if partn is not None: f.append(("PARTN", partn))
    if lifnr is not None: f.append(("LIFNR", lifnr))
    if name1 is not None: f.append(("NAME1", name1))
    return S("E1EDKA1", *f)
def k02(q, b): return S("E1EDK02", ("QUALF", q), ("BELNR", b), ("DATUM", "20240311"))
def p01(posex, menge, vprei, peinh="1", netwr=None, matnr=None, action=None, kids=(), extra=()):
    f = [("POSEX", posex)]
    if action is not None: f.append(("ACTION", action))
    f += [("PSTYP", "0"), ("MENGE", menge), ("MENEE", "ST"), ("BMNG2", menge), ("PMENE", "ST")]
    if vprei is not None: f.append(("VPREI", vprei))
    if peinh is not None: f.append(("PEINH", peinh))
    if netwr is not None: f.append(("NETWR", netwr))
    f += [("MATKL", "001"), ("WERKS", "1000")]
    if matnr is not None: f.append(("MATNR", matnr))
    return S("E1EDP01", *(f + list(extra)), kids=kids)
def p20(edatu, wmeng="1"): return S("E1EDP20", ("WMENG", wmeng), ("AMENG", wmeng), ("EDATU", edatu), ("EZEIT", "000000"))
def p19(q, idtnr=None, ktext=None):
    f = [("QUALF", q)]
    if idtnr is not None: f.append(("IDTNR", idtnr))
    if ktext is not None: f.append(("KTEXT", ktext))
    return S("E1EDP19", *f)
def s01(q, v, unit=None):
    f = [("SUMID", q), ("SUMME", v)]
    if unit: f.append(("SUNIT", unit))
    return S("E1EDS01", *f)

write("orders05_po.xml", "ORDERS05", [idoc(control(D(40), "ORDERS05", "ORDERS"), [
    k01("4500017321"), k14("014", "1000"), k14("009", "100"), k14("013", "NB"), k03("012", "20240311"), k03("002", "20240415"),
    ka1("AG", "1000", name1="Muster AG Einkauf"), ka1("LF", "0000100310", name1="Hoffmann Industriebedarf"),
    ka1("WE", "1000"), k02("001", "4500017321"),
    p01("00010", "5000.000", "18.00", "100", "900.00", "000000000010004711",
        kids=[p20("20240402", "5000.000"), p19("001", "000000000010004711", "Hex bolt M12x60 DIN 933 8.8 zinc"),
              p19("002", "SUP-4711")]),
    p01("00020", "5000.000", "7.00", "100", "350.00", "000000000010004712",
        kids=[p20("20240405", "5000.000"), p19("001", "000000000010004712", "Hex nut M12 DIN 934 8 zinc")]),
    p01("00030", "10000.000", "21.50", "1000", "215.00", "000000000010004713",
        kids=[p20("20240402", "10000.000"), p19("001", "000000000010004713", "Washer A13 DIN 125")]),
    s01("001", "3"), s01("002", "1465.00", "EUR")])])

write("orders05_peinh.xml", "ORDERS05", [idoc(control(D(41), "ORDERS05", "ORDERS"), [
    k01("4500017322"), k03("002", "20240501"), ka1("LF", "100310"),
    p01("00010", "1.000", "100.50", "100", "1.01", kids=[p19("001", ktext="Price unit 100: 1.005 rounds up")]),
    p01("00020", "3.000", "100.49", "100", "3.01", kids=[p19("001", ktext="Price unit 100: 1.0049 rounds down")]),
    p01("00030", "7.000", "1234.5", "1000", "8.64", kids=[p19("001", ktext="Price unit 1000")]),
    p01("00040", "2.000", "19.99", None, "39.98", kids=[p19("001", ktext="No price unit (blank means 1)")]),
    p01("00050", "2.000", "19.99", "0", "39.98", kids=[p19("001", ktext="Price unit 0 means 1")]),
    p01("00060", "3.000", "10.00", "3", "10.00", kids=[p19("001", ktext="10/3 = 3.333 -> 3.33")]),
    p01("00070", "1.000", None, "1", "0", kids=[p19("001", ktext="No price")]),
    s01("002", "103.63")])])

write("orders05_trailing_minus.xml", "ORDERS05", [idoc(control(D(42), "ORDERS05", "ORDERS"), [
    k01("4500017323"), ka1("LF", "100310"),
    p01("00010", "10.000", "25.00", "1", "250.00", matnr="000000000010005001", kids=[p20("20240610")]),
    p01("00020", "1.000", "12.50-", "1", "12.50-", matnr="000000000010009999", kids=[p20("20240603")]),
    p01("00030", "2.000-", "4.10", "1", "-8.20", matnr="000000000010005002", kids=[p20("20240612")])])])

write("orders05_fallbacks.xml", "ORDERS05", [idoc(control(D(43), "ORDERS05", "ORDERS"), [
    k01(None, curcy="USD"), k02("002", "V-88812"), k02("001", "4500017324"),
    ka1("AG", "1000"), ka1("LF", lifnr="100311"),
    p01("00010", "1", "10", kids=[p20("20240720"), p20("20240705"), p19("001", idtnr="000000000010007001")]),
    p01("00020", "1", "10", matnr="MAT-7002", kids=[p20("20240710"), p19("002", ktext="Supplier text is not used")]),
    p01("00030", "1", "10", kids=[p20("00000000")]),
    p01("00040", "1", "10", kids=[p19("001", ktext="   ")])])])

write("orders05_recipnt.xml", "ORDERS05", [idoc(control(D(44), "ORDERS05", "ORDERS"), [
    k01("4500017325", curcy="", recipnt="100312"), ka1("WE", "1000"),
    p01("00010", "4", "2.50", netwr="10.00", kids=[p19("001", ktext="Gloves")])])])

write("ordchg_action.xml", "ORDERS05", [idoc(control(D(45), "ORDERS05", "ORDCHG", cretim="143000"), [
    k01("4500017321", action="004"), k03("002", "20240422"), ka1("LF", "0000100310"),
    p01("00020", "6000.000", "7.00", "100", "420.00", "000000000010004712", action="002",
        kids=[p20("20240405", "6000.000"), p19("001", "000000000010004712", "Hex nut M12 DIN 934 8 zinc")]),
    p01("00030", "10000.000", "21.50", "1000", "215.00", "000000000010004713", action="003"),
    p01("00040", "200.000", "0.95", "1", "190.00", "000000000010004714", action="001",
        kids=[p20("20240430", "200.000"), p19("001", "000000000010004714", "Spring washer A12")])])])

write("ordchg_no_summary.xml", "ORDERS04", [idoc(control(D(46), "ORDERS04", "ORDCHG"), [
    k01("4500017326", action="003"), ka1("LF", "100310"),
    p01("00010", "12.000", "5.00", "1", "60.00", action="002", kids=[p20("20240801"), p19("001", ktext="Cable tie 200mm")]),
    p01("00020", "1.000", "3.00", "1", "3.00", action="003")])])

write("orders05_reversed.xml", "ORDERS05", [idoc(control(D(47), "ORDERS05", "ORDERS", cretim="160000"), [
    k01("4500017327", action="001"), k03("002", "20240901"), ka1("LF", "100310"),
    p01("00010", "100.000", "9.90", "1", "990.00", kids=[p19("001", ktext="Safety goggles")]),
    s01("002", "990.00")])])

for tgt, n in (("salesorder", 48), ("quote", 49)):
    write(f"orders05_{tgt}.xml", "ORDERS05", [
        idoc(control(D(n * 10), "ORDERS05", "ORDERS"), [
            k01(f"45000{n}001"), k03("002", "20241001"), ka1("LF", "100310"),
            p01("00010", "2.000", "150.00", "1", "300.00", kids=[p19("001", ktext="Pump housing")]),
            p01("00020", "1.000", "80.00", "1", "80.00", action="003")]),
        idoc(control(D(n * 10 + 1), "ORDERS05", "ORDERS", cretim="170000"), [
            k01(f"45000{n}002", action="001"), ka1("LF", "100310"),
            p01("00010", "1.000", "5.00", "1", "5.00", kids=[p19("001", ktext="Seal kit")])])])

write("orders05_zseg.xml", "_-ACME_-ORDERS05_EXT", [idoc(control(D(50), "ORDERS05", "ORDERS", cimtyp="/ACME/ORDERS05_EXT"), [
    k01("4500017330", extra=()), ka1("LF", "100310"),
    p01("00010", "1", "12.00", kids=[S("_-ACME_-Z1EDP01", ("ZZCOLOR", "RAL 5015"), ("ZZFINISH", "matt")),
                                     p19("001", ktext="Shelf bracket")]),
    p01("00020", "2", "12.00", kids=[p19("001", ktext="Shelf bracket, no colour")])])])

write("orders05_special_keys.xml", "ORDERS05", [idoc(control(D(51), "ORDERS05", "ORDERS"), [
    k01("PO/2024+17 A&B"), ka1("LF", "ab:c?d"),
    p01("10/1", "1", "1", kids=[p19("001", ktext="Slash in POSEX")]),
    p01("00020", "1", "1", action="003")])])

write("orders03_packet.xml", "ORDERS03", [
    idoc(control(D(52), "ORDERS03", "ORDERS"), [k01("4500017331"), ka1("LF", "100310"),
                                               p01("00010", "1", "5", kids=[p19("001", ktext="A")])]),
    idoc(control(D(53), "ORDERS03", "ORDERS"),
         [k01("4500017332", curcy="USD"), ka1("LF", "100311"), p01("00010", "1", "5", kids=[p19("001", ktext="B")])]),
    idoc(control(D(54), "ORDERS03", "ORDERS"), [k01("4500017333"), ka1("LF", "100312"),
                                               p01("00010", "1", "5", kids=[p19("001", ktext="C")])]),
])

write("orders05_ordrsp.xml", "ORDERS05", [idoc(control(D(55), "ORDERS05", "ORDRSP"), [
    k01("0000012345"), ka1("AG", "100310"), p01("000010", "1", "5")])])

write("orders05_bad_quantity.xml", "ORDERS05", [
    idoc(control(D(56), "ORDERS05", "ORDERS"), [k01("4500017334"), ka1("LF", "100310"),
                                               p01("00010", "1,5", "5"), p01("00020", "1", "5")]),
    idoc(control(D(57), "ORDERS05", "ORDERS"), [k01("4500017335"), ka1("LF", "100310"),
                                               p01("00010", "1", "5"), p01("00020", "1", "5", kids=[p20("20241332")])]),
    idoc(control(D(58), "ORDERS05", "ORDERS"), [k01("4500017336"), ka1("LF", "100310"), p01("00010", "1", "5")]),
])
