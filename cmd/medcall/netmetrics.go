package main

import (
	"github.com/medcall/medcall/sfu"
	"github.com/prometheus/client_golang/prometheus"
)

// watchNetwork adds the series about how clients reach the server: the
// candidate pair each media connection selected (counted by type and
// protocol, never by participant) and, with TLS, certificate reloads and
// expiry.
func (m *metrics) watchNetwork(t *tlsConfig) {
	pairs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "medcall", Name: "ice_selected_pairs_total",
		Help: "Candidate pairs ICE selected (once per media connection, again after an ICE restart): pc (publish, subscribe), the client candidate's type (host, srflx, prflx, relay) and the transport to it (udp, tcp).",
	}, []string{"pc", "candidate_type", "protocol"})
	m.reg.MustRegister(pairs)
	m.sfu.OnSelectedPair = func(pc sfu.PC, typ, proto string) { pairs.WithLabelValues(string(pc), typ, proto).Inc() }
	for i, pc := range []sfu.PC{sfu.PCPublish, sfu.PCSubscribe} {
		counterFunc(m.reg, "ice_restarts_total", "ICE restarts applied (a client's network changed and it kept its place): pc publish (the client re-offered) or subscribe (the server re-offered at its request).",
			prometheus.Labels{"pc": string(pc)}, u64(&m.sfu.ICERestarts[i]))
	}
	if !t.tlsOn || t.acmeManager != nil {
		return
	}
	counterFunc(m.reg, "tls_cert_reloads_total", "TLS certificate files reloaded (SIGHUP or change).", prometheus.Labels{"outcome": "ok"}, u64(&t.certReloads))
	counterFunc(m.reg, "tls_cert_reloads_total", "TLS certificate files reloaded (SIGHUP or change).", prometheus.Labels{"outcome": "failed"}, u64(&t.certReloadFailures))
	gaugeFunc(m.reg, "tls_cert_expiry_timestamp_seconds", "When the served TLS certificate expires (Unix time).", func() float64 { return float64(t.currentCertNotAfter.Load()) })
}
