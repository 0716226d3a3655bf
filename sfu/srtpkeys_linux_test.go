//go:build linux

package sfu

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// handshakeKeys are the SRTP keys of one real DTLS handshake between
// pion peers, as the capture puts them together.
func handshakeKeys(tb testing.TB) SRTPKeys {
	tb.Helper()
	p := newKeyPair(tb, 0, 0, webrtc.Configuration{RTPHeaderEncryptionPolicy: webrtc.RTPHeaderEncryptionPolicyDisable})
	if _, err := p.client.AddTrack(opusTrack(tb, "up")); err != nil {
		tb.Fatal(err)
	}
	negotiate(tb, p.client, p.server)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys, err := p.capture.Keys(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

func threadCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkOwnMediaPath measures the media path the keys make possible, on
// real sockets with the keys of a real handshake: one goroutine reads the
// publisher's SRTP in batches (the UDP port's recvmmsg reader), decrypts
// it, rewrites the SSRC for each subscriber, encrypts it with that
// subscriber's key and sends each batch with one sendmmsg. A second
// goroutine plays the publisher (it encrypts as a browser would) and may run
// up to 64 packets ahead, so reads find up to a full batch queued
// (reads/pkt says how full): the best case for batching, which a live
// server's 50-packet/s streams reach only under load. A third goroutine
// drains the subscribers' socket. cpu-µs/pkt is the forwarding thread's CPU
// (system calls included; not the publisher's, the drain's or the GC's) per
// packet delivered to one subscriber: with 4 subscribers a packet read
// costs four times the figure. ns/op is wall time per packet read.
func BenchmarkOwnMediaPath(b *testing.B) {
	keys := handshakeKeys(b)
	for _, c := range []struct {
		kind       string
		size, subs int
	}{{"audio", 120, 1}, {"video", 1200, 1}, {"audio", 120, 4}, {"video", 1200, 4}} {
		b.Run(fmt.Sprintf("%s/subs=%d", c.kind, c.subs), func(b *testing.B) { benchOwnPath(b, keys, c.size, c.subs) })
	}
}

func listenLoopback(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	_ = c.SetReadBuffer(8 << 20)
	_ = c.SetWriteBuffer(8 << 20)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func benchOwnPath(b *testing.B, keys SRTPKeys, size, subs int) {
	pubConn, fwdConn, subConn := listenLoopback(b), listenLoopback(b), listenLoopback(b)
	in, err := newIngressConn(fwdConn, nil, 0)
	if err != nil {
		b.Fatal(err)
	}
	out := ipv4.NewPacketConn(fwdConn)
	publisher, err := srtp.CreateContext(keys.RemoteKey, keys.RemoteSalt, keys.Profile)
	if err != nil {
		b.Fatal(err)
	}
	_, opener, err := keys.Contexts()
	if err != nil {
		b.Fatal(err)
	}
	sealers := make([]*srtp.Context, subs)
	for i := range sealers {
		if sealers[i], _, err = keys.Contexts(); err != nil {
			b.Fatal(err)
		}
	}
	var forwarded atomic.Int64
	const window = 64 // packets the publisher may be ahead: within a default 212 KB receive buffer
	go func() {       // the publisher
		payload := make([]byte, size)
		for i := range b.N {
			for int64(i)-forwarded.Load() > window {
				runtime.Gosched()
			}
			h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 0x1234}
			plain, _ := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
			sealed, err := publisher.EncryptRTP(nil, plain, nil)
			if err != nil {
				panic(err)
			}
			if _, err := pubConn.WriteTo(sealed, fwdConn.LocalAddr()); err != nil {
				return
			}
		}
	}()
	go func() { // the subscribers' socket
		buf := make([]byte, 2048)
		for {
			if _, _, err := subConn.ReadFrom(buf); err != nil {
				return
			}
		}
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	to := subConn.LocalAddr()
	batch, k := make([]ipv4.Message, ingressBatch*subs), 0
	for i := range batch {
		batch[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 0, 1500)}, Addr: to}
	}
	raw, plain := make([]byte, ingressMTU), make([]byte, 0, 1500)
	var h rtp.Header
	b.ResetTimer()
	cpu0 := threadCPU(b)
	for n := 0; n < b.N; {
		_ = fwdConn.SetReadDeadline(time.Now().Add(2 * time.Second))
		m, _, err := in.ReadFromAddrPort(raw)
		if err != nil {
			b.Fatalf("forwarded %d of %d: %v", n, b.N, err)
		}
		if plain, err = opener.DecryptRTP(plain[:0], raw[:m], &h); err != nil {
			b.Fatal(err)
		}
		for s, sealer := range sealers {
			binary.BigEndian.PutUint32(plain[8:], uint32(0x5000+s)) // the subscriber's SSRC
			m := &batch[k]
			if m.Buffers[0], err = sealer.EncryptRTP(m.Buffers[0][:0], plain, nil); err != nil {
				b.Fatal(err)
			}
			k++
		}
		n++
		forwarded.Store(int64(n))
		if in.next == in.have || n == b.N { // the batch read is done: send its packets at once
			for sent := 0; sent < k; {
				w, err := out.WriteBatch(batch[sent:k], 0)
				if err != nil {
					b.Fatal(err)
				}
				sent += w
			}
			k = 0
		}
	}
	cpu := threadCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*subs), "cpu-µs/pkt")
	b.ReportMetric(float64(in.batches)/float64(max(b.N, 1)), "reads/pkt")
}
