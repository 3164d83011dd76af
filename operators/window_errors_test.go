package operators

import (
	"errors"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

// A window with several mistakes reports every one, each at its
// position, not only the first.
func TestWindowReportsEveryError(t *testing.T) {
	_, err := loadOperator(t, windowYAML(
		"tumbling: 1 minute",
		"watermarks: 5s",
		"parallelism: 0",
		"aggregate:",
		"  p: percentile(x, 0.9)",
		"  q: quantile(x, 1.5)",
	))
	var ces pipeline.ConfigErrors
	if !errors.As(err, &ces) {
		t.Fatalf("error %T %v; want ConfigErrors", err, err)
	}
	want := []string{
		`p.yaml:6:21: window: tumbling: want a duration such as 30s, 1m or 500ms, got "1 minute"`,
		`p.yaml:7:11: window: unknown key "watermarks"`,
		`p.yaml:8:24: window: parallelism: want a whole number from 1 to 64, got "0"`,
		`p.yaml:10:16: window: aggregate "p": unknown function "percentile"`,
		`p.yaml:11:28: window: aggregate "q": quantile: q must be a number from 0 to 1, got "1.5"`,
	}
	if len(ces) != len(want) {
		t.Fatalf("%d errors:\n%v\nwant %d", len(ces), err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(ces[i].Error(), w) {
			t.Errorf("error %d:\n  %s\nwant\n  %s", i, ces[i], w)
		}
	}
}
