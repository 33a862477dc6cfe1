package fencekit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// freeAddr picks a free local port below the kernel's ephemeral range (32768 and up), which a
// node's own outbound connections draw from: a port picked there can be taken before the node
// binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.Intn(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000..32000")
	return ""
}

// group configures size nodes of one cluster on free local ports, secured with development
// certificates made in a temporary directory.
func group(t *testing.T, size int) []Config {
	t.Helper()
	root := t.TempDir()
	addrs := make([]string, size)
	ids := make([]uint64, size)
	for i := range addrs {
		addrs[i] = freeAddr(t)
		ids[i] = uint64(i + 1)
	}
	certs := filepath.Join(root, "certs")
	if err := MakeDevCerts(certs, 11, ids); err != nil {
		t.Fatal(err)
	}
	configs := make([]Config, size)
	for i := range configs {
		c := Config{ID: ids[i], Cluster: 11, DataDir: filepath.Join(root, fmt.Sprint("node-", i+1)), Listen: addrs[i],
			TLS: &TLSConfig{Dir: DevCertDir(certs, ids[i])}}
		for j := range addrs {
			if j != i {
				c.Peers = append(c.Peers, Peer{ID: uint64(j + 1), Addr: addrs[j]})
			}
		}
		configs[i] = c
	}
	return configs
}

// background is context.Background(), for code where a variable named context hides the
// package.
var background = context.Background()

// awaitLeadership waits up to d for node to lead. A wait that ran out is the error
// Leadership gives then (ErrNotLeader), as the vectors expect of every binding.
func awaitLeadership(node *Node, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := node.WaitLeadership(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		_, err = node.Leadership()
	}
	return err
}

// ctxFor is a context that ends after d or with the test.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, c Config) *Node {
	t.Helper()
	n, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// leaderOf waits for one of nodes (other than exclude) to hold usable leadership.
func leaderOf(t *testing.T, nodes []*Node, exclude int) (int, Leadership) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for i, n := range nodes {
			if i == exclude {
				continue
			}
			if l, err := n.Leadership(); err == nil {
				return i, l
			} else if !errors.Is(err, ErrNotLeader) {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("no leader within 10 s")
	return 0, Leadership{}
}

// nextEvent waits for the next event of kind, skipping others.
func nextEvent(t *testing.T, n *Node, kind EventKind) Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-n.Events():
			if !ok {
				t.Fatalf("the events closed before a %v event", kind)
			}
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %v event within 10 s", kind)
		}
	}
}

func TestASingleNodeLeadsProposesAppliesAndStops(t *testing.T) {
	n := start(t, group(t, 1)[0])
	_, l := leaderOf(t, []*Node{n}, -1)
	if l.Token.Holder != 1 || l.LeaseRemaining <= 0 {
		t.Fatalf("leadership %+v", l)
	}
	if e := nextEvent(t, n, EventElected); e.Token != l.Token {
		t.Fatalf("elected with %v, leading with %v", e.Token, l.Token)
	}
	index, err := n.Propose(ctxFor(t, 5*time.Second), []byte("job-1 done"))
	if err != nil {
		t.Fatal(err)
	}
	for item := range n.Applied() {
		if item.Index == index {
			if item.Kind != AppliedEntry || string(item.Data) != "job-1 done" || item.Term != l.Token.Generation {
				t.Fatalf("applied %+v", item)
			}
			break
		}
	}
	status, err := n.Status()
	if err != nil || status.Role != "leader" || status.ID != 1 || status.LeadingGeneration != l.Token.Generation ||
		status.Commit < index || len(status.Voters) != 1 {
		t.Fatalf("status %+v %v", status, err)
	}
	now, err := n.Now()
	if err != nil || now == 0 || now > l.LeaseDeadline+uint64(time.Minute) {
		t.Fatalf("now %d (deadline %d) %v", now, l.LeaseDeadline, err)
	}
	// A target that is no voter is refused as a membership matter, naming it.
	if err := n.Transfer(context.Background(), 2); !errors.Is(err, ErrMembership) || !strings.Contains(err.Error(), "node 2 is not a voter") {
		t.Fatalf("a transfer to a non-member: %v", err)
	}
	if err := n.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A stopped node's status claims no leadership.
	if status, err := n.Status(); err != nil || status.Role != "follower" || status.Leader != 0 ||
		status.LeadingGeneration != 0 || !status.Stopped {
		t.Fatalf("the status of a stopped node: %+v %v", status, err)
	}
	if err := n.Stop(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("a second stop: %v", err)
	}
	if _, err := n.Leadership(); err == nil {
		t.Fatal("a stopped node still leads")
	}
	// Read to the end, the events close; the last says why leadership ended.
	var last Event
	for e := range n.Events() {
		last = e
	}
	if last.Kind != EventLost || last.LostReason != LostStopped || last.Token != l.Token {
		t.Fatalf("the last event: %+v", last)
	}
	n.Close()
	n.Close()
	if _, err := n.Status(); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed node answered: %v", err)
	}
	if _, ok := <-n.Applied(); ok {
		t.Fatal("the applied items of a closed node stay open")
	}
}

