package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/token"
	"github.com/medcall/medcall/signaling/web"
)

type serveConfig struct {
	recordConfig
	clusterConfig
	tls tlsConfig
	net networkConfig

	addr, adminAddr, tokenKeys, logLevel, logFormat, origins string
	webhookURL, webhookSecret                                string
	udpPort, maxParticipants, maxConsultations, maxMessage   int
	maxVideoKbps                                             int
	rate                                                     float64
	shutdownTimeout                                          time.Duration
	pingTimeout, iceFailedGrace, bindingRetention            time.Duration
	admitCPUWait, udpCoalesce                                time.Duration
	pprof, dev, replay, ownReceivePath, ownSendPath, ownRTCP bool
	turn                                                     turnConfig
}

func serveFlags(stderr io.Writer) (*serveConfig, func([]string) error) {
	c := &serveConfig{}
	fs := newFlagSet("serve", "Run the medcall server: signaling and media on --addr, metrics and health on --admin-addr.", stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "HTTP and WebSocket listen address")
	fs.StringVar(&c.adminAddr, "admin-addr", "127.0.0.1:9090", "admin listen address (/healthz, /readyz, /metrics)")
	fs.StringVar(&c.data, "data", "./medcall-data", "data directory (keys, spool, outbox, local objects)")
	c.recordConfig.flags(fs)
	c.clusterConfig.flags(fs)
	fs.StringVar(&c.tokenKeys, "token-keys", "", "token key set file (JSON); empty generates a development key under --data/keys")
	fs.IntVar(&c.udpPort, "udp-port", 0, "put all ICE traffic on this one UDP port; 0 uses an ephemeral port per connection")
	fs.DurationVar(&c.udpCoalesce, "udp-coalesce", time.Millisecond, "with --udp-port and --addr on a specific IP address (Linux on amd64 or arm64), after a read of the port that did not fill its batch of 32 datagrams the reader sleeps until this long after it, so it wakes about once per interval rather than once per datagram: less CPU per packet, up to about this plus 1 ms more media delay (docs/performance.md, Coalesced reads); a duration with its unit (500us, 2ms), from 0 to 10ms, anything else refused; 0 reads as soon as a datagram arrives")
	fs.BoolVar(&c.ownReceivePath, "own-receive-path", true, "with --udp-port and --addr on a specific IP address (not 0.0.0.0 or ::), the port's reader takes publishers' RTP past pion's receive goroutines and forwards it itself while it keeps up and the stream's subscribers are on the own send path, else hands it to a pool of forwarding workers that serves audio before video (or to the stream's goroutine, for a stream with a subscriber pion sends to) (docs/mediapath.md); off without those two; =false leaves it all to pion")
	fs.BoolVar(&c.ownSendPath, "own-send-path", true, "with --udp-port and --addr on a specific IP address (not 0.0.0.0 or ::), independently of --own-receive-path, each subscribe connection's innermost interceptor encrypts the RTP it sends and writes it on the port itself, past pion's SRTP session and ICE write path (docs/mediapath.md); off without those two; =false leaves sending to pion")
	fs.BoolVar(&c.ownRTCP, "own-rtcp-path", false, "with --own-receive-path and --own-send-path in effect, the UDP port's reader also decrypts and reads the subscribers' RTCP itself, past pion's receive goroutines (docs/mediapath.md); off by default: the 500 kbit/s downlink test froze more often with it")
	c.net.flags(fs)
	c.tls.flags(fs)
	fs.IntVar(&c.maxParticipants, "max-participants", 4, "participants per consultation")
	fs.DurationVar(&c.admitCPUWait, "admit-cpu-wait", 0, "refuse joins that would start a consultation (server_full) while the server's goroutines wait longer than this for a CPU, 90th percentile over the last 10 s (0: off; a safety net beside --max-consultations, see README, Performance)")
	fs.IntVar(&c.maxConsultations, "max-consultations", 0, "consultations this server hosts at once (0: no limit); a join that would start one more is refused with server_full, one to a consultation someone is still in never is")
	fs.IntVar(&c.maxVideoKbps, "max-video-bitrate", sfu.DefaultMaxVideoBitrate/1000, "ceiling of the video bitrate asked of each publisher, in kbit/s (it is lowered to what the slowest subscriber's downlink takes)")
	fs.IntVar(&c.maxMessage, "max-message", 64<<10, "largest signaling message in bytes")
	fs.Float64Var(&c.rate, "rate", 50, "signaling messages per second per socket (burst is twice this)")
	fs.StringVar(&c.origins, "allowed-origins", "", "comma-separated extra browser origins allowed to open the socket (same origin is always allowed)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "time allowed for a graceful shutdown")
	fs.DurationVar(&c.pingTimeout, "ping-timeout", 20*time.Second, "remove a participant whose socket answers no WebSocket ping for this long")
	fs.DurationVar(&c.iceFailedGrace, "ice-failed-grace", 5*time.Second, "remove a participant whose peer connection failed and did not recover (ICE restart) within this time")
	fs.DurationVar(&c.bindingRetention, "binding-retention", sfu.DefaultBindingRetention, "how long a finished consultation stays bound to its patient and rec setting (kept under --data/bindings)")
	fs.BoolVar(&c.replay, "replay", true, "serve the replay API (GET /v1/recordings); the operator can switch it at once with PUT /replay on the admin listener")
	fs.BoolVar(&c.dev, "dev", false, "development mode: the demo page can mint tokens (POST /dev/token, loopback callers only) and two ready links are printed")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go profiles (net/http/pprof) at /debug/pprof/ on the admin listener")
	c.turn.flags(fs)
	fs.StringVar(&c.webhookURL, "webhook-url", "", "send signed webhooks (Standard Webhooks) for consultation and recording events to this URL; empty sends none")
	fs.StringVar(&c.webhookSecret, "webhook-secret", "", "webhook signing secret, whsec_ + base64 of 24-64 random bytes (prefer the environment variable: flags show in process lists)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	return c, func(args []string) error { return parse(fs, args) }
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// loadKeys loads the configured token keys, or the development key set
// (generated on first start and reused after).
func loadKeys(data, file string, log *slog.Logger) (*token.KeySet, error) {
	if file != "" {
		return token.Load(file)
	}
	path := devKeyPath(data)
	ks, created, err := token.LoadOrCreateDev(path)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("generated a development token key", "file", path)
	}
	return ks, nil
}

func devKeyPath(data string) string { return filepath.Join(data, "keys", "token-dev.json") }

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, parseArgs := serveFlags(stderr)
	if err := parseArgs(args); err != nil {
		return err
	}
	if cfg.maxConsultations < 0 {
		return fmt.Errorf("--max-consultations %d: give a number of consultations, or 0 for no limit", cfg.maxConsultations)
	}
	if cfg.admitCPUWait < 0 {
		return fmt.Errorf("--admit-cpu-wait %v: give a wait such as 50ms, or 0 for off", cfg.admitCPUWait)
	}
	if cfg.udpCoalesce < 0 || cfg.udpCoalesce > sfu.MaxUDPCoalesce {
		return fmt.Errorf("--udp-coalesce %v: give a wait from 0 (off) to %v", cfg.udpCoalesce, sfu.MaxUDPCoalesce)
	}
	tuneGC()
	log, err := newLogger(stderr, cfg.logLevel, cfg.logFormat)
	if err != nil {
		return err
	}
	unlock, err := lockData(cfg.data)
	if err != nil {
		return err
	}
	defer unlock()
	keys, err := loadKeys(cfg.data, cfg.tokenKeys, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.addr, err)
	}
	adminLn, err := net.Listen("tcp", cfg.adminAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen %s: %w", cfg.adminAddr, err)
	}
	met := newMetrics()
	if cfg.maxConsultations > 0 {
		// From 0, so the first refusal counts in increase() (MedcallAtCapacity).
		met.joins.WithLabelValues(signaling.CodeServerFull)
	}
	// The admin listener answers first, so /healthz works at once even
	// while the store is still being reached.
	var ready readiness
	var replayOn atomic.Bool
	replayOn.Store(cfg.replay)
	gaugeFunc(met.reg, "store_up", "1 when the object store answers, 0 while it is unreachable (recordings wait in the outbox).", func() float64 { return b2f(ready.storeUp()) })
	adminSrv := &http.Server{Handler: adminMux(met, &ready, &replayOn, cfg.pprof, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- adminSrv.Serve(adminLn) }()
	closeListeners := func() { ln.Close(); adminSrv.Close() }
	tlsCtx, stopTLS := context.WithCancel(context.Background())
	defer stopTLS()
	tlsCfg, err := cfg.tls.setup(tlsCtx, cfg.data, log)
	if err != nil {
		closeListeners()
		return err
	}
	scheme, wsScheme := "http", "ws"
	if tlsCfg != nil {
		ln, scheme, wsScheme = tls.NewListener(ln, tlsCfg), "https", "wss"
	} else if w := plainHTTPWarning(ln.Addr()); w != "" {
		log.Warn(w)
		fmt.Fprintln(stderr, w)
	}
	link, err := linkStore(ctx, cfg.storeLocation(), log)
	if err != nil {
		closeListeners()
		return err
	}
	ready.store.Store(link)
	hooks, err := openWebhooks(cfg, log)
	if err != nil {
		closeListeners()
		return err
	}
	met.watchWebhooks(hooks)
	met.watchOps(cfg.data)
	obs := met.uploadObserver()
	if hooks != nil {
		obs = recordingEvents(obs, hooks, log)
	}
	rec, err := newRecording(&cfg.recordConfig, link, log, obs)
	if err != nil {
		closeListeners()
		return err
	}
	rec.recoverSpools(ctx, log)
	upCtx, stopUploads := context.WithCancel(context.Background())
	defer stopUploads()
	uploadsDone := make(chan struct{})
	go func() {
		defer close(uploadsDone)
		rec.uploader.Run(upCtx)
	}()
	bindings, err := sfu.OpenFileBindings(filepath.Join(cfg.data, "bindings"), cfg.bindingRetention)
	if err != nil {
		closeListeners()
		return err
	}
	cl, err := openCluster(ctx, &cfg.clusterConfig, ln.Addr(), cfg.bindingRetention, log)
	if err != nil {
		closeListeners()
		return err
	}
	defer cl.close()
	var binds sfu.Bindings = bindings
	if cl != nil {
		binds = cl.bindings // shared by every node of the cluster
	}
	taps := sfu.TapFactory(rec.recorder.Open)
	if hooks != nil {
		hooksCtx, stopHooks := context.WithCancel(context.Background())
		defer stopHooks() // after the drain below: the last events are queued, and sent if the receiver answers
		go hooks.Run(hooksCtx)
		taps = consultationEvents(taps, hooks, log)
	}
	met.watchNetwork(&cfg.tls)
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	sfuCfg := sfu.Config{
		Bindings:         binds,
		ListenIP:         net.ParseIP(host),
		UDPPort:          cfg.udpPort,
		UDPCoalesce:      cfg.udpCoalesce,
		OwnReceivePath:   cfg.ownReceivePath,
		OwnSendPath:      cfg.ownSendPath,
		OwnRTCPPath:      cfg.ownRTCP,
		MaxParticipants:  cfg.maxParticipants,
		MaxConsultations: cfg.maxConsultations,
		MaxVideoBitrate:  cfg.maxVideoKbps * 1000,
		ICEFailedGrace:   cfg.iceFailedGrace,
		Taps:             taps,
		Metrics:          met.sfu,
		Logger:           log,
	}
	starved := wireCPUWait(cfg.admitCPUWait, cl, &sfuCfg, met, log)
	err = cfg.net.apply(ctx, &sfuCfg, log)
	var s *sfu.SFU
	if err == nil {
		s, err = sfu.New(sfuCfg)
	}
	if err != nil {
		closeListeners()
		return err
	}
	if starved != nil {
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go starved.run(wctx, time.Second)
	}
	verifier := &token.Verifier{Keys: keys.Public()}
	replayAPI, audit, err := newReplay(upCtx, cfg.data, rec, verifier, &replayOn, met, log)
	if err != nil {
		closeListeners()
		s.Close()
		return err
	}
	defer audit.Close()
	joinAudit, err := replay.OpenAudit(filepath.Join(cfg.data, "audit", "join.jsonl"))
	if err != nil {
		closeListeners()
		s.Close()
		return err
	}
	defer joinAudit.Close()
	sig := &signaling.Server{
		SFU:      s,
		Verifier: verifier,
		Limits:   signaling.Limits{MaxMessage: cfg.maxMessage, RatePerSec: cfg.rate, Burst: int(2 * cfg.rate), Liveness: cfg.pingTimeout},
		Logger:   log,
		Hooks: signaling.Hooks{
			Joined: func() { met.joins.WithLabelValues("ok").Inc() },
			Audit: func(ev signaling.JoinAudit) {
				if err := joinAudit.Append(ev); err != nil {
					log.Error("join audit log write failed", "err", err)
				}
			},
			Refused: func(code string) {
				met.joins.WithLabelValues(code).Inc()
				if strings.HasPrefix(code, "token_") || code == signaling.CodeBadID || code == signaling.CodeForbidden {
					met.tokensRefused.WithLabelValues(code).Inc()
				}
			},
		},
	}
	if cl != nil {
		if err := cl.start(s, sig, rec.recorder, met.reg); err != nil {
			closeListeners()
			s.Close()
			return err
		}
	}
	met.watchSFU(s)
	met.watchTURN(&cfg.turn.metrics)
	iceServers, stopTURN, err := cfg.turn.start(sfuCfg, adminLn.Addr(), tlsCfg, log)
	if err != nil {
		closeListeners()
		s.Close()
		return err
	}
	defer stopTURN()
	sig.ICEServers = iceServers
	met.watchRecording(rec)
	if cfg.origins != "" {
		sig.OriginPatterns = strings.Split(cfg.origins, ",")
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/signal", sig)
	webOpts := web.Options{Dev: cfg.dev}
	if cfg.dev {
		webOpts.Mint = devMinter(keys)
	}
	mux.Handle("/", web.Handler(webOpts))
	httpSrv := &http.Server{Handler: cfg.tls.hsts(withReplay(replayAPI, mux)), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)} // TLS handshake noise from scanners
	go func() { errc <- httpSrv.Serve(ln) }()
	ready.serving.Store(true)
	log.Info("medcall serving", "addr", ln.Addr().String(), "admin", adminLn.Addr().String(), "data", cfg.data)
	// The banner goes out in one write: whoever reads it (a person, a test or
	// a supervisor waiting for the serving line) sees it whole.
	var banner strings.Builder
	fmt.Fprintf(&banner, "medcall is serving on %s://%s (signaling at %s://%s/v1/signal), admin on http://%s\n",
		scheme, ln.Addr(), wsScheme, ln.Addr(), adminLn.Addr())
	if cfg.dev {
		h, port, _ := net.SplitHostPort(ln.Addr().String())
		if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
			h = "127.0.0.1" // /dev/token answers loopback names only
		}
		base := scheme + "://" + net.JoinHostPort(h, port)
		fmt.Fprintf(&banner, "Development mode: open each link in its own browser window (the page mints its token; tokens never go in the address):\n  patient:   %s/?role=patient&cid=c-1&pid=p-1&rec=1\n  clinician: %s/?role=clinician&cid=c-1&pid=p-1&sub=d-1&rec=1\n", base, base)
	}
	if cfg.tokenKeys == "" {
		me := selfCommand(os.Args[0])
		fmt.Fprintf(&banner, "Mint development tokens with:\n  %s token --data %s --role patient --sub p-2 --pid p-2 --cid c-2 --rec\n  %s token --data %s --role clinician --sub d-1 --pid p-2 --cid c-2 --rec\n(a consultation's cid, pid and rec are fixed by its first join)\n", me, cfg.data, me, cfg.data)
	}
	_, _ = io.WriteString(stdout, banner.String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	ready.serving.Store(false)
	cl.drain(context.Background(), s)
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	if err := sig.Shutdown(sctx); err != nil {
		log.Warn("signaling shutdown incomplete", "err", err)
	}
	_ = httpSrv.Shutdown(sctx)
	if err := rec.drain(sctx); err != nil {
		log.Warn("recordings not all stored before shutdown", "err", err)
	}
	stopUploads()
	<-uploadsDone
	_ = adminSrv.Shutdown(sctx)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// adminMux is the admin listener: metrics, health, readiness, the replay
// switch and, when asked for, Go profiles.
func adminMux(met *metrics, ready *readiness, replayOn *atomic.Bool, withPprof bool, log *slog.Logger) *http.ServeMux {
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", met.handler())
	admin.HandleFunc("/replay", replaySwitch(replayOn, log))
	if withPprof {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	admin.Handle("GET /readyz", ready)
	return admin
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
