package sinks_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/internal/kafkatest"
)

// parquetWindowRow is one window result as the parquet sink wrote it.
type parquetWindowRow struct {
	WindowStart string `parquet:"window_start"`
	Service     string `parquet:"service"`
	N           int64  `parquet:"n"`
	S           int64  `parquet:"s"`
}

// TestParquetTasksKill runs tasksKillTest into Parquet on a directory the
// three processes share: the tasks' truths are manifests beside the parts.
// Parquet is append-only, so every (window, service) must be in exactly
// one row of the published parts.
func TestParquetTasksKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill tests build the weir binary; skipped with -short")
	}
	lake := t.TempDir()
	sink := fmt.Sprintf("parquet: { path: %s, schema: { window_start: string, window_end: string, service: string, n: int64, s: int64, firing: string } }", lake)
	tasksKillTest(t, "", func(*kafkatest.Cluster) (string, func(context.Context) (map[taskWindow]taskAgg, error)) {
		return sink, func(context.Context) (map[taskWindow]taskAgg, error) {
			got := map[taskWindow]taskAgg{}
			err := filepath.WalkDir(lake, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.IsDir() && d.Name() == "_weir" {
					return filepath.SkipDir
				}
				if d.IsDir() || !strings.HasSuffix(p, ".parquet") || strings.HasPrefix(d.Name(), ".") {
					return nil
				}
				rows, err := parquet.ReadFile[parquetWindowRow](p)
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				for _, r := range rows {
					start, err := time.Parse(time.RFC3339Nano, r.WindowStart)
					if err != nil {
						return fmt.Errorf("%s: window_start %q: %w", p, r.WindowStart, err)
					}
					w := taskWindow{start.UTC(), r.Service}
					if _, dup := got[w]; dup {
						return fmt.Errorf("window %s %s is in two rows (the second in %s)", r.WindowStart, r.Service, p)
					}
					got[w] = taskAgg{r.N, r.S}
				}
				return nil
			})
			if os.IsNotExist(err) {
				return nil, nil
			}
			return got, err
		}
	})
}
