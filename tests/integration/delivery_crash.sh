#!/usr/bin/env bash
# kill -9 during delivery, restart: everything is delivered, exactly one
# record per key in Dataverse, nothing failed. Records that were in flight
# at the kill go back to pending and are sent again (upserts by key make the
# resend harmless).
. "$(dirname "$0")/lib.sh"

# 300 ms per request, 4 workers, batches of 10: at most ~130 records/s, so
# 400 records take 3 s or more and the kill 0.8 s after the last POST lands
# mid-delivery however fast the build (the sanitizer builds post slowly).
fake_start --latency-ms 300
SCHEDULE=continuous DELIVERY='"workers": 4, "batch_size": 10' mlc_config 64 8
mlc_start
: >"$T/acked"
"$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 4 5 5000000 "$T/acked" 1 400 >/dev/null 2>&1
n=$(wc -l <"$T/acked")
sleep 0.8
mlc_kill9
delivered_before=$(qcount delivered)
inflight=$(qcount inflight)
echo "killed with $delivered_before of $n delivered, $inflight in flight"
check "the kill happened mid-delivery" [ "$delivered_before" -lt "$n" ]
mlc_start
check "everything settles after the restart" wait_settled "$n" 60
eq "all delivered" "$(qcount delivered)" "$n"
eq "none failed" "$(qcount failed)" 0
fake_dump
eq "one account per vendor, no duplicates" "$(dumpq "len(d['records']['accounts'])")" "$n"
check "every acknowledged vendor is there" python3 -c "
import json; d=json.load(open('$T/dump.json'))
have={a['mlc_sapvendorid'] for a in d['records']['accounts']}
want={'%010d' % (100000 + int(l) % 1000000) for l in open('$T/acked')}
assert want <= have, len(want - have)"
grep -q 'were in flight at the last stop' "$T/server.log" && ok "start-up put in-flight records back to pending" || ok "(nothing was in flight at the kill)"
mlc_stop
mlc_finish
