package replay

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu/ident"
)

// listItem is one consultation in GET /v1/recordings: its first
// recording, and all its segments when it was recorded in parts. It never
// names the patient: a clinician's list must not teach them other people's
// ids.
type listItem struct {
	listSeg
	Consultation string    `json:"consultation"`
	Segments     []listSeg `json:"segments"`
}

// listSeg is one segment (one signed recording) of a listItem, and the
// fields a listItem shares with it: there they describe the consultation
// (its first segment's id and start, its last segment's end, durations and
// sizes added up, recovered if any segment was).
type listSeg struct {
	ID         string    `json:"id"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended"`
	DurationMS int64     `json:"duration_ms"`
	Size       int64     `json:"size"`
	Recovered  bool      `json:"recovered,omitempty"`
	URL        string    `json:"url"`
}

func (h *Handler) serveList(w http.ResponseWriter, r *http.Request, v Viewer) {
	if v.Role == ident.Patient {
		// A patient's own prefix is cheap to list and holds whatever was
		// stored since the last refresh; it says nothing about others.
		if prefix, err := store.PatientPrefix(v.Sub); err == nil {
			if err := h.Index.Refresh(r.Context(), prefix); err != nil {
				h.log().Warn("replay: refresh of the patient's recordings failed; listing the index as it is", "err", err)
			}
		}
	}
	cs := h.Index.Consultations(v)
	out := struct {
		Recordings []listItem `json:"recordings"`
	}{Recordings: make([]listItem, 0, len(cs))}
	for _, c := range cs {
		head, last := c.Head(), c.Segments[len(c.Segments)-1]
		it := listItem{Consultation: head.Consultation, listSeg: listSeg{ID: head.ID, Started: head.Started.UTC(),
			Ended: last.Ended.UTC(), DurationMS: c.DurationMS(), URL: Path + "/" + head.ID}}
		for _, s := range c.Segments {
			it.Size += s.Size
			it.Recovered = it.Recovered || s.Recovered
			it.Segments = append(it.Segments, listSeg{ID: s.ID, Started: s.Started.UTC(), Ended: s.Ended.UTC(),
				DurationMS: durationMS(s.Recording), Size: s.Size, Recovered: s.Recovered, URL: Path + "/" + s.ID})
		}
		out.Recordings = append(out.Recordings, it)
	}
	b, err := json.Marshal(out)
	if err != nil {
		h.refuse(w, refusal{Viewer: v, reason: "encode", outcome: OutcomeError, status: http.StatusInternalServerError, body: unavailableBody})
		return
	}
	if !h.audited(w, AuditEvent{Sub: v.Sub, Role: string(v.Role), Action: AuditList, Outcome: OutcomeOK}) {
		return
	}
	writeJSONBody(w, http.StatusOK, string(b)+"\n")
}
