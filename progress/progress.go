// Package progress reports how far long work has got: a bar redrawn in place on a
// terminal, and plain lines elsewhere (SLURM logs, CI, pipes, files), one every
// few seconds or tenth of the work, so that a log holds a readable history
// instead of thousands of carriage-return frames.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Options describe a Bar.
type Options struct {
	Description string        // what is counted, e.g. "egg MEIs"
	Unit        string        // the items' name, e.g. "MEIs"
	Hidden      bool          // report nothing
	Clear       bool          // on a terminal, erase the bar when finished
	Every       time.Duration // off a terminal, the most time between lines (0: 10 s)
}

// Bar reports progress towards a total. Its methods are safe for concurrent use
// and do nothing on a nil Bar.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	o     Options
	total int
	done  int
	start time.Time
	// on a terminal
	bar *progressbar.ProgressBar
	// off a terminal: when and where the last line was written
	lastT    time.Time
	lastTen  int // tenths of the total reported
	finished bool
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// New returns a Bar for total items written to w: a bar when w is a terminal,
// else plain lines.
func New(w io.Writer, total int, o Options) *Bar {
	if o.Every <= 0 {
		o.Every = 10 * time.Second
	}
	b := &Bar{w: w, o: o, total: total, start: time.Now(), lastT: time.Now()}
	if o.Hidden {
		return b
	}
	if IsTerminal(w) {
		opts := []progressbar.Option{
			progressbar.OptionSetDescription(o.Description), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
			progressbar.OptionSetItsString(o.Unit), progressbar.OptionSetWriter(w), progressbar.OptionThrottle(200 * time.Millisecond),
			progressbar.OptionSetPredictTime(true),
		}
		if o.Clear {
			opts = append(opts, progressbar.OptionClearOnFinish())
		}
		b.bar = progressbar.NewOptions(total, opts...)
	}
	return b
}

// Add counts n more items done.
func (b *Bar) Add(n int) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setLocked(b.done + n)
}

// Set sets the items done to n.
func (b *Bar) Set(n int) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.setLocked(n)
}

func (b *Bar) setLocked(n int) error {
	b.done = n
	if b.o.Hidden {
		return nil
	}
	if b.bar != nil {
		return b.bar.Set(n)
	}
	now := time.Now()
	ten := 0
	if b.total > 0 {
		ten = 10 * n / b.total
	}
	if ten > b.lastTen || now.Sub(b.lastT) >= b.o.Every {
		b.lastTen, b.lastT = max(ten, b.lastTen), now
		if n < b.total {
			b.lineLocked()
		}
	}
	return nil
}

// Describe changes the description (on a terminal at once; off it in the next
// line).
func (b *Bar) Describe(s string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.o.Description = s
	if b.bar != nil && !b.o.Hidden {
		b.bar.Describe(s)
	}
}

// Clear erases the bar on a terminal, so that a log line can be written; it does
// nothing off a terminal.
func (b *Bar) Clear() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil && !b.o.Hidden {
		b.bar.Clear()
	}
}

// Finish reports the end: the bar full (or cleared, with Options.Clear), or a last
// line with the count and the time taken.
func (b *Bar) Finish() error {
	return b.end(true)
}

// Exit ends the bar where it stands (work that stopped early): the bar keeps its
// state, or a last line says how far it got.
func (b *Bar) Exit() error {
	return b.end(false)
}

func (b *Bar) end(full bool) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished || b.o.Hidden {
		return nil
	}
	b.finished = true
	if b.bar != nil {
		if full {
			return b.bar.Finish()
		}
		return b.bar.Exit()
	}
	if full {
		b.done = b.total
	}
	b.lineLocked()
	return nil
}

// lineLocked writes one plain line: "egg MEIs: 9/24 MEIs (37%), 36s, about 1m0s left".
func (b *Bar) lineLocked() {
	el := time.Since(b.start)
	s := fmt.Sprintf("%s: %d/%d %s", b.o.Description, b.done, b.total, b.o.Unit)
	if b.total > 0 {
		s += fmt.Sprintf(" (%d%%)", 100*b.done/b.total)
	}
	s += ", " + el.Round(time.Second).String()
	if b.done > 0 && b.done < b.total {
		left := time.Duration(float64(el) * float64(b.total-b.done) / float64(b.done))
		s += ", about " + left.Round(time.Second).String() + " left"
	}
	fmt.Fprintln(b.w, s)
}
