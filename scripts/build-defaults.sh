#!/usr/bin/env bash
# build-defaults.sh [--stage NAME]... WORK_DIR: rebuild egg's built-in defaults (the
# files under models/ that the binary embeds) from nothing but Debian packages and
# egg's own commands.
#
# Stages, in order (all by default; --stage runs only the ones named, so a long run can
# be done in pieces; every stage reads what earlier ones left in WORK_DIR):
#   images    scripts/fetch-images.sh WORK_DIR/images (photographs + manifest)
#   pool      egg pool: 32x32 grayscale patches at scales 1/2, 1/4, 1/8, mirrored,
#             validation images held out (seed 1)             -> pool32.npz
#   simulate  egg simulate: 100 V4-like neurons on 12,000 of the train patches,
#             100 test images x 10 repeats (seed 0)            -> v4.npz, v4_truth.safetensors
#   prior     egg train-prior: the default prior, resumable in pieces: rerun the stage
#             until it prints "trained"                        -> prior.safetensors
#   twins     egg train: two architectures x two ensembles x two members (8 models)
#   smallpool egg pool: the few thousand patches shipped for natural-image search
#   install   copy the results into models/ (the binary embeds them at the next build)
#
# The same commands on the same machine give the same files, bit for bit (every step
# is seeded); another CPU may differ in the last bits of the trained weights.
# Times on a 2-core machine: images ~2 min, pool 10 s, simulate 30 s, prior ~1.5 h
# (--steps below), twins ~1 h, smallpool 10 s.
set -euo pipefail

stages=()
while [[ ${1:-} == --stage ]]; do
	stages+=("$2")
	shift 2
done
if [[ $# -ne 1 ]]; then
	echo "usage: $0 [--stage images|pool|simulate|prior|twins|smallpool|install]... WORK_DIR" >&2
	exit 2
fi
work=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [[ ${#stages[@]} -eq 0 ]]; then
	stages=(images pool simulate prior twins smallpool install)
fi

# PRIOR_STEPS: training steps of the prior (the shipped prior: see models/README.md).
PRIOR_STEPS=${PRIOR_STEPS:-12000}
# TWIN_EPOCHS: epochs per twin (the shipped twins: 6).
TWIN_EPOCHS=${TWIN_EPOCHS:-6}

egg=$work/egg
(cd "$repo" && go build -o "$egg" ./cmd/egg)

run() {
	echo "+ $*" >&2
	"$@"
}

for stage in "${stages[@]}"; do
	case $stage in
	images)
		run "$repo/scripts/fetch-images.sh" "$work/images"
		;;
	pool)
		run "$egg" pool --images "$work/images/images" --out "$work/pool32.npz" \
			--size 32 --scales 0.5,0.25,0.125 --flips --seed 1 --quiet
		;;
	simulate)
		run "$egg" simulate --images "$work/pool32.npz" --out "$work/v4.npz" \
			--neurons 100 --repeats 10 --test 100 --max 12000 --seed 0 --quiet -j 1
		;;
	prior)
		run "$egg" train-prior --pool "$work/pool32.npz" --out "$work/prior.safetensors" \
			--steps "$PRIOR_STEPS" --lr 3e-4 --ema 0.999 --noise-schedule cosine \
			--checkpoint-every 250 --validation 64 --seed 1 --resume --quiet -j 2 \
			--time-limit "${PRIOR_TIME_LIMIT:-0}"
		;;
	twins)
		# Architecture A: the data-driven core with the attention readout; B: a deeper
		# core with smaller kernels and the Gaussian readout. Ensemble 1 of A drives
		# MEIs, ensemble 2 of A is "within", ensemble 1 of B is "cross".
		seed=0
		for arch in attention gaussian; do
			for ens in 1 2; do
				for member in 0 1; do
					seed=$((seed + 1))
					out=$work/twin_${arch}_${ens}_${member}.safetensors
					if [[ -f $out ]]; then
						continue
					fi
					if [[ $arch == attention ]]; then
						flags=(--arch data-driven-attention --channels 32 --layers 3 --input-kern 9 --hidden-kern 5 --embed-dim 32)
					else
						flags=(--arch data-driven-gaussian --channels 32 --layers 4 --input-kern 7 --hidden-kern 3)
					fi
					run "$egg" train --data "$work/v4.npz" "${flags[@]}" --epochs "$TWIN_EPOCHS" \
						--seed "$seed" --out "$out" --resume --quiet -j 1
				done
			done
		done
		;;
	smallpool)
		run "$egg" pool --images "$work/images/images" --out "$work/pool_small.npz" \
			--size 32 --scales 0.5,0.25,0.125 --seed 1 --per-image 100 --max 3000 --quiet
		;;
	install)
		mkdir -p "$repo/models/data"
		for f in prior.safetensors v4_truth.safetensors pool_small.npz twin_*_[01].safetensors; do
			cp "$work/$f" "$repo/models/data/"
		done
		cp "$work/images/manifest.tsv" "$repo/models/data/images-manifest.tsv"
		echo "installed into $repo/models/data; rebuild egg to embed them" >&2
		;;
	*)
		echo "unknown stage $stage" >&2
		exit 2
		;;
	esac
done
