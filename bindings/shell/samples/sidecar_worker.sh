#!/bin/sh
# A job runner in plain shell that leads through its fencekit node's sidecar endpoint
# (`fencekit node --app-listen unix:SOCKET`) and writes through the fenced store: no library,
# only curl and jq.
#
#   sidecar_worker.sh SOCKET STORE_URL TLS_DIR JOB [LOG]
#
# The rule that makes it safe: start a run only while CLOCK_BOOTTIME is before the lease
# deadline (with the run's length to spare), carry the token (generation; the store takes the
# holder from the node certificate) on every write, and let the fence refuse the rest. A run
# paused past the deadline (SIGSTOP, a swapped-out machine) still finishes its body when it
# resumes; its write is refused as stale, and the body ran twice: effects outside the fenced
# store need idempotency keys of their own.
set -u
socket=$1 store=$2 tls=$3 job=$4 log=${5:-/dev/stderr}
work_ms=${WORK_MS:-300}         # how long one run's body takes
margin_ms=$(( work_ms + 100 ))  # the lease left, at least, to start a run (the node's lease
                                # must be longer: its election timeout, --election-tick ticks)

# CLOCK_BOOTTIME in milliseconds: /proc/uptime counts from boot, suspend included.
boottime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

app() { curl -sf --max-time 65 --unix-socket "$socket" "http://app$1"; }
store() {
    curl -s --max-time 5 -o /dev/stdout -w ' %{http_code}' -X POST \
        --cacert "$tls/ca.crt" --cert "$tls/node.crt" --key "$tls/node.key" "$store$1"
}

version=0
while :; do
    # Wait for a change (or 1 s), then read who leads as of now.
    view=$(app "/v1/leadership?wait_ms=1000&version=$version") || { sleep 0.2; continue; }
    version=$(printf '%s' "$view" | jq -r .version)
    [ "$(printf '%s' "$view" | jq -r .leader)" = true ] || continue
    generation=$(printf '%s' "$view" | jq -r .generation)
    deadline_ms=$(( $(printf '%s' "$view" | jq -r .lease_deadline_boottime_ns) / 1000000 ))
    # /proc/uptime has 10 ms steps: count it 10 ms later than it says.
    if [ $(( $(boottime_ms) + 10 + margin_ms )) -ge "$deadline_ms" ]; then
        continue
    fi
    run=$(curl -sf --max-time 5 --cacert "$tls/ca.crt" --cert "$tls/node.crt" \
        --key "$tls/node.key" "$store/first-undone?job=$job" | jq -r .run) || continue
    answer=$(store "/begin?job=$job&run=$run&generation=$generation") || continue
    code=${answer##* }
    if [ "$code" != 200 ] || [ "$(printf '%s' "${answer% *}" | jq -r .done)" = true ]; then
        continue
    fi
    echo "body $job $run generation $generation at $(boottime_ms)" >>"$log"
    sleep "$(awk "BEGIN { print $work_ms / 1000 }")"
    answer=$(store "/complete?job=$job&run=$run&generation=$generation")
    echo "complete $job $run generation $generation -> ${answer##* } $(printf '%s' "${answer% *}" | jq -c .)" >>"$log"
done
