package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// tlsConfig is how serve gets its certificate: files (reloaded without a
// restart) or ACME (Let's Encrypt, or any RFC 8555 server).
type tlsConfig struct {
	cert, key                       string
	reload                          time.Duration
	acmeDomains, acmeEmail, acmeDir string
	acmeCA                          string
	hstsMaxAge                      time.Duration
	tlsOn                           bool // set by setup
	acmeManager                     *autocert.Manager
	certReloads, certReloadFailures atomic.Uint64
	currentCertNotAfter             atomic.Int64
}

func (c *tlsConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.cert, "tls-cert", "", "TLS certificate chain (PEM) for HTTPS/WSS; reloaded on SIGHUP and when the file changes")
	fs.StringVar(&c.key, "tls-key", "", "TLS private key (PEM) for --tls-cert")
	fs.DurationVar(&c.reload, "tls-reload", 5*time.Second, "how often --tls-cert and --tls-key are checked for changes (0: only on SIGHUP)")
	fs.StringVar(&c.acmeDomains, "acme-domain", "", "get and renew a certificate by ACME (Let's Encrypt) for these comma-separated domains; serve on port 443 (TLS-ALPN-01 challenge)")
	fs.StringVar(&c.acmeEmail, "acme-email", "", "contact e-mail for the ACME account (expiry warnings)")
	fs.StringVar(&c.acmeDir, "acme-directory", "", "ACME directory URL (default Let's Encrypt production)")
	fs.StringVar(&c.acmeCA, "acme-ca", "", "PEM file of CA certificates to trust for the ACME directory itself (a private ACME server such as step-ca)")
	fs.DurationVar(&c.hstsMaxAge, "hsts-max-age", 365*24*time.Hour, "Strict-Transport-Security max-age sent over TLS (0: no header)")
}

// setup validates the flags and returns the listener's TLS configuration,
// or nil for plain HTTP. The returned config stays valid until ctx ends:
// file certificates are watched until then.
func (c *tlsConfig) setup(ctx context.Context, data string, log *slog.Logger) (*tls.Config, error) {
	files, acmeOn := c.cert != "" || c.key != "", c.acmeDomains != ""
	switch {
	case files && acmeOn:
		return nil, errors.New("--tls-cert/--tls-key and --acme-domain both given: choose certificate files or ACME")
	case files && (c.cert == "" || c.key == ""):
		return nil, errors.New("--tls-cert and --tls-key go together: give both files")
	case !acmeOn && (c.acmeEmail != "" || c.acmeDir != "" || c.acmeCA != ""):
		return nil, errors.New("--acme-email, --acme-directory and --acme-ca need --acme-domain")
	case files:
		r := &certReloader{cert: c.cert, key: c.key, log: log, cfg: c}
		if err := r.load(); err != nil {
			return nil, err
		}
		go r.watch(ctx, c.reload)
		c.tlsOn = true
		return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.get, NextProtos: []string{"http/1.1"}}, nil
	case acmeOn:
		m, err := c.acme(data)
		if err != nil {
			return nil, err
		}
		c.tlsOn, c.acmeManager = true, m
		tc := m.TLSConfig()
		tc.MinVersion = tls.VersionTLS12
		// WebSocket upgrades need HTTP/1.1; acme-tls/1 answers the challenge.
		tc.NextProtos = []string{"http/1.1", acme.ALPNProto}
		return tc, nil
	}
	return nil, nil
}

// acme builds the certificate manager; its account key and certificates
// are cached under DATA/acme so a restart reuses them.
func (c *tlsConfig) acme(data string) (*autocert.Manager, error) {
	domains := splitList(c.acmeDomains)
	if len(domains) == 0 {
		return nil, fmt.Errorf("--acme-domain %q: no domain", c.acmeDomains)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(domains...),
		Cache:      autocert.DirCache(filepath.Join(data, "acme")),
		Email:      c.acmeEmail,
	}
	if c.acmeDir != "" || c.acmeCA != "" {
		client := &acme.Client{DirectoryURL: c.acmeDir}
		if c.acmeCA != "" {
			hc, err := httpClientTrusting(c.acmeCA)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca: %w", err)
			}
			client.HTTPClient = hc
		}
		m.Client = client
	}
	return m, nil
}

// httpClientTrusting is an HTTP client that trusts only the CA
// certificates in a PEM file.
func httpClientTrusting(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil // no Timeout: WebSocket dials refuse one; callers use contexts
}

// hsts adds Strict-Transport-Security to every response served over TLS.
func (c *tlsConfig) hsts(next http.Handler) http.Handler {
	if !c.tlsOn || c.hstsMaxAge <= 0 {
		return next
	}
	v := fmt.Sprintf("max-age=%d", int(c.hstsMaxAge.Seconds()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", v)
		next.ServeHTTP(w, r)
	})
}

// plainHTTPWarning says why serving plain HTTP on addr is a problem, or ""
// when addr is loopback (a local demo, or a TLS-terminating proxy in front).
func plainHTTPWarning(addr net.Addr) string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || ta.IP.IsLoopback() {
		return ""
	}
	return fmt.Sprintf("WARNING: serving plain HTTP on %s, which is not a loopback address: browsers refuse the camera and microphone on http:// pages other than localhost, and tokens cross the network unencrypted. Give --tls-cert/--tls-key or --acme-domain, or bind 127.0.0.1 behind a TLS-terminating proxy (README, Production).", addr)
}

// certReloader serves a certificate from files and swaps it when they
// change or on SIGHUP. A bad new pair is logged and the old one kept, so a
// half-copied renewal never takes the server down.
type certReloader struct {
	cert, key string
	log       *slog.Logger
	cfg       *tlsConfig
	cur       atomic.Pointer[tls.Certificate]
	stamp     string // the files' sizes and mtimes when last loaded
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cur.Load(), nil }

func (r *certReloader) fileStamp() string {
	var b bytes.Buffer
	for _, f := range []string{r.cert, r.key} {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

func (r *certReloader) load() error {
	stamp := r.fileStamp()
	pair, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w", r.cert, r.key, err)
	}
	if pair.Leaf != nil && time.Now().After(pair.Leaf.NotAfter) {
		return fmt.Errorf("TLS certificate %s expired on %s; renew it", r.cert, pair.Leaf.NotAfter.Format(time.RFC3339))
	}
	r.cur.Store(&pair)
	r.stamp = stamp
	if pair.Leaf != nil {
		r.cfg.currentCertNotAfter.Store(pair.Leaf.NotAfter.Unix())
	}
	return nil
}

// watch reloads on SIGHUP at once and, every interval, when the files'
// sizes or mtimes changed. It returns when ctx ends.
func (r *certReloader) watch(ctx context.Context, interval time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick:
			if r.fileStamp() == r.stamp {
				continue
			}
		}
		if err := r.load(); err != nil {
			r.cfg.certReloadFailures.Add(1)
			r.log.Error("TLS certificate not reloaded; still serving the previous one", "err", err)
			r.stamp = r.fileStamp() // do not retry the same broken files every tick
			continue
		}
		r.cfg.certReloads.Add(1)
		r.log.Info("TLS certificate reloaded", "file", r.cert)
	}
}
