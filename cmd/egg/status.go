package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"egg/jobs"
)

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status RUN",
		Short: "Say what of a sharded run is done, running, failed and missing",
		Long: `status reads a run's folder (the --out of a command run with --shard or
--executor slurm, or its <method> folder) and prints, per shard, its state (done,
running, failed, interrupted; lost: its process on this machine is gone; missing:
never started), how many of its items have a record, its host, SLURM task and
error, and the run's totals. The folder is the source of truth: nothing else is
asked.

Exit status: 0 when the run is complete, 1 when something is not done or the folder
holds no run, 2 on a usage error.`,
		Example: `  egg status meis/`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := findRun(args[0])
			if err != nil {
				return err
			}
			rs, err := jobs.Status(dir, 0, "")
			if err != nil {
				return err
			}
			printStatus(os.Stdout, rs)
			if !rs.Complete() {
				return fmt.Errorf("%s: %d shards not done (shards %s): run the same command again to do what is missing",
					dir, len(rs.Missing()), jobs.Ranges(rs.Missing()))
			}
			return nil
		},
	}
}

// findRun returns dir when it holds a run (run.json or shards/), else its one
// subfolder that does (a command's --out holds <method>/).
func findRun(dir string) (string, error) {
	holds := func(d string) bool {
		for _, p := range []string{jobs.ManifestPath(d), filepath.Join(d, "shards")} {
			if _, err := os.Stat(p); err == nil {
				return true
			}
		}
		return false
	}
	if holds(dir) {
		return dir, nil
	}
	subs, _ := filepath.Glob(filepath.Join(dir, "*"))
	var found []string
	for _, s := range subs {
		if holds(s) {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%s holds no sharded run (no run.json or shards/ in it or its subfolders)", dir)
	}
	return "", usagef("%s holds several runs (%s): name one", dir, strings.Join(found, ", "))
}

func printStatus(w io.Writer, rs jobs.RunStatus) {
	m := rs.Manifest
	if m.Command != "" {
		fmt.Fprintf(w, "run %s: egg %s, %d shards", rs.Dir, m.Command, m.Shards)
		if n := len(m.Jobs); n > 0 {
			fmt.Fprintf(w, ", SLURM job %s", m.Jobs[n-1].ID)
			if n > 1 {
				fmt.Fprintf(w, " (%d submissions)", n)
			}
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "run %s: %d shards\n", rs.Dir, len(rs.Shards))
	}
	count := map[string]int{}
	for _, s := range rs.Shards {
		state := s.State
		if state == jobs.Done && s.Done < s.Items {
			state = "incomplete" // records deleted since
		}
		count[state]++
		line := fmt.Sprintf("  shard %s  %-11s", s.Shard, state)
		if s.State != jobs.Missing {
			line += fmt.Sprintf("  %d/%d items", s.Done, s.Items)
			if s.Info.Host != "" {
				line += "  on " + s.Info.Host
			}
			if s.Info.Job != "" {
				line += "  task " + s.Info.Job
			}
			if s.Info.Attempts > 1 {
				line += fmt.Sprintf("  attempt %d", s.Info.Attempts)
			}
			if s.Info.Error != "" {
				line += "  error: " + s.Info.Error
			}
		}
		fmt.Fprintln(w, line)
	}
	var parts []string
	for _, st := range []string{jobs.Done, jobs.Running, jobs.Failed, jobs.Interrupted, jobs.Lost, "incomplete", jobs.Missing} {
		if count[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[st], st))
		}
	}
	fmt.Fprintf(w, "%s; %d of %d started items done\n", strings.Join(parts, ", "), rs.Done, rs.Items)
}
