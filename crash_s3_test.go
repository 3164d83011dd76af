package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/internal/crashtest"
	"github.com/weirhq/weir/internal/s3fake"
)

// crashS3Config writes every record as JSON lines (objects rolled at 12
// MiB in parts of 5 MiB, kept open across checkpoints by min_file_bytes)
// and as Parquet partitioned by service (each checkpoint's small parts
// held in staging and merged into objects of at least 200 KiB), both to a fake S3 that
// runs in the test process (ENDPOINT); each run has its key prefix under
// runs/<its directory>.
const crashS3Config = `data_dir: %[1]s/data
pipelines:
  - name: crash-s3
    checkpoint_interval: 40ms
    sources:
      - file: { paths: ["%[2]s/*.log"] }
    operators:
      - parse: { format: json }
    sinks:
      - s3:
          bucket: lake
          path: "runs%[1]s/json"
          format: json
          endpoint: ENDPOINT
          path_style: true
          access_key_id: weir
          secret_access_key_file: SECRET
          part_size: 5MiB
          max_file_bytes: 12MiB
          min_file_bytes: 12MiB
          max_attempts: 20
      - s3:
          bucket: lake
          path: "runs%[1]s/parquet"
          endpoint: ENDPOINT
          path_style: true
          access_key_id: weir
          secret_access_key_file: SECRET
          schema: { ts: "timestamp(ms)", i: int64, level: string, service: string, latency_ms: float64, status: int64 }
          partition_by: "service={{ service }}"
          min_file_bytes: 200KiB
          max_attempts: 20
    dead_letter:
      file: { path: "%[1]s/out/dead.jsonl" }
`

// TestCrashS3ExactlyOnce kills weir (SIGKILL) again and again while it
// uploads parts, keeps objects open across checkpoints, completes uploads
// at commit and recovers: the JSON lines objects are then byte-identical
// to an uninterrupted run's (same keys, same bytes), the Parquet objects
// hold every record exactly once, and no upload is left behind.
func TestCrashS3ExactlyOnce(t *testing.T) {
	if testing.Short() && os.Getenv("WEIR_CRASH_KILLS") == "" {
		t.Skip("crash test skipped in -short mode")
	}
	srv := s3fake.Start(t)
	srv.CreateBucket(t, "lake")
	bin := crashtest.Build(t)
	root := t.TempDir()
	secret := filepath.Join(root, "secret")
	if err := os.WriteFile(secret, []byte("weir-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := strings.NewReplacer("ENDPOINT", srv.URL, "SECRET", secret).Replace(crashS3Config)
	in := filepath.Join(root, "in")
	writeCrashInput(t, in, 3, 40000)
	const name = "s3 sinks"
	refDir := filepath.Join(root, "reference")
	ref := crashRun(t, name, bin, refDir, in, config, 0, 0)
	killed, res, maxDelay := crashRunKilled(t, name, bin, root, in, config, crashKills(t), ref.Elapsed)

	objects := func(dir string) (json map[string][]byte, errs map[string][]byte) {
		prefix := "runs" + dir + "/"
		json, errs = map[string][]byte{}, map[string][]byte{}
		for k, v := range srv.Objects(t, "lake", prefix) {
			rel := strings.TrimPrefix(k, prefix)
			switch {
			case strings.HasPrefix(rel, "json/"):
				json[rel] = v
			case strings.HasPrefix(rel, "parquet/"):
				errs[rel] = v
			default:
				t.Fatalf("unexpected object %s", k)
			}
		}
		return json, errs
	}
	refJSON, _ := objects(refDir)
	gotJSON, gotErrs := objects(killed)
	if len(refJSON) < 2 {
		t.Fatalf("the uninterrupted run wrote %v: want several JSON lines objects", s3fake.Keys(refJSON))
	}
	if !slices.Equal(s3fake.Keys(gotJSON), s3fake.Keys(refJSON)) {
		t.Fatalf("after %d kills the JSON lines objects are %v, the uninterrupted run's %v", res.Kills, s3fake.Keys(gotJSON), s3fake.Keys(refJSON))
	}
	for k, want := range refJSON {
		if !bytes.Equal(gotJSON[k], want) {
			t.Fatalf("%s: after %d kills %d bytes, the uninterrupted run's %d", k, res.Kills, len(gotJSON[k]), len(want))
		}
	}
	var lines int
	for _, v := range gotJSON {
		lines += bytes.Count(v, []byte("\n"))
	}
	var got []int
	for k, v := range gotErrs {
		rows, err := parquet.Read[struct {
			I       int64  `parquet:"i"`
			Service string `parquet:"service"`
		}](bytes.NewReader(v), int64(len(v)))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		for _, r := range rows {
			if !strings.HasPrefix(k, "parquet/service="+r.Service+"/") {
				t.Fatalf("a row of %s in %s", r.Service, k)
			}
			got = append(got, int(r.I))
		}
	}
	slices.Sort(got)
	var want []int
	for i := range 120000 {
		if i%997 != 0 {
			want = append(want, i)
		}
	}
	if lines != len(want) {
		t.Fatalf("JSON lines objects hold %d lines, want %d", lines, len(want))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after %d kills: %d Parquet rows in %d objects, want %d, each once", res.Kills, len(got), len(gotErrs), len(want))
	}
	if ups := srv.Uploads(t, "lake"); len(ups) != 0 {
		t.Fatalf("uploads left behind: %v", ups)
	}
	if dead, want := strings.Count(readTree(t, filepath.Join(killed, "out"))["dead.jsonl"], "\n"), (120000+996)/997; dead != want {
		t.Fatalf("dead letters: %d, want %d", dead, want)
	}
	t.Logf("%s: %d kills in %d runs (kill delays up to %v; uninterrupted run %v); %d JSON lines objects byte-identical, %d Parquet rows in %d objects each once",
		name, res.Kills, res.Runs, maxDelay, ref.Elapsed, len(gotJSON), len(got), len(gotErrs))
}
