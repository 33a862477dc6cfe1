package k8sfence

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// No API server can run where these tests run: client-go's fake clientset stands in for it,
// with real leaderelection electors against it.

const (
	namespace = "ops"
	leaseName = "scheduler"
)

// newClientset is a fake clientset that gives each created object a new uid ("uid-1",
// "uid-2"...), as an API server does and the fake's tracker does not.
func newClientset() *fake.Clientset {
	cs := fake.NewClientset()
	var n atomic.Int64
	cs.PrependReactor("create", "leases", func(action k8stesting.Action) (bool, runtime.Object, error) {
		obj := action.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease)
		obj.UID = types.UID(fmt.Sprintf("uid-%d", n.Add(1)))
		return false, nil, nil // on to the tracker, which stores obj
	})
	return cs
}

// term is what an elector's OnStartedLeading made of one leadership.
type term struct {
	leader Leader
	ctx    context.Context
	err    error
}

// elector runs a client-go leader elector for identity on the Lease in cs, until the
// returned stop is called; each leadership's Leader (or refusal) arrives on terms. Its
// durations are short (a lease of 2 s) so that a takeover takes seconds.
func elector(t *testing.T, cs *fake.Clientset, identity string, releaseOnCancel bool) (terms <-chan term, stop func()) {
	t.Helper()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	ch := make(chan term, 4)
	ctx, cancel := context.WithCancel(context.Background())
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   2 * time.Second,
		RenewDeadline:   1 * time.Second,
		RetryPeriod:     100 * time.Millisecond,
		ReleaseOnCancel: releaseOnCancel,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: OnStartedLeading(lock,
				func(ctx context.Context, l Leader) { ch <- term{leader: l, ctx: ctx} },
				func(err error) { ch <- term{err: err} }),
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		le.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return ch, stop
}

// next waits for the next term on terms.
func next(t *testing.T, terms <-chan term, who string) term {
	t.Helper()
	select {
	case tm := <-terms:
		if tm.err != nil {
			t.Fatalf("%s: no token at its leadership: %v", who, tm.err)
		}
		return tm
	case <-time.After(15 * time.Second):
		t.Fatalf("%s never led", who)
		return term{}
	}
}

// fence is a fence in a temporary directory with the resource "jobs".
func fence(t *testing.T) (*fencekit.Fence, uint32) {
	t.Helper()
	f, err := fencekit.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	jobs, err := f.Register([]byte("jobs"))
	if err != nil {
		t.Fatal(err)
	}
	return f, jobs
}

// check is the fence's verdict on l's token for jobs, from l's source.
func check(t *testing.T, f *fencekit.Fence, jobs uint32, source string, token fencekit.Token) fencekit.VerdictKind {
	t.Helper()
	src, err := f.SourceID(source)
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.CheckFrom(jobs, src, token)
	if err != nil {
		t.Fatal(err)
	}
	return v.Kind
}

// The first leader of a new Lease gets generation 1 (leaseTransitions 0, plus one), its
// identity's holder number and the Lease's uid in the source, read from the API, and the
// fence accepts it.
func TestATokenAfterAcquiring(t *testing.T) {
	cs := newClientset()
	terms, _ := elector(t, cs, "pod-a", false)
	a := next(t, terms, "pod-a").leader

	want := fencekit.Token{Generation: 1, Holder: fencekit.HolderOfIdentity("pod-a")}
	if a.Token != want {
		t.Fatalf("token %+v, want %+v", a.Token, want)
	}
	if a.Source != "k8s-lease:ops/scheduler/uid-1" || a.UID != "uid-1" || a.Identity != "pod-a" {
		t.Fatalf("source %q uid %q identity %q", a.Source, a.UID, a.Identity)
	}
	if until := time.Until(a.Expires); until <= 0 || until > 2*time.Second {
		t.Fatalf("the lease ends in %v, not within its 2 s", until)
	}
	if a.Ended() {
		t.Fatal("a term still led is reported ended")
	}
	if v := fmt.Sprint(a.HeaderValue()); v != fmt.Sprintf("k8s-lease:ops/scheduler/uid-1 1 %d", want.Holder) {
		t.Fatalf("header %q", v)
	}
	f, jobs := fence(t)
	if k := check(t, f, jobs, a.Source, a.Token); k != fencekit.VerdictAccepted && k != fencekit.VerdictAdvanced {
		t.Fatalf("the leader's token: %v", k)
	}
}

