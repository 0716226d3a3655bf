package manifest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestKeyRotation(t *testing.T) {
	day := 24 * time.Hour
	oldKey, err := NewKey("2026-11", t0, t0.Add(40*day))
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := NewKey("2026-12", t0.Add(30*day), t0.Add(70*day))
	if err != nil {
		t.Fatal(err)
	}
	ks := &KeySet{Keys: []Key{newKey, oldKey}}
	for _, tt := range []struct {
		at   time.Time
		want string
	}{
		{t0, "2026-11"},
		{t0.Add(29 * day), "2026-11"},
		{t0.Add(30 * day), "2026-12"}, // overlap: the newest valid key signs
		{t0.Add(45 * day), "2026-12"},
	} {
		k, err := ks.SignerAt(tt.at)
		if err != nil || k.ID != tt.want {
			t.Errorf("SignerAt(%s) = %q, %v; want %q", tt.at, k.ID, err, tt.want)
		}
	}
	if _, err := ks.SignerAt(t0.Add(70 * day)); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("SignerAt after every key expired = %v, want ErrNoSigningKey", err)
	}
	if _, err := ks.SignerAt(t0.Add(-time.Second)); !errors.Is(err, ErrNoSigningKey) {
		t.Errorf("SignerAt before every key = %v, want ErrNoSigningKey", err)
	}

	st, webm := testRecording(t)
	oldEnv, err := SignAt(ks, st, t0.Add(10*day))
	if err != nil {
		t.Fatal(err)
	}
	newEnv, err := SignAt(ks, st, t0.Add(50*day))
	if err != nil {
		t.Fatal(err)
	}
	// Verification does not depend on the current time: a manifest signed
	// inside the old key's window stays valid after the key expires.
	pub := ks.Public()
	for name, env := range map[string][]byte{"old": oldEnv, "new": newEnv} {
		if _, err := VerifyObject(pub, env, st.Subject[0].Name, bytes.NewReader(webm)); err != nil {
			t.Errorf("%s-key manifest: %v", name, err)
		}
	}
	got, _ := Verify(pub, newEnv)
	if got == nil || got.Predicate.KeyID != "2026-12" {
		t.Errorf("manifest signed at day 50 names key %v, want 2026-12", got)
	}
	// Removing the old key from the set revokes it.
	revoked := &KeySet{Keys: []Key{newKey}}
	if _, err := Verify(revoked, oldEnv); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("manifest of a removed key = %v, want ErrUnknownKey", err)
	}
	if _, err := Verify(revoked, newEnv); err != nil {
		t.Errorf("new-key manifest after revoking the old key: %v", err)
	}
}

func TestGenerateDevKeySet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "manifest-keys.json")
	first, err := GenerateDevKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key set file mode %o, want 600", perm)
	}
	if len(first.Keys) != 1 {
		t.Fatalf("dev key set has %d keys, want 1", len(first.Keys))
	}
	k, err := first.Signer()
	if err != nil {
		t.Fatalf("fresh dev key set cannot sign now: %v", err)
	}
	second, err := GenerateDevKeySet(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := second.Signer()
	if k2.ID != k.ID || !bytes.Equal(k2.PublicKey, k.PublicKey) || !bytes.Equal(k2.PrivateKey, k.PrivateKey) {
		t.Errorf("second GenerateDevKeySet made key %s, want the existing %s reused", k2.ID, k.ID)
	}
	st, _ := testRecording(t)
	env, err := Sign(first, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(second.Public(), env); err != nil {
		t.Errorf("manifest signed with the first load does not verify with the second: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateDevKeySet(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable private key set loaded: %v", err)
	}
}

func TestGenerateDevKeySetConcurrentStarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Go(func() {
			ks, err := GenerateDevKeySet(path)
			errs[i] = err
			if err == nil {
				ids[i] = ks.Keys[0].ID + string(ks.Keys[0].PublicKey)
			}
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("start %d: err %v, key differs: %v", i, errs[i], ids[i] != ids[0])
		}
	}
}

func TestKeySetFile(t *testing.T) {
	dir := t.TempDir()
	k1, _ := NewKey("a", t0, t0.Add(time.Hour))
	k2, _ := NewKey("b", t0, t0.Add(time.Hour))
	path := filepath.Join(dir, "ks.json")
	if err := (&KeySet{Keys: []Key{k1, k2}}).WriteFile(path); err != nil {
		t.Fatal(err)
	}
	ks, err := LoadKeySet(path)
	if err != nil || len(ks.Keys) != 2 {
		t.Fatalf("LoadKeySet = %v, %v", ks, err)
	}
	pubPath := filepath.Join(dir, "pub.json")
	if err := ks.Public().WriteFile(pubPath); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(pubPath); strings.Contains(string(b), "private_key") {
		t.Error("public key set file contains private keys")
	}

	bad := []struct {
		name string
		ks   KeySet
	}{
		{"duplicate id", KeySet{Keys: []Key{k1, k1}}},
		{"empty window", KeySet{Keys: []Key{{ID: "x", NotBefore: t0, NotAfter: t0, PublicKey: k1.PublicKey}}}},
		{"bad id", KeySet{Keys: []Key{{ID: "a/b", NotBefore: t0, NotAfter: t0.Add(time.Hour), PublicKey: k1.PublicKey}}}},
		{"short public key", KeySet{Keys: []Key{{ID: "x", NotBefore: t0, NotAfter: t0.Add(time.Hour), PublicKey: k1.PublicKey[:31]}}}},
		{"private key of another public key", KeySet{Keys: []Key{{ID: "x", NotBefore: t0, NotAfter: t0.Add(time.Hour), PublicKey: k1.PublicKey, PrivateKey: k2.PrivateKey}}}},
	}
	for _, tt := range bad {
		if err := tt.ks.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", tt.name)
		}
		if err := tt.ks.WriteFile(filepath.Join(dir, "bad.json")); err == nil {
			t.Errorf("%s: WriteFile accepted it", tt.name)
		}
	}
}
