package progress

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPlainLines: off a terminal, a line per tenth of the work (no carriage
// returns), and a last line at Finish.
func TestPlainLines(t *testing.T) {
	for _, c := range []struct {
		name      string
		total     int
		hidden    bool
		wantLines int
	}{
		{"100 items", 100, false, 10}, // 9 tenths on the way (10%..90%) and the end
		{"3 items", 3, false, 3},      // 1/3, 2/3 and the end
		{"hidden", 100, true, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			b := New(&buf, c.total, Options{Description: "test", Unit: "items", Hidden: c.hidden, Every: time.Hour})
			for range c.total {
				b.Add(1)
			}
			b.Finish()
			b.Finish() // once only
			out := buf.String()
			if strings.Contains(out, "\r") {
				t.Errorf("carriage returns in %q", out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if out == "" {
				lines = nil
			}
			if len(lines) != c.wantLines {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), c.wantLines, out)
			}
			if c.wantLines > 0 {
				last := lines[len(lines)-1]
				want := "test: " + strconv.Itoa(c.total) + "/" + strconv.Itoa(c.total) + " items (100%)"
				if !strings.HasPrefix(last, want) {
					t.Errorf("last line %q, want it to start %q", last, want)
				}
			}
		})
	}
}

// TestEveryInterval: a line after Every even without a tenth's progress, with an
// estimate of the time left; Exit reports where the work stopped.
func TestEveryInterval(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, 1000, Options{Description: "steps", Unit: "steps", Every: time.Millisecond})
	b.Add(1)
	time.Sleep(5 * time.Millisecond)
	b.Add(1)
	b.Exit()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "left") || !strings.HasPrefix(lines[len(lines)-1], "steps: 2/1000 steps (0%)") {
		t.Errorf("lines %q", lines)
	}
}

// TestNilBar: a nil Bar does nothing.
func TestNilBar(t *testing.T) {
	var b *Bar
	b.Add(1)
	b.Set(2)
	b.Describe("x")
	b.Clear()
	if b.Finish() != nil || b.Exit() != nil {
		t.Error("nil bar returned an error")
	}
}
