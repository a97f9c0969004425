package dataset

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"egg/npy"
)

// sample returns a small data set with every optional array: 6 trials of 3x4 images
// (uint8 values), 2 neurons, image 7 shown twice.
func sample() *Dataset {
	d := &Dataset{N: 6, C: 1, H: 3, W: 4, Neurons: 2}
	for i := 0; i < d.N*d.ImageLen(); i++ {
		d.Images = append(d.Images, float32(i*7%256))
	}
	for i := 0; i < d.N*d.Neurons; i++ {
		d.Responses = append(d.Responses, float32(i)/4)
	}
	d.Tiers = []string{"train", "train", "validation", "test", "test", "train"}
	d.ImageIDs = []int64{1, 2, 3, 7, 7, 4}
	d.Mask = []bool{true, true, true, false, true, true, true, true, false, true, true, true}
	d.Responses[3] = 0 // not recorded
	d.NeuronIDs = []int64{101, 102}
	return d
}

func same(t *testing.T, got, want *Dataset) {
	t.Helper()
	g, w := *got, *want
	g.Source, w.Source = "", ""
	if !reflect.DeepEqual(g, w) {
		t.Errorf("read back\n%+v\nwant\n%+v", g, w)
	}
}

func TestNPZRoundTrip(t *testing.T) {
	d := sample()
	path := filepath.Join(t.TempDir(), "d.npz")
	if err := WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	same(t, got, d)
	if got.Source != path {
		t.Errorf("Source %q", got.Source)
	}
	// Float images survive as float32.
	d.Images[5] = 0.5
	if err := WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	if got, err = ReadNPZ(path); err != nil {
		t.Fatal(err)
	}
	same(t, got, d)
}

func TestNPZImagesWithoutChannel(t *testing.T) {
	d := sample()
	arr := d.arrays()
	arr["images"].Shape = []int{d.N, d.H, d.W}
	path := writeArrays(t, arr)
	got, err := ReadNPZ(path)
	if err != nil {
		t.Fatal(err)
	}
	same(t, got, d)
}

