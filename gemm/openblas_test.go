//go:build (linux || darwin || freebsd) && (amd64 || arm64)

package gemm

import (
	"strings"
	"testing"
)

func TestOpenLibMissing(t *testing.T) {
	_, err := openLib([]string{"/nonexistent/libopenblas.so.0", "libnotopenblas.so.9"})
	if err == nil || !strings.Contains(err.Error(), "tried 2 names") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
	// A library without cblas_sgemm is rejected.
	if _, err := openLib([]string{"libc.so.6"}); err == nil {
		t.Fatal("libc accepted as OpenBLAS")
	} else {
		t.Log(err)
	}
}
