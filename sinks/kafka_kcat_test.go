package sinks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/kafkatest"
)

// Interop with librdkafka: Debian's kcat produces the input and reads the
// output back with isolation.level=read_committed, so weir's transactions
// and commit markers are checked by a second, independent client.
func TestKafkaKcatInterop(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (apt-get install -y kcat; .ci/run installs it)")
	}
	c := kafkatest.New(t)
	in, out := c.Topic(t, 3), c.Topic(t, 2)
	brokers := strings.Join(c.Brokers, ",")

	// Input through librdkafka: "key|value" lines.
	var lines bytes.Buffer
	want := 0
	for i := range 900 {
		level, o := "info", -1
		if i%3 != 0 {
			level, o = "error", want
			want++
		}
		fmt.Fprintf(&lines, "k%d|{\"i\":%d,\"o\":%d,\"level\":%q,\"service\":\"svc%d\"}\n", i, i, o, level, i%5)
	}
	produce := exec.Command(kcat, "-P", "-b", brokers, "-t", in, "-K", "|")
	produce.Stdin = &lines
	if b, err := produce.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, b)
	}

	cfg := loadYAML(t, kafkaPipelineYAML(filepath.Join(t.TempDir(), "data"), "exactly_once", c, in, kafkatest.Name("g"), out, "100ms"))
	runUntil(t, cfg, c.NewReader(t, out), want)

	// Output through librdkafka, read_committed, to the end.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	consume := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", out, "-o", "beginning", "-e",
		"-X", "isolation.level=read_committed", "-f", "%k|%s\n")
	var stderr bytes.Buffer
	consume.Stderr = &stderr
	b, err := consume.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, stderr.Bytes())
	}
	var recs []*kgo.Record
	for line := range strings.Lines(string(b)) {
		key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "|")
		if !ok {
			t.Fatalf("kcat line %q", line)
		}
		var v struct{ Service string }
		if err := json.Unmarshal([]byte(value), &v); err != nil || key != v.Service {
			t.Fatalf("kcat read key %q value %s: want the service as the key", key, value)
		}
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(value)})
	}
	exactlyOnceField(t, recs, want)
}
