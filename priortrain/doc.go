// Package priortrain trains an ADM UNet (package adm) as a diffusion prior on an
// image pool, as guided-diffusion's scripts/image_train.py does (Nichol & Dhariwal
// 2021, "Improved Denoising Diffusion Probabilistic Models"; Dhariwal & Nichol 2021,
// "Diffusion Models Beat GANs on Image Synthesis").
//
// # The recipe
//
// Each optimiser step takes a batch of pool images (uint8, scaled to [-1, 1] as
// x/127.5 - 1, each flipped left-right with probability 1/2 when Options.Flip is
// set), draws one timestep per image uniformly from the original process's steps
// (guided-diffusion's UniformSampler) and standard normal noise, forms x_t with
// diffusion.QSample and minimises the batch mean of the hybrid loss (Nichol &
// Dhariwal eq. 16)
//
//	L_hybrid = L_simple + 0.001 L_vlb
//
// where L_simple = ||eps - eps_hat||^2 (mean over pixels) and L_vlb = T E_t[L_t] is
// the variational bound of a process of T steps, whose per-sample estimate L_t
// (diffusion.VBTerms, bits per dimension, with the model mean frozen so that it
// trains only the variance) is therefore weighted by T/1000. This is
// improved-diffusion's RESCALED_MSE loss; with the usual T = 1000 it is also
// guided-diffusion's MSE loss for learned sigmas (mse + vb). Models with a fixed
// variance (out_channels = in_channels) train on L_simple alone.
//
// The optimiser is AdamW (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8) with a
// constant learning rate, or one annealed linearly to 0 at Options.LRAnnealSteps.
// After every step the exponential moving average of the weights is updated,
// ema = rate ema + (1 - rate) w, starting from the initial weights; the EMA weights
// are the trained model. Options.EMAWarmup caps the rate of step k at
// (1 + k) / (10 + k), so that short runs do not keep a share of the random initial
// weights (guided-diffusion has no warm-up; egg train-prior turns it on by default). As in guided-diffusion, the last convolution of every
// residual block, the output projection of every attention block and the UNet's
// output convolution start at zero (ZeroInit); everything else has PyTorch's default
// initialisation drawn from the seed.
//
// The model receives the timestep rescaled to 0..1000 (rescale_timesteps), which is
// the original timestep for a process of 1000 steps and what egg's samplers give it.
//
// # Reproducibility and resuming
//
// Every random choice is a function of Options.Seed and the step number: step k
// draws its flips, timesteps and noise from the PCG stream (Seed, k), the image
// order of epoch e (a permutation of the train images; batches never cross an epoch,
// and the images left over at an epoch's end are skipped, like a DataLoader with
// drop_last) from its own stream. A checkpoint therefore needs no random-generator
// state beyond the step: it holds the raw weights, the EMA weights, AdamW's moments
// and step counts, the step and the settings, and a run resumed from it continues
// bit for bit as the uninterrupted run would have (same machine, same number of
// threads). Checkpoints are written atomically every Options.CheckpointEvery steps,
// at the end, when the time limit is reached and when the run is interrupted.
//
// # Model files
//
// WriteModel stores the EMA weights under guided-diffusion's state_dict names in a
// safetensors file whose metadata makes it a whole model: ConfigKey holds the
// adm.Config as JSON, DiffusionKey the process (Diffusion) and TrainingKey the
// provenance (Provenance). ReadMetadata reads the first two back.
//
// # Pools
//
// A pool is an .npz archive with images, uint8 [N, 1, S, S] (or [N, S, S]; or
// [N, C, S, S] for C-channel images), and optionally tiers, strings [N] ("train",
// "validation", ...). Training uses the "train" tier (every image when there are no
// tiers); the loss of the EMA weights on up to Options.Validation images of the
// "validation" tier, at fixed timesteps and noise, is reported at every checkpoint.
package priortrain
