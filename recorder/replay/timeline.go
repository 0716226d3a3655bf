package replay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/medcall/medcall/sfu/ident"
)

// labelPattern is the syntax of a participant label in a stream URL.
var labelPattern = regexp.MustCompile(`^(patient|clinician|guest|participant)(-[0-9]{1,2})?$`)

// Timeline is GET /v1/recordings/{rid}/timeline: what a player needs to
// play the whole consultation in step. Participants are named by label
// (role, numbered for repeats), never by id; offsets are milliseconds from
// the recording's start, which is time 0 of every stream.
type Timeline struct {
	ID           string        `json:"id"`
	Consultation string        `json:"consultation"`
	Started      time.Time     `json:"started"`
	Ended        time.Time     `json:"ended"`
	DurationMS   int64         `json:"duration_ms"`
	Original     string        `json:"original"` // URL of the signed WebM
	Participants []TimelineWho `json:"participants"`
	Events       []TimelineAt  `json:"events"`
	// Segments are the recordings played one after another: one, or more
	// when the consultation moved between cluster nodes.
	Segments []TimelineSegment `json:"segments"`
}

// TimelineWho is one participant of a Timeline.
type TimelineWho struct {
	Label    string     `json:"label"` // patient, clinician, guest, guest-2, ...
	Role     ident.Role `json:"role"`
	You      bool       `json:"you,omitempty"` // the viewer
	JoinedMS int64      `json:"joined_ms"`
	LeftMS   *int64     `json:"left_ms,omitempty"` // absent: there at the end
	Audio    bool       `json:"audio"`
	Video    bool       `json:"video"`
	Stream   string     `json:"stream,omitempty"`   // URL of their audio+video WebM
	VideoOn  []Span     `json:"video_on,omitempty"` // when their camera was on
}

// Span is [FromMS, ToMS) on the recording's timeline.
type Span struct {
	FromMS int64 `json:"from_ms"`
	ToMS   int64 `json:"to_ms"`
}

// TimelineAt is one event of a Timeline.
type TimelineAt struct {
	Type     string `json:"type"` // joined, left, upgrade, downgrade, audio_on, audio_off, ice_restart
	Label    string `json:"label"`
	OffsetMS int64  `json:"offset_ms"`
}

// labels names each participant of a consultation's segments as the
// recorder names their tracks: in the order of their first track (segment by
// segment), role then role-2, role-3 for repeats; participants without
// tracks follow in manifest order. For one segment these are its track
// names' labels.
func labels(segs ...*Recording) map[string]string {
	role := map[string]ident.Role{}
	var order []string
	for _, r := range segs {
		for _, p := range r.Participants {
			if role[p.ID] == "" {
				role[p.ID] = p.Role
			}
		}
		tracks := slices.Clone(r.Tracks)
		slices.SortFunc(tracks, func(a, b Track) int { return a.Number - b.Number })
		for _, t := range tracks {
			if !slices.Contains(order, t.Participant) {
				order = append(order, t.Participant)
			}
		}
	}
	for _, r := range segs {
		for _, p := range r.Participants {
			if !slices.Contains(order, p.ID) {
				order = append(order, p.ID)
			}
		}
	}
	out, perRole := map[string]string{}, map[ident.Role]int{}
	for _, id := range order {
		rl := role[id]
		if rl == "" {
			rl = "participant"
		}
		perRole[rl]++
		out[id] = string(rl)
		if n := perRole[rl]; n > 1 {
			out[id] = fmt.Sprintf("%s-%d", rl, n)
		}
	}
	return out
}

// TimelineSegment is one recording of a consultation recorded in parts
// (a cluster node lost or drained mid-call; docs/cluster.md).
type TimelineSegment struct {
	ID          string    `json:"id"`
	OffsetMS    int64     `json:"offset_ms"`     // where it starts on the timeline
	DurationMS  int64     `json:"duration_ms"`   // how long it plays
	GapBeforeMS int64     `json:"gap_before_ms"` // wall-clock time not recorded before it
	Started     time.Time `json:"started"`
	Ended       time.Time `json:"ended"`
	Recovered   bool      `json:"recovered,omitempty"`
	Original    string    `json:"original"` // URL of its signed WebM
}

