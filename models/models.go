// Package models holds egg's built-in defaults, embedded in the binary: a diffusion
// prior of natural 32x32 grayscale image patches, a simulated population of 100
// V4-like neurons (the ground truth), digital twins of that population trained on its
// simulated responses (two architectures, two ensembles each), and a small pool of
// natural image patches. models/README.md says how each file was made; the script
// scripts/build-defaults.sh rebuilds them all.
//
// The readers of egg (checkpoint, pool, encoder) work on files, so Install writes the
// embedded files once into a folder named for their content (under the user's cache
// folder by default) and returns their paths; a file there whose SHA-256 does not
// match is written again.
package models

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"egg/atomicfile"
)

//go:embed all:data
var embedded embed.FS

// The names of the embedded files.
const (
	// PriorFile is the default diffusion prior (egg train-prior output: EMA weights
	// with the UNet and process in its metadata).
	PriorFile = "prior.safetensors"
	// TruthFile is the simulated V4 population (egg simulate's ground truth).
	TruthFile = "v4_truth.safetensors"
	// PoolFile is the small natural-image pool (egg pool output).
	PoolFile = "pool_small.npz"
	// ManifestFile lists the photographs the pool and the prior come from, with
	// their packages and licences.
	ManifestFile = "images-manifest.tsv"
)

// The ensembles of digital twins, by name: architecture A (attention readout)
// ensembles 1 and 2, architecture B (Gaussian readout) ensembles 1 and 2.
const (
	AttentionA1 = "attention-1"
	AttentionA2 = "attention-2"
	GaussianB1  = "gaussian-1"
	GaussianB2  = "gaussian-2"
)

// ErrMissing is returned when this build of egg was made without the default files
// (models/data holds only its README).
var ErrMissing = errors.New("this egg was built without its built-in defaults (models/data is empty): run scripts/build-defaults.sh or give the model files explicitly")

// Set is the installed defaults: paths of files on disk.
type Set struct {
	// Dir is the folder the files were installed into.
	Dir string
	// Prior, Truth, Pool and Manifest are the paths of the files of the same names.
	Prior, Truth, Pool, Manifest string
	// Ensembles maps an ensemble name (AttentionA1, ...) to its member files, in
	// member order.
	Ensembles map[string][]string
}

// Roles returns the ensembles that play train, within and cross when ensemble 1 of
// the attention architecture drives, as in the paper: within is the attention
// architecture's second ensemble, cross the Gaussian architecture's first.
func (s *Set) Roles() (train, within, cross []string) {
	return s.Ensembles[AttentionA1], s.Ensembles[AttentionA2], s.Ensembles[GaussianB1]
}

// Names returns the names of the embedded files, sorted.
func Names() []string {
	entries, err := fs.ReadDir(embedded, "data")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// Read returns the bytes of one embedded file.
func Read(name string) ([]byte, error) {
	b, err := embedded.ReadFile("data/" + name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("built-in file %s: %w", name, ErrMissing)
	}
	return b, err
}

// Available reports whether this build embeds the defaults.
func Available() bool {
	_, err := embedded.Open("data/" + PriorFile)
	return err == nil
}

// DefaultDir returns the folder Install uses when given none: egg/defaults under the
// user's cache folder ($XDG_CACHE_HOME or ~/.cache on Linux), or under the system's
// temporary folder when there is no cache folder; EGG_DEFAULTS_DIR overrides it.
func DefaultDir() string {
	if d := os.Getenv("EGG_DEFAULTS_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "egg", "defaults")
	}
	return filepath.Join(os.TempDir(), "egg-defaults")
}

// Install writes the embedded files into a subfolder of dir (DefaultDir() when dir
// is empty) named for their content, unless they are there already with the right
// SHA-256, and returns their paths.
func Install(dir string) (*Set, error) {
	if !Available() {
		return nil, ErrMissing
	}
	if dir == "" {
		dir = DefaultDir()
	}
	names := Names()
	sums := make(map[string]string, len(names))
	all := sha256.New()
	for _, n := range names {
		b, err := Read(n)
		if err != nil {
			return nil, err
		}
		s := sha256.Sum256(b)
		sums[n] = hex.EncodeToString(s[:])
		fmt.Fprintf(all, "%s %s\n", n, sums[n])
	}
	dir = filepath.Join(dir, hex.EncodeToString(all.Sum(nil))[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("installing the built-in defaults: %w (set EGG_DEFAULTS_DIR to a writable folder)", err)
	}
	for _, n := range names {
		if err := installFile(dir, n, sums[n]); err != nil {
			return nil, err
		}
	}
	s := &Set{
		Dir:       dir,
		Prior:     filepath.Join(dir, PriorFile),
		Truth:     filepath.Join(dir, TruthFile),
		Pool:      filepath.Join(dir, PoolFile),
		Manifest:  filepath.Join(dir, ManifestFile),
		Ensembles: map[string][]string{},
	}
	for _, n := range names {
		// twin_<arch>_<ensemble>_<member>.safetensors
		parts := strings.Split(strings.TrimSuffix(n, ".safetensors"), "_")
		if len(parts) == 4 && parts[0] == "twin" && strings.HasSuffix(n, ".safetensors") {
			key := parts[1] + "-" + parts[2]
			s.Ensembles[key] = append(s.Ensembles[key], filepath.Join(dir, n))
		}
	}
	for _, e := range []string{AttentionA1, AttentionA2, GaussianB1, GaussianB2} {
		if len(s.Ensembles[e]) == 0 {
			return nil, fmt.Errorf("built-in ensemble %s has no model file: %w", e, ErrMissing)
		}
	}
	return s, nil
}

// installFile writes one embedded file into dir unless a file with its SHA-256 is
// there; it writes a temporary file and renames it, so a reader never sees half a
// file and concurrent installs do not collide.
func installFile(dir, name, sum string) error {
	path := filepath.Join(dir, name)
	if b, err := os.ReadFile(path); err == nil {
		s := sha256.Sum256(b)
		if hex.EncodeToString(s[:]) == sum {
			return nil
		}
	}
	b, err := Read(name)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(path, b); err != nil {
		return fmt.Errorf("installing the built-in file %s: %w (set EGG_DEFAULTS_DIR to a writable folder)", name, err)
	}
	return nil
}
