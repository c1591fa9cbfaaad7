"""The page (Gradio Blocks): a header and tabs. `photo_tab` builds the photo tab in the Blocks
being built; a clip tab is meant to be built the same way beside it.

Each browser tab's state is one `session.Session` in a gr.State; the Engine (the model) is shared
and read-only. A session's own files (its downloads) are removed when its tab closes.
"""

import functools
import glob
import html
import os
import shutil
import tempfile

import gradio as gr
import numpy as np
from PIL import Image

from pix2pix_jax import errors, images
from pix2pix_jax.app import actions, canvas, palette, session
from pix2pix_jax.app import engine as engine_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib

VIEWS = ("Result", "Side by side", "Slider")
# Gradio's own cache (the images it serves): every 10 minutes, files older than an hour go.
DELETE_CACHE = (600, 3600)
GESTURE_ID = "p2p-gesture"
CANVAS_ID = "p2p-canvas"

# Drags on the canvas: Gradio reports clicks (`.select`) but not drags, so this script sends a
# drag's path, in the shown image's pixels, to a hidden textbox whose input event the server
# handles; the click that ends a drag is swallowed.
DRAG_SCRIPT = """
<script>
(() => {
  window.p2pDragReady = true;
  let drag = null, swallow = false;
  const pos = (img, e) => {
    const r = img.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const left = r.left + (r.width - img.naturalWidth * s) / 2;
    const top = r.top + (r.height - img.naturalHeight * s) / 2;
    return [(e.clientX - left) / s, (e.clientY - top) / s];
  };
  document.addEventListener("pointerdown", (e) => {
    const img = e.button === 0 && e.target.closest && e.target.closest("#CANVAS img");
    if (!img || !img.naturalWidth) return;
    e.preventDefault();
    drag = {img, x: e.clientX, y: e.clientY, moved: false, path: [pos(img, e)]};
  }, true);
  document.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) > 4) drag.moved = true;
    const p = pos(drag.img, e), q = drag.path[drag.path.length - 1];
    if (Math.hypot(p[0] - q[0], p[1] - q[1]) >= 2) drag.path.push(p);
  }, true);
  document.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    if (!d.moved) return;
    d.path.push(pos(d.img, e));
    swallow = true;
    setTimeout(() => { swallow = false; }, 300);
    const box = document.querySelector("#GESTURE textarea, #GESTURE input");
    if (!box) return;
    const size = [d.img.naturalWidth, d.img.naturalHeight];
    const text = JSON.stringify({path: d.path, size, t: Date.now()});
    const proto = Object.getPrototypeOf(box);
    Object.getOwnPropertyDescriptor(proto, "value").set.call(box, text);
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }, true);
  document.addEventListener("click", (e) => {
    if (swallow && e.target.closest && e.target.closest("#CANVAS")) {
      e.stopPropagation();
      e.preventDefault();
      swallow = false;
    }
  }, true);
})();
</script>
""".replace("CANVAS", CANVAS_ID).replace("GESTURE", GESTURE_ID)

CSS = """
#p2p-canvas img { cursor: crosshair; touch-action: none; user-select: none; }
#p2p-palette img, #p2p-recent img { cursor: pointer; }
"""


def samples() -> dict[str, str]:
  """The embedded sample photos by file name."""
  found = sorted(glob.glob(os.path.join(images.SAMPLES_DIR, "*", "*.jpg")))
  return {os.path.basename(p): p for p in found}


def _user_errors(fn):
  """A UserError (bad file, hints) becomes a message in the page; the session is unchanged."""

  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except errors.UserError as e:
      raise gr.Error(html.escape(str(e)), print_exception=False) from e

  return wrapped


def session_folder(root: str, request: gr.Request) -> str:
  """A browser session's own folder under `root` (its downloads, the list of its uploads)."""
  name = (request.session_hash if request is not None else None) or "api"
  return os.path.join(root, "".join(c for c in name if c.isalnum() or c in "-_") or "api")


def remove_session_files(root: str, request: gr.Request) -> None:
  """Removes a session's folder (when its tab closes). Uploads and the images shown stay in
  Gradio's cache, shared by content between sessions: DELETE_CACHE clears it."""
  shutil.rmtree(session_folder(root, request), ignore_errors=True)


def write_image(folder: str, name: str, image: np.ndarray) -> str:
  """Writes `image` as folder/name (JPEG or PNG by the extension) in one step; returns it."""
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, name)
  fd, part = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
  with os.fdopen(fd, "wb") as f:
    if name.endswith(".jpg"):
      Image.fromarray(image).save(f, "JPEG", quality=90)
    else:
      Image.fromarray(image).save(f, "PNG", compress_level=1)
  os.replace(part, path)
  return path


def _gray_rgb(photo: engine_lib.Photo) -> np.ndarray:
  """The photo's lightness as RGB at the preview size (what the slider compares with)."""
  gray = np.asarray(photo.preview_lightness[0, ..., 0]) / 100.0
  return np.repeat(np.round(gray * 255).astype(np.uint8)[..., None], 3, axis=-1)


