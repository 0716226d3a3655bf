package recorder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestUnwrap(t *testing.T) {
	var s unwrap16
	var got []int64
	for _, v := range []uint16{65533, 65535, 65534, 0, 2, 1, 65535, 3} {
		got = append(got, s.unwrap(v))
	}
	want := []int64{65533, 65535, 65534, 65536, 65538, 65537, 65535, 65539}
	if !slices.Equal(got, want) {
		t.Errorf("seq: got %v want %v", got, want)
	}
	var ts unwrap32
	got = got[:0]
	for _, v := range []uint32{4294967000, 4294967295, 100, 4294967200, 90000} {
		got = append(got, ts.unwrap(v))
	}
	want = []int64{4294967000, 4294967295, 4294967396, 4294967200, 4295057296}
	if !slices.Equal(got, want) {
		t.Errorf("ts: got %v want %v", got, want)
	}
	if p := ts.peek(4294967000); p != 4294967000 {
		t.Errorf("peek before the wrap: %d", p)
	}
}

func TestReorderBuffer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name  string
		in    []int64 // extended sequence numbers, one per 10 ms of arrival
		flush bool
		want  []int64
		lost  int64
	}{
		{"in order", []int64{1, 2, 3}, false, []int64{1, 2, 3}, 0},
		{"swapped", []int64{1, 3, 2, 4}, false, []int64{1, 2, 3, 4}, 0},
		{"duplicate and late", []int64{1, 2, 2, 3, 1}, false, []int64{1, 2, 3}, 0},
		{"gap waits, then flush gives up", []int64{1, 3, 4}, true, []int64{1, 3, 4}, 1},
		{"gap given up after maxWait", []int64{10, 12, 13, 14, 15, 16}, false, []int64{10, 12, 13, 14, 15, 16}, 1},
		{"far jump", []int64{5, 5 + reorderSize + 10}, true, []int64{5, 5 + reorderSize + 10}, reorderSize + 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := reorderBuffer{maxLate: 64, maxWait: 35 * time.Millisecond}
			var got []int64
			var lost int64
			emit := func(it *item) { got = append(got, int64(it.seq)) }
			lose := func(n int64) { lost += n }
			for i, s := range tc.in {
				b.push(s, item{seq: uint16(s), arrival: t0.Add(time.Duration(i) * 10 * time.Millisecond)}, emit, lose)
			}
			if tc.flush {
				b.flush(emit, lose)
			}
			want := make([]int64, len(tc.want))
			for i, w := range tc.want {
				want[i] = int64(uint16(w))
			}
			if !slices.Equal(got, want) || lost != tc.lost {
				t.Errorf("emitted %v lost %d; want %v lost %d", got, lost, want, tc.lost)
			}
		})
	}
}

