package jobs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Slurm submits and follows a run's array jobs with the cluster's own commands
// (sbatch, squeue), found on PATH.
type Slurm struct {
	// Args are passed to sbatch before the script (partition, GPUs, time, account).
	Args []string
	// Poll is the time between two squeue calls while waiting (0: 5 s).
	Poll time.Duration
}

// Available reports whether sbatch and squeue are on PATH and the controller
// answers.
func (sl Slurm) Available() error {
	for _, c := range []string{"sbatch", "squeue"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("jobs: slurm: %s is not on PATH (run on a SLURM login node, or use --executor local)", c)
		}
	}
	if out, err := exec.Command("squeue", "-h", "-o", "%i").CombinedOutput(); err != nil {
		return fmt.Errorf("jobs: slurm: squeue failed (%v): %s; is this a SLURM login node (SLURM_CONF)?", err, lastLine(string(out)))
	}
	return nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Submit writes the run's task script in dir/slurm (it runs argv, then
// --shard $SLURM_ARRAY_TASK_ID/<shards>) and submits the array of shard indices
// idx. It returns the job ID. Each task's log is dir/slurm/<job>_<index>.log.
func (sl Slurm) Submit(ctx context.Context, dir string, argv []string, shards int, idx []int, name string) (SlurmJob, error) {
	sdir, err := filepath.Abs(filepath.Join(dir, "slurm"))
	if err != nil {
		return SlurmJob{}, fmt.Errorf("jobs: %w", err)
	}
	if err := os.MkdirAll(sdir, 0o755); err != nil {
		return SlurmJob{}, fmt.Errorf("jobs: %w", err)
	}
	var q []string
	for _, a := range argv {
		q = append(q, shellQuote(a))
	}
	cwd, err := os.Getwd()
	if err != nil {
		return SlurmJob{}, fmt.Errorf("jobs: %w", err)
	}
	// The task runs where the run was submitted from (its relative paths), whatever
	// working folder sbatch gives it.
	script := "#!/bin/sh\n# One shard of an egg run: written by egg, submitted with sbatch --array.\n" +
		"cd " + shellQuote(cwd) + " || exit 1\n" +
		"exec " + strings.Join(q, " ") + fmt.Sprintf(" --shard \"$SLURM_ARRAY_TASK_ID/%d\"\n", shards)
	path := filepath.Join(sdir, "task.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return SlurmJob{}, fmt.Errorf("jobs: %w", err)
	}
	array := Ranges(idx)
	args := []string{"--parsable", "--array=" + array, "--job-name=" + name,
		"--output=" + filepath.Join(sdir, "%A_%a.log"), "--requeue"}
	args = append(args, sl.Args...)
	args = append(args, path)
	cmd := exec.CommandContext(ctx, "sbatch", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return SlurmJob{}, fmt.Errorf("jobs: sbatch %s: %v: %s", strings.Join(args, " "), err, lastLine(stderr.String()))
	}
	// --parsable prints "jobid" or "jobid;cluster".
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	if id == "" {
		return SlurmJob{}, fmt.Errorf("jobs: sbatch printed no job ID")
	}
	return SlurmJob{ID: id, Array: array, Submitted: time.Now().UTC()}, nil
}

// Queued returns the lines squeue prints for the given jobs (their tasks still
// pending or running), empty when none is left.
func (sl Slurm) Queued(ctx context.Context, jobs []SlurmJob) ([]string, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	cmd := exec.CommandContext(ctx, "squeue", "-h", "-r", "-j", strings.Join(ids, ","), "-o", "%i %T")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := stderr.String()
		// squeue refuses job IDs it no longer knows: then nothing is queued.
		if strings.Contains(msg, "Invalid job id") {
			return nil, nil
		}
		return nil, fmt.Errorf("jobs: squeue: %v: %s", err, lastLine(msg))
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// Wait polls squeue until none of jobs is queued or running, calling tick after
// every poll, or until ctx ends.
func (sl Slurm) Wait(ctx context.Context, jobs []SlurmJob, tick func(queued []string)) error {
	poll := sl.Poll
	if poll <= 0 {
		poll = 5 * time.Second
	}
	failures := 0
	for {
		q, err := sl.Queued(ctx, jobs)
		if err != nil {
			// A busy controller may time out: try again a few times.
			if failures++; failures > 3 {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(poll):
			}
			continue
		}
		failures = 0
		if tick != nil {
			tick(q)
		}
		if len(q) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// lastLine returns the last non-empty line of a command's output (SLURM's tools end
// with the line that says what failed), so that an error stays one line.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
