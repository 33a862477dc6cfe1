#!/bin/sh
# Measures the etcd_election drill at the seed's settings: for a leader SIGSTOPped mid-job,
# the failover time and the runs recorded twice, fenced and unfenced, at session TTLs of 5 s
# and 60 s (the seed's). Prints one JSON line per drill. It takes about three minutes (a round
# at TTL 60 waits for the lease to expire); it is not part of test.sh.
#
#   etcd_measure.sh [ROUNDS] [TTL...]      default: 1 round, TTLs 5 and 60
#
# PKG_CONFIG_PATH must find libfencekit (README.md, "Developing"); tests/etcd.sh starts etcd.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-1}
[ $# -gt 0 ] && shift
ttls=${*:-5 60}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd "$here/../samples/etcd_election" && go build -o "$bin/etcd_election" .)
# shellcheck disable=SC2016
sh "$here/etcd.sh" -- sh -c '
for ttl in '"$ttls"'; do
    for mode in "" -unfenced; do
        "'"$bin"'/etcd_election" -json -ttl "$ttl" -rounds '"$rounds"' $mode
    done
done'
