package jobs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"", Whole, true},
		{"0/1", Shard{0, 1}, true},
		{"3/4", Shard{3, 4}, true},
		{" 2 / 8 ", Shard{2, 8}, true},
		{"4/4", Shard{}, false},
		{"-1/4", Shard{}, false},
		{"1/0", Shard{}, false},
		{"1", Shard{}, false},
		{"a/b", Shard{}, false},
	} {
		got, err := ParseShard(c.in)
		if (err == nil) != c.ok || (c.ok && got != c.want) {
			t.Errorf("ParseShard(%q) = %v, %v; want %v (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestShardsPartition: the blocks of 0/N .. N-1/N are disjoint, in order, cover
// the items, and differ in size by at most one.
func TestShardsPartition(t *testing.T) {
	for _, n := range []int{0, 1, 5, 12, 100} {
		items := make([]int, n)
		for i := range items {
			items[i] = 3 * i
		}
		for _, count := range []int{1, 2, 4, 7, 12, 150} {
			var all []int
			lo, hi := n, 0
			for i := 0; i < count; i++ {
				b := Shard{i, count}.Of(items)
				all = append(all, b...)
				lo, hi = min(lo, len(b)), max(hi, len(b))
			}
			if !reflect.DeepEqual(all, items) && !(n == 0 && len(all) == 0) {
				t.Errorf("%d items in %d shards: %v", n, count, all)
			}
			if hi-lo > 1 {
				t.Errorf("%d items in %d shards: blocks of %d to %d", n, count, lo, hi)
			}
		}
	}
}

func TestRanges(t *testing.T) {
	for _, c := range []struct {
		in   []int
		want string
	}{
		{nil, ""}, {[]int{3}, "3"}, {[]int{0, 1, 2, 3}, "0-3"}, {[]int{0, 2, 3, 4, 7, 9, 10}, "0,2-4,7,9-10"},
	} {
		if got := Ranges(c.in); got != c.want {
			t.Errorf("Ranges(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestStatus walks a run of 3 shards through its states: missing, running, lost
// (a dead process on this host), failed, interrupted and done, with records
// counted from the manifest's pattern.
func TestStatus(t *testing.T) {
	dir := t.TempDir()
	if err := WriteJSON(ManifestPath(dir), Manifest{Command: "mei", Shards: 3, Record: "rec_%d.json"}); err != nil {
		t.Fatal(err)
	}
	items := []int{0, 1, 2, 3, 4, 5}
	record := func(it int) { os.WriteFile(filepath.Join(dir, fmt.Sprintf("rec_%d.json", it)), []byte("{}"), 0o644) }
	shard := func(i int) Shard { return Shard{i, 3} }
	states := func() []string {
		rs, err := Status(dir, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, sh := range rs.Shards {
			s = append(s, fmt.Sprintf("%s %d/%d", sh.State, sh.Done, sh.Items))
		}
		return s
	}
	want := func(w ...string) {
		t.Helper()
		if got := states(); !reflect.DeepEqual(got, w) {
			t.Errorf("states %q, want %q", got, w)
		}
	}
	want("missing 0/0", "missing 0/0", "missing 0/0")
	s0, err := Begin(dir, shard(0), shard(0).Of(items))
	if err != nil {
		t.Fatal(err)
	}
	record(0)
	want("running 1/2", "missing 0/0", "missing 0/0")
	// A shard whose process is gone: its state says running.
	s1, _ := Begin(dir, shard(1), shard(1).Of(items))
	s1.PID = 1 << 30 // no such process
	WriteJSON(statePath(dir, shard(1)), s1)
	want("running 1/2", "lost 0/2", "missing 0/0")
	s2, _ := Begin(dir, shard(2), shard(2).Of(items))
	s2.End(dir, errors.New("out of memory"))
	s1.End(dir, Transient{errors.New("interrupted")})
	want("running 1/2", "interrupted 0/2", "failed 0/2")
	record(1)
	s0.End(dir, nil)
	rs, _ := Status(dir, 0, "")
	if rs.Complete() || !reflect.DeepEqual(rs.Missing(), []int{1, 2}) {
		t.Errorf("complete %v, missing %v", rs.Complete(), rs.Missing())
	}
	// The failed and interrupted shards run again and finish.
	for _, i := range []int{1, 2} {
		st, _ := Begin(dir, shard(i), shard(i).Of(items))
		if st.Attempts != 2 {
			t.Errorf("shard %d: attempt %d, want 2", i, st.Attempts)
		}
		for _, it := range shard(i).Of(items) {
			record(it)
		}
		st.End(dir, nil)
	}
	want("done 2/2", "done 2/2", "done 2/2")
	rs, _ = Status(dir, 0, "")
	if !rs.Complete() || !reflect.DeepEqual(rs.AllItems(), items) {
		t.Errorf("complete %v, items %v", rs.Complete(), rs.AllItems())
	}
	// A record deleted since: not complete.
	os.Remove(filepath.Join(dir, "rec_4.json"))
	rs, _ = Status(dir, 0, "")
	if rs.Complete() || !reflect.DeepEqual(rs.Missing(), []int{2}) {
		t.Errorf("after a deletion: complete %v, missing %v", rs.Complete(), rs.Missing())
	}
	// No run at all.
	if _, err := Status(t.TempDir(), 0, ""); err == nil {
		t.Error("an empty folder has a status")
	}
}

// TestLockMerge: one merger at a time; the lock is free again once released.
func TestLockMerge(t *testing.T) {
	dir := t.TempDir()
	unlock, ok, err := LockMerge(dir)
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok2, err := LockMerge(dir); err != nil || ok2 {
		t.Errorf("second lock while held: ok %v, %v", ok2, err)
	}
	unlock()
	unlock2, ok, err := LockMerge(dir)
	if err != nil || !ok {
		t.Fatalf("lock after release: %v %v", ok, err)
	}
	unlock2()
}

// TestCreateManifest: the first creates it; later ones leave it as it is.
func TestCreateManifest(t *testing.T) {
	dir := t.TempDir()
	if err := CreateManifest(dir, Manifest{Command: "mei", Shards: 2}); err != nil {
		t.Fatal(err)
	}
	if err := CreateManifest(dir, Manifest{Command: "meni", Shards: 3}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(dir)
	if err != nil || m.Command != "mei" || m.Shards != 2 {
		t.Errorf("manifest %+v, %v", m, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.new")); len(left) > 0 {
		t.Errorf("left over: %v", left)
	}
}

func TestLastLine(t *testing.T) {
	for in, want := range map[string]string{
		"squeue: error: a\nsqueue: fatal: b\n": "squeue: fatal: b",
		"one":                                  "one",
		"":                                     "",
	} {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusDamaged: a damaged manifest or state file is an error naming the file.
func TestStatusDamaged(t *testing.T) {
	for _, name := range []string{"run.json", filepath.Join("shards", "shard_0000_of_0002.json")} {
		dir := t.TempDir()
		if name != "run.json" {
			WriteJSON(ManifestPath(dir), Manifest{Command: "mei", Shards: 2, Record: "r_%d.json"})
		}
		os.MkdirAll(filepath.Join(dir, "shards"), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o644)
		if _, err := Status(dir, 0, ""); err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), filepath.Base(name)) {
			t.Errorf("%s damaged: %v", name, err)
		}
	}
}
