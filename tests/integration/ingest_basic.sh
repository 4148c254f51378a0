#!/usr/bin/env bash
# Ingest end to end against the real binary: every fixture is accepted and
# stored once, resends are acknowledged without a second record, every error
# status of CONTRACT.md comes with its one-line reason, and /healthz,
# /readyz, /metrics answer (metrics pass promtool).
. "$(dirname "$0")/lib.sh"

mlc_config 64 1
mlc_start

# --- probes
eq "healthz 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" 200
eq "readyz 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz")" 200
curl -s "$BASE/metrics" >"$T/metrics0"
check "metrics pass promtool" promtool check metrics <"$T/metrics0"
for s in 'mlc_idocs_received_total{mestyp="CREMAS"} 0' 'mlc_idocs_duplicate_total 0' \
         'mlc_requests_rejected_total{reason="auth"} 0' 'mlc_queue_records{state="pending"} 0' \
         'mlc_dataverse_requests_total{code="204"} 0' 'mlc_dataverse_throttled_total 0' \
         'mlc_delivery_retries_total 0' 'mlc_records_delivered_total{entity="accounts"} 0' \
         'mlc_records_failed_total 0' 'mlc_ingest_commit_seconds_count 0' 'mlc_dataverse_request_seconds_count 0'; do
  check "metric present at start: $s" grep -qF "$s" "$T/metrics0"
done

# --- every deliverable fixture is accepted
n=0
for f in cremas05_vendor cremas06_packet debmas06_customer debmas07_customer_contacts orders05_po \
         ordchg_po orders05_extension_zseg cremas05_latin1 debmas06_nodecl cremas05_blanks orders05_soap; do
  st=$(post "$FIX/idoc/$f.xml")
  eq "POST $f -> 200" "$st" 200
  contains "$f: body says stored" "$(body)" "stored"
done
pending=$(qcount pending)
check "records pending after fixtures ($pending)" [ "$pending" -ge 13 ]

# --- resend: 200, counted, nothing new
before=$(qcount pending)
eq "resend -> 200" "$(post "$FIX/idoc/cremas05_vendor.xml")" 200
contains "resend body says duplicate" "$(body)" "duplicate"
eq "resend adds no record" "$(qcount pending)" "$before"
eq "packet resend -> 200" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
eq "packet resend adds no record" "$(qcount pending)" "$before"
curl -s "$BASE/metrics" >"$T/metrics1"
check "duplicates counted" grep -q '^mlc_idocs_duplicate_total [1-9]' "$T/metrics1"
check "received counted by mestyp" grep -q '^mlc_idocs_received_total{mestyp="CREMAS"} [1-9]' "$T/metrics1"

# --- gzip body
gzip -c "$FIX/idoc/orders05_po.xml" >"$T/po.gz"
eq "gzip body of a known IDoc -> 200" "$(post "$T/po.gz" -H 'Content-Encoding: gzip')" 200
contains "gzip resend recognised as duplicate" "$(body)" "duplicate"

# --- charset parameter and the other media types
for ct in 'text/xml; charset=utf-8' 'application/xml' 'application/x-sap.idoc' 'TEXT/XML;charset="UTF-8"'; do
  eq "Content-Type '$ct' accepted" "$(CT=$ct post "$FIX/idoc/orders05_po.xml")" 200
done

# --- chunked transfer
eq "chunked body -> 200" "$(post "$FIX/idoc/debmas06_customer.xml" -H 'Transfer-Encoding: chunked')" 200

# --- errors, each with a one-line reason
st=$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -H 'Content-Type: text/xml' --data-binary @"$FIX/idoc/orders05_po.xml" "$URL")
eq "no credentials -> 401" "$st" 401
check "401 carries WWW-Authenticate Basic realm" grep -qi '^WWW-Authenticate: Basic realm="ml-connector"' "$T/headers"
contains "401 reason" "$(body)" "authentication required"
eq "wrong password -> 401" "$(post "$FIX/idoc/orders05_po.xml" -u "$SAP_USER:wrong")" 401
contains "wrong password reason" "$(body)" "wrong user name or password"
eq "GET on the SAP path -> 405" "$(curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' -u "$SAP_AUTH" "$URL")" 405
check "405 names Allow: POST" grep -qi '^Allow: POST' "$T/headers"
eq "PUT -> 405" "$(post "$FIX/idoc/orders05_po.xml" -X PUT)" 405
eq "text/plain -> 415" "$(CT=text/plain post "$FIX/idoc/orders05_po.xml")" 415
contains "415 reason names the type" "$(body)" "text/plain"
eq "Content-Encoding br -> 415" "$(post "$FIX/idoc/orders05_po.xml" -H 'Content-Encoding: br')" 415
python3 -c "import sys; sys.stdout.write('<CREMAS05>' + '<IDOC BEGIN=\"1\">' + '<X>aaaaaaaaaaaaaaaaaaaaaaaa</X>' * 80000)" >"$T/big"
eq "2.3 MiB body over a 1 MiB limit -> 413" "$(post "$T/big")" 413
contains "413 reason" "$(body)" "exceeds the limit"
eq "oversize chunked body -> 413" "$(post "$T/big" -H 'Transfer-Encoding: chunked')" 413
eq "unsupported type (ORDRSP) -> 422" "$(post "$FIX/idoc/ordrsp_other.xml")" 422
contains "422 reason names the type" "$(body)" "ORDRSP"
printf '<?xml version="1.0"?><ORDERS05><IDOC BEGIN="1"><EDI_DC40><DOCNUM>1</DOCNUM>' >"$T/trunc.xml"
eq "truncated XML -> 400" "$(post "$T/trunc.xml")" 400
printf '<?xml version="1.0"?><hello>world</hello>' >"$T/notidoc.xml"
eq "not an IDoc -> 400" "$(post "$T/notidoc.xml")" 400
contains "not-an-IDoc reason" "$(body)" "IDOC"
printf '<CREMAS05><IDOC BEGIN="1"><E1LFA1M SEGMENT="1"><LIFNR>1</LIFNR></E1LFA1M></IDOC></CREMAS05>' >"$T/noctl.xml"
eq "no control record -> 400" "$(post "$T/noctl.xml")" 400
printf '<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><MANDT>100</MANDT><IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><DOCNUM>  </DOCNUM></EDI_DC40></IDOC></CREMAS05>' >"$T/nodoc.xml"
eq "blank DOCNUM -> 400" "$(post "$T/nodoc.xml")" 400
: >"$T/empty.xml"
eq "empty body -> 400" "$(post "$T/empty.xml")" 400
eq "404 elsewhere" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/nope")" 404
for f in "$T/body"; do check "error bodies are one line" [ "$(wc -l <"$f")" -le 1 ]; done

