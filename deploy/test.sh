#!/usr/bin/env bash
# Runs medcall's whole test suite, installing what it needs first:
#   ffmpeg/ffprobe and Chromium (Debian packages), a MinIO server (built from
#   source with go install, cached), and the npm packages of the browser test.
# Usage: bash deploy/test.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*" >&2; }

missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# ffmpeg's drawtext (frame numbers on the browser recording test's fake camera) needs a font.
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus) # ships promtool too
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)   # network namespaces (liveness tests)
command -v nft >/dev/null 2>&1 || missing+=(nftables)  # half-open sockets (liveness tests)
# Real networks (issue 9): an ACME server, a TLS proxy, a STUN server.
command -v pebble >/dev/null 2>&1 || missing+=(pebble)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)  # cluster placement (signaling/cluster)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -f deploy/minio.sh ]; then
  say "MinIO server (built once, then cached)"
  MEDCALL_MINIO_BIN="$(bash deploy/minio.sh)"
  export MEDCALL_MINIO_BIN
fi

if [ -f signaling/web/e2e/package-lock.json ]; then
  say "npm packages for the browser test"
  (cd signaling/web/e2e && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

say "gofmt"
unformatted="$(gofmt -l cmd sfu signaling recorder bench 2>/dev/null || true)"
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
say "go vet"
go vet ./...
# cmd/medcall runs alone, after the other packages: its call-quality and
# replay tests judge what a person perceives (freezes, frames in step) with
# two Chromium browsers, the server and a packet forwarder on this machine,
# and other packages' race-detector tests on the same two cores froze the
# video by starving them (docs/quality.md, "What the tests need").
# recorder runs alone too: TestLiveFiftyRecordedConsultations connects a
# hundred pion peers at once, and with another package's tests (a Chromium,
# handshakes, webhook and cluster servers) on the same two cores some of
# their ICE checks timed out and a call failed to connect (four CI runs over
# the project's life, the last beside sfu's Chromium key test).
say "go test -race (all packages but recorder and cmd/medcall)"
go test -race -count=1 -timeout 40m "$@" $(go list ./... | grep -v -e '/cmd/medcall$' -e '/recorder$')
say "go test -race ./recorder (alone)"
go test -race -count=1 -timeout 40m "$@" ./recorder
say "go test -race ./cmd/medcall (alone)"
go test -race -count=1 -timeout 40m "$@" ./cmd/medcall
say "deployment checks (deploy/check: image, Kubernetes, compose, systemd, Prometheus rules)"
(cd deploy/check && go vet ./... && go test -count=1 -timeout 15m "$@" ./...)
say "the LiveKit side-by-side harness (bench/livekit, a module of its own)"
(cd bench/livekit && go vet ./... && go test -race -count=1 -timeout 10m "$@" ./...)
