#!/usr/bin/env bash
# Make sure Node.js 20+ and npm are installed, for the JavaScript SDK's checks (make jstest).
# Installs them with apt-get when missing (the test machines run as root); exits non-zero with
# one line saying what is wrong otherwise.
set -euo pipefail

need_major=20

have_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1
}

if ! have_node; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_node: Node.js and npm are needed (Node $need_major or newer); install them, e.g. apt-get install nodejs npm" >&2
    exit 1
  fi
  echo "ensure_node: installing nodejs and npm with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # a nodejs package that bundles npm (NodeSource's) conflicts with Debian's npm: try both ways
  apt-get install -y -qq nodejs npm >/dev/null 2>&1 || apt-get install -y -qq nodejs >/dev/null
fi
if ! have_node; then
  echo "ensure_node: apt-get installed no working node and npm" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt "$need_major" ]; then
  echo "ensure_node: warning: Node $(node --version) is older than $need_major, which the SDK supports; checking with it anyway" >&2
fi
