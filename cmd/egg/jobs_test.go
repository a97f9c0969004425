package main

import (
	"errors"
	"testing"

	"egg/jobs"
)

// TestJobFlags: the flag combinations a run takes, and the usage errors of the
// others.
func TestJobFlags(t *testing.T) {
	for _, c := range []struct {
		name  string
		o     jobOptions
		shard jobs.Shard
		usage bool
	}{
		{"local, whole", jobOptions{executor: "local"}, jobs.Whole, false},
		{"unset executor", jobOptions{}, jobs.Whole, false},
		{"local shard", jobOptions{executor: "local", shard: "2/8"}, jobs.Shard{Index: 2, Count: 8}, false},
		{"slurm", jobOptions{executor: "slurm", shards: 4, wait: true, slurmArgs: "--partition=gpu"}, jobs.Whole, false},
		{"slurm without --shards", jobOptions{executor: "slurm"}, jobs.Shard{}, true},
		{"slurm with --shard", jobOptions{executor: "slurm", shards: 4, shard: "1/4"}, jobs.Shard{}, true},
		{"--shards locally", jobOptions{executor: "local", shards: 4}, jobs.Shard{}, true},
		{"--wait locally", jobOptions{executor: "local", wait: true}, jobs.Shard{}, true},
		{"bad shard", jobOptions{executor: "local", shard: "4/4"}, jobs.Shard{}, true},
		{"unknown executor", jobOptions{executor: "pbs"}, jobs.Shard{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := c.o.parse()
			var ue usageError
			if c.usage != errors.As(err, &ue) || (!c.usage && err != nil) {
				t.Fatalf("error %v, want usage error %v", err, c.usage)
			}
			if !c.usage && s != c.shard {
				t.Errorf("shard %v, want %v", s, c.shard)
			}
		})
	}
}
