// Package k8sfence gives a leader elected with a Kubernetes Lease (client-go's
// k8s.io/client-go/tools/leaderelection with a resourcelock.LeaseLock) the fencing token that
// a storage checks with fencekit, and carries it on every request to that storage.
//
// client-go's leader election tells a candidate when it has acquired the Lease, and tells it
// when it failed to renew in time; it cannot stop a leader that was paused (a GC pause, a
// stopped VM, SIGSTOP) or cut off from the API server from waking after its lease expired
// and writing as if it still led. The storage must refuse that write. It can, because
// client-go numbers holders: whenever the Lease changes hands, the new holder writes
// spec.leaseTransitions one higher. That number plus one is the token's generation and the
// FNV-1a 64 of spec.holderIdentity its holder (fencekit.TokenFromKubernetesLease); the
// Lease's namespace, name and metadata.uid name the token source
// (fencekit.KubernetesLeaseSource), so that a Lease deleted and created again, whose
// transitions restart at 0, is a new source and not a pile of stale tokens.
//
// The rules that make it safe:
//
//  1. Read the token at every new leadership (FromLeaseLock in OnStartedLeading, or the
//     OnStartedLeading helper), never cache it across one: a Leader belongs to one term.
//     FromLease reads the Lease from the API server (a Get, not an informer's cache) and
//     hands out a token only if the Lease names this candidate's identity and has not
//     expired.
//  2. Send it with every request to the storage, reads included (Leader.RoundTripper): a new
//     leader must present its token before it reads, so that the old one's writes are refused
//     from then on.
//  3. The storage checks the token and does the read or write under one lock (or in one
//     transaction), with fencekit.Fence.CheckFrom against the source the token names
//     (fencekit.ParseToken reads the header).
//  4. Give every candidate process an identity of its own (client-go's examples use the
//     hostname and a fresh UUID): client-go does not count a transition when a candidate
//     finds its own identity already holding the Lease, so two processes sharing an identity
//     (a restarted pod reusing its name while the old one still runs) share a token.
//  5. Only the candidates may update the Lease (RBAC): leaseTransitions is written by the
//     clients themselves. A hand edit that changes the holder without raising
//     leaseTransitions gives two holders one generation (the fence refuses the second as a
//     conflict); one that lowers it gets the next holder refused as stale until the number
//     climbs past the highest the storage has seen. Neither lets a stale write land.
//
// Fencing protects effects that go through the fenced storage. A paused leader's job body
// still runs to its end when it wakes; only its writes are refused. Effects elsewhere (an
// email, a payment) need their own idempotency key.
//
// The expiry check is against renewTime + leaseDurationSeconds as the API server returns
// them, compared with this machine's wall clock. renewTime is written by the holder's own
// clock, and the check passes only for this candidate's identity, so normally the clock that
// wrote it is the one that reads it; a clock stepped between the two (NTP, a VM restored)
// moves the answer by the step. That is why the check only keeps a token from a candidate
// that already knows it lost: it is not what makes fencing safe. The storage's check against
// the newest token it has seen is, and it does not read any clock.
//
// No Kubernetes API server can run on the machines that test fencekit: this package is
// tested with client-go's fake clientset (k8s.io/client-go/kubernetes/fake), two real
// leaderelection electors running against one fake Lease, and Lease objects edited directly.
// The fake clientset gives objects no uid; the tests give one on create, as an API server
// does.
//
// This package is its own module, so that the fencekit binding's users never pull
// client-go.
package k8sfence

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrNotLeader means that the Lease is not held by this candidate: another identity holds
// it, nobody does (released, or never acquired), or it has expired. Do not act; wait for the
// elector's next OnStartedLeading.
var ErrNotLeader = errors.New("k8sfence: not the leader")

// Leader is the token of one term: one acquisition of the Lease by one identity. Read it anew
// at every OnStartedLeading.
type Leader struct {
	// Source names the Lease's token source: fencekit.KubernetesLeaseSource(Namespace, Name,
	// UID).
	Source string
	// Token is (spec.leaseTransitions + 1, fencekit.HolderOfIdentity(Identity)).
	Token fencekit.Token
	// Namespace, Name and UID are the Lease's, as read.
	Namespace, Name, UID string
	// Identity is spec.holderIdentity: this candidate's identity.
	Identity string
	// Expires is spec.renewTime + spec.leaseDurationSeconds as read, by the holder's clock:
	// the end of the lease at the time of the read. The elector renews the Lease later; this
	// field is not updated.
	Expires time.Time
	// done is the term's context's Done: closed when the elector has stopped leading (nil:
	// never).
	done <-chan struct{}
}

