// Package durable holds the few file-system steps that make writes survive a
// crash: atomic replacement (temp file, fsync, rename, fsync dir) and
// directory fsync. weir's checkpoints and sinks use it.
//
//	err := durable.WriteFile("ckpt/checkpoint-7.json", data) // old or new, never half
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path so that a crash leaves either the old file
// or the new one: temp file, fsync, rename, fsync of the directory.
func WriteFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// Rename renames oldpath to newpath and fsyncs newpath's directory (and
// oldpath's, when different) so the rename survives a crash.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(newpath)); err != nil {
		return err
	}
	if d := filepath.Dir(oldpath); d != filepath.Dir(newpath) {
		return SyncDir(d)
	}
	return nil
}

// SyncDir fsyncs a directory so that a create, rename or remove in it is
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
