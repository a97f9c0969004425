package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"egg/train"
)

// trainTiny trains a tiny model on data and returns its file.
func trainTiny(t *testing.T, data string, seed uint64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "m.safetensors")
	o := tinyTrain(data, out, train.DataDrivenGaussian, 2)
	o.train.Seed = seed
	if err := runTrain(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	return out
}

func evaluateJSON(t *testing.T, data string, models ...string) map[string]any {
	t.Helper()
	var out bytes.Buffer
	o := &evaluateOptions{models: models, data: data, tier: "test", json: true, batchSize: 7, stdout: &out, stderr: &bytes.Buffer{}}
	if err := runEvaluate(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("--json printed %d lines", n)
	}
	var r map[string]any
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return r
}

func TestEvaluateCommand(t *testing.T) {
	data := writeTinyData(t, 5)
	m1, m2 := trainTiny(t, data, 1), trainTiny(t, data, 2)
	r := evaluateJSON(t, data, m1)
	for _, k := range []string{"single_trial_correlation", "average_correlation", "oracle_correlation"} {
		v, ok := r[k].(float64)
		if !ok || v < -1 || v > 1 {
			t.Errorf("%s = %v", k, r[k])
		}
		pn := r["per_neuron"].(map[string]any)[k].([]any)
		if len(pn) != 3 {
			t.Errorf("per_neuron %s has %d values, want 3", k, len(pn))
		}
		var sum float64
		for _, x := range pn {
			sum += x.(float64)
		}
		if d := sum/3 - v; d > 1e-12 || d < -1e-12 {
			t.Errorf("%s %v is not the mean of the per-neuron values %v", k, v, pn)
		}
	}
	if r["trials"] != 30.0 || r["images"] != 10.0 || r["neurons"] != 3.0 || r["tier"] != "test" {
		t.Errorf("report %v", r)
	}
	// An ensemble of a model with itself predicts what the model does.
	twice := evaluateJSON(t, data, m1, m1)
	if twice["single_trial_correlation"] != r["single_trial_correlation"] {
		t.Errorf("ensemble of a model with itself: %v, model: %v", twice["single_trial_correlation"], r["single_trial_correlation"])
	}
	// An ensemble of two models is neither of them.
	both := evaluateJSON(t, data, m1, m2)
	if both["single_trial_correlation"] == r["single_trial_correlation"] {
		t.Error("the ensemble of two different models scores like the first")
	}
	// Text output with the per-neuron table.
	var out bytes.Buffer
	o := &evaluateOptions{models: []string{m1, m2}, data: data, tier: "test", perNeuron: true, batchSize: 64, stdout: &out, stderr: &bytes.Buffer{}}
	if err := runEvaluate(context.Background(), testGlobal, o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ensemble of 2 models", "30 trials of 10 images, 3 neurons", "oracle correlation", "13"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report does not say %q:\n%s", want, out.String())
		}
	}
}

func TestEvaluateCommandErrors(t *testing.T) {
	data := writeTinyData(t, 6)
	m := trainTiny(t, data, 1)
	other := writeTinyData(t, 7) // another data set: another pixel normalisation
	mOther := trainTiny(t, other, 1)
	cases := []struct {
		name  string
		o     evaluateOptions
		usage bool
		want  string
	}{
		{"no model", evaluateOptions{data: data, tier: "test", batchSize: 1}, true, "--model is required"},
		{"no data", evaluateOptions{models: []string{m}, tier: "test", batchSize: 1}, true, "--data is required"},
		{"bad tier", evaluateOptions{models: []string{m}, data: data, tier: "final", batchSize: 1}, false, "no final trials"},
		{"mixed ensemble", evaluateOptions{models: []string{m, mOther}, data: data, tier: "test", batchSize: 1}, false, "same data set"},
		{"missing model", evaluateOptions{models: []string{"/nonexistent.safetensors"}, data: data, tier: "test", batchSize: 1}, false, "nonexistent"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.stdout, c.o.stderr = &bytes.Buffer{}, &bytes.Buffer{}
			err := runEvaluate(context.Background(), testGlobal, &c.o)
			var ue usageError
			if err == nil || errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q (usage %v)", err, c.want, c.usage)
			}
		})
	}
}
