package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/weirhq/weir/internal/s3fake"
	"github.com/weirhq/weir/pipeline"
)

// s3Test is a fake S3 with a bucket, and the data directory of the sinks
// a test builds against it.
type s3Test struct {
	srv    *s3fake.Server
	bucket string
	data   string
	secret string // a secret_access_key_file
}

func newS3Test(t *testing.T) *s3Test {
	t.Helper()
	st := &s3Test{srv: s3fake.Start(t), bucket: "lake", data: t.TempDir()}
	st.srv.CreateBucket(t, st.bucket)
	st.secret = filepath.Join(st.data, "secret")
	if err := os.WriteFile(st.secret, []byte("weir-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return st
}

// config returns an s3 configuration for the fake; edit sets options.
func (st *s3Test) config(format string, edit func(c *S3Config)) *S3Config {
	c := NewS3Config()
	c.Format = format
	c.Bucket = st.bucket
	c.Parquet.Path = "events"
	c.Endpoint = st.srv.URL
	c.PathStyle = true
	c.AccessKeyID = "weir"
	c.SecretAccessKeyFile = st.secret
	c.MaxAttempts = 4
	c.MaxBackoff = 50 * time.Millisecond
	c.RequestTimeout = 5 * time.Second
	if edit != nil {
		edit(c)
	}
	return c
}

func (st *s3Test) sink(t *testing.T, c *S3Config, g pipeline.Guarantee) *ColumnarSink {
	t.Helper()
	s, err := c.NewSink(testBuild(st.data, g))
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	return s.(*ColumnarSink)
}

func (st *s3Test) objects(t *testing.T) map[string][]byte {
	t.Helper()
	return st.srv.Objects(t, st.bucket, "")
}

func logRec(i int, pad int) *pipeline.Record {
	return rec("i", int64(i), "service", []string{"api", "auth"}[i%2], "msg", strings.Repeat("x", pad))
}

func logRecs(from, to, pad int) []*pipeline.Record {
	var out []*pipeline.Record
	for i := from; i < to; i++ {
		out = append(out, logRec(i, pad))
	}
	return out
}

// jsonLines is what the JSON lines format writes for recs.
func jsonLines(recs []*pipeline.Record) []byte {
	var b []byte
	for _, r := range recs {
		b = r.AppendJSON(b)
		b = append(b, '\n')
	}
	return b
}

// A Parquet part is uploaded while rows flow, invisible until the
// checkpoint that holds it commits, and a second Commit, or a Recover with
// the same token in a new sink, changes nothing.
func TestS3ParquetCommitIdempotent(t *testing.T) {
	st := newS3Test(t)
	c := st.config("parquet", func(c *S3Config) {
		c.Parquet.Schema = mustSchema(t, "struct<i: int64, service: string, msg: string>")
		c.Parquet.PartitionBy = mustTemplate(t, "service={{ service }}")
	})
	s := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, logRecs(0, 1000, 10)...)
	tok := mustPreCommit(t, s, 1)
	if objs := st.objects(t); len(objs) != 0 {
		t.Fatalf("visible before commit: %v", s3fake.Keys(objs))
	}
	if ups := st.srv.Uploads(t, st.bucket); len(ups) != 2 {
		t.Fatalf("uploads before commit: %v, want one per partition", ups)
	}
	mustCommit(t, s, tok)
	objs := st.objects(t)
	want := []string{"events/service=api/part-000001-" + s.sinkID + ".parquet", "events/service=auth/part-000001-" + s.sinkID + ".parquet"}
	if keys := s3fake.Keys(objs); !slices.Equal(keys, want) {
		t.Fatalf("objects %v, want %v", keys, want)
	}
	dir := t.TempDir()
	var ids []int64
	for k, b := range objs {
		f := filepath.Join(dir, filepath.Base(k))
		os.WriteFile(f, b, 0o644)
		_, rows := readParquet(t, f)
		for _, r := range rows {
			ids = append(ids, r["i"].(int64))
		}
	}
	slices.Sort(ids)
	if len(ids) != 1000 || ids[0] != 0 || ids[999] != 999 {
		t.Fatalf("%d rows read back, want 0..999", len(ids))
	}
	mustCommit(t, s, tok) // again
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	s2 := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s2.Recover(context.Background(), tok); err != nil {
		t.Fatalf("Recover with a committed token: %v", err)
	}
	if got := st.objects(t); !equalObjects(got, objs) {
		t.Fatalf("a second commit changed the objects: %v", s3fake.Keys(got))
	}
	if ups := st.srv.Uploads(t, st.bucket); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
	// The next object of each partition is numbered on.
	mustWrite(t, s2, logRec(5001, 1))
	mustCommit(t, s2, mustPreCommit(t, s2, 2))
	if _, ok := st.objects(t)["events/service=auth/part-000002-"+s.sinkID+".parquet"]; !ok {
		t.Fatalf("after a restart the next object is not part 2: %v", s3fake.Keys(st.objects(t)))
	}
}

func equalObjects(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// Parts go up while data flows, each exactly part_size but the last, and
// the object is their concatenation.
func TestS3PartsUploadedWhileDataFlows(t *testing.T) {
	st := newS3Test(t)
	c := st.config("json", func(c *S3Config) { c.PartSize = 5 << 20 })
	s := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	var all []*pipeline.Record
	for b := 0; b < 13; b++ { // 13 MiB
		recs := logRecs(b*1024, (b+1)*1024, 1000)
		all = append(all, recs...)
		mustWrite(t, s, recs...)
	}
	key := "events/part-000001-" + s.sinkID + ".jsonl"
	deadline := time.Now().Add(10 * time.Second)
	for st.srv.Parts(t, st.bucket, key) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := st.srv.Parts(t, st.bucket, key); n != 2 {
		t.Fatalf("%d parts uploaded before the checkpoint, want 2 of 5 MiB", n)
	}
	tok := mustPreCommit(t, s, 1)
	var ct columnarToken
	if err := json.Unmarshal(tok, &ct); err != nil {
		t.Fatal(err)
	}
	obj := ct.Files[0].Object
	if len(obj.Parts) != 3 || obj.Parts[0].Bytes != 5<<20 || obj.Parts[1].Bytes != 5<<20 {
		t.Fatalf("token parts %+v, want 5 MiB, 5 MiB and the rest", obj.Parts)
	}
	mustCommit(t, s, tok)
	if got := st.objects(t)[key]; !bytes.Equal(got, jsonLines(all)) {
		t.Fatalf("object has %d bytes, want the %d bytes of the lines", len(got), len(jsonLines(all)))
	}
}

// Under min_file_bytes a JSON lines object stays open across checkpoints,
// invisible; after a crash it is cut back to what the last checkpoint
// holds and written on, so it ends up byte-identical to an uninterrupted
// run's; what the crashed run uploaded after that checkpoint is aborted.
func TestS3MinFileBytesResumesAfterCrash(t *testing.T) {
	st := newS3Test(t)
	c := st.config("json", func(c *S3Config) {
		c.PartSize = 5 << 20
		c.MinFileBytes = 12 << 20
	})
	batches := make([][]*pipeline.Record, 14)
	for b := range batches {
		batches[b] = logRecs(b*1024, (b+1)*1024, 1000) // 1 MiB each
	}
	s := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches[:6] {
		mustWrite(t, s, b...)
	}
	tok1 := mustPreCommit(t, s, 1)
	mustCommit(t, s, tok1)
	if objs := st.objects(t); len(objs) != 0 {
		t.Fatalf("an object smaller than min_file_bytes is visible: %v", s3fake.Keys(objs))
	}
	// Checkpoint 2 is never complete: its writes, and an object of
	// another run's numbering, are what a crash leaves behind.
	for _, b := range batches[6:9] {
		mustWrite(t, s, b...)
	}
	if _, err := s.PreCommit(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	s.remote.close() // the crash: the process is gone, nothing is closed

	s2 := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s2.Recover(context.Background(), tok1); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if n := len(s2.parts); n != 1 {
		t.Fatalf("%d open parts after Recover, want the one checkpoint 1 held", n)
	}
	if objs := st.objects(t); len(objs) != 0 {
		t.Fatalf("visible after Recover: %v", s3fake.Keys(objs))
	}
	for _, b := range batches[6:] { // the sources replay from checkpoint 1
		mustWrite(t, s2, b...)
	}
	tok3 := mustPreCommit(t, s2, 3) // past min_file_bytes: finished
	mustCommit(t, s2, tok3)
	objs := st.objects(t)
	key := "events/part-000001-" + s2.sinkID + ".jsonl"
	if got := objs[key]; !bytes.Equal(got, jsonLines(slices.Concat(batches...))) {
		t.Fatalf("the resumed object has %d bytes, want the %d of an uninterrupted run (objects %v)", len(got), len(jsonLines(slices.Concat(batches...))), s3fake.Keys(objs))
	}
	// Part 2 stays open (smaller than min_file_bytes) until a clean stop
	// finishes it.
	extra := logRecs(100000, 100010, 10)
	mustWrite(t, s2, extra...)
	tok4 := mustPreCommit(t, s2, 4)
	mustCommit(t, s2, tok4)
	if len(st.objects(t)) != 1 {
		t.Fatalf("objects %v, want only part 1 before the stop", s3fake.Keys(st.objects(t)))
	}
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.objects(t)["events/part-000002-"+s2.sinkID+".jsonl"]; !bytes.Equal(got, jsonLines(extra)) {
		t.Fatalf("after a clean stop part 2 has %d bytes, want %d", len(got), len(jsonLines(extra)))
	}
	if ups := st.srv.Uploads(t, st.bucket); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
	// A restart from the last checkpoint after that clean stop adds
	// nothing: the open part it names is visible already.
	s3 := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s3.Recover(context.Background(), tok4); err != nil {
		t.Fatalf("Recover after a clean stop: %v", err)
	}
	if len(s3.parts) != 0 || len(st.objects(t)) != 2 {
		t.Fatalf("after a restart: %d open parts, objects %v", len(s3.parts), s3fake.Keys(st.objects(t)))
	}
}

// Recover with no checkpoint aborts every upload of the sink, and nothing
// staged is ever visible.
func TestS3RecoverAbortsUploadsLeftBehind(t *testing.T) {
	st := newS3Test(t)
	c := st.config("json", nil)
	s := st.sink(t, c, pipeline.ExactlyOnce)
	mustWrite(t, s, logRecs(0, 100, 10)...)
	if _, err := s.PreCommit(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if ups := st.srv.Uploads(t, st.bucket); len(ups) != 1 {
		t.Fatalf("uploads %v, want 1", ups)
	}
	// Another sink's upload under the same prefix is not ours to abort.
	other := "events/elsewhere.jsonl"
	if _, err := st.srv.Client.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: &st.bucket, Key: &other}); err != nil {
		t.Fatal(err)
	}
	s.remote.close()
	s2 := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s2.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if ups := st.srv.Uploads(t, st.bucket); !slices.Equal(ups, []string{other}) {
		t.Fatalf("uploads after Recover: %v, want only %s", ups, other)
	}
	if objs := st.objects(t); len(objs) != 0 {
		t.Fatalf("visible: %v", s3fake.Keys(objs))
	}
	if entries, _ := os.ReadDir(s2.staging); len(entries) != 0 {
		t.Fatalf("staging files left: %d", len(entries))
	}
}

// A 500 and a timeout in the middle of an upload are retried.
func TestS3RetriesServerErrorsAndTimeouts(t *testing.T) {
	st := newS3Test(t)
	c := st.config("json", func(c *S3Config) { c.RequestTimeout = 2 * time.Second })
	s := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	part500 := st.srv.Inject(&s3fake.Fault{Op: "UploadPart", Status: 500, Times: 1})
	partStall := st.srv.Inject(&s3fake.Fault{Op: "UploadPart", Stall: 5 * time.Second, Times: 1})
	complete500 := st.srv.Inject(&s3fake.Fault{Op: "CompleteMultipartUpload", Status: 503, Times: 2})
	recs := logRecs(0, 6*1024, 1000) // 6 MiB: one part while flowing, one at the end
	mustWrite(t, s, recs...)
	mustCommit(t, s, mustPreCommit(t, s, 1))
	for _, f := range []*s3fake.Fault{part500, partStall, complete500} {
		if st.srv.Hits(f) != f.Times {
			t.Fatalf("fault %+v hit %d times", f, st.srv.Hits(f))
		}
	}
	if got := st.objects(t)["events/part-000001-"+s.sinkID+".jsonl"]; !bytes.Equal(got, jsonLines(recs)) {
		t.Fatalf("object has %d bytes, want %d", len(got), len(jsonLines(recs)))
	}
}

// A connection cut while CompleteMultipartUpload is answered (the store
// completed it; the sink never heard) leaves the object visible once:
// the retry, a second Commit and a Recover all find it in place.
func TestS3CommitConnectionCut(t *testing.T) {
	for _, attempts := range []int{4, 1} {
		t.Run(fmt.Sprintf("max_attempts=%d", attempts), func(t *testing.T) {
			st := newS3Test(t)
			proxy := s3fake.NewProxy(t, st.srv.URL)
			c := st.config("parquet", func(c *S3Config) {
				c.Endpoint = proxy.URL
				c.MaxAttempts = attempts
				c.Parquet.Schema = mustSchema(t, "struct<i: int64, service: string, msg: string>")
			})
			s := st.sink(t, c, pipeline.ExactlyOnce)
			if err := s.Recover(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, logRecs(0, 500, 10)...)
			tok := mustPreCommit(t, s, 1)
			proxy.CutAnswers(func(line string) bool {
				return strings.HasPrefix(line, "POST ") && strings.Contains(line, "uploadId=")
			}, 1)
			err := s.Commit(context.Background(), tok)
			if proxy.Cuts.Load() != 1 {
				t.Fatalf("the proxy cut %d answers, want 1", proxy.Cuts.Load())
			}
			if attempts > 1 && err != nil {
				t.Fatalf("Commit with retries: %v", err)
			}
			if attempts == 1 {
				if err == nil {
					t.Fatal("Commit without retries did not see the cut")
				}
				// The runtime fails the pipeline; the next run recovers
				// from the checkpoint, committing its token again.
				s.Close(context.Background())
				s = st.sink(t, c, pipeline.ExactlyOnce)
				if err := s.Recover(context.Background(), tok); err != nil {
					t.Fatalf("Recover after a cut commit: %v", err)
				}
			}
			mustCommit(t, s, tok)
			objs := st.objects(t)
			if keys := s3fake.Keys(objs); len(keys) != 1 || keys[0] != "events/part-000001-"+s.sinkID+".parquet" {
				t.Fatalf("objects %v, want exactly one", keys)
			}
			if ups := st.srv.Uploads(t, st.bucket); len(ups) != 0 {
				t.Fatalf("uploads left: %v", ups)
			}
		})
	}
}

// A key that holds somebody else's object is never overwritten.
func TestS3RefusesToOverwrite(t *testing.T) {
	st := newS3Test(t)
	c := st.config("json", nil)
	s := st.sink(t, c, pipeline.ExactlyOnce)
	key := "events/part-000001-" + s.sinkID + ".jsonl"
	if _, err := st.srv.Client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &st.bucket, Key: &key, Body: strings.NewReader("theirs\n")}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, logRecs(0, 10, 1)...)
	err := s.Commit(context.Background(), mustPreCommit(t, s, 1))
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("Commit over a foreign object: %v", err)
	}
	if got := string(st.objects(t)[key]); got != "theirs\n" {
		t.Fatalf("the foreign object was replaced: %q", got)
	}
}

