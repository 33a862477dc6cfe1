#!/usr/bin/env bash
# Peers side by side, from one run: the same fenced, durable completion ("job J, run R done by
# holder H with token G", every operation a new run) through
#
#   fencekit  `fencekit store` over HTTPS with mutual TLS: POST /complete?job=J&run=R&generation=G,
#             from Go's net/http and from a minimal HTTP/1.1 client on the same TLS
#             (fencekit-lean: the request written and the answer read by the calling
#             goroutine, as go-redis does; net/http's hand-offs between goroutines cost a
#             lone client about a quarter of its rate here)
#   etcd      the documented way: a Txn comparing the election key's create revision (the
#             leader's token), then a put of the completion
#   redis     a Lua script checking the token against a stored high-water mark, then setting
#             the completion; appendonly yes, appendfsync always
#
# from 1 and from 64 clients (goroutines of one Go program, each with a connection of its own),
# each run a warm-up and then a fixed, timed part, the systems taking turns for --rounds rounds;
# a table of the median round's operations per second and p50/p99 latency. Every answer is checked: a refused or failed write fails the run. Before the runs, a
# probe per system shows it refuses a deposed leader's token and that the refused completion
# did not land, so what is compared is fencing, not plain writes.
#
#   benches/peers/measure.sh [--rounds N] [--duration S] [--warmup S] [--clients 1,64]
#                            [--baseline FENCEKIT] [--out DIR]
#
#   --rounds N     rounds (default 3): in each, every system's probe and runs, one system after
#                  another; the table gives the median round of each system and client count
#   --duration S   each run's timed part, in seconds (default 10)
#   --warmup S     untimed operations first, in seconds (default 2)
#   --clients L    client counts (default 1,64)
#   --baseline F   also measure the fencekit command F (another build: before a change),
#                  its own store beside the first, taking its turns in the same rounds
#   --out DIR      keep the JSON lines, logs and the table in DIR (default: a temporary
#                  directory, named at the end)
#
# It installs nothing: a missing tool fails it, naming the tool (etcd and redis-server are
# Debian's etcd-server and redis-server; tests/coordinators.sh starts them). It builds the
# fencekit command (release; CARGO_TARGET_DIR is honoured, FENCEKIT=path/to/fencekit skips the
# build) and the Go client (benches/peers/client), starts etcd, redis-server and a
# `fencekit store --tls-dir` on private loopback ports with their data under one temporary
# directory on the same file system, and stops them however it ends. Not run by test.sh.
# benches/README.md, "Peers", has a run's results and what they mean.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=3
duration=10
warmup=2
clients=1,64
baseline=
out=
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=${2:?--rounds needs a number}; shift 2 ;;
        --duration) duration=${2:?--duration needs seconds}; shift 2 ;;
        --warmup) warmup=${2:?--warmup needs seconds}; shift 2 ;;
        --clients) clients=${2:?--clients needs a list}; shift 2 ;;
        --baseline) baseline=${2:?--baseline needs a fencekit command}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        *) sed -n '2,39p' "$0" >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$duration" "$warmup"; do
    case "$v" in '' | *[!0-9]*) echo "measure.sh: --rounds, --duration and --warmup take whole numbers" >&2; exit 2 ;; esac
done
[ "$duration" -gt 0 ] && [ "$rounds" -gt 0 ] || { echo "measure.sh: --rounds and --duration must be 1 or more" >&2; exit 2; }

