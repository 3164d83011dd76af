package sinks

import (
	"context"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

func TestBlackholeDiscardsAndKeepsExactlyOnce(t *testing.T) {
	cfg, err := pipeline.Default.Load("p.yaml", []byte(`
pipelines:
  - name: p
    guarantee: exactly_once
    sources: [{generate: {count: 10}}]
    sinks: [{blackhole: {}}]
`))
	if err != nil {
		t.Fatalf("an exactly_once pipeline into blackhole was refused: %v", err)
	}
	s, err := cfg.Pipelines[0].Sinks[0].Config.(pipeline.SinkConfig).NewSink(pipeline.Build{})
	if err != nil {
		t.Fatal(err)
	}
	bh := s.(*Blackhole)
	ctx := context.Background()
	if err := bh.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b := &pipeline.Batch{Records: pipeline.NewRecords(4)}
		if err := bh.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := bh.PreCommit(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := bh.Commit(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := bh.Commit(ctx, tok); err != nil {
		t.Fatalf("a second commit of a token failed: %v", err)
	}
	if got := bh.Records(); got != 12 {
		t.Fatalf("discarded %d records, want 12", got)
	}
	if err := bh.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
