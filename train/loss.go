package train

import (
	"fmt"
	"slices"

	"egg/tensor"
)

// PoissonEps is added to the predictions inside the logarithm of PoissonLoss, as in
// neuralpredictors' PoissonLoss.
const PoissonEps = 1e-12

// PoissonLoss returns the Poisson negative log-likelihood (up to the constant
// log t!) of targets t under predicted rates y, summed over the entries where mask
// is 1: sum(mask * (y - t * log(y + PoissonEps))), a scalar. pred and target are
// [N, neurons]; mask is nil (every entry counts) or of their shape with 0s and 1s.
// It panics when the shapes differ.
func PoissonLoss(pred, target, mask *tensor.Tensor) *tensor.Tensor {
	if !slices.Equal(pred.Shape(), target.Shape()) || (mask != nil && !slices.Equal(mask.Shape(), pred.Shape())) {
		panic(fmt.Sprintf("train: PoissonLoss: predictions %v, targets %v and mask %v differ in shape", pred.Shape(), target.Shape(), shapeOf(mask)))
	}
	l := tensor.Sub(pred, tensor.Mul(target, tensor.Log(tensor.AddScalar(pred, PoissonEps))))
	if mask != nil {
		l = tensor.Mul(l, mask)
	}
	return tensor.Sum(l, false)
}

func shapeOf(t *tensor.Tensor) []int {
	if t == nil {
		return nil
	}
	return t.Shape()
}
