// peers: the same fenced completion through fencekit's store, etcd and Redis, from N clients,
// with a probe per system proving it refuses a deposed leader's token. benches/peers/measure.sh
// starts the three servers and runs this once per system.
//
// The completion is "job J, run R done by holder H with token G", every operation a new run:
//
//   - fencekit: POST /complete?job=J&run=R&generation=G over HTTPS with mutual TLS (the holder is
//     the node the client certificate names); the store checks the token against its fence's
//     mark, records the completion in its ledger and answers once both are durable. 200 with
//     outcome "accepted", done false and a seq is the only answer counted as a success.
//   - etcd, the documented way: a Txn whose If compares the election key's create revision
//     with the one the leader won (concurrency.Election: Key() and Rev()), Then puts the
//     completion. Succeeded is the only success.
//   - Redis: a Lua script (EVALSHA) comparing the token with a stored high-water mark (its
//     generation, and its holder at an equal generation), raising the mark when the token is
//     newer, then SETting the completion. Redis must run with appendonly yes and appendfsync
//     always (checked), so a reply leaves only after its write is fsynced, as with the others.
//
// Each client is a goroutine with a connection of its own: its own HTTP transport, its own
// etcd client (one gRPC connection each), its own go-redis client with a pool of one.
//
//	peers -system fencekit -store https://127.0.0.1:8100 -certs DIR -clients 1,64
//	peers -system etcd -etcd 127.0.0.1:2379 -clients 1,64
//	peers -system redis -redis 127.0.0.1:6379 -clients 1,64
//
// First the probe, then for each client count a warm-up and a timed run; one JSON line each
// on stdout. Any refused or failed write, or a probe whose stale write was not refused, prints
// why on stderr and exits 1.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// A completion through one system, by one client: nil only when it was accepted and recorded.
type completer interface {
	complete(ctx context.Context, run uint64) error
	close()
}

// A system under test: what makes clients for its current leader, and its stale-token probe.
type system interface {
	// probe: leader 1 writes (accepted), leader 2 takes over, leader 1 writes again and must be
	// refused without its completion landing. Leaves leader 2 as the current one.
	probe(ctx context.Context) (string, error)
	// newClient: a client writing as the current leader, on a connection of its own.
	newClient(ctx context.Context) (completer, error)
	close()
}

