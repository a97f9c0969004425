package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/mei"
)

// writeRecords writes minimal mei records of method for neurons into run/<method>,
// with activations act(n) per role and secs seconds per MEI (one seed).
func writeRecords(t *testing.T, run, method string, neurons []int, act func(n int) map[string]float32, secs float64) {
	t.Helper()
	dir := filepath.Join(run, method)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range neurons {
		rec := mei.Record{Neuron: n, Method: method, SeedTrain: map[string]float32{"0": 1}, Activations: act(n), Seconds: secs,
			Settings: mei.Settings{Method: method, Seeds: []uint64{0}}, Image: fmt.Sprintf("neuron_%05d.png", n)}
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("neuron_%05d.json", n)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fakeCompareRun(t *testing.T) string {
	run := t.TempDir()
	writeRecords(t, run, "egg", []int{0, 1, 2, 3}, func(n int) map[string]float32 {
		return map[string]float32{"train": float32(n + 1), "cross": 2 * float32(n+1)}
	}, 1)
	writeRecords(t, run, "ga", []int{1, 2, 3, 4}, func(n int) map[string]float32 {
		return map[string]float32{"train": float32(n + 1), "cross": float32(n + 1)}
	}, 4)
	return run
}

func TestCompareJSON(t *testing.T) {
	run := fakeCompareRun(t)
	var out bytes.Buffer
	if err := runCompare(context.Background(), &compareOptions{run: run, json: true, stdout: &out}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Neurons []int `json:"neurons"`
		OnlyEGG []int `json:"only_egg"`
		OnlyGA  []int `json:"only_ga"`
		Roles   []struct {
			Role      string   `json:"role"`
			Neurons   int      `json:"neurons"`
			Slope     float64  `json:"huber_slope"`
			Statistic float64  `json:"wilcoxon_statistic"`
			PValue    *float64 `json:"wilcoxon_p"`
			MedianEGG float64  `json:"median_egg"`
			MedianGA  float64  `json:"median_ga"`
		} `json:"roles"`
		EGGSeconds float64 `json:"egg_seconds_per_mei"`
		GASeconds  float64 `json:"ga_seconds_per_mei"`
		Ratio      float64 `json:"time_ratio"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if !slices.Equal(got.Neurons, []int{1, 2, 3}) || !slices.Equal(got.OnlyEGG, []int{0}) || !slices.Equal(got.OnlyGA, []int{4}) {
		t.Errorf("neurons %v, only egg %v, only ga %v", got.Neurons, got.OnlyEGG, got.OnlyGA)
	}
	if got.EGGSeconds != 1 || got.GASeconds != 4 || got.Ratio != 4 {
		t.Errorf("seconds %v %v ratio %v", got.EGGSeconds, got.GASeconds, got.Ratio)
	}
	if len(got.Roles) != 2 {
		t.Fatalf("roles %+v", got.Roles)
	}
	// train: identical activations, so no nonzero difference: the test is undefined.
	// cross: EGG twice GA on 3 neurons: slope 2, T = 0, exact p = 2/8.
	tr, cr := got.Roles[0], got.Roles[1]
	if tr.Role != "train" || tr.Neurons != 3 || tr.PValue != nil || abs(tr.Slope-1) > 1e-9 || tr.MedianEGG != 3 {
		t.Errorf("train %+v", tr)
	}
	if cr.Role != "cross" || cr.Neurons != 3 || cr.PValue == nil || *cr.PValue != 0.25 || cr.Statistic != 0 || abs(cr.Slope-2) > 1e-9 || cr.MedianEGG != 6 || cr.MedianGA != 3 {
		t.Errorf("cross %+v", cr)
	}
	file, err := os.ReadFile(filepath.Join(run, "compare.json"))
	if err != nil || !bytes.Equal(file, out.Bytes()) {
		t.Errorf("compare.json differs from the printed JSON (%v)", err)
	}
	// The table names every role and the time ratio.
	out.Reset()
	if err := runCompare(context.Background(), &compareOptions{run: run, stdout: &out}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"train", "cross", "huber c", "ga/egg 4"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

func abs(x float64) float64 { return max(x, -x) }

func TestCompareErrors(t *testing.T) {
	cases := []struct {
		name  string
		make  func(t *testing.T) string
		usage bool
		want  string
	}{
		{"no run", func(t *testing.T) string { return "" }, true, "--run is required"},
		{"missing folder", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, false, "cannot read"},
		{"no ga", func(t *testing.T) string {
			run := t.TempDir()
			writeRecords(t, run, "egg", []int{0}, func(int) map[string]float32 { return map[string]float32{"train": 1} }, 1)
			return run
		}, false, "no ga records"},
		{"no shared neurons", func(t *testing.T) string {
			run := t.TempDir()
			act := func(int) map[string]float32 { return map[string]float32{"train": 1} }
			writeRecords(t, run, "egg", []int{0}, act, 1)
			writeRecords(t, run, "ga", []int{1}, act, 1)
			return run
		}, false, "share no neuron"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := runCompare(context.Background(), &compareOptions{run: c.make(t), stdout: &bytes.Buffer{}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %q", err, c.want)
			}
			if _, isUsage := err.(usageError); isUsage != c.usage {
				t.Errorf("usage error %v, want %v", isUsage, c.usage)
			}
		})
	}
}

func TestReportCommand(t *testing.T) {
	run := fakeCompareRun(t)
	out := filepath.Join(t.TempDir(), "r.html")
	cases := []struct {
		name string
		o    reportOptions
		file string
	}{
		{"default", reportOptions{run: run, quiet: true}, filepath.Join(run, "report.html")},
		{"--out", reportOptions{run: run, out: out, quiet: true}, out},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := runReport(context.Background(), &c.o); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte("<!DOCTYPE html>")) || !bytes.Contains(b, []byte("EGG against gradient ascent")) {
				t.Errorf("%s is not the report", c.file)
			}
		})
	}
	err := runReport(context.Background(), &reportOptions{})
	if _, ok := err.(usageError); !ok {
		t.Errorf("no --run: %v, want a usage error", err)
	}
}
