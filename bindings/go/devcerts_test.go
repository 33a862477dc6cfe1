package fencekit

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevCertsMakeAGroupsFilesAndRefuseASecondCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if err := MakeDevCerts(dir, 5, []uint64{1, 2}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{1, 2} {
		for _, name := range []string{"node.crt", "node.key", "ca.crt"} {
			info, err := os.Stat(filepath.Join(DevCertDir(dir, id), name))
			if err != nil {
				t.Fatal(err)
			}
			if name == "node.key" && info.Mode().Perm()&0o077 != 0 {
				t.Errorf("node %d's key has mode %v", id, info.Mode().Perm())
			}
		}
	}
	if got, want := DevCertDir(dir, 2), filepath.Join(dir, "node-2"); got != want {
		t.Errorf("DevCertDir: %q, want %q", got, want)
	}
	if err := MakeDevCerts(dir, 5, []uint64{3}); !errors.Is(err, ErrTLS) {
		t.Errorf("a second CA in one directory: %v", err)
	}
	if err := AddDevCert(dir, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(DevCertDir(dir, 3), "node.key")); err != nil {
		t.Fatal(err)
	}
	if err := AddDevCert(dir, 3); !errors.Is(err, ErrTLS) {
		t.Errorf("a second certificate for node 3: %v", err)
	}
	noCA := t.TempDir()
	if err := AddDevCert(noCA, 1); !errors.Is(err, ErrTLS) ||
		!strings.Contains(err.Error(), "no development CA") {
		t.Errorf("a certificate without a CA: %v", err)
	}
	if err := MakeDevCerts(t.TempDir(), 5, []uint64{1, 0}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("node id 0: %v", err)
	}
	if err := AddDevCert(dir, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("node id 0: %v", err)
	}
}

func TestUnusableTLSFilesFailStartNamingTheFile(t *testing.T) {
	config := group(t, 1)[0]
	key := filepath.Join(config.TLS.Dir, "node.key")
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	n, err := Start(config)
	if !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), key) {
		t.Errorf("a key readable by its group: %v, want ErrTLS naming %s", err, key)
	}
	if n != nil {
		n.Close()
		t.Fatal("a node started with an unsafe key")
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}

	// Another node's certificate is not this node's.
	certs := filepath.Dir(config.TLS.Dir)
	if err := AddDevCert(certs, 2); err != nil {
		t.Fatal(err)
	}
	other := config
	other.TLS = &TLSConfig{Dir: DevCertDir(certs, 2)}
	if _, err := Start(other); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "node.crt") {
		t.Errorf("node 2's certificate on node 1: %v", err)
	}

	// The files named one by one work as the directory does.
	files := config
	files.TLS = &TLSConfig{Cert: filepath.Join(config.TLS.Dir, "node.crt"), Key: key, CA: filepath.Join(config.TLS.Dir, "ca.crt")}
	n = start(t, files)
	leaderOf(t, []*Node{n}, -1)
}

// A node without TLS starts only when its configuration says Insecure; the test hook is off
// unless the configuration turns it on.
func TestInsecureMustBeSaid(t *testing.T) {
	config := group(t, 1)[0]
	config.TLS = nil
	n, err := Start(config)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "tls") {
		t.Fatalf("neither TLS nor Insecure: %v, want ErrInvalidConfig naming tls", err)
	}
	if n != nil {
		n.Close()
		t.Fatal("a node started without TLS")
	}
	config.Insecure = true
	n = start(t, config)
	leaderOf(t, []*Node{n}, -1)
	if err := n.PanicForTesting(); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "test_hooks") {
		t.Fatalf("the test hook without TestHooks: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	if _, err := n.Leadership(); err != nil {
		t.Fatalf("the hook failed the node anyway: %v", err)
	}
}

func TestConfigJSONCarriesTLS(t *testing.T) {
	cases := []struct {
		config Config
		want   []string
		absent []string
	}{
		{Config{TLS: &TLSConfig{Dir: "/etc/fk/node-1"}}, []string{`"tls":{"dir":"/etc/fk/node-1"}`}, []string{"insecure", "test_hooks"}},
		{Config{TLS: &TLSConfig{Cert: "c", Key: "k", CA: "a"}}, []string{`"tls":{"cert":"c","key":"k","ca":"a"}`}, []string{"dir"}},
		{Config{Insecure: true, TestHooks: true}, []string{`"insecure":true`, `"test_hooks":true`}, []string{"tls"}},
	}
	for _, c := range cases {
		text, err := c.config.JSON()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(text), w) {
				t.Errorf("%s lacks %s", text, w)
			}
		}
		for _, a := range c.absent {
			if strings.Contains(string(text), `"`+a+`"`) {
				t.Errorf("%s has %s", text, a)
			}
		}
	}
}

// Text that is not UTF-8 would reach the library as U+FFFD (another directory than the one
// configured), and NaN is no JSON: both are refused with the library's sentinels, naming the
// field.
func TestConfigJSONRefusesInvalidUTF8AndNaN(t *testing.T) {
	cases := []struct {
		config Config
		want   error
		field  string
	}{
		{Config{DataDir: "/var/lib/fk-\xff", Insecure: true}, ErrInvalidUTF8, "DataDir"},
		{Config{TLS: &TLSConfig{Dir: "/etc/fk/\xfe"}}, ErrInvalidUTF8, "TLS.Dir"},
		{Config{Insecure: true, Peers: []Peer{{ID: 2, Addr: "h\xff:1"}}}, ErrInvalidUTF8, "Peers[0].Addr"},
		{Config{Insecure: true, Descriptor: "zone=\xff"}, ErrInvalidUTF8, "Descriptor"},
		{Config{Insecure: true, Timing: Timing{MaxDrift: math.NaN()}}, ErrInvalidConfig, "Timing.MaxDrift"},
		{Config{Insecure: true, Timing: Timing{MaxDrift: math.Inf(1)}}, ErrInvalidConfig, "Timing.MaxDrift"},
	}
	for _, c := range cases {
		_, err := c.config.JSON()
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: %v, want %v naming %s", c.config, err, c.want, c.field)
		}
	}
}
