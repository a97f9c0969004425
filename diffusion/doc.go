// Package diffusion implements the Gaussian diffusion of OpenAI's guided-diffusion
// (gaussian_diffusion.py and respace.py) number for number: beta schedules, timestep
// respacing, the schedule arrays, the DDPM and DDIM steps and the training-loss terms.
//
// # Conventions
//
// Schedules are computed once, in float64, by New, and kept under the names of the
// maths (Schedule.PosteriorMeanCoef1 is guided-diffusion's posterior_mean_coef1). The
// steps work on float32 tensors of package egg/tensor, shaped [N, C, ...] (images are
// [N, C, H, W]); a model output with learned variance is [N, 2C, ...], epsilon (or x0,
// or x_{t-1}) in the first C channels and the variance value v in the last C. Like
// guided-diffusion's _extract_into_tensor, a step reads its coefficients from the
// float64 arrays, rounds them to float32 and then computes in float32 in the reference's
// order of operations, so the results match PyTorch to the last bit or so.
//
// Every step is differentiable: when x_t (or the model output computed from it)
// requires a gradient, so do the outputs, which is what energy guidance needs to
// back-propagate from the predicted x0 through the UNet to x_t.
//
// Indices. A Schedule of S respaced steps is indexed by i in [0, S); the model is
// called with ModelTimestep(i), the original timestep TimestepMap[i] (scaled to 0..1000
// when RescaleTimesteps is set). Sampling runs i = S-1 down to 0. Sampling steps take one
// index for the whole batch; training functions take one index per sample.
//
// Functions share their leading arguments (the schedule, then x), in the manner of
// k-diffusion's samplers. Programmer errors (shapes, indices out of range) panic;
// configuration errors are returned by New and SpaceTimesteps.
//
// # The maths
//
// Forward process (Ho et al. 2020, "Denoising Diffusion Probabilistic Models", eqs. 2
// and 4), with alpha_t = 1 - beta_t and abar_t = prod_{s<=t} alpha_s:
//
//	q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I)
//	q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I)          (QSample)
//
// Posterior (Ho et al. eqs. 6-7):
//
//	q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)
//	mu~_t   = beta_t sqrt(abar_{t-1}) / (1 - abar_t) x_0 + (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t) x_t
//	        = PosteriorMeanCoef1 x_0 + PosteriorMeanCoef2 x_t
//	beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t                 (PosteriorVariance)
//
// PosteriorLogVarianceClipped is log beta~_t with beta~_0 = 0 replaced by beta~_1.
//
// Epsilon prediction (Ho et al. eq. 15 rearranged, PredictXStartFromEps):
//
//	x0_hat = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps
//
// and the model mean is mu~_t(x_t, x0_hat) (Ho et al. eq. 11).
//
// Learned variance (Nichol & Dhariwal 2021, "Improved Denoising Diffusion Probabilistic
// Models", eq. 15), VarLearnedRange: with v in [-1, 1] from the model and f = (v+1)/2,
//
//	log Sigma = f log beta_t + (1 - f) log beta~_t
//
// VarLearned takes the model output as log Sigma itself; VarFixedSmall uses beta~_t and
// VarFixedLarge beta_t (with beta~_1 at t = 0). EGG (Pierzchlewicz et al. 2023) clamps
// log Sigma at 5 before drawing the noise (Config.LogVarianceClamp).
//
// DDPM step (Ho et al. Algorithm 2, PSample): x_{t-1} = mu + exp(log Sigma / 2) z with
// z ~ N(0, I), and no noise at the last step (i = 0).
//
// DDIM step (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eqs. 12
// and 16, DDIMSample):
//
//	sigma   = eta sqrt((1 - abar_prev)/(1 - abar)) sqrt(1 - abar/abar_prev)
//	x_{t-1} = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps + sigma z
//
// Respacing (Nichol & Dhariwal 2021, section 4): keeping the original timesteps
// t_0 < t_1 < ... < t_{S-1} (SpaceTimesteps), the respaced process has
// beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}} (with abar_{t_{-1}} = 1), from which every
// other array is recomputed as above.
//
// Training (Nichol & Dhariwal 2021, eq. 16, the hybrid loss): L_simple = ||eps - eps_hat||^2
// (Ho et al. eq. 14) plus the variational-bound term L_vb of the respaced step, computed
// with the model mean frozen (its gradient reaches only the variance), in bits per
// dimension: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0 (Ho et al. eq. 5) and the
// discretized Gaussian decoder negative log-likelihood at t = 0 (Ho et al. eq. 13).
package diffusion