// Outside exactly_once each flush makes every open object visible.
func TestS3AtLeastOnceFlushPublishes(t *testing.T) {
	st := newS3Test(t)
	s := st.sink(t, st.config("json", func(c *S3Config) { c.MinFileBytes = 1 << 20 }), pipeline.AtLeastOnce)
	recs := logRecs(0, 100, 10)
	mustWrite(t, s, recs...)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.objects(t)["events/part-000001-"+s.sinkID+".jsonl"]; !bytes.Equal(got, jsonLines(recs)) {
		t.Fatalf("after Flush: %d bytes, want %d", len(got), len(jsonLines(recs)))
	}
}

// A declared schema is checked for JSON lines too: a record that does not
// fit goes to the dead-letter output.
func TestS3JSONSchemaChecked(t *testing.T) {
	st := newS3Test(t)
	s := st.sink(t, st.config("json", func(c *S3Config) { c.Parquet.Schema = mustSchema(t, "struct<i: int64!>") }), pipeline.ExactlyOnce)
	if err := s.Check(rec("i", "seven")); err == nil || !strings.Contains(err.Error(), "s3:") {
		t.Fatalf("Check of a misfit: %v", err)
	}
	if err := s.Check(rec("i", int64(7), "extra", true)); err != nil {
		t.Fatalf("Check of a fit: %v", err)
	}
	schemaless := st.sink(t, st.config("json", nil), pipeline.ExactlyOnce)
	if err := schemaless.Check(rec("i", "seven")); err != nil || schemaless.Schema() != nil {
		t.Fatalf("without a schema, Check = %v and the schema is %v", err, schemaless.Schema())
	}
}

