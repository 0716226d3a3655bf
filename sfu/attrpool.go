package sfu

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// pion hands its interceptor chains nil attributes, so a new map is made for
// every packet: by the first interceptor that parses each packet or report
// received (and the interceptors before that one parse it again), and, when
// this was written, by pion's bandwidth estimator for each packet sent
// (sfu/gcc, the copy medcall now uses, makes none). The heap profile at N=50
// put these maps and parses at 40 % of the server's allocations.
//
// attrsFactory, registered last (outermost), gives each packet one map from
// a pool for the whole chain, so the first parse is cached for the others,
// and takes it back when the chain returns. Nothing in the chains keeps the
// map past the call (the RTP paths return nil attributes to medcall's
// readers, which ignore them; the RTCP path returns the map to
// Participant.readSenderRTCP and Receiver.readRTCP, which read the cached
// parse and give it back with putAttributes). That holds because the
// bandwidth estimator (sfu/gcc) has no pacer and writes at once: a
// queueing pacer would keep the map past the call.
type attrsFactory struct{}

func (attrsFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &attrsInterceptor{}, nil
}

type attrsInterceptor struct{ interceptor.NoOp }

var attrsPool = sync.Pool{New: func() any { return interceptor.Attributes{} }}

func getAttributes() interceptor.Attributes { return attrsPool.Get().(interceptor.Attributes) }

// putAttributes empties a and returns it to the pool; nil is ignored.
func putAttributes(a interceptor.Attributes) {
	if a == nil {
		return
	}
	clear(a)
	attrsPool.Put(a)
}

// BindLocalStream lends the send chain one map per packet.
func (*attrsInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		if a != nil {
			return w.Write(h, p, a)
		}
		a = getAttributes()
		n, err := w.Write(h, p, a)
		putAttributes(a)
		return n, err
	})
}

// BindRemoteStream lends the receive chain one map per packet; the reader
// (Receiver.start) gets nil attributes.
func (*attrsInterceptor) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if a != nil {
			return r.Read(b, a)
		}
		a = getAttributes()
		n, _, err := r.Read(b, a)
		putAttributes(a)
		return n, nil, err
	})
}

// BindRTCPReader lends the RTCP chain a map for each report; the caller
// gives it back with putAttributes once it has read the parse.
func (*attrsInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if a != nil {
			return r.Read(b, a)
		}
		a = getAttributes()
		n, a2, err := r.Read(b, a)
		if err != nil {
			putAttributes(a)
			return n, nil, err
		}
		return n, a2, nil
	})
}
