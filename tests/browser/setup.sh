#!/usr/bin/env bash
# Installs what tests/browser needs (run as root on Debian 12). Idempotent: apt-get runs only
# when something is missing, `npm ci` only when node_modules does not match the lock file.
#
#   chromium        the browser (Debian's build; Playwright's browser downloads are not used)
#   libnss3-tools   certutil, to trust the test CA in the browser's own NSS database
#   playwright-core pinned in package.json / package-lock.json, driven with executablePath
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need=()
[ -x /usr/lib/chromium/chromium ] || need+=(chromium)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "${#need[@]}" -gt 0 ]; then
    echo "tests/browser/setup.sh: apt-get install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "tests/browser/setup.sh: node $(node --version) is too old, need >= 20" >&2
    exit 69
fi

# npm ci wipes and reinstalls node_modules; skip it when the installed tree matches the lock.
want=$(node -p 'require("'"$here"'/package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("'"$here"'/node_modules/playwright-core/package.json").version } catch { "" }' 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "tests/browser/setup.sh: npm ci (playwright-core $want)"
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
