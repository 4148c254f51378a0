#!/usr/bin/env bash
# Faults on the Dataverse side: latency, 503 bursts and connection resets
# lose nothing; a permanent 400 fails only its record, with Dataverse's own
# message; after the mapping is fixed, `queue replay` delivers it. A fault
# on our own side: the disk refuses the commit of a job's outcomes.
. "$(dirname "$0")/lib.sh"

fake_start --latency-ms 20 --fail-503-every 7 --reset-every 13
SCHEDULE=continuous DELIVERY='"retry_base_s": 1, "retry_cap_s": 2, "batch_size": 20' mlc_config 64 8
mlc_start
: >"$T/acked"
"$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 2 1 2000000 "$T/acked" 5 >"$T/load" 2>&1
n=$(wc -l <"$T/acked")
echo "posted: $(cat "$T/load"), $n IDocs acknowledged"
check "IDocs were acknowledged ($n)" [ "$n" -gt 50 ]
check "all $n settle within 60 s despite faults" wait_settled "$n" 60
eq "none failed" "$(qcount failed)" 0
eq "all delivered" "$(qcount delivered)" "$n"
fake_dump
check "faults really happened (503s and resets)" python3 -c "
import json; c=json.load(open('$T/dump.json'))['counters']; assert c['injected_503']>0 and c['resets']>0, c"
eq "one account per vendor" "$(dumpq "len(d['records']['accounts'])")" "$n"
curl -s "$BASE/metrics" >"$T/m"
check "retries counted" grep -q '^mlc_delivery_retries_total [1-9]' "$T/m"
check "503s counted by code" grep -q '^mlc_dataverse_requests_total{code="503"} [1-9]' "$T/m"
mlc_stop

# A mapping that no longer truncates names: Dataverse refuses a long one.
cat >"$T/long.json" <<JSON
{ "extends": "$MLC_ROOT/config/mapping.json", "column_lengths": { "accounts": { "name": 400 } } }
JSON
fake_config '{"latency_ms": 0, "fail_503_every": 0, "reset_every": 0}'
MAPPING=$T/long.json SCHEDULE=continuous DELIVERY='"retry_base_s": 1' mlc_config 64 8
mlc_start
long=$(python3 -c "print('Very Long Vendor Name ' * 10)")
python3 - "$T/two.xml" "$long" <<'PY'
import sys
def idoc(docnum, lifnr, name):
    return (f'<IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><TABNAM>EDI_DC40</TABNAM><MANDT>100</MANDT><DOCNUM>{docnum}</DOCNUM>'
            f'<IDOCTYP>CREMAS05</IDOCTYP><MESTYP>CREMAS</MESTYP><SNDPOR>SAPPR1</SNDPOR><SNDPRT>LS</SNDPRT>'
            f'<SNDPRN>PR1CLNT100</SNDPRN><CREDAT>20261128</CREDAT><CRETIM>120000</CRETIM></EDI_DC40>'
            f'<E1LFA1M SEGMENT="1"><MSGFN>005</MSGFN><LIFNR>{lifnr}</LIFNR><NAME1>{name}</NAME1><LAND1>DE</LAND1></E1LFA1M></IDOC>')
open(sys.argv[1], 'w').write('<?xml version="1.0" encoding="UTF-8"?><CREMAS05>' +
    idoc('0000000099000001', '0000777001', sys.argv[2].strip()) + idoc('0000000099000002', '0000777002', 'Short Name GmbH') + '</CREMAS05>')
