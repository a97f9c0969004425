package cuda

import (
	"os"
	"path/filepath"
	"strings"
)

// The shared objects the package loads, newest first.
var (
	driverNames = []string{"libcuda.so.1"}
	cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}
)

// systemLibDirs are the system directories searched after EGG_CUDA_LIBS and
// LD_LIBRARY_PATH, in order.
var systemLibDirs = []string{
	"/usr/lib/x86_64-linux-gnu",
	"/usr/lib/aarch64-linux-gnu",
	"/usr/local/cuda/lib64",
	"/usr/local/cuda/targets/x86_64-linux/lib",
	"/usr/local/cuda/targets/sbsa-linux/lib",
	"/usr/local/nvidia/lib64",
	"/usr/lib64",
	"/usr/lib/wsl/lib",
}

// pythonLibGlobs are the places, below a Python environment's prefix, where pip
// wheels of CUDA (nvidia-cublas-cu12, nvidia-cu13, ...) keep their libraries.
var pythonLibGlobs = []string{
	"lib/python3*/site-packages/nvidia/*/lib",
	"lib/python3*/dist-packages/nvidia/*/lib",
	"lib64/python3*/site-packages/nvidia/*/lib",
}

// libDirs returns the directories searched for the CUDA libraries, in order, without
// duplicates: EGG_CUDA_LIBS, LD_LIBRARY_PATH, the system directories (and
// /usr/local/cuda-*/lib64), then the NVIDIA wheels of Python environments:
// $VIRTUAL_ENV, $CONDA_PREFIX, the parents of PATH's bin directories, /opt/*/.venv,
// /opt/* (such as /opt/conda), ~/.local, ~/.venv, ~/venv, /usr/local and /usr. getenv reads the
// environment; root is prepended to every fixed path (not to those from the
// environment), so that a test can search a directory tree of its own ("" in use).
// Only directories that exist are returned.
func libDirs(getenv func(string) string, root string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(ds ...string) {
		for _, d := range ds {
			if d == "" {
				continue
			}
			d = filepath.Clean(d)
			if seen[d] {
				continue
			}
			seen[d] = true
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	glob := func(pattern string) []string {
		m, _ := filepath.Glob(pattern) // the only error is a malformed pattern
		return m
	}
	add(filepath.SplitList(getenv("EGG_CUDA_LIBS"))...)
	add(filepath.SplitList(getenv("LD_LIBRARY_PATH"))...)
	for _, d := range systemLibDirs {
		add(root + d)
	}
	add(glob(root + "/usr/local/cuda-*/lib64")...)
	var prefixes []string
	prefixes = append(prefixes, filepath.SplitList(getenv("VIRTUAL_ENV"))...)
	prefixes = append(prefixes, filepath.SplitList(getenv("CONDA_PREFIX"))...)
	// The environments whose bin directory is on PATH (an activated venv, conda).
	for _, d := range filepath.SplitList(getenv("PATH")) {
		if filepath.Base(d) == "bin" {
			prefixes = append(prefixes, filepath.Dir(d))
		}
	}
	prefixes = append(prefixes, glob(root+"/opt/*/.venv")...)
	prefixes = append(prefixes, glob(root+"/opt/*")...)
	if home := getenv("HOME"); home != "" {
		prefixes = append(prefixes, filepath.Join(home, ".local"), filepath.Join(home, ".venv"), filepath.Join(home, "venv"))
	}
	prefixes = append(prefixes, root+"/usr/local", root+"/usr")
	for _, p := range prefixes {
		if p == "" {
			continue
		}
		for _, g := range pythonLibGlobs {
			add(glob(filepath.Join(p, g))...)
		}
	}
	return dirs
}

// findLibs returns the paths dir/name that exist, for every directory in order and
// within a directory every name in order (the first is the one to load).
func findLibs(dirs, names []string) []string {
	var found []string
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
				found = append(found, p)
			}
		}
	}
	return found
}

// searchedWhere describes libDirs' search for an error message.
const searchedWhere = "EGG_CUDA_LIBS, LD_LIBRARY_PATH, the system library directories, " +
	"the NVIDIA pip wheels of Python environments (site-packages/nvidia/*/lib) and the dynamic loader's path"

// shortNames joins library names as "libcublas.so.13, .12 or .11".
func shortNames(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	var b strings.Builder
	b.WriteString(names[0])
	stem := names[0][:strings.LastIndexByte(names[0], '.')]
	for i, n := range names[1:] {
		if i == len(names)-2 {
			b.WriteString(" or ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(strings.TrimPrefix(n, stem))
	}
	return b.String()
}
