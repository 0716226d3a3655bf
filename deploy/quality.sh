#!/usr/bin/env bash
# The call-quality scenarios (cmd/medcall/quality_test.go): two real
# Chromium pages in network namespaces, the patient's downlink limited to
# 500 kbit/s, 5% of packets lost both ways, or 100 ± 30 ms each way (a 200 ms
# round trip with jitter, the user-space impairer). The test suite runs each
# for 15 s; this runs them for
# ${MEDCALL_QUALITY_SECONDS:-120} s, ${RUNS:-3} times, and keeps the logs
# (publisher bitrate per second, decoded fps and freezes) under ${OUT:-/tmp/medcall-quality}.
# Needs root (network namespaces), chromium, node (npm ci in signaling/web/e2e) and ffmpeg.
# Exits 1 if any scenario failed or was skipped (a missing tool skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/medcall-quality}
mkdir -p "$out"
bad=0
for i in $(seq 1 "${RUNS:-3}"); do
	MEDCALL_QUALITY_SECONDS=${MEDCALL_QUALITY_SECONDS:-120} \
		go test -count=1 -timeout 30m -run 'TestQuality' -v ./cmd/medcall/ 2>&1 |
		grep -v twcc_sender | tee "$out/run-$i.log" | grep -E 'quality_test|^(ok|FAIL|---)' || true
	if grep -qE '^--- (FAIL|SKIP)|^(FAIL|panic:)' "$out/run-$i.log"; then
		echo "run $i: a scenario failed or was skipped (log: $out/run-$i.log)" >&2
		bad=1
	fi
done
exit "$bad"
