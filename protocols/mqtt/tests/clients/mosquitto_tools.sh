#!/usr/bin/env bash
# The MQTT door's scenarios from the mosquitto command-line clients
# (mosquitto_pub / mosquitto_sub, Debian package `mosquitto-clients`),
# 3.1.1 and 5.0. Installs the package when missing (needs root and apt-get);
# otherwise says so and exits 2.
#
# usage: mosquitto_tools.sh PORT
# Prints "ok NAME" per scenario; exits 1 at the first failure.
set -euo pipefail
port=$1
if ! command -v mosquitto_pub >/dev/null || ! command -v mosquitto_sub >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null
    else
        echo "FAIL: mosquitto_pub and mosquitto_sub are needed (Debian package mosquitto-clients)" >&2
        exit 2
    fi
fi
run=$RANDOM$RANDOM
t=mosq/$run
common=(-h 127.0.0.1 -p "$port")
dir=$(mktemp -d)
trap 'rm -rf "$dir"; jobs -p | xargs -r kill 2>/dev/null || true' EXIT

fail() { echo "FAIL $1: $2" >&2; exit 1; }

# Starts a subscriber in the background that stops after $1 messages (10 s at most).
sub_bg() {
    local n=$1 out=$2
    shift 2
    mosquitto_sub "${common[@]}" -C "$n" -W 10 "$@" >"$out" &
    sleep 0.5
}

for v in 311 5; do
    # QoS 1 and 2, with a wildcard.
    sub_bg 2 "$dir/q$v" -V "$v" -t "$t/q$v/+" -q 2 -v
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/q$v/a" -q 1 -m one
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/q$v/b" -q 2 -m two
    wait $! || fail "pubsub-$v" "subscriber ended with $?"
    [ "$(cat "$dir/q$v")" = "$t/q$v/a one
$t/q$v/b two" ] || fail "pubsub-$v" "$(cat "$dir/q$v")"
    echo "ok pubsub-$v"

    # Retained: delivered on subscribe with the retain flag (%r).
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/r$v" -q 1 -r -m kept
    got=$(mosquitto_sub "${common[@]}" -V "$v" -t "$t/r$v" -C 1 -W 5 -F '%r %p')
    [ "$got" = "1 kept" ] || fail "retained-$v" "$got"
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/r$v" -q 1 -r -n
    echo "ok retained-$v"

    # Persistent session (-c, fixed client id): messages queued while away.
    id="mosq-keeper-$v-$run"
    mosquitto_sub "${common[@]}" -V "$v" -c -i "$id" -q 1 -t "$t/p$v" -x 300 -E 2>/dev/null ||
        mosquitto_sub "${common[@]}" -V "$v" -c -i "$id" -q 1 -t "$t/p$v" -E
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/p$v" -q 1 -m first
    mosquitto_pub "${common[@]}" -V "$v" -t "$t/p$v" -q 1 -m second
    got=$(mosquitto_sub "${common[@]}" -V "$v" -c -i "$id" -q 1 -t "$t/p$v" -C 2 -W 5 -x 300 2>/dev/null ||
        mosquitto_sub "${common[@]}" -V "$v" -c -i "$id" -q 1 -t "$t/p$v" -C 2 -W 5)
    [ "$got" = "first
second" ] || fail "session-$v" "$got"
    echo "ok session-$v"

    # Will on SIGKILL of a client.
    sub_bg 1 "$dir/w$v" -V "$v" -t "$t/w$v" -q 1
    mosquitto_sub "${common[@]}" -V "$v" -t "$t/idle" --will-topic "$t/w$v" --will-payload gone --will-qos 1 &
    victim=$!
    sleep 0.5
    kill -9 "$victim"
    wait "$victim" 2>/dev/null || true
    wait %1 2>/dev/null || true
    [ "$(cat "$dir/w$v")" = "gone" ] || fail "will-$v" "$(cat "$dir/w$v")"
    echo "ok will-$v"
done

# MQTT 5 user properties and content type survive (%P, %C... as mosquitto_sub formats them).
sub_bg 1 "$dir/props" -V 5 -t "$t/props" -F '%p|%P'
mosquitto_pub "${common[@]}" -V 5 -t "$t/props" -q 1 -m body -D publish user-property unit celsius
wait $! || true
[ "$(cat "$dir/props")" = "body|unit:celsius" ] || fail "user-properties-5" "$(cat "$dir/props")"
echo "ok user-properties-5"
