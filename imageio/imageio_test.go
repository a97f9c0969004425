package imageio

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImages(t *testing.T) {
	cases := []struct {
		c    int
		want string
	}{{1, "*image.Gray"}, {3, "*image.NRGBA"}}
	for _, c := range cases {
		data := make([]float32, c.c*2*3)
		for i := range data {
			data[i] = float32(i)/float32(len(data))*2 - 1
		}
		img, err := Image(data, c.c, 2, 3, Diffusion)
		if err != nil {
			t.Fatal(err)
		}
		b, err := EncodePNG(img)
		if err != nil {
			t.Fatal(err)
		}
		back, err := png.Decode(bytes.NewReader(b))
		if err != nil || back.Bounds() != image.Rect(0, 0, 3, 2) {
			t.Fatalf("%d channels: %v %v", c.c, err, back.Bounds())
		}
	}
	if _, err := Image(make([]float32, 8), 2, 2, 2, Diffusion); err == nil {
		t.Fatal("2 channels accepted")
	}
	g, err := Grid(make([]float32, 5*3*4*4), 5, 3, 4, 4, 0, 1, Diffusion)
	if err != nil || g.Bounds().Dx() != 3*4+4 {
		t.Fatalf("grid %v %v", err, g.Bounds())
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	if err := WriteFileAtomic(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("content %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	err := WriteFileAtomic(filepath.Join(dir, "missing", "b.txt"), []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "check that the folder exists") {
		t.Fatalf("error %v", err)
	}
}
