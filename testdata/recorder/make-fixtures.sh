#!/usr/bin/env bash
# Regenerates the recorder's test fixtures. Run from testdata/recorder/; needs
# ffmpeg with libopus and libvpx. The outputs are committed.
set -euo pipefail
# A second resolution for the mid-call resolution change: 2 s of a test
# pattern, 160x120 at 30 fps, VP8 in IVF, a keyframe every 2 s.
ffmpeg -y -v error -f lavfi -i "testsrc=size=160x120:rate=30:duration=2" -pix_fmt yuv420p \
  -c:v libvpx -b:v 80k -deadline realtime -cpu-used 8 -g 60 -keyint_min 60 -auto-alt-ref 0 video-160x120.ivf
# A/V sync: a 50 ms 1 kHz click at exactly 2.000 s in 4 s of silence ...
ffmpeg -y -v error -f lavfi -i "aevalsrc='if(between(t,2,2.05),0.8*sin(2*PI*1000*t),0)':s=48000:d=4" \
  -ac 2 -c:a libopus -b:a 32k -frame_duration 20 -application audio sync-click.ogg
# ... and black video with white frames from exactly 1.000 s (frames 30-32)
# in 3 s at 30 fps, keyframe every second. The test starts the video 1 s after
# the audio, so the flash and the click are simultaneous on the sender.
ffmpeg -y -v error -f lavfi -i "color=c=black:size=160x120:rate=30:duration=3" \
  -vf "drawbox=enable='between(n,30,32)':color=white:t=fill" -pix_fmt yuv420p \
  -c:v libvpx -b:v 100k -deadline realtime -cpu-used 8 -g 30 -keyint_min 30 -auto-alt-ref 0 sync-flash.ivf
# VP9: 1 s of a test pattern, 160x120 at 30 fps, no hidden (alt-ref) frames,
# so every IVF frame is one displayed frame.
ffmpeg -y -v error -f lavfi -i "testsrc=size=160x120:rate=30:duration=1" -pix_fmt yuv420p \
  -c:v libvpx-vp9 -b:v 80k -deadline realtime -cpu-used 8 -g 30 -keyint_min 30 -auto-alt-ref 0 -lag-in-frames 0 video-vp9.ivf
