package consultest

import (
	"errors"
	"net"
	"os"
	"runtime"
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

// A reserved port refuses connections until Listen, and then the
// listener, on the same address, accepts them.
func TestReserveThenListen(t *testing.T) {
	p := Reserve(t)
	if c, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial %s before Listen: %v, want connection refused", p.Addr(), err)
	}
	ln, err := p.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != p.Addr() {
		t.Fatalf("listener on %s, want %s", got, p.Addr())
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial %s after Listen: %v", p.Addr(), err)
	}
	c.Close()
	if _, err := p.Listen(); err == nil {
		t.Fatal("a second Listen succeeded")
	}
}

// StartRetrying tries a start again on a port taken, at most three times
// in all, and not on any other error.
func TestStartRetrying(t *testing.T) {
	taken := &net.OpError{Op: "listen", Net: "tcp", Err: &os.SyscallError{Syscall: "bind", Err: syscall.EADDRINUSE}}
	tests := []struct {
		name      string
		errs      []error // the starts' results, in order
		wantTries int
		wantFail  bool
	}{
		{"first start", []error{nil}, 1, false},
		{"port taken once", []error{taken, nil}, 2, false},
		{"port taken three times", []error{taken, taken, taken}, 3, true},
		{"another error", []error{errors.New("bad flag")}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tries := 0
			failed := runFailing(func(ft testing.TB) {
				StartRetrying(ft, "start", func() error { tries++; return tt.errs[tries-1] })
			})
			if tries != tt.wantTries || failed != tt.wantFail {
				t.Fatalf("%d tries, failed %v; want %d tries, failed %v", tries, failed, tt.wantTries, tt.wantFail)
			}
		})
	}
}

// runFailing runs fn with a testing.TB whose Fatal ends fn, and reports
// whether it was called.
func runFailing(fn func(testing.TB)) (failed bool) {
	ft := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft.failed
}

type fatalTB struct {
	testing.TB
	failed bool
}

func (f *fatalTB) Helper()               {}
func (f *fatalTB) Logf(string, ...any)   {}
func (f *fatalTB) Fatal(...any)          { f.failed = true; runtime.Goexit() }
func (f *fatalTB) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }
