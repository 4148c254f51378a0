#!/usr/bin/env bash
# Install (or, with --check, only verify) the Debian 12 packages ml-connector
# needs to build, test, benchmark and run its demo. Used by `make`, the README
# and .ci/run, so that there is exactly one list.
set -euo pipefail

# Build and runtime libraries (pkg-config names are checked by --check).
BUILD_PKGS="build-essential pkg-config libmicrohttpd-dev libxml2-dev libcurl4-openssl-dev
libcjson-dev liblmdb-dev zlib1g-dev libssl-dev libgnutls28-dev"
# Tests: cmocka for unit tests, curl/openssl/lmdb-utils for integration tests,
# promtool (package prometheus) to validate /metrics.
TEST_PKGS="libcmocka-dev curl openssl lmdb-utils prometheus python3"
# Benchmarks: wrk drives the HTTP load.
BENCH_PKGS="wrk"

PC_MODULES="libmicrohttpd libxml-2.0 libcurl libcjson lmdb zlib openssl gnutls cmocka"
TOOLS="curl openssl promtool mdb_stat wrk python3"

check() {
  command -v pkg-config >/dev/null 2>&1 || return 1
  command -v cc >/dev/null 2>&1 || return 1
  for m in $PC_MODULES; do pkg-config --exists "$m" || return 1; done
  for t in $TOOLS; do command -v "$t" >/dev/null 2>&1 || return 1; done
  return 0
}

if [ "${1:-}" = "--check" ]; then
  check
  exit $?
fi

if check; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages; run as root or install: $BUILD_PKGS $TEST_PKGS $BENCH_PKGS" | tr '\n' ' ' >&2
  echo >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $BUILD_PKGS $TEST_PKGS $BENCH_PKGS >/dev/null
check || { echo "install-deps: packages installed but a module or tool is still missing" >&2; exit 1; }
echo "install-deps: done"
