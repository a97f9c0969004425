package pool

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"egg/npy"
)

// writeImage writes img to dir/name as PNG or JPEG (by extension).
func writeImage(t *testing.T, dir, name string, img image.Image) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
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
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// noise returns a w x h RGB image of smooth random blobs (seeded).
func noise(w, h int, seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 0))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	fx, fy, ph := 0.05+0.2*rng.Float64(), 0.05+0.2*rng.Float64(), 6*rng.Float64()
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 128 + 60*math.Sin(fx*float64(x)+ph)*math.Cos(fy*float64(y)) + 20*rng.NormFloat64()
			c := uint8(math.Max(0, math.Min(255, v)))
			img.Set(x, y, color.RGBA{c, c, 255 - c, 255})
		}
	}
	return img
}

// flat returns a w x h gray image of one value.
func flat(w, h int, v uint8) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = v
	}
	return img
}

// testFolder writes a folder of five images (PNG and JPEG, RGB and gray, one in a
// subfolder, one flat), a hidden image, a text file and a manifest beside it.
func testFolder(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "images")
	writeImage(t, dir, "a.png", noise(128, 96, 1))
	writeImage(t, dir, "b.jpg", noise(100, 70, 2))
	writeImage(t, dir, "sub/c.jpeg", noise(64, 64, 3))
	writeImage(t, dir, "sub/d.png", noise(80, 120, 4))
	writeImage(t, dir, "flat.png", flat(64, 64, 90))
	writeImage(t, dir, ".hidden.png", noise(64, 64, 5))
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, ManifestName), []byte("package\tfile\tlicence\nx\ta.png\tCC0-1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBuildCounts(t *testing.T) {
	dir := testFolder(t)
	cases := []struct {
		name              string
		o                 Options
		candidates, kept  int
		lowContrast, val  int
		checkValByFile    bool
		wantMirroredPairs bool
	}{
		// scale 1 with 32-pixel patches: a 4x3=12, b 3x2=6, c 2x2=4, d 2x3=6, flat 2x2=4.
		{name: "scale 1", o: Options{Size: 32, MinContrast: 0.02}, candidates: 32, kept: 28, lowContrast: 4},
		// scale 0.5 adds a 2x1=2 (64x48), b 1x1 (50x35), c 1x1, d 1x1 (40x60), flat 1x1.
		{name: "two scales", o: Options{Size: 32, Scales: []float64{1, 0.5}, MinContrast: 0.02}, candidates: 38, kept: 33, lowContrast: 5},
		{name: "stride", o: Options{Size: 32, Stride: 16, MinContrast: 0.02}, candidates: 7*5 + 5*3 + 3*3 + 4*6 + 3*3, kept: 7*5 + 5*3 + 3*3 + 4*6, lowContrast: 9},
		{name: "no threshold", o: Options{Size: 32}, candidates: 32, kept: 32},
		{name: "flips", o: Options{Size: 32, MinContrast: 0.02, Flips: true}, candidates: 32, kept: 56, lowContrast: 4, wantMirroredPairs: true},
		{name: "per image", o: Options{Size: 32, MinContrast: 0.02, PerImage: 5}, candidates: 32, kept: 5 + 5 + 4 + 5, lowContrast: 4},
		{name: "max", o: Options{Size: 32, MinContrast: 0.02, Max: 10}, candidates: 32, kept: 10, lowContrast: 4},
		{name: "max with flips", o: Options{Size: 32, MinContrast: 0.02, Max: 11, Flips: true}, candidates: 32, kept: 10, lowContrast: 4, wantMirroredPairs: true},
		{name: "split by image", o: Options{Size: 32, MinContrast: 0.02, ValFraction: 0.4}, candidates: 32, kept: 28, lowContrast: 4, checkValByFile: true},
		{name: "split by patch", o: Options{Size: 32, MinContrast: 0.02, ValFraction: 0.4, SplitBy: ByPatch, Flips: true}, candidates: 32, kept: 56, lowContrast: 4, wantMirroredPairs: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, st, err := Build(context.Background(), dir, c.o, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Files != 5 || st.Failed != 0 || st.Candidates != c.candidates || st.LowContrast != c.lowContrast || st.Kept != c.kept || p.Len() != c.kept {
				t.Errorf("stats %+v, %d patches; want 5 files, %d candidates, %d low contrast, %d kept", st, p.Len(), c.candidates, c.lowContrast, c.kept)
			}
			if want := []string{"a.png", "b.jpg", "flat.png", "sub/c.jpeg", "sub/d.png"}; !slices.Equal(p.Files, want) {
				t.Errorf("files %v, want %v", p.Files, want)
			}
			if len(p.Manifest) != 2 || !strings.HasPrefix(p.Manifest[0], "package\t") {
				t.Errorf("manifest %q", p.Manifest)
			}
			tierOf := map[string]string{}
			for i := 0; i < p.Len(); i++ {
				s, err := ParseSource(p.Sources[i])
				if err != nil {
					t.Fatal(err)
				}
				if s.File == "flat.png" && c.o.MinContrast > 0 {
					t.Errorf("patch %d (%s) comes from the flat image", i, p.Sources[i])
				}
				if Contrast(p.Patch(i)) < c.o.MinContrast {
					t.Errorf("patch %d has contrast %g", i, Contrast(p.Patch(i)))
				}
				if c.wantMirroredPairs {
					if s.Flip != (i%2 == 1) {
						t.Fatalf("patch %d: source %s; want originals and mirror images alternating", i, p.Sources[i])
					}
					if s.Flip && (!slices.Equal(p.Patch(i), mirror(p.Patch(i-1), p.Size)) || p.Tiers[i] != p.Tiers[i-1]) {
						t.Errorf("patch %d is not the mirror image of patch %d in its tier", i, i-1)
					}
				} else if s.Flip {
					t.Errorf("patch %d is mirrored without Flips", i)
				}
				if c.checkValByFile {
					if tr, ok := tierOf[s.File]; ok && tr != p.Tiers[i] {
						t.Errorf("%s has patches in two tiers", s.File)
					}
					tierOf[s.File] = p.Tiers[i]
				}
			}
			val := len(p.Indices(Validation))
			if st.Validation != val || val+len(p.Indices(Train)) != p.Len() {
				t.Errorf("%d validation, %d train patches of %d (stats %d)", val, len(p.Indices(Train)), p.Len(), st.Validation)
			}
			if (c.o.ValFraction > 0) != (val > 0) {
				t.Errorf("%d validation patches with fraction %g", val, c.o.ValFraction)
			}
			if c.checkValByFile {
				nval := 0
				for _, tr := range tierOf {
					if tr == Validation {
						nval++
					}
				}
				// round(0.4 * 5) = 2 files, one of which may be the flat image.
				if nval < 1 || nval > 2 {
					t.Errorf("validation files: %v", tierOf)
				}
			}
		})
	}
}

