// Package encoder holds the encoding models of EGG: neural networks that map images
// to the firing rates of recorded neurons (section 6 of docs/egg-method.md).
//
// A model is a core (SE2dCore, the data-driven depth-separable CNN of nnvision, or
// ResNetCore, a task-driven ResNet-50 truncated after layer3.0) followed by a readout
// (GaussianReadout, neuralpredictors' isotropic FullGaussian2d, or AttentionReadout,
// the paper's shared multi-head attention readout) and the output nonlinearity
// ELU(x + offset) + 1. Ensemble averages several models after their nonlinearity.
//
// # Conventions
//
// Images are [N, 1, H, W] float32 tensors of z-scored pixels (Config.InputMean and
// Config.InputStd record the transform); outputs are [N, neurons]. Feature maps are
// [N, C, H, W]. Every tensor carries the PyTorch state_dict name of the reference
// implementation (nnvision / neuralpredictors / torchvision), so real checkpoints load
// without conversion: core.features.layer0.conv.weight, readout.all_sessions._mu,
// core.features.TaskDriven.layer1.0.conv1.weight, ...
//
// Models start in evaluation mode (running BatchNorm statistics, no sampled readout
// positions, no dropout); SetTraining(true) switches to the reference's training
// behaviour, which draws its noise from the seeded source in each readout's Noise
// field. Parameters do not require gradients until the caller asks (Trainable lists
// those a trainer should update; the task-driven core is frozen by default).
//
// A model is not safe for concurrent use (Forward clamps the Gaussian readout's
// positions in place, and training draws from the readouts' noise sources); give each
// goroutine its own copy.
//
// egg's own model files are safetensors whose metadata key "egg.encoder" holds the
// Config as JSON (Save, Load); Import reads nnvision/neuralpredictors checkpoints
// (.pt, .pth.tar) for a given Config.
package encoder
