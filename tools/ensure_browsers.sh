#!/usr/bin/env bash
# Make sure the browsers the browser tests drive are installed: Chromium and Firefox ESR from
# the system's packages (no browser downloads), and certutil (libnss3-tools), with which the
# tests trust the dev CA in each browser's certificate store. Installs what is missing with
# apt-get (the test machines run as root); exits non-zero with one line saying what is wrong
# otherwise.
set -euo pipefail

missing=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -x "${FIREFOX:-/usr/bin/firefox-esr}" ] || missing+=(firefox-esr)
command -v certutil >/dev/null 2>&1 || missing+=(libnss3-tools)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_browsers: the browser tests need ${missing[*]}; install them, e.g. apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "ensure_browsers: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for exe in "${CHROMIUM:-/usr/bin/chromium}" "${FIREFOX:-/usr/bin/firefox-esr}"; do
  [ -x "$exe" ] || { echo "ensure_browsers: apt-get installed no $exe" >&2; exit 1; }
done
command -v certutil >/dev/null 2>&1 || { echo "ensure_browsers: apt-get installed no certutil" >&2; exit 1; }
