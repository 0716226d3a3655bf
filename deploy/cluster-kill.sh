#!/usr/bin/env bash
# The full node-loss run: 60 recorded, upgraded consultations on a 3-node
# cluster (real medcall serve processes, real redis-server); the busiest node
# (about 20 of them) is killed with SIGKILL; reports reconnect p50/p95. CI runs 4.
# Usage: bash deploy/cluster-kill.sh [consultations]
set -euo pipefail
cd "$(dirname "$0")/.."
MEDCALL_CLUSTER_KILL_N="${1:-60}" go test -count=1 -v -timeout 15m -run 'TestClusterNodeKilled$' ./cmd/medcall/ 2>&1 | grep -E 'node loss|^(---|ok|FAIL|PASS)|cluster_test'
