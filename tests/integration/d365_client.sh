#!/usr/bin/env bash
# The d365/ module (token manager, Web API client, $batch, throttle governor)
# against the fake Dataverse on 127.0.0.1, driven by $MLC_BUILD/tools/d365_probe:
#   1. basic: single and $batch upserts by alternate key, a change set with
#      Content-ID references, a failing change set, a bind to a missing target
#      (RETRY 0x80060891), too-long values (FAILED with Dataverse's message),
#      DELETE by key, cached lookups; one token for all of it.
#   2. certificate credential: PS256 (x5t#S256) and RS256 (x5t) assertions
#      verified by the fake against a certificate made here with openssl.
#   3. token lifetime 2 s during a 6 s run: renewals, no failure, no 401,
#      tokens fetched ~ runtime / lifetime.
#   4. throttling: a low request budget and concurrency limit, 8 threads of
#      single requests (with 2 s tokens), then batches with throttled parts:
#      hundreds of 429s, everything delivered, 0 violations, max concurrency
#      <= the cap.
#   5. 503s and connection resets: everything delivered.
. "$(dirname "$0")/lib.sh"

FAKE=$TOOLS/fake_dataverse
PROBE=$TOOLS/d365_probe
CID=22222222-3333-4444-5555-666666666666
TENANT=contoso.onmicrosoft.com
SEC='probe-secret/+&='

if [ ! -x "$FAKE" ] || [ ! -x "$PROBE" ]; then
  bad "fake_dataverse and d365_probe are built in $MLC_BUILD/tools"
  mlc_finish
fi

# fake_start [fake args...]: sets FURL
fake_start() {
  fake_stop
  rm -f "$T/port"
  "$FAKE" --port 0 --port-file "$T/port" --client-id "$CID" "$@" >>"$T/server.log" 2>&1 &
  SERVER_PID=$!
  local i
  for i in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.05; done
  if [ ! -s "$T/port" ]; then bad "fake_dataverse starts ($*)"; mlc_finish; fi
  FURL=http://127.0.0.1:$(cat "$T/port")
}

fake_stop() {
  if [ -n "$SERVER_PID" ]; then
    echo "    (fake stopped after $SECONDS s of test)"
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
  fi
}

# probe NAME [probe args...]: runs the probe, folds its ok/FAIL lines into the tally
probe() {
  local name=$1; shift
  local cred=(--client-secret "$SEC")
  case " $* " in *" --cert "*) cred=() ;; esac
  local t0=$(date +%s.%N)
  "$PROBE" --url "$FURL" --token-url "$FURL/$TENANT/oauth2/v2.0/token" --client-id "$CID" \
           "${cred[@]}" "$@" >"$T/probe-$name.out" 2>&1
  local rc=$? line
  echo "    $name: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s"
  while IFS= read -r line; do
    case $line in
      "ok   - "*) ok "$name: ${line#ok   - }" ;;
      "FAIL - "*) bad "$name: ${line#FAIL - }" ;;
      "# "*) echo "    $line" ;;
    esac
  done <"$T/probe-$name.out"
  [ $rc -eq 0 ] || { bad "$name: probe exit status $rc"; tail -n 20 "$T/probe-$name.out"; }
  grep '^summary ' "$T/probe-$name.out" | sed 's/^summary //' >"$T/summary-$name.json"
  echo "    $name summary: $(cat "$T/summary-$name.json")"
}

# the fake's counters and records
dump() { curl -s --max-time 10 "$FURL/_fake/dump?log=0${1:-}" >"$T/dump.json"; }
counter() { python3 -c "import json,sys; print(json.load(open('$T/dump.json'))['counters']['$1'])"; }
summary() { python3 -c "import json,sys; print(json.load(open('$T/summary-$1.json'))['$2'])"; }
ge() { # ge "description" got min
  if [ "$2" -ge "$3" ] 2>/dev/null; then ok "$1 ($2 >= $3)"; else bad "$1 (got '$2', want >= $3)"; fi
}
le() { # le "description" got max
  if [ "$2" -le "$3" ] 2>/dev/null; then ok "$1 ($2 <= $3)"; else bad "$1 (got '$2', want <= $3)"; fi
}

# --- 1. basic, client secret -----------------------------------------------
fake_start --client-secret "$SEC"
probe basic --scenario basic --prefix B
dump
eq "basic: the fake issued exactly one token" "$(counter tokens_issued)" 1
eq "basic: no 401 from the fake" "$(counter unauthorized_401)" 0
dump "&set=salesorderdetails"
lines=$(python3 - "$T/dump.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
recs = d["records"].get("salesorderdetails", [])
print(sum(1 for r in recs if r.get("mlc_sappoitemid", "").startswith("B-PO1-")
          and r.get("_binds", {}).get("salesorderid", {}).get("set") == "salesorders"))
PY
)
eq "basic: both lines of the change set are bound to their order" "$lines" 2
dump "&set=salesorders"
po2=$(python3 -c "import json; print(sum(1 for r in json.load(open('$T/dump.json'))['records'].get('salesorders', []) if r.get('mlc_sapponumber') == 'B-PO2'))")
eq "basic: the failed change set left nothing behind" "$po2" 0
dump "&set=accounts"
longacc=$(python3 -c "import json; print(sum(1 for r in json.load(open('$T/dump.json'))['records'].get('accounts', []) if r.get('mlc_sapvendorid') == 'B-VLONG'))")
eq "basic: the too-long account was not written" "$longacc" 0

