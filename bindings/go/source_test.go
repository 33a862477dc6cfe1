package fencekit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const (
	oldEtcd = "etcd:000000000000000a"
	newEtcd = "etcd:000000000000000b"
)

func sourceID(t *testing.T, f *Fence, name string) SourceID {
	t.Helper()
	id, err := f.SourceID(name)
	if err != nil {
		t.Fatalf("SourceID(%q): %v", name, err)
	}
	return id
}

func checkFrom(t *testing.T, f *Fence, r uint32, s SourceID, tok Token, want VerdictKind) Verdict {
	t.Helper()
	v, err := f.CheckFrom(r, s, tok)
	if err != nil || v.Kind != want {
		t.Fatalf("CheckFrom(%d, %d, %v): %+v %v, want %v", r, s, tok, v, err, want)
	}
	return v
}

// Numbers from two coordinators are not comparable: once a resource has taken a token from
// one source, a token from any other (the unnamed source of Check included) is refused as
// foreign, whatever its numbers, and leaves the mark alone.
func TestATokenFromAnotherSourceIsForeign(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	oldID, newID := sourceID(t, f, oldEtcd), sourceID(t, f, newEtcd)
	if oldID == newID || oldID == UnnamedSource || newID == UnnamedSource {
		t.Fatalf("ids %d and %d, unnamed %d: not distinct", oldID, newID, UnnamedSource)
	}
	if again := sourceID(t, f, oldEtcd); again != oldID {
		t.Fatalf("the same name got id %d, then %d", oldID, again)
	}
	if unnamed := sourceID(t, f, SourceUnnamed); unnamed != UnnamedSource {
		t.Fatalf("%q has id %d, not UnnamedSource", SourceUnnamed, unnamed)
	}
	r, err := f.Register([]byte("scheduler"))
	if err != nil {
		t.Fatal(err)
	}
	if name, ok, err := f.BoundSource(r); err != nil || ok || name != "" {
		t.Fatalf("a new resource is bound to %q (%v, %v)", name, ok, err)
	}
	zombie, err := TokenFromEtcd(1_000_000, 0x694d8f0a2c11e703)
	if err != nil {
		t.Fatal(err)
	}
	checkFrom(t, f, r, oldID, zombie, VerdictAdvanced)
	for _, s := range []SourceID{newID, UnnamedSource} {
		// Higher numbers from another source are foreign too, and their verdict carries no mark.
		v := checkFrom(t, f, r, s, Token{zombie.Generation + 1, 1}, VerdictForeignSource)
		if v.Accepted() || v.Current != (Token{}) || v.Previous != (Token{}) {
			t.Fatalf("a foreign verdict: %+v (accepted %v)", v, v.Accepted())
		}
	}
	if v, err := f.Check(r, Token{zombie.Generation + 1, 1}); err != nil || v.Kind != VerdictForeignSource {
		t.Fatalf("Check of a resource bound to etcd: %v %v", v.Kind, err)
	}
	if VerdictForeignSource.String() != "foreign source" {
		t.Fatalf("VerdictForeignSource reads %q", VerdictForeignSource)
	}
	if mark, _, _ := f.Mark(r); mark != zombie {
		t.Fatalf("a foreign token moved the mark to %v", mark)
	}
	if name, ok, err := f.BoundSource(r); err != nil || !ok || name != oldEtcd {
		t.Fatalf("bound to %q (%v, %v), want %q", name, ok, err, oldEtcd)
	}
	c, _ := f.Counters(r)
	if c.Advanced != 1 || c.Accepted != 0 {
		t.Fatalf("counters %+v", c)
	}
	// The unnamed source through CheckFrom is Check.
	plain, err := f.Register([]byte("plain"))
	if err != nil {
		t.Fatal(err)
	}
	checkFrom(t, f, plain, UnnamedSource, Token{3, 1}, VerdictAdvanced)
	if v, err := f.Check(plain, Token{2, 1}); err != nil || v.Kind != VerdictStale {
		t.Fatalf("Check after CheckFrom(UnnamedSource): %v %v", v.Kind, err)
	}
	if name, ok, _ := f.BoundSource(plain); !ok || name != SourceUnnamed {
		t.Fatalf("a resource checked with Check is bound to %q", name)
	}
}

