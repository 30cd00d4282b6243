#!/usr/bin/env bash
# Make sure headless Chromium (Debian's `chromium` package) is there for the tests that print a
# record to PDF and render the board report (tests/integration/test_records.py).
# Quick no-op when it is installed; as root (the CI) it installs it quietly with apt-get.
set -euo pipefail

have_chromium() {
    command -v chromium >/dev/null 2>&1
}

if have_chromium; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: chromium not found on the PATH." >&2
    echo "ensure-chromium: run this script as root, or install it: sudo apt-get install -y chromium" >&2
    exit 1
fi
echo "ensure-chromium: installing chromium (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
    # A fresh machine's package lists may be empty or stale.
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
if ! have_chromium; then
    echo "ensure-chromium: apt-get installed chromium but no 'chromium' command appeared" >&2
    exit 1
fi