// Each change of hands raises the generation, whether the old holder stopped renewing (a
// crash or a pause: the successor waits for the lease to expire) or released the Lease; the
// old holder's token is refused as stale once the storage has seen the new one, and a caller
// that kept the old Leader cannot send with it once its elector knows the term is over.
func TestTokensGrowWhenTheLeaseChangesHands(t *testing.T) {
	cs := newClientset()
	f, jobs := fence(t)

	termsA, stopA := elector(t, cs, "pod-a", false)
	a := next(t, termsA, "pod-a")
	if k := check(t, f, jobs, a.leader.Source, a.leader.Token); k != fencekit.VerdictAdvanced && k != fencekit.VerdictAccepted {
		t.Fatalf("pod-a's token: %v", k)
	}

	termsB, stopB := elector(t, cs, "pod-b", true)
	select {
	case tm := <-termsB:
		t.Fatalf("pod-b led while pod-a renewed: %+v", tm)
	case <-time.After(500 * time.Millisecond):
	}
	// pod-a stops renewing without releasing (as a crashed or cut-off process does).
	stopA()
	if !a.leader.Ended() {
		t.Fatal("pod-a's Leader is not ended after its elector stopped leading")
	}
	b := next(t, termsB, "pod-b")
	if b.leader.Source != a.leader.Source {
		t.Fatalf("one Lease, two sources: %q and %q", a.leader.Source, b.leader.Source)
	}
	if want := (fencekit.Token{Generation: 2, Holder: fencekit.HolderOfIdentity("pod-b")}); b.leader.Token != want {
		t.Fatalf("pod-b's token %+v, want %+v", b.leader.Token, want)
	}
	if k := check(t, f, jobs, b.leader.Source, b.leader.Token); k != fencekit.VerdictAdvanced {
		t.Fatalf("pod-b's token: %v, want advanced", k)
	}
	// pod-a, woken from its pause with its old token: refused by the storage.
	if k := check(t, f, jobs, a.leader.Source, a.leader.Token); k != fencekit.VerdictStale {
		t.Fatalf("pod-a's old token after the takeover: %v, want stale", k)
	}

	// pod-b releases (ReleaseOnCancel): pod-a, back, takes the next generation at once.
	termsA2, _ := elector(t, cs, "pod-a", false)
	stopB()
	a2 := next(t, termsA2, "pod-a again")
	if want := (fencekit.Token{Generation: 3, Holder: fencekit.HolderOfIdentity("pod-a")}); a2.leader.Token != want {
		t.Fatalf("pod-a's second token %+v, want %+v", a2.leader.Token, want)
	}
	if k := check(t, f, jobs, a2.leader.Source, a2.leader.Token); k != fencekit.VerdictAdvanced {
		t.Fatalf("pod-a's second token: %v, want advanced", k)
	}
	if k := check(t, f, jobs, b.leader.Source, b.leader.Token); k != fencekit.VerdictStale {
		t.Fatalf("pod-b's token after it released: %v, want stale", k)
	}
}

// put stores lease in cs as an API server would have it (creating or replacing it).
func put(t *testing.T, cs *fake.Clientset, lease *coordinationv1.Lease) {
	t.Helper()
	ctx := context.Background()
	leases := cs.CoordinationV1().Leases(lease.Namespace)
	if _, err := leases.Get(ctx, lease.Name, metav1.GetOptions{}); err == nil {
		if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// lease is a Lease held by holder, with transitions, renewed at renewed for seconds.
func lease(uid, holder string, transitions int32, renewed time.Time, seconds int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: leaseName, UID: types.UID(uid)},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       &holder,
			LeaseTransitions:     &transitions,
			RenewTime:            &metav1.MicroTime{Time: renewed},
			LeaseDurationSeconds: &seconds,
		},
	}
}

