package turn

import (
	"errors"
	"net"
	"testing"
	"time"

	pturn "github.com/pion/turn/v5"
)

// A minted credential is what any TURN REST server (coturn's
// use-auth-secret, pion's handler) accepts for the same secret.
func TestMintIsTURNREST(t *testing.T) {
	secret := []byte("shared with coturn")
	c := Mint(secret, time.Now(), time.Minute)
	h := pturn.LongTermTURNRESTAuthHandler(string(secret), nil)
	_, key, ok := h(&pturn.RequestAttributes{Username: c.Username, Realm: "r", SrcAddr: &net.UDPAddr{}})
	if !ok || string(key) != string(pturn.GenerateAuthKey(c.Username, "r", c.Password)) {
		t.Fatalf("pion's TURN REST handler does not accept %q", c.Username)
	}
	if d := Mint(secret, time.Now(), time.Minute); d.Username == c.Username {
		t.Fatal("two credentials share a username")
	}
}

func TestParse(t *testing.T) {
	now := time.Now()
	c := Mint([]byte("s"), now, time.Minute)
	if exp, err := Parse(c.Username, now); err != nil || !exp.Equal(c.Expires) {
		t.Fatalf("Parse(%q) = %v, %v", c.Username, exp, err)
	}
	if _, err := Parse(c.Username, now.Add(2*time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	for _, u := range []string{"", "abc", "12x:tag", "-5:tag", "1700000000"} {
		if _, err := Parse(u, now); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) = %v, want ErrMalformed", u, err)
		}
	}
}
