#!/bin/sh
# The tools the tests call besides Node, Postgres and Redis, installed the way `npm start` treats
# services: Debian's packages with apt-get when running as root, otherwise a message naming the
# command to run. `npm run verify` runs this first, so the README's test command works on a fresh
# machine. Each tool is looked for before anything is installed: on a ready machine this is quick.
#   promtool                          (package prometheus): the metrics and alert-rule tests
#   docker-compose or docker compose  (package docker-compose): the compose file's validation
#   chromium                          (package chromium): the checkout page's browser tests
set -eu

missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  missing="$missing docker-compose"
fi
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need Debian packages that are not installed:$missing" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
  exit 1
fi

echo "installing the test tools:$missing" >&2
apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian's prometheus package starts a server on :9090 where systemd runs; the tests need only promtool.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