// A rebase is an operator's explicit act: to the source the resource already has it is
// refused (a re-created coordinator is a new source), and so is one without an acceptable
// "by"; a refused rebase changes nothing. A rebase that lands clears the mark, so that the
// new source's first token is taken whatever its generation, and the old source becomes
// foreign. All of it is durable: after reopening, ids are given anew and the binding, the
// mark and the refusal of the old source remain.
func TestRebaseMovesAResourceDurablyAndIsRefusedToTheSameSource(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir)
	oldID, newID := sourceID(t, f, oldEtcd), sourceID(t, f, newEtcd)
	r, _ := f.Register([]byte("scheduler"))
	zombie := Token{1_000_000, 0x694d8f0a2c11e703}
	checkFrom(t, f, r, oldID, zombie, VerdictAdvanced)

	refused := []struct{ to, by, why string }{
		{oldEtcd, "ops", "new source"},
		{newEtcd, "a\nb", ""},
		{newEtcd, "", ""},
		{newEtcd, strings.Repeat("x", 257), ""},
	}
	for _, c := range refused {
		cleared, err := f.Rebase([]byte("scheduler"), c.to, c.by)
		if !errors.Is(err, ErrRebaseRefused) || cleared != (Token{}) {
			t.Fatalf("Rebase(to %q, by %q): %v %v, want ErrRebaseRefused", c.to, c.by, cleared, err)
		}
		if !strings.Contains(err.Error(), c.why) {
			t.Fatalf("Rebase(to %q, by %q): %q does not say %q", c.to, c.by, err, c.why)
		}
	}
	if _, err := f.Rebase([]byte("scheduler"), "etcd", "ops"); !errors.Is(err, ErrInvalidSource) {
		t.Fatalf("Rebase to a bad name: %v", err)
	}
	if _, err := f.Rebase(nil, newEtcd, "ops"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Rebase of no key: %v", err)
	}
	// Nothing changed.
	if name, _, _ := f.BoundSource(r); name != oldEtcd {
		t.Fatalf("a refused rebase moved the resource to %q", name)
	}
	checkFrom(t, f, r, oldID, zombie, VerdictAccepted)

	cleared, err := f.Rebase([]byte("scheduler"), newEtcd, "alice CHG-7")
	if err != nil || cleared != zombie {
		t.Fatalf("Rebase: cleared %v, %v; want %v", cleared, err, zombie)
	}
	if mark, ok, _ := f.Mark(r); ok {
		t.Fatalf("the mark %v survived the rebase", mark)
	}
	// A rebase to a new key registers it and binds it before any token.
	if cleared, err := f.Rebase([]byte("fresh"), newEtcd, "alice"); err != nil || cleared != (Token{}) {
		t.Fatalf("Rebase of a new key: %v %v", cleared, err)
	}
	leader := Token{5, 77}
	v := checkFrom(t, f, r, newID, leader, VerdictAdvanced)
	if v.Previous != (Token{}) || v.Current != leader {
		t.Fatalf("the new source's first token: %+v", v)
	}
	checkFrom(t, f, r, oldID, zombie, VerdictForeignSource)
	checkFrom(t, f, r, newID, Token{4, 77}, VerdictStale)
	f.Close()

	f = open(t, dir)
	defer f.Close()
	r, err = f.Lookup([]byte("scheduler"))
	if err != nil {
		t.Fatal(err)
	}
	if name, _, _ := f.BoundSource(r); name != newEtcd {
		t.Fatalf("after reopening, bound to %q", name)
	}
	if mark, _, _ := f.Mark(r); mark != leader {
		t.Fatalf("after reopening, the mark is %v", mark)
	}
	// Ids are given anew: the new fence's ids are asked for again (here in the other order).
	newID, oldID = sourceID(t, f, newEtcd), sourceID(t, f, oldEtcd)
	checkFrom(t, f, r, oldID, zombie, VerdictForeignSource)
	checkFrom(t, f, r, newID, Token{4, 77}, VerdictStale)
	checkFrom(t, f, r, newID, leader, VerdictAccepted)
	fresh, _ := f.Lookup([]byte("fresh"))
	if name, ok, _ := f.BoundSource(fresh); !ok || name != newEtcd {
		t.Fatalf("after reopening, a rebased key without tokens is bound to %q", name)
	}
	if _, err := f.Rebase([]byte("scheduler"), newEtcd, "bob"); !errors.Is(err, ErrRebaseRefused) {
		t.Fatalf("after reopening, a rebase to the same source: %v", err)
	}
}

