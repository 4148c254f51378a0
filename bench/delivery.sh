#!/usr/bin/env bash
# Delivery benchmark (issue 4), run by `make bench` after the ingest one.
#   (a) records/s delivered end to end by ml-connector (queue -> mapping ->
#       $batch -> fake Dataverse), with 0 ms and 50 ms fake latency;
#   (b) the ceiling: the same records sent as the same $batch requests by a
#       bare libcurl multi loop with the same concurrency (bench_delivery);
#   and, with a service-protection budget of N requests per window, the
#   achieved request rate as a fraction of N, and violations (must be 0).
# Everything binds 127.0.0.1 and is stopped at the end; about 2 minutes.
set -uo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/$build/ml-connector
fake=$root/$build/tools/fake_dataverse
load=$root/$build/tools/ingest_load
ceil=$root/$build/bench/bench_delivery
work=$(mktemp -d "${TMPDIR:-/tmp}/mlc-dbench.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM
[ -n "${KEEP:-}" ] && trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; echo "kept $work"' EXIT
export MLC_SAP_PASSWORD=bench-password MLC_DATAVERSE_SECRET=bench-secret MLC_ADMIN_TOKEN=bench-admin-token-0123456789
N=${DELIVERY_N:-20000}
CONC=${DELIVERY_CONC:-8} BATCH=${DELIVERY_BATCH:-100}

fake_up() { # fake_up NAME flags... -> sets dv (not in $(...): the fake would hold the pipe open)
  local name=$1; shift
  rm -f "$work/$name.port"
  "$fake" --port 0 --port-file "$work/$name.port" "$@" >/dev/null 2>"$work/fake-$name.log" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$name.port" ] && break; sleep 0.05; done
  dv="http://127.0.0.1:$(cat "$work/$name.port")"
}
token() { curl -s -d "grant_type=client_credentials&client_id=bench&client_secret=s&scope=$1/.default" \
            "$1/t/oauth2/v2.0/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
counters() { curl -s "$1/_fake/dump?records=0&log=0" | python3 -c "import json,sys; c=json.load(sys.stdin)['counters']; print($2)"; }

gateway() { # gateway DV_URL NAME DELIVERY_JSON -> starts, sets GW
  local dv=$1 name=$2 dj=$3
  cat >"$work/$name.json" <<JSON
{ "listen": { "address": "127.0.0.1", "port": 0 },
  "sap": { "username": "SAPIDOC", "password": "\${MLC_SAP_PASSWORD}" },
  "queue": { "path": "$work/$name.queue", "max_size_mb": 2048 },
  "dataverse": { "url": "$dv", "token_url": "$dv/t/oauth2/v2.0/token", "tenant_id": "t",
                 "client_id": "bench", "client_secret": "\${MLC_DATAVERSE_SECRET}" },
  "mapping": "$root/config/mapping.json",
  "admin": { "token": "\${MLC_ADMIN_TOKEN}" },
  "log": { "level": "warn" },
  "delivery": { "schedule": "0 0 1 1 *", $dj } }
JSON
  "$bin" serve -c "$work/$name.json" >/dev/null 2>"$work/$name.log" &
  GWPID=$!
  pids+=($GWPID)
  for _ in $(seq 100); do grep -q 'listening on' "$work/$name.log" && break; sleep 0.05; done
  GW=http://127.0.0.1:$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/$name.log" | head -1)
}
settled() { "$bin" queue -c "$work/$1.json" stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["delivered"]+s["failed"])'; }
# fill NAME N FIRST: queue N vendor IDocs (50 per request, DOCNUMs FIRST...)
# while delivery is idle
fill() {
  rm -f "$work/$1.acked"
  "$load" "$GW/sap/idoc" "SAPIDOC:$MLC_SAP_PASSWORD" 4 60 "$3" "$work/$1.acked" 50 $(( $2 / 50 )) >/dev/null 2>&1
}
# drain NAME: start a run now, wait until it has ended, print
# "RATE SECONDS RECORDS". The time is the run's own duration_ms (from the
# run's start to its last outcome, measured by the gateway), so the polling
# here neither adds to it nor rounds it. It polls every 0.5 s: a curl
# process costs ~15 ms of CPU, and ten of them during a one-second run took
# CPU from the gateway and the fake that (b) never has to share.
drain() {
  local n runs
  n=$(wc -l <"$work/$1.acked")
  curl -s -o /dev/null -X POST -H "Authorization: Bearer $MLC_ADMIN_TOKEN" "$GW/admin/sync"
  for _ in $(seq 240); do
    sleep 0.5
    runs=$(curl -s -H "Authorization: Bearer $MLC_ADMIN_TOKEN" "$GW/admin/runs")
    case $runs in '[{'*'"result":"running"'*) ;; '[{'*) break ;; esac
  done
  [ "$(settled "$1")" -ge "$n" ] || echo "bench: not every record settled in $1" >&2
  python3 -c 'import json,sys
r = json.loads(sys.argv[1])[0]; n = int(sys.argv[2]); s = r["duration_ms"] / 1000.0
if r["delivered"] + r["failed"] != n: sys.stderr.write("bench: run %d settled %d of %d\n" % (r["id"], r["delivered"] + r["failed"], n))
print("%.0f %.2f %d" % (n / s, s, n))' "$runs" "$n"
}

