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

// labels names each participant of r as the recorder names their tracks:
// in the order of their first track, role then role-2, role-3 for repeats;
// participants without tracks follow in manifest order.
func labels(r *Recording) map[string]string {
	role := map[string]ident.Role{}
	var order []string
	for _, p := range r.Participants {
		role[p.ID] = p.Role
	}
	tracks := slices.Clone(r.Tracks)
	slices.SortFunc(tracks, func(a, b Track) int { return a.Number - b.Number })
	for _, t := range tracks {
		if !slices.Contains(order, t.Participant) {
			order = append(order, t.Participant)
		}
	}
	for _, p := range r.Participants {
		if !slices.Contains(order, p.ID) {
			order = append(order, p.ID)
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

// timeline builds r's Timeline as viewer v sees it.
func timeline(r *Recording, v Viewer) Timeline {
	lab := labels(r)
	base := Path + "/" + r.ID
	dur := r.Ended.Sub(r.Started).Milliseconds()
	tl := Timeline{ID: r.ID, Consultation: r.Consultation, Started: r.Started.UTC(), Ended: r.Ended.UTC(),
		DurationMS: dur, Original: base, Participants: []TimelineWho{}, Events: []TimelineAt{}}
	for _, e := range r.Events {
		tl.Events = append(tl.Events, TimelineAt{Type: e.Type, Label: lab[e.Participant], OffsetMS: e.OffsetMS})
	}
	for _, p := range r.Participants {
		w := TimelineWho{Label: lab[p.ID], Role: p.Role, You: p.ID == v.Sub && p.Role == v.Role,
			JoinedMS: max(p.Joined.Sub(r.Started).Milliseconds(), 0)}
		if !p.Left.IsZero() {
			left := min(max(p.Left.Sub(r.Started).Milliseconds(), 0), dur)
			w.LeftMS = &left
		}
		var video *Track
		for i, t := range r.Tracks {
			w.Audio = w.Audio || (t.Participant == p.ID && t.Kind == "audio")
			if t.Participant == p.ID && t.Kind == "video" {
				w.Video, video = true, &r.Tracks[i]
			}
		}
		if w.Audio || w.Video {
			w.Stream = base + "/" + w.Label + ".webm"
		}
		if video != nil {
			w.VideoOn = videoSpans(r.Events, p.ID, *video, dur)
		}
		tl.Participants = append(tl.Participants, w)
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
// verified manifest; it reads no media.
func (h *Handler) serveTimeline(w http.ResponseWriter, ref refusal) {
	rec, ok := h.find(w, ref)
	if !ok {
		return
	}
	b, err := json.Marshal(timeline(rec, ref.Viewer))
	if err != nil {
		ref.reason, ref.outcome, ref.status, ref.body = "encode", OutcomeError, http.StatusInternalServerError, unavailableBody
		h.refuse(w, ref)
		return
	}
	if !h.audited(w, AuditEvent{Sub: ref.Sub, Role: string(ref.Role), Action: AuditView, Recording: rec.ID, Part: ref.part, Outcome: OutcomeOK}) {
		return
	}
	writeJSONBody(w, http.StatusOK, string(b)+"\n")
}
