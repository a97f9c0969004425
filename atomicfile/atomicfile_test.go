package atomicfile

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.bin")
	for _, c := range []struct {
		name    string
		write   func(*bufio.Writer) error
		wantErr bool
		want    string // the file afterwards
	}{
		{"new file", func(w *bufio.Writer) error { _, err := w.WriteString("first"); return err }, false, "first"},
		{"replaced", func(w *bufio.Writer) error { _, err := w.WriteString("second"); return err }, false, "second"},
		{"failed write keeps the old file", func(w *bufio.Writer) error {
			w.WriteString("partial")
			return errors.New("disk full")
		}, true, "second"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Write(path, c.write)
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			b, _ := os.ReadFile(path)
			if string(b) != c.want {
				t.Errorf("file holds %q, want %q", b, c.want)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			fi, _ := os.Stat(path)
			if fi.Mode().Perm() != 0o644 {
				t.Errorf("mode %v", fi.Mode())
			}
		})
	}
	if err := WriteBytes(filepath.Join(dir, "missing", "b"), []byte("x")); err == nil {
		t.Error("a write into a missing folder succeeded")
	}
}
