# Functions that install, start and stop the coordinators fencekit's tests and measurements run
# against: etcd and ZooKeeper, each a single server of its own on private loopback ports with a
# temporary directory, never the system's service. Sourced (POSIX sh) by
# bindings/go/tests/etcd.sh, bindings/python/tests/zookeeper.sh and
# benches/coordinators/measure.sh:
#
#   . tests/coordinators.sh
#   etcd_require                 install Debian's etcd-server if etcd is missing (root), or fail
#   etcd_start DIR               start etcd with its data and log in DIR: sets ETCD_PID and
#                                ETCD_ENDPOINT (host:port); prints the log and fails if it does
#                                not answer
#   etcd_stop                    stop it (safe to call twice, or before etcd_start)
#   zookeeper_require            the same for Debian's zookeeper (and its JRE)
#   zookeeper_start DIR          sets ZK_PID and ZK_HOSTS (host:port)
#   zookeeper_stop
#   redis_require                the same for Debian's redis-server (and redis-cli)
#   redis_start DIR              sets REDIS_PID and REDIS_ADDR (host:port); append-only file
#                                fsynced before every reply (appendfsync always), no snapshots
#   redis_stop
#
# Callers stop what they start from a trap on EXIT. python3 picks free ports and asks ZooKeeper
# if it is up.

# N free loopback ports, as the kernel hands them out (bound and released at once: another
# process could take one meanwhile, which the server then reports as it fails to start).
coord_free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Polls `$3...` every $2 s until it succeeds (0) or the server of pid $1 dies, at most 150
# times (1).
coord_wait_up() {
    _pid=$1 _every=$2
    shift 2
    for _ in $(seq 150); do
        "$@" && return 0
        kill -0 "$_pid" 2>/dev/null || return 1
        sleep "$_every"
    done
    return 1
}

# Stops the server of pid $1 (nothing when empty) and waits for it.
coord_stop() {
    if [ -n "$1" ]; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}

# apt-get install of Debian packages, as root, updating the lists only when needed.
coord_apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing: apt-get install -y $* (as root)" >&2
        return 1
    fi
    echo "installing Debian's $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

etcd_require() {
    # The package's service is not ours: if an init system started it, it listens on 2379,
    # which we do not use.
    command -v etcd >/dev/null 2>&1 || coord_apt_install etcd-server || return 1
    command -v curl >/dev/null 2>&1 || coord_apt_install curl
}

ETCD_PID=
etcd_start() {
    _etcd_dir=$1
    _etcd_ports=$(coord_free_ports 2) || return 1
    ETCD_ENDPOINT=127.0.0.1:${_etcd_ports% *}
    _etcd_peer=127.0.0.1:${_etcd_ports#* }
    # Short heartbeats and elections: etcd's shortest lease is 1.5 election timeouts, so with
    # the default 1 s a session of TTL 1 would silently last 1.5 s.
    etcd --name fencekit-test --data-dir "$_etcd_dir/data" \
        --listen-client-urls "http://$ETCD_ENDPOINT" --advertise-client-urls "http://$ETCD_ENDPOINT" \
        --listen-peer-urls "http://$_etcd_peer" --initial-advertise-peer-urls "http://$_etcd_peer" \
        --initial-cluster "fencekit-test=http://$_etcd_peer" \
        --heartbeat-interval 20 --election-timeout 200 \
        --logger zap --log-level error >"$_etcd_dir/etcd.log" 2>&1 </dev/null &
    ETCD_PID=$!
    if coord_wait_up "$ETCD_PID" 0.1 _etcd_healthy; then
        echo "etcd $(etcd --version | sed -n 's/^etcd Version: //p') on $ETCD_ENDPOINT (data in $_etcd_dir)"
        return 0
    fi
    echo "etcd did not start on $ETCD_ENDPOINT:" >&2
    cat "$_etcd_dir/etcd.log" >&2
    return 1
}

_etcd_healthy() {
    curl -fsS "http://$ETCD_ENDPOINT/health" 2>/dev/null | grep -q '"health":"true"'
}

etcd_stop() {
    coord_stop "$ETCD_PID"
    ETCD_PID=
}

zookeeper_require() {
    if [ ! -f /usr/share/java/zookeeper.jar ] || ! command -v java >/dev/null 2>&1; then
        coord_apt_install zookeeper || return 1
    fi
}

# "imok" when the ZooKeeper on port $1 is up.
_zookeeper_ruok() {
    python3 -c '
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        s.sendall(b"ruok")
        print(s.recv(4).decode())
except OSError:
    pass' "$1"
}

ZK_PID=
zookeeper_start() {
    _zk_dir=$1
    _zk_port=$(coord_free_ports 1) || return 1
    mkdir -p "$_zk_dir/data"
    # tickTime 200 ms, so sessions of 2 s are allowed; up to 60 s.
    cat >"$_zk_dir/zoo.cfg" <<ZOOCFG
tickTime=200
minSessionTimeout=400
maxSessionTimeout=60000
dataDir=$_zk_dir/data
clientPort=$_zk_port
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=ruok
ZOOCFG
    java -Xmx256m -cp /etc/zookeeper/conf:/usr/share/java/zookeeper.jar \
        org.apache.zookeeper.server.ZooKeeperServerMain "$_zk_dir/zoo.cfg" >"$_zk_dir/server.log" 2>&1 </dev/null &
    ZK_PID=$!
    ZK_HOSTS=127.0.0.1:$_zk_port
    if coord_wait_up "$ZK_PID" 0.2 _zookeeper_up; then
        echo "ZooKeeper on $ZK_HOSTS"
        return 0
    fi
    cat "$_zk_dir/server.log" >&2
    echo "ZooKeeper did not answer on $ZK_HOSTS in 30 s" >&2
    return 1
}

_zookeeper_up() {
    [ "$(_zookeeper_ruok "$_zk_port")" = imok ]
}

zookeeper_stop() {
    coord_stop "$ZK_PID"
    ZK_PID=
}

redis_require() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        coord_apt_install redis-server || return 1
    fi
}

REDIS_PID=
redis_start() {
    _redis_dir=$1
    _redis_port=$(coord_free_ports 1) || return 1
    REDIS_ADDR=127.0.0.1:$_redis_port
    # Durable as etcd and fencekit's store are: the append-only file written and fsynced before
    # a write's reply (appendfsync always); no snapshots (they would only add work).
    redis-server --port "$_redis_port" --bind 127.0.0.1 --dir "$_redis_dir" \
        --appendonly yes --appendfsync always --save "" --daemonize no \
        --logfile "$_redis_dir/redis.log" </dev/null >/dev/null 2>&1 &
    REDIS_PID=$!
    if coord_wait_up "$REDIS_PID" 0.1 _redis_up; then
        echo "redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p') on $REDIS_ADDR (data in $_redis_dir)"
        return 0
    fi
    echo "redis did not start on $REDIS_ADDR:" >&2
    cat "$_redis_dir/redis.log" >&2
    return 1
}

_redis_up() {
    [ "$(redis-cli -h 127.0.0.1 -p "$_redis_port" ping 2>/dev/null)" = PONG ]
}

redis_stop() {
    coord_stop "$REDIS_PID"
    REDIS_PID=
}
