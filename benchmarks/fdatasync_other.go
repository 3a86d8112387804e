//go:build !linux

package benchmarks

import "os"

func fdatasync(f *os.File) error { return f.Sync() }
