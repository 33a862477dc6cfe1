package fencekit

/*
#include <stdlib.h>
#include <fencekit.h>
*/
import "C"

import (
	"fmt"
	"path/filepath"
	"unsafe"
)

// MakeDevCerts makes development certificates for a secure test group: a CA for cluster in
// dir (created if missing), and a certificate for each of nodes, in DevCertDir(dir, node)
// (node.crt, node.key and ca.crt, what TLSConfig.Dir reads). Keys are written mode 0600.
// dir/ca.key can mint members: keep it private. For tests, samples and development only;
// a production group uses its own PKI with the same identities (fencekit://<cluster>/<node>).
//
// A dir that already holds a CA is refused with an error matching ErrTLS; a node id of 0, or
// more than 1024 of them, with ErrInvalidArgument; a file that cannot be written with ErrIO.
func MakeDevCerts(dir string, cluster uint64, nodes []uint64) error {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	// A []uint64 holds no Go pointers, so cgo lets C read it for the call's duration.
	var ids *C.uint64_t
	if len(nodes) > 0 {
		ids = (*C.uint64_t)(unsafe.Pointer(&nodes[0]))
	}
	return call(func() C.fk_status {
		return C.fk_dev_certs_init(cdir, C.size_t(len(dir)), C.uint64_t(cluster), ids, C.size_t(len(nodes)))
	})
}

// AddDevCert makes a development certificate for node with the CA that MakeDevCerts made in
// dir, in DevCertDir(dir, node): for a node added to a running test group. It fails with an
// error matching ErrTLS if the node has a certificate already or dir holds no development CA.
func AddDevCert(dir string, node uint64) error {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	return call(func() C.fk_status {
		return C.fk_dev_certs_add(cdir, C.size_t(len(dir)), C.uint64_t(node))
	})
}

// DevCertDir is the directory of node's development certificate in dir (dir/node-<node>):
// pass it as TLSConfig.Dir.
func DevCertDir(dir string, node uint64) string {
	return filepath.Join(dir, fmt.Sprint("node-", node))
}