// Bad names and ids are errors with their sentinel, and no error reads as acceptance.
func TestBadSourcesAreRefused(t *testing.T) {
	f := open(t, t.TempDir())
	r, _ := f.Register([]byte("r"))
	bad := []struct {
		name string
		want error
	}{
		{"", ErrInvalidSource},
		{"etcd", ErrInvalidSource},
		{"etcd:", ErrInvalidSource},
		{":x", ErrInvalidSource},
		{"etcd: x", ErrInvalidSource},
		{"ETCD:x", ErrInvalidSource},
		{"etcd:x\ty", ErrInvalidSource},
		{"named:" + strings.Repeat("x", SourceNameMax), ErrInvalidSource},
		{ZooKeeperEnsembleSource(""), ErrInvalidSource},
		{ZooKeeperEnsembleSource("prod east"), ErrInvalidSource},
		{NamedSource("é"), ErrInvalidSource},
		{"etcd:\xff", ErrInvalidUTF8},
	}
	for _, c := range bad {
		id, err := f.SourceID(c.name)
		if !errors.Is(err, c.want) || id != 0 {
			t.Errorf("SourceID(%q): %d %v, want %v", c.name, id, err, c.want)
		}
	}
	// A name of exactly SourceNameMax bytes is fine.
	sourceID(t, f, "named:"+strings.Repeat("x", SourceNameMax-len("named:")))

	good := sourceID(t, f, oldEtcd)
	for _, id := range []SourceID{good + 1000, 1 << 31} {
		v, err := f.CheckFrom(r, id, Token{1, 1})
		if !errors.Is(err, ErrInvalidSource) || v.Kind != VerdictNone || v.Accepted() {
			t.Errorf("CheckFrom with id %d the fence never gave: %+v %v", id, v, err)
		}
	}
	if v, err := f.CheckFrom(r+100, good, Token{1, 1}); !errors.Is(err, ErrUnknownResource) || v.Accepted() {
		t.Errorf("CheckFrom of an unknown resource: %+v %v", v, err)
	}
	if _, _, err := f.BoundSource(r + 100); !errors.Is(err, ErrUnknownResource) {
		t.Errorf("BoundSource of an unknown resource: %v", err)
	}
	if v, err := f.CheckFrom(r, good, Token{0, 1}); !errors.Is(err, ErrInvalidToken) || v.Accepted() {
		t.Errorf("CheckFrom of generation 0: %+v %v", v, err)
	}
	// The refusals left the resource unbound.
	if name, ok, _ := f.BoundSource(r); ok {
		t.Errorf("bad calls bound the resource to %q", name)
	}

	f.Close()
	if _, err := f.SourceID(oldEtcd); !errors.Is(err, ErrClosed) {
		t.Errorf("SourceID on a closed fence: %v", err)
	}
	if v, err := f.CheckFrom(r, good, Token{1, 1}); !errors.Is(err, ErrClosed) || v.Accepted() {
		t.Errorf("CheckFrom on a closed fence: %+v %v", v, err)
	}
	if _, _, err := f.BoundSource(r); !errors.Is(err, ErrClosed) {
		t.Errorf("BoundSource on a closed fence: %v", err)
	}
	if _, err := f.Rebase([]byte("r"), newEtcd, "ops"); !errors.Is(err, ErrClosed) {
		t.Errorf("Rebase on a closed fence: %v", err)
	}
}

// A fence knows at most 1024 sources (the unnamed one among them); one more is refused with
// its own sentinel, and the known ones keep working.
func TestTooManySources(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	var err error
	given := 0
	for i := 0; i < 2000; i++ {
		if _, err = f.SourceID(fmt.Sprintf("named:s%d", i)); err != nil {
			break
		}
		given++
	}
	if !errors.Is(err, ErrTooManySources) || given < 1000 || given > 1024 {
		t.Fatalf("after %d sources: %v", given, err)
	}
	if _, err := f.SourceID("named:s0"); err != nil {
		t.Fatalf("a known source after the limit: %v", err)
	}
}

