module example.invalid/fencekit/bindings/go

go 1.24
