package checkpoint

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Run a fuzzer with e.g. go test -fuzz FuzzTorch -fuzztime 30s ./checkpoint
// Without -fuzz, the seeds run as ordinary tests.

// smallRefFiles returns the contents of reference-vector files matching pattern that are small enough to seed a
// fuzzer.
func smallRefFiles(f *testing.F, pattern string) [][]byte {
	dir := refVectorsDir(f)
	if dir == "" {
		return nil
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*", pattern))
	var out [][]byte
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Size() <= 64<<10 {
			if b, err := os.ReadFile(p); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

func FuzzSafetensors(f *testing.F) {
	f.Add(validSafetensors(f))
	path := filepath.Join(f.TempDir(), "all.safetensors")
	if err := WriteSafetensors(path, allDTypeTensors(), map[string]string{"a": "b"}); err != nil {
		f.Fatal(err)
	}
	all, _ := os.ReadFile(path)
	f.Add(all)
	for _, b := range smallRefFiles(f, "*.safetensors") {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{}              "))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := openSafetensors("fuzz", bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "checkpoint: fuzz: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if err := readAllTensors(r); err != nil {
			t.Fatalf("opened, but reading failed: %v", err) // the header was validated against the data
		}
	})
}

func FuzzTorch(f *testing.F) {
	for _, p := range []string{"testdata/torch_checkpoint.pt", "testdata/torch_dtypes.pt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(rezip(f, b, zip.Deflate))
	}
	for _, b := range smallRefFiles(f, "*.pt") {
		f.Add(b)
	}
	ten := tspec{storage: "HalfStorage", key: "0", numel: 4, offset: 1, size: []int{3, 1}, stride: []int{1, 2}}
	root := odict{{"state_dict", odict{{"w", ten}}}, {"epoch", 1}, {"args", opaque{"argparse", "Namespace", odict{{"lr", 0.5}}}}}
	f.Add(torchZip(f, "a", pickleOf(root), map[string][]byte{"0": {0, 60, 0, 64, 0, 66, 0, 68}}, zip.Store, "big"))
	f.Add([]byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := openTorch("fuzz", bytes.NewReader(data), int64(len(data)), true)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "checkpoint: fuzz: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		readAllTensors(r) // compressed storages are only checked when read; errors are fine, panics are not
	})
}

// FuzzPickle feeds the pickle machine directly (inside a zip, the CRC check rejects nearly every mutation of
// data.pkl), then applies the exposure rule and the view validation to whatever tensors come out, backed by a
// small fake storage.
func FuzzPickle(f *testing.F) {
	for _, p := range pythonPickles {
		f.Add([]byte(p))
	}
	for _, p := range []string{"testdata/torch_checkpoint.pt", "testdata/torch_dtypes.pt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			f.Fatal(err)
		}
		for _, zf := range zr.File {
			if strings.HasSuffix(zf.Name, "data.pkl") {
				pkl, _ := readZipEntry(zf, 1<<20)
				f.Add(pkl)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vm := &pickleVM{data: data, persistentLoad: storageLoader()}
		root, err := vm.unpickle()
		if err != nil {
			return
		}
		for _, sel := range []bool{false, true} {
			v := root
			if sel {
				v = selectStateDict(v)
			}
			tensors := map[string]*tensorRef{}
			var order []string
			if flatten(v, "", tensors, &order, map[any]bool{}, 0) != nil {
				continue
			}
			storage := bytes.NewReader(make([]byte, 64))
			entries := map[string]*entry{}
			for _, n := range order {
				tr := tensors[n]
				if tr.storage.dtype.Size() == 0 {
					continue
				}
				e, err := tensorEntry(n, tr, storage, 64, sel)
				if err != nil {
					continue
				}
				entries[n] = e
			}
			if err := readAllTensors(newTensorReader("fuzz", nil, entries, nil)); err != nil {
				t.Fatalf("validated view failed to read: %v", err)
			}
		}
	})
}
