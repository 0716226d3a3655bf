package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/recorder/manifest"
)

// runVerify checks a manifest's signature, key validity and payload type and,
// given the WebM, its digest. It exits non-zero with the reason otherwise.
func runVerify(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", "Verify a recording's signed manifest: medcall verify [options] FILE.manifest.json [FILE.webm]", stderr)
	data := fs.String("data", "./medcall-data", "data directory holding the development manifest key")
	keysFile := fs.String("manifest-keys", "", "manifest key set (JSON); empty uses the development key under --data/keys")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return errors.New("verify takes a manifest and, optionally, its WebM")
	}
	keys, err := loadVerifyKeys(*data, *keysFile)
	if err != nil {
		return err
	}
	env, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	st, err := manifest.Verify(keys, env)
	if err != nil {
		return fmt.Errorf("%s: NOT VALID: %w", fs.Arg(0), err)
	}
	if fs.NArg() == 2 {
		f, err := os.Open(fs.Arg(1))
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := manifest.VerifyObject(keys, env, st.Subject[0].Name, f); err != nil {
			return fmt.Errorf("%s: NOT VALID: %w", fs.Arg(1), err)
		}
	}
	p := st.Predicate
	fmt.Fprintf(stdout, "OK %s\n  patient %s, consultation %s, recording %s\n  signed by %s at %s; %d tracks; recovered %v\n",
		st.Subject[0].Name, p.Patient, p.Consultation, p.RecordingID, p.KeyID, p.SignedAt.Format(time.RFC3339), len(p.Tracks), p.Recovered)
	if p.Partial {
		fmt.Fprintln(stdout, "  partial true: recording stopped early (spool write failed); the file holds what was spooled")
	}
	if fs.NArg() == 2 {
		fmt.Fprintf(stdout, "  %s matches sha256 %s\n", fs.Arg(1), st.SHA256())
	}
	return nil
}

// loadVerifyKeys loads a key set without creating one: verifying with a key
// generated on the spot would prove nothing.
func loadVerifyKeys(data, file string) (*manifest.KeySet, error) {
	if file == "" {
		file = data + "/keys/manifest-dev.json"
	}
	ks, err := manifest.LoadKeySet(file)
	if err != nil {
		return nil, fmt.Errorf("manifest keys: %w", err)
	}
	return ks.Public(), nil
}

// runRecover finalizes orphaned spools (as serve does at start-up) and uploads
// everything waiting in the outbox.
func runRecover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("recover", "Finalize recordings left behind by a crash and store them, then exit.", stderr)
	var cfg recordConfig
	fs.StringVar(&cfg.data, "data", "./medcall-data", "data directory (spool, outbox, keys)")
	cfg.flags(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up storing after this long (what is left stays in the outbox)")
	logLevel := fs.String("log-level", "info", "log level")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	unlock, err := lockData(cfg.data)
	if err != nil {
		return err
	}
	defer unlock()
	rec, err := openRecording(ctx, &cfg, log, recorder.UploadObserver{})
	if err != nil {
		return err
	}
	n := rec.recoverSpools(ctx, log)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		rec.uploader.Run(ctx)
	}()
	err = rec.drain(ctx)
	cancel()
	<-done
	fmt.Fprintf(stdout, "recovered %d recordings; %d waiting for upload\n", n, rec.uploader.Pending())
	return err
}
