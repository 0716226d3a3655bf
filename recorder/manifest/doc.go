// Package manifest signs and verifies recording manifests: a DSSE envelope
// (payloadType "application/vnd.in-toto+json") around an in-toto Statement
// v1 whose single subject is the recording's WebM object key with its
// SHA-256, and whose predicate (type "urn:medcall:recording:v1") describes
// the recording.
//
// # Predicate urn:medcall:recording:v1
//
// All times are RFC 3339 UTC; offsets are milliseconds from "started".
//
//	consultation      consultation id (cid) from the server-side binding
//	patient           patient id (pid) the consultation belongs to
//	recording_id      recording id (rid), a UUID
//	started, ended    wall-clock start and end of the recording
//	size_bytes        length of the WebM object
//	participants      [{id, role (patient|clinician|guest), joined, left}]
//	tracks            [{number (WebM track number, from 1), participant,
//	                    kind (audio|video), codec (opus|vp8|vp9),
//	                    first_ms, last_ms (offsets of the first and last
//	                    frame), frames}]
//	events            [{type (joined|left|upgrade|downgrade|audio_on|
//	                    audio_off|ice_restart), participant, offset_ms,
//	                    path (upgrade only: renegotiate|prenegotiated)}];
//	                    ice_restart: the participant's network changed and
//	                    its media restarted on a new path, so its tracks
//	                    have a gap around that offset (the file goes on)
//	recorder_version  version of the medcall binary that wrote the file
//	key_id            id of the signing key; inside the signed payload
//	                  because DSSE's own keyid field is not signed
//	signed_at         when the manifest was signed; must fall inside the
//	                  key's validity window for the manifest to verify
//	recovered         true when the file was finalized from an orphaned
//	                  spool after a crash rather than by a clean end
//	chunks            {size, sha256: [...]}: SHA-256 (lowercase hex) of each
//	                  consecutive size-byte piece of the WebM object (the
//	                  last piece shorter), size 1 MiB by default, between
//	                  1 KiB and 64 MiB; one digest per piece, in order.
//	                  Replay checks every byte it serves, Range requests
//	                  included, against these; absent in manifests signed
//	                  before they existed, which replay checks whole.
//	partial           true when recording stopped early because its spool
//	                  could not be written (e.g. the disk was full): the
//	                  file holds the media spooled until then, and "ended"
//	                  is when the recording stopped; absent when false
//	previous          (optional) recording_id of the consultation's
//	                  previous segment, e.g. recorded on a cluster node that
//	                  was lost; the segments of a consultation chain in order
//
// The subject name must equal the key that store.RecordingKeys builds from
// patient, consultation and recording_id, so a manifest cannot vouch for an
// object under another patient's prefix. A failed recording is never
// signed: there is no "failed" state a manifest could claim.
//
// # Keys
//
// A KeySet holds Ed25519 keys, each with an id and a validity window
// [not_before, not_after). Signing uses the newest key valid now; a
// manifest verifies with the key its key_id names as long as that key is
// still in the set and signed_at lies in its window, so keys rotate by
// adding a new key before the old one's not_after, and an old key is
// revoked by removing it from the set.
package manifest
