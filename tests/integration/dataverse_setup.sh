#!/usr/bin/env bash
# `ml-connector dataverse setup|check` against the fake Dataverse started
# with --bare-schema (a stock org: no mlc_* columns, no alternate keys, and
# upserts by a key that does not exist are refused): check lists what is
# missing (exit 1); setup creates the 8 custom columns and 5 keys the
# shipped mapping needs, in the named solution, and waits until the keys are
# Active (the fake keeps a new key Pending for 300 ms); a second setup says
# "no changes"; check is then clean; and the gateway delivers through the
# keys setup made. Then: the default fake is already provisioned, a key whose
# index fails makes setup exit 1 with the reason, usage/config errors exit 2.
. "$(dirname "$0")/lib.sh"

dv() { "$BIN" dataverse "$@" 2>>"$T/dv.err"; }

fake_start --bare-schema
SCHEDULE=continuous DELIVERY='"retry_base_s": 1' mlc_config

# The bare fake refuses an upsert by a key that was not created.
curl -s -o "$T/tok.json" -X POST "$DV_URL/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token" \
     --data-urlencode grant_type=client_credentials --data-urlencode client_id=11111111-1111-1111-1111-111111111111 \
     --data-urlencode client_secret=x --data-urlencode "scope=$DV_URL/.default"
TOK=$(python3 -c "import json; print(json.load(open('$T/tok.json'))['access_token'])")
st=$(curl -s -o "$T/body" -w '%{http_code}' -X PATCH -H "Authorization: Bearer $TOK" \
     -H 'Content-Type: application/json' -H 'OData-Version: 4.0' -H 'OData-MaxVersion: 4.0' \
     --data '{"name":"x"}' "$DV_URL/api/data/v9.2/accounts(mlc_sapvendorid='0000000001')")
eq "bare schema: upsert by a key not created yet is 400" "$st" 400
contains "... with EntityKeyNotDefined" "$(cat "$T/body")" "0x80060890"

# check: exit 1, every missing column and key named
dv check -c "$T/config.json" >"$T/check1.out"; rc=$?
eq "check before setup exits 1" "$rc" 1
out=$(cat "$T/check1.out")
contains "check: token acquired" "$out" "✓ token: acquired"
for c in accounts.mlc_sapvendorid accounts.mlc_sapcustomerid accounts.mlc_issapvendor accounts.mlc_issapcustomer \
         accounts.mlc_sappaymentterms contacts.mlc_sapcontactid opportunities.mlc_sapponumber \
         opportunityproducts.mlc_sappoitemid; do
  contains "check names missing column $c" "$out" "✗ $c: column missing"
done
for k in "accounts key on mlc_sapvendorid" "accounts key on mlc_sapcustomerid" "contacts key on mlc_sapcontactid" \
         "opportunities key on mlc_sapponumber" "opportunityproducts key on mlc_sappoitemid"; do
  contains "check names missing $k" "$out" "✗ $k: missing"
done
contains "check lists the currencies" "$out" "isocurrencycode values present: USD, EUR, GBP"
contains "check counts 13 problems" "$out" "check: 13 problems"

# setup: creates, waits, exit 0
fake_dump
writes0=$(dumpq 'len([e for e in d["log"] if e["set"] == "EntityDefinitions"])')
dv setup -c "$T/config.json" --solution mlconnector >"$T/setup1.out"; rc=$?
eq "first setup exits 0" "$rc" 0
out=$(cat "$T/setup1.out")
eq "first setup: 8 columns created" "$(grep -c '^  + column' "$T/setup1.out")" 8
eq "first setup: 5 keys created" "$(grep -c '^  + key on' "$T/setup1.out")" 5
contains "first setup: schema names from the column names" "$out" "created: String, 100 characters (mlc_SapVendorId)"
contains "first setup: booleans" "$out" "+ column mlc_issapcustomer            created: Boolean (mlc_IsSapCustomer)"
contains "first setup: key names" "$out" "created: mlc_opportunityproduct_SapPoItemId"
eq "first setup: waits until all 5 keys are Active" "$(grep -c ': Active after' "$T/setup1.out")" 5
first_wait=$(sed -n 's/.*: Active after \([0-9.]*\) s/\1/p' "$T/setup1.out" | head -1)
check "first setup: the first key was Pending for a while (polled)" \
  python3 -c "import sys; sys.exit(0 if float('$first_wait') >= 0.2 else 1)"
contains "first setup: summary" "$out" "setup done: created 8 columns and 5 keys"
fake_dump
eq "the fake now has 5 Active keys" \
  "$(dumpq 'sum(1 for s in d["schema"].values() for k in s["keys"] if k["status"] == "Active")')" 5
eq "... created in solution mlconnector" \
  "$(dumpq 'sorted(set(k.get("solution") for s in d["schema"].values() for k in s["keys"]) | set(c.get("solution") for s in d["schema"].values() for c in s["custom_columns"]))')" \
  "['mlconnector']"
eq "... column types" \
  "$(dumpq '[(c["logical"], c["type"], c.get("max_length")) for c in d["schema"]["accounts"]["custom_columns"]]')" \
  "[('mlc_sapvendorid', 'String', 100), ('mlc_issapvendor', 'Boolean', None), ('mlc_sappaymentterms', 'String', 100), ('mlc_sapcustomerid', 'String', 100), ('mlc_issapcustomer', 'Boolean', None)]"
