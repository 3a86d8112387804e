package grafana

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deploy/Makefile finds prometheus and promtool where a user or CI put
// them: $PROMETHEUS / $PROMTOOL as given, else on PATH, else in
// $(PROM_ROOT)/usr/bin, whose default is where .ci/run unpacks them.
func TestMakefileFindsTools(t *testing.T) {
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not found: the Makefile's tool lookup is NOT TESTED")
	}
	// fakeBins puts a prometheus and a promtool that do nothing in dir.
	fakeBins := func(dir string) string {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"prometheus", "promtool"} {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	root := t.TempDir() // a PROM_ROOT as `make tools` and .ci/run lay it out
	rootBin := fakeBins(filepath.Join(root, "usr/bin"))
	empty := t.TempDir()
	onPath := fakeBins(t.TempDir())
	run := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(mk, "-s", "-C", "..", "tools-path", "PROM_ROOT="+root)
		cmd.Env = append([]string{"HOME=" + os.Getenv("HOME")}, env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make tools-path: %v\n%s", err, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"PROM_ROOT", []string{"PATH=" + empty},
			"PROMETHEUS=" + rootBin + "/prometheus\nPROMTOOL=" + rootBin + "/promtool\n"},
		{"PATH first", []string{"PATH=" + onPath},
			"PROMETHEUS=" + onPath + "/prometheus\nPROMTOOL=" + onPath + "/promtool\n"},
		{"environment first", []string{"PATH=" + onPath, "PROMETHEUS=/opt/p/prometheus", "PROMTOOL=/opt/p/promtool"},
			"PROMETHEUS=/opt/p/prometheus\nPROMTOOL=/opt/p/promtool\n"},
	} {
		if got := run(tc.env...); got != tc.want {
			t.Errorf("%s: got\n%swant\n%s", tc.name, got, tc.want)
		}
	}

	// The default PROM_ROOT is where .ci/run installs.
	ci, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	mkfile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	ciRoot := regexp.MustCompile(`(?m)^prom_root=(\S+)$`).FindSubmatch(ci)
	mkRoot := regexp.MustCompile(`(?m)^PROM_ROOT \?= (\S+)$`).FindSubmatch(mkfile)
	if ciRoot == nil || mkRoot == nil || string(ciRoot[1]) != strings.TrimSpace(string(mkRoot[1])) {
		t.Errorf(".ci/run installs into %q, deploy/Makefile's PROM_ROOT defaults to %q", ciRoot, mkRoot)
	}
}
