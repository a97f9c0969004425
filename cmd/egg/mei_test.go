package main

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

// TestMEIBadFlags: impossible values of egg mei's flags are usage errors that name
// the flag (checked after the defaults are installed, before any work).
func TestMEIBadFlags(t *testing.T) {
	g, _ := builtinGlobal(t)
	for _, c := range []struct {
		name string
		edit func(o *meiOptions)
		flag string
	}{
		{"duplicate seeds", func(o *meiOptions) { o.seeds = "0,1,0" }, "--seeds"},
		{"negative batch", func(o *meiOptions) { o.batchSize = -1 }, "--batch-size"},
		{"NaN lr", func(o *meiOptions) { o.lr = math.NaN() }, "--lr"},
		{"negative blur", func(o *meiOptions) { o.blur = -1 }, "--blur"},
		{"no iterations", func(o *meiOptions) { o.iterations = 0 }, "--iterations"},
		{"infinite scale", func(o *meiOptions) { o.method, o.scale = "egg", math.Inf(1) }, "--scale"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := &meiOptions{method: "ga", neurons: "0", seeds: "0", iterations: 2, lr: 10, blur: 1, scale: 5,
				gradNorm: "sample", out: t.TempDir(), quiet: true, prior: priorOptions{steps: "2"}}
			c.edit(o)
			err := runMEI(context.Background(), nil, g, o)
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.flag) {
				t.Fatalf("error %v, want a usage error naming %s", err, c.flag)
			}
		})
	}
}
