"""The clip tab: a clip's shots as a strip of first frames; a frame of a shot hinted in the
editor as a photo (a keyframe); a preview of the shot; the whole clip colourised with a progress
bar, then played and offered with its keyframe file."""

import html
import os
import threading

import gradio as gr

from pix2pix_jax.app import clip_actions, common, editor
from pix2pix_jax.app import engine as engine_lib
from pix2pix_jax.app.clip_actions import ClipState

IDLE = f"Upload a clip ({', '.join(clip_actions.VIDEO_TYPES)})."


def describe(state: ClipState) -> str:
  """The status line's clip part: the shot, the keyframes."""
  clip = state.clip
  if clip is None:
    return ""
  shot = clip.shot_of(state.frame or 0)
  keys = ", ".join(str(t) for t, _ in state.hinted) or "none yet"
  return (
    f" · **{html.escape(clip.name)}**: {clip.frames} frames, shot {shot + 1} of "
    f"{len(clip.shots)} · keyframes with hints: {keys}"
  )


def build(engine: engine_lib.Engine, files: common.SessionFiles) -> None:
  """The clip tab's components and events, in the Blocks being built."""
  ed = editor.Editor(
    engine,
    files,
    prefix="clip_",
    get=clip_actions.current,
    put=clip_actions.put,
    idle=IDLE,
    describe=describe,
  )
  state = gr.State(ClipState())
  with gr.Row():
    with gr.Column(scale=1, min_width=260):
      upload = gr.UploadButton(
        "Upload a clip", file_types=list(clip_actions.VIDEO_TYPES), type="filepath"
      )
      if not engine.takes_hints:
        gr.Markdown(f"**Hint tools are off**: {html.escape(engine.hints_off_reason)}")
      ed.tools()
    with gr.Column(scale=4):
      ed.status_line(IDLE)
      shots = gr.Gallery(
        label="Shots (their first frames): click one to hint it",
        columns=8,
        fit_columns=False,
        height=150,
        allow_preview=False,
        object_fit="contain",
        elem_id="p2p-shots",
      )
      frame = gr.Slider(0, 1, value=0, step=1, label="Frame to hint (within the shot)")
      ed.views()
      with gr.Row():
        preview = gr.Button("Preview the shot")
        run = gr.Button("Colourise the clip", variant="primary")
      previewed = gr.Gallery(
        label="Preview: frames of the shot, the hints moving with the picture (no smoothing)",
        columns=clip_actions.PREVIEW_FRAMES,
        height=180,
        allow_preview=True,
        elem_id="p2p-preview",
      )
      video = gr.Video(
        label="The colourised clip", interactive=False, height=360, elem_id="p2p-video"
      )
      downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
      command = gr.Code(label="The same video from the command line", language="shell")
  _wire(engine, files, ed, state, upload, shots, frame, preview, previewed)
  ed.wire(state)
  colourised = _colouriser(engine, files)
  common.wire([video, downloads, command], run.click, colourised, [state], "clip_colourise")


def _wire(engine, files, ed, state, upload, shots, frame, preview, previewed) -> None:
  """The clip's own events: upload, a shot or a frame chosen, the preview."""

  def slider(s: ClipState):
    first, end = s.clip.shot_range(s.clip.shot_of(s.frame))
    return gr.Slider(minimum=first, maximum=max(first, end - 1), value=s.frame)

  def on_upload(s, path, mode, request: gr.Request):
    if path is None:
      return [*ed.show(s, mode, request), gr.skip(), gr.skip(), gr.skip()]
    files.uploaded(request, path)
    s = clip_actions.open_clip(engine, s, path, os.path.basename(path))
    strip = [
      (files.show(request, f"clip_shot{i}.jpg", thumb), f"frame {t}")
      for i, (t, thumb) in enumerate(zip(s.clip.shots, s.clip.thumbs, strict=True))
    ]
    return [*ed.show(s, mode, request), strip, slider(s), []]

  def on_shot(s, mode, evt: gr.SelectData, request: gr.Request):
    s = clip_actions.select_shot(engine, s, evt.index)
    return [*ed.show(s, mode, request), slider(s)]

  def on_frame(s, t, mode, request: gr.Request):
    if s.clip is None:
      return ed.show(s, mode, request)
    return ed.show(clip_actions.select_frame(engine, s, t), mode, request)

  def on_preview(s, request: gr.Request):
    s = clip_actions.preview(engine, s)
    shown = [
      (files.show(request, f"clip_preview{i}.jpg", rgb), f"frame {t}")
      for i, (t, rgb) in enumerate(s.preview)
    ]
    return s, shown

  outputs = [state, *ed.outputs, ed.listed, ed.status]
  view = ed.view
  common.wire(
    [*outputs, shots, frame, previewed],
    upload.upload,
    on_upload,
    [state, upload, view],
    "clip_upload",
  )
  common.wire([*outputs, frame], shots.select, on_shot, [state, view], None)
  common.wire(outputs, frame.release, on_frame, [state, frame, view], "clip_frame")
  common.wire([state, previewed], preview.click, on_preview, [state], "clip_preview")


def _colouriser(engine: engine_lib.Engine, files: common.SessionFiles):
  """The Colourise handler: the run on a thread, its frames counted into the page's progress
  bar."""

  def on_colourise(s: ClipState, request: gr.Request, progress=gr.Progress()):  # noqa: B008
    if s.clip is None:
      raise gr.Error("No clip yet: upload one.", print_exception=False)
    folder = os.path.join(files.folder(request), "clip")
    done, outcome = [0], {}

    def count(n: int) -> None:
      done[0] += n

    def work() -> None:
      try:
        outcome["result"] = clip_actions.colourise(engine, s, folder, count)
      except Exception as e:  # raised again on the handler's thread
        outcome["error"] = e

    thread = threading.Thread(target=work, name="colourise", daemon=True)
    thread.start()
    total = s.clip.frames
    while thread.is_alive():
      if not done[0]:
        progress(0.0, desc="Reading the clip (the hints' first pass)")
      elif done[0] < total:
        progress((done[0], total), desc="Colourising", unit="frames")
      else:
        progress(1.0, desc="Encoding")
      thread.join(0.25)
    if "error" in outcome:
      raise outcome["error"]
    return outcome["result"]

  return on_colourise
