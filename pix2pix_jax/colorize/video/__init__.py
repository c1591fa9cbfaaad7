"""Video colourisation, one concern per module:

  probe        the ffmpeg binary, what a file holds, ffmpeg's errors in one line
  reader       decord or ffmpeg-pipe decoding on a background thread
  writer       ffmpeg encoding on a writer thread, audio remux
  pipeline     colorize_video: reader -> colorizer.Colorizer -> writer
  memory       glibc malloc settings for the commands
  sample_clip  pan/zoom sample clips (pix2pix-make-sample OUT)

Importing this package imports none of them (nor decord, JAX or TensorFlow).
"""
