package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble runs a real ACME server (Debian's pebble) on loopback whose
// mock DNS (pebble-challtestsrv) resolves every name to 127.0.0.1 and whose
// TLS-ALPN-01 validation connects to tlsPort. It returns the directory URL,
// the CA file that trusts pebble's own HTTPS, and its management address.
func startPebble(t *testing.T, tlsPort int) (dir, caFile, mgmt string) {
	t.Helper()
	pebble := needTool(t, "pebble")
	chall := needTool(t, "pebble-challtestsrv")
	ca, cert, key := newTestCertFiles(t, 7, "127.0.0.1", "localhost")
	d := t.TempDir()
	dnsPort, acmePort, mgmtPort := freePort(t), freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": fmt.Sprintf("127.0.0.1:%d", acmePort), "managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mgmtPort),
		"certificate": cert, "privateKey": key, "httpPort": freePort(t), "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	b, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(d, "pebble.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	for _, c := range []*exec.Cmd{
		exec.Command(chall, "-dns01", dns, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
		exec.Command(pebble, "-config", cfgFile, "-dnsserver", dns),
	} {
		// No random validation delays; no nonce rejections (autocert would
		// retry them, but they only slow the test).
		c.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
		c.Stdout, c.Stderr = logWriter{t, filepath.Base(c.Path) + ": "}, logWriter{t, filepath.Base(c.Path) + ": "}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	dir = fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	hc, _ := httpClientTrusting(ca.file)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(dir)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dir, ca.file, fmt.Sprintf("127.0.0.1:%d", mgmtPort)
}

// TestACMEWithPebble gets a certificate from a real ACME server: serve
// with --acme-domain answers the TLS-ALPN-01 challenge on its own port and
// then presents a certificate for the domain that chains to the ACME
// server's root. A restart reuses the cached certificate.
func TestACMEWithPebble(t *testing.T) {
	port := freePort(t)
	dir, caFile, mgmt := startPebble(t, port)
	data := t.TempDir()
	args := []string{"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--acme-domain", "medcall.test",
		"--acme-email", "ops@medcall.test", "--acme-directory", dir, "--acme-ca", caFile}
	out, stop := serveACME(t, data, args)

	// The first handshake for the domain obtains the certificate.
	hc, _ := httpClientTrusting(caFile)
	var roots *x509.CertPool
	deadline := time.Now().Add(60 * time.Second)
	var err error
	for roots == nil {
		resp, e := hc.Get("https://" + mgmt + "/roots/0")
		if e == nil {
			pem, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			roots = x509.NewCertPool()
			roots.AppendCertsFromPEM(pem)
		} else if time.Now().After(deadline) {
			t.Fatalf("pebble's root: %v", e)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var c *tls.Conn
	for {
		c, err = tls.Dial("tcp", addr, &tls.Config{ServerName: "medcall.test", RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no valid certificate for medcall.test from pebble: %v\nserve output: %s", err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	c.Close()
	if err := leaf.VerifyHostname("medcall.test"); err != nil {
		t.Error(err)
	}
	// Another name is refused: the host policy allows only --acme-domain.
	if c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.test", RootCAs: roots, MinVersion: tls.VersionTLS12}); err == nil {
		c.Close()
		t.Error("a certificate was served for a name not in --acme-domain")
	}
	stop()

	// A restart serves the cached certificate.
	serveACME(t, data, args)
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err = tls.Dial("tcp", addr, &tls.Config{ServerName: "medcall.test", RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(leaf) {
		t.Error("a restart did not reuse the cached certificate")
	}
	c.Close()
}

// serveACME runs serve (which cannot announce itself before it has a
// certificate, so there is no line to wait for) until stop or the test's end.
func serveACME(t *testing.T, data string, args []string) (*syncBuffer, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--admin-addr", "127.0.0.1:0", "--data", data, "--log-level", "warn"}, args...), out, io.Discard)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return out, stop
}
