package nexmark

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/weirhq/weir/pipeline"
	"github.com/weirhq/weir/runtime"
)

// Query 2 on the first 50,000 events at 1,000 events/s: the bids for
// every 123rd auction, with their prices.
func Example_q2() {
	dir, _ := os.MkdirTemp("", "nexmark-example-")
	defer os.RemoveAll(dir)
	for k, v := range map[string]string{"EVENTS": "50000", "EVENT_RATE": "1000", "SEED": "1",
		"OUT": filepath.Join(dir, "q2.jsonl"), "DATA": filepath.Join(dir, "data")} {
		os.Setenv(k, v)
		defer os.Unsetenv(k)
	}
	cfg, err := pipeline.LoadFile("q2.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := runtime.Run(context.Background(), cfg, nil, nil, runtime.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	out, _ := os.ReadFile(filepath.Join(dir, "q2.jsonl"))
	fmt.Print(string(out[:nthLine(out, 3)]))
	fmt.Println(bytes.Count(out, []byte("\n")), "bids selected")
	// Output:
	// {"auction":1107,"price":292}
	// {"auction":1107,"price":285}
	// {"auction":1107,"price":5670892}
	// 211 bids selected
}

// nthLine returns the offset just past the n-th line of b.
func nthLine(b []byte, n int) int {
	for i, c := range b {
		if c == '\n' {
			if n--; n == 0 {
				return i + 1
			}
		}
	}
	return len(b)
}
