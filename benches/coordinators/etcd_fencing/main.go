// etcd_fencing: the per-write cost of etcd's documented fencing beside fencekit's check, in one
// process against one running etcd (benches/coordinators/measure.sh starts it).
//
// etcd's fencing: the leader's write is a Txn that compares the election key's create
// revision with the one it won (the key still held by this term) and then puts; it protects
// only data kept in etcd itself. fencekit's: the storage checks the same term's token
// (etcdfence.Campaign: the create revision and the lease id, source etcd:<cluster id>) with
// Fence.CheckFrom before its own write. Both are measured here, one after the other, with a
// leader elected by concurrency.Election.
//
//	go run . -endpoints 127.0.0.1:2379 -writes 2000
//
// Prints one JSON line: each one's p50 and p99 in nanoseconds and their ratio.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	"github.com/fencekit/fencekit/bindings/go/etcdfence"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

func main() {
	endpoints := flag.String("endpoints", os.Getenv("FENCEKIT_ETCD_ENDPOINTS"), "etcd's client endpoints, comma-separated (default $FENCEKIT_ETCD_ENDPOINTS)")
	writes := flag.Int("writes", 2000, "fenced writes to time (after 200 not timed)")
	checks := flag.Int("checks", 200_000, "fencekit checks to time, in 200 samples")
	flag.Parse()
	if *endpoints == "" {
		fail(fmt.Errorf("no -endpoints and no FENCEKIT_ETCD_ENDPOINTS"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fail(err)
	}
	defer cli.Close()
	session, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		fail(err)
	}
	defer session.Close()
	prefix := fmt.Sprintf("/fencekit-bench/%d", time.Now().UnixNano())
	election := concurrency.NewElection(session, prefix+"/election")
	leader, err := etcdfence.Campaign(ctx, session, election, "bench")
	if err != nil {
		fail(err)
	}

	// etcd's fencing: compare the election key's create revision, then put.
	held := clientv3.Compare(clientv3.CreateRevision(election.Key()), "=", election.Rev())
	value := strings.Repeat("x", 64)
	txn := make([]time.Duration, 0, *writes)
	for i := range *writes + 200 {
		start := time.Now()
		resp, err := cli.Txn(ctx).If(held).Then(clientv3.OpPut(prefix+"/data", value)).Commit()
		took := time.Since(start)
		if err != nil {
			fail(err)
		}
		if !resp.Succeeded {
			fail(fmt.Errorf("the fenced Txn was refused: the election key is not held"))
		}
		if i >= 200 {
			txn = append(txn, took)
		}
	}

	// fencekit's check of the same term's token, as the sample's storage does it.
	dir, err := os.MkdirTemp("", "etcd-fencing-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	fence, err := fencekit.Open(dir)
	if err != nil {
		fail(err)
	}
	defer fence.Close()
	r, err := fence.Register([]byte("scheduler/jobs"))
	if err != nil {
		fail(err)
	}
	src, err := fence.SourceID(leader.Source)
	if err != nil {
		fail(err)
	}
	if v, err := fence.CheckFrom(r, src, leader.Token); err != nil || !v.Accepted() {
		fail(fmt.Errorf("the first check: %v %v", v, err))
	}
	const samples = 200
	per := max(*checks/samples, 1)
	check := make([]time.Duration, 0, samples)
	for range samples + 20 {
		start := time.Now()
		for range per {
			if v, err := fence.CheckFrom(r, src, leader.Token); err != nil || v.Kind != fencekit.VerdictAccepted {
				fail(fmt.Errorf("check: %v %v", v, err))
			}
		}
		check = append(check, time.Since(start)/time.Duration(per))
	}
	check = check[20:]

	out := map[string]any{
		"bench":                      "etcd_fencing",
		"source":                     leader.Source,
		"etcd_txn_writes":            len(txn),
		"etcd_txn_p50_ns":            pct(txn, 50),
		"etcd_txn_p99_ns":            pct(txn, 99),
		"check_samples":              len(check),
		"checks_per_sample":          per,
		"fencekit_check_from_p50_ns": pct(check, 50),
		"fencekit_check_from_p99_ns": pct(check, 99),
	}
	out["ratio_p50"] = float64(pct(txn, 50)) / float64(max(pct(check, 50), 1))
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

// pct is the p-th percentile of d (nearest rank), in nanoseconds.
func pct(d []time.Duration, p int) int64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)].Nanoseconds()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "etcd_fencing:", err)
	os.Exit(1)
}
