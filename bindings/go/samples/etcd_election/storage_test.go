package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// What a stranger or a broken client can send the ledger: no token, a malformed one, a token
// of another source (even with higher numbers), a stale one, one of generation 0. Each is
// refused with its reason and touches nothing: no run recorded, no source mapped in the fence
// (a storage maps only the source it expects, so names sent by clients cannot exhaust the
// fence's sources), the mark unmoved.
func TestTheLedgerRefusesBadTokensAndChangesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fence")
	source := fencekit.EtcdClusterSource(0x8e9e05c52164694d)
	s, err := openStorage(dir, source)
	if err != nil {
		t.Fatal(err)
	}
	defer s.fence.Close()
	server := httptest.NewServer(s)
	defer server.Close()
	send := func(method, path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, server.URL+path, nil)
		if token != "" {
			req.Header.Set(fencekit.TokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readWhy(resp)
	}
	leader := fencekit.FormatToken(source, fencekit.Token{Generation: 100, Holder: 7})
	if code, body := send("POST", "/record?run=1&worker=1", leader); code != 200 {
		t.Fatalf("the leader's write: %d %s", code, body)
	}
	cases := []struct {
		token string
		code  int
		why   string
	}{
		{"", http.StatusPreconditionRequired, "no token"},
		{"etcd:8e9e05c52164694d 100", http.StatusBadRequest, "bad token"},
		{"etcd:8e9e05c52164694d 0100 7", http.StatusBadRequest, "bad token"},
		{fencekit.FormatToken(fencekit.EtcdClusterSource(1), fencekit.Token{Generation: 1 << 40, Holder: 7}), http.StatusConflict, "foreign source"},
		{fencekit.FormatToken("named:evil", fencekit.Token{Generation: 1 << 40, Holder: 7}), http.StatusConflict, "foreign source"},
		{fencekit.FormatToken(source, fencekit.Token{Generation: 99, Holder: 7}), http.StatusConflict, "stale"},
		{fencekit.FormatToken(source, fencekit.Token{Generation: 100, Holder: 8}), http.StatusConflict, "conflict"},
		{fencekit.FormatToken(source, fencekit.Token{Generation: 1 << 63, Holder: 7}), http.StatusConflict, "error: "},
	}
	for _, c := range cases {
		for _, req := range [][2]string{{"GET", "/last"}, {"POST", "/record?run=2&worker=9"}} {
			code, body := send(req[0], req[1], c.token)
			if code != c.code || !strings.HasPrefix(body, c.why) {
				t.Errorf("%s %s with %q: %d %q, want %d %q", req[0], req[1], c.token, code, body, c.code, c.why)
			}
		}
	}
	if len(s.records) != 1 || s.last != 1 {
		t.Fatalf("refused requests changed the ledger: %v, last %d", s.records, s.last)
	}
	if mark, _, _ := s.fence.Mark(s.resource); mark != (fencekit.Token{Generation: 100, Holder: 7}) {
		t.Fatalf("refused requests moved the mark to %v", mark)
	}
	// Only the expected source was ever mapped: a new name gets the next id.
	next, err := s.fence.SourceID("named:probe")
	if err != nil || next != s.sourceID+1 {
		t.Fatalf("the fence mapped names sent by clients: the next id is %d (%v), the ledger's %d", next, err, s.sourceID)
	}
}
