package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"egg/jobs"
)

// TestSlurmArray runs egg mei --method ga on the built-in defaults for 12
// neurons in 4 shards as a real SLURM array: one task is cancelled while it runs,
// the run is submitted again (only the missing shard goes), and the run ends with
// exactly 12 records, each equal to what a local run of the same command gives.
// It needs a SLURM cluster whose tasks run on this machine (.ci/run starts a
// one-node one on loopback with ../shared/scripts/slurm-local.sh) and skips,
// saying so, without one.
func TestSlurmArray(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the SLURM array test builds egg and runs 48 gradient-ascent MEIs")
	}
	if err := (jobs.Slurm{}).Available(); err != nil {
		t.Skipf("no SLURM cluster here (%v); .ci/run starts one with ../shared/scripts/slurm-local.sh", err)
	}
	tmp := t.TempDir()
	egg := buildEgg(t, tmp)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, egg, args...)
		cmd.Dir = tmp
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		err := cmd.Run()
		t.Logf("egg %s:\n%s", strings.Join(args, " "), buf.String())
		if (err == nil) != wantOK {
			t.Fatalf("egg %s: %v, want success %v", strings.Join(args, " "), err, wantOK)
		}
		return buf.String()
	}
	work := []string{"mei", "--method", "ga", "--iterations", "300", "--batch-size", "1", "--neurons", "0-11", "--seeds", "0,1"}
	out := filepath.Join(tmp, "slurm")
	dir := filepath.Join(out, "ga")
	slurm := append(append([]string{}, work...), "--out", out, "--shards", "4", "--executor", "slurm")

	// 1. Submit, and cancel shard 1 once it runs.
	msg := run(true, slurm...)
	m := regexp.MustCompile(`submitted SLURM job (\d+): shards 0-3 of 4`).FindStringSubmatch(msg)
	if m == nil {
		t.Fatalf("no submission line in %q", msg)
	}
	job := m[1]
	state := func(i int) jobs.ShardState {
		var st jobs.ShardState
		b, err := os.ReadFile(filepath.Join(dir, "shards", fmt.Sprintf("shard_%04d_of_0004.json", i)))
		if err == nil {
			json.Unmarshal(b, &st)
		}
		return st
	}
	deadline := time.Now().Add(3 * time.Minute)
	for state(1).State != jobs.Running {
		if time.Now().After(deadline) {
			t.Fatal("shard 1 did not start within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := exec.Command("scancel", job+"_1").CombinedOutput(); err != nil {
		t.Fatalf("scancel %s_1: %v %s", job, err, out)
	}
	sl := jobs.Slurm{Poll: time.Second}
	if err := sl.Wait(context.Background(), []jobs.SlurmJob{{ID: job}}, nil); err != nil {
		t.Fatal(err)
	}
	if st := state(1); st.State == jobs.Done {
		t.Fatalf("shard 1 is done although it was cancelled: %+v", st)
	}
	status := run(false, "status", out)
	if !strings.Contains(status, "3 done") || !regexp.MustCompile(`shard 1/4\s+(lost|interrupted)`).MatchString(status) {
		t.Errorf("status after the cancel:\n%s", status)
	}

	// 2. Submit again, waiting: only shard 1 goes.
	msg = run(true, append(slurm, "--wait")...)
	if !regexp.MustCompile(`submitted SLURM job \d+: shards 1 of 4`).MatchString(msg) || !strings.Contains(msg, `"neurons":12`) {
		t.Errorf("resubmission:\n%s", msg)
	}
	run(true, "status", out)
	if st := state(1); st.State != jobs.Done || st.Attempts != 2 {
		t.Errorf("shard 1 after the resubmission: %+v", st)
	}

	// 3. Exactly 12 records, no temporary files, and the manifest's two jobs.
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	records := 0
	for _, n := range names {
		b := filepath.Base(n)
		switch {
		case strings.HasPrefix(b, "."):
			t.Errorf("left over: %s", b)
		case strings.HasPrefix(b, "neuron_") && strings.HasSuffix(b, ".json"):
			records++
		}
	}
	if records != 12 {
		t.Errorf("%d records, want 12", records)
	}
	if mf, err := jobs.ReadManifest(dir); err != nil || len(mf.Jobs) != 2 || mf.Jobs[1].Array != "1" {
		t.Errorf("manifest %+v, %v", mf, err)
	}

	// 4. The same as a local run.
	local := filepath.Join(tmp, "local")
	run(true, append(append([]string{}, work...), "--out", local, "--quiet")...)
	for n := 0; n < 12; n++ {
		name := fmt.Sprintf("neuron_%05d", n)
		a, _ := os.ReadFile(filepath.Join(dir, name+".npy"))
		b, _ := os.ReadFile(filepath.Join(local, "ga", name+".npy"))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s.npy differs between the SLURM run and the local run", name)
		}
		var ra, rb struct {
			Seed        uint64
			Activations map[string]float32
		}
		ja, _ := os.ReadFile(filepath.Join(dir, name+".json"))
		jb, _ := os.ReadFile(filepath.Join(local, "ga", name+".json"))
		json.Unmarshal(ja, &ra)
		json.Unmarshal(jb, &rb)
		if ra.Seed != rb.Seed || fmt.Sprint(ra.Activations) != fmt.Sprint(rb.Activations) {
			t.Errorf("%s: SLURM seed %d activations %v, local seed %d activations %v", name, ra.Seed, ra.Activations, rb.Seed, rb.Activations)
		}
	}
}

