#!/usr/bin/env bash
# The network-change scenario (cmd/medcall/netchange_test.go) with
# ${MEDCALL_NETCHANGE_N:-10} changes of the patient's address in one call
# (CI runs 3): prints how long media took to come back after each change,
# both directions, and the p50/p95 over all of them. ${RUNS:-1} runs; logs
# under ${OUT:-/tmp/medcall-netchange}. Needs root (network namespaces),
# iproute2, nftables and ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/medcall-netchange}
mkdir -p "$out"
for i in $(seq 1 "${RUNS:-1}"); do
	MEDCALL_NETCHANGE_N=${MEDCALL_NETCHANGE_N:-10} \
		go test -count=1 -timeout 10m -run 'TestNetworkChange' -v ./cmd/medcall/ 2>&1 |
		tee "$out/run-$i.log" | grep -E 'netchange_test|^(ok|FAIL|---)' || true
done
