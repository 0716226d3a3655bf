package signaling

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/token"
)

// Limits bound what one socket may do. The zero value means the defaults.
type Limits struct {
	MaxMessage  int           // bytes; default 64 KiB
	RatePerSec  float64       // sustained messages per second; default 50
	Burst       int           // default 100
	JoinTimeout time.Duration // time allowed for the first message; default 10s
	// Liveness is how long a socket may leave the server's WebSocket pings
	// unanswered before it is closed and its participant removed; default 20s.
	Liveness time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessage == 0 {
		l.MaxMessage = 64 << 10
	}
	if l.RatePerSec == 0 {
		l.RatePerSec = 50
	}
	if l.Burst == 0 {
		l.Burst = 100
	}
	if l.JoinTimeout == 0 {
		l.JoinTimeout = 10 * time.Second
	}
	if l.Liveness == 0 {
		l.Liveness = 20 * time.Second
	}
	return l
}

// hardLimit is where the WebSocket library closes the socket (1009) instead of
// reading further; below it, an oversized message gets a too_large error.
const hardLimit = 1 << 20

// Hooks let cmd observe the protocol without the package importing metrics.
type Hooks struct {
	// Refused is called with the error code of every refused join.
	Refused func(code string)
	// Joined is called for every accepted join.
	Joined func()
	// Audit is called for every join refused because its token contradicts
	// the consultation's binding; cmd writes it to a durable audit log.
	Audit func(ev JoinAudit)
	// Received is called with every text frame read within the size and
	// rate limits, after it was handled, with the error code that answered
	// it ("" when it was not refused). Tests hold the server's verdicts to
	// protocol.schema.json. It must not block or keep data.
	Received func(data []byte, refused string)
	// Sent is called with every message the server writes to a socket, as
	// written (tests check each against protocol.schema.json). It must not
	// block or keep b.
	Sent func(b []byte)
}

// JoinAudit is an audited join refusal. It never carries the token.
type JoinAudit struct {
	Time         time.Time `json:"time"`
	Action       string    `json:"action"` // "join"
	Sub          string    `json:"sub"`    // the token's participant id
	Role         string    `json:"role"`
	Consultation string    `json:"consultation"`
	Outcome      string    `json:"outcome"` // "refused"
	Reason       string    `json:"reason"`  // the error code, e.g. binding_mismatch
}

// Server serves the signaling WebSocket.
type Server struct {
	SFU      *sfu.SFU
	Verifier *token.Verifier
	Limits   Limits
	Hooks    Hooks
	Logger   *slog.Logger
	// ICEServers, if set, is called for every accepted join: the servers and
	// credentials sent in joined.iceServers, and a release called when the
	// participant leaves (or its socket drops), after which they stop working.
	ICEServers func() (servers []ICEServer, release func())
	// OriginPatterns lists extra origins allowed to open the socket from a
	// browser (same-origin is always allowed); see websocket.AcceptOptions.
	OriginPatterns []string
	// Placer, if set, decides which node of a cluster hosts each
	// consultation (signaling/cluster); nil hosts every one here.
	Placer Placer

	seats seatBook // resumable participants (resume.go)
	full  fullLog  // server_full refusals, logged at most once a minute

	mu       sync.Mutex
	closing  bool
	sessions map[*session]struct{}
	wg       sync.WaitGroup
}

// ServeHTTP upgrades to a WebSocket and runs one session on it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.OriginPatterns})
	if err != nil {
		return // Accept has written the HTTP error
	}
	conn.SetReadLimit(hardLimit)
	sess := newSession(s, conn)
	s.mu.Lock()
	if s.sessions == nil {
		s.sessions = map[*session]struct{}{}
	}
	s.sessions[sess] = struct{}{}
	s.mu.Unlock()
	sess.run(r.Context())
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Shutdown says bye to every participant (through the SFU), closes every
// socket and waits for the sessions to end or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	sessions := make([]*session, 0, len(s.sessions))
	for x := range s.sessions {
		sessions = append(sessions, x)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.SFU.Close() // every participant gets Bye("shutdown")
		for _, x := range sessions {
			x.shutdown()
		}
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