func TestLeadershipMovesAndTheOldTokenIsFenced(t *testing.T) {
	configs := group(t, 3)
	nodes := make([]*Node, len(configs))
	for i, c := range configs {
		nodes[i] = start(t, c)
	}
	fence := open(t, t.TempDir())
	defer fence.Close()
	ledger, _ := fence.Register([]byte("ledger"))
	old, first := leaderOf(t, nodes, -1)
	if v, err := fence.Check(ledger, first.Token); err != nil || !v.Accepted() {
		t.Fatalf("the leader's write: %+v %v", v, err)
	}
	successor, err := nodes[old].StepDown(ctxFor(t, 10*time.Second))
	if err != nil || successor == uint64(old+1) || successor == 0 {
		t.Fatalf("step down to %d: %v", successor, err)
	}
	if e := nextEvent(t, nodes[old], EventLost); e.LostReason != LostTransferring || e.Token != first.Token {
		t.Fatalf("the old leader's loss: %+v", e)
	}
	if _, err := nodes[old].Leadership(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old leader still leads: %v", err)
	}
	if _, err := nodes[old].Propose(ctxFor(t, time.Second), []byte("x")); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a proposal on a follower: %v", err)
	}
	_, second := leaderOf(t, nodes, old)
	if second.Token.Generation <= first.Token.Generation {
		t.Fatalf("generation %d after %d", second.Token.Generation, first.Token.Generation)
	}
	if v, _ := fence.Check(ledger, second.Token); !v.Accepted() {
		t.Fatalf("the new leader's write: %+v", v)
	}
	if v, _ := fence.Check(ledger, first.Token); v.Kind != VerdictStale || v.Current != second.Token {
		t.Fatalf("the zombie's write: %+v", v)
	}
	// Transfer back, by id.
	newLeader := int(second.Token.Holder - 1)
	if err := nodes[newLeader].Transfer(ctxFor(t, 10*time.Second), uint64(old+1)); err != nil {
		t.Fatal(err)
	}
	if i, third := leaderOf(t, nodes, newLeader); third.Token.Generation <= second.Token.Generation {
		t.Fatalf("node %d leads in generation %d after %d", i+1, third.Token.Generation, second.Token.Generation)
	}
}

