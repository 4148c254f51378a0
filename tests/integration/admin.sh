#!/usr/bin/env bash
# /admin/: bearer token (never SAP's credential), the queue views, replay
# input validation, and 404 when admin.token is not configured.
. "$(dirname "$0")/lib.sh"
export MLC_TEST_ADMIN_TOKEN='admin-token-0123456789abcdef'
mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start
A=(-H "Authorization: Bearer $MLC_TEST_ADMIN_TOKEN")
code() { curl -s -o "$T/out" -w '%{http_code}' "$@"; }

eq "POST two IDocs" "$(post "$FIX/idoc/cremas06_packet.xml")" 200
eq "no token -> 401" "$(code "$BASE/admin/queue")" 401
eq "wrong token -> 401" "$(code -H 'Authorization: Bearer nope' "$BASE/admin/queue")" 401
eq "SAP's Basic credential -> 401" "$(code -u "$SAP_AUTH" "$BASE/admin/queue")" 401
eq "GET /admin/queue" "$(code "${A[@]}" "$BASE/admin/queue")" 200
eq "queue object counts pending" "$(python3 -c "import json; print(json.load(open('$T/out'))['pending'])")" 3
eq "GET /admin/records?state=pending" "$(code "${A[@]}" "$BASE/admin/records?state=pending")" 200
check "records are the queue list objects" python3 -c "
import json; rows=json.load(open('$T/out'))
assert len(rows)==3 and all({'seq','docnum','mestyp','key','state','attempts','error'}<=set(r) for r in rows)"
eq "bad state -> 400" "$(code "${A[@]}" "$BASE/admin/records?state=lost")" 400
eq "GET /admin/records/1 has the XML" "$(code "${A[@]}" "$BASE/admin/records/1")" 200
check "...with xml" grep -q 'EDI_DC40' "$T/out"
eq "unknown record -> 404" "$(code "${A[@]}" "$BASE/admin/records/999")" 404
eq "replay by seq (not failed: nothing moves)" "$(code "${A[@]}" -X POST -d '{"seq":[1,2]}' "$BASE/admin/replay")" 200
eq "...replayed 0" "$(python3 -c "import json; print(json.load(open('$T/out'))['replayed'])")" 0
eq "replay failed state" "$(code "${A[@]}" -X POST -d '{"state":"failed"}' "$BASE/admin/replay")" 200
eq "replay bad body -> 400" "$(code "${A[@]}" -X POST -d '{"seq":"x"}' "$BASE/admin/replay")" 400
eq "replay not JSON -> 400" "$(code "${A[@]}" -X POST -d 'hello' "$BASE/admin/replay")" 400
eq "replay GET -> 405" "$(code "${A[@]}" "$BASE/admin/replay")" 405
eq "GET /admin/runs" "$(code "${A[@]}" "$BASE/admin/runs")" 200
check "runs is an array" python3 -c "import json; assert isinstance(json.load(open('$T/out')), list)"
eq "unknown admin path -> 404" "$(code "${A[@]}" "$BASE/admin/nothing")" 404
check "admin token never logged" bash -c "! grep -qF '$MLC_TEST_ADMIN_TOKEN' '$T/server.log'"
"$BIN" check-config -c "$T/config.json" >"$T/cc"
check "check-config masks the admin token" bash -c "! grep -qF '$MLC_TEST_ADMIN_TOKEN' '$T/cc' && grep -q '\"token\":.*\"\*\*\*\*\*\*\*\*\"' '$T/cc'"
check "check-config masks the SAP password" bash -c "! grep -qF '$MLC_TEST_SAP_PASSWORD' '$T/cc'"
mlc_stop

# Without admin.token, /admin/ does not exist.
mlc_config 64 8
mlc_start
eq "admin disabled -> 404" "$(code "${A[@]}" "$BASE/admin/queue")" 404
mlc_stop
mlc_finish
