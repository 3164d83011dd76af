// Package examples holds runnable weir pipelines; this test keeps every one
// of them loadable (names, options, expressions and templates checked, as
// `weir validate` does) as the components evolve.
package examples

import (
	"path/filepath"
	"testing"

	_ "github.com/weirhq/weir/operators"
	"github.com/weirhq/weir/pipeline"
	_ "github.com/weirhq/weir/sinks"
	_ "github.com/weirhq/weir/sources"
)

func TestExamplePipelinesLoad(t *testing.T) {
	t.Chdir("..") // the paths in the examples are relative to the repository (a lookup's table is read at load)
	files, _ := filepath.Glob("examples/*/*.yaml")
	files = append(files, "pipelines.yaml")
	if len(files) < 4 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if filepath.Base(filepath.Dir(f)) == "custom-operator" {
			continue // needs its own registry; tested by its own package
		}
		cfg, err := pipeline.LoadFile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(cfg.Pipelines) == 0 {
			t.Errorf("%s: no pipelines", f)
		}
	}
}
