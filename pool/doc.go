// Package pool cuts folders of photographs into image pools: grayscale patches of
// one size, at several scales, with a contrast threshold, optional mirror images, a
// fixed-seed train/validation split and the origin of every patch, stored as uint8
// in an .npz archive.
//
// Pools are what egg's diffusion prior is trained on, what `egg simulate` shows to
// its simulated neurons, and where most exciting natural images are searched.
//
// # How a pool is cut
//
// Build walks a folder (recursively, in lexical order) for PNG and JPEG files and
// reads them one at a time (several goroutines decode, the results are taken in file
// order), so that a folder of any size fits in memory; only the kept patches are
// held, S*S bytes each (Options.Max bounds them). For each image:
//
//  1. it is converted to gray: the luma Y' = 0.299 R' + 0.587 G' + 0.114 B' of
//     ITU-R BT.601 on the stored (gamma-encoded) 8-bit values, which for JPEG files is
//     their Y channel, in [0, 255];
//  2. for each scale s in Options.Scales it is downsampled to round(s*W) x round(s*H)
//     pixels by area averaging (each output pixel is the mean of the input area it
//     covers, the antialiasing resize of OpenCV's INTER_AREA), and S x S patches are
//     cut with their top-left corners at multiples of Options.Stride (S: no overlap);
//  3. each patch is rounded to uint8 and rejected when its RMS contrast, the standard
//     deviation of its pixels on the [0, 1] scale, is below Options.MinContrast;
//  4. with Options.PerImage, a random subset of the image's patches is kept;
//  5. with Options.Flips, the mirror image (left-right) of every kept patch follows it
//     as an extra patch in the same tier.
//
// The split into Train and Validation is by image (Options.SplitBy "image", the
// default: a random round(ValFraction * images) of the files give validation
// patches, so that no photograph is in both tiers) or by patch ("patch": each patch
// and its mirror image is a validation patch with probability ValFraction). With
// Options.Max, a uniform random subset of Max patches is kept (reservoir sampling
// over the stream, a patch and its mirror image counted together), in file order.
//
// Every random choice is seeded by Options.Seed: those about one image by the seed
// and the image's path (so adding files to the folder changes no other file's
// patches), the split by image and the subset of Max by the seed alone. The same
// folder, options and seed give the same pool, byte for byte.
//
// # The file
//
// A pool is an .npz archive (deflated) with
//
//	images   [N, 1, S, S] uint8     the patches
//	tiers    [N] strings            "train" or "validation"
//	source   [N] strings            "file:scale:x:y:flip" (see Source)
//	files    [F] strings            the images read, relative to the folder, '/'-separated
//	settings [1] string             the Options as JSON
//	manifest [L] strings            the lines of the folder's manifest.tsv, when there is one
//
// which numpy.load reads as is. Read reads it back.
package pool
