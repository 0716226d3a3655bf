// Package check holds the tests of medcall's deployment files: the
// container image (built and run with podman), the Kubernetes manifests
// and the cluster overlay (rendered with the kustomize library, strictly
// decoded into the Kubernetes API types), the compose file
// (loaded by the Compose specification's own loader), the systemd unit
// (systemd-analyze) and the Prometheus rules (promtool). It is a module of
// its own so that those check-only dependencies stay out of medcall's
// go.mod; deploy/test.sh runs it.
package check