# wrong secret: the probe reports the token failure, records are RETRY (not failed)
"$PROBE" --url "$FURL" --token-url "$FURL/$TENANT/oauth2/v2.0/token" --client-id "$CID" \
         --client-secret 'Wr0ngSecr3tValue' --scenario load --threads 1 --records 1 --deadline 2 >"$T/probe-wrong.out" 2>&1
contains "wrong secret: AADSTS7000215 logged with its meaning" "$(cat "$T/probe-wrong.out")" "AADSTS7000215: invalid client secret"
check "wrong secret: the secret is never logged" bash -c "! grep -q Wr0ngSecr3tValue '$T/probe-wrong.out'"
contains "wrong secret: no record failed (they wait)" "$(cat "$T/probe-wrong.out")" '"failed":0'

# --- 2. certificate credential ----------------------------------------------
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 \
     -subj "/CN=ml-connector-test" >/dev/null 2>&1; then
  fake_start --client-cert "$T/cert.pem"
  probe cert-ps256 --scenario load --threads 2 --records 20 --prefix CP --cert "$T/cert.pem" --key "$T/key.pem"
  probe cert-rs256 --scenario load --threads 1 --records 5 --prefix CR --cert "$T/cert.pem" --key "$T/key.pem" --rs256
  dump
  eq "certificate: two assertions accepted (one per probe run)" "$(counter tokens_issued)" 2
  eq "certificate: no token errors" "$(counter token_errors)" 0
  # a certificate the app registration does not know: AADSTS700027
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key2.pem" -out "$T/cert2.pem" -days 1 \
    -subj "/CN=other" >/dev/null 2>&1
  "$PROBE" --url "$FURL" --token-url "$FURL/$TENANT/oauth2/v2.0/token" --client-id "$CID" \
           --cert "$T/cert2.pem" --key "$T/key2.pem" --scenario load --threads 1 --records 1 --deadline 2 \
           >"$T/probe-cert2.out" 2>&1
  contains "unknown certificate: Entra error logged with an AADSTS code" "$(cat "$T/probe-cert2.out")" "AADSTS"
else
  bad "openssl req makes a test certificate"
fi

# --- 3. token lifetime 2 s during a 6 s run ---------------------------------
fake_start --client-secret "$SEC" --token-lifetime 2 --latency-ms 2
probe tokens --scenario load --threads 4 --records 5 --min-seconds 6 --prefix K
dump
issued=$(counter tokens_issued)
ge "tokens: renewed during the run" "$issued" 3
le "tokens: about runtime / lifetime, no stampede" "$issued" 7
eq "tokens: renewed before expiry (no 401 seen by the fake)" "$(counter unauthorized_401)" 0
eq "tokens: no record failed" "$(summary tokens failed)" 0

# --- 4. throttling -----------------------------------------------------------
# 4a: several threads hammering single requests into a small budget and a
#     concurrency limit below our cap
#     (and 2 s tokens: a request that waited out a window must not leave
#     with an expired token)
fake_start --client-secret "$SEC" --budget 40 --window 1 --max-concurrency 4 --token-lifetime 2
probe throttle-single --scenario load --threads 8 --cap 8 --records 40 --prefix TS
dump
eq "throttle-single: no expired token reached the fake (no 401)" "$(counter unauthorized_401)" 0
t1=$(counter throttled_429)
ge "throttle-single: 429s happened" "$t1" 10
eq "throttle-single: the fake saw 0 violations" "$(counter violations)" 0
le "throttle-single: max concurrency at the fake <= cap 8" "$(counter max_concurrency)" 8
eq "throttle-single: every record written" "$(counter writes)" 320

# 4b: batches into a small budget with throttled parts (a 429 inside the
#     batch response closes the window for every worker too)
fake_start --client-secret "$SEC" --budget 20 --window 1 --part-429-every 3
probe throttle-batch --scenario load --threads 4 --cap 6 --records 150 --batch 150 --backoff-cap 0.2 --prefix TB
dump
t2=$(counter throttled_429)
ge "throttle-batch: hundreds of 429s" "$t2" 200
eq "throttle-batch: the fake saw 0 violations" "$(counter violations)" 0
le "throttle-batch: max concurrency at the fake <= cap 6" "$(counter max_concurrency)" 6
eq "throttle-batch: every record written" "$(counter writes)" 600
echo "    429s in total: $((t1 + t2)) (single $t1, batch $t2)"

# --- 5. 503s, connection resets, latency -------------------------------------
fake_start --client-secret "$SEC" --fail-503-every 5 --reset-every 7 --latency-ms 3
probe chaos-single --scenario load --threads 4 --records 40 --prefix XS
probe chaos-batch --scenario load --threads 4 --records 60 --batch 10 --prefix XB
dump
ge "chaos: 503s were injected" "$(counter injected_503)" 10
ge "chaos: connections were reset" "$(counter resets)" 10
eq "chaos: every record written (writes >= 400)" "$(python3 -c "
import json; d=json.load(open('$T/dump.json'))
print(d['counters']['writes'] >= 400)")" True
fake_start --client-secret "$SEC" --reset-every 3 --reset-phase after
probe chaos-after --scenario load --threads 2 --records 30 --batch 5 --prefix XA
dump "&set=accounts"
eq "reset after execution: each key exists exactly once" "$(python3 -c "
import json, collections; d=json.load(open('$T/dump.json'))
c=collections.Counter(r.get('mlc_sapvendorid') for r in d['records'].get('accounts', []))
print(len(c) == 60 and max(c.values()) == 1)")" True

fake_stop
mlc_finish