// TestMaxIsSubset checks that Max keeps a subset of the full pool, in order.
func TestMaxIsSubset(t *testing.T) {
	dir := testFolder(t)
	o := Options{Size: 16, MinContrast: 0.02, Flips: true, Seed: 3}
	full, _, err := Build(context.Background(), dir, o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Max = 40
	sub, st, err := Build(context.Background(), dir, o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Len() != 40 || st.OverMax != full.Len()-40 {
		t.Fatalf("%d patches, %d over max; want 40 of %d", sub.Len(), st.OverMax, full.Len())
	}
	pos := map[string]int{}
	for i, s := range full.Sources {
		pos[s] = i
	}
	last := -1
	for i, s := range sub.Sources {
		j, ok := pos[s]
		if !ok || j <= last || !slices.Equal(sub.Patch(i), full.Patch(j)) {
			t.Fatalf("patch %d (%s) is not the next patch of the full pool", i, s)
		}
		last = j
	}
}

// TestDeterministic checks that the seed alone decides the pool, whatever the
// number of workers, and that another seed changes it.
func TestDeterministic(t *testing.T) {
	dir := testFolder(t)
	write := func(o Options) []byte {
		p, _, err := Build(context.Background(), dir, o, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "pool.npz")
		if err := p.WriteNPZ(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	o := Options{Size: 16, Scales: []float64{1, 0.7}, MinContrast: 0.03, Flips: true, ValFraction: 0.3, SplitBy: ByPatch, PerImage: 7, Max: 20, Seed: 9, Workers: 1}
	a := write(o)
	o.Workers = 4
	if b := write(o); !bytes.Equal(a, b) {
		t.Error("1 and 4 workers give different pools")
	}
	o.Seed = 10
	if b := write(o); bytes.Equal(a, b) {
		t.Error("seeds 9 and 10 give the same pool")
	}
}

func TestRoundTrip(t *testing.T) {
	dir := testFolder(t)
	p, _, err := Build(context.Background(), dir, Options{Size: 24, Scales: []float64{1, 0.5}, MinContrast: 0.02, Flips: true, ValFraction: 0.25}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pool.npz")
	if err := p.WriteNPZ(path); err != nil {
		t.Fatal(err)
	}
	q, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if q.Size != 24 || !bytes.Equal(q.Images, p.Images) || !slices.Equal(q.Tiers, p.Tiers) || !slices.Equal(q.Sources, p.Sources) ||
		!slices.Equal(q.Files, p.Files) || !slices.Equal(q.Manifest, p.Manifest) || q.Settings != p.Settings {
		t.Error("the pool read back differs")
	}
	if !strings.Contains(q.Settings, `"size":24`) || !strings.Contains(q.Settings, `"flips":true`) {
		t.Errorf("settings %s", q.Settings)
	}
	// The archive is an ordinary .npz.
	arrs, err := npy.ReadNPZ(path)
	if err != nil {
		t.Fatal(err)
	}
	img := arrs["images"]
	if img.DType != "|u1" || !slices.Equal(img.Shape, []int{p.Len(), 1, 24, 24}) || int(img.I64[5]) != int(p.Images[5]) {
		t.Errorf("images array %s %v", img.DType, img.Shape)
	}
	for _, name := range []string{"tiers", "source", "files", "settings", "manifest"} {
		if arrs[name] == nil || arrs[name].Str == nil {
			t.Errorf("no %s strings", name)
		}
	}
}

func TestGrayAndResize(t *testing.T) {
	rgb := image.NewRGBA(image.Rect(0, 0, 2, 1))
	rgb.Set(0, 0, color.RGBA{255, 0, 0, 255})
	rgb.Set(1, 0, color.RGBA{10, 200, 30, 255})
	g := toGray(rgb)
	if math.Abs(float64(g.pix[0])-0.299*255) > 1e-3 || math.Abs(float64(g.pix[1])-(0.299*10+0.587*200+0.114*30)) > 1e-3 {
		t.Errorf("luma %v", g.pix)
	}
	ycc := image.NewYCbCr(image.Rect(0, 0, 3, 2), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = uint8(40 * i)
	}
	if g := toGray(ycc); !slices.Equal(g.pix, []float32{0, 40, 80, 120, 160, 200}) {
		t.Errorf("YCbCr gray %v", g.pix)
	}
	// Area averaging: exact block means for a factor of 2, the mean kept for others.
	src := &gray{w: 4, h: 4, pix: make([]float32, 16)}
	for i := range src.pix {
		src.pix[i] = float32(i)
	}
	if r := src.resize(2, 2); !slices.Equal(r.pix, []float32{2.5, 4.5, 10.5, 12.5}) {
		t.Errorf("4x4 -> 2x2: %v", r.pix)
	}
	r := src.resize(3, 3)
	var s float64
	for _, v := range r.pix {
		s += float64(v)
	}
	if math.Abs(s/9-7.5) > 1e-5 {
		t.Errorf("4x4 -> 3x3 changes the mean: %v", r.pix)
	}
	if Contrast([]uint8{0, 255}) != 0.5 || Contrast([]uint8{7, 7, 7}) != 0 {
		t.Error("Contrast")
	}
}

func TestSource(t *testing.T) {
	cases := []struct {
		s   Source
		str string
	}{
		{Source{File: "a/b.jpg", Scale: 0.5, X: 64, Y: 0, Flip: true}, "a/b.jpg:0.5:64:0:1"},
		{Source{File: "c:d.png", Scale: 1, X: 3, Y: 4}, "c:d.png:1:3:4:0"},
	}
	for _, c := range cases {
		if got := c.s.String(); got != c.str {
			t.Errorf("%+v formats as %q, want %q", c.s, got, c.str)
		}
		if got, err := ParseSource(c.str); err != nil || got != c.s {
			t.Errorf("ParseSource(%q) = %+v, %v", c.str, got, err)
		}
	}
	for _, bad := range []string{"a.png:1:2:3", "a.png:x:1:2:0", "a.png:1:1:2:2"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	dir := testFolder(t)
	empty := t.TempDir()
	one := t.TempDir()
	writeImage(t, one, "x.png", noise(64, 64, 1))
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, dir string
		o         Options
		want      string
	}{
		{"no size", dir, Options{}, "patch size"},
		{"scale above 1", dir, Options{Size: 8, Scales: []float64{2}}, "only downsampled"},
		{"bad split", dir, Options{Size: 8, SplitBy: "file"}, "split by"},
		{"bad fraction", dir, Options{Size: 8, ValFraction: 1}, "validation fraction"},
		{"bad contrast", dir, Options{Size: 8, MinContrast: 0.7}, "contrast threshold"},
		{"missing folder", filepath.Join(dir, "nope"), Options{Size: 8}, "give a folder"},
		{"empty folder", empty, Options{Size: 8}, "no PNG or JPEG"},
		{"one image split by image", one, Options{Size: 8, ValFraction: 0.1}, "split by patch"},
		{"nothing decodes", bad, Options{Size: 8}, "could be decoded"},
		{"too large", dir, Options{Size: 1000}, "no patch was kept"},
		{"missing manifest", dir, Options{Size: 8, Manifest: filepath.Join(dir, "nope.tsv")}, "manifest"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Build(context.Background(), c.dir, c.o, nil, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want one that says %q", err, c.want)
			}
		})
	}
}

func TestBuildSkipsBrokenFilesAndStops(t *testing.T) {
	dir := testFolder(t)
	if err := os.WriteFile(filepath.Join(dir, "broken.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logged []string
	var calls int
	p, st, err := Build(context.Background(), dir, Options{Size: 32}, func(done, total int) {
		calls++
		if total != 6 || done != calls {
			t.Errorf("progress %d/%d at call %d", done, total, calls)
		}
	}, func(f string, a ...any) { logged = append(logged, f) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Failed != 1 || st.Files != 5 || len(logged) != 1 || slices.Contains(p.Files, "broken.jpg") {
		t.Errorf("stats %+v, log %q, files %v", st, logged, p.Files)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Build(ctx, dir, Options{Size: 32}, nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled build: %v", err)
	}
}
