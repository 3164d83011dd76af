package sinks

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// The commit token of a columnar sink is JSON:
//
//	{"v":1, "sink":"app/sinks[0]/parquet", "checkpoint":42,
//	 "files":[{"staged":"<run>-000007.parquet",
//	           "final":"dt=2026-01-01/part-0000000042-0000-1a2b3c4d.parquet",
//	           "bytes":123456, "crc32c":305419896, "rows":1000}],
//	 "schema":"struct<...>"}
//
// staged is a file name in the sink's staging directory (Build.Dir/staging);
// final is a slash-separated path under the output directory. A token lists
// every file pre-committed and not yet committed, so a checkpoint whose
// Commit never ran is carried by the next token. schema is present only when
// the schema was inferred, so that a restart keeps it.
type columnarToken struct {
	Version    int         `json:"v"`
	Sink       string      `json:"sink"`
	Checkpoint uint64      `json:"checkpoint"`
	Files      []tokenFile `json:"files"`
	Schema     string      `json:"schema,omitempty"`
	// Tasks are the manifest entries of a sink that keeps tasks (see
	// columnar_tasks.go); their files are in the entries, not in Files.
	Tasks []columnarTaskEntry `json:"tasks,omitempty"`
	// Seqs is the next part number per partition of a sink that writes to
	// a bucket, whose object keys are numbered that way.
	Seqs map[string]int `json:"seqs,omitempty"`
}

type tokenFile struct {
	Staged string `json:"staged"`
	Final  string `json:"final"`
	Bytes  int64  `json:"bytes"`
	CRC32C uint32 `json:"crc32c"`
	Rows   int64  `json:"rows"`
	// Object is set when the sink writes to a bucket (columnar_remote.go).
	Object *objectEntry `json:"object,omitempty"`
	// Held marks a small finished part that a sink writing to a bucket
	// keeps in staging, to merge with the next ones of its partition
	// (columnar_remote.go); Final is then <partition>/<staged name>.
	Held bool `json:"held,omitempty"`
}

const tokenVersion = 1

func decodeToken(token []byte) (*columnarToken, error) {
	var t columnarToken
	if err := json.Unmarshal(token, &t); err != nil {
		return nil, fmt.Errorf("bad commit token: %w", err)
	}
	if t.Version != tokenVersion {
		return nil, fmt.Errorf("bad commit token: version %d, want %d", t.Version, tokenVersion)
	}
	for _, f := range t.Files {
		// A token comes from our own checkpoint, but it is read from disk:
		// never let it name a file outside the directories it belongs to.
		if f.Staged == "" || strings.ContainsAny(f.Staged, `/\`) || f.Staged == "." || f.Staged == ".." {
			return nil, fmt.Errorf("bad commit token: staged name %q", f.Staged)
		}
		if !filepath.IsLocal(filepath.FromSlash(f.Final)) || path.Clean(f.Final) != f.Final {
			return nil, fmt.Errorf("bad commit token: final name %q is not a path inside the output directory", f.Final)
		}
	}
	return &t, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// syncDir fsyncs a directory, making the names created or removed in it
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// mkdirAllSync creates dir and its missing parents, fsyncing the parent of
// every directory it creates, so the new path survives a power loss.
func mkdirAllSync(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}

// placeNoReplace makes src visible as dst, failing with fs.ErrExist when dst
// exists: a hard link where the file system has them (src then has two
// names), else a rename after checking dst is absent. A cross-device move
// fails with syscall.EXDEV.
func placeNoReplace(src, dst string) error {
	err := os.Link(src, dst)
	if err == nil || errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.EXDEV) {
		return err
	}
	// No hard links here (some FUSE and network file systems): rename.
	if _, serr := os.Lstat(dst); serr == nil {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: fs.ErrExist}
	}
	return os.Rename(src, dst)
}

// fileCRC returns the CRC-32C of a file's content.
func fileCRC(name string) (uint32, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// copyFileSync copies src to dst (created, must not exist) and fsyncs it.
func copyFileSync(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}

// commitFile makes one staged file visible under its final name. It is
// idempotent, and safe to rerun after a crash at any point of a previous
// run: it leaves the final file in place and the staged file removed (or
// marked for removal in removeStaged), or fails without touching an
// existing final file that is not this commit's.
//
// It returns whether the staged file is to be removed once the final
// directory is synced (the caller syncs first, so that a power loss can
// never lose both names).
func commitFile(staged, final string, f tokenFile) (removeStaged bool, err error) {
	for attempt := 0; attempt < 3; attempt++ {
		fi, ferr := os.Lstat(final)
		si, serr := os.Lstat(staged)
		if serr != nil && !errors.Is(serr, fs.ErrNotExist) {
			return false, serr
		}
		stagedExists := serr == nil
		switch {
		case ferr == nil && stagedExists:
			if os.SameFile(fi, si) {
				return true, nil // linked before a crash, staged name not yet removed
			}
			// A cross-device copy that finished, or somebody else's file.
			if fi.Size() == f.Bytes {
				crc, err := fileCRC(final)
				if err != nil {
					return false, err
				}
				if crc == f.CRC32C {
					return true, nil
				}
			}
			return false, fmt.Errorf("final file %s exists and is not the staged part %s (%d bytes, want %d with CRC-32C %08x); refusing to overwrite it", final, staged, fi.Size(), f.Bytes, f.CRC32C)
		case ferr == nil:
			if fi.Size() != f.Bytes {
				return false, fmt.Errorf("final file %s has %d bytes, the commit token says %d: it was not written by this commit", final, fi.Size(), f.Bytes)
			}
			return false, nil // committed before
		case !errors.Is(ferr, fs.ErrNotExist):
			return false, ferr
		case !stagedExists:
			return false, fmt.Errorf("staged part %s and final file %s are both missing: the part is lost", staged, final)
		}
		if si.Size() != f.Bytes {
			return false, fmt.Errorf("staged part %s has %d bytes, the commit token says %d", staged, si.Size(), f.Bytes)
		}
		if err := mkdirAllSync(filepath.Dir(final)); err != nil {
			return false, err
		}
		err := placeNoReplace(staged, final)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, fs.ErrExist):
			continue // appeared meanwhile: look again
		case errors.Is(err, syscall.EXDEV):
			// Staging and output are on different file systems: copy under a
			// hidden name next to the final file, then link it in place.
			tmp := filepath.Join(filepath.Dir(final), "."+filepath.Base(final)+".weir-tmp")
			if err := copyFileSync(staged, tmp); err != nil {
				return false, err
			}
			err := placeNoReplace(tmp, final)
			os.Remove(tmp)
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return false, err
			}
			continue // verify what is now in place
		default:
			return false, err
		}
	}
	return false, fmt.Errorf("final file %s keeps changing under the commit", final)
}
