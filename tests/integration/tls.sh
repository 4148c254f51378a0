#!/usr/bin/env bash
# HTTPS and client certificates (listen.tls_cert/tls_key/client_ca/
# client_subject): SAP's SSL client PSE accepted when signed by client_ca,
# refused with 403 and a one-line reason otherwise (no certificate, another
# CA, not for client authentication, subject pin); probes and /admin/ need
# no certificate; plain HTTP to the TLS port fails cleanly; HTTPS without
# client_ca is Basic only; bad TLS configuration exits 2 naming the key.
# Every certificate and key is generated here, in the test's temp folder.
. "$(dirname "$0")/lib.sh"

PKI=$T/pki
mkdir -p "$PKI"
ssl() { openssl "$@" >"$PKI/openssl.log" 2>&1 || { cat "$PKI/openssl.log"; bad "openssl $1"; mlc_finish; }; }
# mkca NAME SUBJECT
mkca() {
  ssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.pem" -days 2 -subj "$2" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
# mkleaf NAME SUBJECT EXTENSIONS CA
mkleaf() {
  ssl req -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2"
  printf '%b\n' "$3" >"$PKI/$1.ext"
  ssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$4.pem" -CAkey "$PKI/$4.key" -set_serial "0x$(openssl rand -hex 8)" \
      -days 2 -extfile "$PKI/$1.ext" -out "$PKI/$1.pem"
}
mkca ca "/CN=MLC Test CA"
mkca otherca "/CN=Some Other CA"
mkleaf server "/CN=localhost" "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth" ca
# SAP shows PSE subjects as "CN=PR1CLNT100, OU=I0020012345, OU=SAP Web AS, O=SAP Trust Community, C=DE".
mkleaf client "/C=DE/O=SAP Trust Community/OU=SAP Web AS/OU=I0020012345/CN=PR1CLNT100" \
       "extendedKeyUsage=clientAuth" ca
mkleaf client2 "/C=DE/O=SAP Trust Community/OU=SAP Web AS/OU=I0020012345/CN=PR1CLNT1000" \
       "extendedKeyUsage=clientAuth" ca
mkleaf stranger "/C=DE/O=SAP Trust Community/CN=PR1CLNT100" "extendedKeyUsage=clientAuth" otherca
mkleaf serveronly "/CN=PR1CLNT100" "extendedKeyUsage=serverAuth" ca
# A self-signed PSE certificate (STRUST's default), trusted by adding it to the bundle.
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/selfpse.key" -out "$PKI/selfpse.pem" -days 2 \
    -subj "/C=DE/O=SAP Web AS/CN=QA1CLNT200"
cat "$PKI/ca.pem" "$PKI/selfpse.pem" >"$PKI/bundle.pem"

FILE=$FIX/idoc/cremas05_vendor.xml
TLS=(--cacert "$PKI/ca.pem")
# pc CERT [curl args...]: post the IDoc over HTTPS with client certificate CERT
pc() { local n=$1; shift; post "$FILE" "${TLS[@]}" --cert "$PKI/$n.pem" --key "$PKI/$n.key" "$@"; }
CLIENT=(--cert "$PKI/client.pem" --key "$PKI/client.key")
# https URLs to 127.0.0.1: curl sends no SNI for an IP address, as SAP sends
# none unless icm/HTTPS/client_sni_enable is set.
https_start() {
  mlc_start
  BASE=https://127.0.0.1:$PORT
  URL=$BASE/sap/idoc
}
code() { curl -s -o "$T/out" -w '%{http_code}' --max-time 10 "${TLS[@]}" "$@"; }
stop_clean() { mlc_stop; eq "$1: SIGTERM -> exit 0" "$?" 0; }

# ---- 1. HTTPS with client certificates (bundle of a CA and a self-signed PSE)
LISTEN_EXTRA="\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"client_ca\": \"$PKI/bundle.pem\"" \
  mlc_config 64 8 '"admin": { "token": "admin-token-0123456789" }'
https_start
contains "start-up line says https with client certificates" "$(grep 'listening on' "$T/server.log")" \
  "listening on 127.0.0.1:$PORT (https, client certificates required for /sap/idoc"

eq "Basic + client cert signed by client_ca -> 200" "$(pc client)" 200
contains "...stored" "$(body)" "stored"
eq "self-signed PSE certificate in the bundle -> 200" "$(pc selfpse)" 200
eq "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 (SAP's suite) -> 200" \
  "$(pc client --tls-max 1.2 --ciphers ECDHE-RSA-AES128-GCM-SHA256)" 200
eq "TLS 1.2 ECDHE-RSA-AES256-GCM-SHA384 -> 200" \
  "$(pc client --tls-max 1.2 --ciphers ECDHE-RSA-AES256-GCM-SHA384)" 200

# A large packet arrives in many TLS records and streams through as over HTTP.
python3 - "$FIX/idoc/cremas06_packet.xml" "$T/big.xml" <<'PY'
import re, sys
src = open(sys.argv[1], encoding="utf-8").read()
one = re.search(r"<IDOC BEGIN=\"1\">.*?</IDOC>", src, re.S).group(0)
body = "".join(re.sub(r"<DOCNUM>\d+</DOCNUM>", "<DOCNUM>%016d</DOCNUM>" % (92000000 + i), one) for i in range(1500))
open(sys.argv[2], "w", encoding="utf-8").write('<?xml version="1.0" encoding="UTF-8"?>\n<CREMAS06>' + body + "</CREMAS06>\n")
PY
eq "1500-IDoc packet ($(($(stat -c %s "$T/big.xml") >> 20)) MiB) over HTTPS with a cert -> 200" \
  "$(post "$T/big.xml" "${TLS[@]}" "${CLIENT[@]}")" 200
contains "...all stored" "$(body)" "1500 IDocs stored"
eq "the same packet without a cert -> 403 (refused before the body is read)" "$(post "$T/big.xml" "${TLS[@]}")" 403
# Without Expect the refusal is still sent at once and MHD closes without
# reading the body (as for ingest's 401): the client gets the 403, or, when
# the close overtakes it, a reset. Never a 200.
st=$(post "$T/big.xml" "${TLS[@]}" -H 'Expect:')
case $st in
  403|000) ok "the same packet without a cert, no Expect: 100-continue -> 403 or reset (got $st)" ;;
  *) bad "the same packet without a cert, no Expect: 100-continue -> 403 or reset (got $st)" ;;
