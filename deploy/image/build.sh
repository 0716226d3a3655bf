#!/usr/bin/env bash
# Builds medcall's container image with podman, offline: the static binary
# is compiled here, then copied with the host's CA certificates onto an empty
# base (deploy/image/Containerfile). Prints the image id.
# Usage: bash deploy/image/build.sh [TAG]   (default localhost/medcall:dev)
# Same source, same Go and the same SOURCE_DATE_EPOCH give the same image id.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag="${1:-localhost/medcall:dev}"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

CGO_ENABLED=0 GOOS=linux go build -trimpath -tags timetzdata -ldflags='-s -w -buildid=' -o "$ctx/medcall" ./cmd/medcall
cp deploy/image/Containerfile "$ctx/"
certs=/etc/ssl/certs/ca-certificates.crt
[[ -f "$certs" ]] || { echo "build.sh: $certs missing; install the ca-certificates package" >&2; exit 1; }
cp "$certs" "$ctx/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nmedcall:x:65532:65532:medcall:/data:/sbin/nologin\n' >"$ctx/passwd"
printf 'root:x:0:\nmedcall:x:65532:\n' >"$ctx/group"
mkdir "$ctx/data"
# Fixed modes and times so the layers do not depend on this checkout.
chmod 0755 "$ctx/medcall" && chmod 0644 "$ctx/passwd" "$ctx/group" "$ctx/ca-certificates.crt" && chmod 0750 "$ctx/data"
find "$ctx" -exec touch -h -d "@$epoch" {} +
podman build --quiet --no-cache --timestamp "$epoch" -f "$ctx/Containerfile" -t "$tag" "$ctx"
