// Package replay owns every decision about who may replay which recording:
// the access rule, the index of verified manifests, the integrity check of
// every byte served, the audit log and the HTTP API (GET /v1/recordings...).
// cmd only mounts it.
//
// Nothing here trusts the store: a recording is indexed only once its
// signed manifest verifies and names the very object it sits beside, and
// every read is checked chunk by chunk against digests inside that signed
// manifest as the bytes stream (see Verified).
package replay

import (
	"errors"
	"time"

	"github.com/medcall/medcall/sfu/ident"
)

// ErrNotVisible means the recording asked for does not exist or the viewer
// may not see it. The two cases are one error on purpose: nobody may tell
// someone else's recording from a missing one.
var ErrNotVisible = errors.New("replay: recording not found")

// Viewer is the person asking, from a verified replay token.
type Viewer struct {
	Sub  string
	Role ident.Role
}

// Recording is one recording whose manifest verified. Patient and Key name
// the patient: they are for the server and never sent to clinicians.
type Recording struct {
	ID           string
	Consultation string
	Patient      string
	Key          string // the WebM object's key
	Started      time.Time
	Ended        time.Time
	Size         int64 // signed length of the WebM object
	Recovered    bool
	Previous     string // the signed id of the segment this one continues; see chain.go
	Participants []Participant
	Tracks       []Track
	Events       []Event

	sha256 string        // signed digest of the whole object
	chunks *chunkDigests // signed chunk digests; nil for old manifests
}

// Participant is one person in a recording.
type Participant struct {
	ID     string
	Role   ident.Role
	Joined time.Time
	Left   time.Time
}

// Track is one WebM track of a recording.
type Track struct {
	Number      int
	Participant string
	Kind        string
	Codec       string
	FirstMS     int64
	LastMS      int64
}

// Event is a join, leave, upgrade or downgrade at an offset from Started.
type Event struct {
	Type        string
	Participant string
	OffsetMS    int64
}

// mayView is THE access rule (DESIGN §6); every list and every read goes
// through it, and it looks only at the verified manifest:
//   - a patient sees a recording whose signed patient is them; the index
//     has already checked that the object lies under that patient's own
//     prefix and that the manifest names that very object;
//   - a clinician sees a recording whose signed participants list them as
//     a clinician;
//   - a guest, an unknown role or anyone else sees nothing.
//
// It does the same work whatever the answer, so the time it takes says
// nothing about whether a recording exists.
func mayView(v Viewer, r *Recording) bool {
	switch v.Role {
	case ident.Patient:
		return r.Patient == v.Sub
	case ident.Clinician:
		return r.hasParticipant(v.Sub, ident.Clinician)
	}
	return false
}

func (r *Recording) hasParticipant(id string, role ident.Role) bool {
	found := false
	for _, p := range r.Participants {
		found = found || (p.ID == id && p.Role == role)
	}
	return found
}
