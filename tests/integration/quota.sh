#!/usr/bin/env bash
# Quota: fill a small queue -> 503 with Retry-After, /readyz 503, no crash;
# the queue keeps everything it acknowledged.
. "$(dirname "$0")/lib.sh"

mlc_config 1 8
mlc_start
: >"$T/acked"
# ~1.2 KB per IDoc, 20 per request: a 1 MiB quota fills in well under 1000 IDocs.
"$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 2 4 5000000 "$T/acked" 20 >"$T/load" 2>&1
echo "load: $(cat "$T/load")"
acked=$(wc -l <"$T/acked")
check "some IDocs were accepted before the quota ($acked)" [ "$acked" -gt 0 ]
python3 - "$T/big.xml" <<'PY'
import sys
idocs = ''.join(f'<IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><MANDT>100</MANDT><DOCNUM>{7000000+i:016d}</DOCNUM><IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><SNDPRN>Q</SNDPRN></EDI_DC40><E1LFA1M SEGMENT="1"><LIFNR>{i:010d}</LIFNR><NAME1>{"x"*900}</NAME1></E1LFA1M></IDOC>' for i in range(200))
open(sys.argv[1], 'w').write('<CREMAS05>' + idocs + '</CREMAS05>')
PY
eq "POST over quota -> 503" "$(post "$T/big.xml")" 503
check "503 has Retry-After" grep -qi '^Retry-After: [0-9]' "$T/headers"
contains "503 reason names the queue" "$(body)" "queue"
eq "readyz 503 over quota" "$(curl -s -o "$T/rz" -w '%{http_code}' "$BASE/readyz")" 503
contains "readyz reason" "$(cat "$T/rz")" "quota"
eq "healthz still 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" 200
curl -s "$BASE/metrics" >"$T/m"
check "quota rejections counted" grep -q '^mlc_requests_rejected_total{reason="quota"} [1-9]' "$T/m"
eq "server still alive" "$(kill -0 "$SERVER_PID" && echo yes)" yes
stored=$(qcount pending)
eq "every acknowledged IDoc is stored" "$stored" "$acked"
mlc_stop; eq "SIGTERM -> exit 0" "$?" 0
mlc_finish
