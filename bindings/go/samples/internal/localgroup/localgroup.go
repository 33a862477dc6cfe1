// Package localgroup starts a group of fencekit nodes on local ports, for the samples.
package localgroup

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"time"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

// Start starts size nodes of one cluster on free local ports, their logs under root. The
// group is secure: its peers authenticate with mutual TLS, with development certificates
// made in root/certs (a real group uses its own CA).
func Start(root string, size int, cluster uint64) ([]*fencekit.Node, error) {
	// Nodes started one by one, and stopped so, find their peers unreachable for a moment:
	// warnings a real group's operators should see (fencekit logs them to slog.Default()),
	// noise in a sample. Errors still show.
	errorsOnly := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if err := fencekit.SetLogger(errorsOnly); err != nil {
		return nil, err
	}
	addrs := make([]string, size)
	ids := make([]uint64, size)
	for i := range addrs {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		addrs[i] = addr
		ids[i] = uint64(i + 1)
	}
	certs := filepath.Join(root, "certs")
	if err := fencekit.MakeDevCerts(certs, cluster, ids); err != nil {
		return nil, err
	}
	var nodes []*fencekit.Node
	for i := range addrs {
		c := fencekit.Config{ID: ids[i], Cluster: cluster, Listen: addrs[i],
			DataDir: filepath.Join(root, fmt.Sprint("node-", i+1)),
			TLS:     &fencekit.TLSConfig{Dir: fencekit.DevCertDir(certs, ids[i])}}
		for j, addr := range addrs {
			if j != i {
				c.Peers = append(c.Peers, fencekit.Peer{ID: uint64(j + 1), Addr: addr})
			}
		}
		n, err := fencekit.Start(c)
		if err != nil {
			Close(nodes)
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// freePort picks a free local port below the kernel's ephemeral range (32768 and up), which a
// node's own outbound connections draw from: a port picked there can be taken before the node
// binds it.
func freePort() (string, error) {
	for i := 0; i < 1000; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.Intn(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("no free port in 20000..32000")
}

// Close closes every node.
func Close(nodes []*fencekit.Node) {
	for _, n := range nodes {
		n.Close()
	}
}

// Leader waits until a node other than nodes[exclude] (-1: any) holds usable leadership, and
// returns its index and leadership; or ctx's error.
func Leader(ctx context.Context, nodes []*fencekit.Node, exclude int) (int, fencekit.Leadership, error) {
	for {
		for i, n := range nodes {
			if i == exclude {
				continue
			}
			if l, err := n.Leadership(); err == nil {
				return i, l, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fencekit.Leadership{}, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
