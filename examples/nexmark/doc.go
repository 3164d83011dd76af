// Package nexmark holds the Nexmark benchmark queries as weir pipelines
// (qN.yaml, run with `weir run -c examples/nexmark/q5.yaml`), the tests
// that check each one against a direct computation over the same
// generated events, and their benchmarks; README.md has the figures.
//
//	go test ./examples/nexmark/
//	go test -run XXX -bench Nexmark -benchtime 3x ./examples/nexmark/
package nexmark
