package sfu

import (
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// nackCounter is an interceptor that counts the NACKs the SFU sends to
// publishers. It is registered ahead of pion's NACK generator so that the
// generator's writes pass through it.
type nackCounter struct {
	interceptor.NoOp
	m *Metrics
}

func (c *nackCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, attrs interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if _, ok := p.(*rtcp.TransportLayerNack); ok {
				c.m.NACKSent.Add(1)
			}
		}
		return w.Write(pkts, attrs)
	})
}

type nackCounterFactory struct{ m *Metrics }

func (f nackCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackCounter{m: f.m}, nil
}
