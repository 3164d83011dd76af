package runtime

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/internal/durable"
)

// Checkpoint is one complete, durable snapshot of a pipeline: where every
// source was, every operator's state, and every sink's commit token, all as
// of the same barrier.
type Checkpoint struct {
	Version  int       `json:"version"`
	Pipeline string    `json:"pipeline"`
	ID       uint64    `json:"id"`
	Time     time.Time `json:"time"`
	// InputDone says every source had reached the end of its input and the
	// operators had flushed: a restart has nothing left to do.
	InputDone bool             `json:"input_done,omitempty"`
	Sources   []ComponentState `json:"sources"`
	Operators []ComponentState `json:"operators"`
	Sinks     []ComponentState `json:"sinks"`
}

// ComponentState is one component's part of a checkpoint, keyed by the
// component id ("sources[0]/file").
type ComponentState struct {
	ID    string `json:"id"`
	State Blob   `json:"state,omitempty"`
}

// Blob is opaque component state. It is stored as JSON when it is JSON (so
// `weir checkpoints` shows file offsets and Kafka partitions readably) and
// as {"base64": "..."} otherwise.
type Blob []byte

// MarshalJSON implements json.Marshaler.
func (b Blob) MarshalJSON() ([]byte, error) {
	if len(b) == 0 {
		return []byte("null"), nil
	}
	if json.Valid(b) {
		return b, nil
	}
	return json.Marshal(map[string]string{"base64": base64.StdEncoding.EncodeToString(b)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *Blob) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	var wrapped struct {
		B64 *string `json:"base64"`
	}
	if data[0] == '{' && json.Unmarshal(data, &wrapped) == nil && wrapped.B64 != nil {
		var keys map[string]json.RawMessage
		if json.Unmarshal(data, &keys) == nil && len(keys) == 1 {
			raw, err := base64.StdEncoding.DecodeString(*wrapped.B64)
			if err != nil {
				return err
			}
			*b = raw
			return nil
		}
	}
	*b = append((*b)[:0], data...)
	return nil
}

func findState(list []ComponentState, id string) ([]byte, bool) {
	for _, s := range list {
		if s.ID == id {
			return s.State, true
		}
	}
	return nil, false
}

// CheckpointStore keeps a pipeline's checkpoints in a directory, written
// atomically (temp file, fsync, rename, fsync dir). The newest few are kept.
type CheckpointStore struct {
	Dir  string
	Keep int // how many to keep; default 3
}

const checkpointPrefix, checkpointSuffix = "checkpoint-", ".json"

func checkpointName(id uint64) string {
	return fmt.Sprintf("%s%020d%s", checkpointPrefix, id, checkpointSuffix)
}

// IDs lists the stored checkpoint ids, oldest first.
func (s *CheckpointStore) IDs() ([]uint64, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runtime: list checkpoints: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, checkpointPrefix) || !strings.HasSuffix(name, checkpointSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, checkpointPrefix), checkpointSuffix), 10, 64)
		if err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Latest loads the newest checkpoint, or returns nil when there is none.
// A newest checkpoint that cannot be read is an error, never skipped: an
// older one would re-commit sink data that the newer one already committed.
func (s *CheckpointStore) Latest() (*Checkpoint, error) {
	ids, err := s.IDs()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	return s.Load(ids[len(ids)-1])
}

// Load reads one checkpoint.
func (s *CheckpointStore) Load(id uint64) (*Checkpoint, error) {
	path := filepath.Join(s.Dir, checkpointName(id))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("runtime: read checkpoint: %w", err)
	}
	var c Checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("runtime: checkpoint %s is damaged: %w", path, err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("runtime: checkpoint %s holds id %d", path, c.ID)
	}
	return &c, nil
}

// Save writes c durably and prunes old checkpoints. It returns the size
// written.
func (s *CheckpointStore) Save(c *Checkpoint) (int, error) {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return 0, fmt.Errorf("runtime: create checkpoint dir: %w", err)
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("runtime: encode checkpoint: %w", err)
	}
	final := filepath.Join(s.Dir, checkpointName(c.ID))
	if err := durable.WriteFile(final, data); err != nil {
		return 0, fmt.Errorf("runtime: save checkpoint %d: %w", c.ID, err)
	}
	keep := s.Keep
	if keep <= 0 {
		keep = 3
	}
	if ids, err := s.IDs(); err == nil && len(ids) > keep {
		for _, id := range ids[:len(ids)-keep] {
			_ = os.Remove(filepath.Join(s.Dir, checkpointName(id)))
		}
	}
	return len(data), nil
}
