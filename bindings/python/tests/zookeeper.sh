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

if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
    apt-get install -y -qq zookeeper >/dev/null || { apt-get update -qq && apt-get install -y -qq zookeeper >/dev/null; }
fi
"$venv/bin/pip" install -q kazoo

zk=$(mktemp -d)
pid=
stop() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$zk"
}
trap stop EXIT

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$zk/data"
cat >"$zk/zoo.cfg" <<EOF
tickTime=200
minSessionTimeout=400
maxSessionTimeout=60000
dataDir=$zk/data
clientPort=$port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok
EOF
java -Xmx256m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
    org.apache.zookeeper.server.ZooKeeperServerMain "$zk/zoo.cfg" >"$zk/server.log" 2>&1 </dev/null &
pid=$!
ruok() { (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null || true; }
for _ in $(seq 1 150); do
    [ "$(ruok)" = imok ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$zk/server.log"; echo "ZooKeeper did not start" >&2; exit 1; }
    sleep 0.2
done
[ "$(ruok)" = imok ] || { cat "$zk/server.log"; echo "ZooKeeper did not answer on port $port in 30 s" >&2; exit 1; }
echo "ZooKeeper on 127.0.0.1:$port"

export FENCEKIT_ZK_HOSTS="127.0.0.1:$port"
# With FENCEKIT_ZK_HOSTS set, the tests run (never skip); -rs would name a skip.
"$venv/bin/pytest" -q -rs -p no:cacheprovider "$here/test_zookeeper.py"
# The drill: unfenced (must show a job recorded twice) and fenced (must show none).
"$venv/bin/python" "$here/../samples/zk_election.py" --zk "$FENCEKIT_ZK_HOSTS" --session-timeout 2 --rounds 2