func main() {
	name := flag.String("system", "", "fencekit (net/http), fencekit-lean (a minimal HTTP/1.1 client), etcd or redis")
	store := flag.String("store", "", "fencekit: the store's base URL (https://127.0.0.1:PORT)")
	certs := flag.String("certs", "", "fencekit: the directory `fencekit certs init` made (ca.crt, node-1/, node-2/)")
	etcdEndpoint := flag.String("etcd", "", "etcd: its client endpoint (host:port)")
	redisAddr := flag.String("redis", "", "redis: its address (host:port)")
	clients := flag.String("clients", "1,64", "client counts, comma-separated: one run each")
	warmup := flag.Duration("warmup", 2*time.Second, "untimed operations before each run")
	duration := flag.Duration("duration", 10*time.Second, "each run's timed part")
	label := flag.String("label", "", "the system's name in the JSON lines (default: -system)")
	generation := flag.Uint64("generation", 1, "fencekit: the probe's first leader's generation (its second leader's is one more): above any this store has seen")
	flag.Parse()
	var counts []int
	for _, c := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 1024 {
			fail(fmt.Errorf("-clients %q: give counts of 1 to 1024, comma-separated", *clients))
		}
		counts = append(counts, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	var sys system
	var err error
	switch *name {
	case "fencekit", "fencekit-lean":
		sys, err = newFencekit(*store, *certs, *generation, *name == "fencekit-lean")
	case "etcd":
		sys, err = newEtcd(ctx, *etcdEndpoint)
	case "redis":
		sys, err = newRedis(ctx, *redisAddr)
	default:
		err = fmt.Errorf("-system %q: give fencekit, fencekit-lean, etcd or redis", *name)
	}
	if err != nil {
		fail(err)
	}
	defer sys.close()

	if *label == "" {
		label = name
	}
	detail, err := sys.probe(ctx)
	if err != nil {
		fail(fmt.Errorf("%s: the stale-token probe: %w", *name, err))
	}
	emit(map[string]any{"system": *label, "probe": "stale token refused", "detail": detail})

	for _, n := range counts {
		r, err := measure(ctx, sys, n, *warmup, *duration)
		if err != nil {
			fail(fmt.Errorf("%s, %d clients: %w", *name, n, err))
		}
		r["system"] = *label
		emit(r)
	}
}

// measure runs n clients for warmup, then duration, each completing a new run after another.
// An operation counts when it started and ended inside the timed part; any failure stops the
// run and is returned.
func measure(ctx context.Context, sys system, n int, warmup, duration time.Duration) (map[string]any, error) {
	clients := make([]completer, 0, n)
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	for range n {
		c, err := sys.newClient(ctx)
		if err != nil {
			return nil, fmt.Errorf("a client: %w", err)
		}
		clients = append(clients, c)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		firstErr error
		errOnce  sync.Once
		failed   atomic.Int64
		wg       sync.WaitGroup
	)
	issued := nextRun.Load()
	latencies := make([][]time.Duration, n)
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+duration)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				began := time.Now()
				if began.After(until) {
					break
				}
				err := c.complete(ctx, nextRun.Add(1))
				ended := time.Now()
				if err != nil {
					if ctx.Err() != nil {
						break // another client failed first
					}
					failed.Add(1)
					errOnce.Do(func() { firstErr = err; cancel() })
					break
				}
				if !began.Before(from) && !ended.After(until) {
					lat = append(lat, ended.Sub(began))
				}
			}
			latencies[i] = lat
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("%d failed: the first: %w", failed.Load(), firstErr)
	}
	all := slices.Concat(latencies...)
	if len(all) == 0 {
		return nil, fmt.Errorf("no operation finished inside the %v timed", duration)
	}
	slices.Sort(all)
	return map[string]any{
		"clients":   n,
		"ops":       len(all),
		"issued":    nextRun.Load() - issued,
		"errors":    0,
		"seconds":   duration.Seconds(),
		"ops_per_s": float64(len(all)) / duration.Seconds(),
		"p50_us":    pct(all, 50).Microseconds(),
		"p99_us":    pct(all, 99).Microseconds(),
		"max_us":    all[len(all)-1].Microseconds(),
	}, nil
}

// nextRun hands out run numbers, every completion a new run across all runs of a process
// (the probes use runs below 10).
var nextRun atomic.Uint64

func init() { nextRun.Store(10) }

