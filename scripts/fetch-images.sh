#!/usr/bin/env bash
# fetch-images.sh CACHE_DIR: fetch the natural photographs egg's default image pool is
# cut from.
#
# The photographs come from Debian packages, fetched with `apt-get download` and
# unpacked with `dpkg -x` under CACHE_DIR (nothing is installed system-wide; any user
# can run it). The chosen files are copied to CACHE_DIR/images/<package>/ and listed
# in CACHE_DIR/manifest.tsv with their package, version, path, licence, copyright
# holder and SHA-256. `egg pool --images CACHE_DIR/images` finds the manifest and
# stores it inside the pool.
#
# Every file's licence is checked against what its package says before it is used:
#   dep5     the stanza of /usr/share/doc/<package>/copyright whose Files: line names
#            the file must give the licence of the table below;
#   skimage  the docstring of the skimage.data function that loads the file must say
#            CC0 or public domain (the Debian copyright file covers the code only);
#   blanket  the Files: * stanza of the copyright file must give the licence (the
#            package records no per-file licence: OpenCV's sample images).
# A file whose check fails is skipped with a message, and the script exits 1.
#
# Licences: CC0-1.0 and public domain need nothing; CC-BY-4.0 needs attribution
# (the manifest's copyright column); CC-BY-SA-3.0/4.0 also asks that adapted material
# (arguably weights trained on the photographs) be shared under a compatible licence:
# drop those rows (`--no-sharealike`) where that matters; Apache-2.0 AND BSD-3-Clause
# (OpenCV samples) need the licence notice.
#
# Considered and rejected (reason):
#   python3-scipy        scipy.datasets (face, ascent) are downloaded at run time by
#                        pooch; the Debian package holds no image
#   lomiri-wallpapers    warty-final-ubuntu.png, lomiri-default-background.png:
#                        abstract digital art, not photographs
#   lomiri-wallpapers-16.04  umang_by_Abhishek_Mudgal.jpg (abstract gradient),
#                        analogpattern_by_Peter_Nerlich.jpg (abstract pattern)
#   lomiri-wallpapers-20.04  Fossa_by_Jasper_Roks.jpg (illustration),
#                        Infinite-Sea_by_Aury88.jpg (digital composite),
#                        Painting-Colors_by__herobrine7gamer.jpg (abstract painting)
#   python3-skimage      horse.png (silhouette), clock_motion.png (synthetic motion
#                        blur), hubble_deep_field.jpg (astronomy, not a scene),
#                        retina.jpg, microaneurysms.png, cell.png, ihc.png (medical or
#                        microscopy), coins.png, moon.png, motorcycle_*.png (no
#                        licence stated, only "no known copyright restrictions" or
#                        Middlebury benchmark terms), text.png, page.png, logo.png,
#                        chessboard*, phantom.png, color.png (text or synthetic)
#   opencv-doc           lena* (removed by Debian), messi5.jpg (press photograph),
#                        baboon.jpg (USC-SIPI, rights unknown), starry_night.jpg
#                        (painting), aloe*, rubberwhale*, basketball*, tsukuba
#                        (Middlebury benchmark), graf*, leuven* (Oxford affine data
#                        set), HappyFish.jpg, smarties.png, blox.jpg, Blender_Suzanne*,
#                        pca_test1.jpg, cards.png, pic*.png (drawings or renderings),
#                        left*/right* chessboards, text_*, sudoku.png, notes.png,
#                        licenseplate_motion.jpg (synthetic motion blur)
#   gnome-backgrounds    illustrations and renderings (SVG, WebP), not photographs
#   ukui-wallpapers      digital art (CC-BY-SA-3.0), not photographs
#   mate-backgrounds     GPL-2+: a software licence with unclear terms for weights
#   plasma-workspace-wallpapers  GPL-2+ in the Debian copyright file, LGPLv3 or
#                        CC-BY-SA-4.0 in the metadata; mostly digital art
#
# Usage: scripts/fetch-images.sh [--no-sharealike] CACHE_DIR
# Needs apt-get, dpkg and sha256sum, and an up-to-date package list (run
# `apt-get update` as root once if apt-get download cannot find a package).
# Exit status: 0 when every listed file was fetched and checked, 1 otherwise, 2 on
# a usage error.
set -euo pipefail