// Before a sender report a track is placed by arrival; from one on, by its
// NTP time and the participant's offset, which its first report sets.
func TestTimelineSenderReports(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	ntpOff := 2*time.Hour + 345*time.Millisecond
	at := func(d time.Duration) time.Time { return start.Add(d) }
	var tl timeline
	audio, video := newTrackClock(48000), newTrackClock(90000)

	// Audio sent from 0, 30 ms on the way; its first packet anchors it.
	ext := audio.packet(1_000_000, at(30*time.Millisecond))
	if got := audio.wall(ext + 48000); got != at(1030*time.Millisecond).UnixNano() {
		t.Errorf("by arrival: %v", time.Duration(got-start.UnixNano()))
	}
	// Video sent from 1 s, 150 ms on the way (pacing, a slower path).
	vext := video.packet(500, at(1150*time.Millisecond))
	if got := video.wall(vext); got != at(1150*time.Millisecond).UnixNano() {
		t.Errorf("video by arrival: %v", time.Duration(got-start.UnixNano()))
	}
	// Sender reports, both describing sender time 2 s.
	off := tl.observe("u", ntpTime(at(2*time.Second+ntpOff)), at(2030*time.Millisecond))
	audio.senderReport(ntpTime(at(2*time.Second+ntpOff)), 1_000_000+2*48000, off)
	off = tl.observe("u", ntpTime(at(2*time.Second+ntpOff)), at(2150*time.Millisecond))
	video.senderReport(ntpTime(at(2*time.Second+ntpOff)), 500+90000, off)
	// Now media sent together is placed together, at the audio path's delay.
	a3, v3 := audio.wall(ext+3*48000), video.wall(vext+2*90000)
	if a3 != v3 || a3 != at(3030*time.Millisecond).UnixNano() {
		t.Errorf("3 s of sender time: audio at %v, video at %v; want both at 3.03 s",
			time.Duration(a3-start.UnixNano()), time.Duration(v3-start.UnixNano()))
	}
	// A later report, faster or slower, leaves the offset: frames already
	// placed cannot move, and every track of one person shares one offset.
	if o := tl.observe("u", ntpTime(at(4*time.Second+ntpOff)), at(4025*time.Millisecond)); o != off {
		t.Errorf("offset after a faster report moved by %v", time.Duration(o-off))
	}
	if o := tl.observe("u", ntpTime(at(5*time.Second+ntpOff)), at(5090*time.Millisecond)); o != off {
		t.Errorf("offset after a slower report moved by %v", time.Duration(o-off))
	}
	// Another participant has its own offset.
	if o := tl.observe("v", ntpTime(at(5*time.Second)), at(5010*time.Millisecond)); o != int64(10*time.Millisecond) {
		t.Errorf("second participant offset %v", time.Duration(o))
	}
	// A timestamp wrap between report and packet maps straight on.
	wrap := newTrackClock(48000)
	e0 := wrap.packet(4294967000, at(0))
	wrap.senderReport(ntpTime(at(ntpOff)), 4294967000, tl.observe("w", ntpTime(at(ntpOff)), at(0)))
	e1 := wrap.packet(4294967000+48000-1<<32, at(time.Second))
	if e1-e0 != 48000 || wrap.wall(e1) != at(time.Second).UnixNano() {
		t.Errorf("across the wrap: ext %d, wall %v", e1-e0, time.Duration(wrap.wall(e1)-start.UnixNano()))
	}
}

func TestTrackNames(t *testing.T) {
	var n trackNamer
	got := []string{
		n.name("a", "patient", "audio"),
		n.name("b", "clinician", "audio"),
		n.name("c", "guest", "audio"),
		n.name("d", "guest", "audio"),
		n.name("d", "guest", "video"),
		n.name("b", "clinician", "video"),
	}
	want := []string{"patient/audio", "clinician/audio", "guest/audio", "guest-2/audio", "guest-2/video", "clinician/video"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v want %v", got, want)
	}
}

