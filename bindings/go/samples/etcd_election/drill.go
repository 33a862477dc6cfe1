package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fencekit/fencekit/bindings/go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// drillConfig is what the drill varies: flags of `etcd_election drill`.
type drillConfig struct {
	endpoints []string
	workers   int
	ttl       int
	rounds    int
	period    time.Duration
	job       time.Duration
	unfenced  bool
	// writesOnly: the ledger checks tokens on writes only (a planted bug: a new leader must
	// present its token before it reads).
	writesOnly bool
	self       string // the program to start workers from (os.Args[0])
	log        func(format string, args ...any)
}

// result is the drill's outcome: the line a measurement script reads.
type result struct {
	Drill   string `json:"drill"`
	Mode    string `json:"mode"` // fenced, unfenced or writes-only
	TTL     int    `json:"ttl_s"`
	Rounds  int    `json:"rounds"`
	Workers int    `json:"workers"`
	// FailoverMS: per round, from the leader's SIGSTOP to another worker's election.
	FailoverMS []int64 `json:"failover_ms"`
	// RecordedTwice: runs the ledger recorded more than once. ExecutedTwice: runs whose job
	// body ran to its end more than once (fencing cannot prevent it: the zombie's body runs on).
	RecordedTwice int `json:"recorded_twice"`
	ExecutedTwice int `json:"executed_twice"`
	// What became of each stopped leader's write of its interrupted run when it woke: landed
	// (recorded), refused by the ledger as stale, or unresolved (no answer in time, or another
	// refusal).
	ZombieLanded   int   `json:"zombie_writes_landed"`
	ZombieStale    int   `json:"zombie_writes_refused_stale"`
	ZombieUnknown  int   `json:"zombie_writes_unresolved"`
	RunsRecorded   int   `json:"runs_recorded"`
	DurationMillis int64 `json:"duration_ms"`
}

type timedEvent struct {
	event
	at time.Time
}