// pct is the p-th percentile (nearest rank) of the sorted s.
func pct(s []time.Duration, p int) time.Duration {
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// record is the completion written to etcd and Redis (fencekit's store builds its own entry).
func record(job string, run, holder, generation uint64) string {
	return fmt.Sprintf(`{"job":%q,"run":%d,"holder":%d,"generation":%d,"at_ms":%d}`,
		job, run, holder, generation, time.Now().UnixMilli())
}

const job = "peers"

// --- fencekit's store ------------------------------------------------------------------------

type fencekitSystem struct {
	base  string
	certs string
	// The current leader: its node (certificate) and generation.
	node       int
	generation uint64
	// The probe's first leader's generation.
	first uint64
	// Clients write with leanClient instead of net/http.
	lean bool
}

func newFencekit(base, certs string, first uint64, lean bool) (*fencekitSystem, error) {
	if base == "" || certs == "" {
		return nil, errors.New("fencekit needs -store and -certs")
	}
	if first < 1 || first >= 1<<62 {
		return nil, fmt.Errorf("-generation %d: give 1 to 2^62-1", first)
	}
	return &fencekitSystem{base: strings.TrimSuffix(base, "/"), certs: certs, first: first, lean: lean}, nil
}

type fencekitClient struct {
	job        string
	http       *http.Client
	base       string
	generation uint64
}

// answer is the store's JSON answer to /begin and /complete.
type answer struct {
	Outcome    string  `json:"outcome"`
	Generation *uint64 `json:"generation"`
	Done       bool    `json:"done"`
	Seq        *uint64 `json:"seq"`
	Error      string  `json:"error"`
}

// tlsConfig shows node's certificate and trusts the cluster's CA only.
func (f *fencekitSystem) tlsConfig(node int) (*tls.Config, error) {
	caPEM, err := os.ReadFile(filepath.Join(f.certs, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", filepath.Join(f.certs, "ca.crt"))
	}
	dir := filepath.Join(f.certs, fmt.Sprintf("node-%d", node))
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}, nil
}

// client makes a net/http client for node with one keep-alive connection of its own.
func (f *fencekitSystem) client(node int, generation uint64) (*fencekitClient, error) {
	config, err := f.tlsConfig(node)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{
		TLSClientConfig:     config,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	return &fencekitClient{
		job:        fmt.Sprintf("%s-%d", job, generation),
		http:       &http.Client{Transport: transport, Timeout: 60 * time.Second},
		base:       f.base,
		generation: generation,
	}, nil
}

// post sends POST path?query with an empty body: the status and the decoded answer.
func (c *fencekitClient) post(ctx context.Context, path, job string, run uint64) (int, answer, error) {
	url := fmt.Sprintf("%s%s?job=%s&run=%d&generation=%d", c.base, path, job, run, c.generation)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
	if err != nil {
		return 0, answer{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, answer{}, fmt.Errorf("%s: reading the answer: %w", url, err)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return resp.StatusCode, a, fmt.Errorf("%s: %d %q: not the store's JSON answer", url, resp.StatusCode, body)
	}
	return resp.StatusCode, a, nil
}

func (c *fencekitClient) complete(ctx context.Context, run uint64) error {
	status, a, err := c.post(ctx, "/complete", c.job, run)
	if err != nil {
		return err
	}
	if status != 200 || a.Outcome != "accepted" || a.Done || a.Seq == nil {
		return fmt.Errorf("/complete run %d: %d %+v: not accepted and recorded", run, status, a)
	}
	return nil
}

func (c *fencekitClient) close() { c.http.CloseIdleConnections() }

func (f *fencekitSystem) probe(ctx context.Context) (string, error) {
	g1, g2 := f.first, f.first+1
	// Runs below 10, told apart between probes of one store by their job.
	probeJob := fmt.Sprintf("probe-%d", g1)
	// Leader 1 (node 1, generation g1) begins and completes a run.
	one, err := f.client(1, g1)
	if err != nil {
		return "", err
	}
	defer one.close()
	if status, a, err := one.post(ctx, "/begin", probeJob, 0); err != nil || status != 200 || a.Outcome != "accepted" {
		return "", fmt.Errorf("leader 1's /begin: %d %+v %v", status, a, err)
	}
	if status, a, err := one.post(ctx, "/complete", probeJob, 0); err != nil || status != 200 || a.Outcome != "accepted" || a.Seq == nil {
		return "", fmt.Errorf("leader 1's /complete before the takeover: %d %+v %v", status, a, err)
	}
	// Leader 2 (node 2, generation g2) takes over: its /begin advances the mark.
	two, err := f.client(2, g2)
	if err != nil {
		return "", err
	}
	defer two.close()
	if status, a, err := two.post(ctx, "/begin", probeJob, 1); err != nil || status != 200 || a.Outcome != "accepted" {
		return "", fmt.Errorf("leader 2's /begin: %d %+v %v", status, a, err)
	}
	// Leader 1's completion with its old token must be refused as stale, and not land.
	status, a, err := one.post(ctx, "/complete", probeJob, 1)
	if err != nil {
		return "", err
	}
	if status != 409 || a.Outcome != "stale" || a.Generation == nil || *a.Generation != g2 {
		return "", fmt.Errorf("leader 1's /complete after leader 2's /begin: %d %+v, want 409 stale at generation %d", status, a, g2)
	}
	// Leader 2 asks about the run: not done.
	if status, a, err := two.post(ctx, "/begin", probeJob, 1); err != nil || status != 200 || a.Done {
		return "", fmt.Errorf("leader 2's /begin of the run leader 1 tried: %d %+v %v (want not done)", status, a, err)
	}
	f.node, f.generation = 2, g2
	return fmt.Sprintf("node 1's /complete at generation %d after node 2's /begin at %d: 409 stale, the run not done", g1, g2), nil
}

func (f *fencekitSystem) newClient(ctx context.Context) (completer, error) {
	if f.generation == 0 {
		return nil, errors.New("no leader: the probe runs first")
	}
	if f.lean {
		return f.leanClient(ctx, f.node, f.generation)
	}
	return f.client(f.node, f.generation)
}

// leanClient speaks HTTP/1.1 on one TLS connection from the calling goroutine: it writes the
// request and reads the status line, the headers and a Content-Length body, as go-redis does
// RESP on its connection. net/http hands every request to a writer and a reader goroutine
// per connection and back, which costs a lone client about 60 µs a request on this machine
// kind (benches/README.md, "Peers"). Anything but a keep-alive answer with a Content-Length
// is an error.
type leanClient struct {
	conn       *tls.Conn
	read       *bufio.Reader
	host       string
	job        string
	generation uint64
	request    []byte
}

func (f *fencekitSystem) leanClient(ctx context.Context, node int, generation uint64) (*leanClient, error) {
	config, err := f.tlsConfig(node)
	if err != nil {
		return nil, err
	}
	host := strings.TrimPrefix(f.base, "https://")
	dialer := tls.Dialer{Config: config}
	conn, err := dialer.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	return &leanClient{
		conn:       conn.(*tls.Conn),
		read:       bufio.NewReader(conn),
		host:       host,
		job:        fmt.Sprintf("%s-%d", job, generation),
		generation: generation,
	}, nil
}

func (c *leanClient) complete(ctx context.Context, run uint64) error {
	if deadline, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(deadline)
	}
	c.request = fmt.Appendf(c.request[:0], "POST /complete?job=%s&run=%d&generation=%d HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
		c.job, run, c.generation, c.host)
	if _, err := c.conn.Write(c.request); err != nil {
		return err
	}
	status, err := c.read.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("run %d: reading the answer: %w", run, err)
	}
	if len(status) < 12 || string(status[:9]) != "HTTP/1.1 " {
		return fmt.Errorf("run %d: %q: not an HTTP/1.1 status line", run, status)
	}
	code := string(status[9:12])
	length := -1
	for {
		line, err := c.read.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("run %d: reading the answer's headers: %w", run, err)
		}
		header := strings.TrimRight(string(line), "\r\n")
		if header == "" {
			break
		}
		name, value, _ := strings.Cut(header, ":")
		switch strings.ToLower(name) {
		case "content-length":
			length, err = strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return fmt.Errorf("run %d: %q", run, header)
			}
		case "connection":
			if strings.EqualFold(strings.TrimSpace(value), "close") {
				return fmt.Errorf("run %d: the store closes the connection", run)
			}
		}
	}
	if length < 0 || length > 1<<16 {
		return fmt.Errorf("run %d: an answer without a usable Content-Length", run)
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(c.read, body); err != nil {
		return fmt.Errorf("run %d: reading the answer's body: %w", run, err)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("run %d: %s %q: not the store's JSON answer", run, code, body)
	}
	if code != "200" || a.Outcome != "accepted" || a.Done || a.Seq == nil {
		return fmt.Errorf("/complete run %d: %s %+v: not accepted and recorded", run, code, a)
	}
	return nil
}

