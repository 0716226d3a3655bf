#!/usr/bin/env bash
# Builds the MinIO server used by the integration tests from source, once,
# into $HOME/.cache/medcall/minio/minio, and prints the binary's path.
# The tests find it there (or via MEDCALL_MINIO_BIN, or minio in PATH).
#
# The version is pinned so every machine tests against the same server;
# bump MINIO_VERSION deliberately and run the store tests after.
set -euo pipefail

MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
dest="${HOME}/.cache/medcall/minio"
bin="${dest}/minio"

if [[ -x "${bin}" ]]; then
	echo "${bin}"
	exit 0
fi

command -v go >/dev/null || { echo "minio.sh: go is not installed; install Go 1.26+ first" >&2; exit 1; }
mkdir -p "${dest}"
echo "minio.sh: building github.com/minio/minio@${MINIO_VERSION} (takes several minutes)" >&2
GOBIN="${dest}" CGO_ENABLED=0 go install "github.com/minio/minio@${MINIO_VERSION}" >&2
[[ -x "${bin}" ]] || { echo "minio.sh: go install finished but ${bin} is missing" >&2; exit 1; }
echo "${bin}"
