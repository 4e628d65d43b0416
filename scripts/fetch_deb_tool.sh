#!/bin/sh
# Unpack one Debian package into a project-local directory without installing it (no root
# needed once the package lists are there): `apt-get download` + `dpkg -x`.
# Usage: scripts/fetch_deb_tool.sh PACKAGE DEST_DIR
#   prometheus   -> DEST_DIR/usr/bin/prometheus, DEST_DIR/usr/bin/promtool
#   libfaketime  -> DEST_DIR/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
set -eu
package=$1
mkdir -p "$2"
dest=$(cd "$2" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download "$package" >/dev/null 2>&1; then
    # No package lists yet (a fresh machine): fetch them once, as root if we are.
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update >/dev/null 2>&1 || true
    fi
    if ! apt-get download "$package" >/dev/null 2>&1; then
        echo "fetch_deb_tool: could not download Debian's '$package' package: run" \
             "'apt-get update' (as root) and try again" >&2
        exit 1
    fi
fi

dpkg -x ./*.deb "$dest"
echo "unpacked $(ls ./*.deb) into $dest"
