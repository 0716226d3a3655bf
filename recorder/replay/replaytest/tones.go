// Package replaytest judges replayed media by ear, for tests: each test
// participant sends its own tone, and what a replayed stream plays is
// decoded by ffmpeg and told apart by frequency, so "this is that person's
// audio, at that time, and nobody else's" is checked on the sound itself.
package replaytest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os/exec"
	"time"
)

// rate is the sample rate audio is decoded at: room for tones up to 10 kHz.
const rate = 24000

// Heard is what the first audio stream of a file plays, window by window.
type Heard struct {
	// Window is the length of each entry of Tone.
	Window time.Duration
	// Tone is, per window, the candidate frequency that holds at least
	// three quarters of the window's power; 0 where the window is silent,
	// -1 where no single candidate dominates (a mix, or another sound).
	Tone []float64
	// Share is, per window, the fraction of its power at each candidate
	// (in the order given); nil for a silent window.
	Share [][]float64
	// Seconds is how long the decoded audio lasts, on its timestamps.
	Seconds float64
}

// Listen decodes the first audio stream of the media file at path with
// ffmpeg (the program at ffmpeg), laying samples out by their timestamps
// from time 0 (gaps as silence), and tells which of candidates (Hz) is
// heard in each window of win.
func Listen(ffmpeg, path string, win time.Duration, candidates []float64) (Heard, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command(ffmpeg, "-v", "error", "-i", path, "-map", "0:a:0",
		"-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", fmt.Sprint(rate), "-f", "s16le", "-")
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		return Heard{}, fmt.Errorf("replaytest: ffmpeg decoding %s: %v %s", path, err, errb.String())
	}
	pcm := make([]int16, out.Len()/2)
	if err := binary.Read(&out, binary.LittleEndian, pcm); err != nil {
		return Heard{}, err
	}
	h := Heard{Window: win, Seconds: float64(len(pcm)) / rate}
	n := int(win.Seconds() * rate)
	for at := 0; at+n <= len(pcm); at += n {
		tone, share := dominant(pcm[at:at+n], candidates)
		h.Tone, h.Share = append(h.Tone, tone), append(h.Share, share)
	}
	return h, nil
}

// dominant is the candidate holding at least 3/4 of the power of x, 0 when
// x is silent (below -50 dBFS), else -1; and each candidate's share of
// that power (nil when silent).
func dominant(x []int16, candidates []float64) (float64, []float64) {
	total := 0.0
	for _, s := range x {
		v := float64(s) / 32768
		total += v * v
	}
	total /= float64(len(x))
	if total < 1e-5 {
		return 0, nil
	}
	tone, share := -1.0, make([]float64, len(candidates))
	for i, f := range candidates {
		share[i] = goertzel(x, f) / total
		if share[i] >= 0.75 && tone < 0 {
			tone = f
		}
	}
	return tone, share
}

// goertzel is the mean power of x at frequency f (a sine of amplitude A
// gives A²/2, as the mean square of x does).
func goertzel(x []int16, f float64) float64 {
	w := 2 * math.Pi * f / rate
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v)/32768 + c*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	n := float64(len(x))
	return 2 * p / (n * n)
}

// Runs returns the tones of h as runs: each distinct tone in order with
// how many windows it lasts (e.g. 440×12 660×12).
func (h Heard) Runs() string {
	var b bytes.Buffer
	for i := 0; i < len(h.Tone); {
		j := i
		for j < len(h.Tone) && h.Tone[j] == h.Tone[i] {
			j++
		}
		fmt.Fprintf(&b, "%g×%d ", h.Tone[i], j-i)
		i = j
	}
	return string(bytes.TrimSpace(b.Bytes()))
}
