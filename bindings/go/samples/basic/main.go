// basic: a storage fences the writes of its leaders (the same story as the C and Python
// samples of the same name).
package main

import (
	"errors"
	"fmt"
	"os"

	fencekit "github.com/fencekit/fencekit/bindings/go"
)

func main() {
	dir, err := os.MkdirTemp("", "fencekit-basic-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := fencekit.CheckABI(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fence, err := fencekit.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	jobs, _ := fence.Register([]byte("jobs/nightly-report"))
	steps := []struct {
		what  string
		token fencekit.Token
	}{
		{"node 1 leads in generation 4", fencekit.Token{Generation: 4, Holder: 1}},
		{"node 1 writes again", fencekit.Token{Generation: 4, Holder: 1}},
		{"node 2 is elected in generation 5", fencekit.Token{Generation: 5, Holder: 2}},
		{"node 1 wakes from a pause and writes with its old token", fencekit.Token{Generation: 4, Holder: 1}},
	}
	var last fencekit.Verdict
	for _, s := range steps {
		if last, err = fence.Check(jobs, s.token); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%s: %v\n", s.what, last.Kind)
	}
	fence.Close()

	fence, err = fencekit.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer fence.Close()
	again, _ := fence.CheckKey([]byte("jobs/nightly-report"), fencekit.Token{Generation: 4, Holder: 1})
	fmt.Printf("after a restart, node 1's old token: %v\n", again.Kind)
	if _, err := fence.Check(jobs, fencekit.Token{Generation: 0, Holder: 1}); errors.Is(err, fencekit.ErrInvalidToken) {
		fmt.Printf("a token of generation 0: %v\n", err)
	}
	if last.Kind != fencekit.VerdictStale || again.Kind != fencekit.VerdictStale {
		os.Exit(1)
	}
}
