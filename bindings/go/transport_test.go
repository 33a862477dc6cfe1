package fencekit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// trackedBody records whether it was closed: a RoundTripper must close a request's body on
// every path, a refusal included.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

// Every request through a TokenRoundTripper carries its token, in the header the storage
// reads back as the same token; the caller's request is not changed. A request that already
// carries a token, and every request once stop says the term is over, are refused without
// being sent, their bodies closed.
func TestTheTokenRoundTripperCarriesTheTokenOnEveryRequest(t *testing.T) {
	var got []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(TokenHeader))
	}))
	defer server.Close()
	source, token := EtcdClusterSource(0x8e9e05c52164694d), Token{Generation: 1207, Holder: 0x694d8f0a2c11e703}
	over := errors.New("the term is over")
	var ended bool
	c := &http.Client{Transport: TokenRoundTripper(nil, source, token, func() error {
		if ended {
			return over
		}
		return nil
	})}
	for _, method := range []string{"GET", "PUT"} {
		req, _ := http.NewRequest(method, server.URL, strings.NewReader("x"))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.Header.Get(TokenHeader) != "" {
			t.Fatal("the caller's request was changed")
		}
	}
	if len(got) != 2 || got[0] != got[1] {
		t.Fatalf("headers sent: %q", got)
	}
	readSource, readToken, err := ParseToken(got[0])
	if err != nil || readSource != source || readToken != token {
		t.Fatalf("the storage reads %q as %q %v %v", got[0], readSource, readToken, err)
	}
	refused := func(what string, req *http.Request, want error) {
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
	req.Header.Set(TokenHeader, "etcd:0000000000000001 9 9")
	refused("a request with a token already", req, nil)
	ended = true
	req, _ = http.NewRequest("PUT", server.URL, nil)
	refused("a request after the term", req, over)
}
