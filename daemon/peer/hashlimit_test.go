package peer

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exless/exless/internal/testproc"
)

// distinctHelpers copies the helper binary to n paths, each with its own
// trailing bytes, so every copy hashes apart and none is cached.
func distinctHelpers(t *testing.T, n int) []string {
	t.Helper()
	a, _ := helperBinaries(t)
	dir := testproc.PublicDir(t)
	bins := make([]string, n)
	for i := range bins {
		bins[i] = filepath.Join(dir, fmt.Sprintf("peer-%d", i))
		if err := testproc.CopyFile(bins[i], a, fmt.Appendf(nil, "\nexless distinct %d\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	return bins
}

// connectAll starts a peer per binary, lets them all connect at once and
// returns the accepted connections in no particular order.
func connectAll(t *testing.T, bins []string) []*net.UnixConn {
	t.Helper()
	ln, sock := listen(t)
	peers := make([]*peerProc, len(bins))
	for i, b := range bins {
		peers[i] = startPeer(t, sock, peerSpec{bin: b})
	}
	for _, p := range peers {
		p.letConnect()
	}
	conns := make([]*net.UnixConn, len(bins))
	for i := range conns {
		conns[i] = accept(t, ln)
	}
	return conns
}

// Many peers running distinct, never-seen binaries connect at once: no
// more than the cap are hashed at a time, and every one is still attested
// with its own executable's hash.
func TestAttestExeHashConcurrencyCap(t *testing.T) {
	const peers, capacity = 8, 2
	bins := distinctHelpers(t, peers)
	want := map[string]bool{}
	for _, b := range bins {
		want[fileSHA256(t, b)] = true
	}
	at := NewAttestor(Options{})
	at.LimitHashing(capacity, time.Minute)

	// Hold every hash until the cap is reached, so the test sees the
	// cap filled rather than hoping the hashes overlap.
	var inside atomic.Int32
	full := make(chan struct{})
	var fullOnce sync.Once
	testHookHashing = func() {
		if inside.Add(1) >= capacity {
			fullOnce.Do(func() { close(full) })
		}
		<-full
	}
	t.Cleanup(func() { testHookHashing = nil })

	conns := connectAll(t, bins)
	ids := make([]*Identity, peers)
	errs := make([]error, peers)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { ids[i], errs[i] = at.Attest(c, ExePathHash) })
	}
	wg.Wait()
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("Attest: %v", errs[i])
		}
		if !id.ExeKnown() || !want[id.ExeSHA256] {
			t.Errorf("peer %d (%s): sha %q err %q, want the hash of its own binary", id.PID, id.ExePath, id.ExeSHA256, id.ExeErr)
		}
		delete(want, id.ExeSHA256)
	}
	if got := at.MaxHashesInFlight(); got != capacity {
		t.Errorf("at most %d executables hashed at once, want the cap %d", got, capacity)
	}
	if got := at.HashCount(); got != peers {
		t.Errorf("HashCount = %d, want %d", got, peers)
	}
}

// A peer that cannot get a turn to hash within the wait is attested
// without its executable (exe rules then refuse it) instead of holding its
// connection's goroutine past its deadline.
func TestAttestExeHashWaitIsBounded(t *testing.T) {
	bins := distinctHelpers(t, 2)
	at := NewAttestor(Options{})
	at.LimitHashing(1, 200*time.Millisecond)
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	testHookHashing = func() {
		entered <- struct{}{}
		<-release
	}
	t.Cleanup(func() { testHookHashing = nil })

	conns := connectAll(t, bins)
	first := make(chan *Identity, 1)
	go func() {
		id, _ := at.Attest(conns[0], ExePathHash)
		first <- id
	}()
	<-entered // the only turn is taken
	id, err := at.Attest(conns[1], ExePathHash)
	close(release)
	if err != nil {
		t.Fatalf("Attest: %v", err)
	}
	if id.ExeKnown() || !strings.Contains(id.ExeErr, "busy hashing") {
		t.Errorf("waited past the bound: sha %q err %q, want a busy ExeErr", id.ExeSHA256, id.ExeErr)
	}
	if id := <-first; id == nil || !id.ExeKnown() {
		t.Errorf("the peer holding the turn was not attested with its executable: %+v", id)
	}
}

// An executable over the size limit is refused from its fstat alone: a
// sparse file far larger than anything worth reading is never hashed.
func TestAttestExeSizeLimitSparse(t *testing.T) {
	bin := distinctHelpers(t, 1)[0]
	if err := os.Truncate(bin, DefaultMaxExeSize*4); err != nil {
		t.Fatal(err)
	}
	conns := connectAll(t, []string{bin})
	at := NewAttestor(Options{})
	id, err := at.Attest(conns[0], ExePathHash)
	if err != nil {
		t.Fatal(err)
	}
	if id.ExeKnown() || !strings.Contains(id.ExeErr, fmt.Sprintf("over the %d-byte limit", DefaultMaxExeSize)) {
		t.Errorf("sparse oversized exe: sha %q err %q", id.ExeSHA256, id.ExeErr)
	}
	if at.HashCount() != 0 || at.MaxHashesInFlight() != 0 {
		t.Errorf("the oversized executable was read: HashCount %d", at.HashCount())
	}
}
