package fencekit

/*
#include <fencekit.h>
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Config configures a node (the JSON fields of ffi/README.md). Zero fields take the
// library's defaults.
//
// A node is secure by default: peers authenticate with mutual TLS, so a Config must set TLS
// (the node's certificate, key and CA) or, to let anyone who reaches the port join the group,
// Insecure. Neither, or both, is refused by the library with an error matching
// ErrInvalidConfig that names "tls".
type Config struct {
	// ID is this node: 1 to 2^64-1, unique in the group.
	ID uint64
	// Cluster names the group; a data directory of another cluster is refused.
	Cluster uint64
	// DataDir is the node's own directory for its log. A new log is made only in an empty (or
	// missing) directory; one holding another owner's log fails Start with ErrWrongCluster
	// or ErrWrongOwner.
	DataDir string
	// SegmentSize is the size in bytes of each log segment file: a multiple of 4096 from
	// 64 KiB to 1 GiB. Zero means the library's default (16 MiB).
	SegmentSize uint64
	// Listen is the address the node listens on, such as "127.0.0.1:7001".
	Listen string
	// Peers are the other nodes.
	Peers []Peer
	// Voters of a new group; empty means this node and every peer.
	Voters []uint64
	// Join starts the node with no voters, to be added to a running group (Voters must be
	// empty).
	Join bool
	// Timing of elections and leases.
	Timing Timing
	// Descriptor describes this node to a tie-breaker policy, such as "zone=a".
	Descriptor string
	// TieBreaker, if set, decides this node's election priority.
	TieBreaker *Policy
	// TLS is where the node's certificate, key and CA are. Peers authenticate with mutual
	// TLS; a certificate's identity is the URI fencekit://<cluster>/<node>. MakeDevCerts makes
	// a development set: TLS: &TLSConfig{Dir: DevCertDir(dir, id)}.
	TLS *TLSConfig
	// Insecure runs the node without TLS: anyone who reaches its port can join the group.
	// Exactly one of TLS and Insecure must be set.
	Insecure bool
	// TestHooks is test-only: it lets Node.PanicForTesting fail the node on purpose. Never
	// set it in production.
	TestHooks bool
}

// TLSConfig names the node's TLS files: either Dir, a directory holding node.crt, node.key
// and ca.crt (the layout MakeDevCerts and `fencekit certs` make), or each of Cert, Key and CA.
// The key must not be readable by its group or others, and the certificate and CA not
// writable by them; a file that cannot be used fails Start with an error matching ErrTLS that
// names it.
type TLSConfig struct {
	// Dir holds node.crt, node.key and ca.crt. Set Dir alone, or Cert, Key and CA.
	Dir string
	// Cert is the node's certificate (PEM), naming fencekit://<cluster>/<node>.
	Cert string
	// Key is the certificate's private key (PEM), mode 0600.
	Key string
	// CA is the certificate of the group's CA (PEM), which signs every member's certificate.
	CA string
}

// Peer is another node of the group.
type Peer struct {
	ID         uint64
	Addr       string
	Descriptor string
}

// Timing sets the pace of elections and the lease's safety margins; zero fields take the
// defaults.
type Timing struct {
	// Tick is the node's clock tick (whole milliseconds).
	Tick time.Duration
	// ElectionTicks is the election timeout, in ticks.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval, in ticks.
	HeartbeatTicks int
	// MaxDrift is the largest relative clock-rate error the lease allows for, such as 0.05.
	MaxDrift float64
	// Margin is taken off every lease (whole milliseconds).
	Margin time.Duration
}

type configJSON struct {
	ID         uint64     `json:"id"`
	Cluster    uint64     `json:"cluster"`
	DataDir    string     `json:"data_dir"`
	Listen     string     `json:"listen"`
	Peers      []peerJSON `json:"peers"`
	Voters     []uint64   `json:"voters,omitempty"`
	Join       bool       `json:"join"`
	Segment    *uint64    `json:"segment_size,omitempty"`
	Timing     timingJSON `json:"timing"`
	Descriptor *string    `json:"descriptor,omitempty"`
	TLS        *tlsJSON   `json:"tls,omitempty"`
	Insecure   bool       `json:"insecure,omitempty"`
	TestHooks  bool       `json:"test_hooks,omitempty"`
}

// tlsJSON leaves out the empty fields, so that the library sees what was set (and refuses a
// mix of Dir and the files, or a partial set, naming "tls").
type tlsJSON struct {
	Dir  string `json:"dir,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
}

type peerJSON struct {
	ID         uint64  `json:"id"`
	Addr       string  `json:"addr"`
	Descriptor *string `json:"descriptor,omitempty"`
}

type timingJSON struct {
	TickMS        *uint64  `json:"tick_ms,omitempty"`
	ElectionTick  *int     `json:"election_tick,omitempty"`
	HeartbeatTick *int     `json:"heartbeat_tick,omitempty"`
	MaxDrift      *float64 `json:"max_drift,omitempty"`
	MarginMS      *uint64  `json:"margin_ms,omitempty"`
}

// JSON is the configuration as fk_node_start reads it. The library validates the rest (TLS
// or Insecure included); here only what JSON cannot say is refused: durations that are
// negative or not whole milliseconds.
func (c Config) JSON() ([]byte, error) {
	tick, err := wholeMillis("Timing.Tick", c.Timing.Tick)
	if err != nil {
		return nil, err
	}
	margin, err := wholeMillis("Timing.Margin", c.Timing.Margin)
	if err != nil {
		return nil, err
	}
	wire := configJSON{
		ID: c.ID, Cluster: c.Cluster, DataDir: c.DataDir, Listen: c.Listen,
		Peers: make([]peerJSON, 0, len(c.Peers)), Voters: c.Voters, Join: c.Join,
		Timing: timingJSON{
			TickMS: tick, MarginMS: margin,
			ElectionTick:  nonZero(c.Timing.ElectionTicks),
			HeartbeatTick: nonZero(c.Timing.HeartbeatTicks),
			MaxDrift:      nonZero(c.Timing.MaxDrift),
		},
		Descriptor: nonZero(c.Descriptor),
		Segment:    nonZero(c.SegmentSize),
		Insecure:   c.Insecure,
		TestHooks:  c.TestHooks,
	}
	if c.TLS != nil {
		wire.TLS = &tlsJSON{Dir: c.TLS.Dir, Cert: c.TLS.Cert, Key: c.TLS.Key, CA: c.TLS.CA}
	}
	for _, p := range c.Peers {
		wire.Peers = append(wire.Peers, peerJSON{ID: p.ID, Addr: p.Addr, Descriptor: nonZero(p.Descriptor)})
	}
	// encoding/json would write U+FFFD for each invalid byte: another directory or file than
	// the one configured. Refuse, as the library refuses such text itself.
	texts := map[string]string{"DataDir": c.DataDir, "Listen": c.Listen, "Descriptor": c.Descriptor}
	if c.TLS != nil {
		texts["TLS.Dir"], texts["TLS.Cert"], texts["TLS.Key"], texts["TLS.CA"] = c.TLS.Dir, c.TLS.Cert, c.TLS.Key, c.TLS.CA
	}
	for i, p := range c.Peers {
		texts[fmt.Sprintf("Peers[%d].Addr", i)] = p.Addr
		texts[fmt.Sprintf("Peers[%d].Descriptor", i)] = p.Descriptor
	}
	for field, text := range texts {
		if !utf8.ValidString(text) {
			return nil, &Error{Status: C.FK_STATUS_INVALID_UTF8, Message: fmt.Sprintf("%s is not valid UTF-8: %q", field, text)}
		}
	}
	if d := c.Timing.MaxDrift; math.IsNaN(d) || math.IsInf(d, 0) {
		return nil, &Error{Status: C.FK_STATUS_INVALID_CONFIG, Message: fmt.Sprintf("Timing.MaxDrift = %v: must be in [0, 0.5)", d)}
	}
	return json.Marshal(wire)
}

func wholeMillis(field string, d time.Duration) (*uint64, error) {
	if d < 0 || d%time.Millisecond != 0 {
		return nil, &Error{Status: C.FK_STATUS_INVALID_CONFIG,
			Message: fmt.Sprintf("%s = %v: must be a whole, non-negative number of milliseconds", field, d)}
	}
	return nonZero(uint64(d / time.Millisecond)), nil
}

// nonZero is nil for the zero value (the field is left to the library's default).
func nonZero[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}
