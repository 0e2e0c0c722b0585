#!/usr/bin/env bash
# Download PASCAL VOC 2012 trainval and the NYU Depth v2 labelled set, extract VOC, convert NYU to our layout.
# Resumable and idempotent: run it again after an interruption. See --help.
set -euo pipefail

VOC_URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_MD5="6cd6e144f989b92b3379bac3b3de84fd"
NYU_MAT_URL="http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
NYU_SPLITS_URL="http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
# NYU publishes no checksums for these two files (and none was found in public references), so they are
# verified by a sanity check only: the MATLAB header and a plausible size. The labelled set is "~2.8 GB" on
# the dataset page: anything under 2.5 GB is an incomplete download. splits.mat is a few kB.
NYU_MAT_MIN_BYTES=2500000000
NYU_SPLITS_MIN_BYTES=200
NYU_SPLITS_MAX_BYTES=10000000

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${MTV_DATA_DIR:-data}"
ONLY="all"
EXTRACT=1
CONVERT=1

usage() {
  cat <<EOF
Usage: scripts/download_data.sh [--data-dir DIR] [--only voc|nyu] [--no-extract] [--no-convert] [-h|--help]

Downloads into DIR (default: \$MTV_DATA_DIR, else ./data):
  DIR/downloads/VOCtrainval_11-May-2012.tar   PASCAL VOC 2012 trainval (~2 GB, md5 checked)
  DIR/downloads/nyu_depth_v2_labeled.mat      NYU Depth v2 labelled set (~2.8 GB, header/size checked)
  DIR/downloads/splits.mat                    NYU's official train/test split (795 / 654 images)
then
  extracts VOC to        DIR/VOCdevkit/VOC2012      (VOCMultitaskDataset data_root)
  converts NYU to        DIR/nyuv2                  (NYUv2Dataset data_root; label_dir label13 or label40)

Downloads resume (curl -C - / wget -c) from DIR/downloads/<file>.part; files already complete and verified
are skipped, and so are the extraction (once done) and converted NYU files (the converter skips outputs that
exist). Nothing is deleted: a file that fails its check after downloading is moved to <file>.bad.

Options:
  -d, --data-dir DIR   target folder (also: MTV_DATA_DIR=DIR)
      --only voc|nyu   only one of the two datasets
      --no-extract     do not extract the VOC tar
      --no-convert     do not run the NYU converter (scripts/convert_nyu.py)
  -h, --help           this help

Environment: MTV_PYTHON overrides the Python command running the converter
(default: 'uv run --project <repo> python' if uv is installed, else python3).
EOF
}

log() { printf '[download_data] %s\n' "$*"; }
die() {
  printf '[download_data] error: %s\n' "$*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    -d | --data-dir)
      [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a folder (see --help)"
      DATA_DIR="$2"
      shift 2
      ;;
    --data-dir=*)
      DATA_DIR="${1#*=}"
      shift
      ;;
    --only)
      [[ $# -ge 2 ]] || die "--only needs 'voc' or 'nyu' (see --help)"
      ONLY="$2"
      shift 2
      ;;
    --only=*)
      ONLY="${1#*=}"
      shift
      ;;
    --no-extract)
      EXTRACT=0
      shift
      ;;
    --no-convert)
      CONVERT=0
      shift
      ;;
    *)
      printf '[download_data] error: unknown argument %q (see --help)\n' "$1" >&2
      exit 2
      ;;
  esac
done
case "$ONLY" in
  all | voc | nyu) ;;
  *) die "--only must be 'voc' or 'nyu', got '$ONLY'" ;;
esac
[[ -n "$DATA_DIR" ]] || die "empty data folder"
DL_DIR="$DATA_DIR/downloads"

file_size() { wc -c <"$1" | tr -d ' '; }

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then
    md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then
    md5 -q "$1"
  else
    python3 -c 'import hashlib, sys
h = hashlib.md5()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
  fi
}

# verify_md5 FILE MD5: a stamp FILE.md5-ok (size + mtime) saves re-hashing gigabytes on every run
verify_md5() {
  local file="$1" expected="$2" stamp actual
  stamp="$(file_size "$file") $(date -r "$file" +%s) $expected"
  if [[ -f "$file.md5-ok" && "$(cat "$file.md5-ok")" == "$stamp" ]]; then
    return 0
  fi
  log "checking md5 of $file ..."
  actual="$(md5_of "$file")"
  if [[ "$actual" != "$expected" ]]; then
    log "md5 of $file is $actual, expected $expected"
    return 1
  fi
  printf '%s\n' "$stamp" >"$file.md5-ok"
}

