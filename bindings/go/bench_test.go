package fencekit

import "testing"

// The smallest call into the library: the floor every binding call pays.
func BenchmarkCgoCallBaseline(b *testing.B) {
	for b.Loop() {
		abiVersion()
	}
}

func BenchmarkCheck(b *testing.B) {
	f, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, _ := f.Register([]byte("tenant-7/jobs/42"))
	token := Token{1, 1}
	f.Check(r, token)
	for b.Loop() {
		if v, err := f.Check(r, token); err != nil || v.Kind != VerdictAccepted {
			b.Fatal(v, err)
		}
	}
}

// Reported per check: ns/op divided by 256 is in the check/ns metric.
func BenchmarkCheckBatch256(b *testing.B) {
	f, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, _ := f.Register([]byte("tenant-7/jobs/42"))
	f.Check(r, Token{1, 1})
	items := make([]Item, 256)
	for i := range items {
		items[i] = Item{r, Token{1, 1}}
	}
	batch, _ := NewBatch(items)
	for b.Loop() {
		if err := f.CheckBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/check")
}
