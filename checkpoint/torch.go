package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
)

// preferredStateKeys are the top-level keys of a training checkpoint under which the model's state_dict is
// commonly stored. See OpenTorch.
var preferredStateKeys = []string{"state_dict", "model_state_dict", "model_state", "model", "net"}

// maxPickleSize bounds data.pkl, which holds only the object structure (tensor data live in separate entries).
const maxPickleSize = 1 << 30

// OpenTorch opens a PyTorch checkpoint written by torch.save in the zip format (the default since PyTorch 1.6).
// Nothing in the pickle is executed. The tensors it exposes are chosen by this rule:
//
//  1. If the top-level object is a dict and exactly one of its keys "state_dict", "model_state_dict",
//     "model_state", "model", "net" maps to a dict that directly holds at least one tensor, only that dict is
//     used (so {"epoch": 3, "state_dict": sd, "optimizer": ...} yields sd's names, unprefixed).
//  2. Otherwise (and inside the dict chosen by 1) nested dicts, lists and tuples are flattened, joining keys
//     and indices with "." ({"a": {"b": t}, "c": [t0, t1]} gives "a.b", "c.0", "c.1"); dict keys that are
//     neither strings nor integers are skipped. Values that are not tensors (numbers, strings, numpy scalars,
//     argparse.Namespace or any other object) are ignored; tensors inside such objects are not exposed. A
//     container reachable along several paths is listed under the first. A top-level tensor is named "".
//
// Use OpenTorchFlat to skip step 1. Pre-1.6 (non-zip) torch.save files and TorchScript archives are reported
// as errors that say how to convert them.
func OpenTorch(path string) (Reader, error) { return openTorchFile(path, true) }

// OpenTorchFlat is OpenTorch without the state_dict selection (step 1 of OpenTorch's rule): every tensor in the
// checkpoint is exposed under its full dotted path, e.g. "state_dict.conv.weight" and "ema.conv.weight".
func OpenTorchFlat(path string) (Reader, error) { return openTorchFile(path, false) }

func openTorchFile(path string, selectState bool) (Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileErr(path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fileErr(path, err)
	}
	r, err := openTorch(path, f, st.Size(), selectState)
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closer = f
	return r, nil
}