# verify_matlab FILE HEADER_PREFIX MIN_BYTES [MAX_BYTES]: header + size sanity check (no published checksum)
verify_matlab() {
  local file="$1" prefix="$2" min="$3" max="${4:-}" size header
  size="$(file_size "$file")"
  header="$(head -c "${#prefix}" "$file")"
  if [[ "$header" != "$prefix" ]]; then
    log "$file does not start with '$prefix' (not the expected MATLAB file)"
    return 1
  fi
  if ((size < min)) || { [[ -n "$max" ]] && ((size > max)); }; then
    log "$file has $size bytes, expected ${min}${max:+..$max} (incomplete download?)"
    return 1
  fi
}

fetch() { # fetch URL PART: resume PART from its current size
  local url="$1" part="$2"
  if command -v curl >/dev/null 2>&1; then
    curl --fail --location --retry 3 --retry-delay 5 --continue-at - --output "$part" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget --continue --tries=3 --output-document="$part" "$url"
  else
    die "need curl or wget to download $url"
  fi
}

# obtain NAME URL VERIFY_CMD...: make DL_DIR/NAME a complete, verified download
obtain() {
  local name="$1" url="$2"
  shift 2
  local dest="$DL_DIR/$name" part="$DL_DIR/$name.part"
  mkdir -p "$DL_DIR"
  if [[ -f "$dest" ]]; then
    if "$@" "$dest"; then
      log "ok: $dest is complete, skipping the download"
      return 0
    fi
    log "$dest is incomplete or damaged: resuming its download"
    mv -f "$dest" "$part"
  fi
  log "downloading $url -> $dest"
  if ! fetch "$url" "$part"; then
    die "download of $url failed; partial data kept in $part: re-run to resume (delete it if it is damaged)"
  fi
  if ! "$@" "$part"; then
    mv -f "$part" "$dest.bad"
    die "$url downloaded but fails its check; moved to $dest.bad: delete it and re-run"
  fi
  mv -f "$part" "$dest"
  log "ok: $dest"
}

check_voc_md5() { verify_md5 "$1" "$VOC_MD5"; }
check_nyu_mat() { verify_matlab "$1" "MATLAB 7.3 MAT-file" "$NYU_MAT_MIN_BYTES"; }
check_nyu_splits() { verify_matlab "$1" "MATLAB" "$NYU_SPLITS_MIN_BYTES" "$NYU_SPLITS_MAX_BYTES"; }

if [[ "$ONLY" != nyu ]]; then
  obtain VOCtrainval_11-May-2012.tar "$VOC_URL" check_voc_md5
  voc_root="$DATA_DIR/VOCdevkit/VOC2012"
  if ((EXTRACT)); then
    if [[ -f "$voc_root/.extracted" ]]; then
      log "ok: $voc_root already extracted, skipping"
    else
      log "extracting VOC to $DATA_DIR/VOCdevkit ..."
      tar -xf "$DL_DIR/VOCtrainval_11-May-2012.tar" -C "$DATA_DIR"
      for sub in JPEGImages Annotations SegmentationClass ImageSets/Main ImageSets/Segmentation; do
        [[ -d "$voc_root/$sub" ]] || die "the VOC tar has no VOC2012/$sub (wrong archive?)"
      done
      touch "$voc_root/.extracted"
      log "ok: $voc_root"
    fi
  fi
fi

if [[ "$ONLY" != voc ]]; then
  obtain nyu_depth_v2_labeled.mat "$NYU_MAT_URL" check_nyu_mat
  obtain splits.mat "$NYU_SPLITS_URL" check_nyu_splits
  if ((CONVERT)); then
    if [[ -n "${MTV_PYTHON:-}" ]]; then
      read -r -a PY <<<"$MTV_PYTHON"
    elif command -v uv >/dev/null 2>&1; then
      PY=(uv run --project "$REPO_ROOT" python)
    else
      PY=(python3)
    fi
    log "converting NYUv2 to $DATA_DIR/nyuv2 (existing files are kept) ..."
    "${PY[@]}" "$REPO_ROOT/scripts/convert_nyu.py" --mat "$DL_DIR/nyu_depth_v2_labeled.mat" \
      --splits "$DL_DIR/splits.mat" --out "$DATA_DIR/nyuv2" ||
      die "NYU conversion failed (see above); re-run to continue"
    log "ok: $DATA_DIR/nyuv2"
  fi
fi
log "done"
