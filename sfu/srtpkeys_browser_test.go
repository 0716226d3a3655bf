package sfu

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// keysPage answers the server's offer with Chromium's fake microphone and
// posts its answer back, every candidate in it.
const keysPage = `<!doctype html><script>
(async () => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const offer = await (await fetch('/offer')).json();
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  await pc.setRemoteDescription(offer);
  const tr = pc.getTransceivers()[0];
  await tr.sender.replaceTrack(mic.getAudioTracks()[0]);
  tr.direction = 'sendrecv';
  await pc.setLocalDescription(await pc.createAnswer());
  while (pc.iceGatheringState !== 'complete') await new Promise(r => setTimeout(r, 50));
  await fetch('/answer', {method: 'POST', body: JSON.stringify(pc.localDescription)});
})().catch(e => fetch('/answer', {method: 'POST', body: JSON.stringify({error: String(e)})}));
</script>`

func chromium(t *testing.T) string {
	t.Helper()
	p := os.Getenv("MEDCALL_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing (CI is set, so this fails instead of skipping): apt-get install -y chromium", p)
		}
		t.Skipf("%s is missing: apt-get install -y chromium", p)
	}
	return p
}

// TestSRTPKeysOpenWhatChromiumSends: with a real browser as the peer (its
// DTLS and SRTP stack, its choice of suite and profile), the keys medcall
// puts together open what Chromium's microphone sent and what pion sent it.
func TestSRTPKeysOpenWhatChromiumSends(t *testing.T) {
	bin := chromium(t)
	p := newKeyPair(t, 0, 0, webrtc.Configuration{}) // its pion client stays unused
	down := opusTrack(t, "down")
	if _, err := p.server.AddTrack(down); err != nil {
		t.Fatal(err)
	}
	offer, err := p.server.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(p.server)
	if err := p.server.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answers := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			_, _ = w.Write([]byte(keysPage))
		case "/offer":
			_ = json.NewEncoder(w).Encode(p.server.LocalDescription())
		case "/answer":
			var b json.RawMessage
			_ = json.NewDecoder(r.Body).Decode(&b)
			answers <- b
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required", srv.URL)
	// Its own process group, so its renderer and helper processes end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	var answer struct {
		webrtc.SessionDescription
		Error string `json:"error"`
	}
	select {
	case b := <-answers:
		if err := json.Unmarshal(b, &answer); err != nil || answer.Error != "" {
			t.Fatalf("the page: %v %s", err, answer.Error)
		}
	case <-ctx.Done():
		t.Fatal("Chromium posted no answer")
	}
	if err := p.server.SetRemoteDescription(answer.SessionDescription); err != nil {
		t.Fatal(err)
	}
	keys := connectionKeys(t, p, ctx)
	t.Logf("Chromium's connection: SRTP profile %v (pion, the DTLS server, chose it), cryptex send %v receive %v", keys.Profile, keys.LocalCryptex, keys.RemoteCryptex)
	var in, out [][]byte
	for seq := uint16(1); len(in) < 20 || len(out) < 20; seq++ {
		if ctx.Err() != nil {
			t.Fatalf("the socket saw %d SRTP datagrams from Chromium and %d to it, want 20 each", len(in), len(out))
		}
		if err := down.WriteRTP(withExtension(t, seq, []byte{0xf8, 0xff, 0xfe})); err != nil { // Opus silence
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		in, out, _ = p.tee.taken()
	}
	local, remote, err := keys.Contexts()
	if err != nil {
		t.Fatal(err)
	}
	decryptAll(t, remote, in) // fails on any datagram the keys do not open
	decryptAll(t, local, out)
	t.Logf("the derived keys opened all %d SRTP datagrams from Chromium and %d to it", len(in), len(out))
}
