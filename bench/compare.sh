#!/usr/bin/env bash
# Side-by-side TURN relay comparison: our edge vs coturn (and a null relay as the kernel's
# limit), same machine, same ports, same credentials, back to back, rounds interleaved.
# Driven by our load generator (relay_load) and by coturn's own turnutils_uclient.
# Each round first runs the loss sweeps (highest rate with < 0.1 % loss), then the other
# scenarios, among them paced runs at half of the edge's highest lossless rate of that round.
#
#   bench/compare.sh            # defaults below (about ten minutes)
#   bench/compare.sh --smoke    # everything at a tenth of the size; fails only on errors
#   ROUNDS=5 SECONDS=10 ALLOCS=64 SIZES="200 1200" bench/compare.sh
#
# Writes bench/results/<timestamp>.json (every run + medians), <timestamp>.md and latest.md
# (tables of medians with min/max and ratios), and <timestamp>.png / latest.png (chart, if
# python3 has matplotlib); RESULTS_DIR overrides the directory (a smoke run uses a temporary
# one unless RESULTS_DIR is set). See bench/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

smoke=0
for a in "$@"; do
  case "$a" in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "compare.sh: unknown argument $a" >&2; exit 64 ;;
  esac
done

# ---- parameters (environment) ----
ROUNDS=${ROUNDS:-3}
# Measured seconds per relay_load run. Bash's own $SECONDS counts time, so read the environment.
SECONDS_=$(printenv SECONDS || true)
SECONDS_=${SECONDS_:-3}
WARMUP=${WARMUP:-0.5}
ALLOCS=${ALLOCS:-32}            # allocations in the traffic runs
SIZES=${SIZES:-${SIZE:-"200 1200"}}
WINDOW=${WINDOW:-8}             # flat-out packets in flight per allocation
RATE=${RATE:-20000}             # paced CPU runs: total offered packets/s (client -> peer)
SWEEP_START=${SWEEP_START:-20000}       # loss sweep: first step, packets/s in all
SWEEP_FACTOR=${SWEEP_FACTOR:-1.5}       # loss sweep: rate multiplier per passing step
SWEEP_STEP=${SWEEP_STEP:-1}             # loss sweep: seconds per step
SWEEP_SETTLE_MS=${SWEEP_SETTLE_MS:-300} # loss sweep: idle pause after each step
SWEEP_STEPS=${SWEEP_STEPS:-16}          # loss sweep: steps at most (refinement included)
SWEEP_REFINE=${SWEEP_REFINE:-3}         # loss sweep: bisections after the first failing step
ALLOC_N=${ALLOC_N:-5000}        # allocations in the allocation-rate run (long enough to leave start-up behind)
THREADS=${THREADS:-2}           # generator threads
SERVER_THREADS=${SERVER_THREADS:-2}   # edge shards, coturn relay threads, null relay threads
UCLIENT_N=${UCLIENT_N:-1000}    # turnutils_uclient messages per client
UCLIENT_M=${UCLIENT_M:-10}      # turnutils_uclient clients
PORT=${PORT:-3478}              # UDP and TCP listening port of both servers
TLS_PORT=${TLS_PORT:-5349}      # TURN-over-TLS port of both servers
PEER_PORT=${PEER_PORT:-20480}   # turnutils_peer (echo peer for turnutils_uclient)
SERVERS=${SERVERS:-"edge coturn"}
SERVER_CPUS=${SERVER_CPUS:-}    # optional taskset CPU list for the servers (e.g. 1); the null relay's threads too
LOAD_CPUS=${LOAD_CPUS:-}        # optional taskset CPU list for the load tools (e.g. 0)
if [[ $smoke == 1 ]]; then
  ROUNDS=1
  SECONDS_=$(awk "BEGIN{print $SECONDS_/10 < 0.3 ? 0.3 : $SECONDS_/10}")
  WARMUP=0.1
  ALLOCS=$(( ALLOCS / 10 > 2 ? ALLOCS / 10 : 2 ))
  ALLOC_N=$(( ALLOC_N / 10 ))
  RATE=$(( RATE / 10 ))
  SWEEP_START=$(( SWEEP_START / 10 ))
  SWEEP_STEP=$(awk "BEGIN{print $SWEEP_STEP/10}")
  SWEEP_SETTLE_MS=$(( SWEEP_SETTLE_MS / 6 ))
  SWEEP_STEPS=3
  SWEEP_REFINE=1
  UCLIENT_N=$(( UCLIENT_N / 10 ))
  UCLIENT_M=$(( UCLIENT_M / 5 > 1 ? UCLIENT_M / 5 : 1 ))
