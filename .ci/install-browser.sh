#!/bin/sh
# Debian's headless-capable Chromium for tests/streaming/test_browser.py (idempotent; needs root and apt).
# --no-install-recommends keeps it to the browser (~435 MB) instead of 119 packages (systemd, avahi, cups...).
set -eu
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version
