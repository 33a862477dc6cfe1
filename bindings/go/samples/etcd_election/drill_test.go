package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// The test binary is also the workers' program: the drill starts it as `worker ...`.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		workerMain(os.Args[2:])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func drill(t *testing.T, unfenced, writesOnly bool, rounds int) result {
	t.Helper()
	endpoints := os.Getenv("FENCEKIT_ETCD_ENDPOINTS")
	if endpoints == "" {
		if os.Getenv("FENCEKIT_ETCD_REQUIRED") != "" {
			t.Fatal("FENCEKIT_ETCD_REQUIRED is set but FENCEKIT_ETCD_ENDPOINTS is not")
		}
		t.Skip("no etcd: run tests/etcd.sh, which starts one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res, err := runDrill(ctx, drillConfig{
		endpoints: strings.Split(endpoints, ","), workers: 3, ttl: 1, rounds: rounds,
		period: 500 * time.Millisecond, job: 250 * time.Millisecond, unfenced: unfenced, writesOnly: writesOnly, self: self,
		log: t.Logf,
	})
	t.Logf("%+v", res)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.FailoverMS) != rounds {
		t.Fatalf("%d failovers measured in %d rounds", len(res.FailoverMS), rounds)
	}
	return res
}

// Fenced, a leader stopped mid-job past its TTL never gets its run recorded again: the ledger
// refuses its write as stale, though its job body runs to its end (executed twice, which
// fencing cannot prevent).
func TestFencedNoRunIsRecordedTwice(t *testing.T) {
	res := drill(t, false, false, 2)
	if res.RecordedTwice != 0 || res.ZombieLanded != 0 || res.ZombieUnknown != 0 {
		t.Fatalf("fenced: %d runs recorded twice, %d zombie writes landed, %d unresolved", res.RecordedTwice, res.ZombieLanded, res.ZombieUnknown)
	}
	if res.ZombieStale != res.Rounds {
		t.Fatalf("fenced: of %d zombie writes, %d refused as stale", res.Rounds, res.ZombieStale)
	}
	if res.ExecutedTwice == 0 {
		t.Fatalf("no job body executed twice: the leader was not stopped mid-job")
	}
}

// The control: the seed's program as it was records a run twice in the same drill, so the
// drill can fail.
func TestUnfencedRecordsARunTwice(t *testing.T) {
	res := drill(t, true, false, 1)
	if res.RecordedTwice == 0 || res.ZombieLanded == 0 {
		t.Fatalf("unfenced: %d runs recorded twice, %d zombie writes landed: the drill cannot fail", res.RecordedTwice, res.ZombieLanded)
	}
}

// A planted bug: a ledger that checks tokens on writes only. The zombie wakes after its
// successor has read the ledger and started the run, but before the successor's write: the
// zombie's token is still the mark, so its write lands, and the successor's too. Rule 2 (the
// token on the read) is what the fenced drill relies on.
func TestFencingOnlyWritesRecordsARunTwice(t *testing.T) {
	res := drill(t, false, true, 1)
	if res.RecordedTwice == 0 || res.ZombieLanded == 0 {
		t.Fatalf("writes-only: %d runs recorded twice, %d zombie writes landed: the read's check is not shown to matter", res.RecordedTwice, res.ZombieLanded)
	}
}