fi

cloudproxy="$root/target/release/cloudproxy"
relay_load="$root/target/release/relay_load"
if [[ ! -x $cloudproxy || ! -x $relay_load ]]; then
  echo "building release binaries (cargo build --release -p bench -p cloudproxy)" >&2
  (cd "$root" && cargo build --release -p bench -p cloudproxy)
fi
have_coturn=1
if ! command -v turnserver >/dev/null; then
  echo "compare.sh: turnserver not found (apt-get install coturn); coturn runs skipped" >&2
  have_coturn=0
  SERVERS=${SERVERS//coturn/}
fi
have_uclient=1
command -v turnutils_uclient >/dev/null && command -v turnutils_peer >/dev/null || have_uclient=0

# Optional CPU pinning: command prefixes (empty arrays when not pinning). Used as
# "${srv_pin[@]}" cmd, never through a shell function, so that $! is the server's own pid.
srv_pin=(); load_pin=()
if command -v taskset >/dev/null; then
  [[ -n $SERVER_CPUS ]] && srv_pin=(taskset -c "$SERVER_CPUS")
  [[ -n $LOAD_CPUS ]] && load_pin=(taskset -c "$LOAD_CPUS")
fi

listening() { ss -Hlnu "sport = :$1" | grep -q . || ss -Hlnt "sport = :$1" | grep -q .; }
# Both servers set SO_REUSEPORT: a leftover one would silently share the port with the next.
for p in "$PORT" "$TLS_PORT" "$PEER_PORT"; do
  if listening "$p"; then
    echo "compare.sh: port $p is already in use (a system coturn, or a leftover server?):" >&2
    ss -Hlnptu "sport = :$p" >&2 || true
    exit 69
  fi
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
work=$(mktemp -d "${TMPDIR:-/tmp}/cloudproxy-compare.XXXXXX")
# A smoke run is not a measurement: its report goes to the work directory, not results/.
if [[ $smoke == 1 ]]; then results=${RESULTS_DIR:-$work/results}; else results=${RESULTS_DIR:-$here/results}; fi
mkdir -p "$results"
runs="$work/runs.jsonl"
: > "$runs"
halves="$work/half-rates.jsonl"   # per round and size: the rate of the half-of-max runs
: > "$halves"
errors=0
server_pid=""
peer_pid=""

cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [[ -n $peer_pid ]] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null || true
}
trap cleanup EXIT

# TURN over TLS: both servers get the same self-signed certificate (the edge serves TLS only
# with a certificate; relay_load runs with --tls-insecure).
have_tls=1
if command -v openssl >/dev/null && openssl req -x509 -newkey ec \
    -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/tls.key" -out "$work/tls.crt" >"$work/openssl.log" 2>&1; then
  coturn_tls=(--cert="$work/tls.crt" --pkey="$work/tls.key" --tls-listening-port="$TLS_PORT")
  edge_tls="tls_cert = \"$work/tls.crt\"
tls_key = \"$work/tls.key\""
else
  echo "compare.sh: no openssl (or it failed): TLS scenarios skipped" >&2
  have_tls=0
  coturn_tls=(--no-tls)
  edge_tls=""
fi

cat > "$work/edge.toml" <<EOF
listen = "127.0.0.1"
udp_ports = "$PORT-$PORT"
tcp_ports = "$PORT-$PORT"
relay_ports = "49152-65535"
realm = "cloudproxy"
users = ["bench:bench"]
dangerous_allow_loopback_peers = true
signal_port = 0
tls_port = $TLS_PORT
$edge_tls
shards = $SERVER_THREADS
max_allocations = 200000
max_allocations_per_user = 200000
max_connections_per_ip = 100000
EOF

