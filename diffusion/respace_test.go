package diffusion

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func seq(start, stop, step int) []int {
	var r []int
	for v := start; v < stop; v += step {
		r = append(r, v)
	}
	return r
}

func TestSpaceTimesteps(t *testing.T) {
	tests := []struct {
		n    int
		spec string
		want []int
	}{
		{1000, "10", []int{0, 111, 222, 333, 444, 555, 666, 777, 888, 999}},
		{100, "10", []int{0, 11, 22, 33, 44, 55, 66, 77, 88, 99}},
		{1000, "1000", seq(0, 1000, 1)},
		{1000, "", seq(0, 1000, 1)},
		{1000, "ddim25", seq(0, 1000, 40)},
		{1000, "ddim50", seq(0, 1000, 20)},
		{10, "ddim3", []int{0, 4, 8}},
		{10, "ddim4", []int{0, 3, 6, 9}},
		{10, "ddim10", seq(0, 10, 1)},
		// guided-diffusion's docstring example.
		{300, "10,15,20", []int{0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107, 114, 121, 128, 135, 142, 149, 157,
			164, 171, 178, 185, 192, 199, 200, 205, 210, 216, 221, 226, 231, 236, 242, 247, 252, 257, 263, 268, 273,
			278, 283, 289, 294, 299}},
		{300, " 10, 15 ,20 ", nil}, // spaces around counts are allowed: same as above
		// Python 3 rounds half to even: 2.5 -> 2 (half-up would give 3).
		{6, "3", []int{0, 2, 5}},
		// Uneven sections (sizes 4, 3, 3); 1.5 -> 2.
		{10, "3,3,3", []int{0, 2, 3, 4, 5, 6, 7, 8, 9}},
		{7, "2,2", []int{0, 3, 4, 6}},
		// One step per section takes its first step; an empty section takes none.
		{10, "1,1", []int{0, 5}},
		{10, "0,2", []int{5, 9}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d/%s", tc.n, tc.spec), func(t *testing.T) {
			want := tc.want
			if want == nil {
				want, _ = SpaceTimesteps(tc.n, strings.ReplaceAll(tc.spec, " ", ""))
			}
			got, err := SpaceTimesteps(tc.n, tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("SpaceTimesteps(%d, %q) = %v, want %v", tc.n, tc.spec, got, want)
			}
			if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
				t.Errorf("not sorted and distinct: %v", got)
			}
		})
	}
}

func TestSpaceTimestepsErrors(t *testing.T) {
	tests := []struct {
		n    int
		spec string
	}{
		{1000, "abc"},
		{1000, "ddim"},
		{1000, "ddimx"},
		{1000, "ddim-5"},
		{10, "ddim6"}, // strides 1 and 2 give 10 and 5 steps
		{10, "ddim0"},
		{1000, "10,,5"},
		{1000, "10,"},
		{1000, "-3"},
		{1000, "10,-3"},
		{300, "400"},
		{300, "10,101,10"}, // a section of 100 steps cannot give 101
		{10, "0"},          // keeps nothing
		{0, "10"},
		{1000, "1.5"},
	}
	for _, tc := range tests {
		got, err := SpaceTimesteps(tc.n, tc.spec)
		if err == nil {
			t.Errorf("SpaceTimesteps(%d, %q) = %v, want an error", tc.n, tc.spec, got)
			continue
		}
		if !strings.HasPrefix(err.Error(), "diffusion: ") {
			t.Errorf("error %q lacks the package prefix", err)
		}
	}
}

func ExampleSpaceTimesteps() {
	steps, _ := SpaceTimesteps(1000, "10")
	fmt.Println(steps)
	steps, _ = SpaceTimesteps(1000, "ddim8")
	fmt.Println(steps)
	steps, _ = SpaceTimesteps(30, "2,3,4")
	fmt.Println(steps)
	// Output:
	// [0 111 222 333 444 555 666 777 888 999]
	// [0 125 250 375 500 625 750 875]
	// [0 9 10 14 19 20 23 26 29]
}