esac

# No certificate: the TLS handshake succeeds (the certificate is requested,
# not required, so that probes work) and the SAP path answers 403.
eq "no client cert -> 403 (not a TLS alert)" "$(post "$FILE" "${TLS[@]}")" 403
eq "...reason" "$(body)" "client certificate required (SSL client PSE in SM59)"
check "...text/plain" grep -qi '^content-type: text/plain' "$T/headers"
eq "client cert from another CA -> 403" "$(pc stranger)" 403
contains "...reason" "$(body)" "client certificate not signed by listen.client_ca"
contains "...names the issuer" "$(body)" "issuer 'CN=Some Other CA'"
eq "cert for server authentication only -> 403" "$(pc serveronly)" 403
contains "...reason" "$(body)" "not for client authentication"
eq "client cert but wrong Basic password -> 401 (the certificate does not replace Basic)" \
  "$(curl -s -o "$T/body" -w '%{http_code}' "${TLS[@]}" "${CLIENT[@]}" -u "$SAP_USER:wrong" \
       -H 'Content-Type: text/xml' --data-binary "@$FILE" "$URL")" 401
eq "GET with a valid cert reaches ingest -> 405" "$(code "${CLIENT[@]}" "$URL")" 405
# Two POSTs on one kept-alive connection (the second connects 0 times):
# each request is checked and passes.
eq "keep-alive: two POSTs with a cert on one connection" \
  "$(curl -s -o /dev/null -o /dev/null -w '%{http_code}:%{num_connects} ' "${TLS[@]}" "${CLIENT[@]}" \
       -u "$SAP_AUTH" -H 'Content-Type: text/xml' --data-binary "@$FILE" "$URL" "$URL")" "200:1 200:0 "

eq "/healthz over HTTPS without a client cert -> 200" "$(code "$BASE/healthz")" 200
eq "/readyz without a client cert -> 200" "$(code "$BASE/readyz")" 200
eq "/metrics without a client cert -> 200" "$(code "$BASE/metrics")" 200
check "metrics: 403s and the 401 counted as reason=auth" grep -qF 'mlc_requests_rejected_total{reason="auth"} 6' "$T/out"
check "metrics: 403 responses counted" grep -qF 'mlc_ingest_requests_total{code="403"} 5' "$T/out"
eq "/admin/ without a client cert -> 200" \
  "$(code -H 'Authorization: Bearer admin-token-0123456789' "$BASE/admin/queue")" 200
check "log line for the refusal" grep -q 'rejected status=403 reason="client certificate required' "$T/server.log"

# Plain HTTP to the TLS port: the client gets an error, the server carries on.
st=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/healthz"); rc=$?
eq "plain HTTP to the TLS port: no HTTP status" "$st" 000
check "...curl fails (exit $rc)" [ "$rc" -ne 0 ]
printf 'garbage\r\n\r\n' | timeout 5 bash -c "cat >/dev/tcp/127.0.0.1/$PORT" 2>/dev/null
check "server still running" kill -0 "$SERVER_PID"
eq "...and healthy over HTTPS" "$(code "$BASE/healthz")" 200
eq "SAP path still works" "$(pc client)" 200
check "private keys never logged" bash -c "! grep -q 'PRIVATE KEY' '$T/server.log'"
stop_clean "client_ca"

# ---- 2. subject pin
LISTEN_EXTRA="\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"client_ca\": \"$PKI/ca.pem\",
              \"client_subject\": \"CN=PR1CLNT100, O=SAP Trust Community\"" mlc_config
