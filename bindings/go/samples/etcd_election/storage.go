package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// storage is the job ledger the scheduler writes to: which run of the schedule was last
// recorded, and who recorded each. It is a separate service (here an HTTP server in the
// drill's process), as a database or an object store would be, and it embeds the fence.
//
// The safety argument, as the order of operations in each request:
//
//  1. The request names its token (fencekit.TokenHeader), read as the worker's leader was
//     elected (etcdfence.Campaign), never cached across elections.
//  2. Under s.mu, the fence checks the token: a token older than the mark (a deposed leader,
//     woken from a pause) is stale, one of another source foreign. Checking advances the mark
//     to a newer leader's token, durably, before anything is read.
//  3. Still under s.mu, the read or the write happens. Because check and operation hold one
//     lock, no newer leader's check can fall between them: once a new leader has read, every
//     request of the old one is refused.
//
// Step 2 on reads matters: fencing only writes, a new leader that has read (and started the
// job) but not yet written leaves the old leader's write to land, and the job is recorded
// twice.
type storage struct {
	mu       sync.Mutex
	fence    *fencekit.Fence // nil: the unfenced control, which checks nothing
	resource uint32
	// source is the only token source this storage takes (etcd:<cluster id>), and sourceID
	// its id in the fence. A storage maps only the sources it expects: the fence knows at
	// most 1024, so mapping every name a client sends would let anyone exhaust them.
	source   string
	sourceID fencekit.SourceID

	// writesOnly checks tokens on writes only: the planted bug of the drill's third mode.
	writesOnly bool

	last    int              // the last run recorded (0: none)
	records map[int][]int    // run -> the workers that recorded it, in order
	refused map[string][]int // why ("stale", ...) -> the runs refused
}

func openStorage(dir, source string) (*storage, error) {
	s := &storage{source: source, records: map[int][]int{}, refused: map[string][]int{}}
	if dir == "" {
		return s, nil
	}
	f, err := fencekit.Open(dir)
	if err != nil {
		return nil, err
	}
	s.fence = f
	if s.resource, err = f.Register([]byte("scheduler/ledger")); err != nil {
		return nil, err
	}
	if s.sourceID, err = f.SourceID(source); err != nil {
		return nil, err
	}
	return s, nil
}

// admit checks the request's token; it runs under s.mu. It writes the refusal and returns
// false when the request must not touch the ledger.
func (s *storage) admit(w http.ResponseWriter, r *http.Request, run int) bool {
	if s.fence == nil {
		return true
	}
	refuse := func(code int, why string) bool {
		s.refused[why] = append(s.refused[why], run)
		http.Error(w, why, code)
		return false
	}
	value := r.Header.Get(fencekit.TokenHeader)
	if value == "" {
		return refuse(http.StatusPreconditionRequired, "no token")
	}
	source, token, err := fencekit.ParseToken(value)
	if err != nil {
		return refuse(http.StatusBadRequest, "bad token")
	}
	if source != s.source {
		return refuse(http.StatusConflict, fencekit.VerdictForeignSource.String())
	}
	v, err := s.fence.CheckFrom(s.resource, s.sourceID, token)
	if err != nil {
		// An invalid token, or the fence's log failing: fail closed.
		return refuse(http.StatusConflict, "error: "+err.Error())
	}
	if !v.Accepted() {
		return refuse(http.StatusConflict, v.Kind.String())
	}
	return true
}

// ServeHTTP serves GET /last (the read: the last run recorded) and POST /record?run=N&worker=W
// (the write).
func (s *storage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/last":
		if s.writesOnly || s.admit(w, r, 0) {
			json.NewEncoder(w).Encode(s.last)
		}
	case r.Method == http.MethodPost && r.URL.Path == "/record":
		run, err1 := strconv.Atoi(r.URL.Query().Get("run"))
		worker, err2 := strconv.Atoi(r.URL.Query().Get("worker"))
		if err1 != nil || err2 != nil || run < 1 {
			http.Error(w, "run and worker are numbers", http.StatusBadRequest)
			return
		}
		if s.admit(w, r, run) {
			s.records[run] = append(s.records[run], worker)
			s.last = max(s.last, run)
		}
	default:
		http.NotFound(w, r)
	}
}

// recordedTwice is the number of runs recorded more than once.
func (s *storage) recordedTwice() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, by := range s.records {
		if len(by) > 1 {
			n++
		}
	}
	return n
}

// refusedRuns is how many writes of run were refused as why.
func (s *storage) refusedRuns(why string, run int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.refused[why] {
		if r == run {
			n++
		}
	}
	return n
}

// serve serves s on a loopback port of its own and returns its URL and a stop function.
func (s *storage) serve() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	server := &http.Server{Handler: s}
	go server.Serve(ln)
	return fmt.Sprintf("http://%s", ln.Addr()), func() {
		server.Close()
		if s.fence != nil {
			s.fence.Close()
		}
	}, nil
}
