package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/shlex"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"egg/jobs"
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

// runShard runs work, the shard s of the run in dir over items (already the
// shard's block), recording the shard's state; a run of several shards is merged
// by merge once the last one is done. A cancelled context makes the error
// Transient (exit status 75, requeued by SLURM's RequeueExit=75).
func runShard(ctx context.Context, dir, command string, s jobs.Shard, items []int, record string, work func() error, merge func(all []int) error) error {
	if s.IsWhole() {
		return work()
	}
	// The first shard to start writes the manifest (a submitter has already).
	if _, err := jobs.ReadManifest(dir); errors.Is(err, os.ErrNotExist) {
		var args []string
		for i := 1; i < len(os.Args); i++ {
			switch a := os.Args[i]; {
			case a == "--shard":
				i++
			case strings.HasPrefix(a, "--shard="):
			default:
				args = append(args, a)
			}
		}
		m := jobs.Manifest{Command: command, Args: args, Shards: s.Count, Record: record}
		if err := jobs.WriteJSON(jobs.ManifestPath(dir), m); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	st, err := jobs.Begin(dir, s, items)
	if err != nil {
		return err
	}
	err = work()
	if err != nil && ctx.Err() != nil {
		err = jobs.Transient{Err: err}
	}
	if eerr := st.End(dir, err); eerr != nil && err == nil {
		err = eerr
	}
	if err != nil {
		return err
	}
	rs, err := jobs.Status(dir, s.Count, record)
	if err != nil {
		return err
	}
	if rs.Complete() {
		return merge(rs.AllItems())
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
	case m.Shards != j.shards:
		return usagef("%s is a run of %d shards: submit it again with --shards %d (or use another --out)", dir, m.Shards, m.Shards)
	}
	if q, err := sl.Queued(ctx, m.Jobs); err != nil {
		return err
	} else if len(q) > 0 {
		return fmt.Errorf("%s still has tasks queued or running (%s): wait for them (egg status %s), or scancel them, then submit again",
			dir, strings.Join(q, ", "), dir)
	}
	rs, err := jobs.Status(dir, j.shards, record)
	if err != nil && !strings.Contains(err.Error(), "holds no run") {
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
	job, err := sl.Submit(ctx, dir, argv, j.shards, missing, "egg-"+command)
	if err != nil {
		return err
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
