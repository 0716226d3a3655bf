package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/medcall/medcall/signaling/token"
)

func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "Mint a token from a local key: a join token (with --cid and --pid) or, with --replay, a replay token.", stderr)
	data := fs.String("data", "./medcall-data", "data directory holding the development key (keys/token-dev.json)")
	keysFile := fs.String("token-keys", "", "key set file with private keys; empty uses the development key")
	kid := fs.String("kid", "", "key id to sign with; empty uses the first key")
	sub := fs.String("sub", "", "participant id (a pseudonym, ^[A-Za-z0-9_-]{1,64}$)")
	role := fs.String("role", "", "patient, clinician or guest")
	cid := fs.String("cid", "", "consultation id (join tokens)")
	pid := fs.String("pid", "", "patient id the consultation belongs to (join tokens)")
	rec := fs.Bool("rec", false, "record the consultation (join tokens)")
	replay := fs.Bool("replay", false, "mint a replay token (no cid, pid or rec)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *sub == "" || *role == "" {
		return fmt.Errorf("--sub and --role are required")
	}
	if *replay && (*cid != "" || *pid != "" || *rec) {
		return fmt.Errorf("a replay token takes no --cid, --pid or --rec")
	}
	if !*replay && (*cid == "" || *pid == "") {
		return fmt.Errorf("a join token needs --cid and --pid (or use --replay)")
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive")
	}
	var (
		ks  *token.KeySet
		err error
	)
	if *keysFile != "" {
		ks, err = token.Load(*keysFile)
	} else {
		ks, _, err = token.LoadOrCreateDev(devKeyPath(*data))
	}
	if err != nil {
		return err
	}
	if *kid == "" {
		*kid = ks.Keys[0].ID
	}
	now := time.Now()
	c := token.Claims{
		Role: *role, Consultation: *cid, Patient: *pid, Record: *rec,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
			ID:        uuid.NewString(),
		},
	}
	// Check what we mint the way the server will, so a typo fails here.
	t, err := ks.Mint(*kid, c)
	if err != nil {
		return err
	}
	v := token.Verifier{Keys: ks}
	if *replay {
		_, err = v.VerifyReplay(t)
	} else {
		_, err = v.VerifyJoin(t)
	}
	if err != nil {
		return fmt.Errorf("refusing to mint a token the server would refuse: %w", err)
	}
	fmt.Fprintln(stdout, t)
	return nil
}

// devMinter mints development tokens for the demo page (serve --dev) with the
// first key of the set, valid for an hour.
func devMinter(keys *token.KeySet) func(role, sub, cid, pid string, rec, replay bool) (string, error) {
	return func(role, sub, cid, pid string, rec, _ bool) (string, error) {
		now := time.Now()
		return keys.Mint(keys.Keys[0].ID, token.Claims{
			Role: role, Consultation: cid, Patient: pid, Record: rec,
			RegisteredClaims: jwt.RegisteredClaims{
				Subject: sub, ID: uuid.NewString(),
				IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			},
		})
	}
}
