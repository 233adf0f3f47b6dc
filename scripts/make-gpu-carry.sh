#!/usr/bin/env bash
# Prepare what scripts/gpu-check.sh needs on the lent GPU machine, which has no internet, no ffmpeg
# and no NVENC: H.264 test clips (encoded here with Debian's ffmpeg/libx264) and the PyNvVideoCodec
# wheel, in the git-ignored folder .carry/ (about 35 MB, under the 64 MiB the device tool carries).
# Then: device run --carry .carry 'bash scripts/gpu-check.sh'
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${SRC:-../shared/data/bigbuckbunny.mp4}
mkdir -p .carry/clips .carry/wheels
command -v ffmpeg >/dev/null || { echo "needs ffmpeg with libx264: apt-get install ffmpeg" >&2; exit 1; }
[ -f "$SRC" ] || { echo "needs a source clip: $SRC" >&2; exit 1; }
# 3,000 frames each (the 132-frame clip looped), H.264 yuv420p as real footage is; <= 8 MB together.
[ -f .carry/clips/1080p.mp4 ] || ffmpeg -hide_banner -loglevel error -y -stream_loop 22 -i "$SRC" -vf scale=1920:1080 \
  -c:v libx264 -preset veryfast -crf 37 -pix_fmt yuv420p -an -frames:v 3000 .carry/clips/1080p.mp4
[ -f .carry/clips/360p.mp4 ] || ffmpeg -hide_banner -loglevel error -y -stream_loop 22 -i "$SRC" -vf scale=640:360 \
  -c:v libx264 -preset veryfast -crf 32 -pix_fmt yuv420p -an -frames:v 3000 .carry/clips/360p.mp4
# a corpus of short 1080p clips (the batch job: many 12 s videos), 300 frames each from 4 offsets
for i in 0 1 2 3; do
  [ -f .carry/clips/corpus1080p_$i.mp4 ] || ffmpeg -hide_banner -loglevel error -y -stream_loop 3 -i "$SRC" -ss $((i * 1)) \
    -vf scale=1920:1080 -c:v libx264 -preset veryfast -crf 37 -pix_fmt yuv420p -an -frames:v 300 .carry/clips/corpus1080p_$i.mp4
done
# the shared test clip, which the GPU tests compare on (../shared does not travel)
mkdir -p .carry/data && cp -f "$SRC" .carry/data/bigbuckbunny.mp4
# the lent machine's Python is 3.12 on x86_64
ls .carry/wheels/pynvvideocodec-*-cp312-*.whl >/dev/null 2>&1 || python3 -m pip download -q --no-deps -d .carry/wheels \
  --python-version 3.12 --only-binary=:all: --platform manylinux_2_28_x86_64 pynvvideocodec
du -sh .carry/clips .carry/data .carry/wheels
