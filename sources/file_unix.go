//go:build unix

package sources

import (
	"io/fs"
	"syscall"
)

// identityOf returns the device and inode of a file, which survive a
// rename and tell a rotated file from its successor.
func identityOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, true //nolint:unconvert // Dev's type differs by platform
}
