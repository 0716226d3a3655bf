#!/usr/bin/env bash
# Regenerates the committed media fixtures. Run from testdata/; needs ffmpeg with libopus and libvpx.
# The outputs are committed, so tests do not need ffmpeg to run the media through the SFU.
set -euo pipefail
# 10 s of a 440 Hz tone, 48 kHz stereo Opus in Ogg, 20 ms packets.
ffmpeg -y -v error -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" -ac 2 \
  -c:a libopus -b:a 24k -frame_duration 20 -application voip \
  -page_duration 20000 audio.ogg  # one Opus packet per Ogg page, so a page is a sample
# 6 s of a moving test pattern, 320x240 at 30 fps, VP8 in IVF, a keyframe every 2 s.
ffmpeg -y -v error -f lavfi -i "testsrc=size=320x240:rate=30:duration=6" -pix_fmt yuv420p \
  -c:v libvpx -b:v 150k -deadline realtime -cpu-used 8 -g 60 -keyint_min 60 -auto-alt-ref 0 video.ivf
