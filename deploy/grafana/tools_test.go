package grafana

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireEnv makes a missing Prometheus or promtool a failure instead of a
// skip. CI sets it, so that the checks that need the binaries cannot be
// skipped there by accident.
const requireEnv = "MUSTER_REQUIRE_PROMETHEUS"

const installHint = `install Debian's package without starting anything:
    apt-get update && apt-get download prometheus && dpkg-deb -x prometheus_*.deb /tmp/prom
    export PROMETHEUS=/tmp/prom/usr/bin/prometheus PROMTOOL=/tmp/prom/usr/bin/promtool`

// findTool returns the path of a Prometheus binary: $env, else name on
// PATH, else (for promtool) next to $PROMETHEUS. When there is none the test
// is skipped with a loud message, or fails when MUSTER_REQUIRE_PROMETHEUS=1.
func findTool(t *testing.T, env, name string) string {
	t.Helper()
	var tried []string
	if p := os.Getenv(env); p != "" {
		if isExecutable(p) {
			return p
		}
		tried = append(tried, fmt.Sprintf("$%s=%s (not an executable file)", env, p))
	} else {
		tried = append(tried, "$"+env+" (unset)")
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	tried = append(tried, name+" on $PATH")
	if name != "prometheus" {
		if prom := os.Getenv("PROMETHEUS"); prom != "" {
			p := filepath.Join(filepath.Dir(prom), name)
			if isExecutable(p) {
				return p
			}
			tried = append(tried, p)
		}
	}
	msg := fmt.Sprintf("\n%s\n!!! %s NOT FOUND: %s is NOT TESTED.\n!!! tried: %s\n!!! %s\n%s",
		strings.Repeat("!", 78), name, t.Name(), strings.Join(tried, "; "), installHint, strings.Repeat("!", 78))
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s=1 and %s", requireEnv, msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
