package fencekit

/*
#include <fencekit.h>

// fk_fence_check_from with the token as two integers and the answer by value, as fkgo_check:
// no Go pointer for cgo to inspect on a per-write call.
typedef struct {
	fk_status status;
	fk_verdict verdict;
} fkgo_answer_from;

static fkgo_answer_from fkgo_check_from(const fk_fence *f, uint32_t resource, uint32_t source,
                                        uint64_t generation, uint64_t holder) {
	fkgo_answer_from answer = {0};
	fk_token token = {generation, holder};
	answer.status = fk_fence_check_from(f, resource, source, token, &answer.verdict);
	return answer;
}
*/
import "C"

import (
	"fmt"
	"hash/fnv"
	"runtime"
	"unsafe"
)

// Token sources. A generation means something only beside the other generations of the
// coordinator that numbered it: revision 1,000,000 of one etcd cluster says nothing about
// revision 5 of another. So a fence remembers, for each resource, the source its tokens come
// from (the source of its first accepted token, or the one a Rebase named), and gives a token
// of any other source VerdictForeignSource.
//
// A source is named "<kind>:<identity>" (printable ASCII without spaces, at most
// SourceNameMax bytes), or SourceUnnamed, the source of Check's tokens. The constructors below
// build the names of the coordinators fencekit knows, the same text as the library's (core's
// source.rs), from what makes each one's numbering unique:
//
//	EtcdClusterSource(id)                 etcd:<cluster id, 16 lowercase hex digits>
//	ZooKeeperEnsembleSource(name)         zookeeper:<name>
//	KubernetesLeaseSource(ns, name, uid)  k8s-lease:<namespace>/<name>/<uid>
//	FencekitGroupSource(cluster)          fencekit:<cluster id>
//	NamedSource(name)                     named:<name>
//
// They do not validate: Fence.SourceID and Fence.Rebase refuse a bad name with an error
// matching ErrInvalidSource that names it.

// SourceUnnamed is the name of the source of tokens checked without naming one (Check,
// CheckKey, CheckBatch): every fence written before sources existed holds only such marks.
const SourceUnnamed = "unnamed"

// SourceNameMax is the longest source name, in bytes.
const SourceNameMax = C.FK_SOURCE_NAME_MAX

// SourceID is a fence's number for a token source, from Fence.SourceID. It is valid with the
// fence that gave it until that fence is closed, not across reopening: look it up after each
// Open, once, not per check.
type SourceID uint32

// UnnamedSource is every fence's id for SourceUnnamed: CheckFrom(r, UnnamedSource, t) is
// Check(r, t).
const UnnamedSource SourceID = C.FK_SOURCE_UNNAMED

// EtcdClusterSource names an etcd cluster's revisions by its cluster id (the ClusterId of
// every response header), which a re-created cluster does not share.
func EtcdClusterSource(clusterID uint64) string { return fmt.Sprintf("etcd:%016x", clusterID) }

// ZooKeeperEnsembleSource names a ZooKeeper ensemble's zxids by a name its operator chooses
// (ZooKeeper has no cluster id): choose a new one when its data is wiped, since zxids restart.
func ZooKeeperEnsembleSource(name string) string { return "zookeeper:" + name }

// KubernetesLeaseSource names a Kubernetes Lease's leader transitions by its namespace, name
// and metadata.uid, which a re-created Lease does not share.
func KubernetesLeaseSource(namespace, name, uid string) string {
	return "k8s-lease:" + namespace + "/" + name + "/" + uid
}

// FencekitGroupSource names a fencekit group's terms by the group's cluster id (its nodes'
// --cluster), in decimal.
func FencekitGroupSource(cluster uint64) string { return fmt.Sprintf("fencekit:%d", cluster) }

// NamedSource names any other coordinator, by a name of its owner's choosing.
func NamedSource(name string) string { return "named:" + name }

