// Package train fits encoding models (package encoder) to recorded responses
// (package dataset) and scores them, with the recipe of section 6 of
// docs/egg-method.md (nnvision's nnvision_trainer and neuralpredictors'
// early_stopping):
//
//   - the Poisson loss sum(y - t log(y + 1e-12)) over the images of a batch and the
//     neurons recorded in each, scaled by sqrt(N_train / batch size), plus the
//     model's regularisers (encoder.Regularizer);
//   - AdamW on encoder.Trainable (the task-driven ResNet stays frozen), with
//     ReduceLROnPlateau on the validation correlation (mode max, factor 0.3,
//     patience 5, absolute threshold 1e-4, min lr 1e-4);
//   - early stopping on the validation correlation: after Patience epochs without an
//     improvement of more than Tolerance the best weights are restored, and after
//     LRDecaySteps such rounds (or Epochs epochs) training stops with the best weights;
//   - a checkpoint after every epoch (model, best weights, optimiser, schedule,
//     early-stopping counters, random-number generators) from which Run resumes and
//     ends with the same model, bit for bit, as an uninterrupted run.
//
// # Conventions
//
// The model's inputs are z-scored pixels: ForData records the mean and standard
// deviation of the training images in the model's Config (InputMean, InputStd), and
// Run, Predict and Evaluate standardise pixels with them. Responses are [trials,
// neurons] float32, as package dataset holds them.
//
// Every random choice is seeded: NewModel draws the initial weights from the PCG
// stream (seed, 2^64-2); Run draws the order of the training images from (Seed,
// 2^64-1) and each readout's training noise from (Seed, i), i = 0, 1, ... (see
// encoder.ReseedNoise). The same seed, data, model and thread count
// give the same weights bit for bit.
//
// # Metrics
//
// Correlations are Pearson's, accumulated in float64; a constant series correlates 0
// with anything (as neuralpredictors' corr with its eps). Per neuron, over the
// trials in which it was recorded: the single-trial correlation of predictions and
// responses; the correlation of predictions and trial-averaged responses over the
// distinct images; the oracle correlation (neuralpredictors' compute_oracle_corr) of
// each trial's response with the mean of the other trials of the same image, over
// the images shown at least twice. Means over neurons skip neurons without a value.
package train
