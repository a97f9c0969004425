// Package jsonfloat holds a float64 that survives a JSON round trip exactly, for
// the resumable training checkpoints that must restore their state bit for bit.
package jsonfloat

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Exact is a float64 that survives JSON exactly, NaN and infinities included (as the
// strings "NaN", "+Inf", "-Inf"); finite values are written in the shortest form that
// parses back to the same bits.
type Exact float64

// MarshalJSON implements json.Marshaler.
func (f Exact) MarshalJSON() ([]byte, error) {
	v := float64(f)
	s := strconv.FormatFloat(v, 'g', -1, 64)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(s)
	}
	return []byte(s), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Exact) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("jsonfloat: %s is not a number", b)
	}
	*f = Exact(v)
	return nil
}
