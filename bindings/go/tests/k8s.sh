#!/bin/sh
# Runs the Kubernetes adapter's tests (k8sfence): go vet and go test -v, printing each test's
# result line (--- PASS, --- FAIL: what test.sh counts) and the package's; the whole log when
# one fails.
#
# No API server runs here: the tests use client-go's fake clientset, so nothing is started.
# Without -race, unlike tests/etcd.sh: client-go is large, and building it again with the
# race detector would cost CI minutes for a package whose concurrency is client-go's own.
# A cold run (client-go's modules downloaded, then built) took about a minute and a half on
# two cores.
#
# PKG_CONFIG_PATH must find libfencekit (README.md, "Developing").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../k8sfence"
log=$(mktemp "${TMPDIR:-/tmp}/fencekit-k8s.XXXXXX")
trap 'rm -f "$log"' EXIT
go vet ./...
if ! go test -count=1 -v ./... >"$log" 2>&1; then
    cat "$log"
    echo "k8sfence: go test failed" >&2
    exit 1
fi
grep -E '^(--- |ok|FAIL)' "$log"
