package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/webrtc/v4"
)

// What the client publishes and how it changes: offer/answer on the publish
// connection, the upgrade to video by either path, and pausing the pumps.

// negotiatePublish runs one offer/answer on the publish connection.
func (c *Client) negotiatePublish(ctx context.Context) error { return c.offerPublish(ctx, nil) }

// offerPublish runs one offer/answer on the publish connection with opts
// (an ICE restart, icerestart.go).
//
// pion cannot roll a local offer back (v4.2: have-local-offer refuses
// SetLocal(rollback)), so an offer whose answer never came (the request
// timed out, or the socket carrying it died) would leave the connection
// unable to offer again, every later ICE restart or upgrade failing. That
// offer is sent again first, as the server does with its subscribe offer
// after a resume (sfu.Participant.ResendOffer), and its answer applied.
func (c *Client) offerPublish(ctx context.Context, opts *webrtc.OfferOptions) error {
	if pending := c.pub.PendingLocalDescription(); pending != nil && c.pub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		c.log.Info("sending the publish offer that had no answer again")
		if err := c.exchangePublish(ctx, pending.SDP); err != nil {
			return err
		}
	}
	offer, err := c.pub.CreateOffer(opts)
	if err != nil {
		return err
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return err
	}
	c.countSDP()
	return c.exchangePublish(ctx, offer.SDP)
}

// exchangePublish sends the publish offer already set as the local
// description and applies the server's answer.
func (c *Client) exchangePublish(ctx context.Context, offer string) error {
	reply, err := c.Request(ctx, signaling.Message{Type: signaling.TypeOffer, PC: string(sfu.PCPublish), SDP: offer})
	if err != nil {
		return err
	}
	c.countSDP()
	if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: reply.SDP}); err != nil {
		return err
	}
	c.flushCandidates(sfu.PCPublish)
	return nil
}

// drainRTCP reads a sender's RTCP (pion's interceptors need it read) and
// turns keyframe requests into a jump to the latest keyframe.
func (c *Client) drainRTCP(s *webrtc.RTPSender, p *pump) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			c.feedback.count(pkts)
			if p != nil && hasKeyframeRequest(pkts) {
				p.requestKeyframe()
			}
		}
	}()
}

// Upgrade turns video on by the given path (signaling.PathPrenegotiated or
// signaling.PathRenegotiate). Once a renegotiated video transceiver exists, a
// later upgrade reuses it without SDP.
func (c *Client) Upgrade(ctx context.Context, path string) error {
	if c.video == nil {
		return errors.New("client: no video file to upgrade with")
	}
	c.upMu.Lock()
	defer c.upMu.Unlock()
	switch path {
	case signaling.PathPrenegotiated:
		if !c.opts.Prenegotiate && !c.videoAdded {
			return errors.New("client: the pre-negotiated path needs Options.Prenegotiate")
		}
	case signaling.PathRenegotiate:
		if !c.videoAdded {
			sender, err := c.pub.AddTrack(c.videoTrack)
			if err != nil {
				return err
			}
			c.videoSender, c.videoAdded, c.videoBound = sender, true, true
			c.drainRTCP(sender, c.video)
			if err := c.negotiatePublish(ctx); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("client: unknown upgrade path %q", path)
	}
	// The notice goes first so a re-upgrade is unmuted before its RTP arrives.
	c.notify(signaling.Message{Type: signaling.TypeMedia, Video: ptr(true), Path: path})
	if !c.videoBound {
		if err := c.videoSender.ReplaceTrack(c.videoTrack); err != nil {
			return err
		}
		c.videoBound = true
	}
	c.video.setOn(true)
	return nil
}

// Downgrade turns video off; the transceiver stays for a fast re-upgrade.
func (c *Client) Downgrade(ctx context.Context) error {
	if c.video == nil {
		return errors.New("client: no video")
	}
	c.upMu.Lock()
	defer c.upMu.Unlock()
	c.video.setOn(false)
	_, err := c.Request(ctx, signaling.Message{Type: signaling.TypeMedia, Video: ptr(false)})
	return err
}

// StopSending pauses every media pump without telling the server, as a
// client does just before leaving so that nothing is in flight when it goes.
func (c *Client) StopSending() {
	for _, p := range []*pump{c.audio, c.video} {
		if p != nil {
			p.setOn(false)
		}
	}
}
