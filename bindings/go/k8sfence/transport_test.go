package k8sfence

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
// a token, the zero Leader's requests and those of a Leader whose term has ended (a caller
// that kept it past its term) are refused without being sent.
func TestTheRoundTripperCarriesTheTokenOnEveryRequest(t *testing.T) {
	var got []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(fencekit.TokenHeader))
	}))
	defer server.Close()
	done := make(chan struct{})
	l := Leader{
		Source: fencekit.KubernetesLeaseSource("ops", "scheduler", "0b1c3f0e-5a8e-4d2f-9c1a-7e6f5d4c3b2a"),
		Token:  fencekit.Token{Generation: 12, Holder: fencekit.HolderOfIdentity("pod-a")},
		done:   done,
	}
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
	req.Header.Set(fencekit.TokenHeader, "k8s-lease:a/b/c 9 9")
	refused("a request with a token already", c, req, nil)
	req, _ = http.NewRequest("PUT", server.URL, nil)
	refused("the zero Leader", Leader{}.Client(nil), req, ErrNotLeader)

	// The elector stops leading: the client made in the term, still held, sends nothing more.
	close(done)
	if !l.Ended() {
		t.Fatal("Ended after the term's context ended")
	}
	req, _ = http.NewRequest("PUT", server.URL, nil)
	refused("a Leader kept past its term", c, req, ErrNotLeader)
	req, _ = http.NewRequest("GET", server.URL, nil)
	refused("a new client of a Leader kept past its term", l.Client(nil), req, ErrNotLeader)
}
