package etcdfence

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// A Leader's client carries its token (fencekit.TokenRoundTripper, tested in the main
// module); the zero Leader's requests are refused without being sent, and a Leader whose
// session has ended still sends: the storage decides, against the newest token it has seen.
func TestALeadersClientCarriesItsTokenUntilTheStorageSaysNo(t *testing.T) {
	var got []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get(fencekit.TokenHeader))
	}))
	defer server.Close()
	if _, err := (Leader{}).Client(nil).Get(server.URL); !errors.Is(err, ErrNotLeader) || len(got) != 0 {
		t.Fatalf("the zero Leader: %v, sent %d", err, len(got))
	}
	done := make(chan struct{})
	l := Leader{Source: fencekit.EtcdClusterSource(0x8e9e05c52164694d), Token: fencekit.Token{Generation: 1207, Holder: 0x694d8f0a2c11e703}, done: done}
	close(done)
	if !l.Ended() {
		t.Fatal("Ended")
	}
	resp, err := l.Client(nil).Get(server.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(got) != 1 || got[0] != l.HeaderValue() {
		t.Fatalf("an ended Leader's request carried %q", got)
	}
}
