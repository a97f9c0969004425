// Package jobs runs long egg commands as parts of one run, on this machine or as a
// SLURM array, with the output folder as the only source of truth.
//
// A run's work is a list of items (neurons, images, ensemble members) split into
// N shards: shard i of N does a contiguous block of the items (Shard.Of). Every
// item's result is one record file, written atomically, so a finished item is
// never redone and two shards never write the same file. Each shard also keeps a
// state file, shards/shard_IIII_of_NNNN.json (running, done, failed or
// interrupted, with its items, host, SLURM job and times), and the run keeps a
// manifest, run.json (the command, the shard count, the record pattern and the
// SLURM jobs submitted). Status reads the folder and says, per shard, what is
// done, running, failed and missing; any read of the folder sees one consistent
// run.
//
// The SLURM executor writes a task script that runs the same egg command with
// --shard $SLURM_ARRAY_TASK_ID/N, and submits it with sbatch --parsable
// --array=<the shards not done>: SLURM does the scheduling, egg only shards and
// records. A task interrupted by a signal exits with ExitTransient (75), which
// a cluster's RequeueExit=75 requeues; submitting a run again submits only its
// missing shards.
package jobs