func TestBadConfigsNameTheirField(t *testing.T) {
	base := group(t, 1)[0]
	cases := []struct {
		name string
		edit func(*Config)
		want error
		text string
	}{
		{"id 0", func(c *Config) { c.ID = 0 }, ErrInvalidConfig, "id = 0"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, ErrInvalidConfig, "data_dir"},
		{"bad listen", func(c *Config) { c.Listen = "localhost" }, ErrInvalidConfig, "listen"},
		{"itself a peer", func(c *Config) { c.Peers = []Peer{{ID: 1, Addr: "127.0.0.1:1"}} }, ErrInvalidConfig, "itself"},
		{"join and voters", func(c *Config) { c.Join, c.Voters = true, []uint64{1} }, ErrInvalidConfig, "not both"},
		{"neither tls nor insecure", func(c *Config) { c.TLS = nil }, ErrInvalidConfig, `no "tls"`},
		{"tls and insecure", func(c *Config) { c.Insecure = true }, ErrInvalidConfig, "not both"},
		{"tls dir and files", func(c *Config) { c.TLS = &TLSConfig{Dir: c.TLS.Dir, Cert: "node.crt"} }, ErrInvalidConfig, "tls"},
		{"tls files missing the ca", func(c *Config) { c.TLS = &TLSConfig{Cert: "c.pem", Key: "k.pem"} }, ErrInvalidConfig, "tls"},
		{"sub-millisecond tick", func(c *Config) { c.Timing.Tick = 1500 * time.Microsecond }, ErrInvalidConfig, "Timing.Tick"},
		{"negative margin", func(c *Config) { c.Timing.Margin = -time.Millisecond }, ErrInvalidConfig, "Timing.Margin"},
	}
	for _, c := range cases {
		config := base
		c.edit(&config)
		n, err := Start(config)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.want, c.text)
		}
		if n != nil {
			t.Errorf("%s: a node started", c.name)
			n.Close()
		}
	}
	if _, err := StartJSON([]byte("{"), nil); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("broken JSON: %v", err)
	}
	if _, err := StartJSON([]byte(`{"id":1,"cluster":1,"data_dir":"d","listen":"127.0.0.1:1","colour":"blue"}`), nil); !strings.Contains(fmt.Sprint(err), "colour") {
		t.Errorf("an unknown field: %v", err)
	}

	running := start(t, base)
	again := base
	again.Listen = freeAddr(t)
	if _, err := Start(again); !errors.Is(err, ErrLocked) {
		t.Errorf("a second node on one directory: %v", err)
	}
	other := base
	other.DataDir = filepath.Join(t.TempDir(), "other")
	if _, err := Start(other); !errors.Is(err, ErrTransport) {
		t.Errorf("a port in use: %v", err)
	}
	running.Close()
	wrong := base
	wrong.Cluster = 12
	if _, err := Start(wrong); !errors.Is(err, ErrWrongCluster) {
		t.Errorf("a directory of another cluster: %v", err)
	}
}

func TestCloseWhileOtherGoroutinesCallIsSafe(t *testing.T) {
	n := start(t, group(t, 1)[0])
	leaderOf(t, []*Node{n}, -1)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, err := n.Propose(ctxFor(t, time.Second), []byte("busy"))
				if err == nil {
					_, err = n.Status()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() {
		for range n.Applied() {
		}
	}()
	time.Sleep(50 * time.Millisecond)
	n.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrNotLeader) {
			t.Errorf("a call racing Close: %v", err)
		}
	}
}

