package netns

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Impairment is what a link does to the packets crossing it one way: the
// kernel here has no netem, so an Impairer does it in user space.
type Impairment struct {
	// Delay is added to every packet.
	Delay time.Duration
	// Jitter varies each packet's delay uniformly within ±Jitter. Packets
	// keep their order (a packet waits for the one before it, as on a real
	// queue) unless Reorder is set.
	Jitter  time.Duration
	Reorder bool
	// Loss is the fraction of packets dropped at random, from 0 to 1.
	Loss float64
	// Rate limits the link to so many bits/s (0: unlimited); a packet
	// that would wait longer than Queue (default 200 ms) for the link is
	// dropped, as a full router buffer drops it.
	Rate  int
	Queue time.Duration
}

// PathStats counts what one direction of an Impairer did.
type PathStats struct {
	Forwarded int // packets delivered
	Lost      int // dropped at random (Loss)
	Dropped   int // dropped because the link's queue was full (Rate)
}

// Impairer delays, jitters, drops and rate-limits the IPv4 packets a
// router namespace forwards through one of its interfaces (NS.Impair).
// Each direction is a TUN device: policy routing sends the packets into
// it, a goroutine of the test process reads them, holds each until its
// time and writes it back, and the kernel forwards it on as usual.
type Impairer struct {
	up, down *path
}

// The TUN devices and routing tables an Impairer adds to its namespace.
const (
	tunUp, tunDown     = "imp-up", "imp-down"
	tableUp, tableDown = "1301", "1302"
	maxQueued          = 20000 // packets held per direction; more are dropped
)

// Impair makes the namespace (a router, without NAT: e.g. World.Inet)
// impair what it forwards in from ifc (up) and out to ifc (down). Traffic
// of the namespace's own sockets is not impaired. Set changes the
// impairments; everything is removed when the test ends.
func (n *NS) Impair(ifc string, up, down Impairment) *Impairer {
	t := n.topo.t
	t.Helper()
	im := &Impairer{up: newPath(up), down: newPath(down)}
	for _, p := range []struct {
		p    *path
		name string
	}{{im.up, tunUp}, {im.down, tunDown}} {
		f, err := n.openTUN(p.name)
		if err != nil {
			t.Fatalf("netns %s: impair %s: %v", n.Name, ifc, err)
		}
		p.p.f = f
		t.Cleanup(p.p.close)
		n.Run("ip", "link", "set", p.name, "up")
	}
	// Packets come back out of the TUN devices with their own source
	// addresses, which the reverse-path filter would refuse.
	n.Run("sh", "-c", "for i in all "+tunUp+" "+tunDown+"; do echo 0 > /proc/sys/net/ipv4/conf/$i/rp_filter; done")
	n.Run("ip", "route", "add", "default", "dev", tunUp, "table", tableUp)
	for _, l := range strings.Split(strings.TrimSpace(n.Run("ip", "-4", "-o", "route", "show", "dev", ifc)), "\n") {
		if dst := strings.Fields(l); len(dst) > 0 {
			n.Run("ip", "route", "add", dst[0], "dev", tunDown, "table", tableDown)
		}
	}
	for _, rule := range [][]string{
		{"pref", "1300", "iif", tunUp, "lookup", "main"}, // written back: forward as usual
		{"pref", "1301", "iif", tunDown, "lookup", "main"},
		{"pref", "1302", "iif", ifc, "lookup", tableUp},
		{"pref", "1303", "iif", "lo", "lookup", "main"}, // the namespace's own traffic
		{"pref", "1304", "lookup", tableDown},           // what is behind ifc; the rest falls through to main
	} {
		n.Run("ip", append([]string{"-4", "rule", "add"}, rule...)...)
	}
	for _, p := range []*path{im.up, im.down} {
		go p.read()
		go p.write()
	}
	return im
}

// Set replaces both directions' impairments; packets already held keep
// their times.
func (im *Impairer) Set(up, down Impairment) {
	im.up.set(up)
	im.down.set(down)
}

