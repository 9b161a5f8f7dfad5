#!/usr/bin/env bash
# Make sure redis-server is installed, for the Redis directory's tests (make pytest): installs
# Debian's redis-server with apt-get when it is missing (the test machines run as root); exits
# non-zero with one line saying what is wrong otherwise. It does not start a server: the tests
# start their own on a free port (tests/directory/conftest.py).
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_redis: redis-server is needed for the directory tests; install it, e.g. apt-get install redis-server" >&2
    exit 1
  fi
  echo "ensure_redis: installing redis-server with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
  echo "ensure_redis: apt-get installed no redis-server" >&2
  exit 1
fi
