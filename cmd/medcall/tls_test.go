package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/client"
)

// testCA is a private certificate authority for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "medcall test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(t.TempDir(), "ca.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a server certificate for hosts (names or IPs) with the given
// serial to certFile and keyFile.
func (ca *testCA) issue(t testing.TB, certFile, keyFile string, serial int64, hosts ...string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	// Write to temporary names and rename, as a certificate renewal tool
	// does, so the server never sees half a file.
	writePEM(t, keyFile+".new", "PRIVATE KEY", kb)
	writePEM(t, certFile+".new", "CERTIFICATE", der)
	for _, f := range []string{keyFile, certFile} {
		if err := os.Rename(f+".new", f); err != nil {
			t.Fatal(err)
		}
	}
}

// newTestCertFiles makes a CA and a certificate from it for hosts, in files.
func newTestCertFiles(t testing.TB, serial int64, hosts ...string) (ca *testCA, certFile, keyFile string) {
	t.Helper()
	ca = newTestCA(t)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.issue(t, certFile, keyFile, serial, hosts...)
	return ca, certFile, keyFile
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// servedSerial makes a TLS handshake trusting only roots and returns the
// serial number of the certificate served.
func servedSerial(t *testing.T, addr, serverName string, roots *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// waitSerial waits until the server presents the certificate with serial.
func waitSerial(t *testing.T, addr string, roots *x509.CertPool, serial int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for got := servedSerial(t, addr, "", roots); got != serial; got = servedSerial(t, addr, "", roots) {
		if time.Now().After(deadline) {
			t.Fatalf("server still presents certificate %d, want %d", got, serial)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSCertificateFiles serves HTTPS/WSS from certificate files: a call
// over wss:// works, every response carries HSTS, a renewed certificate is
// picked up without a restart when the files change and on SIGHUP, and a
// broken renewal keeps the old certificate serving.
func TestTLSCertificateFiles(t *testing.T) {
	ca, certFile, keyFile := newTestCertFiles(t, 100, "127.0.0.1")
	data := t.TempDir()
	addr, admin, stop := startServe(t, data, "--tls-cert", certFile, "--tls-key", keyFile, "--tls-reload", "100ms")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if got := servedSerial(t, addr, "", roots); got != 100 {
		t.Fatalf("serves certificate %d, want 100", got)
	}

	hc, err := httpClientTrusting(ca.file)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security %q, want max-age=31536000", h)
	}
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: %s, want 400 (only TLS is served)", resp.Status)
		}
	}

	// A call over wss://.
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := "wss://" + addr + "/v1/signal"
	pc, err := client.Dial(ctx, client.Options{URL: url, Token: pat, AudioFile: "../../testdata/audio.ogg", HTTPClient: hc})
	if err != nil {
		t.Fatalf("join over wss: %v", err)
	}
	defer pc.Close()
	dc, err := client.Dial(ctx, client.Options{URL: url, Token: doc, AudioFile: "../../testdata/audio.ogg", HTTPClient: hc})
	if err != nil {
		t.Fatalf("join over wss: %v", err)
	}
	defer dc.Close()
	if _, err := dc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
		t.Fatalf("audio over a wss-signalled call: %v", err)
	}

	// Renewal by file change, with the call still up.
	ca.issue(t, certFile, keyFile, 101, "127.0.0.1")
	waitSerial(t, addr, roots, 101, 10*time.Second)
	// A broken renewal: the old certificate keeps serving, the failure is counted.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, admin)[`medcall_tls_cert_reloads_total{outcome="failed"}`] < 1 {
		if time.Now().After(deadline) {
			t.Fatal("a broken certificate file was not noticed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := servedSerial(t, addr, "", roots); got != 101 {
		t.Errorf("after a broken renewal the server presents %d, want the previous 101", got)
	}
	if _, err := pc.WaitReceived(ctx, "d-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
		t.Errorf("the call suffered from certificate reloads: %v", err)
	}
	if err := pc.Leave(ctx); err != nil { // a request and its reply over the same wss socket, after the reloads
		t.Errorf("leave over wss after certificate reloads: %v", err)
	}
	_ = stop()

	// SIGHUP alone (no polling) reloads.
	ca.issue(t, certFile, keyFile, 102, "127.0.0.1")
	addr, _, _ = startServe(t, t.TempDir(), "--tls-cert", certFile, "--tls-key", keyFile, "--tls-reload", "0")
	waitSerial(t, addr, roots, 102, time.Second)
	ca.issue(t, certFile, keyFile, 103, "127.0.0.1")
	time.Sleep(300 * time.Millisecond)
	if got := servedSerial(t, addr, "", roots); got != 102 {
		t.Fatalf("reloaded without SIGHUP while polling is off: %d", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, addr, roots, 103, 5*time.Second)
}

// TestTLSFlagsRefused: contradictory or incomplete TLS flags are refused
// with a message saying what to do, before anything listens.
func TestTLSFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "c.pem"}, "give both files"},
		{[]string{"--tls-cert", "c.pem", "--tls-key", "k.pem", "--acme-domain", "x.example"}, "choose certificate files or ACME"},
		{[]string{"--acme-email", "ops@example.org"}, "need --acme-domain"},
		{[]string{"--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, "TLS certificate /nonexistent/c.pem"},
		{[]string{"--public-ip", "not-an-ip"}, "--public-ip"},
	} {
		err := run(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data", t.TempDir()}, tc.args...), &syncBuffer{}, &syncBuffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: error %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}

// TestPlainHTTPWarning: plain HTTP is quiet on loopback and warns anywhere
// else, saying why and what to do.
func TestPlainHTTPWarning(t *testing.T) {
	for addr, warn := range map[string]bool{"127.0.0.1:8080": false, "[::1]:8080": false, "0.0.0.0:8080": true, "10.9.1.2:8080": true} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		got := plainHTTPWarning(a)
		if (got != "") != warn {
			t.Errorf("%s: warning %q, want a warning: %v", addr, got, warn)
		}
		if warn && !(strings.Contains(got, "camera and microphone") && strings.Contains(got, "--tls-cert") && strings.Contains(got, "--acme-domain")) {
			t.Errorf("%s: the warning does not say why and what to do: %q", addr, got)
		}
	}
}