func (c *leanClient) close() { c.conn.Close() }

func (f *fencekitSystem) close() {}

// --- etcd ------------------------------------------------------------------------------------

type etcdSystem struct {
	endpoint string
	admin    *clientv3.Client
	prefix   string
	// The current leader's session and election (its key and create revision).
	session  *concurrency.Session
	election *concurrency.Election
}

func etcdClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

func newEtcd(ctx context.Context, endpoint string) (*etcdSystem, error) {
	if endpoint == "" {
		return nil, errors.New("etcd needs -etcd host:port")
	}
	admin, err := etcdClient(endpoint)
	if err != nil {
		return nil, err
	}
	return &etcdSystem{endpoint: endpoint, admin: admin, prefix: fmt.Sprintf("/peers/%d", time.Now().UnixNano())}, nil
}

// campaign elects a leader with a session of its own: its session and election.
func (e *etcdSystem) campaign(ctx context.Context, name string) (*concurrency.Session, *concurrency.Election, error) {
	session, err := concurrency.NewSession(e.admin, concurrency.WithTTL(60))
	if err != nil {
		return nil, nil, err
	}
	election := concurrency.NewElection(session, e.prefix+"/election")
	if err := election.Campaign(ctx, name); err != nil {
		session.Close()
		return nil, nil, err
	}
	return session, election, nil
}

