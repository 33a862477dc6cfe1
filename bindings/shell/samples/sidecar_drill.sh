#!/bin/bash
# The zombie drill for an application that links nothing: three fencekit nodes, each with a
# shell worker (sidecar_worker.sh) that leads through the node's --app-listen socket and writes
# through the fenced store. The leader's node and worker are paused (SIGSTOP) in the middle of a
# run, past the lease, then resumed: a successor has taken over meanwhile, and the zombie's
# write must be refused as stale. Exits 0 when no run was recorded twice and the zombie was
# refused, 1 otherwise.
#
# With --unfenced, the control: the same drill against a store that checks no token, where
# the zombie's write must land a second time (exit 0 when it did), so the drill is shown able
# to fail.
#
#   FENCEKIT=path/to/fencekit sidecar_drill.sh [--unfenced]
set -euo pipefail
fencekit=${FENCEKIT:-fencekit}
unfenced=()
case "${1:-}" in
    --unfenced) unfenced=(--unfenced) ;;
    "") ;;
    *) echo "usage: sidecar_drill.sh [--unfenced]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
for tool in curl jq awk; do
    command -v "$tool" >/dev/null || { echo "sidecar_drill: needs $tool" >&2; exit 2; }
done
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -CONT -- "$pid" 2>/dev/null || true; kill -- "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# Ports below the ephemeral range, not in use.
port() {
    local p
    while :; do
        p=$(( 20000 + RANDOM % 10000 ))
        ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}
# Runs "$@" as the leader of a process group of its own, so the group can be paused whole.
spawn() { setsid "$@" & pids+=("-$!"); }

"$fencekit" certs init --dir "$tmp/certs" --nodes 1,2,3 >/dev/null
store_port=$(port)
spawn "$fencekit" store --data "$tmp/store" --listen "127.0.0.1:$store_port" \
    --tls-dir "$tmp/certs/store" "${unfenced[@]}" 2>"$tmp/store.log"
store="https://localhost:$store_port"
peers="1=127.0.0.1:$(port),2=127.0.0.1:$(port),3=127.0.0.1:$(port)"
declare -A node_pid worker_pid
for n in 1 2 3; do
    setsid "$fencekit" node --id "$n" --peers "$peers" --status-addr "127.0.0.1:$(port)" \
        --tls-dir "$tmp/certs/node-$n" --data "$tmp/node-$n" --election-tick 150 \
        --app-listen "unix:$tmp/app-$n.sock" 2>"$tmp/node-$n.log" &
    node_pid[$n]=$!; pids+=("-$!")
done
for n in 1 2 3; do
    for _ in $(seq 100); do [ -S "$tmp/app-$n.sock" ] && break; sleep 0.1; done
    setsid "$here/sidecar_worker.sh" "$tmp/app-$n.sock" "$store" "$tmp/certs/node-$n" drill \
        "$tmp/worker-$n.log" 2>>"$tmp/worker-$n.log" &
    worker_pid[$n]=$!; pids+=("-$!")
done

completed() { cat "$tmp"/worker-*.log 2>/dev/null | grep -c -- '-> 200' || true; }
leader() {
    for n in 1 2 3; do
        curl -sf --unix-socket "$tmp/app-$n.sock" http://app/v1/leadership 2>/dev/null |
            jq -e .leader >/dev/null 2>&1 && { echo "$n"; return; }
    done
}
for _ in $(seq 300); do [ "$(completed)" -ge 5 ] && break; sleep 0.1; done
[ "$(completed)" -ge 5 ] || { echo "sidecar_drill: no runs completed" >&2; tail "$tmp"/*.log >&2; exit 1; }

# The zombie: the leader (a 1.4 s lease, elections after 1.5 s) paused in the middle of a run (its last line a body, not yet complete).
zombie=$(leader)
for _ in $(seq 200); do
    tail -n 1 "$tmp/worker-$zombie.log" | grep -q '^body' && break
    sleep 0.01
done
kill -STOP "${node_pid[$zombie]}"; kill -STOP -- "-${worker_pid[$zombie]}"
paused_at=$(awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime)
zombie_generation=$(tail -n 1 "$tmp/worker-$zombie.log" | awk '{ print $5 }')
echo "sidecar_drill: node $zombie and its worker paused mid-run: $(tail -n 1 "$tmp/worker-$zombie.log")"
sleep 4
kill -CONT "${node_pid[$zombie]}"; kill -CONT -- "-${worker_pid[$zombie]}"
sleep 3
for n in 1 2 3; do kill -- "-${worker_pid[$n]}" 2>/dev/null || true; done

tls=(--cacert "$tmp/certs/ca.crt" --cert "$tmp/certs/node-1/node.crt" --key "$tmp/certs/node-1/node.key")
ledger=$(curl -sf "${tls[@]}" "$store/ledger?limit=1000")
landed=$(jq '[.entries[] | select(.job == "drill" and (.outcome == "accepted" or .outcome == "unfenced"))] | length' <<<"$ledger")
twice=$(jq '[.entries[] | select(.job == "drill" and (.outcome == "accepted" or .outcome == "unfenced")) | .run] | group_by(.) | map(select(length > 1)) | length' <<<"$ledger")
stale=$(jq '[.entries[] | select(.job == "drill" and .outcome == "stale")] | length' <<<"$ledger")
# Failover: from the pause to the first run a successor began (/proc/uptime: 10 ms steps).
failover=$(cat "$tmp"/worker-*.log | awk -v g="$zombie_generation" -v t="$paused_at" \
    '$1 == "body" && $5 > g && (m == "" || $7 < m) { m = $7 } END { print (m == "" ? "none" : m - t " ms") }')
bodies_again=$(cat "$tmp"/worker-*.log | awk '$1 == "body" { n[$3]++ } END { c = 0; for (r in n) if (n[r] > 1) c++; print c }')
echo "sidecar_drill: runs recorded $landed; recorded twice $twice; zombie writes refused as stale $stale; job bodies that ran again $bodies_again; failover $failover"
if [ ${#unfenced[@]} -gt 0 ]; then
    [ "$twice" -ge 1 ] && { echo "sidecar_drill: ok (the unfenced control ran a job twice)"; exit 0; }
    echo "sidecar_drill: FAILED: the unfenced control ran no job twice: the drill is blind" >&2
    exit 1
fi
if [ "$twice" -ne 0 ] || [ "$stale" -lt 1 ]; then
    echo "sidecar_drill: FAILED" >&2
    tail -n 5 "$tmp"/worker-*.log >&2
    exit 1
fi
echo "sidecar_drill: ok"
