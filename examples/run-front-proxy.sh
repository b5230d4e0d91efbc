#!/usr/bin/env bash
# Runs the seeds' front-proxy example: the example backend on 127.0.0.1:9090
# and herald on :10000 with examples/front-proxy.yaml (an Envoy config,
# unchanged). Then: curl http://127.0.0.1:10000/  →  Hello from backend!
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
mkdir -p bin
go build -o bin/herald ./cmd/herald
go build -o bin/example-backend ./examples/backend
bin/example-backend &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT
echo "herald: listening on :10000 → backend_service 127.0.0.1:9090; try: curl http://127.0.0.1:10000/"
bin/herald -c examples/front-proxy.yaml --config-yaml 'admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}'
