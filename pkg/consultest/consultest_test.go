package consultest

import (
	"errors"
	"net"
	"syscall"
	"testing"
)

// A connection to RefusedAddr is refused, and no listener can take its
// port while the test runs.
func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t)
	if c, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); !errors.Is(err, syscall.EADDRINUSE) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("listen on %s: %v, want address in use", addr, err)
	}
}

// An agent that cannot bind a port it was given says so with
// errPortTaken, which Start takes as a reason to try other ports.
func TestStartOnATakenPort(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := FreePorts(t, 3)
	a := &Agent{t: t, bin: bin, ports: ports{http: p[0], server: p[1], serfLAN: l.Addr().(*net.TCPAddr).Port, serfWAN: p[2]}}
	err = a.start()
	a.Stop()
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("start with the LAN port taken: %v, want errPortTaken", err)
	}
}