start_server() { # NAME ROUND -> sets server_pid, waits until the UDP, TCP (and TLS) ports listen
  local name=$1 log="$work/$1-r$2.log"
  case "$name" in
    edge)
      RUST_LOG=warn "${srv_pin[@]}" "$cloudproxy" edge --config "$work/edge.toml" >"$log" 2>&1 &
      ;;
    coturn)
      "${srv_pin[@]}" turnserver -n --listening-ip=127.0.0.1 --listening-port="$PORT" \
        --relay-ip=127.0.0.1 --lt-cred-mech --user=bench:bench --realm=cloudproxy \
        --allow-loopback-peers "${coturn_tls[@]}" --no-dtls --min-port=49152 --max-port=65535 \
        --relay-threads="$SERVER_THREADS" --no-cli --no-stdout-log --log-file=/dev/null \
        --simple-log >"$log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    if ss -Hlnt "sport = :$PORT" | grep -q . && ss -Hlnu "sport = :$PORT" | grep -q . &&
        { [[ $have_tls == 0 ]] || ss -Hlnt "sport = :$TLS_PORT" | grep -q .; }; then
      sleep 0.2
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  echo "compare.sh: $name did not start; log:" >&2
  cat "$log" >&2
  errors=$((errors + 1))
  server_pid=""
  return 1
}

stop_server() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  for _ in $(seq 100); do
    listening "$PORT" || listening "$TLS_PORT" || return 0
    sleep 0.1
  done
  echo "compare.sh: port $PORT or $TLS_PORT still in use after stopping the server" >&2
  errors=$((errors + 1))
  return 1
}

strict=()
[[ $smoke == 1 ]] && strict=(--strict)

