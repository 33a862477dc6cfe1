#!/bin/sh
# Runs the etcd adapter's tests and the etcd_election drill against a real etcd: starts one
# (Debian's etcd-server, installed if missing) on private loopback ports with a temporary data
# directory, and stops it afterwards, whatever happens.
#
#   etcd.sh                 go vet and go test -race -v of etcdfence and samples/etcd_election
#                           (printing each test's result line)
#   etcd.sh -- CMD ARGS...  CMD with FENCEKIT_ETCD_ENDPOINTS set
#
# PKG_CONFIG_PATH must find libfencekit (README.md, "Developing"). The tests see the server
# through FENCEKIT_ETCD_ENDPOINTS, and FENCEKIT_ETCD_REQUIRED=1 makes a test that cannot reach
# it fail instead of skipping.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
module_dir=$(cd "$here/.." && pwd)

# The start and stop of etcd, shared with ZooKeeper's tests and benches/coordinators/measure.sh.
. "$here/../../../tests/coordinators.sh"
etcd_require

work=$(mktemp -d "${TMPDIR:-/tmp}/fencekit-etcd.XXXXXX")
stop() {
    etcd_stop
    rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

etcd_start "$work"
endpoint=$ETCD_ENDPOINT
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
