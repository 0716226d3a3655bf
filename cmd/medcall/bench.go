package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/medcall/medcall/bench"
)

// runBench is `medcall bench`: a load run against a server (or one it
// starts with --inprocess), or --compare of two results.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := bench.Defaults()
	fs := newFlagSet("bench", "Drive a server with simulated consultations and report what users feel and what the server pays;\nor, with --compare a.json b.json, print two results side by side as ratios (b/a).", stderr)
	fs.IntVar(&cfg.N, "n", cfg.N, "consultations (two participants each)")
	rate := fs.String("join-rate", "5/s", "consultations started per second (5/s, 30/m)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each consultation, from its start to its leave")
	fs.DurationVar(&cfg.UpgradeAfter, "upgrade-after", cfg.UpgradeAfter, "time from a consultation's start to both participants upgrading to video")
	fs.DurationVar(&cfg.DowngradeAfter, "downgrade-after", 0, "time from the start to both downgrading; 0 never")
	fs.StringVar(&cfg.Path, "path", cfg.Path, "upgrade path: prenegotiated, renegotiate or mix (alternating)")
	fs.BoolVar(&cfg.Record, "rec", cfg.Record, "record the consultations and check every recording is stored and verifies")
	fs.StringVar(&cfg.AudioFile, "audio", cfg.AudioFile, "Ogg Opus fixture the participants send")
	fs.StringVar(&cfg.VideoFile, "video", cfg.VideoFile, "VP8 IVF fixture the participants send after upgrading")
	fs.BoolVar(&cfg.Relay, "relay", false, "send every participant's media through TURN (relay-only ICE); with --inprocess the server runs its built-in relay")
	fs.DurationVar(&cfg.VerifyTimeout, "verify-timeout", cfg.VerifyTimeout, "longest wait for a recording after its call ends")
	out := fs.String("out", "bench-result.json", "JSON result file (every figure and the parameters); empty writes none")
	fs.StringVar(&cfg.ProfileFile, "cpuprofile", "", "write a CPU profile of the server over the steady state to this file (the server needs --pprof)")
	fs.IntVar(&cfg.ProfileSeconds, "profile-seconds", 0, "longest CPU profile in seconds; 0 profiles the whole steady state")
	fs.StringVar(&cfg.ClientLog, "client-log", "", "write every participant's client log (ICE restarts, why a socket closed) and each failed join to this file, each line with its consultation's index and role; empty discards them")
	compare := fs.Bool("compare", false, "compare two result files given as arguments: medcall bench --compare a.json b.json")
	fs.BoolVar(&cfg.Server.InProcess, "inprocess", false, "start a server as a child process (same binary, loopback, fresh data directory) and stop it at the end")
	fs.StringVar(&cfg.Server.BinPath, "server-bin", "", "medcall binary for --inprocess; empty uses this one")
	serverArgs := fs.String("server-args", "", "extra space-separated flags for the --inprocess server")
	fs.StringVar(&cfg.Server.URL, "url", "", "signaling URL of a running server (ws://host:port/v1/signal); for a cluster, its entry nodes comma-separated (participants enter by turns, follow redirects, and the report gives the per-node spread)")
	fs.StringVar(&cfg.Server.Admin, "admin", "", "admin URL of that server (http://host:port), for /metrics")
	fs.StringVar(&cfg.Server.Data, "data", "", "that server's data directory: its development token key, local objects and manifest key")
	fs.StringVar(&cfg.Server.TokenKeys, "token-keys", "", "key set with private keys to mint tokens (instead of --data's development key)")
	fs.StringVar(&cfg.Server.StoreURL, "store", "", "where that server stores recordings (file://DIR or s3://...); empty means file://DATA/objects")
	fs.StringVar(&cfg.Server.ManifestKeys, "manifest-keys", "", "manifest key set to verify recordings with; empty uses --data's development key")
	// Parse once to find --compare and its file arguments; otherwise parse
	// again with the MEDCALL_* environment applied, refusing stray arguments.
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *compare {
		if fs.NArg() != 2 {
			return errors.New("--compare takes two result files: medcall bench --compare a.json b.json")
		}
		a, err := bench.ReadResult(fs.Arg(0))
		if err != nil {
			return err
		}
		b, err := bench.ReadResult(fs.Arg(1))
		if err != nil {
			return err
		}
		return bench.Compare(stdout, a, b, fs.Arg(0), fs.Arg(1))
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.JoinRate, err = bench.ParseRate(*rate); err != nil {
		return fmt.Errorf("--join-rate: %w", err)
	}
	if *serverArgs != "" {
		cfg.Server.ExtraArgs = strings.Fields(*serverArgs)
	}
	if cfg.Relay && cfg.Server.InProcess {
		extra, err := relayServerArgs(cfg.Server.ExtraArgs)
		if err != nil {
			return err
		}
		cfg.Server.ExtraArgs = append(cfg.Server.ExtraArgs, extra...)
	}
	for _, f := range [][2]string{{"--audio", cfg.AudioFile}, {"--video", cfg.VideoFile}} { // in order: one error, always the same
		if _, err := os.Stat(f[1]); err != nil {
			return fmt.Errorf("%s: %w (the defaults are the repository's testdata: run the bench from its root, or give the file)", f[0], err)
		}
	}
	var live io.Writer
	if bench.Interactive(stderr) {
		live = stderr
	}
	res, err := bench.Run(ctx, cfg, live)
	if err != nil {
		return err
	}
	if err := res.WriteTable(stdout); err != nil {
		return err
	}
	if *out != "" {
		if err := res.WriteFile(*out); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "result written to", *out)
	}
	if c := res.Consultations; c.Planned > 0 && c.Joined == 0 {
		return fmt.Errorf("none of the %d consultations joined, so nothing was measured (the errors are listed above)", c.Planned)
	}
	return nil
}

// relayServerArgs are the flags an --inprocess server needs for --relay:
// the built-in relay on free ports, and the one UDP media port it requires
// (unless given in --server-args).
func relayServerArgs(given []string) ([]string, error) {
	extra := []string{"--turn", "--turn-port", "0", "--turn-tls-port", "0"}
	if slices.Contains(given, "--udp-port") {
		return extra, nil
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("--relay: find a free UDP port: %w", err)
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return append(extra, "--udp-port", strconv.Itoa(port)), nil
}