last_out=""
run_load() { # SERVER ROUND SCENARIO args...  (TARGET_PORT=... overrides $PORT; sets last_out)
  local server=$1 round=$2 scenario=$3; shift 3
  local target=(--server "127.0.0.1:${TARGET_PORT:-$PORT}" --user bench --password bench --server-pid "$server_pid")
  if [[ $server == null ]]; then
    target=(--null-relay --null-threads "$SERVER_THREADS")
    # Pinned runs: the null relay's threads get the servers' CPUs, the load keeps its own.
    (( ${#srv_pin[@]} )) && target+=(--null-cpus "$SERVER_CPUS")
  fi
  local out
  echo "== $server round $round: $scenario" >&2
  last_out=""
  if out=$("${load_pin[@]}" "$relay_load" "${target[@]}" --json "${strict[@]}" \
      --threads "$THREADS" --warmup "$WARMUP" \
      --label "server=$server round=$round scenario=$scenario" "$@"); then
    echo "$out" >> "$runs"
    last_out=$out
  else
    echo "compare.sh: relay_load failed ($server $scenario)" >&2
    [[ -n $out ]] && echo "$out" >> "$runs"
    errors=$((errors + 1))
  fi
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

run_uclient() { # SERVER ROUND SCENARIO uclient-args...
  local server=$1 round=$2 scenario=$3; shift 3
  local out="$work/uclient-$server-r$round-$scenario.txt"
  echo "== $server round $round: $scenario (turnutils_uclient $*)" >&2
  local t0 t1 c0 c1 rc=0
  c0=$(ticks "$server_pid"); t0=$(date +%s.%N)
  (cd "$work" && "${load_pin[@]}" timeout 120 turnutils_uclient "$@" -u bench -w bench \
      -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" 127.0.0.1) >"$out" 2>&1 || rc=$?
  t1=$(date +%s.%N); c1=$(ticks "$server_pid")
  printf '{"tool":"turnutils_uclient","label":"server=%s round=%s scenario=%s","args":"%s","exit":%d,"wall_s":%s,"server_ticks":%s,"ticks_per_s":%s,"server_rss_kib":%s,"output":"%s"}\n' \
    "$server" "$round" "$scenario" "$*" "$rc" "$(awk "BEGIN{print $t1-$t0}")" \
    "$((c1 - c0))" "$(getconf CLK_TCK)" "$(rss "$server_pid")" "$out" >> "$runs"
  if [[ $rc != 0 ]] || ! grep -q "Total lost packets" "$out"; then
    echo "compare.sh: turnutils_uclient failed ($server $scenario, exit $rc); tail:" >&2
    tail -5 "$out" >&2
    errors=$((errors + 1))
  fi
}

sizes=($SIZES)
first_size=${sizes[0]}
last_size=${sizes[-1]}
per_alloc_rate=$(awk "BEGIN{print $RATE/$ALLOCS}")

sweep_scenarios() { # SERVER ROUND: UDP ChannelData loss sweeps, each size
  local s=$1 r=$2
  for size in "${sizes[@]}"; do
    run_load "$s" "$r" "udp-channel-$size-sweep" --transport udp --mode channel --size "$size" \
      --allocations "$ALLOCS" --sweep "$SWEEP_START" --sweep-factor "$SWEEP_FACTOR" \
      --sweep-step-seconds "$SWEEP_STEP" --sweep-settle-ms "$SWEEP_SETTLE_MS" \
      --sweep-max-steps "$SWEEP_STEPS" --sweep-refine "$SWEEP_REFINE"
    [[ $s == edge ]] && edge_sweep[$size]=$last_out
  done
  return 0
}

# Per size: total packets/s of this round's half-of-max runs (half the edge's highest lossless
# rate; the same absolute rate for every server). Recorded in $halves for the report.
declare -A edge_sweep=() half_rate=()
pick_half_rates() { # ROUND
  local r=$1 size max limit basis
  for size in "${sizes[@]}"; do
    half_rate[$size]=""
    if [[ -z ${edge_sweep[$size]:-} ]]; then
      echo "compare.sh: round $r: no edge sweep for $size B: half-of-max runs skipped" >&2
      continue
    fi
    # "MAX LIMIT": the highest lossless rate ("-": none) and what limited it ("none": no step failed).
    max=""; limit=""
    read -r max limit < <(python3 -c 'import json,sys
s = json.loads(sys.stdin.read()).get("sweep") or {}
v = s.get("max_lossless_pps")
print(round(v) if v else "-", s.get("limit") or "none")' <<<"${edge_sweep[$size]}" 2>/dev/null) || true
    if [[ -n ${max:-} && $max != - ]]; then
      half_rate[$size]=$(awk "BEGIN{printf \"%.0f\", $max/2}")
      basis="half of the edge's highest lossless rate, $max packets/s"
      if [[ $limit == none ]]; then basis+=" (no step failed: a lower bound)"; fi
    else
      # No step passed (a loaded machine): still run, at half the sweep's start, and say so.
      half_rate[$size]=$(awk "BEGIN{printf \"%.0f\", $SWEEP_START/2}")
      basis="fallback: no lossless edge step, half the sweep's start rate"
    fi
    printf '{"round":%s,"size":%s,"pps":%s,"basis":"%s"}\n' "$r" "$size" "${half_rate[$size]}" "$basis" >> "$halves"
  done
  edge_sweep=()
}

traffic_scenarios() { # SERVER ROUND  (the null relay: UDP and TCP ChannelData, and allocate)
  local s=$1 r=$2
  for size in "${sizes[@]}"; do
    run_load "$s" "$r" "udp-channel-$size-max" --transport udp --mode channel --size "$size" \
      --allocations "$ALLOCS" --flat-out --window "$WINDOW" --seconds "$SECONDS_"
    run_load "$s" "$r" "udp-channel-$size-paced" --transport udp --mode channel --size "$size" \
      --allocations "$ALLOCS" --rate "$per_alloc_rate" --seconds "$SECONDS_"
    if [[ -n ${half_rate[$size]:-} ]]; then
      local half_args=(--transport udp --mode channel --size "$size" --allocations "$ALLOCS"
        --rate "$(awk "BEGIN{print ${half_rate[$size]}/$ALLOCS}")" --seconds "$SECONDS_")
      run_load "$s" "$r" "udp-channel-$size-half" "${half_args[@]}"
      # The null relay twice, back to back, same rate: how far two identical runs' tails
      # differ is the resolution of the added-latency measurement on this machine.
      if [[ $s == null ]]; then
        run_load "$s" "$r" "udp-channel-$size-half-again" "${half_args[@]}"
      fi
    fi
  done
  if [[ $s == null ]]; then
    # Its TCP side (ChannelData frames to datagrams and back), and its STUN side (the kernel
    # work of an allocation and nothing else).
    run_load "$s" "$r" "tcp-channel-$last_size-max" --transport tcp --mode channel --size "$last_size" \
      --allocations "$ALLOCS" --flat-out --window "$WINDOW" --seconds "$SECONDS_"
    run_load "$s" "$r" "allocate" --transport udp --allocations "$ALLOC_N" --seconds 0
    return 0
  fi
  run_load "$s" "$r" "udp-send-$first_size-max" --transport udp --mode send --size "$first_size" \
    --allocations "$ALLOCS" --flat-out --window "$WINDOW" --seconds "$SECONDS_"
  run_load "$s" "$r" "tcp-channel-$last_size-max" --transport tcp --mode channel --size "$last_size" \
    --allocations "$ALLOCS" --flat-out --window "$WINDOW" --seconds "$SECONDS_"
  if [[ $have_tls == 1 ]]; then
    TARGET_PORT=$TLS_PORT run_load "$s" "$r" "tls-channel-$last_size-max" --transport tls \
      --tls-insecure --tls-name localhost --mode channel --size "$last_size" \
      --allocations "$ALLOCS" --flat-out --window "$WINDOW" --seconds "$SECONDS_"
  fi
  run_load "$s" "$r" "allocate" --transport udp --allocations "$ALLOC_N" --seconds 0
}

if [[ $have_uclient == 1 ]]; then
  "${load_pin[@]}" turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >"$work/peer.log" 2>&1 &
  peer_pid=$!
fi

for r in $(seq "$ROUNDS"); do
  # Interleave: alternate which server goes first, so drift (thermal, other load) spreads.
  order=($SERVERS)
  if (( r % 2 == 0 )); then order=($(printf '%s\n' "${order[@]}" | tac)); fi
  # Loss sweeps first: the half-of-max runs below need the edge's rate of this round.
  for s in "${order[@]}"; do
    start_server "$s" "$r-sweep" || continue
    sweep_scenarios "$s" "$r"
    stop_server
  done
  sweep_scenarios null "$r"
  pick_half_rates "$r"
  for s in "${order[@]}"; do
    start_server "$s" "$r" || continue
    traffic_scenarios "$s" "$r"
    if [[ $have_uclient == 1 ]]; then
      run_uclient "$s" "$r" "uclient-udp-channel-$first_size" -c -n "$UCLIENT_N" -m "$UCLIENT_M" -l "$first_size" -z 0
      run_uclient "$s" "$r" "uclient-tcp-channel-$last_size" -t -c -n "$UCLIENT_N" -m "$UCLIENT_M" -l "$last_size" -z 0
    fi
    stop_server
  done
  traffic_scenarios null "$r"
done

meta="$work/meta.json"
python3 - "$meta" "$halves" <<EOF
import json, os, platform, subprocess, sys
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception: return ""
json.dump({
  "timestamp": "$stamp", "smoke": $smoke, "rounds": $ROUNDS, "seconds": $SECONDS_,
  "warmup": $WARMUP, "allocations": $ALLOCS, "sizes": "$SIZES".split(), "window": $WINDOW,
  "paced_total_pps": $RATE, "alloc_run_allocations": $ALLOC_N, "generator_threads": $THREADS,
  "sweep": {"start_pps": $SWEEP_START, "factor": $SWEEP_FACTOR, "step_s": $SWEEP_STEP,
            "settle_ms": $SWEEP_SETTLE_MS, "max_steps": $SWEEP_STEPS, "refine": $SWEEP_REFINE},
  "half_rates": [json.loads(l) for l in open(sys.argv[2]) if l.strip()],
  "tls": $have_tls, "tls_port": $TLS_PORT,
  "server_threads": $SERVER_THREADS, "uclient_n": $UCLIENT_N, "uclient_m": $UCLIENT_M,
  "port": $PORT, "server_cpus": "$SERVER_CPUS", "load_cpus": "$LOAD_CPUS",
  "cpus": os.cpu_count(), "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
  "kernel": platform.release(), "coturn": sh("turnserver --version 2>&1 | head -1"),
  "git": sh("git -C '$root' rev-parse --short HEAD") + (" (dirty)" if sh("git -C '$root' status --porcelain") else ""),
  "errors": $errors,
}, open(sys.argv[1], "w"))
EOF

python3 "$here/report.py" --runs "$runs" --meta "$meta" --out "$results" --stamp "$stamp" || errors=$((errors + 1))
if [[ $smoke == 1 && $errors == 0 && -z ${KEEP:-} ]]; then
  rm -rf "$work"
else
  echo "compare.sh: raw runs and logs kept in $work" >&2
fi
if [[ $errors != 0 ]]; then
  echo "compare.sh: $errors error(s)" >&2
  exit 1
fi