PY
eq "POST a long name and a short one" "$(post "$T/two.xml")" 200
check "both settle" wait_settled "$((n + 2))" 20
queue_cli list --state failed >"$T/failed"
eq "exactly the long one failed" "$(python3 -c "import json; print([json.loads(l)['docnum'] for l in open('$T/failed')])")" "['0000000099000001']"
fake_dump
msg=$(python3 -c "
import json; log=json.load(open('$T/dump.json'))['log']
print([e for e in log if e.get('status')==400][0].get('message',''))")
err=$(python3 -c "import json; print(json.loads(open('$T/failed').readline())['error'])")
contains "the record's error carries Dataverse's message" "$err" "${msg:0:40}"
contains "...and its code" "$err" "0x"
check "the short one arrived" python3 -c "
import json; d=json.load(open('$T/dump.json')); assert any(a.get('mlc_sapvendorid')=='0000777002' for a in d['records']['accounts'])"
mlc_stop

# Fix the mapping (back to the shipped one), replay, and it is delivered.
SCHEDULE=continuous DELIVERY='"retry_base_s": 1' mlc_config 64 8
mlc_start
eq "queue replay --failed" "$(queue_cli replay --failed)" '{"replayed":1}'
check "the replayed record is delivered" wait_settled "$((n + 2))" 20
eq "no record failed now" "$(qcount failed)" 0
fake_dump
check "the long name arrived truncated to 160" python3 -c "
import json; d=json.load(open('$T/dump.json'))
a=[a for a in d['records']['accounts'] if a.get('mlc_sapvendorid')=='0000777001'][0]; assert len(a['name'])==160, len(a['name'])"
mlc_stop

# The disk refuses the outcome commit (fdatasync -> EIO, injected with
# tests/preload/fault_fsync.so while a job is in flight): the job's records
# go back to pending and are sent again, not left inflight until a restart.
rm -rf "$T/queue"
curl -s -X POST "$DV_URL/_fake/reset" >/dev/null
fake_config '{"latency_ms": 1000, "fail_503_every": 0, "reset_every": 0}'
SCHEDULE=continuous DELIVERY='"workers": 1, "retry_base_s": 1, "retry_cap_s": 2' mlc_config 64 8
export MLC_FAULT_FSYNC=$T/fail-next-fsync
MLC_PRELOAD=$MLC_ROOT/$MLC_BUILD/preload/fault_fsync.so mlc_start
eq "POST a packet of 3 vendors" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
sleep 0.4 # claimed and on the wire (the fake answers after 1 s)
: >"$MLC_FAULT_FSYNC"
check "the fault was hit" wait_for_gone "$MLC_FAULT_FSYNC" 10
check "all 3 delivered after all" wait_settled 3 20
eq "none failed" "$(qcount failed)" 0
eq "none left inflight" "$(qcount inflight)" 0
check "the log says they were put back to pending" grep -q 'put back to pending' "$T/server.log"
fake_dump
eq "three accounts" "$(dumpq "len(d['records']['accounts'])")" 3
check "sent twice (the first outcome was lost, upserts make that harmless)" \
  [ "$(dumpq "sum(1 for e in d['log'] if e.get('set') == 'accounts')")" -ge 6 ]
mlc_stop

# The same fault when the worker already holds its next job: a finishing
# worker claims its next job in the transaction that records its outcomes,
# so that claim fails too. The next job must then be claimed on its own
# (never sent unclaimed) and everything still arrive. One record per job.
rm -rf "$T/queue"
curl -s -X POST "$DV_URL/_fake/reset" >/dev/null
fake_config '{"latency_ms": 1000, "fail_503_every": 0, "reset_every": 0}'
SCHEDULE=continuous DELIVERY='"workers": 1, "batch_size": 1, "retry_base_s": 1, "retry_cap_s": 2' mlc_config 64 8
MLC_PRELOAD=$MLC_ROOT/$MLC_BUILD/preload/fault_fsync.so mlc_start
eq "POST a packet of 3 vendors (3 jobs of 1)" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
sleep 0.4 # the first job is on the wire, the second waits for the worker
: >"$MLC_FAULT_FSYNC"
check "the fault was hit" wait_for_gone "$MLC_FAULT_FSYNC" 10
check "all 3 delivered after all" wait_settled 3 20
eq "none failed" "$(qcount failed)" 0
eq "none left inflight" "$(qcount inflight)" 0
check "the outcome was put back to pending, the next job claimed on its own" \
  grep -q 'put back to pending.*the next job is claimed on its own' "$T/server.log"
fake_dump
eq "three accounts" "$(dumpq "len(d['records']['accounts'])")" 3
mlc_stop

# At the start of a run every worker is idle, and the dispatcher claims the
# jobs they take in ONE commit. The disk refuses that commit: no job may be
# sent unclaimed; the records wait a second, still pending, and the run
# delivers them after all. Syncs of the run, in order: its start record
# (durable: data, then meta page), then the claim (lazy: data only) — the
# fault lets the first two through and fails the claim.
rm -rf "$T/queue"
curl -s -X POST "$DV_URL/_fake/reset" >/dev/null
fake_config '{"latency_ms": 0, "fail_503_every": 0, "reset_every": 0}'
export MLC_TEST_ADMIN_TOKEN='admin-token-0123456789abcdef'
DELIVERY='"workers": 3, "batch_size": 1, "retry_base_s": 1, "retry_cap_s": 2' \
  mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
MLC_PRELOAD=$MLC_ROOT/$MLC_BUILD/preload/fault_fsync.so mlc_start
eq "POST a packet of 3 vendors (3 jobs of 1, 3 idle workers)" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
echo 2 >"$MLC_FAULT_FSYNC"
eq "POST /admin/sync starts a run" "$(curl -s -o /dev/null -w '%{http_code}' \
  -H "Authorization: Bearer $MLC_TEST_ADMIN_TOKEN" -X POST "$BASE/admin/sync")" 202
check "the fault was hit" wait_for_gone "$MLC_FAULT_FSYNC" 10
check "all 3 delivered after all" wait_settled 3 20
eq "none failed" "$(qcount failed)" 0
eq "none left inflight" "$(qcount inflight)" 0
check "the log says the group claim failed and is tried again" \
  grep -q 'claiming 3 records for 3 workers.*tried again in' "$T/server.log"
fake_dump
eq "three accounts" "$(dumpq "len(d['records']['accounts'])")" 3
eq "each sent once (nothing went out unclaimed before the retry)" \
  "$(dumpq "sum(1 for e in d['log'] if e.get('set') == 'accounts')")" 3
mlc_stop
unset MLC_FAULT_FSYNC
mlc_finish
