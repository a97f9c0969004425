// Package optim updates parameters from their gradients with PyTorch's optimisers
// (SGD, Adam, AdamW) and its ReduceLROnPlateau learning-rate schedule.
//
// # Conventions
//
// The update rules are those of torch 1.13's single-tensor (non-foreach) CPU code in
// torch/optim/sgd.py, adam.py and adamw.py, with the same arithmetic: hyper-parameters
// and bias corrections are float64 (Python floats) and each is rounded to float32
// where PyTorch hands it to a float32 tensor op; the element-wise updates are float32
// in PyTorch's order, with a fused multiply-add where PyTorch's AVX2 kernels have one
// (add with alpha, addcmul). So an egg run reproduces a PyTorch (CPU, AVX2) run bit
// for bit, step for step.
//
// Parameters are tensors of package tensor; Step reads each parameter's Grad
// (skipping parameters without one) and writes the new values into the parameter's
// data in place. Parameters come in groups (Group) that share a learning rate and a
// weight decay; schedules such as ReduceLROnPlateau change Group.LR between steps.
//
// State and LoadState save and restore everything an optimiser accumulates (step
// counts and moment buffers as plain float32 slices, and the learning rates), so that
// training can resume; the caller serialises it.
//
// Invalid hyper-parameters (a negative learning rate, betas outside [0, 1)) are
// programmer errors: constructors panic with the offending value.
package optim
