#!/usr/bin/env bash
# Side by side with LiveKit on this machine (README, Performance): the same
# consultation script at the same N against LiveKit (this directory's
# harness) and against medcall (medcall bench), alternating, ROUNDS times.
#
# Usage: bash bench/livekit/sidebyside.sh [N] [ROUNDS]   (from anywhere)
# MEDCALL_FLAGS, if set, is added to medcall serve's flags, split on spaces
# (so a value may not contain one), for an A/B of medcall's options against
# LiveKit in the same hour, e.g.
#   MEDCALL_FLAGS='--udp-coalesce 0' bash bench/livekit/sidebyside.sh 50 2
# Needs the Go module proxy the first time, to build livekit-server
# (v1.13.5, the version issue 16 measured) into bench/livekit/.bin.
set -euo pipefail
N=${1:-50}
ROUNDS=${2:-2}
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
# On failure the servers' and harness's logs stay for reading.
cleanup() {
  rc=$?
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then rm -rf "$work"; else echo "failed; logs kept in $work" >&2; fi
}
trap cleanup EXIT

# listening PORT: wait up to 10 s for a TCP listener on 127.0.0.1:PORT.
listening() {
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

if [ ! -x "$here/.bin/server" ]; then
  echo "building livekit-server v1.13.5 (once; a few minutes)" >&2
  GOBIN="$here/.bin" go install github.com/livekit/livekit-server/cmd/server@v1.13.5
fi
(cd "$here" && go build -o "$work/lkbench" .)
(cd "$root" && go build -o "$work/medcall" ./cmd/medcall)

secret=$(awk '/devkey:/{print $2}' "$here/livekit.yaml")

# Each round starts both servers afresh, so memory per consultation is
# measured from the same start.
for r in $(seq "$ROUNDS"); do
  echo "== LiveKit, N=$N, round $r"
  "$here/.bin/server" --config "$here/livekit.yaml" >> "$work/livekit.log" 2>&1 &
  lk=$!
  listening 7880
  (cd "$here" && "$work/lkbench" --n "$N" --secret "$secret" --pid "$lk" 2>>"$work/lkbench.log")
  kill "$lk"; wait "$lk" 2>/dev/null || true
  echo "== medcall, N=$N, round $r${MEDCALL_FLAGS:+ ($MEDCALL_FLAGS)}"
  rm -rf "$work/data" && mkdir -p "$work/data"
  "$work/medcall" serve --addr 127.0.0.1:7820 --admin-addr 127.0.0.1:7821 --data "$work/data" \
    --log-level warn --udp-port 7822 ${MEDCALL_FLAGS:-} > "$work/medcall.log" 2>&1 &
  mc=$!
  listening 7821
  (cd "$root" && "$work/medcall" bench --url ws://127.0.0.1:7820/v1/signal --admin http://127.0.0.1:7821 \
    --data "$work/data" --n "$N" --duration 30s --rec=false --out "" 2>"$work/bench.log" |
    grep -E '^consultations|\(packets\)|^  (audio|video)  |^loss per|^server \(|CPU per|RSS per|^bench process|forwarding delay|time in the server')
  kill "$mc"; wait "$mc" 2>/dev/null || true
done
