// etcd_election: a scheduler elected with etcd's concurrency.Election, made safe with fencing.
//
// The program of the first seed document: several scheduler processes campaign with a session
// of TTL seconds, and the leader runs a cron-like schedule of jobs. etcd elects one leader at a
// time, but a leader paused (SIGSTOP, a GC pause, a stopped VM) past its TTL wakes still
// believing it leads, while its successor already runs the same job: the job is recorded twice.
//
// Made safe: the leader reads its token at every election (etcdfence.Campaign: the leader
// key's create revision and the session's lease id), sends it with every request to the job
// ledger (etcdfence's RoundTripper), and the ledger, embedding fencekit, checks it on the read
// and on the write under one lock, from the source etcd:<cluster id> (storage.go).
//
// The drill (the default command) shows it: workers as processes, the leader SIGSTOPped in the
// middle of a job past its TTL, then SIGCONTed after its successor has run that job. It prints
// what happened and a JSON line: runs recorded twice (0 when fenced), job bodies executed twice
// (fencing cannot prevent those: the zombie's body runs to its end; only its write is refused),
// and the failover time. -unfenced runs the seed's program as it was, the control: it records
// runs twice.
//
//	go run . -endpoints 127.0.0.1:2379 -ttl 5 -rounds 3
//	go run . -endpoints 127.0.0.1:2379 -ttl 5 -unfenced
//
// tests/etcd.sh starts an etcd and runs the drill's test; tests/etcd_measure.sh measures TTL 5 s
// and 60 s.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		workerMain(os.Args[2:])
		return
	}
	fs := flag.NewFlagSet("etcd_election", flag.ExitOnError)
	endpoints := fs.String("endpoints", defaultEndpoints(), "etcd's client endpoints, comma-separated (default $FENCEKIT_ETCD_ENDPOINTS)")
	workers := fs.Int("workers", 3, "scheduler processes")
	ttl := fs.Int("ttl", 5, "the election session's TTL, in seconds (the seed's program: 60)")
	rounds := fs.Int("rounds", 1, "how many times to stop the leader")
	period := fs.Duration("period", 0, "the schedule's period (default: TTL/5, at least 500ms)")
	job := fs.Duration("job", 0, "how long a job body runs (default: period/2)")
	unfenced := fs.Bool("unfenced", false, "the control: the seed's program without fencing")
	writesOnly := fs.Bool("writes-only", false, "a planted bug: the ledger checks tokens on writes only, not reads")
	jsonOnly := fs.Bool("json", false, "print only the JSON result line")
	if len(os.Args) > 1 && os.Args[1] == "drill" {
		os.Args = os.Args[1:]
	}
	fs.Parse(os.Args[1:])
	cfg := drillConfig{
		endpoints: strings.Split(*endpoints, ","), workers: *workers, ttl: *ttl, rounds: *rounds,
		period: *period, job: *job, unfenced: *unfenced, writesOnly: *writesOnly, self: os.Args[0],
		log: func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	}
	if *jsonOnly {
		cfg.log = func(string, ...any) {}
	}
	if cfg.period == 0 {
		cfg.period = max(time.Duration(cfg.ttl)*time.Second/5, 500*time.Millisecond)
	}
	if cfg.job == 0 {
		cfg.job = cfg.period / 2
	}
	if cfg.workers < 2 || cfg.ttl < 1 || cfg.rounds < 1 || cfg.job >= cfg.period {
		fmt.Fprintln(os.Stderr, "etcd_election: -workers at least 2, -ttl and -rounds at least 1, -job shorter than -period")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := runDrill(ctx, cfg)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd_election:", err)
		os.Exit(1)
	}
	if !*jsonOnly {
		fmt.Fprintf(os.Stderr, "%s, TTL %d s: %d runs recorded twice, %d job bodies executed twice, failover %v ms\n",
			res.Mode, res.TTL, res.RecordedTwice, res.ExecutedTwice, res.FailoverMS)
	}
}

func defaultEndpoints() string {
	if e := os.Getenv("FENCEKIT_ETCD_ENDPOINTS"); e != "" {
		return e
	}
	return "127.0.0.1:2379"
}

// workerMain is one scheduler process, started by the drill.
func workerMain(args []string) {
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	id := fs.Int("id", 1, "")
	endpoints := fs.String("endpoints", "", "")
	ttl := fs.Int("ttl", 5, "")
	prefix := fs.String("prefix", "/election", "")
	storage := fs.String("storage", "", "")
	epoch := fs.String("epoch", "", "")
	period := fs.Duration("period", time.Second, "")
	job := fs.Duration("job", 500*time.Millisecond, "")
	effects := fs.String("effects", "", "")
	unfenced := fs.Bool("unfenced", false, "")
	fs.Parse(args)
	nanos, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker: -epoch:", err)
		os.Exit(2)
	}
	cfg := workerConfig{id: *id, endpoints: strings.Split(*endpoints, ","), ttl: *ttl, prefix: *prefix,
		storage: *storage, epoch: time.Unix(0, nanos), period: *period, job: *job, effects: *effects, unfenced: *unfenced}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWorker(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "worker %d: %v\n", *id, err)
		os.Exit(1)
	}
}