eq "... the MSCRM.SolutionUniqueName header went with every write" \
  "$(dumpq 'sorted(set(e.get("solution") for e in d["log"] if e["set"] == "EntityDefinitions"))')" "['mlconnector']"
writes1=$(dumpq 'len([e for e in d["log"] if e["set"] == "EntityDefinitions"])')
eq "first setup: 13 metadata writes" "$((writes1 - writes0))" 13

# second setup: nothing to do, says so
dv setup -c "$T/config.json" --solution mlconnector >"$T/setup2.out"; rc=$?
eq "second setup exits 0" "$rc" 0
eq "second setup reports no changes" "$(tail -n 1 "$T/setup2.out")" "no changes: 8 columns and 5 keys already present"
eq "second setup created nothing" "$(grep -c '^  + ' "$T/setup2.out")" 0
fake_dump
eq "second setup sent no metadata write" "$(dumpq 'len([e for e in d["log"] if e["set"] == "EntityDefinitions"])')" "$writes1"

# check: all good
dv check -c "$T/config.json" >"$T/check2.out"; rc=$?
eq "check after setup exits 0" "$rc" 0
eq "check after setup: all good" "$(tail -n 1 "$T/check2.out")" "check: all good"
eq "check after setup: no ✗ line" "$(grep -c '✗' "$T/check2.out")" 0
contains "check shows the keys Active" "$(cat "$T/check2.out")" "✓ accounts key on mlc_sapvendorid: Active (mlc_account_SapVendorId)"

# a real upsert through the gateway, by the keys setup made
mlc_start
n=0
for f in cremas05_vendor.xml debmas07_customer_contacts.xml orders05_po.xml; do
  eq "POST $f" "$(post "$FIX/idoc/$f")" 200
  n=$((n + $(grep -c '<IDOC BEGIN' "$FIX/idoc/$f")))
done
check "the $n IDocs settle" wait_settled "$n" 20
eq "all delivered" "$(qcount delivered)" "$n"
fake_dump
eq "the vendor account arrived by its key" \
  "$(dumpq '[r["name"] for r in d["records"]["accounts"] if r.get("mlc_sapvendorid") == "0000100310"] != []')" True
eq "the contacts arrived" "$(dumpq 'len(d["records"]["contacts"]) > 0')" True
eq "the purchase order and its lines arrived" \
  "$(dumpq 'len(d["records"]["opportunities"]) == 1 and len(d["records"]["opportunityproducts"]) > 0')" True
check "gateway stops cleanly" mlc_stop
fake_stop

# The default fake is already provisioned: setup has nothing to do.
rm -f "$T/fake.port"   # fake_start waits for this file: not the old one
fake_start
mlc_config
dv setup -c "$T/config.json" >"$T/setup3.out"; rc=$?
eq "default fake: setup exits 0" "$rc" 0
eq "default fake: no changes" "$(tail -n 1 "$T/setup3.out")" "no changes: 8 columns and 5 keys already present"
fake_stop

# A key whose index fails: setup exits 1 with the reason; check shows it.
rm -f "$T/fake.port"
fake_start --bare-schema --key-fail contacts:mlc_sapcontactid --key-delay-ms 50
mlc_config
dv setup -c "$T/config.json" >"$T/setup4.out"; rc=$?
eq "failing key: setup exits 1" "$rc" 1
contains "failing key: the reason is shown" "$(cat "$T/setup4.out")" \
  "x key on contacts(mlc_sapcontactid): index creation failed: fake: index creation for key mlc_contact_SapContactId failed (--key-fail)."
contains "failing key: summary" "$(tail -n 1 "$T/setup4.out")" "setup failed"
dv check -c "$T/config.json" >"$T/check4.out"; rc=$?
eq "failing key: check exits 1" "$rc" 1
contains "failing key: check names it" "$(cat "$T/check4.out")" "✗ contacts key on mlc_sapcontactid: index creation failed"
eq "failing key: only that problem" "$(tail -n 1 "$T/check4.out")" "check: 1 problem"
dv setup -c "$T/config.json" >"$T/setup5.out"; rc=$?
eq "failing key: setup again still exits 1 (it does not hide the failure)" "$rc" 1
fake_stop

# Usage and configuration errors: exit 2.
"$BIN" dataverse >/dev/null 2>&1; eq "no subcommand: exit 2" "$?" 2
"$BIN" dataverse frob -c "$T/config.json" >/dev/null 2>&1; eq "unknown subcommand: exit 2" "$?" 2
(unset MLC_CONFIG; "$BIN" dataverse check >/dev/null 2>&1); eq "no config: exit 2" "$?" 2
"$BIN" dataverse setup -c "$T/config.json" --solution 'bad name' >/dev/null 2>&1; eq "bad solution name: exit 2" "$?" 2
echo '{"version": 1, "routes": 3}' >"$T/bad-mapping.json"
MAPPING=$T/bad-mapping.json mlc_config
"$BIN" dataverse check -c "$T/config.json" >/dev/null 2>"$T/bad.err"; rc=$?
eq "broken mapping: exit 2" "$rc" 2
contains "broken mapping: the JSON path is named" "$(cat "$T/bad.err")" "routes"

mlc_finish
