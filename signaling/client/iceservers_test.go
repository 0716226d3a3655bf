package client

import (
	"sync"
	"testing"
)

// The interface list can be refreshed (as RestartICE does on a network
// change) while ICE agents gathering candidates read it. Run with -race:
// without the lock the detector reports the refresh against the reads.
func TestInterfaceListRefreshedWhileRead(t *testing.T) {
	n, err := newTimeoutNet()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 50 {
			if err := n.UpdateInterfaces(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 50 {
			ifs, err := n.Interfaces()
			if err != nil {
				t.Error(err)
				return
			}
			for _, ifc := range ifs {
				if _, err := n.InterfaceByName(ifc.Name); err != nil {
					t.Error(err)
					return
				}
				_, _ = ifc.Addrs()
			}
		}
	}()
	wg.Wait()
}