step() { printf '\n==> [%dm%02ds] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*" >&2; }
die() { echo "measure.sh: $*" >&2; exit 1; }

# --- tools: fail before starting anything, naming what is missing ---------------------------
missing=()
for tool in cargo go python3 curl jq awk etcd redis-server redis-cli; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    die "missing: ${missing[*]} (cargo: Rust 1.95 with rustup; go: Go 1.26 or later; etcd: Debian's etcd-server; redis-server and redis-cli: Debian's redis-server; the others from Debian)"
fi
# shellcheck source=../../tests/coordinators.sh
. "$root/tests/coordinators.sh"

target=${CARGO_TARGET_DIR:-$root/target}
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/fencekit-peers.XXXXXX")}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/fencekit-peers-run.XXXXXX")
STORE_PID=
BASE_PID=
STARTED_PID=
cleanup() {
    # A store being started (not yet answering) is stopped too.
    coord_stop "$STARTED_PID"
    coord_stop "$STORE_PID"
    coord_stop "$BASE_PID"
    etcd_stop
    redis_stop
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- builds ----------------------------------------------------------------------------------
if [ -z "${FENCEKIT:-}" ]; then
    step "the fencekit command (release)"
    cargo build --release --locked -q -p fencekit-cli --manifest-path "$root/Cargo.toml" >&2
    FENCEKIT=$target/release/fencekit
fi
[ -x "$FENCEKIT" ] || die "FENCEKIT=$FENCEKIT is not an executable"
[ -z "$baseline" ] || [ -x "$baseline" ] || die "--baseline $baseline is not an executable"
step "the Go client (benches/peers/client)"
(cd "$here/client" && go build -o "$work/peers" .)

# --- the servers -------------------------------------------------------------------------------
step "starting etcd, redis-server and fencekit store (data under $work)"
mkdir "$work/etcd" "$work/redis"
etcd_start "$work/etcd" >&2
redis_start "$work/redis" >&2
"$FENCEKIT" certs init --dir "$work/certs" --cluster 1 --nodes 1,2 >/dev/null
# store_start FENCEKIT NAME: a store with its data in $work/NAME; sets STARTED_PID, STARTED_ADDR.
store_start() {
    local addr
    addr=127.0.0.1:$(coord_free_ports 1)
    mkdir "$work/$2"
    "$1" store --data "$work/$2/data" --listen "$addr" --tls-dir "$work/certs/store" \
        >"$out/$2.log" 2>&1 </dev/null &
    STARTED_PID=$! STARTED_ADDR=$addr
    _store_up() { curl -fsS --cacert "$work/certs/ca.crt" "https://$addr/healthz" >/dev/null 2>&1; }
    coord_wait_up "$STARTED_PID" 0.1 _store_up || { cat "$out/$2.log" >&2; die "$1 store did not answer on $addr"; }
    echo "fencekit store $("$1" --version 2>/dev/null | awk '{ print $2 }') ($1) on $addr (data in $work/$2)" >&2
}
store_start "$FENCEKIT" store
STORE_PID=$STARTED_PID store_addr=$STARTED_ADDR
if [ -n "$baseline" ]; then
    store_start "$baseline" store-baseline
    BASE_PID=$STARTED_PID base_addr=$STARTED_ADDR
fi

# --- the runs --------------------------------------------------------------------------------
# One system after another, each alone on the machine, taking turns round after round (a
# machine whose load drifts then moves all three alike); `sync` first, since an fsync measured
# while other dirty pages are written back is many times slower.
run() { # ROUND LABEL SYSTEM ARGS...
    local round=$1 label=$2 system=$3
    shift 3
    sync
    step "round $round of $rounds, $label: the stale-token probe, then $clients clients (${warmup} s warm-up, ${duration} s timed each)"
    "$work/peers" -system "$system" -label "$label" "$@" -clients "$clients" -warmup "${warmup}s" -duration "${duration}s" \
        >"$out/$label-$round.json" 2>"$out/$label-$round.log" || {
        cat "$out/$label-$round.json" "$out/$label-$round.log" >&2
        die "$label, round $round: the run failed (above)"
    }
    jq -c --argjson round "$round" '. + {round: $round}' "$out/$label-$round.json" | tee -a "$out/all.json" >&2
}
: >"$out/all.json"
for round in $(seq "$rounds"); do
    # Each fencekit probe elects two new leaders, above the last probe's.
    run "$round" fencekit fencekit -store "https://$store_addr" -certs "$work/certs" -generation $((4 * round - 3))
    run "$round" fencekit-lean fencekit-lean -store "https://$store_addr" -certs "$work/certs" -generation $((4 * round - 1))
    if [ -n "$baseline" ]; then
        run "$round" fencekit-baseline fencekit -store "https://$base_addr" -certs "$work/certs" -generation $((4 * round - 3))
        run "$round" fencekit-lean-baseline fencekit-lean -store "https://$base_addr" -certs "$work/certs" -generation $((4 * round - 1))
    fi
    run "$round" etcd etcd -etcd "$ETCD_ENDPOINT"
    run "$round" redis redis -redis "$REDIS_ADDR"
done
coord_stop "$STORE_PID"
coord_stop "$BASE_PID"
STORE_PID= BASE_PID= STARTED_PID=

# --- the table ---------------------------------------------------------------------------------
step "results (JSON lines, logs and the table in $out)"
{
    echo "| system | clients | ops/s (median round) | p50 | p99 | max | vs etcd | vs Redis | ops/s, each round | errors |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    jq -s -r '
        def name: {fencekit: "fencekit store (HTTPS, mTLS), net/http", "fencekit-lean": "fencekit store (HTTPS, mTLS), lean HTTP/1.1 client", "fencekit-baseline": "baseline fencekit store, net/http", "fencekit-lean-baseline": "baseline fencekit store, lean client", etcd: "etcd (Txn on the election key'"'"'s create revision, put)", redis: "Redis (Lua high-water check, appendfsync always)"}[.];
        def ms: if . >= 1000 then "\(. / 100 | round / 10) ms" else "\(.) µs" end;
        # The median round of each system and client count (the lower middle of an even count).
        map(select(.clients)) | group_by([.system, .clients])
        | map(sort_by(.ops_per_s) | .[(length - 1) / 2 | floor] + {each: map(.ops_per_s | round), errors: (map(.errors) | add)})
        | . as $median
        | (["fencekit", "fencekit-lean", "fencekit-baseline", "fencekit-lean-baseline", "etcd", "redis"][] as $s | $median[] | select(.system == $s))
        | . as $r
        | ($median[] | select(.system == "etcd" and .clients == $r.clients) | .ops_per_s) as $etcd
        | ($median[] | select(.system == "redis" and .clients == $r.clients) | .ops_per_s) as $redis
        | "| \(.system | name) | \(.clients) | \(.ops_per_s | round) | \(.p50_us | ms) | \(.p99_us | ms) | \(.max_us | ms) | \(.ops_per_s / $etcd * 100 | round / 100)× | \(.ops_per_s / $redis * 100 | round / 100)× | \(.each | map(tostring) | join(", ")) (round order) | \(.errors) |"
    ' "$out/all.json"
    echo
    jq -s -r 'map(select(.probe)) | group_by(.system) | .[] | "- \(.[0].system): \(.[0].probe) in \(length) of \(length) rounds: \(.[-1].detail)"' "$out/all.json"
} | tee "$out/table.md"
echo
echo "measure.sh: done in $((SECONDS / 60))m$((SECONDS % 60))s; JSON lines, logs and the table in $out" >&2
