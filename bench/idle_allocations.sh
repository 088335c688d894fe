#!/usr/bin/env bash
# Concurrent idle allocations on one edge, and the edge's RSS per allocation (issue 6,
# "memory"). Starts a release edge on 127.0.0.1 with TURN-REST credentials, has relay_load
# create N allocations (each with one channel bound to an echo peer, as a client in a call
# holds), reads the edge's RSS before and after, and prints one result line (and JSON with
# --json). The allocations are released at the end.
#
#   bench/idle_allocations.sh                 # N = as many as this machine's fd limit allows
#   N=10000 SHARDS=2 bench/idle_allocations.sh
#   bench/idle_allocations.sh --smoke         # 500 allocations
#
# Every allocation costs the edge one relay socket (one file descriptor), and relay_load one
# client socket: N is capped below the smaller of the hard RLIMIT_NOFILE (`ulimit -Hn`) and the
# relay port range. Relay ports 40000-60000 (20,001 ports on one relay address); the load's
# sockets bind 127.0.0.2 so they never take a relay port.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
smoke=0
json=0
for a in "$@"; do
  case $a in
    --smoke) smoke=1 ;;
    --json) json=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument $a" >&2; exit 64 ;;
  esac
done

SHARDS=${SHARDS:-1}
RELAY_FIRST=40000
RELAY_LAST=60000
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -n)
max_by_fds=$(( fd_limit - 500 ))
max_by_ports=$(( RELAY_LAST - RELAY_FIRST + 1 - 500 ))
cap=$(( max_by_fds < max_by_ports ? max_by_fds : max_by_ports ))
if [[ $smoke == 1 ]]; then
  N=${N:-500}
else
  want=${N:-100000}
  N=$(( want < cap ? want : cap ))
  if (( want > cap )); then
    echo "idle_allocations: $want allocations asked, but this machine allows $cap" \
         "(open files limit $fd_limit, hard $(ulimit -Hn); relay ports $RELAY_FIRST-$RELAY_LAST): measuring $N" >&2
  fi
fi

cloudproxy="$root/target/release/cloudproxy"
relay_load="$root/target/release/relay_load"
if [[ ! -x $cloudproxy || ! -x $relay_load ]]; then
  (cd "$root" && cargo build --release -p bench -p cloudproxy)
fi

port=$(( 30000 + RANDOM % 5000 ))
secret="idle-$RANDOM$RANDOM"
log=$(mktemp)
"$cloudproxy" edge --listen 127.0.0.1 --udp-ports "$port-$port" --tcp-ports "$((port + 1))-$((port + 1))" \
  --signal-port 0 --relay-ports "$RELAY_FIRST-$RELAY_LAST" --auth-secret "k1:$secret" \
  --dangerous-allow-loopback-peers --shards "$SHARDS" 2>"$log" &
edge=$!
cleanup() { kill "$edge" 2>/dev/null || true; wait "$edge" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT INT TERM
for _ in $(seq 50); do
  ss -Hlun "sport = :$port" | grep -q . && break
  sleep 0.1
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$edge/status"; }
before=$(rss)
out=$("$relay_load" --server "127.0.0.1:$port" --secret "$secret" --key-id k1 --allocations "$N" \
  --seconds 0 --server-pid "$edge" --threads 2 --bind-ip 127.0.0.2 --setup-timeout 120 --strict 2>&1) || {
  echo "$out" >&2
  echo "idle_allocations: relay_load failed" >&2
  exit 1
}
# relay_load reads the edge's RSS right after setup, while every allocation is alive.
after=$(sed -n 's/.*after setup \([0-9]*\) KiB.*/\1/p' <<<"$out")
ok=$(sed -n 's/^allocations: \([0-9]*\) ok.*/\1/p' <<<"$out")
per=$(awk -v a="$after" -v b="$before" -v n="$ok" 'BEGIN { printf "%.2f", (a - b) / n }')
line="idle allocations: $ok on one edge ($SHARDS shard(s)), each with a channel bound; edge RSS $before KiB -> $after KiB: $per KiB per allocation (target <= 2); fd limit $fd_limit"
echo "$line"
if [[ $json == 1 ]]; then
  printf '{"allocations":%s,"shards":%s,"rss_before_kib":%s,"rss_after_kib":%s,"kib_per_allocation":%s,"fd_limit":%s}\n' \
    "$ok" "$SHARDS" "$before" "$after" "$per" "$fd_limit"
fi
if [[ $ok != "$N" ]]; then
  echo "idle_allocations: only $ok of $N allocations succeeded" >&2
  exit 1
fi
