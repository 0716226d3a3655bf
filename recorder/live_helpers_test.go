package recorder

import (
	"fmt"
	"log/slog"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/client"
)

// callLog keeps one consultation's client logs, to show when it fails.
type callLog struct{ syncLog }

func (l *callLog) logger(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", who)
}

// tail is the last lines logged, at most about 4 KB.
func (l *callLog) tail() string {
	s := l.String()
	if len(s) > 4096 {
		s = s[len(s)-4096:]
	}
	return "client log (tail):\n" + s
}

// callState says what a consultation's two clients sent, received and
// selected, for a failure message.
func callState(pat, doc *client.Client, pid string) string {
	pa, _ := pat.Sent("audio")
	pv, _ := pat.Sent("video")
	var pairs []string
	for _, c := range []*client.Client{pat, doc} {
		for _, pc := range []sfu.PC{sfu.PCPublish, sfu.PCSubscribe} {
			p, ok := c.SelectedPair(pc)
			pairs = append(pairs, fmt.Sprintf("%s %v %+v", pc, ok, p))
		}
	}
	pr, pres := pat.Restarts()
	dr, dres := doc.Restarts()
	return fmt.Sprintf("patient sent audio %d video %d packets (%d keyframes); clinician received audio %+v video %+v; ICE restarts/resumes patient %d/%d clinician %d/%d; selected pairs (patient pub, sub; clinician pub, sub): %v",
		pa.Packets, pv.Packets, pv.Keyframes, doc.Received(pid, "audio"), doc.Received(pid, "video"), pr, pres, dr, dres, pairs)
}
