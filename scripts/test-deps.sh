#!/usr/bin/env bash
# Debian packages the tests use, installed when missing (as root, or with
# sudo): tzdata for cron schedules in named time zones, graphviz to check
# `emq-cli graph dot`, chromium and chromium-driver for the dashboard's
# browser tests (headless, driven over WebDriver; no browser download),
# iproute2 and iptables for the multi-host test bed (network namespaces,
# loss and partitions; tests/src/netbed.rs), postgresql for the HA tests (a
# private cluster per test, made by initdb in a scratch directory and run as
# nobody; the package's own cluster is not used).
set -euo pipefail
missing=()
[ -e /usr/share/zoneinfo/Europe/Berlin ] || missing+=(tzdata)
[ -x /usr/bin/dot ] || missing+=(graphviz)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing+=(iptables)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages for the tests: ${missing[*]}" >&2
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
