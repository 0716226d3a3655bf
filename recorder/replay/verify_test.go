package replay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
	"github.com/medcall/medcall/signaling/token"
)

// tamperChunk is the chunk size the tamper tests sign, so a few KiB hold
// several chunks.
const tamperChunk = 1024

// eachTamperStore runs fn over a local store, where rewrite changes an
// object's bytes in place and restores its modification time (what a
// cache keyed on size and mtime would miss), and over a real MinIO, where
// rewrite overwrites the object.
func eachTamperStore(t *testing.T, fn func(t *testing.T, g *replayRig, rewrite func(key string, b []byte))) {
	t.Run("local", func(t *testing.T) {
		dir := t.TempDir()
		st, err := store.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newReplayRig(t, st), func(key string, b []byte) {
			path := filepath.Join(dir, filepath.FromSlash(key))
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("s3", func(t *testing.T) {
		srv := miniotest.Start(t)
		srv.SetEnv(t)
		st, err := store.Open(context.Background(), srv.URL("replay", "&create=true"))
		if err != nil {
			t.Fatal(err)
		}
		fn(t, newReplayRig(t, st), func(key string, b []byte) { putBytes(t, st, key, b) })
	})
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// rawGet requests path and reads the body to its end or its failure.
func (g *replayRig) rawGet(path, tok string, hdr ...string) (status int, body []byte, readErr error) {
	g.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, readErr = io.ReadAll(resp.Body)
	return resp.StatusCode, body, readErr
}

// TestTamperedBytesAreNeverServed: whatever is changed in a stored
// recording after signing, a read serves none of the changed bytes, stops
// (404 before any header when the first chunk asked for is bad, a cut
// connection mid-stream otherwise), hides the recording from then on,
// raises exactly one alert and writes an audit line.
func TestTamperedBytesAreNeverServed(t *testing.T) {
	const size = 5 * tamperChunk
	swapChunk := func(orig, other []byte, i int) []byte {
		b := bytes.Clone(orig)
		copy(b[i*tamperChunk:(i+1)*tamperChunk], other[i*tamperChunk:])
		return b
	}
	cases := []struct {
		name   string
		legacy bool // a manifest signed before chunk digests: checked whole
		tamper func(orig, other []byte) []byte
		rng    string // Range header, if any
		// served is what may reach the client: the verified bytes before
		// the first bad chunk; nil means a 404 before any byte.
		served func(orig []byte) []byte
	}{
		{"same-size swap with another patient's recording, mtime restored", false,
			func(_, other []byte) []byte { return other }, "", nil},
		{"same-size swap, old manifest without chunk digests", true,
			func(_, other []byte) []byte { return other }, "", nil},
		{"flipped byte in chunk 2", false,
			func(orig, _ []byte) []byte { b := bytes.Clone(orig); b[2*tamperChunk+77] ^= 1; return b }, "",
			func(orig []byte) []byte { return orig[:2*tamperChunk] }},
		{"flipped byte, old manifest", true,
			func(orig, _ []byte) []byte { b := bytes.Clone(orig); b[size-1] ^= 0x80; return b }, "", nil},
		{"swapped chunk 3", false,
			func(orig, other []byte) []byte { return swapChunk(orig, other, 3) }, "",
			func(orig []byte) []byte { return orig[:3*tamperChunk] }},
		{"range request into the swapped chunk", false,
			func(orig, other []byte) []byte { return swapChunk(orig, other, 3) }, "bytes=3100-3199", nil},
		{"suffix range into the swapped chunk", false,
			func(orig, other []byte) []byte { return swapChunk(orig, other, 4) }, "bytes=-100", nil},
		{"range request running into the swapped chunk", false,
			func(orig, other []byte) []byte { return swapChunk(orig, other, 3) }, "bytes=1000-4000",
			func(orig []byte) []byte { return orig[1000 : 3*tamperChunk] }},
		{"bytes appended", false,
			func(orig, _ []byte) []byte { return append(bytes.Clone(orig), '!') }, "", nil},
		{"bytes cut off", false,
			func(orig, _ []byte) []byte { return orig[:size-1] }, "", nil},
	}
	eachTamperStore(t, func(t *testing.T, g *replayRig, rewrite func(key string, b []byte)) {
		ks, now := g.mkeys, time.Now()
		other := putRecording(t, g.st, ks, recSpec{pid: "patient-b", cid: "cons-b", body: randomBytes(t, size), chunk: tamperChunk}, now)
		tokA := g.token("patient-a", token.RolePatient, now.Add(time.Hour))
		for i, c := range cases {
			a := putRecording(t, g.st, ks, recSpec{pid: "patient-a", cid: fmt.Sprintf("cons-%d", i), clinicians: []string{"dr-1"},
				body: randomBytes(t, size), chunk: tamperChunk, legacy: c.legacy}, now)
			g.refresh()
			path := replay.Path + "/" + a.rid
			if st, b, err := g.rawGet(path, tokA); st != http.StatusOK || err != nil || !bytes.Equal(b, a.body) {
				t.Fatalf("%s: untouched recording: %d, %d bytes, %v", c.name, st, len(b), err)
			}
			g.alerts.take()
			rewrite(a.webmKey, c.tamper(a.body, other.body))

			n := g.auditCount()
			var hdr []string
			if c.rng != "" {
				hdr = []string{"Range", c.rng}
			}
			status, got, readErr := g.rawGet(path, tokA, hdr...)
			if c.served == nil {
				if status != http.StatusNotFound || string(got) != replayNotFound {
					t.Errorf("%s: %d %q; want the 404 of a missing recording", c.name, status, got)
				}
			} else {
				want := c.served(a.body)
				if readErr == nil {
					t.Errorf("%s: the stream ended cleanly (%d, %d bytes); want it cut", c.name, status, len(got))
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: served %d bytes; want exactly the %d verified bytes before the bad chunk", c.name, len(got), len(want))
				}
			}
			if a := g.alerts.take(); !maps.Equal(a, map[string]int{replay.AlertDigestMismatch: 1}) {
				t.Errorf("%s: alerts %v, want one %s", c.name, a, replay.AlertDigestMismatch)
			}
			_, evs := g.auditLines()
			if integrity := countReason(evs[n:], "integrity"); integrity != 1 {
				t.Errorf("%s: %d audit lines with reason integrity, want 1: %+v", c.name, integrity, evs[n:])
			}
			// Hidden from now on: not listed, refused like a missing one,
			// not alerted again; dr-1 no longer sees it either.
			for _, l := range g.list(tokA).Recordings {
				if l.ID == a.rid {
					t.Errorf("%s: still listed after the mismatch", c.name)
				}
			}
			if st, b, _ := g.rawGet(path, tokA); st != http.StatusNotFound || string(b) != replayNotFound {
				t.Errorf("%s: asked again: %d %q; want 404", c.name, st, b)
			}
			if st, _, _ := g.rawGet(path, g.token("dr-1", token.RoleClinician, now.Add(time.Hour))); st != http.StatusNotFound {
				t.Errorf("%s: clinician asked: %d; want 404", c.name, st)
			}
			if a := g.alerts.take(); len(a) != 0 {
				t.Errorf("%s: alerted again: %v", c.name, a)
			}
		}
		// patient-b's recording, whose bytes were used, is untouched and served.
		g.refresh()
		tokB := g.token("patient-b", token.RolePatient, now.Add(time.Hour))
		if st, b, err := g.rawGet(replay.Path+"/"+other.rid, tokB); st != http.StatusOK || err != nil || !bytes.Equal(b, other.body) {
			t.Errorf("patient-b's own recording: %d, %d bytes, %v", st, len(b), err)
		}
	})
}

func countReason(evs []replay.AuditEvent, reason string) int {
	n := 0
	for _, ev := range evs {
		if ev.Reason == reason {
			n++
		}
	}
	return n
}

// TestVerifiedReaderSeeks: a Verified reader serves any range of a good
// recording exactly, across chunk boundaries and backwards seeks.
func TestVerifiedReaderSeeks(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ks := newSigningKeys(t, "k1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		body := randomBytes(t, 3*tamperChunk+17)
		r := putRecording(t, st, ks, recSpec{pid: "p", cid: "c", body: body, chunk: tamperChunk}, time.Now())
		x := newIndex(t, st, ks.Public(), nil)
		rec, err := find(x, "p", "patient", r.rid)
		if err != nil {
			t.Fatal(err)
		}
		v, err := x.Open(context.Background(), rec)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		for _, rg := range [][2]int{{0, len(body)}, {3000, 3089}, {10, 20}, {1023, 1025}, {0, 1}, {len(body) - 1, len(body)}} {
			if _, err := v.Seek(int64(rg[0]), io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, rg[1]-rg[0])
			if _, err := io.ReadFull(v, got); err != nil || !bytes.Equal(got, body[rg[0]:rg[1]]) {
				t.Errorf("bytes %d-%d: %v, equal %v", rg[0], rg[1], err, bytes.Equal(got, body[rg[0]:rg[1]]))
			}
		}
		if n, err := v.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("read at the end = %d, %v; want EOF", n, err)
		}
	})
}
