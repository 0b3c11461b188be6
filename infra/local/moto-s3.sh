#!/usr/bin/env bash
# A local S3 endpoint for tests and demos: moto's standalone server on loopback.
# Usage: infra/local/moto-s3.sh [PORT]   (default 5555); prints the endpoint, runs until killed.
# Then: export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
#       zoo-audit scan s3://zoo/models/ --endpoint-url http://127.0.0.1:PORT --out s3://zoo/results/
# moto keeps objects in memory: everything is gone when it stops.
set -euo pipefail
PORT="${1:-5555}"
BIN="$(dirname "$0")/../../.venv/bin/moto_server"
[ -x "$BIN" ] || BIN=moto_server
echo "S3 endpoint: http://127.0.0.1:${PORT}"
exec "$BIN" -H 127.0.0.1 -p "$PORT"
