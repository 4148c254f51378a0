#!/usr/bin/env bash
# make demo: run the gateway on this machine with no cloud account.
# Starts ml-connector on 127.0.0.1 (free port) with a config derived from
# config/ml-connector.example.json, posts the fixture IDocs as SAP would,
# resends one (SAP's BD87), shows what was refused and why, and prints
# what the queue holds. Everything it starts is stopped at the end.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/$build/ml-connector
work=$(mktemp -d "${TMPDIR:-/tmp}/mlc-demo.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export MLC_SAP_PASSWORD=demo-password
export MLC_DATAVERSE_SECRET=demo-secret
python3 - "$root/config/ml-connector.example.json" "$work/config.json" "$work/queue" "$root/config/mapping.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["listen"] = {"address": "127.0.0.1", "port": 0}
c["queue"]["path"] = sys.argv[3]
c["dataverse"]["url"] = "http://127.0.0.1:9"          # no Dataverse in this demo yet
c["dataverse"]["token_url"] = "http://127.0.0.1:9/token"
c["mapping"] = sys.argv[4]
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

echo "== posting the fixture IDocs (what an XML-HTTP port sends)"
for f in "$root"/test-fixtures/idoc/*.xml; do
  printf '   %-38s ' "$(basename "$f")"; post "$f"
done
echo "== resending one (BD87): acknowledged, not stored twice"
printf '   %-38s ' "cremas05_vendor.xml"; post "$root/test-fixtures/idoc/cremas05_vendor.xml"
echo "== hostile input is refused with a reason"
for f in "$root"/test-fixtures/hostile/*.xml; do
  printf '   %-38s ' "$(basename "$f")"; post "$f"
done
echo "== queue (ml-connector queue stats / list)"
"$bin" queue -c "$work/config.json" stats
"$bin" queue -c "$work/config.json" list | python3 -c '
import json, sys
print("   %-5s %-18s %-8s %-36s %s" % ("seq", "docnum", "mestyp", "key", "state"))
for l in sys.stdin:
    r = json.loads(l)
    print("   %-5s %-18s %-8s %-36s %s" % (r["seq"], r["docnum"], r["mestyp"], r["keys"][:36], r["state"]))'
echo "== stopping (SIGTERM)"
kill -TERM "$pid"; wait "$pid"; pid=
tail -n 3 "$work/server.log" | sed 's/^/   /'
