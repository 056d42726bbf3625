#!/usr/bin/env bash
# Installs the non-Rust client libraries the end-to-end tests drive (pika and
# paho-mqtt for Python; amqplib and mqtt for Node; the Huawei Cloud and Open
# Telekom Cloud DMS SDKs for Python, in a folder of their own since they bring
# many dependencies) into target/test-clients/, once. Idempotent and safe to
# run concurrently (flock). Prints the paths to use: PYTHONPATH, NODE_PATH and
# DMS_PYTHONPATH.
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
# The marker names the pins, so changing a pin installs afresh.
dms_pins=(huaweicloudsdkcore==3.1.42 huaweicloudsdkdms==3.1.42 otcextensions==0.34.8
          openstacksdk==4.22.0 keystoneauth1==5.18.1)
dms_marker="$dest/python-dms/.done-$(echo "${dms_pins[*]}" | sha256sum | cut -c1-12)"
if [ ! -f "$dms_marker" ]; then
    rm -rf "$dest/python-dms"
    python3 -m pip install --quiet --disable-pip-version-check --target "$dest/python-dms" \
        "${dms_pins[@]}" >&2
    touch "$dms_marker"
fi
if [ ! -f "$dest/node/.done" ]; then
    mkdir -p "$dest/node"
    (cd "$dest/node" && npm install --silent --no-audit --no-fund --prefix . amqplib@0.10.9 mqtt@5.14.1 ws@8.18.3 >&2)
    touch "$dest/node/.done"
fi
echo "PYTHONPATH=$dest/python"
echo "NODE_PATH=$dest/node/node_modules"
echo "DMS_PYTHONPATH=$dest/python-dms"
