package client

import (
	"fmt"
	"io"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// keptPacket is one received audio packet and when it arrived (KeepAudio).
type keptPacket struct {
	pkt *rtp.Packet
	at  time.Time
}

func (c *Client) keep(participant string, pkt *rtp.Packet, at time.Time) {
	cp := pkt.Clone()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kept == nil {
		c.kept = map[string][]keptPacket{}
	}
	c.kept[participant] = append(c.kept[participant], keptPacket{pkt: cp, at: at})
}

// AudioArrivals returns when each audio packet from participant arrived, in
// order (KeepAudio option).
func (c *Client) AudioArrivals(participant string) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Time, len(c.kept[participant]))
	for i, k := range c.kept[participant] {
		out[i] = k.at
	}
	return out
}

// AudioOgg writes the Opus audio received from participant that arrived in
// [from, to) as an Ogg Opus stream (KeepAudio option), for a decoder to say
// what the listener heard. It returns the number of packets written.
func (c *Client) AudioOgg(w io.Writer, participant string, from, to time.Time) (int, error) {
	c.mu.Lock()
	var pkts []*rtp.Packet
	for _, k := range c.kept[participant] {
		if !k.at.Before(from) && k.at.Before(to) {
			pkts = append(pkts, k.pkt)
		}
	}
	c.mu.Unlock()
	if len(pkts) == 0 {
		return 0, fmt.Errorf("client: no audio from %s arrived in that window", participant)
	}
	ow, err := oggwriter.NewWith(w, 48000, 2)
	if err != nil {
		return 0, err
	}
	for _, p := range pkts {
		if err := ow.WriteRTP(p); err != nil {
			return 0, err
		}
	}
	return len(pkts), ow.Close()
}