// Under min_file_bytes a Parquet part, which cannot stay open, is held in
// staging at each checkpoint; the held parts of a partition become one
// object (their row groups merged) once they reach min_file_bytes
// together. A restart from a checkpoint takes the held parts back; a
// clean stop merges and publishes what is held, and a restart after it
// adds nothing.
func TestS3ParquetMinFileBytesMergesHeldParts(t *testing.T) {
	st := newS3Test(t)
	c := st.config("parquet", func(c *S3Config) {
		c.Parquet.Schema = mustSchema(t, "struct<i: int64, service: string, msg: string>")
		c.Parquet.Compression = "none"
		c.Parquet.Dictionary = false // ~110 bytes a row
		c.MinFileBytes = 300 << 10
	})
	s := st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ckpt := uint64(0)
	var tok []byte
	step := func(s *ColumnarSink, from, to int) {
		t.Helper()
		mustWrite(t, s, logRecs(from, to, 100)...)
		ckpt++
		tok = mustPreCommit(t, s, ckpt)
		mustCommit(t, s, tok)
	}
	step(s, 0, 1000) // ~110 KB
	step(s, 1000, 2000)
	if objs := st.objects(t); len(objs) != 0 {
		t.Fatalf("visible under min_file_bytes: %v", s3fake.Keys(objs))
	}
	if ups := st.srv.Uploads(t, st.bucket); len(ups) != 0 {
		t.Fatalf("held parts are uploading: %v", ups)
	}
	// A crash, and a restart from the last checkpoint: the held parts are
	// taken back, and what came after is replayed.
	mustWrite(t, s, logRecs(2000, 2500, 100)...)
	s.remote.close()
	s = st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), tok); err != nil {
		t.Fatalf("Recover with held parts: %v", err)
	}
	step(s, 2000, 3000) // past 300 KiB: merged
	objs := st.objects(t)
	key := "events/part-000001-" + s.sinkID + ".parquet"
	if keys := s3fake.Keys(objs); !slices.Equal(keys, []string{key}) {
		t.Fatalf("objects %v, want only %s", keys, key)
	}
	ids := parquetIDs(t, objs[key])
	if len(ids) != 3000 || !slices.IsSorted(ids) || ids[0] != 0 || ids[2999] != 2999 {
		t.Fatalf("the merged object holds %d rows, want 0..2999 in order", len(ids))
	}
	step(s, 3000, 3100) // held again
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	objs = st.objects(t)
	key2 := "events/part-000002-" + s.sinkID + ".parquet"
	if ids := parquetIDs(t, objs[key2]); len(ids) != 100 || ids[0] != 3000 {
		t.Fatalf("after a clean stop %s holds %d rows, want 3000..3099 (objects %v)", key2, len(ids), s3fake.Keys(objs))
	}
	s = st.sink(t, c, pipeline.ExactlyOnce)
	if err := s.Recover(context.Background(), tok); err != nil {
		t.Fatalf("Recover after a clean stop: %v", err)
	}
	step(s, 5000, 5010)
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	objs = st.objects(t)
	if keys := s3fake.Keys(objs); len(keys) != 3 || keys[2] != "events/part-000003-"+s.sinkID+".parquet" {
		t.Fatalf("after a restart: objects %v, want a third", keys)
	}
	if entries, _ := os.ReadDir(s.staging); len(entries) != 0 {
		t.Fatalf("%d staging files left", len(entries))
	}
}

func parquetIDs(t *testing.T, b []byte) []int64 {
	t.Helper()
	if b == nil {
		return nil
	}
	f := filepath.Join(t.TempDir(), "o.parquet")
	os.WriteFile(f, b, 0o644)
	_, rows := readParquet(t, f)
	var ids []int64
	for _, r := range rows {
		ids = append(ids, r["i"].(int64))
	}
	return ids
}
