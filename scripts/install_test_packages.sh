#!/bin/sh
# Install the Debian packages some tests use, where apt is available; each test is skipped without its
# package and says why:
#   chromium               /usr/bin/chromium: the HTML report rendering tests (tests/test_report.py, ...)
#   dataset-fashion-mnist  /usr/share/datasets/fashion-mnist: Fashion-MNIST read in place
#                          (tests/test_data_idx.py::test_debians_fashion_mnist_is_the_published_split)
# Usage: scripts/install_test_packages.sh        (as root, or with sudo available)
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -d /usr/share/datasets/fashion-mnist ] || missing="$missing dataset-fashion-mnist"
if [ -z "$missing" ]; then
    echo "chromium and dataset-fashion-mnist are already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install$missing with your system's package manager" >&2
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
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y $missing
