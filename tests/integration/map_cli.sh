#!/usr/bin/env bash
# `ml-connector map` end to end: every golden case of test-fixtures/mapping/
# through the CLI gives exactly the checked-in *.ops.json on stdout and
# *.stderr on stderr (the same files the in-process test_mapping_golden
# compares), with exit 0, or 1 when an IDoc could not be mapped; the expected
# files are valid JSON; -c FILE / MLC_CONFIG / --mapping all work; and every
# usage or configuration mistake exits 2 with a message naming the argument,
# the config key or the JSON path of the mapping mistake.
. "$(dirname "$0")/lib.sh"

MAPFIX=$FIX/mapping
mlc_config

# --- golden cases through the CLI (run in the fixture folder: names as in *.stderr)
ncases=0
for f in "$MAPFIX"/*.xml "$MAPFIX"/*.seq; do
  stem=$(basename "${f%.*}")
  if [ "${f##*.}" = seq ]; then mapfile -t files <"$f"; else files=("$(basename "$f")"); fi
  margs=()
  [ -f "$MAPFIX/$stem.mapping.json" ] && margs=(--mapping "$stem.mapping.json")
  ( cd "$MAPFIX" && MLC_CONFIG="$T/config.json" "$BIN" map "${margs[@]}" "${files[@]}" ) \
    >"$T/$stem.out" 2>"$T/$stem.err"
  rc=$?
  want_rc=0
  if [ -f "$MAPFIX/$stem.stderr" ] && grep -qv '^map: warning: \|accept_and_ignore, not delivered$' "$MAPFIX/$stem.stderr"; then
    want_rc=1
  fi
  eq "map $stem: exit status" "$rc" "$want_rc"
  check "map $stem: stdout = $stem.ops.json" cmp -s "$T/$stem.out" "$MAPFIX/$stem.ops.json"
  if [ -f "$MAPFIX/$stem.stderr" ]; then
    check "map $stem: stderr = $stem.stderr" cmp -s "$T/$stem.err" "$MAPFIX/$stem.stderr"
  else
    eq "map $stem: no diagnostics" "$(cat "$T/$stem.err")" ""
  fi
  check "map $stem: expected file is JSON" python3 -m json.tool "$MAPFIX/$stem.ops.json" /dev/null
  ncases=$((ncases + 1))
done
check "at least 30 golden cases ($ncases)" test "$ncases" -ge 30

# --- the mapping comes from the config's "mapping" key (-c and MLC_CONFIG)
"$BIN" map -c "$T/config.json" "$MAPFIX/orders05_po.xml" >"$T/c.out" 2>"$T/c.err"
eq "map -c: exit 0" "$?" 0
check "map -c: same ops as the golden file" cmp -s "$T/c.out" "$MAPFIX/orders05_po.ops.json"
MLC_CONFIG="$T/config.json" "$BIN" map --compact "$MAPFIX/cremas03_vendor.xml" >"$T/k.out" 2>&1
eq "map --compact: exit 0" "$?" 0
eq "map --compact: one line" "$(wc -l <"$T/k.out" | tr -d ' ')" 1
check "map --compact: valid JSON" python3 -m json.tool "$T/k.out" /dev/null

# --- exit 2 with a message naming the offending argument / key / JSON path
expect2() { # expect2 "description" "needle" args...
  local d=$1 needle=$2; shift 2
  "$@" >"$T/x.out" 2>"$T/x.err"
  local rc=$?
  eq "$d: exit 2" "$rc" 2
  contains "$d: message" "$(cat "$T/x.err")" "$needle"
}
cat >"$T/bad_filter.json" <<'JSON'
{"routes": [
  {"name": "a", "match": {"idoctyp": "CREMAS05"}, "records": [{"name": "a", "entity": "accounts", "for_each": "E1LFA1M",
   "key": {"column": "k", "value": "LIFNR"}, "columns": {"name": "NAME1"}}]},
  {"name": "b", "match": {"idoctyp": "DEBMAS06"}, "records": [{"name": "b", "entity": "accounts", "for_each": "E1KNA1M",
   "key": {"column": "k", "value": "KUNNR"}, "columns": {"name": "NAME1"}}]},
  {"name": "c", "match": {"idoctyp": "ORDERS05"}, "records": [{"name": "c", "entity": "opportunities",
   "key": {"column": "k", "value": "E1EDK01/BELNR"}, "columns": {"name": {"path": "E1EDKA1[PARVW"}}}]}
]}
JSON
expect2 "bad filter in --mapping" "mapping: routes[2].records[0].columns.name.path: unknown filter syntax 'E1EDKA1[PARVW'" \
  "$BIN" map --mapping "$T/bad_filter.json" "$MAPFIX/orders05_po.xml"
echo '{"routes": [], "colour": "blue"}' >"$T/bad_key.json"
expect2 "unknown key in mapping" "mapping: colour: unknown key" "$BIN" map --mapping "$T/bad_key.json" "$MAPFIX/orders05_po.xml"
echo '{"routes": [' >"$T/bad_json.json"
expect2 "mapping not JSON" "not valid JSON" "$BIN" map --mapping "$T/bad_json.json" "$MAPFIX/orders05_po.xml"
echo "{\"extends\": \"$MLC_ROOT/config/mapping.json\", \"orders_target\": \"invoice\"}" >"$T/bad_target.json"
expect2 "bad orders_target" "mapping: orders_target: must be" "$BIN" map --mapping "$T/bad_target.json" "$MAPFIX/orders05_po.xml"
# a bad mapping named by the config: the message says it came from the "mapping" key
mlc_config 64 8 >/dev/null
sed -i "s#\"mapping\": \"[^\"]*\"#\"mapping\": \"$T/bad_key.json\"#" "$T/config.json"
expect2 "bad mapping via config" "(config key \"mapping\")" "$BIN" map -c "$T/config.json" "$MAPFIX/orders05_po.xml"
expect2 "missing mapping file" "$T/nope.json" "$BIN" map --mapping "$T/nope.json" "$MAPFIX/orders05_po.xml"
expect2 "no IDoc files" "no IDoc files given" "$BIN" map --mapping "$MLC_ROOT/config/mapping.json"
expect2 "unknown option" "--frobnicate: unknown option" "$BIN" map --frobnicate "$MAPFIX/orders05_po.xml"
expect2 "--mapping without value" "--mapping: needs a file argument" "$BIN" map "$MAPFIX/orders05_po.xml" --mapping
expect2 "no config at all" "no configuration" env -u MLC_CONFIG "$BIN" map "$MAPFIX/orders05_po.xml"
expect2 "config file missing" "$T/missing.json" "$BIN" map -c "$T/missing.json" "$MAPFIX/orders05_po.xml"
echo '{"sap": {"username": "u", "password": "p"}, "colour": 1}' >"$T/badcfg.json"
expect2 "config with an unknown key" "colour" "$BIN" map -c "$T/badcfg.json" "$MAPFIX/orders05_po.xml"
expect2 "unreadable IDoc file" "$T/none.xml" "$BIN" map --mapping "$MLC_ROOT/config/mapping.json" "$T/none.xml"

# --- a malformed IDoc file is a runtime failure (1), the other files still print
printf '<ORDERS05><IDOC BEGIN="1">' >"$T/broken.xml"
"$BIN" map --mapping "$MLC_ROOT/config/mapping.json" "$MAPFIX/cremas03_vendor.xml" "$T/broken.xml" >"$T/b.out" 2>"$T/b.err"
eq "malformed IDoc: exit 1" "$?" 1
contains "malformed IDoc: names the file" "$(cat "$T/b.err")" "broken.xml"
contains "malformed IDoc: other file still mapped" "$(cat "$T/b.out")" "mlc_sapvendorid='0000100301'"

mlc_finish
