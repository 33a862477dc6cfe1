package etcdfence

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// trackedBody records whether it was closed: a RoundTripper must close a request's body on
// every path, a refusal included.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

// Every request through a Leader's client carries its token, in the header the storage reads
// back as the same token; the caller's request is not changed. A request that already carries
// a token and the zero Leader's requests are refused without being sent.
func TestTheRoundTripperCarriesTheTokenOnEveryRequest(t *testing.T) {
	var got []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(fencekit.TokenHeader))
	}))
	defer server.Close()
	l := Leader{Source: fencekit.EtcdClusterSource(0x8e9e05c52164694d), Token: fencekit.Token{Generation: 1207, Holder: 0x694d8f0a2c11e703}}
	c := l.Client(nil)
	for _, method := range []string{"GET", "PUT"} {
		req, _ := http.NewRequest(method, server.URL, strings.NewReader("x"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.Header.Get(fencekit.TokenHeader) != "" {
			t.Fatal("the caller's request was changed")
		}
	}
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("headers sent: %q", got)
	}
	source, token, err := fencekit.ParseToken(got[0])
	if err != nil || source != l.Source || token != l.Token {
		t.Fatalf("the storage reads %q as %q %v %v", got[0], source, token, err)
	}

	refused := func(what string, c *http.Client, req *http.Request, want error) {
		t.Helper()
		body := &trackedBody{Reader: strings.NewReader("x")}
		req.Body = body
		before := len(got)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if err == nil || (want != nil && !errors.Is(err, want)) || len(got) != before || !body.closed {
			t.Fatalf("%s: %v (sent: %v, body closed: %v), want %v", what, err, len(got) != before, body.closed, want)
		}
	}
	req, _ := http.NewRequest("PUT", server.URL, nil)
	req.Header.Set(fencekit.TokenHeader, "etcd:1 9 9")
	refused("a request with a token already", c, req, nil)
	req, _ = http.NewRequest("PUT", server.URL, nil)
	refused("the zero Leader", Leader{}.Client(nil), req, ErrNotLeader)
	// A Leader whose session has ended still sends: the storage decides, against the newest
	// token it has seen.
	done := make(chan struct{})
	ended := l
	ended.done = done
	close(done)
	if !ended.Ended() || l.Ended() {
		t.Fatal("Ended")
	}
	resp, err := ended.Client(nil).Get(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got[len(got)-1] != l.HeaderValue() {
		t.Fatalf("an ended Leader's request carried %q", got[len(got)-1])
	}
}