def photo_tab(engine: engine_lib.Engine, root: str) -> None:
  """The photo tab's components and events, in the Blocks being built. `root`: the folder of
  the sessions' files."""
  takes_hints = engine.takes_hints
  state = gr.State(session.Session())
  with gr.Row():
    with gr.Column(scale=1, min_width=260):
      upload = gr.UploadButton("Upload a photo", file_types=["image"], type="filepath")
      sample = gr.Dropdown(
        list(samples()), value=None, label="…or a sample photo", interactive=True
      )
      if not takes_hints:
        gr.Markdown(f"**Hint tools are off**: {html.escape(engine.hints_off_reason)}")
      picker = gr.ColorPicker(
        session.hex_of(session.Session().colour), label="Colour", interactive=takes_hints
      )
      pal = gr.Image(
        palette.plane(50.0),
        label="Colours that exist at the selected pixel's lightness",
        interactive=False,
        buttons=[],
        elem_id="p2p-palette",
        format="png",
        height=200,
      )
      recent = gr.Image(
        canvas.swatches(()),
        label="Recent colours",
        interactive=False,
        buttons=[],
        elem_id="p2p-recent",
        format="png",
        height=64,
      )
      suggest = gr.Button("Model's colour at the selected hint", interactive=takes_hints)
      width = gr.Slider(1, 60, value=8, step=1, label="Stroke width (photo pixels)")
      with gr.Row():
        undo = gr.Button("Undo", interactive=takes_hints, min_width=60)
        delete = gr.Button("Delete", interactive=takes_hints, min_width=60)
        clear = gr.Button("Clear", interactive=takes_hints, min_width=60)
      listed = gr.Dropdown([], value=None, label="Hints", interactive=takes_hints)
    with gr.Column(scale=4):
      status = gr.Markdown("Upload a photo or pick a sample.", elem_id="p2p-status")
      with gr.Row(equal_height=True):
        board = gr.Image(
          label="Hints: click to put a point, drag to paint, drag a point to move it",
          interactive=False,
          buttons=["fullscreen"],
          elem_id=CANVAS_ID,
          format="jpeg",
        )
        result = gr.Image(
          label="Result",
          interactive=False,
          buttons=["fullscreen"],
          format="jpeg",
          elem_id="p2p-result",
        )
      slider = gr.ImageSlider(label="Compare", visible=False, format="jpeg", interactive=False)
      with gr.Row():
        saturation = gr.Slider(0, 2, value=1.0, step=0.05, label="Saturation")
        view = gr.Radio(list(VIEWS), value=VIEWS[0], label="Compare")
        reference = gr.UploadButton(
          "Reference photo", file_types=["image"], type="filepath", size="md"
        )
        no_reference = gr.Button("No reference", size="md")
      with gr.Row():
        save = gr.Button("Save result and hints", variant="primary")
      downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
      command = gr.Code(label="The same result from the command line", language="shell")
      gesture = gr.Textbox(visible="hidden", elem_id=GESTURE_ID)

  views = [state, board, result, slider, pal, recent, picker, listed, status]

  def show(s: session.Session, mode: str, request: gr.Request, *, both: bool = False):
    """The components' values for session `s` in compare mode `mode` (`both`: the slider's
    value too when it is hidden). Images go as files of the session's own folder: Gradio
    writes arrays to a cache shared by content, which two sessions' equal images can race on."""
    folder = session_folder(root, request)
    photo, hints = s.photo, s.hints
    choices = [(f"{i + 1}: {h.describe()}", i) for i, h in enumerate(hints.hints)]
    common = [
      write_image(folder, "palette.png", palette.plane(actions.palette_lightness(s))),
      write_image(folder, "recent.png", canvas.swatches(hints.recent)),
      session.hex_of(s.colour),
      gr.Dropdown(choices=choices, value=hints.selected),
    ]
    if photo is None:
      empty = None if both else gr.skip()
      return [s, None, None, empty, *common, "Upload a photo or pick a sample."]
    preview = s.rendered.preview
    source = _gray_rgb(photo)
    shown = colorizer_lib.side_by_side(source, preview) if mode == VIEWS[1] else preview
    pair = gr.skip()
    if both or mode == VIEWS[2]:
      pair = (write_image(folder, "source.jpg", source), write_image(folder, "pair.jpg", preview))
    width_, height_ = photo.size
    text = (
      f"**{html.escape(photo.name)}** · {width_}x{height_} · {len(hints.hints)} hints · "
      f"refreshed in {s.rendered.seconds * 1000:.0f} ms"
    )
    if s.reference_name:
      text += f" · reference {html.escape(s.reference_name)}"
    board_image = write_image(folder, "hints.jpg", canvas.draw(photo.gray, hints, photo.size))
    return [s, board_image, write_image(folder, "result.jpg", shown), pair, *common, text]

  def on_upload(s, path, mode, request: gr.Request):
    if path is None:
      return show(s, mode, request)
    return show(actions.open_photo(engine, s, path, os.path.basename(path)), mode, request)

  def on_sample(s, name, mode, request: gr.Request):
    if not name:
      return show(s, mode, request)
    return show(actions.open_photo(engine, s, samples()[name]), mode, request)

  def on_click(s, mode, evt: gr.SelectData, request: gr.Request):
    if s.photo is None:
      return show(s, mode, request)
    x, y = evt.index
    return show(actions.click(engine, s, x, y, s.photo.display_size), mode, request)

  def on_gesture(s, data, stroke_width, mode, request: gr.Request):
    if not data or s.photo is None:
      return show(s, mode, request)
    return show(actions.gesture(engine, s, data, int(stroke_width)), mode, request)

  def on_colour(s, text, mode, request: gr.Request):
    try:
      rgb = session.rgb_of(text or "")
    except ValueError as e:
      raise gr.Error(str(e), print_exception=False) from e
    return show(actions.set_colour(engine, s, rgb), mode, request)

  def on_palette(s, mode, evt: gr.SelectData, request: gr.Request):
    x, y = evt.index
    return show(actions.pick_palette(engine, s, x, y), mode, request)

  def on_recent(s, mode, evt: gr.SelectData, request: gr.Request):
    rgb = canvas.swatch_at(evt.index[0], s.hints.recent)
    return show(s if rgb is None else actions.set_colour(engine, s, rgb), mode, request)

  def on_select(s, index, mode, request: gr.Request):
    return show(actions.select(s, index), mode, request)

  def edit(fn):
    def on_edit(s, mode, request: gr.Request):
      return show(fn(engine, s), mode, request)

    return on_edit

  def on_saturation(s, value, mode, request: gr.Request):
    return show(actions.set_saturation(engine, s, value), mode, request)

  def on_reference(s, path, mode, request: gr.Request):
    name = None if path is None else os.path.basename(path)
    return show(actions.set_reference(engine, s, path, name), mode, request)

  def on_no_reference(s, mode, request: gr.Request):
    return on_reference(s, None, mode, request)

  def on_view(s, mode, request: gr.Request):
    updates = show(s, mode, request, both=True)
    result_shown = gr.Image(value=updates[2], visible=mode != VIEWS[2])
    slider_shown = gr.ImageSlider(value=updates[3], visible=mode == VIEWS[2])
    return [updates[0], updates[1], result_shown, slider_shown, *updates[4:]]

  def on_save(s, request: gr.Request):
    folder = session_folder(root, request)
    paths, line = actions.save(engine, s, folder)
    return paths, line

  guarded = functools.partial(_wire, views)
  guarded(upload.upload, on_upload, [state, upload, view], "upload")
  guarded(sample.input, on_sample, [state, sample, view], "sample")
  guarded(board.select, on_click, [state, view], None)
  guarded(gesture.change, on_gesture, [state, gesture, width, view], "gesture")
  guarded(picker.input, on_colour, [state, picker, view], "colour")
  guarded(pal.select, on_palette, [state, view], None)
  guarded(recent.select, on_recent, [state, view], None)
  guarded(listed.input, on_select, [state, listed, view], "select")
  guarded(suggest.click, edit(actions.model_colour), [state, view], "model_colour")
  guarded(undo.click, edit(actions.undo), [state, view], "undo")
  guarded(delete.click, edit(actions.delete), [state, view], "delete")
  guarded(clear.click, edit(actions.clear), [state, view], "clear")
  guarded(saturation.release, on_saturation, [state, saturation, view], "saturation")
  guarded(reference.upload, on_reference, [state, reference, view], "reference")
  guarded(no_reference.click, on_no_reference, [state, view], "no_reference")
  guarded(view.input, on_view, [state, view], "view")
  save.click(_user_errors(on_save), [state], [downloads, command], api_name="save")


def _wire(outputs, event, fn, inputs, api_name) -> None:
  kwargs = {"api_name": api_name} if api_name else {"api_visibility": "private"}
  event(_user_errors(fn), inputs, outputs, **kwargs)


def build(engine: engine_lib.Engine, root: str, *, title: str = "pix2pix_jax: colour by eye"):
  """The whole page; `root`: the folder under which each session keeps its files."""
  with gr.Blocks(title=title, delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
    gr.Markdown(f"## {html.escape(title)}\n{html.escape(engine.description)}")
    with gr.Tabs():
      with gr.Tab("Photo"):
        photo_tab(engine, root)
      # A clip tab (keyframe hints on a clip's shots) goes here, built as photo_tab is.

    def on_unload(request: gr.Request):
      remove_session_files(root, request)

    demo.unload(on_unload)
  return demo


def new_root() -> str:
  """A folder for the sessions' files of one server."""
  return tempfile.mkdtemp(prefix="pix2pix-app-")