# --- data the store cannot key (a 600-character SNDPRN) -> 400, not a 503 SAP would retry forever
long=$(python3 -c "print('P' * 600)")
printf '<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><MANDT>100</MANDT><DOCNUM>0000000077000001</DOCNUM><IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><SNDPRN>%s</SNDPRN></EDI_DC40><E1LFA1M SEGMENT="1"><LIFNR>0000100999</LIFNR><NAME1>X</NAME1></E1LFA1M></IDOC></CREMAS05>' "$long" >"$T/longkey.xml"
eq "an IDoc whose dedupe key is too long -> 400" "$(post "$T/longkey.xml")" 400
contains "...saying it cannot be stored" "$(body)" "cannot be stored"

# --- a packet with one unsupported IDoc commits nothing
python3 - "$FIX/idoc/cremas05_vendor.xml" "$FIX/idoc/ordrsp_other.xml" "$T/mixed.xml" <<'PY'
import re, sys
a = open(sys.argv[1], encoding='utf-8').read()
b = open(sys.argv[2], encoding='utf-8').read()
ia = re.search(r'<IDOC BEGIN="1">.*?</IDOC>', a, re.S).group(0).replace('<DOCNUM>', '<DOCNUM>9')
ib = re.search(r'<IDOC BEGIN="1">.*?</IDOC>', b, re.S).group(0)
open(sys.argv[3], 'w', encoding='utf-8').write('<?xml version="1.0" encoding="UTF-8"?><CREMAS05>' + ia + ib + '</CREMAS05>')
PY
before=$(qcount pending)
eq "packet with an unsupported IDoc -> 422" "$(post "$T/mixed.xml")" 422
eq "...and nothing of it is stored" "$(qcount pending)" "$before"

curl -s "$BASE/metrics" >"$T/metrics2"
check "metrics still pass promtool" promtool check metrics <"$T/metrics2"
check "rejections counted (auth)" grep -q '^mlc_requests_rejected_total{reason="auth"} [1-9]' "$T/metrics2"
check "rejections counted (unsupported_type)" grep -q '^mlc_requests_rejected_total{reason="unsupported_type"} [1-9]' "$T/metrics2"
check "commit histogram observed" grep -q '^mlc_ingest_commit_seconds_count [1-9]' "$T/metrics2"
check "no secret in the server log" bash -c "! grep -qF '$MLC_TEST_SAP_PASSWORD' '$T/server.log' && ! grep -qF '$MLC_TEST_DV_SECRET' '$T/server.log'"
check "no secret in metrics" bash -c "! grep -qF '$MLC_TEST_SAP_PASSWORD' '$T/metrics2'"

# --- queue CLI while serve runs
queue_cli list --state pending >"$T/list"
check "queue list prints JSON lines with the contract's fields" python3 -c "
import json,sys
rows=[json.loads(l) for l in open('$T/list')]
assert rows and all(set(['seq','docnum','mestyp','key','state','attempts','error'])<=set(r) for r in rows)
assert any(r['key'].startswith('vendor:') for r in rows)
"
seq1=$(head -1 "$T/list" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
queue_cli show "$seq1" >"$T/show"
check "queue show has the IDoc XML" grep -q 'EDI_DC40' "$T/show"

mlc_stop; eq "SIGTERM -> exit 0" "$?" 0
check "stopped cleanly logged" grep -q 'stopped cleanly' "$T/server.log"

# --- restart: everything still there
pend=$(qcount pending)
check "records survive a restart ($pend)" [ "$pend" -ge 13 ]
mlc_finish