// A candidate gets a token only while the Lease, as the API server has it, names it and has
// not expired: never for a Lease another identity took over, one released, one expired, or
// one whose end cannot be known. The answer comes from the API (a Get), not from any copy
// the candidate kept.
func TestADeposedHolderGetsNoToken(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name  string
		lease *coordinationv1.Lease
		ok    bool
	}{
		{"held and renewed", lease("u", "pod-a", 4, now, 15), true},
		{"taken over", lease("u", "pod-b", 5, now, 15), false},
		{"released", lease("u", "", 5, now, 1), false},
		{"expired", lease("u", "pod-a", 4, now.Add(-16*time.Second), 15), false},
		{"ends now", lease("u", "pod-a", 4, now.Add(-15*time.Second), 15), false},
		{"no renewTime", func() *coordinationv1.Lease { l := lease("u", "pod-a", 4, now, 15); l.Spec.RenewTime = nil; return l }(), false},
		{"no duration", func() *coordinationv1.Lease {
			l := lease("u", "pod-a", 4, now, 15)
			l.Spec.LeaseDurationSeconds = nil
			return l
		}(), false},
		{"zero duration", lease("u", "pod-a", 4, now, 0), false},
	}
	cs := newClientset()
	for _, c := range cases {
		put(t, cs, c.lease)
		l, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, leaseName, "pod-a")
		if c.ok {
			if err != nil || l.Token != (fencekit.Token{Generation: 5, Holder: fencekit.HolderOfIdentity("pod-a")}) {
				t.Errorf("%s: %+v, %v", c.name, l, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotLeader) || l != (Leader{}) {
			t.Errorf("%s: %+v, %v; want ErrNotLeader and no Leader", c.name, l, err)
		}
	}

	// A missing Lease is an error of the API, not a token.
	if _, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, "other", "pod-a"); err == nil {
		t.Error("a token from a Lease that does not exist")
	}
	// A term whose context has ended gets no token, whatever the Lease says.
	put(t, cs, lease("u", "pod-a", 4, now, 15))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FromLease(ctx, cs.CoordinationV1(), namespace, leaseName, "pod-a"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("an ended term: %v, want ErrNotLeader", err)
	}
	if _, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, leaseName, ""); !errors.Is(err, ErrNotLeader) {
		t.Errorf("no identity: %v, want ErrNotLeader", err)
	}
}

// The helper OnStartedLeading reads the Lease when the elector calls it: a Lease taken over
// between the elector's acquisition and that read gives no token, and the leader's function
// is not run.
func TestOnStartedLeadingRefusesALeaseLostBeforeTheRead(t *testing.T) {
	cs := newClientset()
	put(t, cs, lease("u", "pod-b", 7, time.Now(), 15))
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "pod-a"},
	}
	var led bool
	var refusal error
	OnStartedLeading(lock, func(context.Context, Leader) { led = true }, func(err error) { refusal = err })(context.Background())
	if led || !errors.Is(refusal, ErrNotLeader) || !strings.Contains(refusal.Error(), `"pod-b"`) {
		t.Fatalf("led %v, refusal %v", led, refusal)
	}
	if _, err := FromLeaseLock(context.Background(), nil); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("no lock: %v", err)
	}
}

