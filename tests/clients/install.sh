#!/usr/bin/env bash
# Installs the non-Rust client libraries the end-to-end tests drive (pika and
# paho-mqtt for Python; amqplib and mqtt for Node) into target/test-clients/,
# once. Idempotent and safe to run concurrently (flock). Prints the two paths
# to use: PYTHONPATH and NODE_PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${GATEWAY_TEST_CLIENTS:-$root/target/test-clients}
mkdir -p "$dest"
exec 9>"$dest/.lock"
flock 9
if [ ! -f "$dest/python/.done" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$dest/python" \
        'pika==1.3.2' 'paho-mqtt==2.1.0' >&2
    touch "$dest/python/.done"
fi
if [ ! -f "$dest/node/.done" ]; then
    mkdir -p "$dest/node"
    (cd "$dest/node" && npm install --silent --no-audit --no-fund --prefix . amqplib@0.10.9 mqtt@5.14.1 ws@8.18.3 >&2)
    touch "$dest/node/.done"
fi
echo "PYTHONPATH=$dest/python"
echo "NODE_PATH=$dest/node/node_modules"
