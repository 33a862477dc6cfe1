module github.com/fencekit/fencekit/bindings/go

go 1.24
