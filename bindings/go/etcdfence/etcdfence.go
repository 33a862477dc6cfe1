// Package etcdfence gives a leader elected with etcd (the concurrency package of
// go.etcd.io/etcd/client/v3) the fencing token that a storage checks with fencekit, and carries
// it on every request to that storage.
//
// etcd's election tells a leader when it has won, and its successor when the leader's session
// has lapsed; it cannot stop a leader that was paused (a GC pause, a stopped VM, SIGSTOP) from
// waking after its lease expired and writing as if it still led. The storage must refuse that
// write. It can, because etcd numbers leaders: a candidate's key is created when it
// campaigns and the leader is the oldest key, so every successor's key has a higher create
// revision. That revision is the token's generation and the session's lease id its holder
// (fencekit.TokenFromEtcd); the cluster's id names the token source
// (fencekit.EtcdClusterSource), so that a re-created cluster, whose revisions restart at 1,
// is a new source and not a pile of stale tokens.
//
// The rules that make it safe:
//
//  1. Read the token at every election (Campaign, or FromElection right after
//     Election.Campaign returns), never cache it across one: a Leader belongs to one term.
//  2. Send it with every request to the storage, reads included (Leader.RoundTripper): a new
//     leader must present its token before it reads, so that the old one's writes are refused
//     from then on.
//  3. The storage checks the token and does the read or write under one lock (or in one
//     transaction), with fencekit.Fence.CheckFrom against the source the token names
//     (fencekit.ParseToken reads the header).
//
// Fencing protects effects that go through the fenced storage. A paused leader's job body
// still runs to its end when it wakes; only its writes are refused. Effects elsewhere (an
// email, a payment) need their own idempotency key.
//
// This package is its own module, so that the fencekit binding's users never pull the etcd
// client. It works with etcd servers 3.4 and later (it uses only KV and Txn, and
// the concurrency package's sessions).
package etcdfence

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNotLeader means that the Election or Mutex is not led or held by this session: never
// campaigned or locked, resigned or unlocked, or its key is gone (the session's lease expired
// or was revoked). Do not act; campaign again with a new session if the old one is done.
var ErrNotLeader = errors.New("etcdfence: not the leader")

// Leader is the token of one term: one election won (or one lock taken) by one session. Read
// it anew at every election.
type Leader struct {
	// Source names the etcd cluster's token source: fencekit.EtcdClusterSource(ClusterID).
	Source string
	// Token is (the create revision of Key, the session's lease id).
	Token fencekit.Token
	// Key is the leader's key (the lock owner's) in etcd.
	Key string
	// ClusterID is the cluster's id, from the header of the response that read Key.
	ClusterID uint64
	// done is the session's Done: closed when the session has ended (nil: never).
	done <-chan struct{}
}

// Campaign campaigns in e with val until this session leads (as Election.Campaign, which
// blocks until then or until ctx ends), then returns the token of this term (FromElection).
func Campaign(ctx context.Context, s *concurrency.Session, e *concurrency.Election, val string) (Leader, error) {
	if err := e.Campaign(ctx, val); err != nil {
		return Leader{}, err
	}
	return FromElection(ctx, s, e)
}

// FromElection is the token of the term that e, campaigned with the session s, has won: its
// key's create revision (Election.Rev()) and the session's lease id, and the cluster's id as
// the source. It asks etcd, in one transaction, that the key still exists with that
// revision, so that a leader whose session has already lapsed gets ErrNotLeader instead of a
// token. Call it after each Campaign, not before each write (the storage's check is the one
// per write).
func FromElection(ctx context.Context, s *concurrency.Session, e *concurrency.Election) (Leader, error) {
	if e == nil || s == nil {
		return Leader{}, fmt.Errorf("%w: no election or no session", ErrNotLeader)
	}
	if e.Key() == "" {
		return Leader{}, fmt.Errorf("%w: the election was not won by this Election (Campaign it first; Resign ends a term)", ErrNotLeader)
	}
	still := clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev())
	return read(ctx, s, e.Key(), still, "election")
}

