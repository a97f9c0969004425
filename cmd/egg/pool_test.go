package main

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"egg/pool"
)

// writeTestPhotos writes n images of w x h pixels (random overlapping rectangles of
// random gray levels: edges and corners at many scales) to dir, alternately as PNG
// and JPEG, some in a subfolder.
func writeTestPhotos(t *testing.T, dir string, n, w, h int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	for k := 0; k < n; k++ {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for r := 0; r < 60; r++ {
			x0, y0 := rng.IntN(w), rng.IntN(h)
			x1, y1 := x0+2+rng.IntN(w/3), y0+2+rng.IntN(h/3)
			c := color.RGBA{uint8(rng.IntN(256)), uint8(rng.IntN(256)), uint8(rng.IntN(256)), 255}
			for y := y0; y < min(y1, h); y++ {
				for x := x0; x < min(x1, w); x++ {
					img.Set(x, y, c)
				}
			}
		}
		name := filepath.Join(dir, "photo"+string(rune('a'+k))+".png")
		if k%3 == 2 {
			name = filepath.Join(dir, "sub", "photo"+string(rune('a'+k))+".jpg")
		}
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		var err error
		if strings.HasSuffix(name, ".png") {
			err = png.Encode(&b, img)
		} else {
			err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPoolCommand(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "images")
	writeTestPhotos(t, dir, 6, 160, 128)
	if err := os.WriteFile(filepath.Join(root, "manifest.tsv"), []byte("package\tfile\tlicence\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "pool.npz")
	var log bytes.Buffer
	o := &poolOptions{images: dir, out: out, quiet: true, stderr: &log,
		pool: pool.Options{Size: 32, Scales: []float64{1, 0.5}, MinContrast: 0.05, Flips: true, ValFraction: 0.3, Workers: 2}}
	if err := runPool(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"read 6 images", "cut 144 patches of 32x32 at scales [1 0.5]", "wrote " + out, "mirror images included"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, log.String())
		}
	}
	p, err := pool.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size != 32 || p.Len() < 100 || len(p.Files) != 6 || len(p.Manifest) != 1 || len(p.Indices(pool.Validation)) == 0 {
		t.Errorf("pool of %d patches of %d, files %v, manifest %q", p.Len(), p.Size, p.Files, p.Manifest)
	}
}

func TestPoolCommandErrors(t *testing.T) {
	dir := t.TempDir()
	writeTestPhotos(t, dir, 2, 64, 64)
	out := filepath.Join(t.TempDir(), "pool.npz")
	cases := []struct {
		name  string
		o     poolOptions
		usage bool
		want  string
	}{
		{"no images", poolOptions{out: out, pool: pool.Options{Size: 16}}, true, "--images"},
		{"no out", poolOptions{images: dir, pool: pool.Options{Size: 16}}, true, "--out"},
		{"bad size", poolOptions{images: dir, out: out, pool: pool.Options{Size: 0}}, true, "patch size"},
		{"bad scale", poolOptions{images: dir, out: out, pool: pool.Options{Size: 16, Scales: []float64{1.5}}}, true, "scale"},
		{"bad scales flag", poolOptions{images: dir, out: out, scales: "1,half", pool: pool.Options{Size: 16}}, true, "--scales"},
		{"scale 0", poolOptions{images: dir, out: out, scales: "1,0", pool: pool.Options{Size: 16}}, true, "scale 0"},
		{"bad split", poolOptions{images: dir, out: out, pool: pool.Options{Size: 16, SplitBy: "pixel"}}, true, "split"},
		{"missing folder", poolOptions{images: filepath.Join(dir, "nope"), out: out, pool: pool.Options{Size: 16}}, false, "give a folder"},
		{"unwritable out", poolOptions{images: dir, out: filepath.Join(dir, "no", "pool.npz"), pool: pool.Options{Size: 16}}, false, "cannot write"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.quiet, c.o.stderr = true, &bytes.Buffer{}
			err := runPool(context.Background(), &c.o)
			var ue usageError
			if err == nil || errors.As(err, &ue) != c.usage || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v (usage error: %v); want one about %q, usage error %v", err, errors.As(err, &ue), c.want, c.usage)
			}
		})
	}
}
