package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// DevKeyValidity is how long a key made by GenerateDevKeySet is valid.
const DevKeyValidity = 365 * 24 * time.Hour

// Key is one Ed25519 signing key with its id and validity window
// [NotBefore, NotAfter). A verification-only key has no PrivateKey.
type Key struct {
	// ID names the key in manifests (predicate key_id).
	ID string `json:"id"`
	// NotBefore is the first instant the key may sign.
	NotBefore time.Time `json:"not_before"`
	// NotAfter is the first instant the key may no longer sign.
	NotAfter time.Time `json:"not_after"`
	// PublicKey verifies the key's signatures.
	PublicKey ed25519.PublicKey `json:"public_key"`
	// PrivateKey signs; empty in a verification-only key set.
	PrivateKey ed25519.PrivateKey `json:"private_key,omitempty"`
}

// validAt reports whether t lies in the key's validity window.
func (k Key) validAt(t time.Time) bool {
	return !t.Before(k.NotBefore) && t.Before(k.NotAfter)
}

// KeySet is a set of signing keys, stored as JSON {"keys": [Key...]}.
type KeySet struct {
	// Keys are the keys, in any order; ids are unique.
	Keys []Key `json:"keys"`
}

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// NewKey generates an Ed25519 key valid over [notBefore, notAfter).
func NewKey(id string, notBefore, notAfter time.Time) (Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("manifest: generate key %s: %w", id, err)
	}
	k := Key{ID: id, NotBefore: notBefore.UTC(), NotAfter: notAfter.UTC(), PublicKey: pub, PrivateKey: priv}
	return k, k.check()
}

func (k Key) check() error {
	if !keyIDPattern.MatchString(k.ID) {
		return fmt.Errorf("manifest: key id %q must match %s", k.ID, keyIDPattern)
	}
	if !k.NotBefore.Before(k.NotAfter) {
		return fmt.Errorf("manifest: key %s: not_before %s is not before not_after %s", k.ID, k.NotBefore, k.NotAfter)
	}
	if len(k.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("manifest: key %s: public key has %d bytes, want %d", k.ID, len(k.PublicKey), ed25519.PublicKeySize)
	}
	if k.PrivateKey != nil {
		if len(k.PrivateKey) != ed25519.PrivateKeySize {
			return fmt.Errorf("manifest: key %s: private key has %d bytes, want %d", k.ID, len(k.PrivateKey), ed25519.PrivateKeySize)
		}
		if !bytes.Equal(k.PrivateKey.Public().(ed25519.PublicKey), k.PublicKey) {
			return fmt.Errorf("manifest: key %s: private key does not match public key", k.ID)
		}
	}
	return nil
}

// Validate checks every key and that ids are unique.
func (ks *KeySet) Validate() error {
	seen := make(map[string]bool, len(ks.Keys))
	for _, k := range ks.Keys {
		if err := k.check(); err != nil {
			return err
		}
		if seen[k.ID] {
			return fmt.Errorf("manifest: key id %s appears twice in the key set", k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

// Key returns the key named id.
func (ks *KeySet) Key(id string) (Key, bool) {
	for _, k := range ks.Keys {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// Signer returns the key to sign with now: among keys with a private key
// valid now, the one with the latest NotBefore.
func (ks *KeySet) Signer() (Key, error) { return ks.SignerAt(time.Now()) }

// SignerAt is Signer at time t.
func (ks *KeySet) SignerAt(t time.Time) (Key, error) {
	var best Key
	found := false
	for _, k := range ks.Keys {
		if k.PrivateKey == nil || !k.validAt(t) {
			continue
		}
		if !found || k.NotBefore.After(best.NotBefore) {
			best, found = k, true
		}
	}
	if !found {
		return Key{}, fmt.Errorf("%w at %s; add a key whose window covers now (medcall recordings stay unsigned and their spools are kept until then)", ErrNoSigningKey, t.UTC().Format(time.RFC3339))
	}
	return best, nil
}

// Public returns a copy of ks without private keys, for verifiers.
func (ks *KeySet) Public() *KeySet {
	out := &KeySet{Keys: make([]Key, len(ks.Keys))}
	for i, k := range ks.Keys {
		k.PrivateKey = nil
		out.Keys[i] = k
	}
	return out
}

// LoadKeySet reads a key set from path. A file holding private keys must
// not be readable by group or others.
func LoadKeySet(path string) (*KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: read key set: %w", err)
	}
	var ks KeySet
	if err := json.Unmarshal(b, &ks); err != nil {
		return nil, fmt.Errorf("manifest: key set %s is not valid JSON: %w", path, err)
	}
	if err := ks.Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	for _, k := range ks.Keys {
		if k.PrivateKey == nil {
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("manifest: stat key set: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("manifest: key set %s holds private keys but has mode %o; run chmod 600 %s", path, fi.Mode().Perm(), path)
		}
		break
	}
	return &ks, nil
}

// WriteFile writes ks to path atomically with mode 0600.
func (ks *KeySet) WriteFile(path string) error {
	if err := ks.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return fmt.Errorf("manifest: encode key set: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("manifest: create key set directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".keyset-*")
	if err != nil {
		return fmt.Errorf("manifest: write key set: %w", err)
	}
	defer os.Remove(f.Name()) // after a successful rename this is a no-op
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("manifest: write key set: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("manifest: sync key set: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("manifest: write key set: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("manifest: install key set: %w", err)
	}
	return nil
}

// GenerateDevKeySet returns the key set at path, creating it with one new
// key (valid from a minute ago for DevKeyValidity) when the file does not
// exist. For development and tests: production key sets are provisioned.
func GenerateDevKeySet(path string) (*KeySet, error) {
	ks, err := LoadKeySet(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ks, err
	}
	now := time.Now().UTC()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	k, err := NewKey("dev-"+now.Format("20060102")+"-"+hex.EncodeToString(rnd[:]), now.Add(-time.Minute), now.Add(DevKeyValidity))
	if err != nil {
		return nil, err
	}
	ks = &KeySet{Keys: []Key{k}}
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifest: encode key set: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("manifest: create key set directory: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".keyset-*") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("manifest: create dev key set: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("manifest: write dev key set %s: %w", path, err)
	}
	// Link, unlike rename, refuses to replace: when two processes start at
	// once, one installs its complete file and the other loads that one.
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return LoadKeySet(path)
	} else if err != nil {
		return nil, fmt.Errorf("manifest: install dev key set %s: %w", path, err)
	}
	return ks, nil
}