# (a) and (b) alternate, five rounds per latency: (b), then (a), under the
# same machine conditions. Each round sends new DOCNUMs (new vendors) to a
# freshly reset fake, so both sides create the same N accounts.
# The verdict uses the MEDIAN of the rounds' own ratios (a)/(b): the machine
# is shared, and (b) alone swings by half between consecutive rounds
# (22k-35k records/s seen in one run), so the best (a) over the best (b)
# mostly measures which side got the luckier round. The best of each side
# is printed too. Also per round: the fake's execution time (exec_s, its
# single lock held) against its active span — how busy the Dataverse
# stand-in was kept.
ROUNDS=${DELIVERY_ROUNDS:-5}
declare -A R
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'; }
for lat in 0 50; do
  fake_up "dv$lat" --latency-ms "$lat"
  tok=$(token "$dv")
  gateway "$dv" "gw$lat" "\"workers\": $CONC, \"max_concurrency\": $CONC, \"batch_size\": $BATCH"
  best_b=0 best_a=0 out_b= out_a= ratios=
  for round in $(seq "$ROUNDS"); do
    first=$(( 9000000 + (round - 1) * 1000000 ))
    curl -s -X POST "$dv/_fake/reset" >/dev/null
    o=$("$ceil" "$dv" "$tok" "$N" "$CONC" "$BATCH" "$root/config/mapping.json" "$first") ||
      echo "bench: bench_delivery failed: $o" >&2
    r=$(echo "$o" | awk '{print $6}')
    [ "${r:-0}" -gt "$best_b" ] && { best_b=$r; out_b=$o; }
    curl -s -X POST "$dv/_fake/reset" >/dev/null
    fill "gw$lat" "$N" "$first"
    read -r rate secs n < <(drain "gw$lat")
    rr=$(awk -v a="${rate:-0}" -v b="${r:-0}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    ratios="$ratios $rr"
    echo "   latency $lat ms, round $round: (b) ${r:-0} records/s, (a) ${rate:-0} records/s, (a)/(b) $rr; fake busy $(counters "$dv" "'%.2f of %.2f s' % (c['exec_s'], c['active_s'])")"
    [ "${rate:-0}" -gt "$best_a" ] && { best_a=$rate; out_a="$n records in $secs s = $rate records/s ($(counters "$dv" "c['batches'], 'batches', c['throttled_429'], '429s'"))"; }
  done
  R[b,$lat]=$best_b R[a,$lat]=$best_a R[m,$lat]=$(echo "$ratios" | median) R[r,$lat]=$ratios
  echo "   (b) bare libcurl multi, $CONC in flight, the gateway's \$batch requests of $BATCH, latency $lat ms, best of $ROUNDS: $out_b"
  echo "   (a) ml-connector, $CONC workers, \$batch of $BATCH, latency $lat ms, best of $ROUNDS: $out_a"
  kill "$GWPID"; wait "$GWPID" 2>/dev/null
done

# Service protection: a budget of 250 requests per sliding 5 s window
# (50/s), one record per request, more records than the budget lets through.
# Admitted requests are counted at 19.5 s after the run starts: a client that
# used every slot gets 4 windows x 250 = 1000 in that time.
BUDGET=250 WINDOW=5 BN=${DELIVERY_BUDGET_N:-1500} MEASURE=19.5
fake_up budget --budget "$BUDGET" --window "$WINDOW"
gateway "$dv" budget "\"workers\": $CONC, \"max_concurrency\": $CONC, \"batch_size\": 1"
fill budget "$BN" 9000000
curl -s -o /dev/null -X POST -H "Authorization: Bearer $MLC_ADMIN_TOKEN" "$GW/admin/sync"
sleep "$MEASURE"
ok_req=$(counters "$dv" "c['requests'] - c['throttled_429']")
viol=$(counters "$dv" "c['violations']")
thr=$(counters "$dv" "c['throttled_429']")
frac=$(awk -v r="$ok_req" -v b="$BUDGET" 'BEGIN { printf "%.2f", r / (4 * b) }')
secs=$MEASURE n=$ok_req
kill "$GWPID"; wait "$GWPID" 2>/dev/null

echo
echo "== Delivery summary (fake Dataverse on loopback; $N records, $CONC requests in flight, \$batch of $BATCH)"
for lat in 0 50; do
  ab=$(awk -v a="${R[a,$lat]}" -v b="${R[b,$lat]}" 'BEGIN { printf "%.2f", a / b }')
  t=""
  [ "$lat" = 0 ] && t=$(awk -v x="${R[m,$lat]}" 'BEGIN { print (x >= 0.8) ? "  target >= 0.8: met" : "  target >= 0.8: NOT MET" }')
  printf '   latency %2s ms: (a)/(b) median of %s paired rounds %s (rounds:%s)%s\n' "$lat" "$ROUNDS" "${R[m,$lat]}" "${R[r,$lat]}" "$t"
  printf '                  best (a) %6s records/s over best (b) %6s records/s: %s\n' "${R[a,$lat]}" "${R[b,$lat]}" "$ab"
done
printf '   budget %d requests / %d s (sliding): %d requests admitted in %s s of a possible %d: %s of the budget used (target >= 0.95: %s), %d 429s, violations %d (must be 0: %s)\n' \
  "$BUDGET" "$WINDOW" "$ok_req" "$secs" "$((4 * BUDGET))" "$frac" "$(awk -v x="$frac" 'BEGIN { print (x >= 0.95) ? "met" : "NOT MET" }')" \
  "$thr" "$viol" "$([ "$viol" = 0 ] && echo met || echo NOT MET)"
