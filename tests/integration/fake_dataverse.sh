#!/usr/bin/env bash
# The fake Dataverse (test-fixtures/fake_dataverse.c), driven with curl:
# Entra token endpoint (secret and certificate credentials, errors, expiry),
# alternate-key upserts, conditional headers, unique keys, key escaping and
# aliases, DELETE, binds, validation, close actions, lookups, $batch
# (continue-on-error, atomic change sets, Content-ID, the 1000 limit),
# service protection (budget, Retry-After, violations, concurrency), fault
# injection (503, resets), and the control endpoints.
#
# Env: MLC_BUILD (build dir), MLC_ROOT (repo root). Prints "ok - ..." /
# "FAIL - ..." per check and "N passed, N failed"; exits non-zero on failure.
set -u
MLC_ROOT=${MLC_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
MLC_BUILD=${MLC_BUILD:-build}
case $MLC_BUILD in /*) BUILD_DIR=$MLC_BUILD ;; *) BUILD_DIR=$MLC_ROOT/$MLC_BUILD ;; esac
FAKE=$BUILD_DIR/tools/fake_dataverse
T=$(mktemp -d "${TMPDIR:-/tmp}/mlc-fdv.XXXXXX")
PASSES=0 FAILS=0
FAKE_PIDS=()

cleanup() {
  local p
  for p in "${FAKE_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ -n "${PYEVAL_PID:-}" ]; then     # closing its input ends the python coprocess
    [ -n "${PYEVAL[1]:-}" ] && eval "exec ${PYEVAL[1]}>&-"
    wait "$PYEVAL_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT

ok()  { PASSES=$((PASSES + 1)); echo "ok   - $*"; }
bad() { FAILS=$((FAILS + 1)); echo "FAIL - $*"; }
eq()  { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1 (got '$2', want '$3')"; fi; }
contains() { case "$2" in *"$3"*) ok "$1" ;; *) bad "$1 ('$3' not in '${2:0:300}')" ;; esac; }
finish() {
  echo "$PASSES passed, $FAILS failed"
  if [ "$FAILS" -ne 0 ]; then
    local f; for f in "$T"/*.err; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
    exit 1
  fi
  exit 0
}

if [ ! -x "$FAKE" ]; then bad "binary $FAKE exists"; finish; fi

# start_fake NAME [args...]: sets PORT and B (base URL) for that instance.
start_fake() {
  local name=$1; shift
  rm -f "$T/$name.port"
  "$FAKE" --port 0 --port-file "$T/$name.port" "$@" 2>"$T/$name.err" &
  FAKE_PIDS+=($!)
  local i
  for i in $(seq 1 200); do [ -s "$T/$name.port" ] && break; sleep 0.025; done
  PORT=$(cat "$T/$name.port" 2>/dev/null)
  B=http://127.0.0.1:$PORT
}

# jget FILE PYEXPR: evaluates PYEXPR with d = the JSON in FILE; jtext
# FILE PYEXPR with d = the text of FILE. One python process serves them all
# (a coprocess: starting python per check would cost most of the run time).
cat >"$T/eval.py" <<'PY'
import json, re, sys
for line in sys.stdin:
    mode, f, expr = line.rstrip("\n").split("\t", 2)
    try:
        d = json.load(open(f)) if mode == "J" else open(f, "rb").read().decode()
        out = str(eval(expr))
    except Exception as e:
        out = "ERR %r" % (e,)
    sys.stdout.write(out.replace("\n", "\\n") + "\n")
    sys.stdout.flush()
PY
coproc PYEVAL { exec python3 -u "$T/eval.py"; }
pyeval() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >&"${PYEVAL[1]}"; local r; IFS= read -r r <&"${PYEVAL[0]}"; printf '%s\n' "$r"; }
jget() { pyeval J "$1" "$2"; }
jtext() { pyeval T "$1" "$2"; }

# token CLIENT_ID SECRET [TENANT] -> prints the status; JSON in $T/tok.json
token() {
  curl -s -o "$T/tok.json" -w '%{http_code}' --max-time 10 -X POST "$B/${3:-contoso.onmicrosoft.com}/oauth2/v2.0/token" \
       -H 'Content-Type: application/x-www-form-urlencoded' \
       --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$1" \
       --data-urlencode "client_secret=$2" --data-urlencode "scope=$B/.default"
}
get_token() { token "$1" "$2" >/dev/null; jget "$T/tok.json" 'd["access_token"]'; }

# api METHOD PATH [JSON] [extra curl args...] -> prints the status; body in
# $T/body, headers in $T/hdr. Uses $TOK and the Dataverse headers of DV §2.
api() {
  local m=$1 p=$2 data=${3:-}; shift 3 2>/dev/null || shift $#
  local args=(-s -o "$T/body" -D "$T/hdr" -w '%{http_code}' --max-time 10 -X "$m"
              -H "Authorization: Bearer $TOK" -H 'Accept: application/json'
              -H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0')
  case "$*" in *If-None-Match*) ;; *) args+=(-H 'If-None-Match: null') ;; esac
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json; charset=utf-8' --data-binary "$data")
  curl "${args[@]}" "$@" "$B/api/data/v9.2/$p"
}
body() { cat "$T/body"; }
header() { tr -d '\r' <"$T/hdr" | sed -n "s/^$1: //Ip" | tail -1; }
dump() { curl -s --max-time 10 "$B/_fake/dump$1" >"$T/dump.json"; }
config() { curl -s --max-time 10 -o "$T/config.json" -w '%{http_code}' -X POST --data-binary "$1" "$B/_fake/config"; }
reset() { curl -s --max-time 10 -o /dev/null -X POST "$B/_fake/reset"; }

# Batch bodies: part METHOD URL JSON [CONTENT_ID] (boundary in $BND).
crlf() { printf '%s\r\n' "$@"; }
part() {
  crlf "--$BND" "Content-Type: application/http" "Content-Transfer-Encoding: binary"
  [ -n "${4:-}" ] && crlf "Content-ID: $4"
  crlf "" "$1 $2 HTTP/1.1" "Content-Type: application/json; type=entry" "" "$3"
}
# batch FILE [Prefer value] -> status; response in $T/body, $T/hdr
batch() {
  local args=(-s -o "$T/body" -D "$T/hdr" -w '%{http_code}' --max-time 20 -X POST
              -H "Authorization: Bearer $TOK" -H 'Accept: application/json'
              -H 'OData-MaxVersion: 4.0' -H 'OData-Version: 4.0'
              -H "Content-Type: multipart/mixed; boundary=\"$BND\"" --data-binary "@$1")
  [ -n "${2:-}" ] && args+=(-H "Prefer: $2")
  curl "${args[@]}" "$B/api/data/v9.2/\$batch"
}
# Statuses of the parts of $T/body, change sets flattened: "204 400 204".
part_statuses() { jtext "$T/body" '" ".join(re.findall(r"^HTTP/1\.1 (\d{3}) ", d, re.M))'; }

# ============================================================================
echo "# start, port file, loopback only"
start_fake main --client-id 11111111-1111-1111-1111-111111111111 --client-secret dv-secret \
  --dump-on-exit "$T/exit-dump.json"
MAIN_PID=${FAKE_PIDS[-1]}
MAIN_B=$B
contains "prints 'listening on 127.0.0.1:PORT' on stderr" "$(cat "$T/main.err")" "listening on 127.0.0.1:$PORT"
case $PORT in ''|*[!0-9]*) bad "port file holds the port ('$PORT')"; finish ;; *) ok "port file holds the port ($PORT)" ;; esac
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.2:$PORT/_fake/dump")
eq "not reachable on 127.0.0.2 (bound to 127.0.0.1 only)" "$code" "000"
CID=11111111-1111-1111-1111-111111111111

echo "# token endpoint"
st=$(token $CID dv-secret)
eq "client_credentials with the right secret: 200" "$st" 200
eq "token_type Bearer" "$(jget "$T/tok.json" 'd["token_type"]')" Bearer
eq "expires_in 3599 by default" "$(jget "$T/tok.json" 'd["expires_in"]')" 3599
TOK=$(jget "$T/tok.json" 'd["access_token"]')
eq "access_token is a 3-part JWT" "$(echo "$TOK" | awk -F. '{print NF}')" 3
st=$(token $CID wrong-secret)
eq "wrong secret: 401" "$st" 401
eq "wrong secret: error invalid_client" "$(jget "$T/tok.json" 'd["error"]')" invalid_client
contains "wrong secret: AADSTS7000215 in error_description" "$(jget "$T/tok.json" 'd["error_description"]')" "AADSTS7000215:"
eq "wrong secret: error_codes [7000215]" "$(jget "$T/tok.json" 'd["error_codes"]')" "[7000215]"
eq "Entra error carries trace_id, correlation_id, timestamp" \
   "$(jget "$T/tok.json" 'all(k in d for k in ("trace_id","correlation_id","timestamp"))')" True
st=$(token 99999999-9999-9999-9999-999999999999 dv-secret)
eq "unknown client_id: 400 AADSTS700016" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "400 700016"
st=$(curl -s -o "$T/tok.json" -w '%{http_code}' -X POST "$B/t/oauth2/v2.0/token" \
     -d "grant_type=client_credentials&client_id=$CID&client_secret=dv-secret&scope=https%3A%2F%2Forg.crm.dynamics.com")
eq "scope without /.default: 400 invalid_scope" "$st $(jget "$T/tok.json" 'd["error"]')" "400 invalid_scope"
st=$(curl -s -o "$T/tok.json" -w '%{http_code}' -X POST "$B/t/oauth2/v2.0/token" \
     -d "grant_type=client_credentials&client_id=$CID&scope=x%2F.default")
eq "no secret nor assertion: AADSTS7000218" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "401 7000218"
st=$(curl -s -o "$T/tok.json" -w '%{http_code}' -u "$CID:dv-secret" -X POST "$B/t/oauth2/v2.0/token" \
     -d "grant_type=client_credentials&scope=x%2F.default")
eq "client secret via HTTP Basic (RFC 6749) accepted" "$st" 200

echo "# 401 without a valid token"
SAVE=$TOK; TOK=not-a-token
st=$(api GET "accounts?\$top=1")
eq "unknown token: 401" "$st" 401
contains "401 carries WWW-Authenticate: Bearer authorization_uri=..." "$(header WWW-Authenticate)" "Bearer authorization_uri="
TOK=$SAVE

echo "# upsert by alternate key"
st=$(api PATCH "accounts(mlc_sapvendorid='0000100003')" '{"name":"Muster GmbH","address1_city":"Walldorf","customertypecode":11}')
eq "PATCH new key: 204" "$st" 204
eq "OData-EntityId names the key" "$(header OData-EntityId)" "$B/api/data/v9.2/accounts(mlc_sapvendorid='0000100003')"
eq "OData-Version: 4.0 header" "$(header OData-Version)" "4.0"
st=$(api PATCH "accounts(mlc_sapvendorid='0000100003')" '{"name":"Muster AG"}')
eq "PATCH same key again: 204 (update)" "$st" 204
dump "?log=0"
eq "one account, updated in place" "$(jget "$T/dump.json" '[(a["name"],a["address1_city"],a["_version"]) for a in d["records"]["accounts"]]')" \
   "[('Muster AG', 'Walldorf', 2)]"
eq "key column stored on create" "$(jget "$T/dump.json" 'd["records"]["accounts"][0]["mlc_sapvendorid"]')" 0000100003
st=$(api PATCH "accounts(mlc_sapvendorid='0000100004')?\$select=accountid" '{"name":"Rep"}' -H 'Prefer: return=representation')
eq "return=representation: 201 on create" "$st" 201
contains "representation carries accountid and @odata.etag" "$(body)" '"accountid":'
st=$(api PATCH "accounts(mlc_sapvendorid='0000100004')?\$select=accountid" '{"name":"Rep2"}' -H 'Prefer: return=representation')
eq "return=representation: 200 on update" "$st" 200
st=$(api PATCH "accounts(mlc_sapvendorid='0000100099')" '{"name":"x"}' -H 'If-Match: *')
eq "If-Match: * on a missing record: 404" "$st" 404
st=$(api PATCH "accounts(mlc_sapvendorid='0000100003')" '{"name":"x"}' -H 'If-None-Match: *')
eq "If-None-Match: * on an existing record: 412" "$st" 412
contains "412 message" "$(body)" "A record with matching key values already exists."
st=$(api PATCH "accounts(mlc_sapvendorid='0000100003')" '{"name":"Muster AG"}' -H 'If-Match: *')
eq "If-Match: * on an existing record: 204" "$st" 204
st=$(api PATCH "accountz(mlc_sapvendorid='1')" '{"name":"x"}')
eq "unknown entity set: 404 0x8006088a" "$st $(jget "$T/body" 'd["error"]["code"]')" "404 0x8006088a"

echo "# one record, two keys; unique keys"
st=$(api PATCH "accounts(mlc_sapvendorid='0000300001')" '{"name":"Both","mlc_sapcustomerid":"0000400001"}')
eq "vendor upsert carrying the customer key: 204" "$st" 204
st=$(api PATCH "accounts(mlc_sapcustomerid='0000400001')" '{"name":"Both via customer"}')
eq "upsert by the other key: 204" "$st" 204
dump "?log=0"
eq "addressed by either key: still one record, version 2" \
   "$(jget "$T/dump.json" '[(a["name"],a["mlc_sapvendorid"],a["_version"]) for a in d["records"]["accounts"] if a.get("mlc_sapcustomerid")=="0000400001"]')" \
   "[('Both via customer', '0000300001', 2)]"
st=$(api PATCH "accounts(mlc_sapvendorid='0000300002')" '{"name":"Other","mlc_sapcustomerid":"0000400001"}')
eq "key value owned by another record: 412" "$st" 412
eq "duplicate key: code 0x80060892" "$(jget "$T/body" 'd["error"]["code"]')" 0x80060892
contains "duplicate key: Dataverse's message" "$(jget "$T/body" 'd["error"]["message"]')" "A record that has the attribute values 0000400001 already exists."
dump "?log=0"
eq "the failed upsert created nothing" "$(jget "$T/dump.json" 'sum(1 for a in d["records"]["accounts"] if a.get("mlc_sapvendorid")=="0000300002")')" 0
st=$(api PATCH "accounts(mlc_sapvendorid='abc0001')" '{"name":"lower"}')
st=$(api PATCH "accounts(mlc_sapvendorid='ABC0001')" '{"name":"upper"}')
dump "?log=0"
eq "keys compare case-insensitively (SQL collation): one record" \
   "$(jget "$T/dump.json" '[a["name"] for a in d["records"]["accounts"] if a["mlc_sapvendorid"].lower()=="abc0001"]')" "['upper']"

echo "# key escaping"
st=$(api PATCH "accounts(mlc_sapvendorid='O''Brien%20%26%20Sons')" '{"name":"quote"}')
eq "quote doubled, %20 decoded in the key: 400 for '&' in a path key" "$st" 400
contains "refused like ASP.NET request filtering" "$(body)" "potentially dangerous Request.Path"
st=$(api PATCH "accounts(mlc_sapvendorid='O''Brien%20Sons')" '{"name":"quote"}')
eq "key with a doubled quote and %20: 204" "$st" 204
st=$(api GET "accounts(mlc_sapvendorid=%27O%27%27Brien%20Sons%27)")
eq "same key fully percent-encoded finds it" "$st $(jget "$T/body" 'd["name"]')" "200 quote"
dump "?log=0"
eq "stored key value unescaped" "$(jget "$T/dump.json" '[a["mlc_sapvendorid"] for a in d["records"]["accounts"] if a["name"]=="quote"]')" "[\"O'Brien Sons\"]"
st=$(api PATCH "salesorders(mlc_sapponumber=@k)?@k='PO%2F17%2B1'" '{"name":"PO 17"}')
eq "parameter alias carries '/' and '+': 204" "$st" 204
st=$(api GET "salesorders(mlc_sapponumber=@k)?@k=%27PO%2F17%2B1%27")
eq "alias GET finds it" "$st $(jget "$T/body" 'd["mlc_sapponumber"]')" "200 PO/17+1"

echo "# delete"
st=$(api DELETE "accounts(mlc_sapvendorid='0000100004')")
eq "DELETE existing: 204" "$st" 204
st=$(api DELETE "accounts(mlc_sapvendorid='0000100004')")
eq "DELETE missing: 404" "$st" 404
eq "DELETE missing: 0x80060891" "$(jget "$T/body" 'd["error"]["code"]')" 0x80060891

echo "# binds"
st=$(api PATCH "contacts(mlc_sapcontactid='0000152955')" \
  '{"lastname":"Meyer","parentcustomerid_account@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000999999'"'"')"}')
eq "bind to a missing key: 404" "$st" 404
eq "bind to a missing key: 0x80060891" "$(jget "$T/body" 'd["error"]["code"]')" 0x80060891
contains "bind to a missing key: message" "$(jget "$T/body" 'd["error"]["message"]')" "A record with the specified key values does not exist in account entity"
st=$(api PATCH "contacts(mlc_sapcontactid='0000152955')" \
  '{"lastname":"Meyer","parentcustomerid_account@odata.bind":"/accounts(00000000-0000-4000-8000-00000000dead)"}')
eq "bind to a missing GUID: 404 0x80040217" "$st $(jget "$T/body" 'd["error"]["code"]')" "404 0x80040217"
st=$(api PATCH "contacts(mlc_sapcontactid='0000152955')" \
  '{"lastname":"Meyer","parentcustomerid@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000100003'"'"')"}')
eq "undeclared navigation property (no _account): 400" "$st" 400
contains "undeclared navigation property: OData's message" "$(body)" "An undeclared property 'parentcustomerid'"
st=$(api PATCH "contacts(mlc_sapcontactid='0000152955')" \
  '{"firstname":"Anna","lastname":"Meyer","parentcustomerid_account@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000100003'"'"')","transactioncurrencyid@odata.bind":"/transactioncurrencies(7e0c0000-0000-4000-8000-000000000978)"}')
eq "bind to an existing account: 204" "$st" 204
dump "?log=0"
VID=$(jget "$T/dump.json" '[a["_id"] for a in d["records"]["accounts"] if a.get("mlc_sapvendorid")=="0000100003"][0]')
eq "bind recorded with the resolved account id" "$(jget "$T/dump.json" 'd["records"]["contacts"][0]["_binds"]["parentcustomerid_account"]["id"]')" "$VID"
eq "GUID bind recorded" "$(jget "$T/dump.json" 'd["records"]["contacts"][0]["_binds"]["transactioncurrencyid"]["id"]')" 7e0c0000-0000-4000-8000-000000000978
st=$(api GET "contacts(mlc_sapcontactid='0000152955')?\$select=lastname,_parentcustomerid_value")
eq "GET exposes _parentcustomerid_value" "$st $(jget "$T/body" 'd["_parentcustomerid_value"]')" "200 $VID"

echo "# validation"
N161=$(printf 'N%.0s' $(seq 1 161)); N160=${N161:1}
st=$(api PATCH "accounts(mlc_sapvendorid='0000500001')" "{\"name\":\"$N161\"}")
eq "name of 161 characters: 400" "$st" 400
eq "too long: code 0x80044331" "$(jget "$T/body" 'd["error"]["code"]')" 0x80044331
contains "too long: Dataverse's message" "$(jget "$T/body" 'd["error"]["message"]')" \
  "The length of the 'name' attribute of the 'account' entity exceeded the maximum allowed length of '160'."
st=$(api PATCH "accounts(mlc_sapvendorid='0000500001')" "{\"name\":\"$N160\"}")
eq "name of 160 characters: 204" "$st" 204
U50=$(printf '\xc3\xa4%.0s' $(seq 1 50))
st=$(api PATCH "contacts(mlc_sapcontactid='0000500002')" "{\"lastname\":\"$U50\"}")
eq "50 non-ASCII characters in lastname (max 50, counted in characters): 204" "$st" 204
st=$(api PATCH "accounts(mlc_sapvendorid='0000500001')" '{"customertypecode":"eleven"}')
eq "wrong type: 400 0x80048d19" "$st $(jget "$T/body" 'd["error"]["code"]')" "400 0x80048d19"
st=$(api PATCH "opportunityproducts(mlc_sappoitemid='X-10')" '{"quantity":"1"}')
eq "decimal sent as a string: 400" "$st" 400
st=$(api PATCH "accounts(mlc_sapvendorid='0000500001')" '{"name":"x"' )
eq "invalid JSON: 400" "$st" 400
st=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOK" -H 'Content-Type: text/plain' \
     --data-binary '{"name":"x"}' "$B/api/data/v9.2/accounts(mlc_sapvendorid='0000500001')")
eq "body without a JSON Content-Type: 415" "$st" 415

echo "# lookups"
st=$(api GET "transactioncurrencies?\$select=transactioncurrencyid&\$filter=isocurrencycode%20eq%20'EUR'&\$top=1")
eq "currency by isocurrencycode: EUR's fixed GUID" "$st $(jget "$T/body" 'd["value"][0]["transactioncurrencyid"]')" "200 7e0c0000-0000-4000-8000-000000000978"
st=$(api GET "transactioncurrencies?\$filter=isocurrencycode%20eq%20'USD'%20or%20isocurrencycode%20eq%20'GBP'&\$select=isocurrencycode")
eq "\$filter with or" "$(jget "$T/body" 'sorted(v["isocurrencycode"] for v in d["value"])')" "['GBP', 'USD']"
st=$(api GET "pricelevels?\$select=pricelevelid&\$filter=name%20eq%20'SAP%20Default'")
eq "price list 'SAP Default' by name: fixed GUID" "$st $(jget "$T/body" 'd["value"][0]["pricelevelid"]')" "200 9c1e0000-0000-4000-8000-000000000001"
st=$(api GET "transactioncurrencies?\$filter=isocurrencycode%20eq%20'XXX'")
eq "no match: empty value" "$st $(jget "$T/body" 'd["value"]')" "200 []"
st=$(api GET "accounts?\$select=accountid,mlc_sapvendorid,mlc_sapcustomerid&\$filter=mlc_sapvendorid%20eq%20'0000300001'%20or%20mlc_sapcustomerid%20eq%20'0000400001'")
eq "link query (vendor or customer key): one merged row" "$(jget "$T/body" 'len(d["value"])')" 1

echo "# close actions and state rules"
api PATCH "opportunities(mlc_sapponumber='4500000001')" \
  '{"name":"PO 4500000001","customerid_account@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000100003'"'"')"}' >/dev/null
st=$(api PATCH "opportunities(mlc_sapponumber='4500000001')" '{"statecode":2,"statuscode":4}')
eq "PATCH statecode 2 on an opportunity: 400 (needs LoseOpportunity)" "$st" 400
contains "state rule message" "$(body)" "use the LoseOpportunityRequest message instead"
st=$(api POST "LoseOpportunity" '{"OpportunityClose":{"subject":"SAP: PO reversed","opportunityid@odata.bind":"/opportunities(mlc_sapponumber='"'"'4500000001'"'"')"},"Status":4}')
eq "LoseOpportunity: 204" "$st" 204
dump "?log=0"
eq "opportunity closed as lost: statecode 2, statuscode 4" \
   "$(jget "$T/dump.json" '[(o["statecode"],o["statuscode"]) for o in d["records"]["opportunities"]]')" "[(2, 4)]"
eq "an opportunityclose activity bound to it" \
   "$(jget "$T/dump.json" 'd["records"]["opportunitycloses"][0]["_binds"]["opportunityid"]["id"]==d["records"]["opportunities"][0]["_id"]')" True
st=$(api POST "LoseOpportunity" '{"OpportunityClose":{"opportunityid@odata.bind":"/opportunities(mlc_sapponumber='"'"'4599999999'"'"')"},"Status":4}')
eq "LoseOpportunity on a missing PO: 404 0x80060891" "$st $(jget "$T/body" 'd["error"]["code"]')" "404 0x80060891"
api PATCH "salesorders(mlc_sapponumber='4500000002')" '{"name":"PO 4500000002"}' >/dev/null
st=$(api POST "CancelSalesOrder" '{"OrderClose":{"salesorderid@odata.bind":"/salesorders(mlc_sapponumber='"'"'4500000002'"'"')"},"Status":4}')
eq "CancelSalesOrder: 204" "$st" 204

echo "# \$batch: independent parts"
BND=batch_t1
{ part PATCH "/api/data/v9.2/accounts(mlc_sapvendorid='0000600001')" '{"name":"B1"}'
  part PATCH "/api/data/v9.2/accounts(mlc_sapvendorid='0000600002')" "{\"name\":\"$N161\"}"
  part PATCH "$B/api/data/v9.2/accounts(mlc_sapvendorid='0000600003')" '{"name":"B3"}'
  crlf "--$BND--"; } >"$T/b1"
st=$(batch "$T/b1" odata.continue-on-error)
eq "continue-on-error: batch 200" "$st" 200
contains "response is multipart/mixed with a batchresponse_ boundary" "$(header Content-Type)" "multipart/mixed; boundary=batchresponse_"
eq "continue-on-error: one status per part" "$(part_statuses)" "204 400 204"
contains "failed part carries Dataverse's JSON error" "$(body)" '{"error":{"code":"0x80044331"'
contains "parts are application/http, binary" "$(body)" $'Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n'
dump "?log=0"
eq "the other parts were applied" \
   "$(jget "$T/dump.json" 'sorted(a["name"] for a in d["records"]["accounts"] if a["mlc_sapvendorid"].startswith("00006"))')" "['B1', 'B3']"
BND=batch_t2
{ part PATCH "accounts(mlc_sapvendorid='0000610001')" '{"name":"S1"}'
  part PATCH "accounts(mlc_sapvendorid='0000610002')" "{\"name\":\"$N161\"}"
  part PATCH "accounts(mlc_sapvendorid='0000610003')" '{"name":"S3"}'
  crlf "--$BND--"; } >"$T/b2"
st=$(batch "$T/b2")
eq "without continue-on-error: the batch returns the failing status" "$st" 400
eq "without continue-on-error: processing stops at the failure" "$(part_statuses)" "204 400"
dump "?log=0"
eq "nothing after the failure was applied" \
   "$(jget "$T/dump.json" 'sorted(a["name"] for a in d["records"]["accounts"] if a["mlc_sapvendorid"].startswith("000061"))')" "['S1']"

echo "# \$batch: change sets"
BND=batch_t3; CS=changeset_t3
{ crlf "--$BND" "Content-Type: multipart/mixed; boundary=$CS" ""
  BND=$CS part PATCH "opportunities(mlc_sapponumber='4500000100')" '{"name":"PO 4500000100","customerid_account@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000100003'"'"')"}' 1
  BND=$CS part PATCH "opportunityproducts(mlc_sappoitemid='4500000100-00010')" '{"productdescription":"Bolt","quantity":10,"priceperunit":1.01,"isproductoverridden":true,"opportunityid@odata.bind":"$1"}' 2
  BND=$CS part PATCH "opportunityproducts(mlc_sappoitemid='4500000100-00020')" '{"productdescription":"Nut","quantity":5,"opportunityid@odata.bind":"/opportunities(mlc_sapvendorid='"'"'nope'"'"')"}' 3
  crlf "--$CS--"
  part PATCH "accounts(mlc_sapvendorid='0000620001')" '{"name":"after the change set"}'
  crlf "--$BND--"; } >"$T/b3"
st=$(batch "$T/b3" odata.continue-on-error)
eq "failed change set with continue-on-error: 200" "$st" 200
contains "change set answered as a nested changesetresponse_" "$(body)" "boundary=changesetresponse_"
eq "failed change set: only the failing request's response, then the next part" "$(part_statuses)" "404 204"
contains "failing change-set part echoes its Content-ID" "$(body)" $'Content-ID: 3\r\n\r\nHTTP/1.1 404'
dump "?log=1"
eq "atomic: nothing of the change set applied" \
   "$(jget "$T/dump.json" '[len(d["records"]["opportunities"]), len(d["records"]["opportunityproducts"])]')" "[1, 0]"
eq "the log marks the rolled-back writes" \
   "$(jget "$T/dump.json" 'sum(1 for e in d["log"] if e.get("rolled_back"))')" 2
config '{"changeset_failure_stops":true}' >/dev/null
st=$(batch "$T/b3" odata.continue-on-error)
eq "changeset_failure_stops: nothing after a failed change set (powerapps-docs#2735)" "$st $(part_statuses)" "200 404"
config '{"changeset_failure_stops":false}' >/dev/null
BND=batch_t4; CS=changeset_t4
{ crlf "--$BND" "Content-Type: multipart/mixed; boundary=$CS" ""
  BND=$CS part PATCH "opportunities(mlc_sapponumber='4500000100')" '{"name":"PO 4500000100","customerid_account@odata.bind":"/accounts(mlc_sapvendorid='"'"'0000100003'"'"')"}' 1
  BND=$CS part PATCH "opportunityproducts(mlc_sappoitemid='4500000100-00010')" '{"productdescription":"Bolt","quantity":10,"priceperunit":1.01,"isproductoverridden":true,"opportunityid@odata.bind":"$1"}' 2
  BND=$CS part PATCH '$1' '{"estimatedvalue":10.1}' 3
  crlf "--$CS--"
  crlf "--$BND--"; } >"$T/b4"
st=$(batch "$T/b4" odata.continue-on-error)
eq "change set with Content-ID references: all 204" "$st $(part_statuses)" "200 204 204 204"
contains "Content-ID echoed in the change set response" "$(body)" $'Content-ID: 2\r\n\r\nHTTP/1.1 204'
dump "?log=0"
eq "line bound to the header through \$1" \
   "$(jget "$T/dump.json" 'd["records"]["opportunityproducts"][0]["_binds"]["opportunityid"]["id"]==[o for o in d["records"]["opportunities"] if o["mlc_sapponumber"]=="4500000100"][0]["_id"]')" True
eq "PATCH \$1 updated the header" \
   "$(jget "$T/dump.json" '[o["estimatedvalue"] for o in d["records"]["opportunities"] if o["mlc_sapponumber"]=="4500000100"]')" "[10.1]"
BND=batch_t5; CS=changeset_t5
{ crlf "--$BND" "Content-Type: multipart/mixed; boundary=$CS" ""
  BND=$CS part PATCH "opportunityproducts(mlc_sappoitemid='4500000100-00030')" '{"productdescription":"x","opportunityid@odata.bind":"$7"}' 1
  crlf "--$CS--" "--$BND--"; } >"$T/b5"
st=$(batch "$T/b5" odata.continue-on-error)
contains "undeclared Content-ID reference: Dataverse's message" "$(body)" "Content-ID Reference: '\$7' does not exist in the batch context."
python3 - "$T/b6" <<'PY'
import sys
with open(sys.argv[1], "w", newline="") as f:
    for i in range(1001):
        f.write("--batch_big\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                "PATCH accounts(mlc_sapvendorid='9%06d') HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"n\"}\r\n" % i)
    f.write("--batch_big--\r\n")
PY
BND=batch_big
st=$(batch "$T/b6" odata.continue-on-error)
eq "1001 requests in one batch: 400" "$st" 400
dump "?log=0"
eq "... and none executed" "$(jget "$T/dump.json" 'sum(1 for a in d["records"]["accounts"] if a["mlc_sapvendorid"].startswith("9"))')" 0

echo "# write log and per-key order"
for v in 1 2 3 4 5; do api PATCH "accounts(mlc_sapvendorid='0000200001')" "{\"name\":\"v$v\"}" >/dev/null; done
dump ""
eq "log: bodies of one key in sequence order" \
   "$(jget "$T/dump.json" '[e["body"]["name"] for e in sorted(d["log"], key=lambda e: e["seq"]) if e["set"]=="accounts" and e["key"]=="mlc_sapvendorid='"'"'0000200001'"'"'"]')" \
   "['v1', 'v2', 'v3', 'v4', 'v5']"
eq "log entry shape" "$(jget "$T/dump.json" 'sorted(k for k in ("seq","method","set","key","status","body","applied","id") if k in d["log"][0])')" \
   "['applied', 'body', 'id', 'key', 'method', 'seq', 'set', 'status']"
eq "record ends with the last version" \
   "$(jget "$T/dump.json" '[(a["name"],a["_version"]) for a in d["records"]["accounts"] if a["mlc_sapvendorid"]=="0000200001"]')" "[('v5', 5)]"
eq "dump: records/counters/log" "$(jget "$T/dump.json" 'sorted(k for k in d if k in ("records","counters","log"))')" "['counters', 'log', 'records']"
eq "dump: all counters present" \
   "$(jget "$T/dump.json" 'all(k in d["counters"] for k in ("requests","token_requests","tokens_issued","throttled_429","violations","max_concurrency","injected_503","resets","batches","unauthorized_401"))')" True
eq "dump: counters count" "$(jget "$T/dump.json" '(d["counters"]["batches"]>=5, d["counters"]["unauthorized_401"], d["counters"]["tokens_issued"])')" "(True, 1, 2)"
eq "dump: records carry _id, _version, _binds" \
   "$(jget "$T/dump.json" 'all(k in d["records"]["contacts"][0] for k in ("_id","_version","_binds"))')" True
eq "no header warnings for well-formed requests" "$(jget "$T/dump.json" 'd["counters"]["header_warnings"]')" 1

echo "# control: config, reset"
st=$(config '{"nonsense":1}')
eq "/_fake/config with an unknown name: 400" "$st" 400
st=$(config '{"latency_ms":0,"fail_503_every":0}')
eq "/_fake/config answers the settings" "$st $(jget "$T/config.json" 'd["max_concurrency"]')" "200 52"
reset
dump ""
eq "/_fake/reset: records cleared, seeds back" \
   "$(jget "$T/dump.json" '(len(d["records"]["accounts"]), len(d["records"]["transactioncurrencies"]), len(d["records"]["pricelevels"]))')" "(0, 3, 1)"
eq "/_fake/reset: log and counters cleared" "$(jget "$T/dump.json" '(len(d["log"]), d["counters"]["requests"])')" "(0, 0)"

echo "# --require-keys (at run time)"
config '{"require_keys":true}' >/dev/null
st=$(api PATCH "accounts(accountnumber='A-1')" '{"name":"x"}')
eq "upsert by an undeclared key: 400 0x80060890" "$st $(jget "$T/body" 'd["error"]["code"]')" "400 0x80060890"
st=$(api PATCH "accounts(mlc_sapvendorid='0000700001')" '{"name":"x"}')
eq "upsert by a declared key: 204" "$st" 204
config '{"require_keys":false}' >/dev/null

echo "# service protection: budget, Retry-After, violations"
reset
config '{"budget":5,"window":1,"violation_grace_ms":0}' >/dev/null
codes=""; for i in 1 2 3 4 5; do codes="$codes $(api GET "accounts?\$top=1")"; done
eq "5 requests within the budget of 5/1 s: all 200" "$codes" " 200 200 200 200 200"
eq "x-ms-ratelimit-burst-remaining-xrm-requests counts down" "$(header x-ms-ratelimit-burst-remaining-xrm-requests)" 0
st=$(api GET "accounts?\$top=1")
eq "6th request: 429" "$st" 429
RA=$(header Retry-After)
eq "429 carries Retry-After (whole seconds, 1)" "$RA" 1
eq "429 code 0x80072322" "$(jget "$T/body" 'd["error"]["code"]')" 0x80072322
contains "429 message names the limit" "$(jget "$T/body" 'd["error"]["message"]')" "Number of requests exceeded the limit of 5 over time window of 1 seconds."
st=$(api GET "accounts?\$top=1")
eq "a request inside the Retry-After window: 429 again" "$st" 429
dump "?log=0"
eq "... counted as a violation" "$(jget "$T/dump.json" 'd["counters"]["violations"]')" 1
sleep "$RA"
st=$(api GET "accounts?\$top=1")
eq "after waiting Retry-After: 200" "$st" 200
reset
n200=0; n429=0
for i in $(seq 1 14); do
  for try in 1 2 3 4 5; do
    st=$(api GET "accounts?\$top=1")
    if [ "$st" = 429 ]; then n429=$((n429 + 1)); sleep "$(header Retry-After)"; else break; fi
  done
  [ "$st" = 200 ] && n200=$((n200 + 1))
done
dump "?log=0"
eq "a client honouring Retry-After gets everything through" "$n200" 14
eq "... was throttled" "$([ "$n429" -ge 1 ] && echo yes)" yes
eq "... and caused 0 violations" "$(jget "$T/dump.json" 'd["counters"]["violations"]')" 0
reset
BND=batch_cnt
{ for i in $(seq 1 10); do part GET "accounts?\$top=1" ""; done; crlf "--$BND--"; } >"$T/b7"
st=$(batch "$T/b7" odata.continue-on-error)
eq "a \$batch of 10 GETs within the budget" "$st $(part_statuses)" "200 200 200 200 200 200 200 200 200 200 200"
codes=""; for i in 1 2 3 4; do codes="$codes $(api GET "accounts?\$top=1")"; done
eq "the \$batch counted as one request: 4 more fit" "$codes" " 200 200 200 200"
st=$(api GET "accounts?\$top=1")
eq "... and the next is over the budget" "$st" 429
sleep 1.05
config '{"budget":0,"violation_grace_ms":50}' >/dev/null

echo "# service protection: concurrency"
reset
config '{"max_concurrency":2,"latency_ms":400}' >/dev/null
pids=()
for i in 1 2 3 4 5; do
  ( api GET "accounts?\$top=1" >"$T/conc.$i"; cp "$T/body" "$T/conc.$i.body" 2>/dev/null ) &
  pids+=($!)
done
wait "${pids[@]}"
n429=0; c429=""
for i in 1 2 3 4 5; do [ "$(cat "$T/conc.$i")" = 429 ] && { n429=$((n429 + 1)); c429=$T/conc.$i.body; }; done
eq "5 parallel requests over a limit of 2: some 429" "$([ "$n429" -ge 1 ] && echo yes)" yes
dump "?log=0"
eq "concurrency 429: code 0x80072326" "$(grep -o '0x80072326' "$T"/conc.*.body | head -1 | cut -d: -f2)" 0x80072326
eq "max_concurrency observed > 2" "$(jget "$T/dump.json" 'd["counters"]["max_concurrency"] > 2')" True
config '{"max_concurrency":52,"latency_ms":0}' >/dev/null
sleep 1.05

echo "# fault injection"
reset
config '{"fail_503_every":3}' >/dev/null
codes=""; for i in 1 2 3 4 5 6; do codes="$codes $(api GET "accounts?\$top=1")"; done
eq "every 3rd request: 503" "$codes" " 200 200 503 200 200 503"
contains "503 with a JSON error body" "$(body)" '{"error":{"code":'
dump "?log=0"
eq "injected_503 counted" "$(jget "$T/dump.json" 'd["counters"]["injected_503"]')" 2
config '{"fail_503_every":0}' >/dev/null
reset
config '{"reset_every":2}' >/dev/null
codes=""; for i in 1 2 3 4; do codes="$codes $(api GET "accounts?\$top=1")"; done
eq "every 2nd request: connection closed without an answer" "$codes" " 200 000 200 000"
dump "?log=0"
eq "resets counted" "$(jget "$T/dump.json" 'd["counters"]["resets"]')" 2
reset
config '{"reset_every":2,"reset_phase":"after"}' >/dev/null
api PATCH "accounts(mlc_sapvendorid='0000800001')" '{"name":"r1"}' >/dev/null
st=$(api PATCH "accounts(mlc_sapvendorid='0000800002')" '{"name":"r2"}')
config '{"reset_every":0,"reset_phase":"before"}' >/dev/null
eq "reset after execution: the client sees no answer" "$st" 000
st=$(api GET "accounts(mlc_sapvendorid='0000800002')")
eq "... but the write was applied" "$st $(jget "$T/body" 'd["name"]')" "200 r2"
reset
config '{"part_429_every":2}' >/dev/null
BND=batch_p429
{ for i in 1 2 3; do part PATCH "accounts(mlc_sapvendorid='000090000$i')" '{"name":"p"}'; done; crlf "--$BND--"; } >"$T/b8"
st=$(batch "$T/b8" odata.continue-on-error)
eq "429 inside a batch part" "$st $(part_statuses)" "200 204 429 204"
contains "part 429 carries Retry-After" "$(body)" "Retry-After: 1"
config '{"part_429_every":0}' >/dev/null
sleep 1.05

echo "# token expiry"
config '{"token_lifetime":1}' >/dev/null
token $CID dv-secret >/dev/null
eq "expires_in follows token_lifetime" "$(jget "$T/tok.json" 'd["expires_in"]')" 1
TOK=$(jget "$T/tok.json" 'd["access_token"]')
st=$(api GET "accounts?\$top=1")
eq "fresh short-lived token: 200" "$st" 200
sleep 1.1
st=$(api GET "accounts?\$top=1")
eq "after the lifetime: 401" "$st" 401
contains "expired: WWW-Authenticate Bearer" "$(header WWW-Authenticate)" "Bearer authorization_uri="
config '{"token_lifetime":3599}' >/dev/null
TOK=$(get_token $CID dv-secret)
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$B/_fake/revoke")
st=$(api GET "accounts?\$top=1")
eq "/_fake/revoke: tokens refused with 401" "$st" 401

echo "# certificate credential (client assertion)"
if command -v openssl >/dev/null; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 2 -subj /CN=mlc-test >/dev/null 2>&1
  start_fake cert --client-id $CID --client-cert "$T/cert.pem"
  b64u() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
  S256=$(openssl x509 -in "$T/cert.pem" -outform DER | openssl dgst -sha256 -binary | b64u)
  S1=$(openssl x509 -in "$T/cert.pem" -outform DER | openssl dgst -sha1 -binary | b64u)
  # jwt ALG THUMB_HEADER THUMB AUD EXP_OFFSET
  jwt() {
    local now; now=$(date +%s)
    local h p sig
    h=$(printf '{"alg":"%s","typ":"JWT","%s":"%s"}' "$1" "$2" "$3" | b64u)
    p=$(printf '{"aud":"%s","iss":"%s","sub":"%s","jti":"%s","nbf":%d,"iat":%d,"exp":%d}' \
        "$4" $CID $CID "$(cat /proc/sys/kernel/random/uuid)" $((now - 5)) $((now - 5)) $((now + $5)) | b64u)
    if [ "$1" = PS256 ]; then
      sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$T/key.pem" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 | b64u)
    else
      sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -sign "$T/key.pem" | b64u)
    fi
    printf '%s.%s.%s' "$h" "$p" "$sig"
  }
  AUD="$B/tenant-x/oauth2/v2.0/token"
  assert_token() {
    curl -s -o "$T/tok.json" -w '%{http_code}' -X POST "$AUD" \
      --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$CID" \
      --data-urlencode "scope=$B/.default" \
      --data-urlencode client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer \
      --data-urlencode "client_assertion=$1"
  }
  eq "PS256 assertion with x5t#S256, signature verified: 200" "$(assert_token "$(jwt PS256 'x5t#S256' "$S256" "$AUD" 300)")" 200
  eq "RS256 assertion with x5t: 200" "$(assert_token "$(jwt RS256 x5t "$S1" "$AUD" 300)")" 200
  st=$(assert_token "$(jwt PS256 'x5t#S256' "$S256" "https://login.microsoftonline.com/other/oauth2/v2.0/token" 300)")
  eq "wrong aud: 401 AADSTS700023" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "401 700023"
  st=$(assert_token "$(jwt PS256 'x5t#S256' "$S256" "$AUD" -10)")
  eq "expired assertion: 401 AADSTS700024" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "401 700024"
  J=$(jwt PS256 'x5t#S256' "$S256" "$AUD" 300); J="${J%?????}AAAAA"
  st=$(assert_token "$J")
  eq "bad signature: 401 AADSTS700027" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "401 700027"
  st=$(assert_token "$(jwt PS256 'x5t#S256' "AAAA$S256" "$AUD" 300)")
  eq "unknown thumbprint: 401 AADSTS700027" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "401 700027"
  st=$(assert_token "not.a-jwt")
  eq "malformed assertion: 400 AADSTS50027" "$st $(jget "$T/tok.json" 'd["error_codes"][0]')" "400 50027"
  kill -TERM "${FAKE_PIDS[-1]}"; wait "${FAKE_PIDS[-1]}"; rc=$?
  eq "certificate instance exits 0 on SIGTERM" "$rc" 0
else
  ok "openssl CLI missing: certificate checks skipped"
fi

echo "# metadata: EntityDefinitions, --bare-schema, key index status"
start_fake mdd
MDD_PID=${FAKE_PIDS[-1]}
TOK=$(get_token $CID x)
st=$(api GET "EntityDefinitions(LogicalName='account')?\$select=LogicalName&\$expand=Keys(\$select=KeyAttributes,EntityKeyIndexStatus)")
eq "default: the mlc_* keys are there and Active" "$st $(jget "$T/body" 'sorted((k["KeyAttributes"][0], k["EntityKeyIndexStatus"]) for k in d["Keys"])')" \
  "200 [('mlc_sapcustomerid', 'Active'), ('mlc_sapvendorid', 'Active')]"
start_fake md --bare-schema --key-delay-ms 150
MD_PID=${FAKE_PIDS[-1]}
TOK=$(get_token $CID x)
st=$(api GET "EntityDefinitions?\$select=LogicalName,EntitySetName&\$filter=EntitySetName%20eq%20'opportunityproducts'")
eq "table by entity set name" "$st $(jget "$T/body" '[e["LogicalName"] for e in d["value"]]')" "200 ['opportunityproduct']"
st=$(api GET "EntityDefinitions(LogicalName='account')?\$select=LogicalName,EntitySetName&\$expand=Attributes(\$select=LogicalName,AttributeType),Keys")
eq "bare: account has no mlc_* column and no key" \
  "$st $(jget "$T/body" '[a["LogicalName"] for a in d["Attributes"] if a["LogicalName"].startswith("mlc_")], d["Keys"], d["EntitySetName"]')" \
  "200 ([], [], 'accounts')"
eq "... but its standard and lookup columns" \
  "$(jget "$T/body" 'sorted((a["LogicalName"], a["AttributeType"]) for a in d["Attributes"] if a["LogicalName"] in ("name", "accountid", "transactioncurrencyid", "statecode", "customertypecode"))')" \
  "[('accountid', 'Uniqueidentifier'), ('customertypecode', 'Picklist'), ('name', 'String'), ('statecode', 'State'), ('transactioncurrencyid', 'Lookup')]"
st=$(api GET "EntityDefinitions(LogicalName='account')?\$expand=Attributes(\$select=LogicalName,MaxLength)")
eq "MaxLength is not on the base type: 400" "$st $(jget "$T/body" 'd["error"]["message"]')" \
  "400 Could not find a property named 'MaxLength' on type 'Microsoft.Dynamics.CRM.AttributeMetadata'."
st=$(api GET "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?\$select=LogicalName,MaxLength")
eq "... through the type cast" "$st $(jget "$T/body" '[a["MaxLength"] for a in d["value"] if a["LogicalName"] == "name"]')" "200 [160]"
st=$(api GET "EntityDefinitions(LogicalName='nosuchtable')")
eq "unknown table: 404" "$st" 404
st=$(api PATCH "accounts(mlc_sapvendorid='1')" '{"name":"A"}')
eq "bare: upsert by a key not created: 400 0x80060890" "$st $(jget "$T/body" 'd["error"]["code"]')" "400 0x80060890"
st=$(api POST accounts '{"name":"A","mlc_sapvendorid":"1"}')
eq "bare: a custom column not created: 400" "$st $(jget "$T/body" 'd["error"]["message"][:45]')" \
  "400 The property 'mlc_sapvendorid' does not exist"
lbl='{"LocalizedLabels":[{"Label":"L","LanguageCode":1033}]}'
col() { printf '{"@odata.type":"Microsoft.Dynamics.CRM.%s","SchemaName":"%s","DisplayName":%s%s}' "$1" "$2" "$lbl" "${3:-}"; }
st=$(api POST "EntityDefinitions(LogicalName='account')/Attributes" "$(col StringAttributeMetadata mlc_SapVendorId ',"MaxLength":20')" -H 'MSCRM.SolutionUniqueName: sol1')
eq "create a string column: 204 with its id" "$st $(header OData-EntityId | grep -c "/EntityDefinitions(LogicalName='account')/Attributes(")" "204 1"
st=$(api POST "EntityDefinitions(LogicalName='account')/Attributes" "$(col StringAttributeMetadata mlc_SapVendorId ',"MaxLength":20')")
eq "... twice: 400" "$st" 400
st=$(api POST "EntityDefinitions(LogicalName='account')/Attributes" "$(col StringAttributeMetadata mlc_NoLength)")
eq "string without MaxLength: 400" "$st" 400
st=$(api POST "EntityDefinitions(LogicalName='account')/Attributes" "$(col BooleanAttributeMetadata mlc_Flag)")
eq "boolean without OptionSet: 400" "$st" 400
st=$(api POST "EntityDefinitions(LogicalName='account')/Attributes" "$(col LookupAttributeMetadata mlc_Ref)")
eq "lookup through Attributes: 400" "$st" 400
st=$(api POST accounts '{"name":"A","mlc_sapvendorid":"123456789012345678901"}')
eq "the created column's length applies" "$st $(jget "$T/body" 'd["error"]["code"]')" "400 0x80044331"
api POST accounts '{"name":"A","mlc_sapvendorid":"DUP"}' >/dev/null
api POST accounts '{"name":"B","mlc_sapvendorid":"dup"}' >/dev/null
key() { printf '{"@odata.type":"Microsoft.Dynamics.CRM.EntityKeyMetadata","SchemaName":"%s","DisplayName":%s,"KeyAttributes":[%s]}' "$1" "$lbl" "$2"; }
st=$(api POST "EntityDefinitions(LogicalName='account')/Keys" "$(key mlc_VendorKey '"mlc_sapvendorid"')")
eq "create a key: 204" "$st" 204
api GET "EntityDefinitions(LogicalName='account')/Keys?\$select=SchemaName,EntityKeyIndexStatus,AsyncJob" >/dev/null
eq "... Pending at first" "$(jget "$T/body" '[k["EntityKeyIndexStatus"] for k in d["value"]]')" "['Pending']"
JOB=$(jget "$T/body" 'd["value"][0]["AsyncJob"]')
sleep 0.25
api GET "EntityDefinitions(LogicalName='account')/Keys(LogicalName='mlc_vendorkey')" >/dev/null
eq "... Failed: the set holds duplicate values" "$(jget "$T/body" 'd["EntityKeyIndexStatus"]')" Failed
st=$(api GET "asyncoperations($JOB)?\$select=message,friendlymessage")
eq "... the index job says why" "$st $(jget "$T/body" '"duplicate values" in d["message"]')" "200 True"
st=$(api POST "EntityDefinitions(LogicalName='account')/Keys" "$(key mlc_Other '"mlc_nosuch"')")
eq "key on a column that does not exist: 400" "$st" 400
st=$(api POST "EntityDefinitions(LogicalName='contact')/Attributes" "$(col StringAttributeMetadata mlc_SapContactId ',"MaxLength":100')")
st=$(api POST "EntityDefinitions(LogicalName='contact')/Keys" "$(key mlc_ContactKey '"mlc_sapcontactid"')")
eq "contact key created" "$st" 204
st=$(api PATCH "contacts(mlc_sapcontactid='7')" '{"lastname":"X"}')
eq "upsert by a Pending key: still 400" "$st" 400
sleep 0.25
st=$(api PATCH "contacts(mlc_sapcontactid='7')" '{"lastname":"X"}')
eq "upsert by the key once Active: 204" "$st" 204
st=$(api POST "EntityDefinitions(LogicalName='contact')/Keys" "$(key mlc_ContactKey2 '"mlc_sapcontactid"')")
eq "a second key on the same column: 400" "$st" 400
dump "?records=0&log=1"
eq "dump shows the schema and the solution header" \
  "$(jget "$T/dump.json" '[(c["logical"], c.get("solution")) for c in d["schema"]["accounts"]["custom_columns"]], [k["status"] for k in d["schema"]["contacts"]["keys"]]')" \
  "([('mlc_sapvendorid', 'sol1')], ['Active'])"
reset
st=$(api GET "EntityDefinitions(LogicalName='contact')?\$expand=Keys")
eq "reset: back to the bare definition" "$st $(jget "$T/body" 'd["Keys"]')" "200 []"
kill -TERM "$MD_PID" "$MDD_PID"; wait "$MD_PID"; rc1=$?; wait "$MDD_PID"; rc2=$?
eq "metadata instances exit 0 on SIGTERM" "$rc1 $rc2" "0 0"

echo "# SIGTERM"
B=$MAIN_B
kill -TERM "$MAIN_PID"
wait "$MAIN_PID"; rc=$?
eq "exit status 0 on SIGTERM" "$rc" 0
san=$(grep -l -E 'Sanitizer|runtime error|LeakSanitizer' "$T"/*.err 2>/dev/null)
eq "no sanitizer reports on stderr" "$san" ""
eq "--dump-on-exit wrote the final dump" "$(jget "$T/exit-dump.json" 'sorted(d)[:3]')" "['counters', 'log', 'records']"
finish
