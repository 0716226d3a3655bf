package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const testRID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func testKeySet(t testing.TB) *KeySet {
	t.Helper()
	k, err := NewKey("k1", t0, t0.Add(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &KeySet{Keys: []Key{k}}
}

func testRecording(t testing.TB) (*Statement, []byte) {
	t.Helper()
	webm := bytes.Repeat([]byte("webm-bytes"), 100)
	sum := sha256.Sum256(webm)
	start := t0.Add(time.Hour)
	p := Predicate{
		Consultation: "c-42",
		Patient:      "p-7",
		RecordingID:  testRID,
		Started:      start,
		Ended:        start.Add(10 * time.Minute),
		SizeBytes:    int64(len(webm)),
		Participants: []Participant{
			{ID: "p-7", Role: "patient", Joined: start, Left: start.Add(10 * time.Minute)},
			{ID: "dr-1", Role: "clinician", Joined: start.Add(time.Second)},
		},
		Tracks: []Track{
			{Number: 1, Participant: "p-7", Kind: "audio", Codec: "opus", FirstMS: 0, LastMS: 600000, Frames: 30000},
			{Number: 2, Participant: "p-7", Kind: "video", Codec: "vp8", FirstMS: 120000, LastMS: 600000, Frames: 14400},
		},
		Events:          []Event{{Type: "upgrade", Participant: "p-7", OffsetMS: 120000, Path: "prenegotiated"}},
		RecorderVersion: "test",
	}
	st, err := NewStatement(p, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Fatal(err)
	}
	return st, webm
}

func TestSignVerifyRoundTrip(t *testing.T) {
	ks := testKeySet(t)
	st, webm := testRecording(t)
	signedAt := t0.Add(2 * time.Hour)
	env, err := SignAt(ks, st, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	if st.Predicate.KeyID != "" {
		t.Error("SignAt modified the caller's statement")
	}
	got, err := VerifyObject(ks.Public(), env, st.Subject[0].Name, bytes.NewReader(webm))
	if err != nil {
		t.Fatalf("VerifyObject of a fresh manifest: %v", err)
	}
	want := *st
	want.Predicate.KeyID, want.Predicate.SignedAt = "k1", signedAt
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(&want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("verified statement differs from the signed one:\n got %s\nwant %s", gj, wj)
	}
	var e struct{ PayloadType string }
	if err := json.Unmarshal(env, &e); err != nil || e.PayloadType != PayloadType {
		t.Errorf("envelope payloadType = %q (%v)", e.PayloadType, err)
	}
}

// resign signs an altered statement with ks's key k1, as an attacker
// holding that key (or a bug in our own signer) could.
func resign(t *testing.T, ks *KeySet, payloadType string, st *Statement) []byte {
	t.Helper()
	payload, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ks.Key("k1")
	env, err := signPayload(k, payloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// editEnvelope decodes env, lets edit change it, and re-encodes it without
// re-signing.
func editEnvelope(t *testing.T, env []byte, edit func(m map[string]any, payload map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(m["payload"].(string))
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	edit(m, payload)
	raw, _ = json.Marshal(payload)
	m["payload"] = base64.StdEncoding.EncodeToString(raw)
	out, _ := json.Marshal(m)
	return out
}

func TestVerifyRefusesTampering(t *testing.T) {
	ks := testKeySet(t)
	st, _ := testRecording(t)
	signedAt := t0.Add(2 * time.Hour)
	good, err := SignAt(ks, st, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	signed := *st
	signed.Predicate.KeyID, signed.Predicate.SignedAt = "k1", signedAt
	with := func(f func(s *Statement)) *Statement {
		s := signed
		s.Subject = []Subject{{Name: st.Subject[0].Name, Digest: map[string]string{"sha256": st.SHA256()}}}
		f(&s)
		return &s
	}
	other, err := NewKey("k2", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		env  []byte
		ks   *KeySet
		want error
	}{
		{"patient changed", editEnvelope(t, good, func(_, p map[string]any) {
			p["predicate"].(map[string]any)["patient"] = "p-8"
		}), ks, ErrBadSignature},
		{"subject digest changed", editEnvelope(t, good, func(_, p map[string]any) {
			p["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": strings.Repeat("0", 64)}
		}), ks, ErrBadSignature},
		{"signature replaced", editEnvelope(t, good, func(m, _ map[string]any) {
			m["signatures"].([]any)[0].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(make([]byte, 64))
		}), ks, ErrBadSignature},
		{"no signatures", editEnvelope(t, good, func(m, _ map[string]any) { m["signatures"] = []any{} }), ks, ErrBadSignature},
		{"signed by another key", func() []byte {
			env, _ := signPayload(other, PayloadType, mustJSON(t, &signed))
			return env
		}(), ks, ErrBadSignature},
		{"key_id moved to another key", editEnvelope(t, good, func(_, p map[string]any) {
			p["predicate"].(map[string]any)["key_id"] = "k2"
		}), &KeySet{Keys: append(ks.Public().Keys, other)}, ErrBadSignature},
		{"payloadType changed", editEnvelope(t, good, func(m, _ map[string]any) { m["payloadType"] = "application/json" }), ks, ErrPayloadType},
		{"unknown key", good, &KeySet{Keys: []Key{other}}, ErrUnknownKey},
		{"empty key set", good, &KeySet{}, ErrUnknownKey},
		{"signed under another payloadType", resign(t, ks, "application/json", &signed), ks, ErrPayloadType},
		{"wrong predicateType", resign(t, ks, PayloadType, with(func(s *Statement) { s.PredicateType = "https://slsa.dev/provenance/v1" })), ks, ErrPredicateType},
		{"wrong statement type", resign(t, ks, PayloadType, with(func(s *Statement) { s.Type = "https://in-toto.io/Statement/v0.1" })), ks, ErrStatementType},
		{"signed after key expired", resign(t, ks, PayloadType, with(func(s *Statement) { s.Predicate.SignedAt = t0.Add(31 * 24 * time.Hour) })), ks, ErrKeyExpired},
		{"signed exactly at not_after", resign(t, ks, PayloadType, with(func(s *Statement) { s.Predicate.SignedAt = t0.Add(30 * 24 * time.Hour) })), ks, ErrKeyExpired},
		{"signed before key valid", resign(t, ks, PayloadType, with(func(s *Statement) { s.Predicate.SignedAt = t0.Add(-time.Second) })), ks, ErrKeyNotYetValid},
		{"subject under another patient", resign(t, ks, PayloadType, with(func(s *Statement) {
			s.Subject[0].Name = strings.Replace(s.Subject[0].Name, "patients/p-7/", "patients/p-8/", 1)
		})), ks, ErrSubjectMismatch},
		{"predicate for another patient", resign(t, ks, PayloadType, with(func(s *Statement) { s.Predicate.Patient = "p-8" })), ks, ErrSubjectMismatch},
		{"two subjects", resign(t, ks, PayloadType, with(func(s *Statement) { s.Subject = append(s.Subject, s.Subject[0]) })), ks, ErrMalformed},
		{"uppercase digest", resign(t, ks, PayloadType, with(func(s *Statement) {
			s.Subject[0].Digest = map[string]string{"sha256": strings.ToUpper(st.SHA256())}
		})), ks, ErrMalformed},
		{"not JSON", []byte("{"), ks, ErrMalformed},
		{"payload without key_id", editEnvelope(t, good, func(_, p map[string]any) {
			delete(p["predicate"].(map[string]any), "key_id")
		}), ks, ErrMalformed},
	}
	sentinels := []error{ErrMalformed, ErrPayloadType, ErrStatementType, ErrPredicateType, ErrUnknownKey,
		ErrBadSignature, ErrKeyExpired, ErrKeyNotYetValid, ErrSubjectMismatch, ErrDigestMismatch}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.ks, tt.env)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, %v; want %v", got, err, tt.want)
			}
			if got != nil {
				t.Error("Verify returned a statement together with an error")
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %q also matches %v; errors must be distinct", err, s)
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyObject(t *testing.T) {
	ks := testKeySet(t)
	st, webm := testRecording(t)
	env, err := SignAt(ks, st, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := st.Subject[0].Name
	flipped := bytes.Clone(webm)
	flipped[10] ^= 1
	tests := []struct {
		name string
		key  string
		data []byte
		want error
	}{
		{"matches", key, webm, nil},
		{"another object's key", strings.Replace(key, "p-7", "p-8", 1), webm, ErrSubjectMismatch},
		{"manifest key as object", strings.Replace(key, ".webm", ".manifest.json", 1), webm, ErrSubjectMismatch},
		{"one bit flipped", key, flipped, ErrDigestMismatch},
		{"truncated", key, webm[:len(webm)-1], ErrDigestMismatch},
		{"extended", key, append(bytes.Clone(webm), 0), ErrDigestMismatch},
		{"empty", key, nil, ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyObject(ks, env, tt.key, bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("VerifyObject = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignRefusesBadRecordings(t *testing.T) {
	ks := testKeySet(t)
	at := t0.Add(2 * time.Hour)
	tests := []struct {
		name string
		edit func(s *Statement)
		want error
	}{
		{"ended before started", func(s *Statement) { s.Predicate.Ended = s.Predicate.Started.Add(-time.Second) }, ErrMalformed},
		{"no start time", func(s *Statement) { s.Predicate.Started = time.Time{} }, ErrMalformed},
		{"track of unlisted participant", func(s *Statement) { s.Predicate.Tracks[0].Participant = "someone" }, ErrMalformed},
		{"event of unlisted participant", func(s *Statement) { s.Predicate.Events[0].Participant = "someone" }, ErrMalformed},
		{"unknown role", func(s *Statement) { s.Predicate.Participants[1].Role = "admin" }, ErrMalformed},
		{"participant id with e-mail", func(s *Statement) { s.Predicate.Participants[1].ID = "a@b.example" }, ErrMalformed},
		{"bad track kind", func(s *Statement) { s.Predicate.Tracks[1].Kind = "screen" }, ErrMalformed},
		{"subject of another patient", func(s *Statement) { s.Predicate.Patient = "p-8" }, ErrSubjectMismatch},
		{"bad digest", func(s *Statement) { s.Subject[0].Digest = map[string]string{"sha256": "abc"} }, ErrMalformed},
		{"patient id traversal", func(s *Statement) { s.Predicate.Patient = "../p-8" }, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := testRecording(t)
			tt.edit(st)
			if env, err := SignAt(ks, st, at); !errors.Is(err, tt.want) {
				t.Errorf("SignAt = %s, %v; want %v", env, err, tt.want)
			}
		})
	}
	st, _ := testRecording(t)
	if _, err := SignAt(ks.Public(), st, at); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("SignAt with a public-only key set = %v, want ErrNoSigningKey", err)
	}
	if _, err := NewStatement(Predicate{Patient: "p/1", Consultation: "c", RecordingID: testRID}, ""); err == nil {
		t.Error("NewStatement accepted patient id p/1")
	}
}

func BenchmarkSign(b *testing.B) {
	ks := testKeySet(b)
	st, _ := testRecording(b)
	at := t0.Add(time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SignAt(ks, st, at); err != nil {
			b.Fatal(err)
		}
	}
}
