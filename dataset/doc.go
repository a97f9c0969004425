// Package dataset reads the recordings that encoding models are trained and evaluated
// on: images shown to an animal and the responses of the recorded neurons to each
// presentation (a trial).
//
// Two layouts are read:
//
//   - an .npz archive (numpy.savez) with images [N, 1, H, W] or [N, H, W] (uint8 or
//     float) and responses [N, neurons]; optionally tiers [N] (strings "train",
//     "validation", "test"), image_ids [N] (integers; trials that showed the same
//     image share an id, which finds the repeats), mask [N, neurons] (booleans:
//     whether the neuron was recorded during the trial) and neuron_ids [neurons];
//   - the static folder of sinzlab's neuralpredictors (FileTreeDataset): one file per
//     trial in data/images/<i>.npy ([1, H, W] or [H, W]) and data/responses/<i>.npy
//     ([neurons]), and per-trial metadata in meta/trials/tiers.npy and
//     meta/trials/frame_image_id.npy, neuron ids in meta/neurons/unit_ids.npy.
//
// # Conventions
//
// Data are float32 and row-major: Images is [N, C, H, W] pixels as stored (0-255 for
// uint8 images), Responses and Mask are [N, Neurons]. Trial i belongs to Tiers[i].
// Responses where Mask is false are not data: they may be NaN in the files and read
// as 0. A data set without tiers is split into train and validation trials by
// Split with the fixed seed SplitSeed (all trials of one image land in the same
// tier), so every run sees the same split; it then has no test trials.
//
// Input problems (missing arrays, mismatched counts, NaN or infinite values) are
// returned as errors that name the file, the array and the index, and say what to
// do.
package dataset
