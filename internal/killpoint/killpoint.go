package killpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// The points weir passes.
const (
	// CheckpointSaved: the checkpoint is durable, no sink has committed it.
	CheckpointSaved = "checkpoint.saved"
	// CheckpointCommitted: every sink committed the checkpoint; sources are
	// not acknowledged yet (Kafka offsets not committed to the group).
	CheckpointCommitted = "checkpoint.committed"
	// KafkaAssigned: in the assign callback, partitions claimed, before
	// the first fetch.
	KafkaAssigned = "kafka.assigned"
	// KafkaRevokeBeforeCheckpoint: in the revoke callback, before the
	// checkpoint that covers the partitions handed back.
	KafkaRevokeBeforeCheckpoint = "kafka.revoke.before-checkpoint"
	// KafkaRevokeBeforeCommit: in the revoke callback, after that
	// checkpoint, before the offsets commit to the group.
	KafkaRevokeBeforeCommit = "kafka.revoke.before-commit"
	// KafkaTxnBeforeEnd: the kafka sink's transaction holds the output,
	// the offsets and the marker, and is not yet committed.
	KafkaTxnBeforeEnd = "kafka.txn.before-end"
	// HTTPCommitPartial: the http sink's commit has sent (and had
	// answered) the first batch of an epoch, not the others.
	HTTPCommitPartial = "http.commit.partial"
)

// Env is the environment variable that arms the points.
const Env = "WEIR_KILLPOINTS"

var armed = parse(os.Getenv(Env))

func parse(s string) map[string]float64 {
	if s == "" {
		return nil
	}
	out := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		name, p, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(p, 64); err == nil && f > 0 {
			out[name] = f
		}
	}
	return out
}

// Hit kills the process, with the probability WEIR_KILLPOINTS gives name,
// as SIGKILL from outside would.
func Hit(name string) {
	if armed == nil {
		return
	}
	p, ok := armed[name]
	if !ok || rand.Float64() >= p {
		return
	}
	fmt.Fprintf(os.Stderr, "weir: killpoint %s: SIGKILL\n", name)
	if self, err := os.FindProcess(os.Getpid()); err == nil {
		self.Kill()
	}
	select {} // the kill is on its way
}
