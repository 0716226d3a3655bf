#!/usr/bin/env bash
# Bench a local cluster: NODES `medcall serve` processes on loopback sharing
# one redis-server, driven by `medcall bench` through every node's URL.
# Usage: bash deploy/cluster-bench.sh NODES [extra medcall bench flags]
#   e.g. bash deploy/cluster-bench.sh 3 --n 30 --join-rate 5/s --duration 30s
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-3}"; shift || true
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
go build -o "$work/medcall" ./cmd/medcall
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport="$(port)"
redis-server --port "$rport" --bind 127.0.0.1 --dir "$work" --appendonly yes --appendfsync always --save '' --daemonize no --loglevel warning >/dev/null &
pids+=($!)
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
urls=(); admin=""
for i in $(seq 0 $((nodes - 1))); do
  keys=()
  if [ "$i" -gt 0 ]; then keys=(--token-keys "$work/d0/keys/token-dev.json" --manifest-keys "$work/d0/keys/manifest-dev.json"); fi
  "$work/medcall" serve --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --data "$work/d$i" --store "file://$work/objects" \
    --redis-url "redis://127.0.0.1:$rport/0" --node-id "node$i" --log-level warn "${keys[@]}" >"$work/out$i" 2>"$work/err$i" &
  pids+=($!)
  until grep -qs 'serving on' "$work/out$i"; do sleep 0.1; done
  line="$(grep 'serving on' "$work/out$i")"
  addr="$(sed -E 's#.*serving on http://([0-9.:]+) .*#\1#' <<<"$line")"
  urls+=("ws://$addr/v1/signal")
  [ -n "$admin" ] || admin="$(sed -E 's#.*admin on http://([0-9.:]+).*#http://\1#' <<<"$line")"
done
IFS=,; list="${urls[*]}"; unset IFS
"$work/medcall" bench --url "$list" --admin "$admin" --data "$work/d0" --store "file://$work/objects" --out "" "$@"
