package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// receiver is a booking backend: it verifies every request with the
// Standard Webhooks library and keeps each webhook-id once.
type receiver struct {
	t    *testing.T
	addr string
	wh   *standardwebhooks.Webhook

	mu       sync.Mutex
	srv      *http.Server
	got      map[string]payloadIn // webhook-id -> first delivery
	order    []string
	repeats  int // deliveries of an id already seen (allowed, dropped)
	rejected int // requests whose signature did not verify
}

type payloadIn struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

func newReceiver(t *testing.T) *receiver {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, addr: l.Addr().String(), wh: wh, got: map[string]payloadIn{}}
	r.serve(l)
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hooks/medcall" }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.mu.Lock()
		r.rejected++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p payloadIn
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("payload is not JSON: %v: %s", err, body)
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.got[id]; seen {
		r.repeats++
		return
	}
	r.got[id] = p
	r.order = append(r.order, id)
}

func (r *receiver) serve(l net.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.srv = &http.Server{Handler: r}
	go func() { _ = r.srv.Serve(l) }()
}

// stop takes the receiver down; requests in progress get their answer.
func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}

// restart brings the receiver back on the same address.
func (r *receiver) restart() {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver back on %s: %v", r.addr, err)
	}
	r.serve(l)
}

func (r *receiver) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

func startSender(t *testing.T, dir, url, key string) (*Sender, context.CancelFunc) {
	t.Helper()
	s, err := New(Options{URL: url, Secret: key, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func waitFor(t *testing.T, what string, within time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReceiverDownSixtySecondsLosesNothing: events sent before, during and
// after a 60 s receiver outage, with a medcall restart in the middle of it,
// all arrive, each verified by the Standard Webhooks library, each
// webhook-id once, in the order they happened.
func TestReceiverDownSixtySecondsLosesNothing(t *testing.T) {
	rcv := newReceiver(t)
	dir := t.TempDir()
	s, stop := startSender(t, dir, rcv.url(), secret)
	var want []string
	consult := func(i int) Consultation {
		return Consultation{Consultation: fmt.Sprintf("c-%d", i), Patient: fmt.Sprintf("p-%d", i), Session: NewSession(), Recorded: true}
	}
	rec := func(i int) Recording {
		return Recording{Recording: fmt.Sprintf("r-%d", i), Consultation: fmt.Sprintf("c-%d", i), Patient: fmt.Sprintf("p-%d", i),
			ObjectKey: fmt.Sprintf("patients/p-%d/consultations/c-%d/r-%d.webm", i, i, i), ManifestSHA256: "ab", ObjectSHA256: "cd", SizeBytes: 10}
	}
	emit := func(s *Sender, i int) {
		c := consult(i)
		for _, f := range []func() error{
			func() error { return s.Started(c) },
			func() error { return s.Ended(c) },
			func() error { return s.Stored(rec(i)) },
		} {
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, "msg_started_"+c.Session, "msg_ended_"+c.Session, "msg_stored_"+rec(i).Recording)
	}
	emit(s, 1)
	waitFor(t, "first events delivered", 10*time.Second, func() bool { return len(rcv.ids()) == 3 })

	rcv.stop()
	outage := time.Now()
	emit(s, 2)
	if err := s.Stored(rec(2)); err != nil { // the same recording stored again: one event
		t.Fatal(err)
	}
	if err := s.RecordingFailed(Recording{Recording: "r-3", Consultation: "c-3", Patient: "p-3"}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "msg_failed_r-3")
	time.Sleep(20 * time.Second)
	if s.Failed() == 0 {
		t.Error("no delivery attempt failed while the receiver was down")
	}
	stop() // medcall restarts during the outage
	s, _ = startSender(t, dir, rcv.url(), secret)
	if got := s.Pending(); got != 4 {
		t.Errorf("after the restart %d events pending, want 4", got)
	}
	emit(s, 4)
	time.Sleep(time.Until(outage.Add(60 * time.Second)))
	rcv.restart()
	waitFor(t, "every event delivered after the outage", 40*time.Second, func() bool { return s.Pending() == 0 })

	got := rcv.ids()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("receiver got %d events\n%v\nwant %d in order\n%v", len(got), got, len(want), want)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.rejected != 0 {
		t.Errorf("%d requests failed signature verification", rcv.rejected)
	}
	var data Recording
	if p := rcv.got["msg_stored_r-2"]; p.Type != RecordingStored || json.Unmarshal(p.Data, &data) != nil || data.ObjectKey != rec(2).ObjectKey || data.Patient != "p-2" {
		t.Errorf("recording.stored payload: %+v %+v", p, data)
	}
	t.Logf("%d events delivered, %d repeated deliveries dropped by webhook-id, %d failed attempts during the outage", len(got), rcv.repeats, s.Failed())
}

// TestWrongSecretIsRefusedAndRetried: a receiver refuses what another secret
// signed; the event stays queued.
func TestWrongSecretIsRefusedAndRetried(t *testing.T) {
	rcv := newReceiver(t)
	s, _ := startSender(t, t.TempDir(), rcv.url(), "whsec_"+"c2VjcmV0LW9mLWFub3RoZXItc2VydmljZS0xMjM0NTY=")
	if err := s.Started(Consultation{Consultation: "c-1", Patient: "p-1", Session: NewSession()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a refused attempt", 10*time.Second, func() bool { return s.Failed() > 0 })
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if rcv.rejected == 0 || len(rcv.got) != 0 || s.Pending() != 1 {
		t.Errorf("rejected %d, accepted %d, pending %d; want a rejection, nothing accepted, the event still queued", rcv.rejected, len(rcv.got), s.Pending())
	}
}

// TestBadOptionsAndIDs: clear errors for what cannot work.
func TestBadOptionsAndIDs(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{URL: "ftp://x/y", Secret: secret, Dir: dir},
		{URL: "https://user:pw@x/y", Secret: secret, Dir: dir},
		{URL: "https://x/y", Secret: "", Dir: dir},
		{URL: "https://x/y", Secret: "whsec_not base64!", Dir: dir},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	s, err := New(Options{URL: "https://x/y", Secret: secret, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stored(Recording{Recording: "../../etc/passwd"}); err == nil || errors.Is(err, nil) {
		t.Error("a recording id that is not an id was queued")
	}
}