// A full queue drops and counts; it never blocks the forwarding goroutine.
func TestQueueOverflowNeverBlocks(t *testing.T) {
	var total atomic.Uint64
	q := newQueue(4, time.Now, &total, discardLogger(), "patient/audio")
	done := make(chan struct{})
	go func() {
		for i := range 10 {
			q.WriteRTP(rtpPacket(uint16(i)))
		}
		q.OnRTCP(&rtcp.SenderReport{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WriteRTP blocked on a full queue")
	}
	if q.drops.Load() != 7 || total.Load() != 7 || q.queued() != 4 {
		t.Errorf("drops %d total %d queued %d; want 7 7 4", q.drops.Load(), total.Load(), q.queued())
	}
	q.Close()
	q.WriteRTP(rtpPacket(99)) // after Close: ignored, no panic
}

// A queue's memory follows its backlog: the ring grows while the track
// goroutine is behind, items come out in order, and an emptied ring is let go.
func TestQueueRingFollowsTheBacklog(t *testing.T) {
	var total atomic.Uint64
	q := newQueue(1024, time.Now, &total, discardLogger(), "patient/video")
	for round := range 2 {
		for i := range 100 {
			q.WriteRTP(rtpPacket(uint16(i)))
		}
		if len(q.ring) != 128 {
			t.Errorf("round %d: 100 queued in a ring of %d, want 128", round, len(q.ring))
		}
		for i := range 100 {
			it, ok := q.pop()
			if !ok || it.seq != uint16(i) {
				t.Fatalf("round %d: pop %d gave %d (ok %v)", round, i, it.seq, ok)
			}
			it.release()
		}
		if _, ok := q.pop(); ok || q.ring != nil {
			t.Errorf("round %d: drained queue still pops or holds a ring of %d", round, len(q.ring))
		}
	}
}

// Every prefix of a spool reads as the records that are whole in it.
func TestSpoolTornAtEveryByte(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.spool")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newSpoolWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	hdr := spoolHeader{Recording: "r", Consultation: "c", Patient: "p"}
	hdrJSON, _ := json.Marshal(hdr)
	headerEnd := len(spoolMagic) + recordHead + len(hdrJSON)
	must(w.writeJSON(recHeader, hdr))
	must(w.writeJSON(recTrack, spoolTrack{ID: 1, Codec: "opus", Kind: "audio"}))
	for i := range 5 {
		must(w.writeFrame(1, int64(i*20), true, []byte{byte(i), 1, 2, 3}))
	}
	must(w.writeJSON(recEnd, spoolEnd{}))
	must(w.close())
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := readSpool(path)
	if err != nil || len(whole.frames) != 5 || whole.end == nil || whole.torn {
		t.Fatalf("whole spool: %+v %v", whole, err)
	}
	prev := -1
	for n := len(full) - 1; n > 0; n-- {
		p := filepath.Join(dir, "cut.spool")
		must(os.WriteFile(p, full[:n], 0o600))
		sc, err := readSpool(p)
		if err != nil {
			if n >= headerEnd {
				t.Fatalf("cut at %d: %v", n, err)
			}
			continue // no whole header record
		}
		if !sc.torn && int64(n) != sc.validSize {
			t.Fatalf("cut at %d: not seen as torn", n)
		}
		if sc.end != nil {
			t.Fatalf("cut at %d: end record survived", n)
		}
		if prev >= 0 && len(sc.frames) > prev {
			t.Fatalf("cut at %d: more frames (%d) than a longer cut (%d)", n, len(sc.frames), prev)
		}
		prev = len(sc.frames)
		for i, fr := range sc.frames {
			if fr.tsMS != int64(i*20) || full[fr.off] != byte(i) {
				t.Fatalf("cut at %d: frame %d wrong", n, i)
			}
		}
	}
}

// After a loss, video frames are dropped until the next keyframe, which
// also gives the size; padding between frames changes nothing.
func TestDepacketizeVP8Loss(t *testing.T) {
	key := []byte{0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00} // S=1; tag bit0=0; 320x240
	delta := []byte{0x10, 0x01, 0x02, 0x03}                                         // S=1; tag bit0=1
	d := newDepacketizer(codecVP8)
	type step struct {
		ts     int64
		pl     []byte
		lost   bool
		wantOK bool
	}
	steps := []step{
		{ts: 1, pl: delta},               // no keyframe yet: dropped
		{ts: 2, pl: key, wantOK: true},   // keyframe
		{ts: 2, pl: nil},                 // padding
		{ts: 3, pl: delta, wantOK: true}, // decodable
		{lost: true},                     // a packet is gone
		{ts: 5, pl: delta},               // undecodable: dropped
		{ts: 6, pl: key, wantOK: true},   // recovered
		{ts: 7, pl: delta, wantOK: true},
	}
	for i, s := range steps {
		if s.lost {
			d.lost()
			if !d.needKey {
				t.Fatalf("step %d: loss does not ask for a keyframe", i)
			}
			continue
		}
		f, ok := d.push(s.ts, true, s.pl)
		if ok != s.wantOK {
			t.Fatalf("step %d: got frame %v, want %v", i, ok, s.wantOK)
		}
		if ok && f.keyframe && (f.width != 320 || f.height != 240) {
			t.Errorf("step %d: keyframe %dx%d", i, f.width, f.height)
		}
	}
	if d.dropped != 2 {
		t.Errorf("%d frames dropped, want 2", d.dropped)
	}
}
