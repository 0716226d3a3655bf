// Package bench is medcall's load harness: it drives a server with
// consultations of two simulated participants (the Go client in
// signaling/client), each joining audio-only, upgrading to video, optionally
// downgrading and leaving, and it measures what a clinician and a patient
// would feel (join time, upgrade latency, loss, jitter, delay) and what the
// server pays for it (CPU per forwarded packet, memory per consultation,
// recordings safely stored). Server figures come from the server's own
// /metrics, never from the bench process.
package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/medcall/medcall/signaling"
)

// Upgrade path choices for Config.Path.
const (
	PathPrenegotiated = signaling.PathPrenegotiated
	PathRenegotiate   = signaling.PathRenegotiate
	PathMix           = "mix" // alternate by consultation
)

// Config is one bench run. Its exported fields are written to the result as
// the run's parameters.
type Config struct {
	N              int           `json:"n"`                  // consultations
	JoinRate       float64       `json:"join_rate"`          // consultations started per second
	Duration       time.Duration `json:"duration_ns"`        // each consultation, from its first join to its leave
	UpgradeAfter   time.Duration `json:"upgrade_after_ns"`   // from the consultation's start to both upgrades
	DowngradeAfter time.Duration `json:"downgrade_after_ns"` // from the start to both downgrades; 0 never
	Path           string        `json:"path"`               // prenegotiated, renegotiate or mix
	Record         bool          `json:"record"`
	AudioFile      string        `json:"audio_file"`
	VideoFile      string        `json:"video_file"`
	// Relay forces every participant through the TURN servers the server
	// hands out (relay-only ICE), to price the relayed path against direct.
	Relay bool `json:"relay,omitempty"`
	// VerifyTimeout bounds the wait for recordings after the last leave.
	VerifyTimeout time.Duration `json:"verify_timeout_ns"`
	// ProfileFile, when set, receives a CPU profile of the server over the
	// steady state (every consultation up), at most ProfileSeconds long when
	// that is positive. The server must serve /debug/pprof (serve --pprof;
	// added automatically with InProcess).
	ProfileFile    string `json:"profile_file,omitempty"`
	ProfileSeconds int    `json:"profile_seconds,omitempty"`
	// ClientLog, when set, is a file (created or truncated) that receives
	// every participant's client log (ICE restarts, why a signaling socket
	// closed) and each failed join, each line naming its consultation's
	// index and the participant's role. Empty discards them.
	ClientLog string `json:"client_log,omitempty"`

	Server ServerConfig `json:"server"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		N: 10, JoinRate: 5, Duration: 30 * time.Second, UpgradeAfter: 5 * time.Second,
		Path: PathMix, Record: true, VerifyTimeout: 60 * time.Second,
		AudioFile: "testdata/audio.ogg", VideoFile: "testdata/video.ivf",
	}
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	switch {
	case c.N < 1:
		return errors.New("bench: --n must be at least 1")
	case c.JoinRate <= 0:
		return errors.New("bench: --join-rate must be positive")
	case c.Duration <= 0:
		return errors.New("bench: --duration must be positive")
	case c.UpgradeAfter <= 0 || c.UpgradeAfter >= c.Duration:
		return fmt.Errorf("bench: --upgrade-after %v must be positive and shorter than --duration %v", c.UpgradeAfter, c.Duration)
	case c.DowngradeAfter != 0 && (c.DowngradeAfter <= c.UpgradeAfter || c.DowngradeAfter >= c.Duration):
		return fmt.Errorf("bench: --downgrade-after %v must fall between --upgrade-after and --duration", c.DowngradeAfter)
	case c.AudioFile == "" || c.VideoFile == "":
		return errors.New("bench: --audio and --video fixtures are required")
	}
	switch c.Path {
	case PathPrenegotiated, PathRenegotiate, PathMix:
	default:
		return fmt.Errorf("bench: --path %q: want prenegotiated, renegotiate or mix", c.Path)
	}
	return c.Server.validate()
}

// pathFor is the upgrade path of consultation i.
func (c *Config) pathFor(i int) string {
	if c.Path != PathMix {
		return c.Path
	}
	if i%2 == 0 {
		return PathPrenegotiated
	}
	return PathRenegotiate
}

// ParseRate reads a rate such as "5/s", "30/m" or "2.5" (per second).
func ParseRate(s string) (float64, error) {
	num, unit, found := strings.Cut(strings.TrimSpace(s), "/")
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("rate %q: want a positive number per second, e.g. 5/s or 30/m", s)
	}
	if !found {
		return v, nil
	}
	switch unit {
	case "s":
		return v, nil
	case "m":
		return v / 60, nil
	case "h":
		return v / 3600, nil
	}
	return 0, fmt.Errorf("rate %q: unit %q, want s, m or h", s, unit)
}
