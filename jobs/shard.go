package jobs

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard is part Index (0-based) of Count parts of a run's items.
type Shard struct {
	Index, Count int
}

// Whole is the shard that is the whole run.
var Whole = Shard{Index: 0, Count: 1}

// ParseShard parses "i/N" (0 <= i < N); "" is Whole.
func ParseShard(s string) (Shard, error) {
	if s == "" {
		return Whole, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("jobs: shard %q: want i/N with 0 <= i < N, such as 0/4", s)
	}
	return Shard{Index: i, Count: n}, nil
}

// String writes the shard as "i/N".
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// IsWhole reports whether the shard is the whole run.
func (s Shard) IsWhole() bool { return s.Count <= 1 }

// Of returns the shard's block of items: items [i*len/N, (i+1)*len/N), in order.
// The blocks of 0/N .. N-1/N are disjoint and cover items.
func (s Shard) Of(items []int) []int {
	if s.Count <= 1 {
		return items
	}
	lo, hi := s.Index*len(items)/s.Count, (s.Index+1)*len(items)/s.Count
	return items[lo:hi:hi]
}
