package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"egg/imageio"
)

// The states of a shard.
const (
	Running     = "running"
	Done        = "done"
	Failed      = "failed"
	Interrupted = "interrupted" // stopped by a signal (cancelled, preempted, out of time)
	Lost        = "lost"        // its file says running, but its process on this host is gone (killed)
	Missing     = "missing"     // no state file: never started
)

// ErrNoRun says that a folder holds no run yet.
var ErrNoRun = errors.New("holds no run")

// ExitTransient is the exit status of a task that stopped for a reason that may
// pass (a signal): EX_TEMPFAIL, which a cluster with RequeueExit=75 requeues.
const ExitTransient = 75

// Transient marks an error after which running the same shard again may succeed.
type Transient struct{ Err error }

func (t Transient) Error() string { return t.Err.Error() }
func (t Transient) Unwrap() error { return t.Err }

// ShardState is a shard's state file.
type ShardState struct {
	Shard    Shard     `json:"-"`
	Index    int       `json:"index"`
	Count    int       `json:"count"`
	State    string    `json:"state"`
	Items    []int     `json:"items"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Job      string    `json:"slurm_job,omitempty"` // SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID, or SLURM_JOB_ID
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	Error    string    `json:"error,omitempty"`
	Attempts int       `json:"attempts"` // starts of this shard, this one included
}

// Manifest is a run's run.json.
type Manifest struct {
	Command string     `json:"command"` // e.g. "mei"
	Args    []string   `json:"args"`    // the command line, without executor and shard flags
	Shards  int        `json:"shards"`
	Record  string     `json:"record"` // the record file of an item, a fmt pattern relative to the run folder, e.g. "neuron_%05d.json"
	Jobs    []SlurmJob `json:"slurm_jobs,omitempty"`
}

// SlurmJob is one sbatch submission of a run.
type SlurmJob struct {
	ID        string    `json:"id"`
	Array     string    `json:"array"` // the shard indices submitted, e.g. "0,2-3"
	Submitted time.Time `json:"submitted"`
}

func statePath(dir string, s Shard) string {
	return filepath.Join(dir, "shards", fmt.Sprintf("shard_%04d_of_%04d.json", s.Index, s.Count))
}

// ManifestPath is the manifest's path in a run folder.
func ManifestPath(dir string) string { return filepath.Join(dir, "run.json") }

// WriteJSON writes v as indented JSON to path atomically, making its folder.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("jobs: %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if err := imageio.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	return nil
}

// CreateManifest writes m as dir's manifest unless there is one already (then it
// does nothing): the first of several shards that start at once creates it, and
// none replaces a submitter's.
func CreateManifest(dir string, m Manifest) error {
	path := ManifestPath(dir)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + fmt.Sprintf(".%d.new", os.Getpid())
	if err := WriteJSON(tmp, m); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("jobs: %w", err)
	}
	return nil
}

// ReadManifest reads a run folder's manifest.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(ManifestPath(dir))
	if err != nil {
		return m, fmt.Errorf("jobs: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("jobs: %s is damaged: %w", ManifestPath(dir), err)
	}
	return m, nil
}

// Begin records that shard s of the run in dir starts on items, and returns its
// state for End. A shard that a previous attempt left running, failed or
// interrupted is taken over (its finished items are kept by the caller).
func Begin(dir string, s Shard, items []int) (*ShardState, error) {
	st := &ShardState{Shard: s, Index: s.Index, Count: s.Count, State: Running, Items: items,
		PID: os.Getpid(), Started: time.Now().UTC(), Attempts: 1}
	st.Host, _ = os.Hostname()
	if old, err := readState(statePath(dir, s)); err == nil {
		st.Attempts = old.Attempts + 1
	}
	if j := os.Getenv("SLURM_ARRAY_JOB_ID"); j != "" {
		st.Job = j + "_" + os.Getenv("SLURM_ARRAY_TASK_ID")
	} else if j := os.Getenv("SLURM_JOB_ID"); j != "" {
		st.Job = j
	}
	return st, WriteJSON(statePath(dir, s), st)
}

// End records how the shard ended: done (err nil), interrupted (a Transient err)
// or failed.
func (st *ShardState) End(dir string, err error) error {
	st.Ended = time.Now().UTC()
	var tr Transient
	switch {
	case err == nil:
		st.State, st.Error = Done, ""
	case errors.As(err, &tr):
		st.State, st.Error = Interrupted, err.Error()
	default:
		st.State, st.Error = Failed, err.Error()
	}
	return WriteJSON(statePath(dir, st.Shard), st)
}

func readState(path string) (ShardState, error) {
	var st ShardState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("jobs: %s is damaged: %w", path, err)
	}
	st.Shard = Shard{Index: st.Index, Count: st.Count}
	return st, nil
}

// ShardStatus is what Status says of one shard.
type ShardStatus struct {
	Shard Shard
	State string // Done, Running, Failed, Interrupted or Missing
	Items int    // items of the shard (0 when Missing: not known before it starts)
	Done  int    // of them, with a record
	Info  ShardState
}

// RunStatus is what Status says of a run.
type RunStatus struct {
	Dir      string
	Manifest Manifest
	Shards   []ShardStatus
	Items    int // items of the shards that have started
	Done     int // records among them
}

// Complete reports whether every shard is done with every record.
func (r RunStatus) Complete() bool {
	for _, s := range r.Shards {
		if s.State != Done || s.Done < s.Items {
			return false
		}
	}
	return len(r.Shards) > 0
}

// Missing returns the indices of the shards that are not complete.
func (r RunStatus) Missing() []int {
	var idx []int
	for _, s := range r.Shards {
		if s.State != Done || s.Done < s.Items {
			idx = append(idx, s.Shard.Index)
		}
	}
	return idx
}

// AllItems returns the items of every started shard, sorted.
func (r RunStatus) AllItems() []int {
	var all []int
	for _, s := range r.Shards {
		all = append(all, s.Info.Items...)
	}
	sort.Ints(all)
	return all
}

// Status reads the run in dir: its manifest (when there is one; else shards is
// the count, or the state files' names give it), each shard's state, and which of
// its items have a record (the manifest's pattern, else record). A shard whose
// state says done but that lacks records (deleted since) counts as not done.
func Status(dir string, shards int, record string) (RunStatus, error) {
	rs := RunStatus{Dir: dir}
	if m, err := ReadManifest(dir); err == nil {
		rs.Manifest = m
		shards, record = m.Shards, m.Record
	} else if !errors.Is(err, os.ErrNotExist) {
		return rs, err
	}
	if shards < 1 {
		// Without a manifest, the count is in the state files' names.
		names, _ := filepath.Glob(filepath.Join(dir, "shards", "shard_*_of_*.json"))
		for _, n := range names {
			var i, c int
			if _, err := fmt.Sscanf(filepath.Base(n), "shard_%04d_of_%04d.json", &i, &c); err == nil {
				shards = max(shards, c)
			}
		}
	}
	if shards < 1 {
		return rs, fmt.Errorf("jobs: %s %w (no run.json and no shards/ states)", dir, ErrNoRun)
	}
	for i := 0; i < shards; i++ {
		s := Shard{Index: i, Count: shards}
		ss := ShardStatus{Shard: s, State: Missing}
		st, err := readState(statePath(dir, s))
		if err == nil {
			ss.State, ss.Info, ss.Items = st.State, st, len(st.Items)
			if st.State == Running && !alive(st.Host, st.PID) {
				ss.State = Lost
			}
			for _, it := range st.Items {
				if record == "" {
					continue
				}
				if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf(record, it))); err == nil {
					ss.Done++
				}
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return rs, err
		}
		rs.Items += ss.Items
		rs.Done += ss.Done
		rs.Shards = append(rs.Shards, ss)
	}
	return rs, nil
}

// alive reports whether process pid may be running: false only when host is this
// machine and no such process exists.
func alive(host string, pid int) bool {
	if h, _ := os.Hostname(); host != h || pid <= 0 {
		return true
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, os.ErrPermission)
}

// Ranges writes sorted indices as SLURM's array syntax, e.g. "0,2-4".
func Ranges(idx []int) string {
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", idx[i], idx[j]))
		} else {
			parts = append(parts, fmt.Sprint(idx[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
