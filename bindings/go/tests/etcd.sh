#!/bin/sh
# Runs the etcd adapter's tests and the etcd_election drill against a real etcd: starts one
# (Debian's etcd-server, installed if missing) on private loopback ports with a temporary data
# directory, and stops it afterwards, whatever happens.
#
#   etcd.sh                 go vet and go test -race -v of etcdfence and samples/etcd_election
#                           (printing each test's result line)
#   etcd.sh -- CMD ARGS...  CMD with FENCEKIT_ETCD_ENDPOINTS set (measure.sh uses it)
#
# PKG_CONFIG_PATH must find libfencekit (README.md, "Developing"). The tests see the server
# through FENCEKIT_ETCD_ENDPOINTS, and FENCEKIT_ETCD_REQUIRED=1 makes a test that cannot reach
# it fail instead of skipping.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
module_dir=$(cd "$here/.." && pwd)

if ! command -v etcd >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "etcd is missing: apt-get install -y etcd-server (as root)" >&2
        exit 1
    fi
    echo "etcd is missing: installing Debian's etcd-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null; }
    # The package's service is not ours: if an init system started it, it listens on 2379,
    # which we do not use.
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fencekit-etcd.XXXXXX")
pid=
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

# Two free loopback ports, as the kernel hands them out (bound and released at once: another
# process could take one meanwhile, which etcd then reports as it fails to start).
ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
client_port=${ports% *}
peer_port=${ports#* }
endpoint=127.0.0.1:$client_port

# Short heartbeats and elections: etcd's shortest lease is 1.5 election timeouts, so with the
# default 1 s a session of TTL 1 would silently last 1.5 s.
etcd --name fencekit-test --data-dir "$work/data" \
    --listen-client-urls "http://$endpoint" --advertise-client-urls "http://$endpoint" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "fencekit-test=http://127.0.0.1:$peer_port" \
    --heartbeat-interval 20 --election-timeout 200 \
    --logger zap --log-level error >"$work/etcd.log" 2>&1 &
pid=$!
up=
for _ in $(seq 100); do
    if curl -fsS "http://$endpoint/health" 2>/dev/null | grep -q '"health":"true"'; then
        up=1
        break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "etcd did not start on $endpoint:" >&2
    cat "$work/etcd.log" >&2
    exit 1
fi
echo "etcd $(etcd --version | sed -n 's/^etcd Version: //p') on $endpoint (data in $work)"
export FENCEKIT_ETCD_ENDPOINTS="$endpoint" FENCEKIT_ETCD_REQUIRED=1

if [ "${1:-}" = "--" ]; then
    shift
    "$@"
    exit
fi

# Each test's result line (--- PASS, --- FAIL: what test.sh counts) and each package's; the
# whole log when one fails.
for dir in etcdfence samples/etcd_election; do
    cd "$module_dir/$dir"
    go vet ./...
    if ! go test -race -count=1 -v ./... >"$work/go-test.log" 2>&1; then
        cat "$work/go-test.log"
        echo "$dir: go test failed (etcd's log: below)" >&2
        cat "$work/etcd.log" >&2
        exit 1
    fi
    grep -E '^(--- |ok|FAIL)' "$work/go-test.log"
done
