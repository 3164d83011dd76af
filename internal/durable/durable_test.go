package durable

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadOrCreateID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "instance-id")
	id, err := ReadOrCreateID(path, "p-")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "p-") || len(id) != len("p-")+12 {
		t.Fatalf("id %q, want p- and 12 hex digits", id)
	}
	again, err := ReadOrCreateID(path, "p-")
	if err != nil || again != id {
		t.Fatalf("second read: %q, %v; want %q (stable across restarts)", again, err, id)
	}
	other, err := ReadOrCreateID(filepath.Join(t.TempDir(), "instance-id"), "p-")
	if err != nil || other == id {
		t.Fatalf("another directory: %q, %v; want an id other than %q", other, err, id)
	}
	for _, damaged := range []string{"", " \n", "a\nb\n"} {
		if err := os.WriteFile(path, []byte(damaged), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := ReadOrCreateID(path, "p-"); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("file %q: got %q, %v; want an error naming %s", damaged, got, err, path)
		}
	}
}