// openTorch reads the torch zip checkpoint of size bytes readable through ra.
func openTorch(path string, ra io.ReaderAt, size int64, selectState bool) (*tensorReader, error) {
	fail := func(format string, args ...any) (*tensorReader, error) {
		return nil, fmt.Errorf("checkpoint: %s: "+format, append([]any{path}, args...)...)
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		head := make([]byte, 512)
		n, _ := ra.ReadAt(head, 0)
		if kind := legacyTorchKind(head[:n]); kind != "" {
			return fail("this is a %s; only the zip format of torch.save (PyTorch >= 1.6) is supported. "+
				"Re-save it with torch>=1.6: torch.save(torch.load(old_path), new_path), or convert it to safetensors", kind)
		}
		if bytes.HasPrefix(head[:n], []byte("PK")) {
			return fail("truncated or damaged zip archive (%v); the file may be incompletely downloaded", err)
		}
		return fail("not a PyTorch zip checkpoint: %v", err)
	}
	files := make(map[string]*zip.File, len(zr.File))
	for _, zf := range zr.File {
		if _, dup := files[zf.Name]; !dup {
			files[zf.Name] = zf
		}
	}
	// The archive holds <prefix>/data.pkl; the prefix is the file's base name when it was saved.
	prefix, found := "", false
	for _, zf := range zr.File {
		if zf.Name == "data.pkl" || (strings.Count(zf.Name, "/") == 1 && strings.HasSuffix(zf.Name, "/data.pkl")) {
			if !found || strings.Count(zf.Name, "/") < strings.Count(prefix, "/") {
				prefix, found = strings.TrimSuffix(zf.Name, "data.pkl"), true
			}
		}
	}
	if !found {
		return fail("zip archive without a data.pkl entry: not a torch.save checkpoint")
	}
	_, torchScript := files[prefix+"constants.pkl"]

	swap := false
	if bo, ok := files[prefix+"byteorder"]; ok {
		b, err := readZipEntry(bo, 64)
		if err != nil {
			return fail("reading %s: %v", bo.Name, err)
		}
		switch strings.TrimSpace(string(b)) {
		case "little":
		case "big":
			swap = true
		default:
			return fail("unknown byte order %q in %s", b, bo.Name)
		}
	}

	pklFile := files[prefix+"data.pkl"]
	pkl, err := readZipEntry(pklFile, maxPickleSize)
	if err != nil {
		return fail("reading %s: %v", pklFile.Name, err)
	}
	vm := &pickleVM{data: pkl, persistentLoad: storageLoader()}
	root, err := vm.unpickle()
	if err != nil {
		return fail("%s: %v", pklFile.Name, err)
	}

	switch root.(type) {
	case *pyDict, *pyList, *pyTuple, *tensorRef, *unsupportedTensor:
	default:
		if torchScript {
			return fail("this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save the model's state_dict with torch.save(model.state_dict(), path) instead")
		}
		return fail("the checkpoint holds a %s, not a dict of tensors; save a state_dict (torch.save(model.state_dict(), path))", pyTypeName(root))
	}
	if selectState {
		root = selectStateDict(root)
	}
	tensors := map[string]*tensorRef{}
	var order []string
	if err := flatten(root, "", tensors, &order, map[any]bool{}, 0); err != nil {
		return fail("%v", err)
	}

	storages := map[*storageRef]io.ReaderAt{}
	storageBytes := map[*storageRef]int64{}
	entries := make(map[string]*entry, len(tensors))
	for _, name := range order {
		t := tensors[name]
		st := t.storage
		if st.dtype.Size() == 0 {
			return fail("tensor %q is stored as %s, which is not supported", name, st.typeName)
		}
		sra, ok := storages[st]
		if !ok {
			zf, ok := files[prefix+"data/"+st.key]
			if !ok {
				return fail("storage %q of tensor %q is missing (no entry %sdata/%s); the file may be incomplete", st.key, name, prefix, st.key)
			}
			n := int64(zf.UncompressedSize64)
			if n < 0 {
				return fail("storage entry %s has an impossible size", zf.Name)
			}
			if zf.Method == zip.Store {
				off, err := zf.DataOffset()
				if err != nil {
					return fail("storage entry %s: %v", zf.Name, err)
				}
				if zf.CompressedSize64 != zf.UncompressedSize64 || off < 0 || off > size || n > size-off {
					return fail("truncated: storage entry %s needs bytes [%d,%d) of a %d-byte file; the file may be incompletely downloaded", zf.Name, off, off+n, size)
				}
				sra = io.NewSectionReader(ra, off, n)
			} else if zf.Method == zip.Deflate {
				sra = &inflateReaderAt{f: zf}
			} else {
				return fail("storage entry %s uses zip compression method %d; only stored and deflated entries are supported", zf.Name, zf.Method)
			}
			storages[st] = sra
			storageBytes[st] = n
		}
		e, err := tensorEntry(name, t, sra, storageBytes[st], swap)
		if err != nil {
			return fail("%v", err)
		}
		entries[name] = e
	}
	return newTensorReader(path, nil, entries, map[string]string{}), nil
}

// tensorEntry validates a tensor's view of its storage (nbytes long) and describes it as an entry.
func tensorEntry(name string, t *tensorRef, ra io.ReaderAt, nbytes int64, swap bool) (*entry, error) {
	dt := t.storage.dtype
	size := int64(dt.Size())
	numel, ok := numelOf(t.size)
	if !ok || numel > (1<<62)/size {
		return nil, fmt.Errorf("tensor %q: invalid size %v", name, t.size)
	}
	e := &entry{numel: numel, ra: ra, offset: t.offset, shape: t.size, swap: swap}
	ishape := make([]int, len(t.size))
	for i, d := range t.size {
		ishape[i] = int(d)
	}
	e.info = Info{Name: name, DType: dt, Shape: ishape}
	if numel == 0 {
		return e, nil
	}
	// Largest element index the view touches, with overflow checks.
	last := uint64(t.offset)
	contiguous := true
	want := int64(1)
	for i := len(t.size) - 1; i >= 0; i-- {
		s := t.stride[i]
		if s < 0 {
			return nil, fmt.Errorf("tensor %q: negative stride %v", name, t.stride)
		}
		hi, lo := bits.Mul64(uint64(t.size[i]-1), uint64(s))
		var carry uint64
		last, carry = bits.Add64(last, lo, 0)
		if hi != 0 || carry != 0 || last > 1<<62 {
			return nil, fmt.Errorf("tensor %q: size %v with stride %v overflows", name, t.size, t.stride)
		}
		if t.size[i] != 1 && s != want {
			contiguous = false
		}
		want *= t.size[i]
	}
	if last >= uint64(nbytes/size) {
		return nil, fmt.Errorf("truncated: tensor %q (size %v, stride %v, offset %d) needs element %d of its storage %q, which has only %d bytes (%d elements of %s)",
			name, t.size, t.stride, t.offset, last, t.storage.key, nbytes, nbytes/size, dt)
	}
	if !contiguous {
		e.strides = t.stride
	}
	return e, nil
}

