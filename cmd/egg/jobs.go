package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/shlex"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"egg/jobs"
	"egg/progress"
	"egg/tensor"
)

// jobOptions are the flags that run a command as shards of one run.
type jobOptions struct {
	shard     string // --shard i/N: do only this part
	shards    int    // --shards N: split the run into N parts (with --executor slurm)
	executor  string // local or slurm
	slurmArgs string
	wait      bool
}

// jobFlags are the names of jobOptions' flags: a SLURM task runs the command
// without them (and with --shard).
var jobFlags = map[string]bool{"shard": true, "shards": true, "executor": true, "slurm-args": true, "wait": true}

func (j *jobOptions) addFlags(f *pflag.FlagSet, what string) {
	f.StringVar(&j.shard, "shard", "", "do only part i of N of the "+what+", e.g. 2/8 (the parts share the output folder)")
	f.IntVar(&j.shards, "shards", 0, "with --executor slurm: split the "+what+" into this many parts, one array task each")
	f.StringVar(&j.executor, "executor", "local", "local (this machine) or slurm (an sbatch array of --shards tasks)")
	f.StringVar(&j.slurmArgs, "slurm-args", "", `arguments for sbatch, e.g. "--partition=gpu --gres=gpu:1 --time=2:00:00"`)
	f.BoolVar(&j.wait, "wait", false, "with --executor slurm: follow the array to its end and print the summary")
}

// parse checks the flags and returns the shard this process does.
func (j *jobOptions) parse() (jobs.Shard, error) {
	switch j.executor {
	case "local", "":
		if j.shards != 0 || j.wait || j.slurmArgs != "" {
			return jobs.Shard{}, usagef("--shards, --wait and --slurm-args need --executor slurm (a local run does all the work; --shard i/N does one part)")
		}
	case "slurm":
		if j.shard != "" {
			return jobs.Shard{}, usagef("--shard and --executor slurm: the executor gives each task its shard")
		}
		if j.shards < 1 {
			return jobs.Shard{}, usagef("--executor slurm needs --shards N (N >= 1 array tasks)")
		}
	default:
		return jobs.Shard{}, usagef("--executor %q: want local or slurm", j.executor)
	}
	s, err := jobs.ParseShard(j.shard)
	if err != nil {
		return s, usageError{err}
	}
	return s, nil
}

// taskArgv is the command line a SLURM task runs: this executable and the
// command's path, with every flag given except the job flags.
func taskArgv(cmd *cobra.Command) ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find egg's own executable for the SLURM tasks: %w", err)
	}
	argv := append([]string{exe}, strings.Fields(cmd.CommandPath())[1:]...)
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if !jobFlags[f.Name] {
			argv = append(argv, "--"+f.Name+"="+f.Value.String())
		}
	})
	return argv, nil
}

// shardRun is one process's part of a run kept in a folder.
type shardRun struct {
	dir, command string
	record       string     // an item's record file, a fmt pattern relative to dir
	shard        jobs.Shard // this process's part
	explicit     bool       // --shard was given: the state is kept even for 0/1
	args         []string   // the canonical command line (nil when unknown, as in tests)
	items        []int      // the shard's items
}

// newShardRun describes the part of the run in dir that this process does.
func newShardRun(cmd *cobra.Command, j *jobOptions, s jobs.Shard, dir, command, record string, items []int) shardRun {
	r := shardRun{dir: dir, command: command, record: record, shard: s, explicit: j.shard != "", items: items}
	if cmd != nil {
		if argv, err := taskArgv(cmd); err == nil {
			r.args = argv[1:]
		}
	}
	return r
}

// checkManifest refuses to add to a run of another command line or shard count.
func checkManifest(m jobs.Manifest, dir string, shards int, args []string) error {
	if m.Shards != shards {
		return usagef("%s is a run of %d shards: give --shard i/%d (or --shards %d), or another --out", dir, m.Shards, m.Shards, m.Shards)
	}
	if m.Args != nil && args != nil && !slices.Equal(m.Args, args) {
		return usagef("%s is a run of another command line (%s; now %s): give another --out, or the same flags",
			dir, strings.Join(m.Args, " "), strings.Join(args, " "))
	}
	return nil
}