// timeline builds c's Timeline as viewer v sees it: the segments back to
// back, each participant's times, events and camera spans moved onto the
// one clock.
func timeline(c Consultation, v Viewer) Timeline {
	segs := make([]*Recording, len(c.Segments))
	for i, s := range c.Segments {
		segs[i] = s.Recording
	}
	lab := labels(segs...)
	head, last := c.Head(), c.Segments[len(c.Segments)-1]
	base := Path + "/" + head.ID
	dur := c.DurationMS()
	tl := Timeline{ID: head.ID, Consultation: head.Consultation, Started: head.Started.UTC(), Ended: last.Ended.UTC(),
		DurationMS: dur, Original: base, Participants: []TimelineWho{}, Events: []TimelineAt{}}
	who := map[string]*TimelineWho{}
	var order []string
	for k, s := range c.Segments {
		sdur := durationMS(s.Recording)
		tl.Segments = append(tl.Segments, TimelineSegment{ID: s.ID, OffsetMS: s.OffsetMS, DurationMS: sdur, GapBeforeMS: s.GapMS,
			Started: s.Started.UTC(), Ended: s.Ended.UTC(), Recovered: s.Recovered, Original: Path + "/" + s.ID})
		for _, e := range s.Events {
			tl.Events = append(tl.Events, TimelineAt{Type: e.Type, Label: lab[e.Participant], OffsetMS: s.OffsetMS + e.OffsetMS})
		}
		for _, p := range s.Participants {
			w := who[p.ID]
			if w == nil {
				w = &TimelineWho{Label: lab[p.ID], Role: p.Role, You: p.ID == v.Sub && p.Role == v.Role, JoinedMS: s.at(p.Joined)}
				who[p.ID] = w
				order = append(order, p.ID)
			}
			w.LeftMS = nil // there in this segment: only its own leaving counts
			switch {
			case !p.Left.IsZero():
				left := s.at(p.Left)
				w.LeftMS = &left
			case k < len(c.Segments)-1:
				left := s.OffsetMS + sdur // the segment ended with them in it
				w.LeftMS = &left
			}
			var video *Track
			for i, t := range s.Tracks {
				w.Audio = w.Audio || (t.Participant == p.ID && t.Kind == "audio")
				if t.Participant == p.ID && t.Kind == "video" {
					w.Video, video = true, &s.Tracks[i]
				}
			}
			if video != nil {
				for _, sp := range videoSpans(s.Events, p.ID, *video, sdur) {
					w.VideoOn = append(w.VideoOn, Span{FromMS: s.OffsetMS + sp.FromMS, ToMS: s.OffsetMS + sp.ToMS})
				}
			}
		}
	}
	for _, id := range order {
		w := who[id]
		if w.Audio || w.Video {
			w.Stream = base + "/" + w.Label + ".webm"
		}
		tl.Participants = append(tl.Participants, *w)
	}
	return tl
}

// videoSpans are the times participant id's camera was on: from each
// upgrade to the next downgrade or leave (or the end). Without events, the
// span of their video track's frames.
func videoSpans(events []Event, id string, video Track, dur int64) []Span {
	var spans []Span
	on := int64(-1)
	for _, e := range events {
		if e.Participant != id {
			continue
		}
		switch {
		case e.Type == "upgrade" && on < 0:
			on = e.OffsetMS
		case (e.Type == "downgrade" || e.Type == "left") && on >= 0:
			spans = append(spans, Span{FromMS: on, ToMS: e.OffsetMS})
			on = -1
		}
	}
	if on >= 0 {
		spans = append(spans, Span{FromMS: on, ToMS: dur})
	}
	if spans == nil && video.LastMS >= video.FirstMS {
		spans = []Span{{FromMS: video.FirstMS, ToMS: video.LastMS}}
	}
	return spans
}

// serveTimeline answers GET /v1/recordings/{rid}/timeline from the
// verified manifests of the consultation's segments; it reads no media.
func (h *Handler) serveTimeline(w http.ResponseWriter, ref refusal) {
	c, ok := h.findConsultation(w, ref)
	if !ok {
		return
	}
	b, err := json.Marshal(timeline(c, ref.Viewer))
	if err != nil {
		ref.reason, ref.outcome, ref.status, ref.body = "encode", OutcomeError, http.StatusInternalServerError, unavailableBody
		h.refuse(w, ref)
		return
	}
	if !h.auditedViews(w, ref, c) {
		return
	}
	writeJSONBody(w, http.StatusOK, string(b)+"\n")
}
