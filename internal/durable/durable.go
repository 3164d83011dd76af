// Package durable holds the few file-system steps that make writes survive a
// crash: atomic replacement (temp file, fsync, rename, fsync dir) and
// directory fsync. weir's checkpoints and sinks use it.
//
//	err := durable.WriteFile("ckpt/checkpoint-7.json", data) // old or new, never half
package durable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// ReadOrCreateID returns the id stored in path, creating the file with
// prefix followed by 12 random hex digits when it does not exist. It is how
// a component gets an identity that is stable across restarts of one data
// directory and different in every other one (a copied data directory
// copies the identity too). The file is written with WriteFile, so a crash
// leaves it absent or complete. A file that exists but holds no id, or more
// than one line, is an error naming path: an identity that other state
// refers to is never silently replaced.
func ReadOrCreateID(path, prefix string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" || strings.ContainsAny(id, "\r\n") {
			return "", fmt.Errorf("instance id file %s is damaged: want one line holding the id", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read instance id: %w", err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails (Go 1.24+)
	id := prefix + hex.EncodeToString(r[:])
	if err := WriteFile(path, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("write instance id %s: %w", path, err)
	}
	return id, nil
}
