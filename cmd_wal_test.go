package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirhq/weir/wal"
)

// walOf writes n records of 10 bytes into dir with 64-byte segments: two
// records a segment (24-byte header, 18-byte frames), so record i is in
// segment i/2*2 at offset 24 + 18*(i%2).
func walOf(t *testing.T, dir string, n int) {
	t.Helper()
	l, err := wal.Open(dir, wal.Options{SegmentSize: 64, Sync: wal.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := l.Append(context.Background(), fmt.Appendf(nil, "record-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func segPath(dir string, first int) string {
	return filepath.Join(dir, fmt.Sprintf("%020d.wal", first))
}

// runCLIInput is runCLI with stdin.
func runCLIInput(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = runInput(args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWALVerifyCleanLog(t *testing.T) {
	dir := t.TempDir()
	walOf(t, dir, 5)
	code, out, errOut := runCLI(t, "wal", "verify", dir)
	want := dir + ": ok: 3 segments, 5 records, 162 bytes, first index 0, last index 4\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d, stdout %q, want 0 and %q; stderr: %s", code, out, want, errOut)
	}
}

// TestWALVerifyFlippedByte flips a payload byte of record 2, in the middle
// of segment 2: the report names the segment file and offset, says it is
// not a torn tail, and --repair changes nothing.
func TestWALVerifyFlippedByte(t *testing.T) {
	dir := t.TempDir()
	walOf(t, dir, 6)
	path := segPath(dir, 2)
	b := mustRead(t, path)
	b[24+8+4] ^= 0x01
	mustWrite(t, path, b)

	for _, args := range [][]string{{"wal", "verify", dir}, {"wal", "verify", "--repair", "--yes", dir}} {
		code, out, errOut := runCLI(t, args...)
		if code != exitFail || out != "" {
			t.Fatalf("%v: exit %d, stdout %q; want 1 and no output", args, code, out)
		}
		for _, want := range []string{
			"wal: segment 2 offset 24: record 2: checksum mismatch",
			"file: " + path + ", offset 24",
			"intact: records 0 to 1 read back",
			"not a torn tail",
			"weir wal dump " + dir,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: report lacks %q:\n%s", args, want, errOut)
			}
		}
		if !bytes.Equal(mustRead(t, path), b) {
			t.Fatalf("%v changed the damaged segment", args)
		}
	}
}

// TestWALVerifyTornTail cuts the last record in half: verify reports the
// torn tail; --repair asks, leaves it on "n", truncates it on "y" or with
// --yes.
func TestWALVerifyTornTail(t *testing.T) {
	orig := t.TempDir()
	walOf(t, orig, 6) // segment 4 holds records 4 and 5: 60 bytes
	torn := func() (dir, path string) {
		dir = t.TempDir()
		for _, seg := range []int{0, 2, 4} {
			mustWrite(t, segPath(dir, seg), mustRead(t, segPath(orig, seg)))
		}
		path = segPath(dir, 4)
		mustWrite(t, path, mustRead(t, path)[:53])
		return dir, path
	}

	dir, path := torn()
	code, out, errOut := runCLI(t, "wal", "verify", dir)
	if code != exitFail || out != "" || !strings.Contains(errOut, "segment 00000000000000000004.wal ends in a torn tail: 11 bytes at offset 42") ||
		!strings.Contains(errOut, "weir wal verify --repair "+dir) {
		t.Fatalf("verify: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}

	code, _, errOut = runCLIInput(t, "n\n", "wal", "verify", "--repair", dir)
	if question := "truncate " + path + " at 42? [y/N] "; code != exitFail || !strings.Contains(errOut, question) || !strings.Contains(errOut, "left as it is") {
		t.Fatalf("answer n: exit %d, stderr lacks %q:\n%s", code, question, errOut)
	}
	if n := len(mustRead(t, path)); n != 53 {
		t.Fatalf("answer n: segment is %d bytes, want it left at 53", n)
	}

	for _, c := range []struct {
		stdin string
		args  []string
	}{
		{"y\n", []string{"wal", "verify", "--repair", "DIR"}},
		{"", []string{"wal", "verify", "DIR", "--repair", "--yes"}},
	} {
		dir, path := torn()
		args := append([]string(nil), c.args...)
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "DIR", dir)
		}
		code, out, errOut := runCLIInput(t, c.stdin, args...)
		if code != 0 || !strings.Contains(out, dir+": ok: 3 segments, 5 records, 162 bytes, first index 0, last index 4") {
			t.Fatalf("%v with stdin %q: exit %d, stdout %q, stderr:\n%s", c.args, c.stdin, code, out, errOut)
		}
		if n := len(mustRead(t, path)); n != 42 {
			t.Fatalf("%v: segment is %d bytes after the repair, want 42", c.args, n)
		}
	}
}

func TestWALStatIsReadable(t *testing.T) {
	dir := t.TempDir()
	walOf(t, dir, 3)
	code, out, errOut := runCLI(t, "wal", "stat", dir)
	want := dir + ": 2 segments, 3 records, 102 bytes, first index 0, last index 2\n" +
		"  segment                   records  first  last  bytes\n" +
		"  00000000000000000000.wal  2        0      1     60\n" +
		"  00000000000000000002.wal  1        2      2     42\n"
	if code != 0 || out != want {
		t.Fatalf("exit %d; stdout:\n%s\nwant:\n%s\nstderr: %s", code, out, want, errOut)
	}
}

// TestWALNotALogHints points the commands at folders that are not WALs:
// the error says where weir keeps them and lists those under the folder
// and under ./.weir.
func TestWALNotALogHints(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)
	walDir := filepath.Join(".weir", "app", "sources-0-stdin", "wal")
	walOf(t, walDir, 1)
	if err := os.Mkdir("empty", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"wal", "stat", ".weir"},
		{"wal", "verify", "empty"},
		{"wal", "verify", "absent"},
		{"wal", "dump", "absent"},
	} {
		code, _, errOut := runCLI(t, args...)
		if code != exitFail || !strings.Contains(errOut, "<data_dir>/<pipeline>/sources-<n>-<kind>/wal") ||
			!strings.Contains(errOut, "WALs found under") || !strings.Contains(errOut, "\n  "+walDir) {
			t.Errorf("%v: exit %d, stderr:\n%s", args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "wal", "verify", "empty"); !strings.Contains(errOut, "not a write-ahead log: empty holds no segment files") {
		t.Errorf("verify empty: exit %d, stderr:\n%s", code, errOut)
	}
}

func TestWALUsage(t *testing.T) {
	for _, args := range [][]string{
		{"wal"},
		{"wal", "verify"},
		{"wal", "verify", "a", "b"},
		{"wal", "verify", "--yes", "a"},
		{"wal", "explode", "a"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}
