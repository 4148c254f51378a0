#!/usr/bin/env bash
# Crash safety: while 8 clients post continuously, kill -9 the server;
# restart; every DOCNUM that got a 200 is in the queue exactly once.
# Three rounds in one test, each with fresh DOCNUMs.
. "$(dirname "$0")/lib.sh"

mlc_config 256 8
: >"$T/acked"
first=1000000
for round in 1 2 3; do
  mlc_start
  "$TOOLS/ingest_load" "$URL" "$SAP_AUTH" 8 6 "$first" "$T/acked" >"$T/load.$round" 2>&1 &
  load=$!
  sleep "$(awk -v r="$round" 'BEGIN{print 0.5 + r * 0.2}')"
  mlc_kill9
  wait $load
  echo "round $round: $(cat "$T/load.$round")"
  first=$((first + 1000000))
  check "round $round: some requests were acknowledged" [ -s "$T/acked" ]
  # Restart and compare what SAP was told with what is stored.
  mlc_start
  queue_cli list >"$T/list.$round"
  python3 - "$T/acked" "$T/list.$round" <<'PY' >"$T/verdict.$round"
import json, sys
acked = [l.strip() for l in open(sys.argv[1]) if l.strip()]
stored = {}
for line in open(sys.argv[2]):
    r = json.loads(line)
    stored[r["docnum"]] = stored.get(r["docnum"], 0) + 1
missing = [d for d in acked if d not in stored]
twice = [d for d, n in stored.items() if n > 1]
print(f"acked={len(acked)} stored={len(stored)} missing={len(missing)} duplicated={len(twice)}")
sys.exit(1 if missing or twice else 0)
PY
  rc=$?
  echo "round $round: $(cat "$T/verdict.$round")"
  eq "round $round: every acknowledged DOCNUM stored exactly once" "$rc" 0
  stats=$(queue_cli stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["pending"])')
  eq "round $round: pending count equals stored records" "$stats" "$(wc -l <"$T/list.$round")"
  mlc_stop >/dev/null
done
mlc_finish
