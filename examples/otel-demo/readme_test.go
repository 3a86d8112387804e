package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The sample output in the READMEs is what the demo prints: each banner and
// progress line of their samples has the shape of a line of a real run
// (numbers, durations, phases, addresses and paths aside; the limits of the
// in-flight and queue gauges, which the configuration fixes, included).

var (
	shapeURL    = regexp.MustCompile(`https?://\S+`)
	shapePath   = regexp.MustCompile(`(^|\s)/\S+`)
	shapeNumber = regexp.MustCompile(`(\d+(\.\d+)?(ns|µs|ms|s|m|h)?)+`)
	shapePhase  = regexp.MustCompile(`\b(steady|surge|brownout|quiet|outage)\b`)
	shapeSpace  = regexp.MustCompile(`\s+`)
	shapeLimit  = regexp.MustCompile(`(in-flight|queue)\s+\d+/(\d+)`)
)

// shape reduces an output line to its form.
func shape(line string) string {
	// The gauges' limits stay, spelled in letters so that the number
	// rule leaves them alone.
	line = shapeLimit.ReplaceAllStringFunc(line, func(m string) string {
		sub := shapeLimit.FindStringSubmatch(m)
		return sub[1] + " N/" + strings.Map(func(r rune) rune { return 'a' + r - '0' }, sub[2])
	})
	line = shapeURL.ReplaceAllString(line, "URL")
	line = shapePath.ReplaceAllString(line, "${1}PATH")
	line = shapeNumber.ReplaceAllString(line, "#")
	line = shapePhase.ReplaceAllString(line, "PHASE")
	return strings.TrimSpace(shapeSpace.ReplaceAllString(line, " "))
}

// sampleLines returns the banner and progress lines of the README's
// unlabelled code blocks.
func sampleLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in, labelled, banner := false, false, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "```"):
			in, labelled, banner = !in, l != "```", false
		case !in || labelled:
		case strings.HasPrefix(l, "muster otel-demo:"):
			banner = true
			lines = append(lines, l)
		case strings.Contains(l, " in-flight "):
			lines = append(lines, l)
		case banner:
			lines = append(lines, l)
		}
	}
	return lines
}

func TestREADMESampleOutput(t *testing.T) {
	t.Parallel()
	// As `make demo` runs it (until Ctrl-C), stopped after three progress
	// lines.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(stdout.String(), " in-flight ") < 3 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	code := runDemo(ctx, []string{"-metrics-addr", "127.0.0.1:0", "-traces", filepath.Join(t.TempDir(), "traces.log"), "-cycle", "2s"},
		&stdout, &stderr, nil)
	if code != 0 {
		t.Fatalf("exit code %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	printed := map[string]bool{}
	for _, l := range strings.Split(stdout.String(), "\n") {
		printed[shape(l)] = true
	}
	for _, readme := range []string{"README.md", filepath.Join("..", "..", "README.md")} {
		lines := sampleLines(t, readme)
		if len(lines) == 0 {
			t.Errorf("%s: no sample output found", readme)
		}
		for _, l := range lines {
			if !printed[shape(l)] {
				t.Errorf("%s shows a line the demo does not print:\n  %s\nshape: %s\nthe demo printed:\n%s", readme, l, shape(l), stdout.String())
			}
		}
	}
}
