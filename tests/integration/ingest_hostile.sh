#!/usr/bin/env bash
# Hostile bodies: each is refused with a 4xx in bounded time and memory, and
# the server stays healthy. Nothing of them reaches the queue.
. "$(dirname "$0")/lib.sh"

mlc_config 64 4
mlc_start

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
timed_post() { # timed_post file [curl args] -> "status seconds"
  local f=$1; shift
  curl -s -o "$T/body" -w '%{http_code} %{time_total}' --max-time 20 \
       -u "$SAP_AUTH" -H 'Content-Type: text/xml' --data-binary "@$f" "$@" "$URL"
}
expect_4xx() { # name file want [curl args]
  local name=$1 f=$2 want=$3; shift 3
  local out st secs
  out=$(timed_post "$f" "$@"); st=${out% *}; secs=${out#* }
  eq "$name -> $want" "$st" "$want"
  check "$name answered within 5 s ($secs s)" awk -v s="$secs" 'BEGIN{exit !(s < 5)}'
  check "$name: reason is one line" [ "$(tr -d '\r' <"$T/body" | wc -l)" -le 1 ]
  eq "$name: healthz still 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" 200
}

# Billion laughs, external entity, plain DOCTYPE: refused before any entity exists.
cat >"$T/laughs.xml" <<'XML'
<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><DOCNUM>1</DOCNUM></EDI_DC40>
<E1LFA1M SEGMENT="1"><NAME1>&lol9;</NAME1></E1LFA1M></IDOC></CREMAS05>
XML
expect_4xx "billion laughs" "$T/laughs.xml" 400
contains "billion laughs: reason names DOCTYPE" "$(body)" "DOCTYPE"

cat >"$T/xxe.xml" <<'XML'
<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><DOCNUM>2</DOCNUM></EDI_DC40>
<E1LFA1M SEGMENT="1"><NAME1>&xxe;</NAME1></E1LFA1M></IDOC></CREMAS05>
XML
expect_4xx "external entity" "$T/xxe.xml" 400
check "external entity: no file content echoed" bash -c "! grep -q 'root:' '$T/body'"

printf '<?xml version="1.0"?>\n<!DOCTYPE CREMAS05 SYSTEM "http://127.0.0.1:9/x.dtd">\n<CREMAS05/>' >"$T/doctype.xml"
expect_4xx "DOCTYPE with external DTD" "$T/doctype.xml" 400

printf '<CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><DOCNUM>3</DOCNUM></EDI_DC40><E1LFA1M SEGMENT="1"><NAME1>&undefined;</NAME1></E1LFA1M></IDOC></CREMAS05>' >"$T/undef.xml"
expect_4xx "undefined entity" "$T/undef.xml" 400

# 100k-deep nesting (about 1.1 MB).
python3 -c "
import sys
sys.stdout.write('<CREMAS05><IDOC BEGIN=\"1\">' + '<a>'*100000 + '</a>'*100000 + '</IDOC></CREMAS05>')" >"$T/deep.xml"
expect_4xx "100k-deep nesting" "$T/deep.xml" 400

# Invalid UTF-8 in a value of a document declared UTF-8.
printf '<?xml version="1.0" encoding="UTF-8"?><CREMAS05><IDOC BEGIN="1"><EDI_DC40 SEGMENT="1"><DOCNUM>4</DOCNUM></EDI_DC40><E1LFA1M SEGMENT="1"><NAME1>M\xfc\xffller</NAME1></E1LFA1M></IDOC></CREMAS05>' >"$T/badutf8.xml"
expect_4xx "invalid UTF-8" "$T/badutf8.xml" 400

# Truncated in the middle of a packet.
head -c 900 "$FIX/idoc/cremas06_packet.xml" >"$T/trunc.xml"
expect_4xx "truncated packet" "$T/trunc.xml" 400

# gzip bomb: a 256 MiB IDoc-looking document in ~250 KB; the 4 MiB decompressed limit stops it.
(printf '<?xml version="1.0"?><CREMAS05><IDOC BEGIN="1"><E1LFA1M SEGMENT="1"><NAME1>'
 head -c $((256 * 1024 * 1024)) /dev/zero | tr '\0' a) | gzip -9 >"$T/bomb.gz"
rss0=$(rss_kb)
expect_4xx "gzip bomb" "$T/bomb.gz" 413 -H 'Content-Encoding: gzip'
contains "gzip bomb: reason says after gunzip" "$(body)" "gunzip"
rss1=$(rss_kb)
check "gzip bomb: server RSS grew by < 64 MiB ($rss0 -> $rss1 kB)" [ $((rss1 - rss0)) -lt 65536 ]

# Corrupt gzip.
head -c 5000 /dev/urandom >"$T/notgz"
expect_4xx "corrupt gzip" "$T/notgz" 400 -H 'Content-Encoding: gzip'

# A slow client that never finishes cannot hold the server: others still get through.
(exec 3<>/dev/tcp/127.0.0.1/$PORT; printf 'POST /sap/idoc HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n<CRE' >&3; sleep 3) &
slow=$!
sleep 0.2
eq "a normal request while a slow one hangs -> 200" "$(post "$FIX/idoc/debmas06_customer.xml")" 200
kill $slow 2>/dev/null; wait $slow 2>/dev/null

# Request heads: 16 KB of headers (far above what SAP sends) are served;
# 48 KB exceed the 32 KiB per-connection memory and get 431 from MHD before
# any body byte is read; the server stays healthy.
big=$(head -c 16000 /dev/zero | tr '\0' a)
eq "16 KB of request headers -> 200" "$(post "$FIX/idoc/debmas06_customer.xml" -H "X-Padding: $big")" 200
big=$(head -c 48000 /dev/zero | tr '\0' a)
eq "48 KB of request headers -> 431" "$(post "$FIX/idoc/cremas05_vendor.xml" -H "X-Padding: $big")" 431
eq "after an oversized head: healthz still 200" "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/healthz")" 200

eq "nothing hostile was queued (only the one good IDoc)" "$(qcount pending)" 1
mlc_stop; eq "server exits 0 on SIGTERM" "$?" 0
mlc_finish
