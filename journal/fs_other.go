//go:build !linux

package journal

import "os"

// datasync is fsync(2) where there is no fdatasync.
func datasync(f *os.File) error { return f.Sync() }

// flock is a no-op where there is no flock: keep one Log per directory.
func flock(*os.File) error { return nil }
