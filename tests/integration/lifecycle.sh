#!/usr/bin/env bash
# Lifecycle: SIGTERM while 8 clients post (every 200 is in the queue, exit
# 0, /readyz 503 while draining), and SIGHUP with a good and a broken
# mapping file (the broken one is refused, the running mapping kept).
. "$(dirname "$0")/lib.sh"

mlc_config 256 8
mlc_start
: >"$T/acked"
"$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 8 6 6000000 "$T/acked" >"$T/load" 2>&1 &
load=$!
sleep 1
kill -TERM "$SERVER_PID"
rz=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/readyz" 2>/dev/null)
t0=$(date +%s.%N)
wait "$SERVER_PID"; rc=$?
SERVER_PID=
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
eq "SIGTERM under load -> exit 0" "$rc" 0
check "stopped within 10 s ($secs s)" awk -v s="$secs" 'BEGIN{exit !(s < 10)}'
case "$rz" in 503|000) ok "readyz is 503 (or closed) while draining ($rz)" ;; *) bad "readyz while draining: $rz" ;; esac
wait $load
echo "load: $(cat "$T/load")"
mlc_start
queue_cli list >"$T/list"
check "every acknowledged DOCNUM is stored exactly once" python3 - "$T/acked" "$T/list" <<'PY'
import json, sys
acked = [l.strip() for l in open(sys.argv[1]) if l.strip()]
n = {}
for l in open(sys.argv[2]):
    r = json.loads(l); n[r["docnum"]] = n.get(r["docnum"], 0) + 1
missing = [d for d in acked if d not in n]; twice = [d for d, c in n.items() if c > 1]
print(f"acked {len(acked)}, stored {len(n)}, missing {len(missing)}, twice {len(twice)}")
sys.exit(1 if missing or twice or not acked else 0)
PY
mlc_stop

# SIGHUP: mapping reload.
cp "$MLC_ROOT/config/mapping.json" "$T/mapping.json"
MAPPING=$T/mapping.json mlc_config 64 8 '"log": { "level": "info" }'
mlc_start
eq "ORDRSP is not handled -> 422" "$(post "$FIX/idoc/ordrsp_other.xml")" 422
cat >"$T/mapping.json" <<JSON
{ "extends": "$MLC_ROOT/config/mapping.json", "accept_and_ignore": ["ORDRSP"] }
JSON
kill -HUP "$SERVER_PID"
for i in $(seq 50); do grep -q 'SIGHUP: reloaded' "$T/server.log" && break; sleep 0.1; done
check "reload logged" grep -q 'SIGHUP: reloaded mapping' "$T/server.log"
eq "after reload ORDRSP is accepted and ignored -> 200" "$(post "$FIX/idoc/ordrsp_other.xml")" 200
eq "...stored as ignored" "$(qcount ignored)" 1
echo '{ "routes": [ broken' >"$T/mapping.json"
kill -HUP "$SERVER_PID"
for i in $(seq 50); do grep -q 'keeping the running mapping' "$T/server.log" && break; sleep 0.1; done
check "broken mapping refused with a clear line" grep -q 'SIGHUP: mapping .* refused, keeping the running mapping' "$T/server.log"
eq "the running mapping is kept (a vendor still accepted)" "$(post "$FIX/idoc/cremas05_vendor.xml")" 200
check "server still serving" [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" = 200 ]
mlc_stop; eq "exit 0" "$?" 0
mlc_finish
