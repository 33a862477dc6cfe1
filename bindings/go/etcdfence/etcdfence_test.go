package etcdfence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// etcdClient connects to the etcd of FENCEKIT_ETCD_ENDPOINTS (tests/etcd.sh starts one); the
// test is skipped without it, or fails when FENCEKIT_ETCD_REQUIRED is set.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	endpoints := os.Getenv("FENCEKIT_ETCD_ENDPOINTS")
	if endpoints == "" {
		if os.Getenv("FENCEKIT_ETCD_REQUIRED") != "" {
			t.Fatal("FENCEKIT_ETCD_REQUIRED is set but FENCEKIT_ETCD_ENDPOINTS is not")
		}
		t.Skip("no etcd: run tests/etcd.sh, which starts one")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "fencekit-probe"); err != nil {
		t.Fatalf("etcd at %s: %v", endpoints, err)
	}
	return cli
}

func session(t *testing.T, cli *clientv3.Client, ttl int) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// prefix is a key prefix of this test's own, so that runs and tests never share an election.
func prefix(t *testing.T) string {
	return fmt.Sprintf("/fencekit-test/%s/%d", t.Name(), time.Now().UnixNano())
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func check(t *testing.T, f *fencekit.Fence, r uint32, l Leader, want fencekit.VerdictKind) {
	t.Helper()
	id, err := f.SourceID(l.Source)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.CheckFrom(r, id, l.Token)
	if err != nil || v.Kind != want {
		t.Fatalf("the token of %s (%v): %v %v, want %v", l.Key, l.Token, v.Kind, err, want)
	}
}

// The seed's scenario, with a real lease expiry: a leader's process pauses (its session stops
// refreshing, as under SIGSTOP) until its lease expires; the next candidate wins with a
// higher generation from the same source; once the new leader has presented its token, the
// old token is stale. The old leader can get no token any more, and its Leader says that its
// session has ended.
func TestANewLeaderFencesTheOldOneAfterItsLeaseExpires(t *testing.T) {
	cli := etcdClient(t)
	ctx := timeout(t)
	pfx := prefix(t)
	s1, s2 := session(t, cli, 1), session(t, cli, 1)
	e1, e2 := concurrency.NewElection(s1, pfx), concurrency.NewElection(s2, pfx)
	old, err := Campaign(ctx, s1, e1, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if old.Token.Generation != uint64(e1.Rev()) || old.Token.Holder != uint64(s1.Lease()) || old.Key != e1.Key() {
		t.Fatalf("leader %+v: not (Rev %d, lease %x) of key %s", old, e1.Rev(), s1.Lease(), e1.Key())
	}
	won := make(chan Leader, 1)
	lost := make(chan error, 1)
	go func() {
		l, err := Campaign(ctx, s2, e2, "node-2")
		if err != nil {
			lost <- err
			return
		}
		won <- l
	}()
	select {
	case l := <-won:
		t.Fatalf("a second leader while the first's session lives: %+v", l)
	case err := <-lost:
		t.Fatal(err)
	case <-time.After(300 * time.Millisecond):
	}

	dir := t.TempDir()
	f, err := fencekit.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	jobs, _ := f.Register([]byte("jobs"))
	check(t, f, jobs, old, fencekit.VerdictAdvanced)

	// The pause: the session stops refreshing its lease, which etcd expires after its TTL.
	zombie := old
	zombie.done = nil // a paused process has not noticed anything
	s1.Orphan()
	var next Leader
	select {
	case next = <-won:
	case err := <-lost:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("no new leader after the old lease expired")
	}
	if next.Source != old.Source || next.Token.Generation <= old.Token.Generation || next.Token.Holder != uint64(s2.Lease()) {
		t.Fatalf("the new leader %+v does not follow the old %+v", next, old)
	}
	check(t, f, jobs, next, fencekit.VerdictAdvanced)
	check(t, f, jobs, zombie, fencekit.VerdictStale)
	check(t, f, jobs, next, fencekit.VerdictAccepted)

	if _, err := FromElection(ctx, s1, e1); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old leader got a token again: %v", err)
	}
	if !old.Ended() {
		t.Fatal("the old leader's session ended, but its Leader does not say so")
	}
	again, err := FromElection(ctx, s2, e2)
	if err != nil || again.Token != next.Token {
		t.Fatalf("the same term read again: %+v %v", again, err)
	}

	// The first process comes back with a new session and wins the next election (the second
	// resigned). A caller that kept a token from an earlier term, its own or the second's, has
	// a stale one once the new term's token has been presented.
	if err := e2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	s3 := session(t, cli, 1)
	third, err := Campaign(ctx, s3, concurrency.NewElection(s3, pfx), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if third.Token.Generation <= next.Token.Generation {
		t.Fatalf("the third term %v does not follow the second %v", third.Token, next.Token)
	}
	check(t, f, jobs, third, fencekit.VerdictAdvanced)
	check(t, f, jobs, zombie, fencekit.VerdictStale)
	check(t, f, jobs, next, fencekit.VerdictStale)
	if _, err := FromElection(ctx, s2, e2); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a resigned leader got a token: %v", err)
	}
}

// The token source is the cluster's id, as every response header gives it, so that a
// re-created cluster (a new id) is a new source rather than a pile of stale tokens.
func TestTheSourceIsTheClustersID(t *testing.T) {
	cli := etcdClient(t)
	ctx := timeout(t)
	s := session(t, cli, 5)
	l, err := Campaign(ctx, s, concurrency.NewElection(s, prefix(t)), "x")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "fencekit-probe")
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Header.ClusterId
	if id == 0 || l.ClusterID != id || l.Source != fencekit.EtcdClusterSource(id) ||
		l.Source != fmt.Sprintf("etcd:%016x", id) {
		t.Fatalf("source %q, cluster %x; the cluster's id is %x", l.Source, l.ClusterID, id)
	}
}

