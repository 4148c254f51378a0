#!/usr/bin/env bash
# End to end: the fixture IDocs go through the real gateway into the fake
# Dataverse. What arrives must be exactly what `ml-connector map` predicts
# for the same files in the same order (the mapping's golden-tested output),
# with one record per key; an IDoc whose currency Dataverse does not know
# fails with the reason; metrics and the audit trail show it all.
. "$(dirname "$0")/lib.sh"

fake_start
export MLC_TEST_ADMIN_TOKEN='admin-token-0123456789abcdef'
SCHEDULE=continuous DELIVERY='"retry_base_s": 1' mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start

# Post in DOCNUM order (SAP order), so no IDoc supersedes another here.
mapfile -t files < <(for f in "$FIX"/idoc/*.xml; do
  case $f in *ordrsp_other.xml) continue ;; esac
  printf '%s %s\n' "$(grep -o '<DOCNUM>[0-9]*' "$f" | head -1 | tr -dc 0-9)" "$f"; done | sort | cut -d' ' -f2)
n=0
for f in "${files[@]}"; do
  eq "POST $(basename "$f")" "$(post "$f")" 200
  n=$((n + $(grep -c '<IDOC BEGIN' "$f")))
done
check "all $n IDocs settle within 30 s" wait_settled "$n" 30
fake_dump
queue_cli list >"$T/list"

# The SEK purchase order: no such currency in Dataverse -> failed, with why.
check "the SEK order failed with the lookup's reason" python3 -c "
import json
rows=[json.loads(l) for l in open('$T/list')]
bad=[r for r in rows if r['state']=='failed']
assert len(bad)==1 and 'SEK' in bad[0]['error'], bad"
eq "every other IDoc delivered" "$(qcount delivered)" "$((n - 1))"

# Expected state: replay map's operations (same files, same order, minus
# the failed one) over an empty Dataverse.
good=()
for f in "${files[@]}"; do grep -q '<CURCY>SEK' "$f" || good+=("$f"); done
"$BIN" map -c "$T/config.json" "${good[@]}" >"$T/ops.json"
cat >"$T/golden.py" <<'PY'
import json, re, sys, urllib.parse
ops = json.load(open(sys.argv[1]))
dump = json.load(open(sys.argv[2]))
sim = {}  # set -> list of records (dict col->value, binds set)
def key_of(path):
    m = re.match(r"^(\w+)\((\w+)=(?:'((?:[^']|'')*)'|@k)\)(?:\?@k='(.*)')?$", path)
    if not m: return None
    val = m.group(3) if m.group(3) is not None else urllib.parse.unquote(m.group(4))
    return m.group(1), m.group(2), val.replace("''", "'")
def find(recs, col, val):
    for r in recs:
        if r["cols"].get(col) == val: return r
    return None
for op in ops:
    if op["kind"] not in ("upsert", "delete"): continue
    k = key_of(op["path"])
    assert k, op["path"]
    s, col, val = k
    recs = sim.setdefault(s, [])
    r = find(recs, col, val)
    if op["kind"] == "delete":
        if r: recs.remove(r)
        continue
    if not r:
        # a body carrying another key may address an existing record (linking)
        for c, v in (op.get("body") or {}).items():
            if c in ("mlc_sapvendorid", "mlc_sapcustomerid") and isinstance(v, str):
                r = r or find(recs, c, v)
    if not r:
        r = {"cols": {}, "binds": set()}
        recs.append(r)
    r["cols"][col] = val
    for c, v in (op.get("body") or {}).items():
        if c.endswith("@odata.bind"): r["binds"].add(c.split("@")[0])
        else: r["cols"][c] = v
errors = []
for s, recs in sim.items():
    got = dump["records"].get(s, [])
    if len(got) != len(recs): errors.append(f"{s}: {len(got)} records, expected {len(recs)}")
    for r in recs:
        keycols = [c for c in r["cols"] if c.startswith("mlc_sap") and c.endswith(("id", "number"))]
        match = None
        for g in got:
            if all(g.get(c) == r["cols"][c] for c in keycols): match = g
        if not match:
            errors.append(f"{s}: no record for {[(c, r['cols'][c]) for c in keycols]}"); continue
        for c, v in r["cols"].items():
            gv = match.get(c)
            if isinstance(v, (int, float)) and isinstance(gv, (int, float)):
                if abs(v - gv) > 1e-9: errors.append(f"{s}.{c}: {gv} != {v}")
            elif gv != v: errors.append(f"{s} {keycols}: {c} = {gv!r}, expected {v!r}")
        for b in r["binds"]:
            if b not in match.get("_binds", {}): errors.append(f"{s}: bind {b} missing")
for e in errors[:20]: print(e)
sys.exit(1 if errors else 0)
PY
check "delivered records equal map's prediction" python3 "$T/golden.py" "$T/ops.json" "$T/dump.json"
check "exactly one account per vendor/customer key" python3 -c "
import json; d=json.load(open('$T/dump.json'))
keys=[(a.get('mlc_sapvendorid'),a.get('mlc_sapcustomerid')) for a in d['records']['accounts']]
v=[k[0] for k in keys if k[0]]; c=[k[1] for k in keys if k[1]]
assert len(v)==len(set(v)) and len(c)==len(set(c)), keys"
check "the linked vendor/customer is one account with both keys and type 3" python3 -c "
import json; d=json.load(open('$T/dump.json'))
both=[a for a in d['records']['accounts'] if a.get('mlc_sapvendorid') and a.get('mlc_sapcustomerid')]
assert both and all(a.get('customertypecode')==3 and a.get('mlc_issapvendor') and a.get('mlc_issapcustomer') for a in both), both"
eq "the fake saw no service-protection violation" "$(dumpq "d['counters']['violations']")" 0

# Metrics, audit, admin.
curl -s "$BASE/metrics" >"$T/m"
check "metrics pass promtool" promtool check metrics <"$T/m"
check "records delivered counted for accounts" grep -q '^mlc_records_delivered_total{entity="accounts"} [1-9]' "$T/m"
check "dataverse requests counted" grep -qE '^mlc_dataverse_requests_total\{code="200"\} [1-9]' "$T/m"
check "failed record counted" grep -q '^mlc_records_failed_total 1' "$T/m"
check "queue gauge shows the failed record" grep -q '^mlc_queue_records{state="failed"} 1' "$T/m"
A=(-H "Authorization: Bearer $MLC_TEST_ADMIN_TOKEN")
curl -s "${A[@]}" "$BASE/admin/runs" >"$T/runs"
check "a continuous run is recorded" python3 -c "
import json; r=json.load(open('$T/runs')); assert r and r[0]['trigger']=='continuous' and r[0]['delivered']>=1, r"
curl -s "${A[@]}" "$BASE/admin/records?state=failed" >"$T/failed"
check "admin lists the failed record with its error" grep -q 'SEK' "$T/failed"
eq "POST /admin/sync starts a run" "$(curl -s -o /dev/null -w '%{http_code}' "${A[@]}" -X POST "$BASE/admin/sync")" 202
mlc_stop; eq "SIGTERM with delivery running -> exit 0" "$?" 0
check "no secret in the log" bash -c "! grep -qF '$MLC_TEST_DV_SECRET' '$T/server.log'"

# The same IDocs once more, into an empty queue and an empty Dataverse, but
# with every stored model (the parsed IDoc ingest keeps for delivery)
# damaged while the gateway is down: delivery must notice, parse the stored
# XML instead, and deliver exactly the same.
rm -rf "$T/queue"
curl -s -X POST "$DV_URL/_fake/reset" >/dev/null
mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start
for f in "${files[@]}"; do post "$f" >/dev/null; done
mlc_stop
eq "every IDoc was stored with its model" "$(mdb_stat -s model "$T/queue" | sed -n 's/ *Entries: //p')" "$n"
mdb_dump -s model "$T/queue" | python3 -c '
import sys
# header lines pass through; each value (the line after a key) is cut in half
lines = sys.stdin.read().split("\n"); out = []; data = False; k = 0
for l in lines:
    if l.startswith("db_pagesize="): continue  # mdb_load does not take it
    if l == "HEADER=END": data = True; out.append(l); continue
    if data and l.startswith(" "):
        k += 1
        if k % 2 == 0: l = l[: 1 + (len(l) - 1) // 4 * 2]
    out.append(l)
print("\n".join(out), end="")' >"$T/model.dump"
check "models overwritten with damaged ones" mdb_load -s model -f "$T/model.dump" "$T/queue"
SCHEDULE=continuous DELIVERY='"retry_base_s": 1' mlc_config 64 8 '"admin": { "token": "${MLC_TEST_ADMIN_TOKEN}" }'
mlc_start
check "all $n IDocs settle again" wait_settled "$n" 30
eq "the SEK order failed again, everything else delivered" "$(qcount failed) $(qcount delivered)" "1 $((n - 1))"
check "each damaged model was noticed" test "$(grep -c 'stored model unusable' "$T/server.log")" -ge "$((n - 1))"
fake_dump
check "delivered records equal map's prediction (from the XML)" python3 "$T/golden.py" "$T/ops.json" "$T/dump.json"
mlc_stop
mlc_finish
