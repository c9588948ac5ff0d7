//go:build unix

package jwks

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkOwner refuses a stored file that another user owns or may write: in
// a directory others can write (a Kubernetes emptyDir is 0777), they could
// have put it there or changed it.
func checkOwner(fi fs.FileInfo) error {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid {
			return fmt.Errorf("owned by uid %d, not this process's %d", st.Uid, uid)
		}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("writable by others (mode %v)", fi.Mode().Perm())
	}
	return nil
}