// runDrill starts cfg.workers scheduler processes and the ledger, and cfg.rounds times stops
// the leader mid-job (SIGSTOP) past its TTL, waits until another worker has been elected and
// has started the interrupted run, then lets the stopped one go on (SIGCONT).
func runDrill(ctx context.Context, cfg drillConfig) (result, error) {
	began := time.Now()
	res := result{Drill: "etcd_election", Mode: "fenced", TTL: cfg.ttl, Rounds: cfg.rounds, Workers: cfg.workers, FailoverMS: []int64{}}
	if cfg.unfenced {
		res.Mode = "unfenced"
	} else if cfg.writesOnly {
		res.Mode = "writes-only"
	}
	source, err := clusterSource(ctx, cfg.endpoints)
	if err != nil {
		return res, err
	}
	work, err := os.MkdirTemp("", "etcd-election-drill-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	fenceDir := filepath.Join(work, "fence")
	if cfg.unfenced {
		fenceDir = ""
	}
	store, err := openStorage(fenceDir, source)
	store.writesOnly = cfg.writesOnly
	if err != nil {
		return res, err
	}
	url, stop, err := store.serve()
	if err != nil {
		return res, err
	}
	defer stop()
	effects := filepath.Join(work, "effects")

	// The workers, each its own process, sharing the schedule's epoch.
	epoch := time.Now()
	prefix := fmt.Sprintf("/fencekit-drill/%d", epoch.UnixNano())
	evs := make(chan timedEvent, 1024)
	procs := map[int]*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGCONT)
			p.Process.Kill()
			p.Wait()
		}
	}()
	for id := 1; id <= cfg.workers; id++ {
		args := []string{"worker", "-id", strconv.Itoa(id), "-endpoints", strings.Join(cfg.endpoints, ","),
			"-ttl", strconv.Itoa(cfg.ttl), "-prefix", prefix, "-storage", url,
			"-epoch", strconv.FormatInt(epoch.UnixNano(), 10), "-period", cfg.period.String(),
			"-job", cfg.job.String(), "-effects", effects}
		if cfg.unfenced {
			args = append(args, "-unfenced")
		}
		cmd := exec.Command(cfg.self, args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return res, err
		}
		if err := cmd.Start(); err != nil {
			return res, err
		}
		procs[id] = cmd
		go func() {
			scan := bufio.NewScanner(out)
			for scan.Scan() {
				var e event
				if json.Unmarshal(scan.Bytes(), &e) == nil {
					evs <- timedEvent{e, time.Now()}
				}
			}
		}()
	}
	// wait returns the first event that matches, or fails after limit.
	wait := func(what string, limit time.Duration, match func(timedEvent) bool) (timedEvent, error) {
		deadline := time.After(limit)
		for {
			select {
			case e := <-evs:
				if match(e) {
					return e, nil
				}
			case <-deadline:
				return timedEvent{}, fmt.Errorf("no %s within %v", what, limit)
			case <-ctx.Done():
				return timedEvent{}, ctx.Err()
			}
		}
	}
	// A term lasts at most a TTL past the pause (plus etcd's rounding and the campaign): allow
	// three, and time for a job.
	failoverLimit := time.Duration(3*cfg.ttl)*time.Second + 10*time.Second + 2*cfg.job

	for round := 1; round <= cfg.rounds; round++ {
		// The victim: whoever leads, caught as it starts a job, after at least one job
		// recorded in this round (so that the term is under way).
		if _, err := wait("recorded run", failoverLimit, func(e timedEvent) bool { return e.Ev == "recorded" }); err != nil {
			return res, err
		}
		start, err := wait("job start", failoverLimit, func(e timedEvent) bool { return e.Ev == "start" })
		if err != nil {
			return res, err
		}
		victim, run := start.Worker, start.Run
		time.Sleep(cfg.job / 2)
		if err := procs[victim].Process.Signal(syscall.SIGSTOP); err != nil {
			return res, err
		}
		stopped := time.Now()
		cfg.log("round %d: worker %d stopped in the middle of run %d", round, victim, run)
		elected, err := wait("new leader", failoverLimit, func(e timedEvent) bool { return e.Ev == "elected" && e.Worker != victim })
		if err != nil {
			return res, err
		}
		failover := elected.at.Sub(stopped)
		res.FailoverMS = append(res.FailoverMS, failover.Milliseconds())
		cfg.log("round %d: worker %d elected after %v", round, elected.Worker, failover.Round(time.Millisecond))
		// The zombie wakes while its successor runs the same job: after the successor's read,
		// before its write. A ledger that fences only writes lets the zombie's write land here.
		if _, err := wait(fmt.Sprintf("run %d started by the new leader", run), failoverLimit, func(e timedEvent) bool {
			return e.Ev == "start" && e.Run == run && e.Worker != victim
		}); err != nil {
			return res, err
		}
		if err := procs[victim].Process.Signal(syscall.SIGCONT); err != nil {
			return res, err
		}
		// Both writes of the run: the zombie's and its successor's, in either order.
		var outcome timedEvent
		successor := false
		_, err = wait(fmt.Sprintf("both writes of run %d", run), 10*time.Second+2*cfg.job, func(e timedEvent) bool {
			if e.Run == run && (e.Ev == "recorded" || e.Ev == "refused") {
				if e.Worker == victim {
					outcome = e
				} else {
					successor = true
				}
			}
			return outcome.Ev != "" && successor
		})
		switch {
		case outcome.Ev == "":
			res.ZombieUnknown++
			cfg.log("round %d: %v", round, err)
		case outcome.Ev == "recorded":
			res.ZombieLanded++
			cfg.log("round %d: the zombie (worker %d) recorded run %d: twice", round, victim, run)
		case outcome.Why == fencekit.VerdictStale.String() && store.refusedRuns("stale", run) > 0:
			res.ZombieStale++
			cfg.log("round %d: the zombie's write of run %d refused: %s", round, run, outcome.Why)
		default:
			res.ZombieUnknown++
			cfg.log("round %d: the zombie's write of run %d: %s", round, run, outcome.Why)
		}
		if err != nil {
			return res, err
		}
	}
	// The workers stop before counting, so that no write lands during the count.
	for id, p := range procs {
		p.Process.Signal(syscall.SIGCONT)
		p.Process.Kill()
		p.Wait()
		delete(procs, id)
	}
	res.RecordedTwice = store.recordedTwice()
	store.mu.Lock()
	res.RunsRecorded = len(store.records)
	store.mu.Unlock()
	res.ExecutedTwice, err = executedTwice(effects)
	res.DurationMillis = time.Since(began).Milliseconds()
	return res, err
}

// executedTwice counts the runs whose job body ended more than once.
func executedTwice(effects string) (int, error) {
	raw, err := os.ReadFile(effects)
	if err != nil {
		return 0, err
	}
	ends := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if run, _, ok := strings.Cut(line, " "); ok {
			ends[run]++
		}
	}
	n := 0
	for _, c := range ends {
		if c > 1 {
			n++
		}
	}
	return n, nil
}

// clusterSource is the token source of the etcd cluster at endpoints: etcd:<cluster id>.
func clusterSource(ctx context.Context, endpoints []string) (string, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "fencekit-drill-probe")
	if err != nil {
		return "", fmt.Errorf("etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	return fencekit.EtcdClusterSource(resp.Header.ClusterId), nil
}
