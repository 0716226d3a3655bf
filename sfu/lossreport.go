package sfu

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// Opus in-band FEC is negotiated on every connection (useinbandfec=1,
// sfu.go), but a browser's Opus encoder spends bits on it only in
// proportion to the loss its receiver reports: the fraction lost in the
// receiver reports for its audio. Between a publisher and an SFU that is
// the loss of the publisher's own uplink, usually none, while the loss
// that matters happens on the way to the subscribers. So the receiver
// reports the SFU sends a publisher carry, for each audio track, the
// highest fraction lost any of its subscribers reported recently (if it
// is higher than the uplink's own), as Galène and LiveKit do. Video
// reports are left alone: video loss is repaired by NACKs and steered by
// the rate control.

// lossFresh is how long a subscriber's reported loss counts.
const lossFresh = 5 * time.Second

// lossReports is the fraction lost (RFC 3550, in 1/256) a subscriber last
// reported for each stream the SFU sends it, and when.
type lossReports struct{ m sync.Map } // ssrc -> lossReport

type lossReport struct {
	fraction uint8
	at       time.Time
}

func (r *lossReports) note(reports []rtcp.ReceptionReport, now time.Time) {
	for _, rep := range reports {
		r.m.Store(rep.SSRC, lossReport{rep.FractionLost, now})
	}
}

// of is the fraction lost last reported for ssrc, 0 when none is fresh.
func (r *lossReports) of(ssrc uint32, now time.Time) uint8 {
	v, ok := r.m.Load(ssrc)
	if !ok || now.Sub(v.(lossReport).at) > lossFresh {
		return 0
	}
	return v.(lossReport).fraction
}

// downstreamLoss is the highest fraction lost the subscribers of the audio
// track the publish connection pcID receives as ssrc reported for it.
func (s *SFU) downstreamLoss(pcID string, ssrc uint32) uint8 {
	now := time.Now()
	var worst uint8
	for _, r := range s.audioReceivers(pcID) {
		if r.ssrc.Load() != ssrc {
			continue
		}
		for _, d := range *r.downs.Load() {
			if b := d.bound.Load(); b != nil && d.sub.link != nil {
				worst = max(worst, d.sub.link.losses.of(b.ssrc, now))
			}
		}
	}
	return worst
}

// audioReceivers are the audio tracks published on the connection pcID.
// Each publish connection's receiver reports ask, so it is a lookup
// (SFU.publishers), not a walk through every consultation.
func (s *SFU) audioReceivers(pcID string) []*Receiver {
	v, ok := s.publishers.Load(pcID)
	if !ok {
		return nil
	}
	var out []*Receiver
	for _, r := range v.(*Participant).receivers() {
		if r.kind == KindAudio {
			out = append(out, r)
		}
	}
	return out
}

// lossReporterFactory builds, on publish connections, the interceptor that
// raises the fraction lost in outgoing receiver reports to the subscribers'
// (ls.downLoss). It must be registered before pion's receiver reports, so
// that what they write passes through it.
type lossReporterFactory struct{ ls *links }

func (f lossReporterFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &lossReporter{id: id, ls: f.ls}, nil
}

type lossReporter struct {
	interceptor.NoOp
	id string
	ls *links
}

func (r *lossReporter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		if down := r.ls.downLoss; down != nil {
			for _, p := range pkts {
				if rr, ok := p.(*rtcp.ReceiverReport); ok {
					for i := range rr.Reports {
						rr.Reports[i].FractionLost = max(rr.Reports[i].FractionLost, down(r.id, rr.Reports[i].SSRC))
					}
				}
			}
		}
		return w.Write(pkts, a)
	})
}