func TestStaticRoundTrip(t *testing.T) {
	d := sample()
	d.Mask = nil
	d.Responses[3] = 0.75
	dir := t.TempDir()
	if err := WriteStatic(dir, d); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	same(t, got, d)
	// [H, W] images without the channel axis are read too.
	b, _ := npy.EncodeBytes(npy.Float32s(d.Image(2), d.H, d.W))
	if err := os.WriteFile(filepath.Join(dir, "data", "images", "2.npy"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = ReadStatic(dir); err != nil {
		t.Fatal(err)
	}
	same(t, got, d)
}

func writeArrays(t *testing.T, arr map[string]*npy.Array) string {
	t.Helper()
	b, err := npy.EncodeNPZ(arr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "d.npz")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNPZErrors(t *testing.T) {
	nan := float64(math.NaN())
	cases := []struct {
		name   string
		change func(m map[string]*npy.Array)
		want   []string
	}{
		{"no responses", func(m map[string]*npy.Array) { delete(m, "responses") }, []string{`no "responses" array`, "it has image_ids, images"}},
		{"no images", func(m map[string]*npy.Array) { delete(m, "images") }, []string{`no "images" array`}},
		{"count mismatch", func(m map[string]*npy.Array) {
			r := m["responses"]
			r.Shape[0], r.F64 = 5, r.F64[:10]
		}, []string{"images has 6 trials but responses has 5"}},
		{"nan response", func(m map[string]*npy.Array) { m["responses"].F64[9] = nan }, []string{"responses[4, 1] is NaN"}},
		{"inf response", func(m map[string]*npy.Array) { m["responses"].F64[0] = math.Inf(1) }, []string{"responses[0, 0] is +Inf"}},
		{"nan pixel", func(m map[string]*npy.Array) {
			m["images"] = npy.Float32s(make([]float32, 6*12), 6, 1, 3, 4)
			m["images"].F64[12+4+2] = nan
		}, []string{"images[1, 0, 1, 2] is NaN"}},
		{"nan pixel rank 3", func(m map[string]*npy.Array) {
			m["images"] = npy.Float32s(make([]float32, 6*12), 6, 3, 4)
			m["images"].F64[12+4+2] = nan
		}, []string{"images[1, 1, 2] is NaN"}},
		{"bad image rank", func(m map[string]*npy.Array) { m["images"].Shape = []int{72} }, []string{"images has shape [72]"}},
		{"tiers length", func(m map[string]*npy.Array) {
			m["tiers"].Str, m["tiers"].Shape = m["tiers"].Str[:4], []int{4}
		}, []string{"tiers has 4 entries but there are 6 trials"}},
		{"tiers not strings", func(m map[string]*npy.Array) {
			m["tiers"] = &npy.Array{Shape: []int{6}, I64: make([]int64, 6)}
		}, []string{"tiers is <i8, not strings"}},
		{"image ids length", func(m map[string]*npy.Array) {
			m["image_ids"] = &npy.Array{Shape: []int{2}, I64: []int64{1, 2}}
		}, []string{"image_ids has 2 entries"}},
		{"mask shape", func(m map[string]*npy.Array) {
			m["mask"] = &npy.Array{Shape: []int{6}, Bool: make([]bool, 6)}
		}, []string{"mask has shape [6]; want [6, 2]"}},
		{"neuron ids", func(m map[string]*npy.Array) {
			m["neuron_ids"] = &npy.Array{Shape: []int{3}, I64: []int64{1, 2, 3}}
		}, []string{"neuron_ids has 3 entries but there are 2 neurons"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := sample().arrays()
			c.change(m)
			_, err := ReadNPZ(writeArrays(t, m))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
		})
	}
}

func TestNaNWhereNotRecorded(t *testing.T) {
	m := sample().arrays()
	m["responses"].F64[3] = math.NaN() // mask[1, 1] is false
	d, err := ReadNPZ(writeArrays(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if d.Responses[3] != 0 {
		t.Errorf("unrecorded NaN read as %v, want 0", d.Responses[3])
	}
}

func TestStaticErrors(t *testing.T) {
	cases := []struct {
		name   string
		change func(dir string)
		want   string
	}{
		{"missing response file", func(dir string) { os.Remove(filepath.Join(dir, "data", "responses", "5.npy")) }, "has 6 images but"},
		{"gap", func(dir string) {
			os.Rename(filepath.Join(dir, "data", "images", "2.npy"), filepath.Join(dir, "data", "images", "9.npy"))
		}, "2.npy is missing"},
		{"no data", func(dir string) { os.RemoveAll(filepath.Join(dir, "data")) }, "data/images"},
		{"nan", func(dir string) {
			b, _ := npy.EncodeBytes(npy.Float32s([]float32{1, float32(math.NaN())}, 2))
			os.WriteFile(filepath.Join(dir, "data", "responses", "4.npy"), b, 0o644)
		}, "data/responses/4.npy[1] is NaN"},
		{"image size", func(dir string) {
			b, _ := npy.EncodeBytes(npy.Float32s(make([]float32, 4), 1, 2, 2))
			os.WriteFile(filepath.Join(dir, "data", "images", "3.npy"), b, 0o644)
		}, "3.npy has shape [1 2 2] but image 0 has [1 3 4]"},
		{"response count", func(dir string) {
			b, _ := npy.EncodeBytes(npy.Float32s(make([]float32, 3), 3))
			os.WriteFile(filepath.Join(dir, "data", "responses", "1.npy"), b, 0o644)
		}, "1.npy has 3 responses but trial 0 has 2"},
		{"tiers", func(dir string) {
			b, _ := npy.EncodeBytes(&npy.Array{Shape: []int{2}, Str: []string{"train", "test"}})
			os.WriteFile(filepath.Join(dir, "meta", "trials", "tiers.npy"), b, 0o644)
		}, "tiers has 2 entries but there are 6 trials"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := sample()
			d.Mask = nil
			dir := t.TempDir()
			if err := WriteStatic(dir, d); err != nil {
				t.Fatal(err)
			}
			c.change(dir)
			_, err := Load(dir, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one that says %q", err, c.want)
			}
		})
	}
}

func TestMissingTiersSplit(t *testing.T) {
	d := &Dataset{N: 40, C: 1, H: 2, W: 2, Neurons: 1}
	d.Images = make([]float32, d.N*4)
	d.Responses = make([]float32, d.N)
	for i := 0; i < d.N; i++ {
		d.ImageIDs = append(d.ImageIDs, int64(i/2)) // every image twice
	}
	path := filepath.Join(t.TempDir(), "d.npz")
	if err := WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	var logs []string
	got, err := Load(path, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	if !got.TiersSplit || len(logs) != 1 || !strings.Contains(logs[0], "no tiers") || !strings.Contains(logs[0], "32 train and 8 validation trials") {
		t.Fatalf("split %v, logs %q", got.TiersSplit, logs)
	}
	if len(got.Indices(Validation)) != 8 || len(got.Indices(Test)) != 0 {
		t.Errorf("validation %v, test %v", got.Indices(Validation), got.Indices(Test))
	}
	for i := 0; i < d.N; i += 2 {
		if got.Tiers[i] != got.Tiers[i+1] {
			t.Errorf("the two trials of image %d are in %s and %s", i/2, got.Tiers[i], got.Tiers[i+1])
		}
	}
	again, _ := Load(path, nil)
	if !slices.Equal(again.Tiers, got.Tiers) {
		t.Error("the split differs between two loads")
	}
}

func TestUnknownTierLogged(t *testing.T) {
	d := sample()
	d.Tiers[0] = "final_test"
	path := filepath.Join(t.TempDir(), "d.npz")
	if err := WriteNPZ(path, d); err != nil {
		t.Fatal(err)
	}
	var logs []string
	got, err := Load(path, func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], `ignoring 1 trials of tier "final_test"`) {
		t.Errorf("logs %q", logs)
	}
	if !slices.Equal(got.Indices(Train), []int{1, 5}) {
		t.Errorf("train trials %v", got.Indices(Train))
	}
}

func TestPixelStats(t *testing.T) {
	d := &Dataset{N: 2, C: 1, H: 1, W: 2, Images: []float32{1, 3, 10, 20}}
	m, s := d.PixelStats([]int{0})
	if m != 2 || s != 1 {
		t.Errorf("stats of trial 0: %v, %v; want 2, 1", m, s)
	}
	m, s = d.PixelStats([]int{0, 1})
	wantS := math.Sqrt(((1-8.5)*(1-8.5) + (3-8.5)*(3-8.5) + 1.5*1.5 + 11.5*11.5) / 4)
	if m != 8.5 || math.Abs(s-wantS) > 1e-12 {
		t.Errorf("stats: %v, %v; want 8.5, %v", m, s, wantS)
	}
	d.Images = []float32{4, 4, 4, 4}
	if _, s = d.PixelStats([]int{0, 1}); s != 1 {
		t.Errorf("constant images: std %v, want 1", s)
	}
}
