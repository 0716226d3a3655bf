package replaytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestListen: Opus in WebM, as replay serves it: 1 s of 440 Hz, 0.5 s of
// silence, 1 s of 660 Hz, then 1 s of 440 Hz and 880 Hz mixed at equal
// level. Listen hears each tone where it is, silence as silence, and the mix
// as no single tone, each holding about half the power. (The window just
// after a tone ends holds the codec's decay: not judged.)
func TestListen(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ffmpeg is required in CI: %v", err)
		}
		t.Skip("ffmpeg not installed (apt-get install ffmpeg)")
	}
	path := filepath.Join(t.TempDir(), "tones.webm")
	out, err := exec.Command(ffmpeg, "-v", "error",
		"-f", "lavfi", "-i", "sine=f=440:d=1:sample_rate=48000",
		"-f", "lavfi", "-i", "sine=f=660:d=1:sample_rate=48000",
		"-f", "lavfi", "-i", "aevalsrc=0.1*sin(2*PI*440*t)+0.1*sin(2*PI*880*t):d=1:s=48000",
		"-filter_complex", "[1]adelay=500:all=1[b];[0][b][2]concat=n=3:v=0:a=1",
		"-c:a", "libopus", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	h, err := Listen(ffmpeg, path, 250*time.Millisecond, []float64{440, 660, 880})
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{440, 440, 440, 440, 99, 0, 660, 660, 660, 660, -1, -1, -1, -1} // 99: not judged
	if len(h.Tone) != len(want) {
		t.Fatalf("heard %s: %d windows, want %d", h.Runs(), len(h.Tone), len(want))
	}
	for i, w := range want {
		if w != 99 && h.Tone[i] != w {
			t.Errorf("heard %s; window %d is %v, want %v", h.Runs(), i, h.Tone[i], w)
		}
	}
	if h.Seconds < 3.45 || h.Seconds > 3.55 {
		t.Errorf("lasts %.3f s, want 3.5", h.Seconds)
	}
	if mix := h.Share[len(h.Share)-2]; mix[0] < 0.4 || mix[2] < 0.4 || mix[1] > 0.01 {
		t.Errorf("in the mix, shares of 440, 660 and 880 Hz are %.2f, want about 0.5, 0, 0.5", mix)
	}
}
