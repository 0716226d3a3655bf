package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestBehindCaddy runs serve on loopback behind a real TLS-terminating
// proxy (Caddy, configured as the README's Production section shows): the
// page and the WebSocket go through the proxy over HTTPS/WSS, HSTS is added
// there, media goes straight to the server's UDP port, and a call works —
// audio both ways, an upgrade to video.
func TestBehindCaddy(t *testing.T) {
	caddy := needTool(t, "caddy")
	ca, cert, key := newTestCertFiles(t, 9, "127.0.0.1")
	data := t.TempDir()
	upstream, _, _ := startServe(t, data, "--udp-port", fmt.Sprint(freePort(t)))
	port := freePort(t)
	dir := t.TempDir()
	// The README's Caddyfile, with a test certificate instead of ACME.
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https disable_redirects
	servers {
		protocols h1 h2
	}
}
https://127.0.0.1:%d {
	bind 127.0.0.1
	tls %s %s
	header Strict-Transport-Security "max-age=31536000"
	reverse_proxy %s
}
`, port, cert, key, upstream)
	cf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cf, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddy, "run", "--config", cf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logWriter{t, "caddy: "}, logWriter{t, "caddy: "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	hc, err := httpClientTrusting(ca.file)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := hc.Get(base + "/client/medcall.js")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("the client script through Caddy: %s", resp.Status)
			}
			if resp.Header.Get("Strict-Transport-Security") == "" {
				t.Error("no HSTS header through the proxy")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Caddy did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := fmt.Sprintf("wss://127.0.0.1:%d/v1/signal", port)
	pc, err := client.Dial(ctx, client.Options{URL: url, Token: pat, AudioFile: "../../testdata/audio.ogg",
		VideoFile: "../../testdata/video.ivf", Prenegotiate: true, HTTPClient: hc})
	if err != nil {
		t.Fatalf("patient join through Caddy: %v", err)
	}
	defer pc.Close()
	dc, err := client.Dial(ctx, client.Options{URL: url, Token: doc, AudioFile: "../../testdata/audio.ogg", HTTPClient: hc})
	if err != nil {
		t.Fatalf("clinician join through Caddy: %v", err)
	}
	defer dc.Close()
	for _, w := range []struct {
		c    *client.Client
		from string
	}{{dc, "p-1"}, {pc, "d-1"}} {
		if _, err := w.c.WaitReceived(ctx, w.from, "audio", func(s client.TrackStats) bool { return s.Packets >= 100 }); err != nil {
			t.Fatalf("%s's audio through a call signalled via Caddy: %v", w.from, err)
		}
	}
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.WaitReceived(ctx, "p-1", "video", func(s client.TrackStats) bool { return s.Keyframes > 0 && s.Packets >= 30 }); err != nil {
		t.Fatalf("video after an upgrade signalled via Caddy: %v", err)
	}
	if err := pc.Leave(ctx); err != nil {
		t.Errorf("leave through Caddy: %v", err)
	}
}