// No token without leading: an Election never campaigned or resigned, a Mutex never locked or
// unlocked, a session that has ended, an etcd that cannot be reached (a closed client, a
// context that ended): each gives an error and the zero Leader, never a token.
func TestNoTokenWithoutLeading(t *testing.T) {
	cli := etcdClient(t)
	ctx := timeout(t)
	pfx := prefix(t)
	s := session(t, cli, 5)
	e := concurrency.NewElection(s, pfx+"/election")
	m := concurrency.NewMutex(s, pfx+"/mutex")
	expectNone := func(what string, l Leader, err error, want error) {
		t.Helper()
		if err == nil || (want != nil && !errors.Is(err, want)) || l != (Leader{}) {
			t.Fatalf("%s: %+v %v, want %v", what, l, err, want)
		}
	}
	l, err := FromElection(ctx, s, e)
	expectNone("an election never campaigned", l, err, ErrNotLeader)
	l, err = FromMutex(ctx, s, m)
	expectNone("a mutex never locked", l, err, ErrNotLeader)
	l, err = FromElection(ctx, nil, e)
	expectNone("no session", l, err, ErrNotLeader)

	if _, err := Campaign(ctx, s, e, "x"); err != nil {
		t.Fatal(err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	l, err = FromElection(ctx, s, e)
	expectNone("a resigned election", l, err, ErrNotLeader)

	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := FromMutex(ctx, s, m); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l, err = FromMutex(ctx, s, m)
	expectNone("an unlocked mutex", l, err, ErrNotLeader)

	// An election won with one session does not give a token for another.
	other := session(t, cli, 5)
	if _, err := Campaign(ctx, s, e, "x"); err != nil {
		t.Fatal(err)
	}
	l, err = FromElection(ctx, other, e)
	expectNone("another session's election", l, err, ErrNotLeader)

	// The key deleted behind the leader's back (an operator, a compaction of the prefix).
	if _, err := cli.Delete(ctx, e.Key()); err != nil {
		t.Fatal(err)
	}
	l, err = FromElection(ctx, s, e)
	expectNone("a deleted key", l, err, ErrNotLeader)

	// etcd out of reach: a context that has ended, a closed client.
	if _, err := Campaign(ctx, s, concurrency.NewElection(s, pfx+"/e2"), "x"); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	l, err = FromElection(ended, s, concurrency.NewElection(s, pfx+"/e2"))
	expectNone("an ended context", l, err, nil)

	down, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ds, err := concurrency.NewSession(down, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	de := concurrency.NewElection(ds, pfx+"/e3")
	if _, err := Campaign(ctx, ds, de, "x"); err != nil {
		t.Fatal(err)
	}
	down.Close()
	l, err = FromElection(ctx, ds, de)
	expectNone("a closed client", l, err, nil)

	s.Orphan()
	l, err = FromMutex(ctx, s, m)
	expectNone("an ended session", l, err, ErrNotLeader)
}

// A Mutex's owner gets the token of its key; the next owner's is higher, and the old owner's
// is stale once the new one has presented it.
func TestMutexOwnersTokensGrow(t *testing.T) {
	cli := etcdClient(t)
	ctx := timeout(t)
	pfx := prefix(t)
	s1, s2 := session(t, cli, 5), session(t, cli, 5)
	m1, m2 := concurrency.NewMutex(s1, pfx), concurrency.NewMutex(s2, pfx)
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := FromMutex(ctx, s1, m1)
	if err != nil {
		t.Fatal(err)
	}
	if first.Token.Holder != uint64(s1.Lease()) || first.Key != m1.Key() {
		t.Fatalf("owner %+v: not lease %x of key %s", first, s1.Lease(), m1.Key())
	}
	locked := make(chan error, 1)
	go func() { locked <- m2.Lock(ctx) }()
	// Meanwhile nobody else gets it.
	m3 := concurrency.NewMutex(session(t, cli, 5), pfx)
	if err := m3.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("a second owner: %v", err)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	second, err := FromMutex(ctx, s2, m2)
	if err != nil {
		t.Fatal(err)
	}
	if second.Source != first.Source || second.Token.Generation <= first.Token.Generation {
		t.Fatalf("the second owner %+v does not follow the first %+v", second, first)
	}
	f, err := fencekit.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _ := f.Register([]byte("r"))
	check(t, f, r, first, fencekit.VerdictAdvanced)
	check(t, f, r, second, fencekit.VerdictAdvanced)
	check(t, f, r, first, fencekit.VerdictStale)
}
