# Shared helpers for integration tests (sourced). Each test gets a private
# temp folder, a config on 127.0.0.1 port 0, and a server it starts and
# stops itself. Checks are counted; mlc_finish prints the tally and sets the
# exit status.
set -u
MLC_BUILD=${MLC_BUILD:-build}
MLC_ROOT=${MLC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=$MLC_ROOT/$MLC_BUILD/ml-connector
TOOLS=$MLC_ROOT/$MLC_BUILD/tools
FIX=$MLC_ROOT/test-fixtures
T=$(mktemp -d "${TMPDIR:-/tmp}/mlc-it.XXXXXX")
PASSES=0 FAILS=0 SERVER_PID=
export MLC_TEST_SAP_PASSWORD='s3cret-Pässword'
export MLC_TEST_DV_SECRET='dv-client-secret-value'
SAP_USER=SAPIDOC
SAP_AUTH="$SAP_USER:$MLC_TEST_SAP_PASSWORD"

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -9 "$SERVER_PID" 2>/dev/null; fi
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

ok()   { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
bad()  { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
check() { # check "description" command...
  local d=$1; shift
  if "$@"; then ok "$d"; else bad "$d"; fi
}
eq() { # eq "description" got want
  if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi
}
contains() { # contains "description" haystack needle
  case "$2" in *"$3"*) ok "$1" ;; *) bad "$1 ('$3' not in '$2')" ;; esac
}

# mlc_config [quota_mb] [max_body_mb] [extra JSON members for the top level]
# Delivery runs on $SCHEDULE: by default once a year (Jan 1, 00:00), so that
# ingest tests see their records stay pending; delivery tests set
# SCHEDULE=continuous and DV_URL to a fake Dataverse. DELIVERY adds members
# to the delivery object ('"batch_size": 1'); MAPPING names another mapping;
# LISTEN_EXTRA adds members to the listen object ('"tls_cert": "..."').
mlc_config() {
  local quota=${1:-64} body=${2:-8} extra=${3:-}
  cat >"$T/config.json" <<JSON
{
  "listen": { "address": "127.0.0.1", "port": 0, "threads": 2${LISTEN_EXTRA:+, $LISTEN_EXTRA} },
  "sap": { "path": "/sap/idoc", "username": "$SAP_USER", "password": "\${MLC_TEST_SAP_PASSWORD}", "max_body_mb": $body },
  "queue": { "path": "$T/queue", "max_size_mb": $quota },
  "dataverse": {
    "url": "${DV_URL:-http://127.0.0.1:9}",
    "token_url": "${DV_URL:-http://127.0.0.1:9}/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
    "tenant_id": "00000000-0000-0000-0000-000000000000",
    "client_id": "11111111-1111-1111-1111-111111111111",
    "client_secret": "\${MLC_TEST_DV_SECRET}"
  },
  "mapping": "${MAPPING:-$MLC_ROOT/config/mapping.json}",
  "delivery": { "schedule": "${SCHEDULE:-0 0 1 1 *}"${DELIVERY:+, $DELIVERY} }${extra:+,
  $extra}
}
JSON
}

# Start the server; sets PORT, URL, BASE. Fails the test if it does not
# log "listening on" within 10 s.
mlc_start() {
  : >"$T/server.log"
  # MLC_PRELOAD: a fault library (build/preload/*.so) for this server only.
  if [ -n "${MLC_PRELOAD:-}" ]; then
    LD_PRELOAD=$MLC_PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
      "$BIN" serve -c "$T/config.json" >>"$T/server.log" 2>&1 &
  else
    "$BIN" serve -c "$T/config.json" >>"$T/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  local i
  for i in $(seq 1 200); do
    if grep -q 'listening on' "$T/server.log"; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  PORT=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$T/server.log" | tail -1)
  if [ -z "$PORT" ]; then
    echo "server did not start:"; cat "$T/server.log"
    bad "server starts"; mlc_finish
  fi
  BASE=http://127.0.0.1:$PORT
  URL=$BASE/sap/idoc
}

# Stop with SIGTERM; returns the exit status.
mlc_stop() {
  local rc=0
  kill -TERM "$SERVER_PID" 2>/dev/null
  local i
  for i in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then kill -9 "$SERVER_PID"; rc=137; fi
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  SERVER_PID=
  return $rc
}

mlc_kill9() {
  kill -9 "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
  SERVER_PID=
}

# post FILE [curl args...] -> prints the status; body in $T/body, headers in
# $T/headers. The Content-Type is $CT (default text/xml).
post() {
  local f=$1; shift
  curl -s -o "$T/body" -D "$T/headers" -w '%{http_code}' --max-time 30 \
       -u "$SAP_AUTH" -H "Content-Type: ${CT:-text/xml}" --data-binary "@$f" "$@" "$URL"
}
body() { tr -d '\r' <"$T/body"; }

queue_cli() { "$BIN" queue -c "$T/config.json" "$@"; }
# state count from `queue stats`
qcount() { queue_cli stats | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

mlc_finish() {
  echo "$PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ] && exit 0
  [ -f "$T/server.log" ] && { echo "--- server log (tail)"; tail -n 30 "$T/server.log"; }
  exit 1
}

# ---- fake Dataverse helpers (delivery tests) ----
FAKE_PID=
# fake_start [fake_dataverse flags...] -> sets DV_URL (exported for mlc_config)
fake_start() {
  rm -f "$T/fake.port"
  "$TOOLS/fake_dataverse" --port 0 --port-file "$T/fake.port" "$@" 2>"$T/fake.log" &
  FAKE_PID=$!
  local i
  for i in $(seq 1 100); do [ -s "$T/fake.port" ] && break; sleep 0.05; done
  [ -s "$T/fake.port" ] || { cat "$T/fake.log"; bad "fake Dataverse starts"; mlc_finish; }
  export DV_URL="http://127.0.0.1:$(cat "$T/fake.port")"
}
fake_stop() { [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; FAKE_PID=; }
fake_dump() { curl -s "$DV_URL/_fake/dump" >"$T/dump.json"; }
fake_config() { curl -s -X POST -d "$1" "$DV_URL/_fake/config" >/dev/null; }
# dumpq 'python expression over d (the dump)'
dumpq() { python3 -c "import json; d=json.load(open('$T/dump.json')); print($1)"; }
# wait_settled N SECONDS: until delivered+failed+ignored >= N (or time out)
# wait_for_gone FILE SECONDS: until FILE no longer exists.
wait_for_gone() {
  local i
  for i in $(seq 1 $(($2 * 20))); do [ -e "$1" ] || return 0; sleep 0.05; done
  return 1
}
wait_settled() {
  local want=$1 secs=$2 i got=0
  for i in $(seq 1 $((secs * 10))); do
    got=$(queue_cli stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["delivered"]+s["failed"]+s["ignored"])')
    [ "$got" -ge "$want" ] && return 0
    sleep 0.1
  done
  echo "settled $got of $want after $secs s"
  return 1
}
_lib_cleanup_fake() { fake_stop; }
trap '_lib_cleanup_fake; cleanup' EXIT
