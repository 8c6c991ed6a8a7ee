#!/bin/bash
# Installs the Debian packages pgfunnel needs to build and test, when missing.
# As root (or with sudo) it runs apt-get; otherwise it names the packages.
# chromium (headless) and a font are for the dashboard's browser test (t_dashboard.sh).
set -eu
PKGS="build-essential pkg-config libevent-dev libpq-dev libinih-dev libcmocka-dev libssl-dev libidn-dev libsystemd-dev
      postgresql postgresql-contrib postgresql-client clang-format clang libclang-rt-14-dev
      curl openssl procps iproute2 valgrind python3 haproxy
      dpkg-dev debhelper lintian man-db groff-base
      chromium fonts-dejavu-core"
missing=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: missing packages: ${missing[*]}"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else
    echo "deps: please install them: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
