package jsonfloat

import (
	"encoding/json"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, v := range []float64{0, -0.0, 1e-310, 0.1, 1.0 / 3, math.MaxFloat64, math.Inf(1), math.Inf(-1), math.NaN()} {
		b, err := json.Marshal(Exact(v))
		if err != nil {
			t.Fatal(err)
		}
		var back Exact
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(float64(back)) != math.Float64bits(v) && !(math.IsNaN(v) && math.IsNaN(float64(back))) {
			t.Fatalf("%v -> %s -> %v", v, b, back)
		}
	}
	var x Exact
	if err := json.Unmarshal([]byte(`"abc"`), &x); err == nil {
		t.Fatal("a non-number was accepted")
	}
}
