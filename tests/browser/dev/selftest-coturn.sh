#!/usr/bin/env bash
# Proves run.mjs without the edge: coturn's turnserver as the TURN-over-TLS server and
# dev/wss-echo.mjs as the WSS endpoint, both on a loopback address with a throwaway test CA.
# Runs the scenarios turns, wss and untrusted (which must fail, so it is the negative control)
# and exits non-zero unless all three give their expected outcome.
#
#   tests/browser/dev/selftest-coturn.sh [PORT]     (default 5349; 443 works too)
#
# Needs: chromium, libnss3-tools, coturn, node 20 and `npm ci` done (see ../setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
port=${1:-5349}
ip=127.0.0.1
work=$(mktemp -d /tmp/cloudproxy-browser-selftest-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$here/dev/gen-certs.sh" "$work" "$ip" >/dev/null
turnserver -n --listening-ip="$ip" --relay-ip="$ip" --tls-listening-port="$port" \
    --listening-port=0 --no-udp --no-tcp --no-dtls \
    --cert="$work/server.pem" --pkey="$work/server.key" \
    --lt-cred-mech --user=e2e:e2e-pass --realm=cloudproxy-e2e --allow-loopback-peers \
    --no-cli --fingerprint --log-file="$work/coturn.log" --simple-log \
    --min-port=52000 --max-port=52999 >/dev/null 2>&1 &
pids+=($!)
node "$here/dev/wss-echo.mjs" --cert "$work/server.pem" --key "$work/server.key" --host "$ip" --port 0 \
    >"$work/wss.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    grep -q listening "$work/wss.out" 2>/dev/null && ss -ltn | grep -q "$ip:$port " && break
    sleep 0.1
done
wss_addr=$(sed -n 's/.*"listening":"\([^"]*\)".*/\1/p' "$work/wss.out")
[ -n "$wss_addr" ] || { echo "wss-echo did not start" >&2; cat "$work/wss.out" >&2; exit 1; }

turn="{\"urls\":\"turns:$ip:$port?transport=tcp\",\"username\":\"e2e\",\"credential\":\"e2e-pass\"}"
wss="wss://$wss_addr/ws?upstream=127.0.0.1:9&ticket=dev"
fail=0
for scenario in turns wss untrusted; do
    cfg="{\"scenario\":\"$scenario\",\"caFile\":\"$work/ca.pem\",\"turn\":$turn,\"wssUrl\":\"$wss\"}"
    if out=$(node "$here/run.mjs" "$cfg"); then
        echo "PASS $scenario: $out"
    else
        echo "FAIL $scenario: $out"
        fail=1
    fi
done
exit $fail
