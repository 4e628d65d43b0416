#!/bin/sh
# Make sure a headless-capable Chromium is installed (the statistics report's screenshot test
# needs one). Installs Debian's `chromium` package when none is found; prints the binary's path.
# Usage: scripts/ensure_chromium.sh   (as root, or with sudo available)
set -eu

find_chromium() {
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if path=$(find_chromium); then
    echo "$path"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no chromium found and no apt-get to install it; install Chromium" \
         "(Debian/Ubuntu package 'chromium') and put it on PATH" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure_chromium: need root (or sudo) to run apt-get install chromium" >&2
        exit 1
    fi
fi

echo "ensure_chromium: installing Debian's chromium package" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2

if path=$(find_chromium); then
    echo "$path"
    exit 0
fi
echo "ensure_chromium: apt-get finished but no chromium is on PATH" >&2
exit 1