// TokenOfLease is the token source and token of lease's holder: KubernetesLeaseSource of its
// namespace, name and uid, and TokenFromKubernetesLease of its spec (a missing
// leaseTransitions counts as 0, as client-go reads it). It does not look at who holds the
// Lease or whether it has expired: that is FromLease's job. A Lease nobody holds (no
// holderIdentity) or with negative transitions fails with an error matching
// fencekit.ErrInvalidToken; one with no uid (an object that did not come from an API
// server) or whose source name would be longer than fencekit.SourceNameMax with
// fencekit.ErrInvalidSource.
func TokenOfLease(lease *coordinationv1.Lease) (source string, token fencekit.Token, err error) {
	if lease == nil {
		return "", fencekit.Token{}, fmt.Errorf("k8sfence: no Lease: %w", fencekit.ErrInvalidArgument)
	}
	var transitions int32
	if lease.Spec.LeaseTransitions != nil {
		transitions = *lease.Spec.LeaseTransitions
	}
	var identity string
	if lease.Spec.HolderIdentity != nil {
		identity = *lease.Spec.HolderIdentity
	}
	token, err = fencekit.TokenFromKubernetesLease(transitions, identity)
	if err != nil {
		return "", fencekit.Token{}, fmt.Errorf("k8sfence: Lease %s/%s: %w", lease.Namespace, lease.Name, err)
	}
	source, err = leaseSource(lease)
	if err != nil {
		return "", fencekit.Token{}, err
	}
	return source, token, nil
}

// leaseSource is the Lease's source name, refused here when the fence would refuse it, so
// that a leader learns it at its election and not from every write's refusal.
func leaseSource(lease *coordinationv1.Lease) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("k8sfence: Lease %s/%s: %s: %w", lease.Namespace, lease.Name, why, fencekit.ErrInvalidSource)
	}
	if lease.Namespace == "" || lease.Name == "" {
		return bad("no namespace or no name")
	}
	if lease.UID == "" {
		// An API server gives every object a uid; without one a re-created Lease could not
		// be told from the old one.
		return bad("no metadata.uid (not read from an API server?)")
	}
	source := fencekit.KubernetesLeaseSource(lease.Namespace, lease.Name, string(lease.UID))
	if len(source) > fencekit.SourceNameMax {
		return bad(fmt.Sprintf("the source name %q is %d bytes; a source name is at most %d (use a shorter Lease name)",
			source, len(source), fencekit.SourceNameMax))
	}
	for _, b := range []byte(source) {
		if b <= ' ' || b > '~' {
			return bad(fmt.Sprintf("the source name %q has a byte %#x that is not printable ASCII", source, b))
		}
	}
	return source, nil
}

// FromLease is the token of identity's term on the Lease namespace/name: it reads the Lease
// from the API server (a Get with no resourceVersion, which the API server answers from
// etcd with a quorum read, never an informer's cache) and returns the Leader only if
// spec.holderIdentity is identity and renewTime + leaseDurationSeconds is still ahead of
// this machine's clock (the package doc says what that clock is worth). Otherwise it fails
// with ErrNotLeader, and with TokenOfLease's errors for a Lease that gives no token.
//
// ctx is the term's: the context OnStartedLeading was given, which the elector cancels when
// it stops leading; Leader.Ended and Leader.RoundTripper watch it. Call FromLease once per
// OnStartedLeading, not before each write (the storage's check is the one per write).
func FromLease(ctx context.Context, client coordinationv1client.LeasesGetter, namespace, name, identity string) (Leader, error) {
	if client == nil {
		return Leader{}, fmt.Errorf("%w: no client", ErrNotLeader)
	}
	if identity == "" {
		return Leader{}, fmt.Errorf("%w: no identity (a Lease with no holderIdentity is held by nobody)", ErrNotLeader)
	}
	if err := ctx.Err(); err != nil {
		return Leader{}, fmt.Errorf("%w: the term has ended: %w", ErrNotLeader, err)
	}
	lease, err := client.Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Leader{}, fmt.Errorf("k8sfence: reading the Lease %s/%s: %w", namespace, name, err)
	}
	return fromLease(ctx, lease, identity, time.Now())
}

// fromLease checks that lease is identity's and unexpired at now, and makes its Leader.
func fromLease(ctx context.Context, lease *coordinationv1.Lease, identity string, now time.Time) (Leader, error) {
	spec := lease.Spec
	if spec.HolderIdentity == nil || *spec.HolderIdentity == "" {
		return Leader{}, fmt.Errorf("%w: the Lease %s/%s is held by nobody (released, or never acquired)",
			ErrNotLeader, lease.Namespace, lease.Name)
	}
	if *spec.HolderIdentity != identity {
		return Leader{}, fmt.Errorf("%w: the Lease %s/%s is held by %q, not %q",
			ErrNotLeader, lease.Namespace, lease.Name, *spec.HolderIdentity, identity)
	}
	if spec.RenewTime == nil || spec.LeaseDurationSeconds == nil || *spec.LeaseDurationSeconds <= 0 {
		// client-go always writes both; without them nobody can tell when the lease ends.
		return Leader{}, fmt.Errorf("%w: the Lease %s/%s has no renewTime or no positive leaseDurationSeconds: its end is unknown",
			ErrNotLeader, lease.Namespace, lease.Name)
	}
	expires := spec.RenewTime.Add(time.Duration(*spec.LeaseDurationSeconds) * time.Second)
	if !now.Before(expires) {
		return Leader{}, fmt.Errorf("%w: the Lease %s/%s expired at %s (renewed at %s for %d s; now %s by this machine's clock)",
			ErrNotLeader, lease.Namespace, lease.Name, expires.Format(time.RFC3339Nano),
			spec.RenewTime.Format(time.RFC3339Nano), *spec.LeaseDurationSeconds, now.Format(time.RFC3339Nano))
	}
	source, token, err := TokenOfLease(lease)
	if err != nil {
		return Leader{}, err
	}
	return Leader{
		Source:    source,
		Token:     token,
		Namespace: lease.Namespace,
		Name:      lease.Name,
		UID:       string(lease.UID),
		Identity:  identity,
		Expires:   expires,
		done:      ctx.Done(),
	}, nil
}

