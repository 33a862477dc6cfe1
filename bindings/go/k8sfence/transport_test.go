package k8sfence

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// A Leader's client carries its token (fencekit.TokenRoundTripper, tested in the main
// module) during its term; the zero Leader's requests, and those of a Leader kept past its
// term (the elector stopped leading), are refused without being sent.
func TestALeadersClientCarriesItsTokenOnlyDuringItsTerm(t *testing.T) {
	var got []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(fencekit.TokenHeader))
	}))
	defer server.Close()
	if _, err := (Leader{}).Client(nil).Get(server.URL); !errors.Is(err, ErrNotLeader) || len(got) != 0 {
		t.Fatalf("the zero Leader: %v, sent %d", err, len(got))
	}
	done := make(chan struct{})
	l := Leader{
		Source: fencekit.KubernetesLeaseSource("ops", "scheduler", "0b1c3f0e-5a8e-4d2f-9c1a-7e6f5d4c3b2a"),
		Token:  fencekit.Token{Generation: 12, Holder: fencekit.HolderOfIdentity("pod-a")},
		done:   done,
	}
	c := l.Client(nil)
	resp, err := c.Get(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(got) != 1 || got[0] != l.HeaderValue() {
		t.Fatalf("sent %q", got)
	}
	close(done)
	for what, client := range map[string]*http.Client{"the client of the term": c, "a new client": l.Client(nil)} {
		if _, err := client.Get(server.URL); !errors.Is(err, ErrNotLeader) || len(got) != 1 {
			t.Fatalf("%s, kept past its term: %v, sent %d", what, err, len(got))
		}
	}
}