// buildEgg builds egg into dir.
func buildEgg(t *testing.T, dir string) string {
	t.Helper()
	egg := filepath.Join(dir, "egg")
	if out, err := exec.Command("go", "build", "-o", egg, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return egg
}

// TestShardInterrupted: a shard stopped by SIGTERM (what SLURM sends a cancelled,
// preempted or timed-out task) exits with status 75, keeps its finished neurons
// and says "interrupted"; running it again resumes it; the run's summary appears
// when its last shard is done.
func TestShardInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds egg and runs gradient-ascent MEIs")
	}
	tmp := t.TempDir()
	egg := buildEgg(t, tmp)
	out := filepath.Join(tmp, "run")
	dir := filepath.Join(out, "ga")
	args := func(shard string) []string {
		return []string{"mei", "--method", "ga", "--iterations", "300", "--batch-size", "1", "--neurons", "0-5", "--seeds", "0",
			"--out", out, "--quiet", "--shard", shard}
	}
	cmd := exec.Command(egg, args("0/2")...)
	var buf bytes.Buffer
	cmd.Stderr = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Stop it once its first neuron is finished.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(filepath.Join(dir, "neuron_00000.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no record after 2 minutes:\n%s", buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != jobs.ExitTransient {
		t.Fatalf("after SIGTERM: %v, want exit status %d\n%s", err, jobs.ExitTransient, buf.String())
	}
	rs, err := jobs.Status(dir, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if s := rs.Shards[0]; s.State != jobs.Interrupted || s.Done < 1 || s.Done == s.Items {
		t.Errorf("shard 0 after SIGTERM: %s, %d/%d (want interrupted, some done)", s.State, s.Done, s.Items)
	}
	if _, err := os.Stat(filepath.Join(dir, "summary.json")); err == nil {
		t.Error("a summary before the run is done")
	}
	for _, sh := range []string{"0/2", "1/2"} {
		if out, err := exec.Command(egg, args(sh)...).CombinedOutput(); err != nil {
			t.Fatalf("shard %s: %v\n%s", sh, err, out)
		}
	}
	rs, _ = jobs.Status(dir, 0, "")
	if !rs.Complete() || rs.Shards[0].Info.Attempts != 2 {
		t.Errorf("after the reruns: complete %v, shard 0 attempt %d", rs.Complete(), rs.Shards[0].Info.Attempts)
	}
	var sum struct{ Neurons int }
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil || json.Unmarshal(b, &sum) != nil || sum.Neurons != 6 {
		t.Errorf("summary %s, %v", b, err)
	}
	// The same folder with another command line, or another shard count, is refused.
	for _, bad := range [][]string{
		append(args("0/2")[:7:7], "--neurons", "0-7", "--seeds", "0", "--out", out, "--quiet", "--shard", "0/2"),
		args("0/3"),
	} {
		cmd := exec.Command(egg, bad...)
		msg, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(msg), "is a run of") {
			t.Errorf("egg %s: %v\n%s", strings.Join(bad, " "), err, msg)
		}
	}
	// --shard 0/1 is a run of one shard: its state is kept and it merges itself.
	one := filepath.Join(tmp, "one")
	if msg, err := exec.Command(egg, "mei", "--method", "ga", "--iterations", "20", "--neurons", "0", "--seeds", "0",
		"--out", one, "--quiet", "--shard", "0/1").CombinedOutput(); err != nil {
		t.Fatalf("--shard 0/1: %v\n%s", err, msg)
	}
	if rs, err := jobs.Status(filepath.Join(one, "ga"), 0, ""); err != nil || !rs.Complete() {
		t.Errorf("--shard 0/1: status %+v, %v", rs, err)
	}
}
