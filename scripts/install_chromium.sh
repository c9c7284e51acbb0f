#!/bin/sh
# Install headless Chromium (Debian/Ubuntu package `chromium`) for the HTML report test
# (tests/test_report.py::test_report_renders_in_headless_chromium); that test is skipped without it.
# Usage: scripts/install_chromium.sh        (as root, or with sudo available)
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "chromium is already installed: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install Chromium with your system's package manager (the tests expect /usr/bin/chromium)" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "run this script as root (or install sudo)" >&2
        exit 1
    fi
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
/usr/bin/chromium --version 2>/dev/null | tail -n 1