// Each coordinator's mapping gives the numbers core documents, and refuses what no
// coordinator hands out (a key that does not exist, no lease or session, nobody holding).
func TestTokenMappings(t *testing.T) {
	type mapping struct {
		name string
		got  func() (Token, error)
		want Token // the zero Token: refused with ErrInvalidToken
	}
	cases := []mapping{
		{"etcd", func() (Token, error) { return TokenFromEtcd(1_000_000, 0x694d8f0a2c11e703) }, Token{1_000_000, 0x694d8f0a2c11e703}},
		{"etcd, a negative lease id is its 64 bits", func() (Token, error) { return TokenFromEtcd(7, -1) }, Token{7, 1<<64 - 1}},
		{"etcd revision 0", func() (Token, error) { return TokenFromEtcd(0, 1) }, Token{}},
		{"etcd revision -1", func() (Token, error) { return TokenFromEtcd(-1, 1) }, Token{}},
		{"etcd lease 0", func() (Token, error) { return TokenFromEtcd(1, 0) }, Token{}},
		{"zookeeper", func() (Token, error) { return TokenFromZooKeeper(0x100000003, -0x7efffffffffffffe) }, Token{0x100000003, 0x8100000000000002}},
		{"zookeeper czxid -5", func() (Token, error) { return TokenFromZooKeeper(-5, 1) }, Token{}},
		{"zookeeper czxid 0", func() (Token, error) { return TokenFromZooKeeper(0, 1) }, Token{}},
		{"zookeeper, not ephemeral", func() (Token, error) { return TokenFromZooKeeper(3, 0) }, Token{}},
		{"kubernetes", func() (Token, error) { return TokenFromKubernetesLease(0, "foobar") }, Token{1, 0x85944171f73967e8}},
		{"kubernetes transitions 41", func() (Token, error) { return TokenFromKubernetesLease(41, "a") }, Token{42, 0xaf63dc4c8601ec8c}},
		{"kubernetes transitions -1", func() (Token, error) { return TokenFromKubernetesLease(-1, "foobar") }, Token{}},
		{"kubernetes, nobody holds", func() (Token, error) { return TokenFromKubernetesLease(3, "") }, Token{}},
		{"kubernetes, not UTF-8", func() (Token, error) { return TokenFromKubernetesLease(3, "\xff") }, Token{}},
	}
	for _, c := range cases {
		got, err := c.got()
		if c.want == (Token{}) {
			if err == nil || got != (Token{}) {
				t.Errorf("%s: %v %v, want a refusal", c.name, got, err)
			} else if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrInvalidUTF8) {
				t.Errorf("%s: %v, want ErrInvalidToken", c.name, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %#x %v, want %#x", c.name, got, err, c.want)
		}
	}
	// HolderOfIdentity is the library's hash, for every identity a Lease may hold.
	for _, id := range []string{"a", "foobar", "scheduler-7f9c-x2", "node/1", strings.Repeat("z", 300)} {
		tok, err := TokenFromKubernetesLease(0, id)
		if err != nil || tok.Holder != HolderOfIdentity(id) {
			t.Errorf("%q: the library's holder %#x (%v), HolderOfIdentity %#x", id, tok.Holder, err, HolderOfIdentity(id))
		}
	}
}

// The constructors write the names core writes, and the fence takes each of them.
func TestSourceNameConstructors(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	cases := []struct{ got, want string }{
		{EtcdClusterSource(0x8e9e05c52164694d), "etcd:8e9e05c52164694d"},
		{EtcdClusterSource(10), "etcd:000000000000000a"},
		{EtcdClusterSource(1<<64 - 1), "etcd:ffffffffffffffff"},
		{ZooKeeperEnsembleSource("prod-east"), "zookeeper:prod-east"},
		{KubernetesLeaseSource("kube-system", "scheduler", "6b2f1c1e-8d4a-4e0b-9a77-3c1f0d2e5a10"), "k8s-lease:kube-system/scheduler/6b2f1c1e-8d4a-4e0b-9a77-3c1f0d2e5a10"},
		{FencekitGroupSource(7), "fencekit:7"},
		{NamedSource("consul-dc1"), "named:consul-dc1"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
		sourceID(t, f, c.got)
	}
}

// The header a leader sends its token in reads back as it was written, and a value that is not
// exactly "<source> <generation> <holder>" in plain decimal is refused, never read as some
// other token.
func TestTokenHeader(t *testing.T) {
	tok := Token{1207, 1<<64 - 1}
	value := FormatToken("etcd:8e9e05c52164694d", tok)
	if value != "etcd:8e9e05c52164694d 1207 18446744073709551615" {
		t.Fatalf("FormatToken: %q", value)
	}
	source, got, err := ParseToken(value)
	if err != nil || source != "etcd:8e9e05c52164694d" || got != tok {
		t.Fatalf("ParseToken(%q): %q %v %v", value, source, got, err)
	}
	for _, bad := range []string{
		"", "etcd:a", "etcd:a 1", "etcd:a 1 2 3", "etcd:a  1 2", " etcd:a 1 2", "etcd:a 1 2 ",
		"etcd:a 01 2", "etcd:a +1 2", "etcd:a -1 2", "etcd:a 0 2", "etcd:a 1 0", "etcd:a 0x10 2",
		"etcd:a 18446744073709551616 2", "etcd:a 1 2\n", "etcd:a 1\t2",
	} {
		if s, tok, err := ParseToken(bad); !errors.Is(err, ErrInvalidToken) || s != "" || tok != (Token{}) {
			t.Errorf("ParseToken(%q): %q %v %v", bad, s, tok, err)
		}
	}
}
