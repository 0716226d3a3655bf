package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func testKeys(t *testing.T) *KeySet {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ks := &KeySet{Keys: []Key{{ID: "ed", Alg: "EdDSA", Private: priv}, {ID: "hs", Alg: "HS256", Secret: secret}}}
	for i := range ks.Keys {
		if err := ks.Keys[i].validate(); err != nil {
			t.Fatal(err)
		}
	}
	return ks
}

func join(sub, role, cid, pid string, exp time.Duration) Claims {
	now := time.Now()
	return Claims{Role: role, Consultation: cid, Patient: pid, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(exp)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
	}}
}

func TestVerifyJoin(t *testing.T) {
	ks := testKeys(t)
	v := &Verifier{Keys: ks.Public()}
	mint := func(kid string, c Claims) string {
		s, err := ks.Mint(kid, c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	notYet := join("d1", RoleClinician, "c1", "p1", time.Hour)
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	withinLeeway := join("d1", RoleClinician, "c1", "p1", -10*time.Second)
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"EdDSA ok", mint("ed", join("d1", RoleClinician, "c1", "p1", time.Hour)), nil},
		{"HS256 ok", mint("hs", join("d1", RoleClinician, "c1", "p1", time.Hour)), nil},
		{"patient ok", mint("ed", join("p1", RolePatient, "c1", "p1", time.Hour)), nil},
		{"expired within leeway", mint("ed", withinLeeway), nil},
		{"expired", mint("ed", join("d1", RoleClinician, "c1", "p1", -time.Hour)), ErrExpired},
		{"not yet valid", mint("ed", notYet), ErrInvalid},
		{"no exp", mint("ed", Claims{Role: RoleClinician, Consultation: "c1", Patient: "p1", RegisteredClaims: jwt.RegisteredClaims{Subject: "d1"}}), ErrInvalid},
		{"empty", "", ErrMissing},
		{"patient sub != pid", mint("ed", join("p2", RolePatient, "c1", "p1", time.Hour)), ErrRole},
		{"sub too long", mint("ed", join(string(make([]byte, 65)), RoleClinician, "c1", "p1", time.Hour)), ErrBadID},
		{"cid with slash", mint("ed", join("d1", RoleClinician, "c/1", "p1", time.Hour)), ErrBadID},
		{"no cid", mint("ed", join("d1", RoleClinician, "", "p1", time.Hour)), ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := v.VerifyJoin(tc.tok)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if g.Consultation != "c1" || g.Patient != "p1" {
					t.Fatalf("grant %+v", g)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	ks := testKeys(t)
	v := &Verifier{Keys: ks.Public()}
	c := join("p1", RolePatient, "", "", time.Hour)
	tok, _ := ks.Mint("ed", c)
	if r, err := v.VerifyReplay(tok); err != nil || r.Subject != "p1" {
		t.Fatalf("replay token refused: %v", err)
	}
	jt, _ := ks.Mint("ed", join("p1", RolePatient, "c1", "p1", time.Hour))
	if _, err := v.VerifyReplay(jt); !errors.Is(err, ErrInvalid) {
		t.Fatalf("join token accepted for replay: %v", err)
	}
	g, _ := ks.Mint("ed", join("g1", RoleGuest, "", "", time.Hour))
	if _, err := v.VerifyReplay(g); !errors.Is(err, ErrRole) {
		t.Fatalf("guest replay: %v", err)
	}
}

func TestKeySetFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "dev.json")
	ks, created, err := LoadOrCreateDev(path)
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600 (%v)", st.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateDev(path)
	if err != nil || created || !again.Keys[0].Public.Equal(ks.Keys[0].Public) {
		t.Fatalf("second start did not reuse the key: created=%v err=%v", created, err)
	}
	bad := []string{
		`{"keys":[]}`,
		`{"keys":[{"kid":"a","alg":"none"}]}`,
		`{"keys":[{"kid":"a","alg":"HS256","secret":"c2hvcnQ="}]}`,
		`{"keys":[{"kid":"a b","alg":"HS256","secret":"MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}]}`,
		`not json`,
	}
	for _, b := range bad {
		p := filepath.Join(dir, "bad.json")
		_ = os.WriteFile(p, []byte(b), 0o600)
		if _, err := Load(p); err == nil {
			t.Errorf("accepted key set %s", b)
		}
	}
}
