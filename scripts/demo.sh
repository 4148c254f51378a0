#!/usr/bin/env bash
# make demo: the whole flow on one machine, no cloud account.
# Starts the bundled fake Dataverse and ml-connector on 127.0.0.1 (free
# ports), posts the fixture IDocs as an SAP XML-HTTP port would (in DOCNUM
# order), resends one (BD87), shows that hostile input is refused with a
# reason, waits for delivery, and prints what arrived in Dataverse and what
# failed and why. Everything it starts is stopped at the end.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/$build/ml-connector
fake=$root/$build/tools/fake_dataverse
work=$(mktemp -d "${TMPDIR:-/tmp}/mlc-demo.XXXXXX")
pid= fpid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$fpid" ] && kill "$fpid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting the fake Dataverse"
"$fake" --port 0 --port-file "$work/fake.port" 2>"$work/fake.log" &
fpid=$!
for _ in $(seq 100); do [ -s "$work/fake.port" ] && break; sleep 0.05; done
dv=http://127.0.0.1:$(cat "$work/fake.port")
echo "   $dv"

export MLC_SAP_PASSWORD=demo-password
export MLC_DATAVERSE_SECRET=demo-secret
python3 - "$root/config/ml-connector.example.json" "$work/config.json" "$work/queue" "$root/config/mapping.json" "$dv" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["listen"] = {"address": "127.0.0.1", "port": 0}
c["queue"]["path"] = sys.argv[3]
c["dataverse"]["url"] = sys.argv[5]
c["dataverse"]["token_url"] = sys.argv[5] + "/" + c["dataverse"]["tenant_id"] + "/oauth2/v2.0/token"
c["mapping"] = sys.argv[4]
c["delivery"] = {"schedule": "continuous", "retry_base_s": 1}
json.dump(c, open(sys.argv[2], "w"), indent=2)
PY

echo "== starting ml-connector"
"$bin" serve -c "$work/config.json" 2>"$work/server.log" &
pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/server.log" && break; sleep 0.05; done
port=$(sed -n 's/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -1)
[ -n "$port" ] || { cat "$work/server.log"; exit 1; }
url=http://127.0.0.1:$port/sap/idoc
echo "   listening on 127.0.0.1:$port, SAP path /sap/idoc"

post() { curl -s -w ' [%{http_code}]' -u "SAPIDOC:$MLC_SAP_PASSWORD" -H 'Content-Type: text/xml' --data-binary "@$1" "$url" | tr -d '\n'; echo; }

echo "== posting the fixture IDocs (what an XML-HTTP port sends), in DOCNUM order"
for f in $(for f in "$root"/test-fixtures/idoc/*.xml; do
             printf '%s %s\n' "$(grep -o '<DOCNUM>[0-9]*' "$f" | head -1 | tr -dc 0-9)" "$f"; done | sort | cut -d' ' -f2); do
  printf '   %-34s ' "$(basename "$f")"; post "$f"
done
echo "== resending one (BD87): acknowledged, not stored twice"
printf '   %-34s ' "cremas05_vendor.xml"; post "$root/test-fixtures/idoc/cremas05_vendor.xml"
echo "== hostile input is refused with a reason"
for f in billion_laughs xxe_file not_idoc truncated; do
  [ -f "$root/test-fixtures/hostile/$f.xml" ] || continue
  printf '   %-34s ' "$f.xml"; post "$root/test-fixtures/hostile/$f.xml"
done

echo "== waiting for delivery"
for _ in $(seq 100); do
  left=$("$bin" queue -c "$work/config.json" stats | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["pending"]+s["inflight"])')
  [ "$left" = 0 ] && break
  sleep 0.2
done
curl -s "$dv/_fake/dump" >"$work/dump.json"
"$bin" queue -c "$work/config.json" list >"$work/list"
python3 - "$work/dump.json" "$work/list" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))["records"]
rows = [json.loads(l) for l in open(sys.argv[2])]
def t(s, n): s = "" if s is None else str(s); return s if len(s) <= n else s[:n - 1] + "…"
print("\n== what arrived in Dataverse")
print(f"   accounts ({len(d['accounts'])})")
print("     %-11s %-11s %-34s %-16s %s" % ("vendor", "customer", "name", "city", "type"))
for a in sorted(d["accounts"], key=lambda a: (a.get("mlc_sapvendorid") or "~", a.get("mlc_sapcustomerid") or "")):
    kind = {3: "customer", 11: "vendor"}.get(a.get("customertypecode"), a.get("customertypecode"))
    print("     %-11s %-11s %-34s %-16s %s" % (a.get("mlc_sapvendorid") or "-", a.get("mlc_sapcustomerid") or "-",
          t(a.get("name"), 34), t(a.get("address1_city"), 16), kind))
print(f"   contacts ({len(d['contacts'])})")
ids = {a["_id"]: a for a in d["accounts"]}
for c in d["contacts"]:
    parent = (c.get("_binds", {}).get("parentcustomerid_account") or {}).get("id")
    p = ids.get(parent, {})
    print("     %-11s %-30s of %s" % (c.get("mlc_sapcontactid"), t(f"{c.get('firstname') or ''} {c.get('lastname') or ''}".strip(), 30),
          t(p.get("name"), 40)))
lines = {}
for l in d.get("opportunityproducts", []):
    o = (l.get("_binds", {}).get("opportunityid") or {}).get("id")
    lines[o] = lines.get(o, 0) + 1
print(f"   opportunities ({len(d.get('opportunities', []))})")
for o in d.get("opportunities", []):
    state = {None: "open", 0: "open", 1: "won", 2: "lost"}.get(o.get("statecode"), o.get("statecode"))
    print("     %-12s %-20s value %-12s lines %-3d %s" % (o.get("mlc_sapponumber"), t(o.get("name"), 20),
          o.get("estimatedvalue"), lines.get(o["_id"], 0), state))
print("\n== in the queue")
states = {}
for r in rows: states[r["state"]] = states.get(r["state"], 0) + 1
print("   " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
for r in rows:
    if r["state"] == "failed":
        print(f"   FAILED seq {r['seq']} DOCNUM {r['docnum']} ({r['mestyp']}, {r['key']}): {r['error']}")
    elif r["error"]:
        print(f"   note   seq {r['seq']} DOCNUM {r['docnum']}: {r['error']}")
PY
echo
echo "== stopping (SIGTERM)"
kill -TERM "$pid"; wait "$pid"; pid=
grep -E 'run [0-9]+ .*ended|stopped cleanly' "$work/server.log" | sed 's/^/   /'