func TestANilNodeIsClosed(t *testing.T) {
	var n *Node
	if _, err := n.Leadership(); !errors.Is(err, ErrClosed) {
		t.Fatal(err)
	}
	if _, ok := <-n.Events(); ok {
		t.Fatal("a nil node has events")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

// A node whose thread panics (the test hook) is reported failed through every API, and the
// others elect a successor.
func TestAFailedNodeIsReportedThroughEveryAPI(t *testing.T) {
	configs := group(t, 3)
	nodes := make([]*Node, len(configs))
	for i, c := range configs {
		c.TestHooks = true
		nodes[i] = start(t, c)
	}
	failed, led := leaderOf(t, nodes, -1)
	node := nodes[failed]
	if err := node.PanicForTesting(); err != nil {
		t.Fatal(err)
	}

	// The panic happens on the node's thread, a moment after the call.
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err = node.Leadership(); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrNodeFailed) || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("the failed node's leadership: %v", err)
	}
	// The events say why leadership ended, then close.
	var lost *Event
	timeout := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case e, ok := <-node.Events():
			if !ok {
				done = true
			} else if e.Kind == EventLost && e.Token == led.Token {
				lost = &e
			}
		case <-timeout:
			t.Fatal("the failed node's events did not close within 10 s")
		}
	}
	if lost == nil || lost.LostReason != LostFailed || lost.LostReason.String() != "failed" {
		t.Fatalf("the failed leader's loss: %+v", lost)
	}
	if _, err := node.Propose(ctxFor(t, time.Second), []byte("x")); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("a proposal on a failed node: %v", err)
	}
	if _, err := node.StepDown(context.Background()); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("a failed node stepping down: %v", err)
	}
	if err := node.Transfer(context.Background(), uint64((failed+1)%3+1)); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("a failed node transferring: %v", err)
	}
	if err := node.Compact(context.Background(), 0, nil); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("a failed node compacting: %v", err)
	}
	if err := node.PanicForTesting(); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("the test hook on a failed node: %v", err)
	}
	status, err := node.Status()
	if err != nil || !status.Failed || !strings.Contains(status.Failure, "panic") || status.LeadingGeneration != 0 {
		t.Fatalf("the failed node's status: %+v %v", status, err)
	}
	// The committed items delivered before the failure can be read; then the channel closes.
	for timeout := time.After(10 * time.Second); ; {
		_, ok := <-node.Applied()
		if !ok {
			break
		}
		select {
		case <-timeout:
			t.Fatal("a failed node's applied items stay open")
		default:
		}
	}

	_, successor := leaderOf(t, nodes, failed)
	if successor.Token.Generation <= led.Token.Generation {
		t.Fatalf("generation %d after %d", successor.Token.Generation, led.Token.Generation)
	}
	for i, n := range nodes {
		if s, err := n.Status(); i != failed && (err != nil || s.Failed || s.Failure != "") {
			t.Errorf("node %d: %+v %v", i+1, s, err)
		}
	}

	if err := node.Stop(context.Background()); !errors.Is(err, ErrNodeFailed) {
		t.Errorf("stopping a failed node: %v", err)
	}

	// Restarted on its log, the node is a member again.
	node.Close()
	node = start(t, configs[failed])
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		status, err = node.Status()
		if err != nil || status.Failed {
			t.Fatalf("the restarted node: %+v %v", status, err)
		}
		if status.Leader != 0 && status.Commit > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted node knows no leader within 10 s: %+v", status)
		}
	}
}

// The node vectors (tests/vectors/README.md, "Node vectors"), as the C and Python tests run
// them: a node's configuration errors, leadership transfers and its status after a stop.

// mergeConfig merges patch into base: objects field by field, a nil (null) field left out.
func mergeConfig(base, patch map[string]any) {
	for k, v := range patch {
		if v == nil {
			delete(base, k)
			continue
		}
		sub, isMap := v.(map[string]any)
		have, hadMap := base[k].(map[string]any)
		if isMap && hadMap {
			mergeConfig(have, sub)
			continue
		}
		base[k] = v
	}
}

func runNodeVector(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decoder := json.NewDecoder(strings.NewReader(string(raw)))
	decoder.UseNumber()
	var vector struct {
		Name  string `json:"name"`
		Steps []struct {
			Op     string         `json:"op"`
			Config map[string]any `json:"config"`
			To     any            `json:"to"`
			Expect map[string]any `json:"expect"`
		} `json:"steps"`
	}
	if err := decoder.Decode(&vector); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var node *Node
	defer func() { node.Close() }()
	for i, s := range vector.Steps {
		context := fmt.Sprintf("%s step %d (%s)", vector.Name, i, s.Op)
		var (
			err    error
			status NodeStatus
			raw    []byte
		)
		switch s.Op {
		case "start":
			config := map[string]any{
				"id": 1, "cluster": 1, "data_dir": filepath.Join(dir, fmt.Sprint("node-", i)),
				"listen": "127.0.0.1:0", "insecure": true,
				"timing": map[string]any{"tick_ms": 10, "margin_ms": 10},
			}
			mergeConfig(config, s.Config)
			text, jerr := json.Marshal(config)
			if jerr != nil {
				t.Fatal(jerr)
			}
			var started *Node
			started, err = StartJSON(text, nil)
			if started != nil {
				node.Close()
				node = started
				if s.Expect["status"] != "ok" {
					t.Errorf("%s: a node started: %s", context, text)
				}
			}
		case "await_leadership":
			err = awaitLeadership(node, 10*time.Second)
		case "transfer":
			err = node.Transfer(background, number(s.To))
		case "step_down":
			_, err = node.StepDown(background)
		case "stop":
			err = node.Stop(background)
		case "status":
			if raw, err = node.StatusJSON(); err == nil {
				status, err = node.Status()
			}
		default:
			t.Fatalf("%s: unknown op", context)
		}
		if want, ok := s.Expect["status"]; ok {
			if got := statusName(err); got != want {
				t.Errorf("%s: status %s, want %s", context, got, want)
			}
			compareMessage(t, context, err, s.Expect["message"])
		}
		if want, ok := s.Expect["status_json"]; ok {
			if err != nil {
				t.Errorf("%s: %v", context, err)
				continue
			}
			compareStatusJSON(t, context, raw, status, want.(map[string]any))
		}
	}
}