type etcdClientOp struct {
	cli        *clientv3.Client
	held       clientv3.Cmp
	prefix     string
	generation uint64
}

// The documented fenced write: If the election key still has the create revision this leader
// won, Then put.
func (c *etcdClientOp) write(ctx context.Context, run uint64) (bool, error) {
	key := fmt.Sprintf("%s/ledger/%s/%d", c.prefix, job, run)
	resp, err := c.cli.Txn(ctx).If(c.held).Then(clientv3.OpPut(key, record(job, run, 1, c.generation))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

func (c *etcdClientOp) complete(ctx context.Context, run uint64) error {
	ok, err := c.write(ctx, run)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("run %d: the Txn was refused: the election key is not held", run)
	}
	return nil
}

func (c *etcdClientOp) close() { c.cli.Close() }

func (e *etcdSystem) op(cli *clientv3.Client, election *concurrency.Election) *etcdClientOp {
	return &etcdClientOp{
		cli:        cli,
		held:       clientv3.Compare(clientv3.CreateRevision(election.Key()), "=", election.Rev()),
		prefix:     e.prefix,
		generation: uint64(election.Rev()),
	}
}

func (e *etcdSystem) probe(ctx context.Context) (string, error) {
	s1, e1, err := e.campaign(ctx, "leader-1")
	if err != nil {
		return "", fmt.Errorf("leader 1's campaign: %w", err)
	}
	one := e.op(e.admin, e1)
	if err := one.complete(ctx, 0); err != nil {
		return "", fmt.Errorf("leader 1 before the takeover: %w", err)
	}
	// Leader 1 loses its key (its session ends, as when its lease expires); leader 2 wins.
	if err := s1.Close(); err != nil {
		return "", err
	}
	s2, e2, err := e.campaign(ctx, "leader-2")
	if err != nil {
		return "", fmt.Errorf("leader 2's campaign: %w", err)
	}
	e.session, e.election = s2, e2
	ok, err := one.write(ctx, 1)
	if err != nil {
		return "", err
	}
	if ok {
		return "", errors.New("leader 1's Txn after leader 2's election succeeded")
	}
	got, err := e.admin.Get(ctx, fmt.Sprintf("%s/ledger/%s/1", e.prefix, job))
	if err != nil {
		return "", err
	}
	if got.Count != 0 {
		return "", errors.New("leader 1's refused completion is in etcd")
	}
	return fmt.Sprintf("leader 1's Txn (create revision %d) after leader 2 won (revision %d): not succeeded, nothing put", e1.Rev(), e2.Rev()), nil
}

func (e *etcdSystem) newClient(ctx context.Context) (completer, error) {
	if e.election == nil {
		return nil, errors.New("no leader: the probe runs first")
	}
	cli, err := etcdClient(e.endpoint)
	if err != nil {
		return nil, err
	}
	return e.op(cli, e.election), nil
}

func (e *etcdSystem) close() {
	if e.session != nil {
		e.session.Close()
	}
	e.admin.Close()
}

// --- Redis -----------------------------------------------------------------------------------

// The high-water check: KEYS[1] the mark ("generation holder"), KEYS[2] the completion;
// ARGV generation, holder, the completion's record. A token below the mark, or of the mark's
// generation and another holder, is refused ({0, mark's generation}); a newer one raises the
// mark; then the completion is written ({1, generation}). Redis runs a script alone, so the
// check and the write are one step.
var highWater = redis.NewScript(`
local g = tonumber(ARGV[1])
local h = ARGV[2]
local mark = redis.call('GET', KEYS[1])
if mark then
  local mg, mh = string.match(mark, '^(%d+) (%d+)$')
  mg = tonumber(mg)
  if g < mg or (g == mg and h ~= mh) then
    return {0, mg}
  end
  if g > mg then
    redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. h)
  end
else
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. h)
end
redis.call('SET', KEYS[2], ARGV[3])
return {1, g}
`)

type redisSystem struct {
	addr       string
	admin      *redis.Client
	prefix     string
	holder     uint64
	generation uint64
}

func redisClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		PoolSize:        1,
		MinIdleConns:    1,
		MaxRetries:      -1, // a failed write is reported, never retried behind our back
		ReadTimeout:     30 * time.Second,
		WriteTimeout:    30 * time.Second,
		DisableIdentity: true,
	})
}