// stringArgs passes s to C as a pointer and a length (NULL and 0 when empty). A string holds
// no Go pointers, so cgo lets C read it for the call's duration; the library copies what it
// keeps.
func stringArgs(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// SourceID returns this fence's id for the source named name, giving it one if it is new (at
// most 1024 per fence). A name that is not "<kind>:<identity>" fails with an error matching
// ErrInvalidSource (ErrInvalidUTF8 for bytes that are not UTF-8); one past the limit with
// ErrTooManySources.
func (f *Fence) SourceID(name string) (SourceID, error) {
	ptr, err := f.acquire()
	if err != nil {
		return 0, err
	}
	defer f.h.release()
	var id C.uint32_t
	err = call(func() C.fk_status {
		n, l := stringArgs(name)
		return C.fk_fence_source_id(ptr, n, l, &id)
	})
	if err != nil {
		return 0, err
	}
	return SourceID(id), nil
}

// CheckFrom checks token, minted by source, for the resource id, as Check does for the
// unnamed source. A resource takes tokens from one source: a token of any other gets
// VerdictForeignSource, whatever its numbers. A source id this fence never gave fails with
// ErrInvalidSource. A write may land only when err is nil and the verdict is Accepted().
func (f *Fence) CheckFrom(resource uint32, source SourceID, token Token) (Verdict, error) {
	ptr, err := f.acquire()
	if err != nil {
		return Verdict{}, err
	}
	defer f.h.release()
	runtime.LockOSThread()
	answer := C.fkgo_check_from(ptr, C.uint32_t(resource), C.uint32_t(source),
		C.uint64_t(token.Generation), C.uint64_t(token.Holder))
	if answer.status != C.FK_STATUS_OK {
		err := lastError(answer.status)
		runtime.UnlockOSThread()
		return Verdict{}, err
	}
	runtime.UnlockOSThread()
	return verdictOf(&answer.verdict), nil
}

// BoundSource is the name of the source the resource takes tokens from: SourceUnnamed for
// Check's tokens; ok is false for a resource that has taken no token and had no rebase (its
// first accepted token will bind it).
func (f *Fence) BoundSource(resource uint32) (name string, ok bool, err error) {
	ptr, err := f.acquire()
	if err != nil {
		return "", false, err
	}
	defer f.h.release()
	var buf C.fk_buf
	if err := call(func() C.fk_status { return C.fk_fence_bound_source(ptr, C.uint32_t(resource), &buf) }); err != nil {
		return "", false, err
	}
	name = string(bufBytes(&buf))
	return name, name != "", nil
}

// Rebase moves the resource named key (registering it if new) to the source named to,
// durably, recording by (who did it: a person or a change ticket, 1 to 256 bytes of text
// without control characters) and the time, and clears its mark, which it returns (the zero
// Token for none). From then on a token of any other source is foreign, and the first token
// of to sets the mark whatever its generation; a resource moved back to a source it took
// tokens from before gets that source's last mark back instead (Mark reads it).
//
// It is an operator's act, for a coordinator re-created from scratch (its numbering
// restarted) or a migration; fencekit never does it by itself. It fails with an error
// matching ErrRebaseRefused, changing nothing, when the resource already takes tokens from to
// (a re-created coordinator is a new source: etcd's cluster id and a Lease's uid change; give
// a ZooKeeper ensemble a new name) or by is not acceptable; with ErrInvalidSource for a bad
// name.
func (f *Fence) Rebase(key []byte, to, by string) (cleared Token, err error) {
	ptr, err := f.acquire()
	if err != nil {
		return Token{}, err
	}
	defer f.h.release()
	var t C.fk_token
	err = call(func() C.fk_status {
		k, kl := byteArgs(key)
		s, sl := stringArgs(to)
		b, bl := stringArgs(by)
		return C.fk_fence_rebase(ptr, k, kl, s, sl, b, bl, &t)
	})
	if err != nil {
		return Token{}, err
	}
	return Token{uint64(t.generation), uint64(t.holder)}, nil
}

// mapped runs a token mapping of the C ABI.
func mapped(fn func(*C.fk_token) C.fk_status) (Token, error) {
	var t C.fk_token
	if err := call(func() C.fk_status { return fn(&t) }); err != nil {
		return Token{}, err
	}
	return Token{uint64(t.generation), uint64(t.holder)}, nil
}

// TokenFromEtcd is the token of an etcd election's leader or mutex's owner: its key's create
// revision (concurrency.Election.Rev(), or the owner key's CreateRevision) as the generation
// and the session's lease id as the holder. Check it from EtcdClusterSource(the cluster id).
// A revision below 1 or lease id 0 (no lease) fails with ErrInvalidToken. The etcdfence
// module reads these from an Election or a Mutex.
func TokenFromEtcd(createRevision, leaseID int64) (Token, error) {
	return mapped(func(t *C.fk_token) C.fk_status {
		return C.fk_token_from_etcd(C.int64_t(createRevision), C.int64_t(leaseID), t)
	})
}

// TokenFromZooKeeper is the token of a ZooKeeper election's leader or lock's owner: the
// winning znode's czxid and its ephemeralOwner (the session id, taken as its 64 bits). Check
// it from ZooKeeperEnsembleSource(name). A czxid below 1 or an ephemeralOwner of 0 (a znode
// no session holds) fails with ErrInvalidToken.
func TokenFromZooKeeper(czxid, ephemeralOwner int64) (Token, error) {
	return mapped(func(t *C.fk_token) C.fk_status {
		return C.fk_token_from_zookeeper(C.int64_t(czxid), C.int64_t(ephemeralOwner), t)
	})
}

// TokenFromKubernetesLease is the token of a Kubernetes Lease's holder: spec.leaseTransitions
// + 1 and HolderOfIdentity(spec.holderIdentity). Check it from KubernetesLeaseSource(namespace,
// name, uid). Negative transitions or an empty identity (a Lease nobody holds) fail with
// ErrInvalidToken.
func TokenFromKubernetesLease(leaseTransitions int32, holderIdentity string) (Token, error) {
	return mapped(func(t *C.fk_token) C.fk_status {
		i, l := stringArgs(holderIdentity)
		return C.fk_token_from_kubernetes_lease(C.int32_t(leaseTransitions), i, l, t)
	})
}

// HolderOfIdentity is the holder number of a holder named by text (a Kubernetes
// holderIdentity, a pod name): the 64-bit FNV-1a of its bytes, 1 where that is 0, as the
// library computes it, so that every binding agrees. Two identities may share a number; the
// fence then cannot tell them apart within one generation, which the coordinator gives to one
// holder anyway.
func HolderOfIdentity(identity string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(identity))
	return max(h.Sum64(), 1)
}