sharealike=1
if [[ ${1:-} == --no-sharealike ]]; then
	sharealike=0
	shift
fi
if [[ $# -ne 1 ]]; then
	echo "usage: $0 [--no-sharealike] CACHE_DIR" >&2
	exit 2
fi
cache=$(mkdir -p "$1" && cd "$1" && pwd)

# package <TAB> path in the package <TAB> licence <TAB> check <TAB> copyright holder
files=$(
	cat <<'EOF'
lomiri-wallpapers-16.04	usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg	CC-BY-SA-4.0	dep5	2018 Sander Klootwijk
lomiri-wallpapers-16.04	usr/share/backgrounds/Dragonfly_by_Bolly.jpg	CC-BY-SA-4.0	dep5	2018 "Bolly"
lomiri-wallpapers-16.04	usr/share/backgrounds/Picture_0B_by_freespace.jpg	CC-BY-4.0	dep5	2018 Trevor "Freespace"
lomiri-wallpapers-16.04	usr/share/backgrounds/Picture_1A_by_freespace.jpg	CC-BY-4.0	dep5	2018 Trevor "Freespace"
lomiri-wallpapers-16.04	usr/share/backgrounds/Wine_by_Jakkub_Mede.jpg	CC-BY-4.0	dep5	2018 Jakub Mede
lomiri-wallpapers-16.04	usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg	CC-BY-4.0	dep5	2018 Aitzol Berasategi
lomiri-wallpapers-16.04	usr/share/backgrounds/free_by_Peter_Nerlich.jpg	CC-BY-SA-4.0	dep5	2018 Peter Nerlich
lomiri-wallpapers-16.04	usr/share/backgrounds/friends_by_Aitzol_Berasategi.jpg	CC-BY-4.0	dep5	2018 Aitzol Berasategi
lomiri-wallpapers-16.04	usr/share/backgrounds/greentock_by_Peter_Nerlich.jpg	CC-BY-SA-4.0	dep5	2018 Peter Nerlich
lomiri-wallpapers-16.04	usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg	CC-BY-4.0	dep5	2018 Aitzol Berasategi
lomiri-wallpapers-16.04	usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg	CC-BY-4.0	dep5	2018 Aitzol Berasategi
lomiri-wallpapers-16.04	usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg	CC0-1.0	dep5	2018 Clemens Engelhardt
lomiri-wallpapers-16.04	usr/share/backgrounds/sunset_by_Aitzol_Berasategi.jpg	CC-BY-4.0	dep5	2018 Aitzol Berasategi
lomiri-wallpapers-20.04	usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg	CC-BY-SA-3.0	dep5	2021 Lukas Baubkus
python3-skimage	usr/lib/python3/dist-packages/skimage/data/camera.png	CC0-1.0	skimage	Lav Varshney
python3-skimage	usr/lib/python3/dist-packages/skimage/data/astronaut.png	public-domain	skimage	NASA
python3-skimage	usr/lib/python3/dist-packages/skimage/data/brick.png	CC0-1.0	skimage	CC0Textures (Bricks25)
python3-skimage	usr/lib/python3/dist-packages/skimage/data/grass.png	CC0-1.0	skimage	CC0Textures
python3-skimage	usr/lib/python3/dist-packages/skimage/data/gravel.png	CC0-1.0	skimage	CC0Textures (Gravel04)
python3-skimage	usr/lib/python3/dist-packages/skimage/data/chelsea.png	CC0-1.0	skimage	Stefan van der Walt
python3-skimage	usr/lib/python3/dist-packages/skimage/data/coffee.png	CC0-1.0	skimage	Rachel Michetti
python3-skimage	usr/lib/python3/dist-packages/skimage/data/rocket.jpg	public-domain	skimage	SpaceX
opencv-doc	usr/share/doc/opencv-doc/examples/data/aero1.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/aero3.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/apple.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/board.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/box_in_scene.png	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/building.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/butterfly.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/chicky_512.png	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/ela_original.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/fruits.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/home.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/left.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/orange.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/squirrel_cls.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
opencv-doc	usr/share/doc/opencv-doc/examples/data/stuff.jpg	Apache-2.0 AND BSD-3-Clause	blanket	OpenCV contributors
EOF
)

# dep5_licence COPYRIGHT NAME prints the License: of the stanza whose Files: names
# NAME (the basename, possibly behind a folder), or of Files: * when none does.
dep5_licence() {
	awk -v name="$2" '
		function flush() {
			if (files != "" && lic != "") {
				n = split(files, f, /[ \t]+/)
				for (i = 1; i <= n; i++) {
					if (f[i] == name || f[i] ~ ("/" name "$")) found = lic
					if (f[i] == "*" && star == "") star = lic
				}
			}
			files = ""; lic = ""; infiles = 0
		}
		/^$/ { flush(); next }
		/^Files:/ { files = substr($0, 7); infiles = 1; next }
		/^[ \t]/ { if (infiles) files = files " " $0; next }
		/^License:/ { lic = $2; infiles = 0; next }
		{ infiles = 0 }
		END { flush(); print (found != "" ? found : star) }
	' "$1"
}

# skimage_says_free FETCHERS FILE succeeds when the docstring of the function that
# loads data/FILE says CC0 or public domain.
skimage_says_free() {
	awk -v want="\"data/$2\"" '
		BEGIN { RS = "\ndef " }
		index($0, want) { if ($0 ~ /CC0|[Pp]ublic [Dd]omain/) ok = 1 }
		END { exit ok ? 0 : 1 }
	' "$1"
}

rm -rf "$cache/images" # our own copies: rebuilt every run
mkdir -p "$cache/debs" "$cache/root" "$cache/images"
packages=$(cut -f1 <<<"$files" | sort -u)
for p in $packages; do
	if ! compgen -G "$cache/debs/${p}_*.deb" >/dev/null; then
		echo "fetching $p" >&2
		if ! (cd "$cache/debs" && apt-get download "$p" >/dev/null); then
			echo "fetch-images: apt-get download $p failed; run 'apt-get update' as root and try again" >&2
			exit 1
		fi
	fi
	deb=$(compgen -G "$cache/debs/${p}_*.deb" | sort | tail -n1)
	if [[ ! -d $cache/root/$p ]]; then
		dpkg -x "$deb" "$cache/root/$p.tmp"
		mv "$cache/root/$p.tmp" "$cache/root/$p"
	fi
done

manifest=$cache/manifest.tsv
tmp=$manifest.tmp
printf 'package\tversion\tfile\timage\tlicence\tcopyright\tsha256\n' >"$tmp"
failed=0
kept=0
while IFS=$'\t' read -r pkg path licence check holder; do
	[[ -z $pkg ]] && continue
	if [[ $sharealike == 0 && $licence == CC-BY-SA-* ]]; then
		continue
	fi
	root=$cache/root/$pkg
	src=$root/$path
	base=$(basename "$path")
	if [[ ! -f $src ]]; then
		echo "fetch-images: $pkg has no $path; skipped" >&2
		failed=1
		continue
	fi
	copyright=$root/usr/share/doc/$pkg/copyright
	case $check in
	dep5) got=$(dep5_licence "$copyright" "$base") ;;
	blanket) got=$(dep5_licence "$copyright" "no such file") ;;
	skimage)
		got=""
		if skimage_says_free "$root/usr/lib/python3/dist-packages/skimage/data/_fetchers.py" "$base"; then
			got=$licence
		fi
		;;
	*) got="unknown check $check" ;;
	esac
	if [[ $check == blanket ]]; then
		# The copyright file writes the Files: * licence as "Apache-2.0 AND BSD-3-Clause".
		got=$(awk '/^Files: \*$/ { s = 1; next } s && /^License:/ { sub(/^License: */, ""); print; exit }' "$copyright")
	fi
	if [[ $got != "$licence" ]]; then
		echo "fetch-images: $pkg $path: the package gives licence '${got:-none}', expected '$licence'; skipped" >&2
		failed=1
		continue
	fi
	version=$(dpkg-deb -f "$(compgen -G "$cache/debs/${pkg}_*.deb" | sort | tail -n1)" Version)
	mkdir -p "$cache/images/$pkg"
	cp "$src" "$cache/images/$pkg/$base"
	sum=$(sha256sum "$src" | cut -d' ' -f1)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pkg" "$version" "/$path" "$pkg/$base" "$licence" "$holder" "$sum" >>"$tmp"
	kept=$((kept + 1))
done <<<"$files"
mv "$tmp" "$manifest"
echo "fetch-images: $kept images in $cache/images, listed in $manifest" >&2
exit $failed
