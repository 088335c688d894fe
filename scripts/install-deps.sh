#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root). Idempotent: it
# only calls apt-get when something is missing.
#
#   coturn     turnutils_uclient, the reference TURN client the interop tests run against us
#   iproute2   network namespaces (security regression, whitelist end to end)
#   nftables   `nft -c` checks and applies the rendered whitelists
#   iptables   the rendered iptables whitelist is applied for real in a namespace
#   cargo-fuzz builds the fuzz targets (with the machine's nightly toolchain)
#   chromium, libnss3-tools, playwright-core (npm): tests/browser/setup.sh
set -euo pipefail

need=()
command -v turnutils_uclient >/dev/null 2>&1 || need+=(coturn)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ "${#need[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Chromium, the NSS tools (to trust a test CA) and playwright-core for the browser tests.
bash "$(cd "$(dirname "$0")/.." && pwd)/tests/browser/setup.sh"

# Debian's coturn package may start a turnserver that would hold port 3478: stop it.
if pgrep -x turnserver >/dev/null 2>&1; then
    pkill -x turnserver || true
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "install-deps: no nightly toolchain: fuzz targets cannot be built" >&2
    exit 69
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "install-deps: cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