// FromMutex is the token of the lock m holds for the session s: its key's create revision and
// the session's lease id, and the cluster's id as the source. Like FromElection, it asks etcd
// that the key is still there (Mutex.IsOwner()), and fails with ErrNotLeader otherwise. Call
// it after each Lock or TryLock.
func FromMutex(ctx context.Context, s *concurrency.Session, m *concurrency.Mutex) (Leader, error) {
	if m == nil || s == nil {
		return Leader{}, fmt.Errorf("%w: no mutex or no session", ErrNotLeader)
	}
	// Unlock leaves "\x00" as the key; a Mutex never locked has "".
	if m.Key() == "" || m.Key() == "\x00" || m.Header() == nil {
		return Leader{}, fmt.Errorf("%w: the mutex is not locked (Lock or TryLock it first)", ErrNotLeader)
	}
	return read(ctx, s, m.Key(), m.IsOwner(), "mutex")
}

// read reads key if owned holds, and makes the Leader of it.
func read(ctx context.Context, s *concurrency.Session, key string, owned clientv3.Cmp, what string) (Leader, error) {
	select {
	case <-s.Done():
		return Leader{}, fmt.Errorf("%w: the session has ended", ErrNotLeader)
	default:
	}
	resp, err := s.Client().Txn(ctx).If(owned).Then(clientv3.OpGet(key)).Commit()
	if err != nil {
		return Leader{}, fmt.Errorf("etcdfence: reading the %s's key %q: %w", what, key, err)
	}
	if !resp.Succeeded || len(resp.Responses) != 1 || len(resp.Responses[0].GetResponseRange().GetKvs()) != 1 {
		return Leader{}, fmt.Errorf("%w: the %s's key %q is gone (the session's lease expired or was revoked)", ErrNotLeader, what, key)
	}
	kv := resp.Responses[0].GetResponseRange().GetKvs()[0]
	if kv.Lease != int64(s.Lease()) {
		return Leader{}, fmt.Errorf("%w: the %s's key %q belongs to lease %x, not this session's %x", ErrNotLeader, what, key, kv.Lease, int64(s.Lease()))
	}
	if resp.Header == nil || resp.Header.ClusterId == 0 {
		return Leader{}, fmt.Errorf("etcdfence: etcd's response has no cluster id")
	}
	token, err := fencekit.TokenFromEtcd(kv.CreateRevision, kv.Lease)
	if err != nil {
		return Leader{}, err
	}
	return Leader{
		Source:    fencekit.EtcdClusterSource(resp.Header.ClusterId),
		Token:     token,
		Key:       key,
		ClusterID: resp.Header.ClusterId,
		done:      s.Done(),
	}, nil
}

// HeaderValue is the fencekit.TokenHeader value of l: fencekit.FormatToken(l.Source, l.Token).
func (l Leader) HeaderValue() string { return fencekit.FormatToken(l.Source, l.Token) }

// Ended is true once the session l was elected with has ended (closed, or its lease found
// expired): the term is over, stop working. False does not mean that l still leads: a process
// that was paused cannot know yet; the storage's check decides.
func (l Leader) Ended() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// RoundTripper wraps base (http.DefaultTransport when nil) so that every request carries l's
// token in the fencekit.TokenHeader header; a request already carrying one is refused without
// being sent, and so is every request of the zero Leader. Make one per term, from the Leader
// of that election.
//
// It sends a request even after l's session has ended: whether the write may land is the
// storage's decision, made against the newest token it has seen. (Refusing here would only
// sometimes help: a process woken from a pause sends before it learns that its session
// ended.) Check l.Ended() between jobs to stop early.
func (l Leader) RoundTripper(base http.RoundTripper) http.RoundTripper {
	if l.Source == "" || l.Token == (fencekit.Token{}) {
		return fencekit.TokenRoundTripper(base, "", fencekit.Token{}, func() error {
			return fmt.Errorf("%w: the zero Leader has no token", ErrNotLeader)
		})
	}
	return fencekit.TokenRoundTripper(base, l.Source, l.Token, nil)
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
