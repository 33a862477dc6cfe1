package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fencekit/fencekit/bindings/go/etcdfence"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// workerConfig is one scheduler process's configuration (the drill starts several).
type workerConfig struct {
	id        int
	endpoints []string
	ttl       int           // the session's TTL, in seconds
	prefix    string        // the election's key prefix
	storage   string        // the ledger's URL
	epoch     time.Time     // run N is due at epoch + N × period
	period    time.Duration // the schedule's period
	job       time.Duration // how long a job body takes
	effects   string        // a file each job body appends to when it ends: its outside effect
	unfenced  bool          // the seed's program as it was: no token on its requests
}

// events are JSON lines on stdout, for the drill: {"ev": "elected", ...}.
var events = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

type event struct {
	Worker int    `json:"worker"`
	Ev     string `json:"ev"` // elected, start, end, recorded, refused, lost
	Run    int    `json:"run,omitempty"`
	Gen    uint64 `json:"gen,omitempty"`
	Why    string `json:"why,omitempty"`
}

func emit(e event) {
	events.Lock()
	defer events.Unlock()
	events.enc.Encode(e)
}

// runWorker is the seed's scheduler made safe: campaign with a session of TTL seconds, and
// while leading, run the jobs that are due, each one read from and recorded in the ledger with
// the token of this term. It campaigns again, with a new session, whenever a term ends.
func runWorker(ctx context.Context, cfg workerConfig) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	for ctx.Err() == nil {
		session, err := concurrency.NewSession(cli, concurrency.WithTTL(cfg.ttl), concurrency.WithContext(ctx))
		if err != nil {
			// etcd out of reach: nothing to lead with; try again.
			fmt.Fprintf(os.Stderr, "worker %d: %v\n", cfg.id, err)
			time.Sleep(time.Second)
			continue
		}
		election := concurrency.NewElection(session, cfg.prefix)
		// The token is read at every election, from this election: never kept from an
		// earlier term (etcdfence, rule 1).
		leader, err := etcdfence.Campaign(session.Ctx(), session, election, strconv.Itoa(cfg.id))
		if err == nil {
			emit(event{Worker: cfg.id, Ev: "elected", Gen: leader.Token.Generation})
			why := lead(session.Ctx(), cfg, leader)
			emit(event{Worker: cfg.id, Ev: "lost", Why: why})
		}
		session.Close()
	}
	return nil
}

// lead runs due jobs until the term ends: the session ends (its lease lapsed or the process
// stops) or the ledger refuses this leader's token. It says why it stopped.
func lead(ctx context.Context, cfg workerConfig, leader etcdfence.Leader) string {
	client := &http.Client{Timeout: 5 * time.Second}
	if !cfg.unfenced {
		// Every request carries the token: the read as well as the write (rule 2).
		client = leader.Client(client)
	}
	for {
		if ctx.Err() != nil {
			return "session ended"
		}
		last, err := readLast(ctx, client, cfg.storage)
		if err != nil {
			return err.Error()
		}
		run := last + 1
		if wait := time.Until(cfg.epoch.Add(time.Duration(run) * cfg.period)); wait > 0 {
			select {
			case <-ctx.Done():
				return "session ended"
			case <-time.After(min(wait, cfg.period)):
			}
			continue // read again: the ledger is the truth, not what this loop remembers
		}
		// The job body. A leader paused here (SIGSTOP) runs it to its end when it wakes:
		// fencing cannot stop that, only refuse its write. An effect outside the ledger (this
		// file) needs an idempotency key of its own.
		emit(event{Worker: cfg.id, Ev: "start", Run: run})
		time.Sleep(cfg.job)
		if err := appendLine(cfg.effects, fmt.Sprintf("%d %d\n", run, cfg.id)); err != nil {
			return err.Error()
		}
		emit(event{Worker: cfg.id, Ev: "end", Run: run})
		if err := record(ctx, client, cfg, run); err != nil {
			emit(event{Worker: cfg.id, Ev: "refused", Run: run, Why: err.Error()})
			return "refused"
		}
		emit(event{Worker: cfg.id, Ev: "recorded", Run: run})
	}
}

// refusal is the ledger's answer to a request whose token it refused.
type refusal struct{ why string }

func (r refusal) Error() string { return r.why }

func readLast(ctx context.Context, client *http.Client, url string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/last", nil)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, refusal{readWhy(resp)}
	}
	var last int
	err = json.NewDecoder(resp.Body).Decode(&last)
	return last, err
}

// record writes the run to the ledger. It runs with a context of its own, not the session's:
// a leader that wakes from a pause does not know yet that its session ended, and sends its
// write as the seed's program would; refusing it is the ledger's job.
func record(_ context.Context, client *http.Client, cfg workerConfig, run int) error {
	url := fmt.Sprintf("%s/record?run=%d&worker=%d", cfg.storage, run, cfg.id)
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return refusal{readWhy(resp)}
	}
	return nil
}

func readWhy(resp *http.Response) string {
	var b strings.Builder
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return strings.TrimSpace(b.String())
}

// appendLine appends one line with one write (O_APPEND: lines of several processes do not
// interleave).
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
