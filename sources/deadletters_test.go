package sources

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/pipeline"
)

func readAllDeadLetters(t *testing.T, s pipeline.Source) []string {
	t.Helper()
	var out []string
	for {
		b := &pipeline.Batch{}
		_, err := s.Read(context.Background(), b)
		for _, r := range b.Records {
			out = append(out, string(r.Value))
		}
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// The source gives the original bytes of the selected dead letters, in
// order, up to the length the file had at the first start: dead letters
// appended during the replay are not read; a restart from a position goes
// on from there with the same end.
func TestDeadLettersSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead.jsonl")
	bin := base64.StdEncoding.EncodeToString([]byte{0xff, 0x00, '\n'})
	lines := []string{
		`{"reason":"map","component":"a/operators[1]/map","value":"{\"n\":1}","origin":"in.log","offset":0,"line":1}`,
		`{"reason":"parse","component":"a/operators[0]/parse","value":"not json"}`,
		`{"reason":"map","component":"a/operators[1]/map","value_base64":"` + bin + `"}`,
		`{"reason":"map","component":"a/operators[1]/map","record":{"n":3}}`, // made by an operator: no bytes
		`{"reason":"map","component":"b/operators[1]/map","value":"{\"n\":4}"}`,
	}
	os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	open := func(c DeadLettersConfig) pipeline.Source {
		s, err := c.NewSource(pipeline.Build{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := open(DeadLettersConfig{Path: path})
	if got := readAllDeadLetters(t, all); strings.Join(got, "|") != "{\"n\":1}|not json|\xff\x00\n|{\"n\":4}" {
		t.Fatalf("all: %q", got)
	}
	if n := all.(*deadLetterSource).Skipped; n != 1 {
		t.Fatalf("skipped %d, want the one without bytes", n)
	}
	if got := readAllDeadLetters(t, open(DeadLettersConfig{Path: path, Pipeline: "b"})); strings.Join(got, "|") != `{"n":4}` {
		t.Fatalf("pipeline b: %q", got)
	}
	s := open(DeadLettersConfig{Path: path, Reasons: []string{"map"}, Components: []string{"operators[1]/map", "x"}})
	b := &pipeline.Batch{}
	if _, err := s.Read(context.Background(), b); err != nil || len(b.Records) != 1 || string(b.Records[0].Value) != `{"n":1}` {
		t.Fatalf("first read: %v %d", err, len(b.Records))
	}
	pos, err := s.(pipeline.Positioned).Position()
	if err != nil {
		t.Fatal(err)
	}
	// The replay dead-letters again: appended after the end fixed at start.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	f.WriteString(lines[0] + "\n")
	f.Close()
	rest := open(DeadLettersConfig{Path: path, Reasons: []string{"map"}, Components: []string{"operators[1]/map"}})
	if err := rest.(pipeline.Positioned).Seek(context.Background(), pos); err != nil {
		t.Fatal(err)
	}
	if got := readAllDeadLetters(t, rest); strings.Join(got, "|") != "\xff\x00\n|{\"n\":4}" {
		t.Fatalf("after a restart: %q", got)
	}
}
