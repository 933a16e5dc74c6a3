#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes sure the servers the test suite runs against are installed: PostgreSQL, Redis and nginx,
# the headless browser the admin console tests drive (Chromium and its chromedriver), and wrk for
# the benchmarks.
# Installs them with apt-get when they are missing and this user may (root, or sudo without a
# password). Set BASTION_NO_INSTALL=1 to forbid installing; the suite then fails loudly instead.
set -euo pipefail

missing=()
pg_bindir=""
if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
  pg_bindir=$(pg_config --bindir)
else
  pg_bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
fi
[ -n "$pg_bindir" ] && [ -x "$pg_bindir/initdb" ] && [ -x "$pg_bindir/postgres" ] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# redis-cli (redis-tools): `--cluster create` joins the test run's three-master Redis Cluster.
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
# nginx: the end-to-end test of the generated reverse-proxy config runs the real one.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# chromium + chromium-driver: the admin console's browser tests (tests/e2e/test_console_browser.py).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
# wrk: the load generator of bench/access_log.py (served Bastion against a bare app on loopback).
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
for extra in ${BASTION_EXTRA_PACKAGES:-}; do
  dpkg -s "$extra" >/dev/null 2>&1 || missing+=("$extra")
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "${BASTION_NO_INSTALL:-0}" = "1" ]; then
  echo "provision: missing ${missing[*]} and BASTION_NO_INSTALL=1 forbids installing" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision: missing ${missing[*]}; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "provision: missing ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
echo "provision: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# Package scripts must not start system-wide services: the tests start their own throwaway ones.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created_policy=1
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "$created_policy" = 1 ] && $sudo rm -f "$policy"
echo "provision: done" >&2
