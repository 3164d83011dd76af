package connect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadSecretFile(p); err != nil || got != "s3cret" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := ReadSecretFile(p + ".missing"); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Fatalf("missing file: %v", err)
	}
}
