package bench

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// progress counts what has happened so far, for the live line.
type progress struct {
	joined, upgraded, left, errors atomic.Int64
	upgradeTries                   atomic.Int64 // finished upgrade attempts, successful or not
	settled                        atomic.Int64 // consultations past their upgrade (or failed before it)
	stored                         atomic.Int64
}

// Interactive reports whether w is a terminal and CI is not set: only then
// does the bench draw its live progress line.
func Interactive(w io.Writer) bool {
	if os.Getenv("CI") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// show redraws one status line on w every interval until done is closed,
// then ends the line.
func (p *progress) show(w io.Writer, n int, start time.Time, every time.Duration, done <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		fmt.Fprintf(w, "\r%s", p.line(n, time.Since(start)))
		select {
		case <-done:
			fmt.Fprintln(w)
			return
		case <-t.C:
		}
	}
}

func (p *progress) line(n int, elapsed time.Duration) string {
	return fmt.Sprintf("joined %d/%d  upgraded %d/%d  left %d/%d  stored %d  errors %d  elapsed %s ",
		p.joined.Load(), 2*n, p.upgraded.Load(), 2*n, p.left.Load(), n, p.stored.Load(), p.errors.Load(),
		elapsed.Truncate(time.Second))
}
