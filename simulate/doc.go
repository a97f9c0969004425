// Package simulate is a ground truth for egg: a simulated population of V4-like
// neurons whose responses to natural image patches stand in for a recording, so
// that digital twins trained on them, and the MEIs made from the twins, can be
// checked against neurons whose preferences are known.
//
// # The model
//
// The model is built from oriented energy, as in models of V1 complex cells feeding
// V4 (Adelson & Bergen 1985; Heeger 1992; Pasupathy & Connor 2001 for V4's shape
// tuning; Cadieu et al. 2007 for V4 as nonlinear combinations of oriented
// subunits), and is unlike egg's CNN twins in kind: fixed Gabor filters, squaring,
// divisive normalisation, multiplicative conjunctions and soft-max pooling over
// position. For an input x [N, 1, S, S] of z-scored pixels (S a multiple of 4, at least 32):
//
//  1. Oriented energy. A pyramid of x (levels 0, 1, 2: x and its 2x2 and 4x4 average
//     pools) is filtered by quadrature pairs of Gabor filters at 8 orientations
//     (wavelength 5 pixels at each level, so 5, 10 and 20 pixels of the input;
//     envelope sigma 0.56 wavelengths, about one octave of bandwidth; zero mean,
//     unit norm). Energy = even^2 + odd^2, averaged over cells of 4x4 input pixels:
//     24 channels (3 levels x 8 orientations) on a G x G grid, G = S/4. Orientation
//     theta is that of the edge or bar a channel prefers (0: horizontal, angles
//     counter-clockwise on the screen, in [0, 180) degrees).
//  2. Divisive normalisation (Heeger 1992). Each channel is divided by Sigma plus
//     the summed energy of all channels, blurred over neighbouring cells (Gaussian,
//     1 cell): responses lie in [0, 1) and saturate with contrast (Sigma = 1 is
//     about the summed energy of a low-contrast natural patch), and energy at other
//     orientations and scales suppresses them.
//  3. Subunits. A subunit is a non-negative weighting of the normalised energy over
//     channels (von Mises tuning over orientation, a preferred level and its
//     neighbours) and over a 5x5-cell neighbourhood (a Gaussian at an offset from
//     the cell), computed at every cell (a convolution).
//  4. Conjunction. A neuron multiplies two subunits, c = sqrt((a + Eps)(b + Eps)),
//     an AND: it responds when both are driven. Three kinds of neurons:
//     angle neurons combine two edges meeting at a vertex (arms 60-120 degrees
//     apart) and curve neurons two edges on an arc (orientations 25-50 degrees
//     apart, at the positions a circle through the cell would have them), the
//     curvature and corner selectivity of V4; texture neurons pool one or two
//     orientations at one scale over a wider neighbourhood (c = a + Eps).
//  5. Position tolerance. The conjunction map is pooled over the receptive field
//     with a soft maximum, u = (1/beta) log sum_p m(p) exp(beta c(p)), where m is a
//     Gaussian window (sigma 1-2 cells for shape neurons, 2-3.5 for texture neurons)
//     around the neuron's centre (near the image centre) and beta (2-4 for shape
//     neurons: nearly a maximum over positions; 0.5-1 for texture neurons: nearly
//     a weighted mean).
//  6. Output. rate = A softplus(g log(u) + b): with calibration (Calibrate), g and b
//     are such that rate = A softplus(gamma (z - tau)) where z is log(u)
//     standardised over the calibration images (the log compresses the heavy upper
//     tail of the drive), gamma in [0.8, 1.4] and tau in [0.25, 1] per neuron, and A
//     makes the mean rate over the calibration images the neuron's target. Responses
//     are sparse: most patches drive a neuron little, a few strongly.
//
// Rates are expected spike counts in a counting window of Config.Window seconds
// (DefaultWindow, 0.2 s); the neurons' mean rates over the calibration images are
// drawn log-uniformly from MinRate to MaxRate spikes per second (5-20), so a trial
// has 1-4 spikes on average, and the strongest of some thousands of natural patches
// drive 4-12 times the mean (up to about 200 spikes/s). Responses are Poisson counts
// with these rates: on 64x64 patches of the photographs of scripts/fetch-images.sh
// (seed 0, 100 neurons), the rates have a single-trial correlation of about 0.75
// with the responses, the ceiling for a twin.
//
// Every random choice (the kinds of the neurons, their orientations, levels,
// offsets, centres, windows, thresholds, gains and target rates) comes from a PCG
// source seeded by Config.Seed, so a seed is a population.
//
// # Conventions
//
// Inputs are [N, 1, S, S] float32 tensors of z-scored pixels, (pixel -
// Config.InputMean) / Config.InputStd with the pixel statistics of the data set's
// training images, as egg's encoding models take them; outputs are [N, Neurons]
// rates. The model is differentiable (it is made of package tensor's ops) and
// implements encoder.Model, so it can be evaluated and optimised like a twin. Its
// file is a safetensors file whose metadata key MetadataKey holds the Config and
// the description of every neuron (Save, Load); the tensors in the file are the
// model, so a file keeps its meaning if this package changes.
//
// Dataset shows a pool's patches to a model and draws the responses: train and
// validation trials from the pool's train patches, test trials from its validation
// patches, each test image shown several times (independent Poisson draws).
package simulate