// FromLeaseLock is FromLease for the Lease and identity of lock, the LeaseLock the elector
// runs with: FromLease(ctx, lock.Client, lock.LeaseMeta.Namespace, lock.LeaseMeta.Name,
// lock.Identity()). Call it in OnStartedLeading with the context it was given. It reads the
// Lease anew and does not use the lock's own copy, which the elector writes concurrently.
func FromLeaseLock(ctx context.Context, lock *resourcelock.LeaseLock) (Leader, error) {
	if lock == nil {
		return Leader{}, fmt.Errorf("%w: no LeaseLock", ErrNotLeader)
	}
	return FromLease(ctx, lock.Client, lock.LeaseMeta.Namespace, lock.LeaseMeta.Name, lock.Identity())
}

// OnStartedLeading is a leaderelection.LeaderCallbacks.OnStartedLeading for the elector that
// runs with lock: at each new leadership it reads the term's Leader (FromLeaseLock) and runs
// lead with it and the term's context, or calls refused (when not nil) with the error and
// returns without leading. ErrNotLeader there means that the Lease was lost between the
// elector's acquisition and the read (the elector will stop leading shortly); an error
// matching fencekit.ErrInvalidToken or ErrInvalidSource, a Lease that gives no token. A
// failed read (the API server unreachable, a timeout) is tried again, after 100 ms and then
// twice as long each time up to 2 s, for as long as the term's context lasts, so that a
// passing API error does not leave a whole term unused; refused then gets the last error.
func OnStartedLeading(lock *resourcelock.LeaseLock, lead func(ctx context.Context, l Leader), refused func(error)) func(context.Context) {
	return func(ctx context.Context) {
		refuse := func(err error) {
			if refused != nil {
				refused(err)
			}
		}
		wait := 100 * time.Millisecond
		var failed error // the last read's error, for a term that ends before a read succeeds
		for {
			l, err := FromLeaseLock(ctx, lock)
			if err == nil {
				lead(ctx, l)
				return
			}
			var final *fencekit.Error
			if failed != nil && ctx.Err() != nil {
				refuse(fmt.Errorf("%w: the term ended while the Lease could not be read: %w", ErrNotLeader, failed))
				return
			}
			if errors.Is(err, ErrNotLeader) || errors.As(err, &final) {
				refuse(err)
				return
			}
			failed = err
			select {
			case <-ctx.Done():
			case <-time.After(wait):
				wait = min(2*wait, 2*time.Second)
			}
		}
	}
}

// HeaderValue is the fencekit.TokenHeader value of l: fencekit.FormatToken(l.Source, l.Token).
func (l Leader) HeaderValue() string { return fencekit.FormatToken(l.Source, l.Token) }

// Ended is true once the term's context has ended: the elector stopped leading (it failed to
// renew within its RenewDeadline, or its Run's context ended). False does not mean that l
// still leads: a process that was paused cannot know yet; the storage's check decides.
func (l Leader) Ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// RoundTripper wraps base (http.DefaultTransport when nil) so that every request carries l's
// token in the fencekit.TokenHeader header. It sends nothing, failing with ErrNotLeader,
// for the zero Leader or once l.Ended(): a term the elector knows is over (a Leader kept
// past its term). A request already carrying a TokenHeader is refused without being sent.
// Make one per term, from the Leader of that OnStartedLeading.
//
// Until the elector notices, it sends: whether the write may land is the storage's decision,
// made against the newest token it has seen (a process woken from a pause sends before it
// learns that its term ended).
func (l Leader) RoundTripper(base http.RoundTripper) http.RoundTripper {
	if l.Source == "" || l.Token == (fencekit.Token{}) {
		return fencekit.TokenRoundTripper(base, "", fencekit.Token{}, func() error {
			return fmt.Errorf("%w: the zero Leader has no token", ErrNotLeader)
		})
	}
	return fencekit.TokenRoundTripper(base, l.Source, l.Token, func() error {
		if l.Ended() {
			return fmt.Errorf("%w: the term of %s ended (the elector stopped leading): read the next term's Leader",
				ErrNotLeader, l.HeaderValue())
		}
		return nil
	})
}

// Client is a copy of base (http.DefaultClient when nil) whose requests carry l's token, as
// RoundTripper says.
func (l Leader) Client(base *http.Client) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	c.Transport = l.RoundTripper(base.Transport)
	return &c
}