// A Lease deleted and created again has a new uid, hence a new source, though its
// transitions restart at 0: the fence refuses the new Lease's tokens as foreign (not as
// stale, and never compared with the old numbers) until an operator rebases the resource,
// after which the old Lease's tokens are the foreign ones.
func TestARecreatedLeaseIsANewSource(t *testing.T) {
	cs := newClientset()
	f, jobs := fence(t)

	termsA, stopA := elector(t, cs, "pod-a", true)
	old := next(t, termsA, "pod-a").leader
	stopA()
	if k := check(t, f, jobs, old.Source, fencekit.Token{Generation: 40, Holder: old.Token.Holder}); k != fencekit.VerdictAdvanced {
		t.Fatalf("the old Lease's token: %v", k)
	}
	if err := cs.CoordinationV1().Leases(namespace).Delete(context.Background(), leaseName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	termsB, _ := elector(t, cs, "pod-b", true)
	b := next(t, termsB, "pod-b").leader
	if b.UID != "uid-2" || b.Source == old.Source || b.Source != "k8s-lease:ops/scheduler/uid-2" {
		t.Fatalf("the re-created Lease: uid %q, source %q (old %q)", b.UID, b.Source, old.Source)
	}
	if b.Token.Generation != 1 {
		t.Fatalf("the re-created Lease's first generation is %d", b.Token.Generation)
	}
	if k := check(t, f, jobs, b.Source, b.Token); k != fencekit.VerdictForeignSource {
		t.Fatalf("the re-created Lease's token before a rebase: %v, want foreign source", k)
	}
	if _, err := f.Rebase([]byte("jobs"), b.Source, "test: Lease re-created"); err != nil {
		t.Fatal(err)
	}
	if k := check(t, f, jobs, b.Source, b.Token); k != fencekit.VerdictAdvanced {
		t.Fatalf("the re-created Lease's token after the rebase: %v", k)
	}
	if k := check(t, f, jobs, old.Source, fencekit.Token{Generation: 41, Holder: old.Token.Holder}); k != fencekit.VerdictForeignSource {
		t.Fatalf("the old Lease's token after the rebase: %v, want foreign source", k)
	}
}

// A Lease that gives no token is refused with the error that says why: nobody holds it,
// negative transitions (ErrInvalidToken), no uid or a source name the fence would refuse
// (ErrInvalidSource). A missing leaseTransitions counts as 0, as client-go reads it.
func TestBadLeasesAreRefused(t *testing.T) {
	now := time.Now()
	with := func(edit func(*coordinationv1.Lease)) *coordinationv1.Lease {
		l := lease("u-1", "pod-a", 0, now, 15)
		edit(l)
		return l
	}
	cases := []struct {
		name  string
		lease *coordinationv1.Lease
		want  error
		gen   uint64
	}{
		{"no Lease", nil, fencekit.ErrInvalidArgument, 0},
		{"no holder", with(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = nil }), fencekit.ErrInvalidToken, 0},
		{"empty holder", lease("u-1", "", 3, now, 15), fencekit.ErrInvalidToken, 0},
		{"negative transitions", lease("u-1", "pod-a", -1, now, 15), fencekit.ErrInvalidToken, 0},
		{"most negative transitions", lease("u-1", "pod-a", -1<<31, now, 15), fencekit.ErrInvalidToken, 0},
		{"no uid", lease("", "pod-a", 3, now, 15), fencekit.ErrInvalidSource, 0},
		{"no namespace", with(func(l *coordinationv1.Lease) { l.Namespace = "" }), fencekit.ErrInvalidSource, 0},
		{"a name too long for a source", with(func(l *coordinationv1.Lease) { l.Name = strings.Repeat("n", fencekit.SourceNameMax) }), fencekit.ErrInvalidSource, 0},
		{"a uid with a space", lease("u 1", "pod-a", 3, now, 15), fencekit.ErrInvalidSource, 0},
		{"the longest Lease name Kubernetes allows", with(func(l *coordinationv1.Lease) { l.Name = strings.Repeat("n", 253) }), nil, 1},
		{"no transitions", with(func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = nil }), nil, 1},
		{"most transitions", lease("u-1", "pod-a", 1<<31-1, now, 15), nil, 1 << 31},
	}
	for _, c := range cases {
		source, token, err := TokenOfLease(c.lease)
		if c.want != nil {
			if !errors.Is(err, c.want) || source != "" || token != (fencekit.Token{}) {
				t.Errorf("%s: %q %+v %v, want %v", c.name, source, token, err, c.want)
			}
			continue
		}
		if err != nil || token.Generation != c.gen || token.Holder != fencekit.HolderOfIdentity("pod-a") {
			t.Errorf("%s: %+v %v, want generation %d", c.name, token, err, c.gen)
		}
	}
	// The same refusals through FromLease, for a Lease that names the candidate (in a fake
	// clientset that gives no uid).
	cs := fake.NewClientset()
	put(t, cs, lease("", "pod-a", 3, now, 15))
	if _, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, leaseName, "pod-a"); !errors.Is(err, fencekit.ErrInvalidSource) {
		t.Errorf("a Lease with no uid through FromLease: %v", err)
	}
	put(t, cs, lease("", "pod-a", -3, now, 15))
	if _, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, leaseName, "pod-a"); !errors.Is(err, fencekit.ErrInvalidToken) {
		t.Errorf("negative transitions through FromLease: %v", err)
	}
}

