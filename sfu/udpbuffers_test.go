package sfu

import (
	"bytes"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSetSocketBuffers: the UDP port's socket gets the buffers asked for, up
// to the kernel's ceiling (net.core.rmem_max, wmem_max) unless the process
// may pass it (CAP_NET_ADMIN), and a ceiling below the request is logged
// with the sysctl that raises it.
func TestSetSocketBuffers(t *testing.T) {
	rmax, wmax := sysctlInt(t, "net/core/rmem_max"), sysctlInt(t, "net/core/wmem_max")
	if hasNetAdmin(t) {
		rmax, wmax = math.MaxInt32/2, math.MaxInt32/2
	}
	for _, size := range []int{256 << 10, DefaultUDPSocketBuffer, 64 << 20} {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		setSocketBuffers(conn, size, slog.New(slog.NewTextHandler(&logs, nil)))
		rcv, snd := socketBuffers(conn)
		conn.Close()
		if want := min(size, rmax); rcv/2 != want {
			t.Errorf("asked %d: receive buffer %d, want %d (rmem_max %d)", size, rcv/2, want, rmax)
		}
		if want := min(size, wmax); snd/2 != want {
			t.Errorf("asked %d: send buffer %d, want %d (wmem_max %d)", size, snd/2, want, wmax)
		}
		warned := strings.Contains(logs.String(), "net.core.rmem_max")
		if capped := size > rmax || size > wmax; warned != capped {
			t.Errorf("asked %d with ceilings %d/%d: warned %v, want %v; log: %s", size, rmax, wmax, warned, capped, logs.String())
		}
	}
}

// hasNetAdmin reports whether this process holds CAP_NET_ADMIN (bit 12 of
// its effective capabilities), which lets it pass the sysctl ceilings.
func hasNetAdmin(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v (Linux only)", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", hex, err)
			}
			return caps&(1<<12) != 0
		}
	}
	return false
}

func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Skipf("no %s: %v (Linux only)", name, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// TestSocketDropsCountsWhatAFullBufferLost: every datagram the kernel could
// not queue on a full socket is in the drop count the metric reports.
func TestSocketDropsCountsWhatAFullBufferLost(t *testing.T) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	before, ok := socketDrops(conn)
	if !ok {
		t.Skip("the socket's drop count cannot be read here (Linux's SO_MEMINFO)")
	}
	out, err := net.DialUDP("udp", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	const sent = 200
	for range sent {
		if _, err := out.Write(make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	buf := make([]byte, 2000)
	for {
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := conn.Read(buf); err != nil {
			break
		}
		received++
	}
	after, _ := socketDrops(conn)
	if received == sent || after-before != uint64(sent-received) {
		t.Errorf("sent %d into a 4 KiB buffer, read %d: %d counted as dropped, want %d", sent, received, after-before, sent-received)
	}
}
