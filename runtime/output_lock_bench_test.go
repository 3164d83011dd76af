package runtime

import (
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// ownerConfig is a sink configuration that owns one output.
type ownerConfig struct{ out pipeline.OwnedOutput }

func (c ownerConfig) OwnedOutput() (pipeline.OwnedOutput, bool) { return c.out, true }

// BenchmarkLockOutputs takes and releases the locks of a pipeline with a
// file sink and a dead-letter file (two own locks, one shared intent lock
// on their directory), as every pipeline start and stop does.
func BenchmarkLockOutputs(b *testing.B) {
	dir := b.TempDir()
	spec := &pipeline.Spec{Name: "p",
		Sinks:      []*pipeline.Component{{ID: "sinks[0]/file", Config: ownerConfig{pipeline.OwnedOutput{Path: filepath.Join(dir, "out.jsonl")}}}},
		DeadLetter: &pipeline.Component{ID: "dead_letter/file", Config: ownerConfig{pipeline.OwnedOutput{Path: filepath.Join(dir, "dead.jsonl")}}},
	}
	for b.Loop() {
		release, err := lockOutputs(spec, filepath.Join(dir, "data"), "p.yaml")
		if err != nil {
			b.Fatal(err)
		}
		release()
	}
}
