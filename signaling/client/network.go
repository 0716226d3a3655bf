package client

import (
	"github.com/medcall/medcall/sfu"
	"github.com/pion/webrtc/v4"
)

// networkTypes are the ICE transports the client gathers on.
func networkTypes(o Options) []webrtc.NetworkType {
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if o.ICETCP {
		types = append(types, webrtc.NetworkTypeTCP4)
	}
	return types
}

// SelectedPair is the candidate pair ICE selected on one of the client's
// connections, described without addresses: candidate types (host, srflx,
// prflx, relay) and the transport protocol (udp, tcp).
type SelectedPair struct {
	Local, Remote, Protocol string
}

// SelectedPair returns the pair the publish or subscribe connection uses,
// and false while none is selected.
func (c *Client) SelectedPair(pc sfu.PC) (SelectedPair, bool) {
	conn := c.pc(pc)
	if conn == nil {
		return SelectedPair{}, false
	}
	p, err := conn.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil || p.Local == nil || p.Remote == nil {
		return SelectedPair{}, false
	}
	return SelectedPair{Local: p.Local.Typ.String(), Remote: p.Remote.Typ.String(), Protocol: p.Local.Protocol.String()}, true
}
