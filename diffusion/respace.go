package diffusion

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// SpaceTimesteps returns the original timesteps, sorted and distinct, that a respaced
// process keeps out of numTimesteps, as guided-diffusion's space_timesteps does for a
// string spec:
//
//   - "N" keeps N evenly strided steps: 0, ..., numTimesteps-1 with the stride
//     (numTimesteps-1)/(N-1) accumulated in float64 and rounded half to even, as
//     Python 3's round does;
//   - "a,b,c" splits 0..numTimesteps-1 into len sections of equal size (the first
//     numTimesteps % len one step longer) and strides section k into its count of steps
//     the same way;
//   - "ddimN" uses the integer stride s, the smallest for which range(0, numTimesteps, s)
//     has exactly N elements, and fails when there is none;
//   - "" keeps every step (guided-diffusion's create_gaussian_diffusion default).
//
// Counts may be surrounded by spaces. A section count of 0 contributes no step, as in
// the reference; a negative count, a count larger than its section, a non-number or a
// spec that keeps no step at all is an error.
func SpaceTimesteps(numTimesteps int, spec string) ([]int, error) {
	if numTimesteps < 1 {
		return nil, fmt.Errorf("diffusion: SpaceTimesteps: %d timesteps", numTimesteps)
	}
	if spec == "" {
		steps := make([]int, numTimesteps)
		for i := range steps {
			steps[i] = i
		}
		return steps, nil
	}
	if rest, ok := strings.CutPrefix(spec, "ddim"); ok {
		want, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("diffusion: timestep respacing %q: %w", spec, err)
		}
		for stride := 1; stride < numTimesteps; stride++ {
			if (numTimesteps+stride-1)/stride == want {
				steps := make([]int, 0, want)
				for t := 0; t < numTimesteps; t += stride {
					steps = append(steps, t)
				}
				return steps, nil
			}
		}
		return nil, fmt.Errorf("diffusion: timestep respacing %q: cannot take exactly %d of %d steps with an integer stride",
			spec, want, numTimesteps)
	}
	fields := strings.Split(spec, ",")
	counts := make([]int, len(fields))
	for k, f := range fields {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("diffusion: timestep respacing %q: section %d: %w", spec, k, err)
		}
		if c < 0 {
			return nil, fmt.Errorf("diffusion: timestep respacing %q: negative section count %d", spec, c)
		}
		counts[k] = c
	}
	sizePer, extra := numTimesteps/len(counts), numTimesteps%len(counts)
	start := 0
	var steps []int
	for k, count := range counts {
		size := sizePer
		if k < extra {
			size++
		}
		if size < count {
			return nil, fmt.Errorf("diffusion: timestep respacing %q: cannot divide a section of %d steps into %d",
				spec, size, count)
		}
		// frac_stride and cur_idx are Python floats: the stride is accumulated, not
		// multiplied, so that the rounding matches the reference exactly.
		fracStride := 1.0
		if count > 1 {
			fracStride = float64(size-1) / float64(count-1)
		}
		cur := 0.0
		for range count {
			steps = append(steps, start+int(math.RoundToEven(cur)))
			cur += fracStride
		}
		start += size
	}
	slices.Sort(steps)
	steps = slices.Compact(steps)
	if len(steps) == 0 {
		return nil, fmt.Errorf("diffusion: timestep respacing %q keeps no step", spec)
	}
	return steps, nil
}
