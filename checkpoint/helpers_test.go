package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// repoRoot walks up from the package directory to the directory holding go.mod.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}

// refVectorsDir returns the reference-vector folder ($EGG_REFVECTORS, default ../shared/refvectors relative to
// the repository root), or "" if it does not exist.
func refVectorsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("EGG_REFVECTORS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "..", "shared", "refvectors")
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

// writeTemp writes data to a fresh file in t.TempDir and returns its path.
func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkErrPrefix fails unless err is non-nil and starts with "checkpoint: <path>: ".
func checkErrPrefix(t testing.TB, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: expected an error", path)
	}
	if want := "checkpoint: " + path + ": "; !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error %q does not start with %q", err, want)
	}
}

// ---- A tiny pickler and torch-zip builder, to make test inputs without Python. ----

// pk builds pickle bytes opcode by opcode.
type pk struct{ bytes.Buffer }

func (p *pk) op(b ...byte) *pk { p.Write(b); return p }
func (p *pk) str(s string) *pk {
	p.WriteByte('X')
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
	return p
}
func (p *pk) int(i int) *pk {
	p.WriteByte('J')
	binary.Write(&p.Buffer, binary.LittleEndian, int32(i))
	return p
}
func (p *pk) global(mod, name string) *pk {
	p.WriteString("c" + mod + "\n" + name + "\n")
	return p
}
func (p *pk) ints(v []int) *pk {
	p.op('(')
	for _, x := range v {
		p.int(x)
	}
	return p.op('t')
}

// Values for pk.value: odict is an ordered dict, tspec a tensor, opaque an instance of an unknown class.
type (
	kv    struct{ k, v any }
	odict []kv
	tspec struct {
		storage string // e.g. "FloatStorage"
		key     string
		numel   int // storage elements
		offset  int
		size    []int
		stride  []int
	}
	opaque struct {
		mod, name string
		state     any
	}
	// call is REDUCE of a global with positional arguments.
	call struct {
		mod, name string
		args      []any
	}
)

func (p *pk) value(v any) *pk {
	switch v := v.(type) {
	case nil:
		p.op('N')
	case string:
		p.str(v)
	case int:
		p.int(v)
	case float64:
		p.op('G')
		binary.Write(&p.Buffer, binary.BigEndian, math.Float64bits(v))
	case odict:
		p.op('}', '(')
		for _, e := range v {
			p.value(e.k)
			p.value(e.v)
		}
		p.op('u')
	case []any:
		p.op(']', '(')
		for _, e := range v {
			p.value(e)
		}
		p.op('e')
	case tspec:
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.op('(', '(')
		p.str("storage").global("torch", v.storage).str(v.key).str("cpu").int(v.numel)
		p.op('t', 'Q')
		p.int(v.offset).ints(v.size).ints(v.stride)
		p.op(0x89).global("collections", "OrderedDict").op(')', 'R')
		p.op('t', 'R')
	case call:
		p.global(v.mod, v.name).op('(')
		for _, a := range v.args {
			p.value(a)
		}
		p.op('t', 'R')
	case opaque:
		p.global(v.mod, v.name).op(')', 0x81)
		p.value(v.state)
		p.op('b')
	default:
		panic("pk.value: unsupported type")
	}
	return p
}

// pickle returns a complete protocol-2 pickle of v.
func pickleOf(v any) []byte {
	var p pk
	p.op(0x80, 2)
	p.value(v)
	p.op('.')
	return p.Bytes()
}

// torchZip builds a torch.save-style zip: prefix/data.pkl, prefix/data/<key> for each storage, prefix/version
// and, if byteorder is not empty, prefix/byteorder.
func torchZip(t testing.TB, prefix string, pkl []byte, storages map[string][]byte, method uint16, byteorder string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	add := func(name string, data []byte) {
		f, err := w.CreateHeader(&zip.FileHeader{Name: prefix + "/" + name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		f.Write(data)
	}
	add("data.pkl", pkl)
	if byteorder != "" {
		add("byteorder", []byte(byteorder))
	}
	keys := make([]string, 0, len(storages))
	for k := range storages {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add("data/"+k, storages[k])
	}
	add("version", []byte("3\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32Bytes(v ...float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// rezip copies a zip archive, storing every entry with the given method (used to test compressed storages).
func rezip(t testing.TB, data []byte, method uint16) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		out, err := w.CreateHeader(&zip.FileHeader{Name: f.Name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		out.Write(b.Bytes())
	}
	w.Close()
	return buf.Bytes()
}