// A Lease edited by hand never lets a stale write land: a holder changed without raising
// leaseTransitions gives the intruder the old holder's generation, which the fence refuses
// as a conflict; transitions lowered by hand make the next holder's token stale until the
// number climbs past what the storage has seen.
func TestAHandEditedLeaseNeverLetsAStaleWriteLand(t *testing.T) {
	cs := newClientset()
	f, jobs := fence(t)
	now := time.Now()
	read := func(identity string) Leader {
		t.Helper()
		l, err := FromLease(context.Background(), cs.CoordinationV1(), namespace, leaseName, identity)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	put(t, cs, lease("", "pod-a", 4, now, 15)) // created: the reactor gives it uid-1
	a := read("pod-a")
	if k := check(t, f, jobs, a.Source, a.Token); k != fencekit.VerdictAdvanced {
		t.Fatalf("pod-a: %v", k)
	}
	got, _ := cs.CoordinationV1().Leases(namespace).Get(context.Background(), leaseName, metav1.GetOptions{})
	edited := lease(string(got.UID), "pod-x", 4, now, 15) // holder changed, transitions not raised
	put(t, cs, edited)
	x := read("pod-x")
	if x.Token.Generation != a.Token.Generation {
		t.Fatalf("the edit should have kept the generation: %d, %d", x.Token.Generation, a.Token.Generation)
	}
	if k := check(t, f, jobs, x.Source, x.Token); k != fencekit.VerdictConflict {
		t.Fatalf("a second holder of one generation: %v, want conflict", k)
	}
	put(t, cs, lease(string(got.UID), "pod-y", 1, now, 15)) // transitions lowered
	if k := check(t, f, jobs, read("pod-y").Source, read("pod-y").Token); k != fencekit.VerdictStale {
		t.Fatalf("a lowered generation: %v, want stale", k)
	}
	if k := check(t, f, jobs, a.Source, a.Token); k != fencekit.VerdictAccepted {
		t.Fatalf("pod-a, whose term the edits did not end at the storage: %v", k)
	}
}

// A read of the Lease that fails at the start of a term (the API server briefly unreachable)
// is tried again while the term lasts: the leader still gets its token and leads. When the
// term ends first, refused hears ErrNotLeader with the API's error, and nothing leads.
func TestOnStartedLeadingTriesAFailedReadAgain(t *testing.T) {
	cs := newClientset()
	put(t, cs, lease("", "pod-a", 2, time.Now(), 15))
	var failures atomic.Int64
	failures.Store(2)
	cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures.Add(-1) >= 0 {
			return true, nil, errors.New("the API server is unreachable")
		}
		return false, nil, nil
	})
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: namespace, Name: leaseName},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "pod-a"},
	}
	var got Leader
	var refusals []error
	OnStartedLeading(lock, func(_ context.Context, l Leader) { got = l }, func(err error) { refusals = append(refusals, err) })(context.Background())
	if got.Token.Generation != 3 || len(refusals) != 0 {
		t.Fatalf("after two failed reads: led with %+v, refusals %v", got, refusals)
	}

	failures.Store(1 << 30)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	got = Leader{}
	OnStartedLeading(lock, func(_ context.Context, l Leader) { got = l }, func(err error) { refusals = append(refusals, err) })(ctx)
	if got != (Leader{}) || len(refusals) != 1 || !errors.Is(refusals[0], ErrNotLeader) ||
		!strings.Contains(refusals[0].Error(), "unreachable") {
		t.Fatalf("a term that ended while the API failed: led with %+v, refusals %v", got, refusals)
	}
}