func newRedis(ctx context.Context, addr string) (*redisSystem, error) {
	if addr == "" {
		return nil, errors.New("redis needs -redis host:port")
	}
	admin := redisClient(addr)
	// Durability equal to the others': every write fsynced before its reply.
	for name, want := range map[string]string{"appendonly": "yes", "appendfsync": "always"} {
		got, err := admin.ConfigGet(ctx, name).Result()
		if err != nil {
			admin.Close()
			return nil, fmt.Errorf("CONFIG GET %s: %w", name, err)
		}
		if got[name] != want {
			admin.Close()
			return nil, fmt.Errorf("redis runs with %s %q: start it with %s %s", name, got[name], name, want)
		}
	}
	if err := highWater.Load(ctx, admin).Err(); err != nil {
		admin.Close()
		return nil, err
	}
	return &redisSystem{addr: addr, admin: admin, prefix: fmt.Sprintf("peers:%d", time.Now().UnixNano())}, nil
}

type redisClientOp struct {
	cli        *redis.Client
	mark       string
	prefix     string
	holder     uint64
	generation uint64
}

func (c *redisClientOp) write(ctx context.Context, run uint64) (bool, error) {
	key := fmt.Sprintf("%s:ledger:%s:%d", c.prefix, job, run)
	res, err := highWater.EvalSha(ctx, c.cli, []string{c.mark, key},
		c.generation, c.holder, record(job, run, c.holder, c.generation)).Slice()
	if err != nil {
		return false, err
	}
	if len(res) != 2 {
		return false, fmt.Errorf("the script answered %v", res)
	}
	return res[0] == int64(1), nil
}

func (c *redisClientOp) complete(ctx context.Context, run uint64) error {
	ok, err := c.write(ctx, run)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("run %d: refused by the high-water mark", run)
	}
	return nil
}

func (c *redisClientOp) close() { c.cli.Close() }

func (r *redisSystem) op(cli *redis.Client, holder, generation uint64) *redisClientOp {
	return &redisClientOp{cli: cli, mark: r.prefix + ":mark", prefix: r.prefix, holder: holder, generation: generation}
}

func (r *redisSystem) probe(ctx context.Context) (string, error) {
	one := r.op(r.admin, 1, 1)
	if err := one.complete(ctx, 0); err != nil {
		return "", fmt.Errorf("leader 1 before the takeover: %w", err)
	}
	two := r.op(r.admin, 2, 2)
	if err := two.complete(ctx, 2); err != nil {
		return "", fmt.Errorf("leader 2's first write: %w", err)
	}
	ok, err := one.write(ctx, 1)
	if err != nil {
		return "", err
	}
	if ok {
		return "", errors.New("leader 1's write after leader 2's succeeded")
	}
	n, err := r.admin.Exists(ctx, fmt.Sprintf("%s:ledger:%s:1", r.prefix, job)).Result()
	if err != nil {
		return "", err
	}
	if n != 0 {
		return "", errors.New("leader 1's refused completion is in Redis")
	}
	r.holder, r.generation = 2, 2
	return "leader 1's script (generation 1) after leader 2 wrote at generation 2: refused, nothing set", nil
}

func (r *redisSystem) newClient(ctx context.Context) (completer, error) {
	if r.generation == 0 {
		return nil, errors.New("no leader: the probe runs first")
	}
	cli := redisClient(r.addr)
	if err := cli.Ping(ctx).Err(); err != nil {
		cli.Close()
		return nil, err
	}
	return r.op(cli, r.holder, r.generation), nil
}

func (r *redisSystem) close() { r.admin.Close() }

// ---------------------------------------------------------------------------------------------

func emit(v map[string]any) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "peers:", err)
	os.Exit(1)
}
