#!/bin/sh
# Install what the dashboard's browser tests drive: Debian's Chromium, its driver and a font.
# Idempotent: does nothing when they are present. Never downloads browsers from elsewhere.
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"

if [ -z "$missing" ]; then
    echo "browser-deps: chromium, chromium-driver and fonts already installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "browser-deps: need root (or sudo) to install:$missing" >&2
    exit 1
fi

echo "browser-deps: installing$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # the package list is meant to split into words
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
/usr/bin/chromium --version
