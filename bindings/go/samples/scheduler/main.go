// scheduler: a cron-like leader runs each job exactly once.
//
// Three nodes elect a leader. Whoever leads runs the jobs that are due and records each
// completion in the job ledger through a fence, with its token. The leader's worker starts
// one more job and is paused (a GC pause, a stopped VM) before it records it; meanwhile
// leadership moves and the new leader runs the job. The paused worker wakes and records the
// completion with the token it started under: the fence rejects it as stale, so every job is
// recorded done exactly once. (The same drill as the Python sample of the same name.)
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

// ledger is the storage: job completions, each accepted only through the fence. The whole
// ledger is one fenced resource, so a new leader's first write fences every older token at
// once, whichever jobs it touches.
type ledger struct {
	fence    *fencekit.Fence
	resource uint32
	done     map[string]fencekit.Token
	rejected int
}

func (l *ledger) complete(job string, token fencekit.Token) error {
	v, err := l.fence.Check(l.resource, token)
	if err != nil {
		return err
	}
	if !v.Accepted() {
		l.rejected++
		fmt.Printf("  ledger: %s by node %d (generation %d): REJECTED, %v\n", job, token.Holder, token.Generation, v.Kind)
		return nil
	}
	if _, twice := l.done[job]; twice {
		return fmt.Errorf("%s ran twice", job)
	}
	l.done[job] = token
	fmt.Printf("  ledger: %s done by node %d (generation %d)\n", job, token.Holder, token.Generation)
	return nil
}

// runDueJobs runs the jobs not done yet while node leads, asking for its leadership before
// each one (the truth, not a cached flag).
func runDueJobs(node *fencekit.Node, l *ledger, jobs []string) error {
	for _, job := range jobs {
		if _, done := l.done[job]; done {
			continue
		}
		leadership, err := node.Leadership()
		if err != nil {
			return nil // not leading any more: the next leader runs the rest
		}
		if err := l.complete(job, leadership.Token); err != nil {
			return err
		}
	}
	return nil
}

// lost waits for node's event saying its leadership ended.
func lost(ctx context.Context, node *fencekit.Node) (fencekit.LostReason, error) {
	for {
		select {
		case e, ok := <-node.Events():
			if !ok {
				return 0, fmt.Errorf("node's events ended without a loss of leadership")
			}
			if e.Kind == fencekit.EventLost {
				return e.LostReason, nil
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("no loss of leadership: %w", ctx.Err())
		}
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		os.Exit(1)
	}
}

func run() error {
	// Every wait of the sample (elections, the hand-over) ends within this.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := os.MkdirTemp("", "fencekit-scheduler-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	nodes, err := localgroup.Start(root, 3, 7)
	if err != nil {
		return err
	}
	defer localgroup.Close(nodes)
	fence, err := fencekit.Open(filepath.Join(root, "ledger"))
	if err != nil {
		return err
	}
	defer fence.Close()
	resource, err := fence.Register([]byte("ledger"))
	if err != nil {
		return err
	}
	l := &ledger{fence: fence, resource: resource, done: map[string]fencekit.Token{}}

	first, leadership, err := localgroup.Leader(ctx, nodes, -1)
	if err != nil {
		return err
	}
	fmt.Printf("node %d leads (generation %d)\n", first+1, leadership.Token.Generation)
	if err := runDueJobs(nodes[first], l, []string{"backup-00:00", "report-00:00"}); err != nil {
		return err
	}

	// The leader's worker starts the next job with its token, then is paused before it
	// records the completion.
	resume := make(chan struct{})
	recorded := make(chan error)
	go func(token fencekit.Token) {
		<-resume
		fmt.Printf("node %d wakes up and records the job it started before the pause:\n", first+1)
		recorded <- l.complete("backup-01:00", token)
	}(leadership.Token)

	if _, err := nodes[first].StepDown(ctx); err != nil {
		return err
	}
	reason, err := lost(ctx, nodes[first])
	if err != nil {
		return err
	}
	fmt.Printf("node %d lost its leadership (%v); its paused worker does not know\n", first+1, reason)
	second, leadership, err := localgroup.Leader(ctx, nodes, first)
	if err != nil {
		return err
	}
	fmt.Printf("node %d leads (generation %d)\n", second+1, leadership.Token.Generation)
	if err := runDueJobs(nodes[second], l, []string{"backup-01:00", "report-01:00"}); err != nil {
		return err
	}
	close(resume)
	if err := <-recorded; err != nil {
		return err
	}
	fmt.Printf("jobs done exactly once: %d; stale writes rejected: %d\n", len(l.done), l.rejected)
	if l.rejected != 1 || len(l.done) != 4 {
		return fmt.Errorf("want 4 jobs done and 1 stale write rejected")
	}
	return nil
}