// Stats is what each direction did so far.
func (im *Impairer) Stats() (up, down PathStats) {
	return im.up.stats(), im.down.stats()
}

// openTUN creates a TUN device inside the namespace; it goes away when the
// returned file is closed.
func (n *NS) openTUN(name string) (*os.File, error) {
	var f *os.File
	err := n.in(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if errors.Is(err, unix.ENOENT) {
			// Some containers have no device node; root can make it.
			_ = os.MkdirAll("/dev/net", 0o755)
			if err = unix.Mknod("/dev/net/tun", unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); err == nil {
				fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
			}
		}
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w (load the tun module: modprobe tun)", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("create TUN device %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), name) // non-blocking: reads go through Go's poller
		return nil
	})
	return f, err
}

// path is one direction of an Impairer.
type path struct {
	f *os.File

	mu    sync.Mutex
	imp   Impairment
	st    PathStats
	q     packetQueue
	seq   uint64
	last  time.Time // departure of the latest packet scheduled
	txEnd time.Time // when the rate-limited link is free again
	wake  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func newPath(imp Impairment) *path {
	return &path{imp: imp, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (p *path) set(imp Impairment) {
	p.mu.Lock()
	p.imp = imp
	p.mu.Unlock()
}

func (p *path) stats() PathStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

func (p *path) close() {
	p.once.Do(func() {
		close(p.done)
		p.f.Close()
	})
}

// read takes packets off the TUN device and schedules them.
func (p *path) read() {
	buf := make([]byte, 65536)
	for {
		n, err := p.f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.close()
			}
			return
		}
		if n == 0 || buf[0]>>4 != 4 {
			continue // IPv4 only (the device may see IPv6 link-local chatter)
		}
		if p.schedule(append([]byte(nil), buf[:n]...), time.Now()) {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
}

// schedule decides a packet's fate: dropped, or held until its departure.
// It reports whether the packet was queued.
func (p *path) schedule(pkt []byte, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	imp := p.imp
	if imp.Loss > 0 && rand.Float64() < imp.Loss {
		p.st.Lost++
		return false
	}
	at := now
	if imp.Rate > 0 {
		queue := imp.Queue
		if queue == 0 {
			queue = 200 * time.Millisecond
		}
		start := now
		if p.txEnd.After(start) {
			start = p.txEnd
		}
		end := start.Add(time.Duration(float64(len(pkt)*8) / float64(imp.Rate) * float64(time.Second)))
		if end.Sub(now) > queue {
			p.st.Dropped++
			return false
		}
		p.txEnd, at = end, end
	}
	d := imp.Delay
	if imp.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * float64(imp.Jitter))
	}
	at = at.Add(max(d, 0))
	if !imp.Reorder && at.Before(p.last) {
		at = p.last
	}
	if len(p.q) >= maxQueued {
		p.st.Dropped++
		return false
	}
	p.last = at
	p.seq++
	heap.Push(&p.q, held{at: at, seq: p.seq, pkt: pkt})
	return true
}

// write sends each held packet back into the kernel at its time.
func (p *path) write() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		var due []held
		now := time.Now()
		for len(p.q) > 0 && !p.q[0].at.After(now) {
			due = append(due, heap.Pop(&p.q).(held))
		}
		wait := time.Hour
		if len(p.q) > 0 {
			wait = p.q[0].at.Sub(now)
		}
		p.st.Forwarded += len(due)
		p.mu.Unlock()
		for _, h := range due {
			if _, err := p.f.Write(h.pkt); errors.Is(err, os.ErrClosed) {
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-p.done:
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// held is a packet waiting for its departure; seq keeps packets due at the
// same time in arrival order.
type held struct {
	at  time.Time
	seq uint64
	pkt []byte
}

type packetQueue []held

func (q packetQueue) Len() int { return len(q) }
func (q packetQueue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q packetQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *packetQueue) Push(x any)   { *q = append(*q, x.(held)) }
func (q *packetQueue) Pop() any {
	old := *q
	h := old[len(old)-1]
	*q = old[:len(old)-1]
	return h
}
