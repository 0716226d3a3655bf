// Package turn is medcall's built-in TURN relay (pion/turn) and the TURN REST
// credentials it and an operator's coturn accept. It is a media transport of
// the SFU, so it lives under sfu/; it imports neither signaling nor the SFU:
// cmd wires it to both. Credentials are minted per participant at join, live
// a few minutes, and stop working when the participant leaves; an allocation
// may only reach the SFU's own media addresses (see Policy).
package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // RFC 8489 long-term credentials in the TURN REST style use HMAC-SHA1
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTTL is how long a minted credential is valid.
const DefaultTTL = 10 * time.Minute

// Credential is one TURN REST credential: Username is "expiry:tag" (expiry
// in Unix seconds, tag random), Password is base64(HMAC-SHA1(secret, Username)).
type Credential struct {
	Username string
	Password string
	Expires  time.Time
}

// Errors from Parse.
var (
	ErrMalformed = errors.New("turn: username is not expiry:tag")
	ErrExpired   = errors.New("turn: credential expired")
)

// Mint makes a credential valid until now+ttl with a random tag, so two
// credentials never share a username and one can be revoked alone.
func Mint(secret []byte, now time.Time, ttl time.Duration) Credential {
	var b [9]byte
	_, _ = rand.Read(b[:])
	exp := now.Add(ttl).Truncate(time.Second)
	user := strconv.FormatInt(exp.Unix(), 10) + ":" + hex.EncodeToString(b[:])
	return Credential{Username: user, Password: Password(secret, user), Expires: exp}
}

// Password is the TURN REST password for username: what coturn's
// use-auth-secret and pion's LongTermTURNRESTAuthHandler expect.
func Password(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Parse reads a username's expiry and refuses it once passed.
func Parse(username string, now time.Time) (time.Time, error) {
	ts, _, ok := strings.Cut(username, ":")
	if !ok {
		return time.Time{}, ErrMalformed
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, ErrMalformed
	}
	exp := time.Unix(sec, 0)
	if !now.Before(exp) {
		return exp, fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	return exp, nil
}