// selectStateDict applies step 1 of OpenTorch's rule.
func selectStateDict(root any) any {
	d, ok := root.(*pyDict)
	if !ok {
		return root
	}
	var chosen any
	count := 0
	for _, k := range preferredStateKeys {
		v, ok := d.get(k)
		if !ok {
			continue
		}
		if sub, ok := v.(*pyDict); ok && holdsTensor(sub) {
			chosen = sub
			count++
		}
	}
	if count == 1 {
		return chosen
	}
	return root
}

func holdsTensor(d *pyDict) bool {
	for _, v := range d.vals {
		switch v.(type) {
		case *tensorRef, *unsupportedTensor:
			return true
		}
	}
	return false
}

// maxFlattenDepth bounds the nesting flatten follows.
const maxFlattenDepth = 100

// flatten collects the tensors of v under dotted names (step 2 of OpenTorch's rule).
func flatten(v any, name string, out map[string]*tensorRef, order *[]string, seen map[any]bool, depth int) error {
	if depth > maxFlattenDepth {
		return fmt.Errorf("the checkpoint nests containers more than %d levels deep", maxFlattenDepth)
	}
	join := func(part string) string {
		if depth == 0 {
			return part
		}
		return name + "." + part
	}
	switch c := v.(type) {
	case *tensorRef:
		if _, dup := out[name]; dup {
			return fmt.Errorf("two tensors would both be named %q", name)
		}
		out[name] = c
		*order = append(*order, name)
	case *unsupportedTensor:
		return fmt.Errorf("tensor %q is built by %s, which is not supported (only dense tensors with a storage are)", name, c.builder)
	case *pyDict:
		if seen[c] {
			return nil
		}
		seen[c] = true
		for i, k := range c.keys {
			var part string
			switch k := k.(type) {
			case string:
				part = k
			case int64:
				part = strconv.FormatInt(k, 10)
			case *big.Int:
				part = k.String()
			default:
				continue
			}
			if err := flatten(c.vals[i], join(part), out, order, seen, depth+1); err != nil {
				return err
			}
		}
	case *pyList, *pyTuple:
		if seen[c] {
			return nil
		}
		seen[c] = true
		items, _ := tupleItems(c)
		for i, it := range items {
			if err := flatten(it, join(strconv.Itoa(i)), out, order, seen, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// readZipEntry reads a whole (small) zip entry, refusing more than limit bytes.
func readZipEntry(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("entry is %d bytes, more than the %d allowed", zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("entry is larger than the %d bytes allowed", limit)
	}
	return b, nil
}

// inflateReaderAt reads a compressed zip entry at an offset by decompressing it. torch.save stores its entries
// uncompressed, so this is only the fallback for re-packed archives. The open decompressor is kept between
// calls, so reading an entry front to back (as Reader does) decompresses it once.
type inflateReaderAt struct {
	f   *zip.File
	mu  sync.Mutex
	rc  io.ReadCloser
	pos int64
}

func (z *inflateReaderAt) ReadAt(p []byte, off int64) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.rc == nil || off < z.pos {
		if z.rc != nil {
			z.rc.Close()
		}
		rc, err := z.f.Open()
		if err != nil {
			z.rc = nil
			return 0, err
		}
		z.rc, z.pos = rc, 0
	}
	if off > z.pos {
		n, err := io.CopyN(io.Discard, z.rc, off-z.pos)
		z.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(z.rc, p)
	z.pos += int64(n)
	if err == nil && z.pos == int64(z.f.UncompressedSize64) {
		z.rc.Close() // the whole entry has been read
		z.rc = nil
	}
	return n, err
}
