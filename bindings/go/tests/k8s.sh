#!/bin/sh
# Runs the Kubernetes adapter's tests (k8sfence): go vet and go test -v, printing each test's
# result line (--- PASS, --- FAIL: what test.sh counts) and the package's; the whole log when
# one fails.
#
# No API server runs here: the tests use client-go's fake clientset, so nothing is started.
# Without -race, unlike tests/etcd.sh: client-go is large, and building it again with the
# race detector would cost CI minutes for a package whose concurrency is client-go's own.
# Measured on two cores shared with other builds: a cold run (client-go's modules
# downloaded, 3 s, then built) took 176 s after the Go step's own builds, 204 s with no cache
# at all; a warm one, 8 s.
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