// runShard runs work, the shard of the run, recording its state; once every shard
// is done, the one that finishes last merges the run (under the run's merge lock,
// so that two shards finishing at once do not both merge). A cancelled context
// makes the error Transient (exit status 75, requeued by SLURM's RequeueExit=75);
// a device failure, or a failed merge, leaves the shard failed.
func runShard(ctx context.Context, r shardRun, work func() error, merge func(all []int) error) error {
	if !r.explicit {
		return work()
	}
	// The first shard to start writes the manifest (when no submitter has).
	if err := jobs.CreateManifest(r.dir, jobs.Manifest{Command: r.command, Args: r.args, Shards: r.shard.Count, Record: r.record}); err != nil {
		return err
	}
	m, err := jobs.ReadManifest(r.dir)
	if err != nil {
		return err
	}
	if err := checkManifest(m, r.dir, r.shard.Count, r.args); err != nil {
		return err
	}
	st, err := jobs.Begin(r.dir, r.shard, r.items)
	if err != nil {
		return err
	}
	if derr := tensor.Catch(func() { err = work() }); derr != nil {
		err = derr
	}
	if err != nil && ctx.Err() != nil {
		err = jobs.Transient{Err: err}
	}
	if eerr := st.End(r.dir, err); eerr != nil && err == nil {
		err = eerr
	}
	if err != nil {
		return err
	}
	rs, err := jobs.Status(r.dir, r.shard.Count, r.record)
	if err != nil || !rs.Complete() {
		return err
	}
	unlock, ok, err := jobs.LockMerge(r.dir)
	if err != nil || !ok {
		return err // !ok: another shard is merging
	}
	defer unlock()
	if err := merge(rs.AllItems()); err != nil {
		err = fmt.Errorf("merging the run: %w", err)
		if ctx.Err() != nil {
			err = jobs.Transient{Err: err}
		}
		st.End(r.dir, err) // the shard is not done until the run is merged
		return err
	}
	return nil
}

// submitSlurm submits the shards of the run in dir that are not done as one
// sbatch array and, with --wait, follows them to the end and merges the run.
func submitSlurm(ctx context.Context, cmd *cobra.Command, j *jobOptions, dir, command, record string, merge func(all []int) error) error {
	sargs, err := shlex.Split(j.slurmArgs)
	if err != nil {
		return usagef("--slurm-args %q: %v", j.slurmArgs, err)
	}
	sl := jobs.Slurm{Args: sargs, Poll: 2 * time.Second}
	if err := sl.Available(); err != nil {
		return err
	}
	argv, err := taskArgv(cmd)
	if err != nil {
		return err
	}
	m, err := jobs.ReadManifest(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		m = jobs.Manifest{Command: command, Args: argv[1:], Shards: j.shards, Record: record}
	case err != nil:
		return err
	default:
		if err := checkManifest(m, dir, j.shards, argv[1:]); err != nil {
			return err
		}
	}
	if q, err := sl.Queued(ctx, m.Jobs); err != nil {
		return err
	} else if len(q) > 0 {
		return fmt.Errorf("%s still has tasks queued or running (%s): wait for them (egg status %s), or scancel them, then submit again",
			dir, strings.Join(q, ", "), dir)
	}
	rs, err := jobs.Status(dir, j.shards, record)
	if err != nil && !errors.Is(err, jobs.ErrNoRun) {
		return err
	}
	missing := rs.Missing()
	if len(rs.Shards) == 0 {
		for i := 0; i < j.shards; i++ {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		fmt.Fprintf(os.Stderr, "egg: %s: every shard is done\n", dir)
		return merge(rs.AllItems())
	}
	// The manifest before the tasks start (they only create one where none is),
	// then again with the job.
	if err := jobs.WriteJSON(jobs.ManifestPath(dir), m); err != nil {
		return err
	}
	job, err := sl.Submit(ctx, dir, argv, j.shards, missing, "egg-"+command)
	if err != nil {
		return err
	}
	if cur, err := jobs.ReadManifest(dir); err == nil {
		m = cur
	}
	m.Jobs = append(m.Jobs, job)
	if err := jobs.WriteJSON(jobs.ManifestPath(dir), m); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "egg: submitted SLURM job %s: shards %s of %d (logs in %s/slurm/); egg status %s shows its progress\n",
		job.ID, job.Array, j.shards, dir, dir)
	if !j.wait {
		return nil
	}
	last := time.Time{}
	err = sl.Wait(ctx, []jobs.SlurmJob{job}, func(q []string) {
		if time.Since(last) < 10*time.Second && len(q) > 0 {
			return
		}
		last = time.Now()
		if rs, err := jobs.Status(dir, j.shards, record); err == nil {
			fmt.Fprintf(os.Stderr, "egg: job %s: %d of %d started items done, %d tasks queued or running\n", job.ID, rs.Done, rs.Items, len(q))
		}
	})
	if err != nil {
		return err
	}
	rs, err = jobs.Status(dir, j.shards, record)
	if err != nil {
		return err
	}
	if !rs.Complete() {
		var bad []string
		for _, s := range rs.Shards {
			if s.State != jobs.Done || s.Done < s.Items {
				bad = append(bad, fmt.Sprintf("%d (%s, %d/%d)", s.Shard.Index, s.State, s.Done, s.Items))
			}
		}
		return fmt.Errorf("job %s ended with shards not done: %s; see %s/slurm/%s_<shard>.log, and run the same command again to submit what is missing",
			job.ID, strings.Join(bad, ", "), dir, job.ID)
	}
	return merge(rs.AllItems())
}

// endBar ends a progress bar: full when the work succeeded, else where it stopped.
func endBar(bar *progress.Bar, err error) {
	if err != nil {
		bar.Exit()
		return
	}
	bar.Finish()
}
