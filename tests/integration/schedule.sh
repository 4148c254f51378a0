#!/usr/bin/env bash
# Sync schedule: with a per-minute cron schedule nothing is sent before the
# trigger and everything after it; POST /admin/sync starts a run at once;
# runs are listed newest first and the schedule's metrics are exported.
. "$(dirname "$0")/lib.sh"

fake_start
export MLC_TEST_ADMIN_TOKEN='admin-token-0123456789abcdef'
A=(-H "Authorization: Bearer $MLC_TEST_ADMIN_TOKEN")
accounts() { fake_dump; dumpq "len(d['records']['accounts'])"; }

# Part 1: /admin/sync with a schedule that will not fire during the test.
SCHEDULE='0 0 1 1 *' mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start
eq "POST a packet of 3 vendors" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
sleep 1.5
eq "nothing sent outside a run" "$(accounts)" 0
curl -s "$BASE/metrics" >"$T/m"
check "next run exported (Jan 1)" grep -qE '^mlc_sync_next_run_timestamp_seconds [1-9][0-9]{9}' "$T/m"
eq "POST /admin/sync -> 202" "$(curl -s -o "$T/out" -w '%{http_code}' "${A[@]}" -X POST "$BASE/admin/sync")" 202
check "all 3 delivered after the admin run" wait_settled 3 15
curl -s "${A[@]}" "$BASE/admin/runs" >"$T/runs"
check "the run is listed with trigger admin and its counts" python3 -c "
import json,time
for i in range(50):
    r=json.load(open('$T/runs'))
    if r and r[0]['end']: break
    time.sleep(0.1)
assert r[0]['trigger']=='admin' and r[0]['delivered']==3, r"
mlc_stop

# Part 2: every minute. Start just after a minute boundary so that the
# IDocs are posted well before the next one.
curl -s -X POST "$DV_URL/_fake/reset" >/dev/null
rm -rf "$T/queue"
s=$(date +%S); s=${s#0}
[ "$s" -gt 45 ] && sleep $((61 - s))
SCHEDULE='* * * * *' mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start
eq "POST a vendor" "$(post "$FIX/idoc/cremas05_vendor.xml")" 200
eq "POST an unlinked customer" "$(post "$FIX/idoc/debmas06_nodecl.xml")" 200
boundary=$(( ($(date +%s) / 60 + 1) * 60 ))
while [ $(( boundary - $(date +%s) )) -gt 1 ]; do
  [ "$(accounts)" = 0 ] || { bad "something was sent before the trigger"; break; }
  sleep 1
done
ok "nothing sent before the trigger"
check "everything delivered after the trigger" wait_settled 2 20
eq "Dataverse has both accounts" "$(accounts)" 2
curl -s "${A[@]}" "$BASE/admin/runs" >"$T/runs"
check "a scheduled run is recorded" python3 -c "
import json; r=json.load(open('$T/runs')); assert any(x['trigger']=='schedule' for x in r), r"
curl -s "$BASE/metrics" >"$T/m"
check "last run start exported" grep -qE '^mlc_sync_last_run_start_timestamp_seconds [1-9]' "$T/m"
check "metrics pass promtool" promtool check metrics <"$T/m"
mlc_stop
mlc_finish
