#!/usr/bin/env bash
# Per-key ordering: 20 successive versions of one vendor posted quickly end
# with the last one in Dataverse, and the fake's write log shows no older
# version written after a newer one. A late resend of an older IDoc (BD87)
# is recorded as superseded and not written.
. "$(dirname "$0")/lib.sh"

fake_start --latency-ms 30
SCHEDULE=continuous DELIVERY='"workers": 6, "batch_size": 5' mlc_config 64 8
mlc_start
version() { # version N DOCNUM -> file
  cat >"$T/v$1.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT>
<DOCNUM>$2</DOCNUM><IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><SNDPOR>SAPPR1</SNDPOR>
<SNDPRT>LS</SNDPRT><SNDPRN>PR1CLNT100</SNDPRN><CREDAT>20261128</CREDAT><CRETIM>1000$(printf %02d "$1")</CRETIM></EDI_DC40>
<E1LFA1M SEGMENT="1"><MSGFN>005</MSGFN><LIFNR>0000424242</LIFNR><NAME1>Version $1</NAME1><ORT01>City $1</ORT01>
<LAND1>DE</LAND1></E1LFA1M></IDOC></CREMAS05>
XML
}
# Other vendors in between, so batches mix keys.
: >"$T/acked"
"$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 2 5 4000000 "$T/acked" 1 40 >/dev/null 2>&1 &
load=$!
for i in $(seq 1 20); do
  version "$i" "$(printf '%016d' $((98000000 + i * 10)))"
  st=$(post "$T/v$i.xml")
  [ "$st" = 200 ] || bad "version $i -> $st"
done
wait $load
ok "20 versions posted"
others=$(wc -l <"$T/acked")
check "everything settles" wait_settled "$((20 + others))" 30
fake_dump
eq "Dataverse holds the last version" "$(dumpq "[a['name'] for a in d['records']['accounts'] if a.get('mlc_sapvendorid')=='0000424242']")" "['Version 20']"
check "no older version was written after a newer one" python3 -c "
import json; log=json.load(open('$T/dump.json'))['log']
seen=[int(e['body']['name'].split()[1]) for e in log if e.get('key') and '0000424242' in str(e.get('key')) and e.get('body') and 'name' in e['body']]
print('write order:', seen)
assert seen and seen==sorted(seen) and seen[-1]==20, seen"
eq "all 20 delivered or superseded, none failed" "$(qcount failed)" 0

# BD87 resends an older IDoc that never arrived before (a DOCNUM between
# versions 7 and 8): recorded as superseded, not written.
version 7 0000000098000075
eq "late older IDoc -> 200" "$(post "$T/v7.xml")" 200
check "it settles" wait_settled "$((21 + others))" 10
queue_cli list >"$T/list"
check "it is recorded as superseded" python3 -c "
import json
r=[json.loads(l) for l in open('$T/list') if '0000000098000075' in l][0]
assert r['state']=='delivered' and 'superseded' in (r['error'] or ''), r"
fake_dump
eq "Dataverse still holds version 20" "$(dumpq "[a['name'] for a in d['records']['accounts'] if a.get('mlc_sapvendorid')=='0000424242']")" "['Version 20']"
mlc_stop
mlc_finish
