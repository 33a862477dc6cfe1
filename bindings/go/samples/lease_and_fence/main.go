// lease_and_fence: three nodes elect a leader; it writes through a fence with its token;
// leadership moves; the old leader's cached token is rejected (the same story as the C and
// Python samples of the same name).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
	"github.com/fencekit/fencekit/bindings/go/samples/internal/localgroup"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lease_and_fence:", err)
		os.Exit(1)
	}
}

func run() error {
	// Every wait of the sample (elections, the hand-over) ends within this.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := os.MkdirTemp("", "fencekit-lease-and-fence-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	nodes, err := localgroup.Start(root, 3, 42)
	if err != nil {
		return err
	}
	defer localgroup.Close(nodes)
	fence, err := fencekit.Open(filepath.Join(root, "storage"))
	if err != nil {
		return err
	}
	defer fence.Close()
	ledger, err := fence.Register([]byte("ledger/nightly-report"))
	if err != nil {
		return err
	}

	old, first, err := localgroup.Leader(ctx, nodes, -1)
	if err != nil {
		return err
	}
	fmt.Printf("node %d leads in generation %d\n", old+1, first.Token.Generation)
	v, err := fence.Check(ledger, first.Token)
	if err != nil {
		return err
	}
	fmt.Printf("  job 1 done: %v\n", v.Kind)
	successor, err := nodes[old].StepDown(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("node %d hands leadership to node %d (its lease is revoked first)\n", old+1, successor)
	next, second, err := localgroup.Leader(ctx, nodes, old)
	if err != nil {
		return err
	}
	fmt.Printf("node %d leads in generation %d\n", next+1, second.Token.Generation)
	if v, err = fence.Check(ledger, second.Token); err != nil {
		return err
	}
	fmt.Printf("  job 2 done: %v\n", v.Kind)
	_, err = nodes[old].Leadership()
	fmt.Printf("node %d still leads? %v\n", old+1, err == nil)
	zombie, err := fence.Check(ledger, first.Token)
	if err != nil {
		return err
	}
	fmt.Printf("node %d writes anyway with its cached token: %v (the mark is generation %d, node %d)\n",
		old+1, zombie.Kind, zombie.Current.Generation, zombie.Current.Holder)
	if zombie.Kind != fencekit.VerdictStale {
		return fmt.Errorf("the zombie's write was %v, not stale", zombie.Kind)
	}
	return nil
}
