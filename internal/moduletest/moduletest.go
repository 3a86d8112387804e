// Package moduletest checks that a module of this repository nested in a
// directory of its own (ratelimit/redisrate, journal/redisjournal) is
// installable by a user outside the repository, where the replace in its
// go.mod does not apply. It uses the standard library only, so the
// library's module gains no dependency.
package moduletest

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Root is the library's module path.
const Root = "github.com/musterhq/muster"

// Installable checks that the module in the current directory (a test's
// package directory: the module's root) is installable outside the
// repository: the library version its go.mod requires names a commit of
// this repository, and the module builds against that commit. It serves the
// two modules from a file GOPROXY, the library at the required version made
// from that commit (as a module proxy would make it) and this module from
// the working tree as a release would tag it, every other dependency from
// the local module cache, and has a module of its own `go get` this one and
// build program (the text of its main.go), offline. It skips under -short,
// and when git or the commit is missing.
func Installable(t *testing.T, module, program string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a program in a module of its own")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(Root) + `\s+(v\S+)\s*$`).FindSubmatch(gomod)
	if m == nil {
		t.Fatalf("go.mod does not require %s", Root)
	}
	version := string(m[1])
	pseudo := regexp.MustCompile(`^v0\.0\.0-(\d{14})-([0-9a-f]{12})$`).FindStringSubmatch(version)
	if pseudo != nil && pseudo[1] == "00010101000000" {
		t.Fatalf("go.mod requires %s@%s, which is no version of it: a user's go get cannot resolve it (the replace only applies inside this repository)", Root, version)
	}
	rev := version // a tag
	if pseudo != nil {
		rev = pseudo[2]
	}
	top := "" // the repository's root, once known: git archive archives the directory it runs in
	git := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = top
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("\n!!! git %s: %v: %s is NOT TESTED (no git, or a shallow clone without %s)", strings.Join(args, " "), err, t.Name(), rev)
		}
		return out
	}
	top = strings.TrimSpace(string(git("rev-parse", "--show-toplevel")))
	commit := strings.TrimSpace(string(git("rev-parse", "--verify", rev+"^{commit}")))
	unix := strings.TrimSpace(string(git("show", "-s", "--format=%ct", commit)))
	var sec int64
	fmt.Sscan(unix, &sec)
	when := time.Unix(sec, 0).UTC()
	if pseudo != nil && when.Format("20060102150405") != pseudo[1] {
		t.Fatalf("%s: the commit %s was made at %s, not at the pseudo-version's time", version, commit[:12], when.Format("20060102150405"))
	}

	proxy := t.TempDir()
	// The library at the required version, from the commit.
	archive := git("archive", "--format=tar", commit)
	rootZip := zipFromTar(t, archive, Root+"@"+version)
	rootMod := git("show", commit+":go.mod")
	writeProxy(t, proxy, Root, version, when, rootMod, rootZip)
	// This module as its release would be: the working tree.
	const release = "v0.99.0"
	writeProxy(t, proxy, module, release, time.Now().UTC(), gomod, zipFromDir(t, ".", module+"@"+release))

	user := t.TempDir()
	files := map[string]string{
		"go.mod":  "module example.com/user\n\ngo 1.26\n",
		"main.go": program,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(user, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := exec.Command(goBin, "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"GOPROXY=file://"+filepath.ToSlash(proxy)+",file://"+filepath.ToSlash(filepath.Join(strings.TrimSpace(string(cache)), "cache", "download")),
		"GOMODCACHE="+filepath.Join(t.TempDir(), "modcache"), "GOFLAGS=-modcacherw -mod=mod",
		"GOSUMDB=off", "GONOSUMDB=", "GOPRIVATE=", "GOWORK=off", "GOTOOLCHAIN=local")
	for _, args := range [][]string{{"get", module + "@" + release}, {"build", "-trimpath", "-o", os.DevNull, "."}} {
		cmd := exec.Command(goBin, args...)
		cmd.Dir, cmd.Env = user, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s, outside the repository: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sum, _ := os.ReadFile(filepath.Join(user, "go.mod"))
	if !strings.Contains(string(sum), Root+" "+version) {
		t.Errorf("the user's go.mod does not require %s %s:\n%s", Root, version, sum)
	}
}

// writeProxy lays out one module version as a GOPROXY serves it.
func writeProxy(t *testing.T, dir, module, version string, when time.Time, mod, zipData []byte) {
	t.Helper()
	d := filepath.Join(dir, filepath.FromSlash(module), "@v")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	info := fmt.Sprintf(`{"Version":%q,"Time":%q}`, version, when.Format(time.RFC3339))
	for name, data := range map[string][]byte{version + ".info": []byte(info), version + ".mod": mod, version + ".zip": zipData, "list": []byte(version + "\n")} {
		if err := os.WriteFile(filepath.Join(d, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// zipFromTar makes a module zip of the root module from a git archive: the
// files under prefix, without the directories of nested modules (those
// holding a go.mod of their own) and vendor, as the go command would.
func zipFromTar(t *testing.T, archive []byte, prefix string) []byte {
	t.Helper()
	type file struct {
		name string
		data []byte
	}
	var files []file
	nested := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if path.Base(h.Name) == "go.mod" && h.Name != "go.mod" {
			nested[path.Dir(h.Name)] = true
		}
		files = append(files, file{h.Name, data})
	}
	inNested := func(name string) bool {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if nested[d] || path.Base(d) == "vendor" {
				return true
			}
		}
		return false
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		if inNested(f.name) {
			continue
		}
		w, err := zw.Create(prefix + "/" + f.name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipFromDir makes a module zip of the regular files under dir.
func zipFromDir(t *testing.T, dir, prefix string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		w, err := zw.Create(prefix + "/" + filepath.ToSlash(p))
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
