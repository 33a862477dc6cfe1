#!/usr/bin/env bash
# Runs fencekit.zookeeper's tests and the zk_election drill against a real ZooKeeper.
# Usage: bindings/python/tests/zookeeper.sh VENV
#
# VENV is a virtual environment with fencekit installed (test.sh's, from the wheel); kazoo is
# installed into it. Debian's zookeeper (and a JRE) is installed if missing. A standalone
# ZooKeeper, not the system's service, runs on a free loopback port with a temporary dataDir
# and configuration (tickTime 200 ms, so sessions of 2 s are allowed), and is stopped however
# this script ends.
set -euo pipefail
venv=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)

# The start and stop of ZooKeeper, shared with etcd's tests and benches/coordinators/measure.sh.
. "$here/../../../tests/coordinators.sh"
zookeeper_require
"$venv/bin/pip" install -q kazoo

zk=$(mktemp -d)
stop() {
    zookeeper_stop
    rm -rf "$zk"
}
trap stop EXIT

zookeeper_start "$zk"
export FENCEKIT_ZK_HOSTS="$ZK_HOSTS"
# With FENCEKIT_ZK_HOSTS set, the tests run (never skip); -rs would name a skip.
"$venv/bin/pytest" -q -rs -p no:cacheprovider "$here/test_zookeeper.py"
# The drill: unfenced (must show a job recorded twice) and fenced (must show none).
"$venv/bin/python" "$here/../samples/zk_election.py" --zk "$FENCEKIT_ZK_HOSTS" --session-timeout 2 --rounds 2
