package recorder

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/medcall/medcall/recorder/store"
)

// StoredObjects says where a stored recording is and what was signed: what
// a booking backend needs to find and check it.
type StoredObjects struct {
	WebMKey, ManifestKey string
	// WebMSHA256 is the recording's digest, the manifest's subject;
	// ManifestSHA256 is the digest of the manifest object itself.
	WebMSHA256, ManifestSHA256 string
	Size                       int64
}

func storedObjects(webmKey, manKey string, webm store.Info, manifest []byte) StoredObjects {
	sum := sha256.Sum256(manifest)
	return StoredObjects{WebMKey: webmKey, ManifestKey: manKey, WebMSHA256: webm.SHA256, ManifestSHA256: hex.EncodeToString(sum[:]), Size: webm.Size}
}
