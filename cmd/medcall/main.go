// Command medcall is the medcall media server and its tools.
//
//	medcall serve    run the server (signaling, SFU, recorder)
//	medcall token    mint a development token
//	medcall verify   check a recording's signed manifest (and WebM)
//	medcall recover  finalize and store recordings left by a crash
//	medcall bench    load-test a server, or compare two results
//	medcall check    test connectivity to a server from this machine
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "Run the medcall server on its embedded defaults.", runServe},
		{"token", "Mint a join or replay token from a local key (development and tests).", runToken},
		{"verify", "Verify a recording's signed manifest and, given it, the WebM's digest.", runVerify},
		{"recover", "Finalize and store recordings left behind by a crash.", runRecover},
		{"bench", "Load-test a server with simulated consultations, or compare two results.", runBench},
		{"check", "Check a server can be reached from this machine: TLS, WebSocket, UDP, TCP, TURN.", runCheck},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "medcall:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "usage: medcall <command> [options]\n\ncommands:")
		for _, c := range commands() {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(w, "\nRun 'medcall <command> --help' for a command's options.")
	}
	if len(args) == 0 {
		usage(stderr)
		return errors.New("no command given")
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

// selfCommand is how a person runs this program again, for the commands its
// hints print: "go run ./cmd/medcall" when it was started by go run (its
// binary then lives in the go command's temporary build directory), else
// the path it was started as (arg0, os.Args[0]).
func selfCommand(arg0 string) string {
	if strings.Contains(filepath.ToSlash(arg0), "/go-build") {
		return "go run ./cmd/medcall"
	}
	return arg0
}
