package recorder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/medcall/medcall/recorder/store"
)

// quarantineDir (under the outbox) holds entries that can never be stored,
// each with a .reason.txt beside it, for an operator. Nothing in it is
// retried or deleted; moving an entry back into the outbox retries it.
const quarantineDir = "quarantine"

// maxRejects is how many times in a row the store must refuse an entry
// before it is quarantined: a refusal may be a passing misconfiguration.
const maxRejects = 3

// errBrokenEntry marks an outbox entry that cannot be uploaded whatever the
// store does: its WebM is gone (a crash between the two deletions), its
// description is unreadable or names no valid object key.
var errBrokenEntry = errors.New("outbox entry cannot be uploaded")

// attemptFailed counts one failed upload attempt.
func (u *Uploader) attemptFailed() {
	u.failed.Add(1)
	if u.obs.Failed != nil {
		u.obs.Failed()
	}
}

// hopeless reports whether entry id, whose upload just failed with err,
// can never succeed, and why. Called from Run's goroutine only.
func (u *Uploader) hopeless(id string, err error) (string, bool) {
	if errors.Is(err, errBrokenEntry) {
		return err.Error(), true
	}
	if !store.Rejected(err) {
		delete(u.rejects, id)
		return "", false
	}
	u.rejects[id]++
	if n := u.rejects[id]; n < maxRejects {
		return "", false
	}
	delete(u.rejects, id)
	return fmt.Sprintf("the store refused it %d times in a row: %v", maxRejects, err), true
}

// quarantine moves entry id out of the outbox, with its reason, and raises
// the alarm. The description moves last: until it has, the entry is still
// in the outbox (and a crash meanwhile only quarantines it again).
func (u *Uploader) quarantine(id, reason string) {
	dir := filepath.Join(u.outbox, quarantineDir)
	note := fmt.Sprintf("recording %s quarantined at %s\nreason: %s\nto retry: move %s.json and %s.webm back into %s\n",
		id, time.Now().UTC().Format(time.RFC3339), reason, id, id, u.outbox)
	err := writeFileSync(filepath.Join(dir, id+".reason.txt"), []byte(note))
	for _, ext := range []string{".webm", ".json"} {
		if err != nil {
			break
		}
		err = os.Rename(filepath.Join(u.outbox, id+ext), filepath.Join(dir, id+ext))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		u.log.Error("outbox entry cannot be stored and could not be quarantined; it stays in the outbox",
			"recording", id, "reason", reason, "err", err)
		return
	}
	u.pending.Add(-1)
	if u.obs.Quarantined != nil {
		u.obs.Quarantined()
	}
	u.log.Error("outbox entry can never be stored: quarantined for an operator",
		"recording", id, "reason", reason, "dir", dir)
}

// Quarantined is the number of outbox entries waiting in quarantine.
func (u *Uploader) Quarantined() int {
	m, _ := filepath.Glob(filepath.Join(u.outbox, quarantineDir, "*.reason.txt"))
	return len(m)
}
