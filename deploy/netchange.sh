#!/usr/bin/env bash
# The network-change scenarios (cmd/medcall/netchange_test.go, the Go
# patient; netchange_browser_test.go, the Chromium patient on one network
# and on two) with ${MEDCALL_NETCHANGE_N:-10} changes of the patient's
# address in one call (CI runs 3 with Go, 1 with Chromium on one network):
# prints how long media took to come back after each change,
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
		tee "$out/run-$i.log" | grep -E 'netchange_test|netchange_browser_test.go:[0-9]+: (the |node: RESULT change)|^(ok|FAIL|---)' || true
done
