package sinks_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/weirhq/weir/internal/s3fake"
	"github.com/weirhq/weir/pipeline"
)

// file → parse → s3, once as Parquet partitioned by service with a
// declared schema (misfits to the dead-letter output) and once as JSON
// lines with min_file_bytes: every good record is in the bucket exactly
// once, nothing is left staged or uploading, and a rerun adds nothing.
func TestS3Pipeline(t *testing.T) {
	srv := s3fake.Start(t)
	srv.CreateBucket(t, "lake")
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("weir-secret\n"), 0o600)
	const n = 30000
	writeLines(t, filepath.Join(dir, "in.jsonl"), n, func(i int) string {
		if i%1000 == 7 {
			return fmt.Sprintf(`{"i":"not a number %d","service":"api"}`, i)
		}
		return fmt.Sprintf(`{"i":%d,"service":"%s","msg":"%s"}`, i, []string{"api", "auth", "billing"}[i%3], strings.Repeat("m", i%50))
	})
	text := strings.NewReplacer("ENDPOINT", srv.URL, "SECRET", secret).Replace(`
data_dir: DIR/data
pipelines:
  - name: lake
    checkpoint_interval: 20ms
    sources:
      - file: { paths: ["DIR/in.jsonl"] }
    operators:
      - parse: { format: json }
    sinks:
      - s3:
          bucket: lake
          path: pq
          endpoint: ENDPOINT
          path_style: true
          access_key_id: weir
          secret_access_key_file: SECRET
          schema: { i: "int64!", service: string, msg: string }
          partition_by: "service={{ service }}"
          compression: zstd
      - s3:
          bucket: lake
          path: logs/json
          format: json
          endpoint: ENDPOINT
          path_style: true
          access_key_id: weir
          secret_access_key_file: SECRET
          min_file_bytes: 64MiB
    dead_letter:
      file: { path: DIR/dead.jsonl }
`)
	check := func(run string) {
		t.Helper()
		objs := srv.Objects(t, "lake", "")
		var pq []int
		var js []byte
		for _, k := range s3fake.Keys(objs) {
			switch {
			case strings.HasPrefix(k, "pq/service="):
				rows, err := parquet.Read[struct {
					I       int64  `parquet:"i"`
					Service string `parquet:"service"`
				}](bytes.NewReader(objs[k]), int64(len(objs[k])))
				if err != nil {
					t.Fatalf("%s: %s: %v", run, k, err)
				}
				for _, r := range rows {
					if !strings.HasPrefix(k, "pq/service="+r.Service+"/") {
						t.Fatalf("%s: row of %s in %s", run, r.Service, k)
					}
					pq = append(pq, int(r.I))
				}
			case strings.HasPrefix(k, "logs/json/part-"):
				js = append(js, objs[k]...)
			default:
				t.Fatalf("%s: unexpected object %s", run, k)
			}
		}
		slices.Sort(pq)
		var want []int
		var wantJSON []byte
		for i := range n {
			if i%1000 != 7 {
				want = append(want, i)
			}
			line := fmt.Sprintf(`{"i":%d,"service":"%s","msg":"%s"}`, i, []string{"api", "auth", "billing"}[i%3], strings.Repeat("m", i%50))
			if i%1000 == 7 {
				line = fmt.Sprintf(`{"i":"not a number %d","service":"api"}`, i)
			}
			wantJSON = append(wantJSON, line+"\n"...)
		}
		if !slices.Equal(pq, want) {
			t.Fatalf("%s: %d Parquet rows, want %d, each once", run, len(pq), len(want))
		}
		if !bytes.Equal(js, wantJSON) {
			t.Fatalf("%s: JSON lines objects hold %d bytes, want %d: every line once, in order", run, len(js), len(wantJSON))
		}
		if ups := srv.Uploads(t, "lake"); len(ups) != 0 {
			t.Fatalf("%s: uploads left: %v", run, ups)
		}
		dead := strings.Split(strings.TrimSpace(fileText(t, filepath.Join(dir, "dead.jsonl"))), "\n")
		if len(dead) != n/1000 {
			t.Fatalf("%s: %d dead letters, want %d", run, len(dead), n/1000)
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(dead[0]), &d); err != nil || !strings.Contains(fmt.Sprint(d), "s3") {
			t.Fatalf("%s: dead letter %s does not name the s3 sink (%v)", run, dead[0], err)
		}
	}
	runFilePipeline(t, dir, text)
	check("first run")
	runFilePipeline(t, dir, text)
	check("rerun")
}

// Wrong configurations are refused at their position.
func TestS3ConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`{ path: x }`, "bucket is required"},
		{`{ bucket: b, part_size: 1MiB }`, "part_size"},
		{`{ bucket: b, format: json, compression: zstd }`, "compression: Parquet options, and format is json"},
		{`{ bucket: b, format: csv }`, `"csv" is not one of parquet, json`},
		{`{ bucket: b, endpoint: "minio:9000" }`, "endpoint"},
		{`{ bucket: b, max_file_bytes: 1GiB, min_file_bytes: 2GiB }`, "min_file_bytes"},
		{`{ bucket: b, path: "/abs" }`, "key prefix"},
		{`{ bucket: b, access_key_id: k }`, "secret_access_key_file"},
		{`{ bucket: b, tls: { cert_file: c.pem } }`, "cert_file and key_file"},
		{`{ bucket: b, path: "x/{{ y }}" }`, "partition_by"},
		{`{ bucket: b, regin: x }`, `unknown key "regin"`},
	} {
		text := "pipelines:\n  - name: p\n    sources: [ { stdin: {} } ]\n    sinks:\n      - s3: " + tc.yaml + "\n"
		_, err := pipeline.Default.Load("p.yaml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
			continue
		}
		var ces pipeline.ConfigErrors
		var ce *pipeline.ConfigError
		if !errors.As(err, &ces) && !errors.As(err, &ce) {
			t.Errorf("%s: %T is not a ConfigError", tc.yaml, err)
		}
		if !strings.Contains(err.Error(), "p.yaml:5:") {
			t.Errorf("%s: %v does not say where (p.yaml:5:...)", tc.yaml, err)
		}
	}
}