https_start
eq "pin: matching subject -> 200" "$(pc client)" 200
eq "pin: other CN from the same CA -> 403" "$(pc client2)" 403
eq "...reason names the subject and the key" "$(body)" \
  "client certificate subject 'CN=PR1CLNT1000,OU=I0020012345,OU=SAP Web AS,O=SAP Trust Community,C=DE' does not match listen.client_subject"
eq "pin: no cert -> 403" "$(post "$FILE" "${TLS[@]}")" 403
stop_clean "pin"

# ---- 3. HTTPS without client_ca: Basic only (paths relative to the config file's folder)
LISTEN_EXTRA='"tls_cert": "pki/server.pem", "tls_key": "pki/server.key"' mlc_config
https_start
contains "start-up line says https" "$(grep 'listening on' "$T/server.log")" "listening on 127.0.0.1:$PORT (https;"
eq "HTTPS + Basic, no client cert -> 200" "$(post "$FILE" "${TLS[@]}")" 200
eq "HTTPS without Basic -> 401" \
  "$(curl -s -o /dev/null -w '%{http_code}' "${TLS[@]}" -H 'Content-Type: text/xml' --data-binary "@$FILE" "$URL")" 401
eq "an unasked-for client cert is ignored -> 200" "$(pc stranger)" 200
eq "/healthz" "$(code "$BASE/healthz")" 200
stop_clean "https without client_ca"

# ---- 4. plain HTTP still possible (behind an ingress)
LISTEN_EXTRA= mlc_config
mlc_start
contains "start-up line says http" "$(grep 'listening on' "$T/server.log")" "listening on 127.0.0.1:$PORT (http;"
eq "plain HTTP POST -> 200" "$(post "$FILE")" 200
stop_clean "plain"

# ---- 5. configuration errors: exit 2, naming the key, never the key's content
# bad_config "description" 'LISTEN_EXTRA members' expected-substring
bad_config() {
  LISTEN_EXTRA=$2 mlc_config
  local out rc
  out=$(timeout 20 "$BIN" serve -c "$T/config.json" 2>&1); rc=$?
  eq "$1: serve exits 2" "$rc" 2
  contains "$1: message" "$out" "$3"
  case "$out" in *"PRIVATE KEY"*|*"$(sed -n 2p "$PKI/server.key")"*) bad "$1: key content printed" ;; esac
  out=$("$BIN" check-config -c "$T/config.json" 2>&1); rc=$?
  eq "$1: check-config exits 2" "$rc" 2
}
bad_config "cert without key" "\"tls_cert\": \"$PKI/server.pem\"" \
  "listen.tls_key: missing: listen.tls_cert and listen.tls_key go together"
bad_config "key without cert" "\"tls_key\": \"$PKI/server.key\"" "listen.tls_cert: missing"
bad_config "key of another certificate" "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/client.key\"" \
  "listen.tls_key: $PKI/client.key does not belong to the certificate in $PKI/server.pem"
bad_config "missing cert file" "\"tls_cert\": \"$PKI/nope.pem\", \"tls_key\": \"$PKI/server.key\"" \
  "listen.tls_cert: cannot read $PKI/nope.pem: No such file or directory"
bad_config "key file is a certificate" "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.pem\"" \
  "listen.tls_key: $PKI/server.pem: not a usable unencrypted PEM private key"
bad_config "cert file is a key" "\"tls_cert\": \"$PKI/server.key\", \"tls_key\": \"$PKI/server.key\"" \
  "listen.tls_cert: $PKI/server.key: no PEM certificate"
bad_config "client_ca without TLS" "\"client_ca\": \"$PKI/ca.pem\"" "listen.client_ca: requires listen.tls_cert"
bad_config "client_ca not a certificate" \
  "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"client_ca\": \"$PKI/ca.key\"" \
  "listen.client_ca: $PKI/ca.key: no PEM certificate"
bad_config "client_subject without client_ca" \
  "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"client_subject\": \"CN=X\"" \
  "listen.client_subject: requires listen.client_ca"
bad_config "client_subject not a DN" \
  "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"client_ca\": \"$PKI/ca.pem\", \"client_subject\": \"PR1CLNT100\"" \
  "listen.client_subject: 'PR1CLNT100' is not a distinguished name"
bad_config "bad priority string" \
  "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\", \"tls_priorities\": \"NORMAL:+NO-SUCH-THING\"" \
  "listen.tls_priorities: invalid GnuTLS priority string near '+NO-SUCH-THING'"
chmod 000 "$PKI/server.key"
if [ -r "$PKI/server.key" ]; then
  ok "unreadable key file (skipped: running as root)"
else
  bad_config "unreadable key file" "\"tls_cert\": \"$PKI/server.pem\", \"tls_key\": \"$PKI/server.key\"" \
    "listen.tls_key: cannot read $PKI/server.key: Permission denied"
fi
chmod 600 "$PKI/server.key"

mlc_finish
