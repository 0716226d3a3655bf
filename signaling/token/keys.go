package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Key is one token key, pinned to one algorithm.
type Key struct {
	ID      string             `json:"kid"`
	Alg     string             `json:"alg"` // "EdDSA" or "HS256"
	Public  ed25519.PublicKey  `json:"public,omitempty"`
	Private ed25519.PrivateKey `json:"private,omitempty"` // only where tokens are minted (dev, tests)
	Secret  []byte             `json:"secret,omitempty"`  // HS256 shared secret, at least 32 bytes
}

// KeySet is the set of keys tokens may be signed with, by kid.
type KeySet struct {
	Keys []Key `json:"keys"`
}

// minSecret is the shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
const minSecret = 32

func (k *Key) validate() error {
	if !ValidID(k.ID) {
		return fmt.Errorf("key id %q must match %s", k.ID, idPattern)
	}
	switch k.Alg {
	case jwt.SigningMethodEdDSA.Alg():
		if len(k.Public) != ed25519.PublicKeySize {
			if len(k.Private) != ed25519.PrivateKeySize {
				return fmt.Errorf("key %s: EdDSA key needs a 32-byte public key", k.ID)
			}
			k.Public = k.Private.Public().(ed25519.PublicKey)
		}
	case jwt.SigningMethodHS256.Alg():
		if len(k.Secret) < minSecret {
			return fmt.Errorf("key %s: HS256 secret must be at least %d bytes", k.ID, minSecret)
		}
	default:
		return fmt.Errorf("key %s: algorithm %q not supported (use EdDSA or HS256)", k.ID, k.Alg)
	}
	return nil
}

func (ks *KeySet) find(kid string) (*Key, bool) {
	for i := range ks.Keys {
		if ks.Keys[i].ID == kid {
			return &ks.Keys[i], true
		}
	}
	return nil, false
}

// keyFunc resolves the verification key by kid and refuses any algorithm other
// than the one the key is pinned to.
func (ks *KeySet) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok := ks.find(kid)
	if !ok {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	if t.Method.Alg() != k.Alg {
		return nil, fmt.Errorf("key %s is pinned to %s, token uses %s", k.ID, k.Alg, t.Method.Alg())
	}
	if k.Alg == jwt.SigningMethodHS256.Alg() {
		return k.Secret, nil
	}
	return k.Public, nil
}

// Mint signs claims with the key kid. Used by `medcall token`, the bench and tests;
// in production a backend mints tokens and medcall holds only public keys.
func (ks *KeySet) Mint(kid string, c Claims) (string, error) {
	k, ok := ks.find(kid)
	if !ok {
		return "", fmt.Errorf("no key %q in the key set", kid)
	}
	if c.Audience == nil {
		c.Audience = jwt.ClaimStrings{Audience}
	}
	var (
		t   *jwt.Token
		key any
	)
	switch k.Alg {
	case jwt.SigningMethodEdDSA.Alg():
		if k.Private == nil {
			return "", fmt.Errorf("key %s has no private half; mint with the backend that holds it", k.ID)
		}
		t, key = jwt.NewWithClaims(jwt.SigningMethodEdDSA, c), k.Private
	default:
		t, key = jwt.NewWithClaims(jwt.SigningMethodHS256, c), k.Secret
	}
	t.Header["kid"] = k.ID
	return t.SignedString(key)
}

// Load reads a key set file and validates every key.
func Load(path string) (*KeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	var ks KeySet
	if err := json.Unmarshal(b, &ks); err != nil {
		return nil, fmt.Errorf("token keys %s: %w", path, err)
	}
	if len(ks.Keys) == 0 {
		return nil, fmt.Errorf("token keys %s: no keys", path)
	}
	for i := range ks.Keys {
		if err := ks.Keys[i].validate(); err != nil {
			return nil, fmt.Errorf("token keys %s: %w", path, err)
		}
	}
	return &ks, nil
}

// LoadOrCreateDev loads the development key set at path, generating an Ed25519
// key (with its private half, so `medcall token` can mint) on first use.
func LoadOrCreateDev(path string) (ks *KeySet, created bool, err error) {
	ks, err = Load(path)
	if err == nil {
		return ks, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	ks = &KeySet{Keys: []Key{{
		ID:      "dev-" + time.Now().UTC().Format("20060102"),
		Alg:     jwt.SigningMethodEdDSA.Alg(),
		Public:  priv.Public().(ed25519.PublicKey),
		Private: priv,
	}}}
	b, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("token keys: %w", err)
	}
	// O_EXCL: two servers starting at once must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("token keys: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("token keys: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, err
	}
	return ks, true, f.Close()
}

// Public returns a copy of the key set without private halves, for verification only.
func (ks *KeySet) Public() *KeySet {
	out := &KeySet{Keys: make([]Key, len(ks.Keys))}
	for i, k := range ks.Keys {
		k.Private = nil
		out.Keys[i] = k
	}
	return out
}