// compareStatusJSON checks that every field of want is in the status JSON with that value,
// and that NodeStatus reads the fields it has the same way.
func compareStatusJSON(t *testing.T, context string, raw []byte, status NodeStatus, want map[string]any) {
	t.Helper()
	decoder := json.NewDecoder(strings.NewReader(string(raw)))
	decoder.UseNumber()
	var got map[string]any
	if err := decoder.Decode(&got); err != nil {
		t.Fatalf("%s: the status is not JSON: %v: %s", context, err, raw)
	}
	for field, w := range want {
		g, ok := got[field]
		if !ok || fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: status field %q is %v, want %v: %s", context, field, g, w, raw)
		}
	}
	if role, ok := want["role"]; ok && status.Role != role {
		t.Errorf("%s: NodeStatus.Role %q, want %v", context, status.Role, role)
	}
	if stopped, ok := want["stopped"]; ok && status.Stopped != stopped {
		t.Errorf("%s: NodeStatus.Stopped %v, want %v", context, status.Stopped, stopped)
	}
	if leader, ok := want["leader"]; ok && leader == nil && status.Leader != 0 {
		t.Errorf("%s: NodeStatus.Leader %d, want none", context, status.Leader)
	}
}

func TestNodeVectors(t *testing.T) {
	files, _ := filepath.Glob("../../tests/vectors/node/*.json")
	sort.Strings(files)
	if len(files) < 2 {
		t.Fatalf("found only %v", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runNodeVector(t, file) })
	}
}

// Of stops called at once, one stops the node and every other says it is stopped already.
func TestConcurrentStopsSucceedOnce(t *testing.T) {
	n := start(t, group(t, 1)[0])
	leaderOf(t, []*Node{n}, -1)
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- n.Stop(context.Background()) }()
	}
	succeeded := 0
	for range 8 {
		err := <-errs
		switch {
		case err == nil:
			succeeded++
		case !errors.Is(err, ErrStopped):
			t.Errorf("a concurrent stop: %v", err)
		}
	}
	if succeeded != 1 {
		t.Fatalf("%d of 8 concurrent stops succeeded", succeeded)
	}
}

// ProposeBatch: every item commits, at consecutive indexes from the one returned, and is
// applied in order; a bad batch is refused whole.
func TestABatchCommitsAtConsecutiveIndexesInOrder(t *testing.T) {
	n := start(t, group(t, 1)[0])
	leaderOf(t, []*Node{n}, -1)
	batch := [][]byte{[]byte("b-0"), []byte("b-1"), []byte("b-2"), []byte("b-3")}
	first, err := n.ProposeBatch(ctxFor(t, 5*time.Second), batch)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for item := range n.Applied() {
		if item.Kind != AppliedEntry || !strings.HasPrefix(string(item.Data), "b-") {
			continue
		}
		if item.Index != first+uint64(next) || string(item.Data) != string(batch[next]) {
			t.Fatalf("applied %+v, expected %q at %d", item, batch[next], first+uint64(next))
		}
		next++
		if next == len(batch) {
			break
		}
	}
	if _, err := n.ProposeBatch(ctxFor(t, time.Second), nil); !errors.Is(err, ErrInvalidBatch) {
		t.Fatalf("an empty batch: %v", err)
	}
	if _, err := n.ProposeBatch(ctxFor(t, time.Second), [][]byte{[]byte("x"), {}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("an empty item: %v", err)
	}
}
