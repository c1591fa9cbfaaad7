"""The hint editor both tabs use: the hint canvas, the result, the colour and hint tools and the
colour controls, bound to "the current Session" of a tab's state (`get` and `put`: the photo
tab's state is its Session; the clip tab's holds one Session per keyframe)."""

import functools
import html
import os
from collections.abc import Callable
from typing import Any

import gradio as gr
import numpy as np

from pix2pix_jax.app import actions, canvas, common, palette, session
from pix2pix_jax.app import engine as engine_lib
from pix2pix_jax.colorize import colorizer as colorizer_lib

VIEWS = common.VIEWS

# Drags on a canvas (an element of class p2p-drawable whose id ends in "canvas"): Gradio reports
# clicks (`.select`) but not drags, so this script sends a drag's path, in the shown image's
# pixels, to the hidden textbox of the same id ending in "gesture", whose input event the server
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
    const img = e.button === 0 && e.target.closest && e.target.closest(".p2p-drawable img");
    if (!img || !img.naturalWidth) return;
    e.preventDefault();
    const host = img.closest(".p2p-drawable");
    drag = {img, host, x: e.clientX, y: e.clientY, moved: false, path: [pos(img, e)]};
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
    const id = d.host.id.replace(/canvas$/, "gesture");
    const box = document.querySelector(`#${id} textarea, #${id} input`);
    if (!box) return;
    const size = [d.img.naturalWidth, d.img.naturalHeight];
    const text = JSON.stringify({path: d.path, size, t: Date.now()});
    const proto = Object.getPrototypeOf(box);
    Object.getOwnPropertyDescriptor(proto, "value").set.call(box, text);
    box.dispatchEvent(new Event("input", {bubbles: true}));
  }, true);
  document.addEventListener("click", (e) => {
    if (swallow && e.target.closest && e.target.closest(".p2p-drawable")) {
      e.stopPropagation();
      e.preventDefault();
      swallow = false;
    }
  }, true);
})();
</script>
"""

CSS = """
.p2p-drawable img { cursor: crosshair; touch-action: none; user-select: none; }
.p2p-swatches img { cursor: pointer; }
"""


class Editor:
  """The editor's components (built by `tools` and `views` in the Blocks being built) and their
  events (`wire`). `prefix`: of the elements' ids, the image files' names and the API names."""

  def __init__(
    self,
    engine: engine_lib.Engine,
    files: common.SessionFiles,
    *,
    prefix: str = "",
    get: Callable[[Any], session.Session] = lambda state: state,
    put: Callable[[Any, session.Session], Any] = lambda state, s: s,
    idle: str = "Upload a photo or pick a sample.",
    describe: Callable[[Any], str] = lambda state: "",
  ):
    """get: the state's current Session; put: the state with it replaced; idle: the status
    without a photo; describe: more status text for the state."""
    self.engine, self.files, self.prefix = engine, files, prefix
    self.get, self.put, self.idle, self.describe = get, put, idle, describe
    self.ids = f"p2p-{prefix.replace('_', '-')}" if prefix else "p2p-"

  def tools(self) -> None:
    """The colour and hint tools (a column's worth)."""
    on = self.engine.takes_hints
    self.picker = gr.ColorPicker(
      session.hex_of(session.Session().colour), label="Colour", interactive=on
    )
    self.pal = gr.Image(
      palette.plane(50.0),
      label="Colours that exist at the selected pixel's lightness",
      interactive=False,
      buttons=[],
      elem_id=f"{self.ids}palette",
      elem_classes=["p2p-swatches"],
      format="png",
      height=200,
    )
    self.recent = gr.Image(
      canvas.swatches(()),
      label="Recent colours",
      interactive=False,
      buttons=[],
      elem_id=f"{self.ids}recent",
      elem_classes=["p2p-swatches"],
      format="png",
      height=64,
    )
    self.suggest = gr.Button("Model's colour at the selected hint", interactive=on)
    self.width = gr.Slider(1, 60, value=8, step=1, label="Stroke width (photo pixels)")
    with gr.Row():
      self.undo = gr.Button("Undo", interactive=on, min_width=60)
      self.delete = gr.Button("Delete", interactive=on, min_width=60)
      self.clear = gr.Button("Clear", interactive=on, min_width=60)
    self.listed = gr.Dropdown([], value=None, label="Hints", interactive=on)

  def status_line(self, text: str | None = None) -> None:
    self.status = gr.Markdown(text or self.idle, elem_id=f"{self.ids}status")

  def views(self, what: str = "photo") -> None:
    """The hint canvas and the result, the compare slider and the colour controls."""
    with gr.Row(equal_height=True):
      self.board = gr.Image(
        label="Hints: click to put a point, drag to paint, drag a point to move it",
        interactive=False,
        buttons=["fullscreen"],
        elem_id=f"{self.ids}canvas",
        elem_classes=["p2p-drawable"],
        format="jpeg",
      )
      self.result = gr.Image(
        label="Result",
        interactive=False,
        buttons=["fullscreen"],
        format="jpeg",
        elem_id=f"{self.ids}result",
      )
    self.slider = gr.ImageSlider(label="Compare", visible=False, format="jpeg", interactive=False)
    with gr.Row():
      self.saturation = gr.Slider(0, 2, value=1.0, step=0.05, label="Saturation")
      self.view = gr.Radio(list(VIEWS), value=VIEWS[0], label="Compare")
      self.reference = gr.UploadButton(
        "Reference photo", file_types=["image"], type="filepath", size="md"
      )
      self.no_reference = gr.Button("No reference", size="md")
    self.gesture = gr.Textbox(visible="hidden", elem_id=f"{self.ids}gesture")

  @property
  def outputs(self) -> list:
    """What `show` updates, after the state."""
    return [self.board, self.result, self.slider, self.pal, self.recent, self.picker]

  def show(self, state: Any, mode: str, request: gr.Request, *, both: bool = False) -> list:
    """The values of [state, *outputs, listed, status] for `state` in compare mode `mode`
    (`both`: the slider's value too when it is hidden). Images go as files of the session's
    own folder (`SessionFiles.show`)."""
    show, name = functools.partial(self.files.show, request), self.prefix + "{}"
    s = self.get(state)
    photo, hints = s.photo, s.hints
    choices = [(f"{i + 1}: {h.describe()}", i) for i, h in enumerate(hints.hints)]
    recent = canvas.swatches(hints.recent)
    common_ = [
      show(name.format("palette.png"), self._plane(s)),
      show(name.format("recent.png"), recent),
      session.hex_of(s.colour),
      gr.Dropdown(choices=choices, value=hints.selected),
    ]
    if photo is None:
      empty = None if both else gr.skip()
      return [state, None, None, empty, *common_, self.idle + self.describe(state)]
    preview = s.rendered.preview
    source = photo.preview_gray_rgb
    shown = colorizer_lib.side_by_side(source, preview) if mode == VIEWS[1] else preview
    pair = gr.skip()
    if both or mode == VIEWS[2]:
      pair = tuple(
        show(name.format(f), image) for f, image in (("source.jpg", source), ("pair.jpg", preview))
      )
    width, height = photo.size
    text = (
      f"**{html.escape(photo.name)}** · {width}x{height} · {len(hints.hints)} hints · "
      f"refreshed in {s.rendered.seconds * 1000:.0f} ms"
    )
    if s.reference_name:
      text += f" · reference {html.escape(s.reference_name)}"
    board = canvas.draw(photo.gray, hints, photo.size)
    return [
      state,
      show(name.format("hints.jpg"), board),
      show(name.format("result.jpg"), shown),
      pair,
      *common_,
      text + self.describe(state),
    ]

  @staticmethod
  def _plane(s: session.Session) -> np.ndarray:
    return palette.plane(actions.palette_lightness(s))

  def edited(self, state: Any, s: session.Session, mode: str, request: gr.Request) -> list:
    """`show` of the state with its current Session replaced by `s`."""
    return self.show(self.put(state, s), mode, request)

  def wire(self, state: gr.State) -> None:
    """The editor's events on the tab's `state`."""
    outputs = [state, *self.outputs, self.listed, self.status]
    view, api = self.view, self.prefix
    events = [
      (self.board.select, self.on_click, [state, view], None),
      (self.gesture.change, self.on_gesture, [state, self.gesture, self.width, view], "gesture"),
      (self.picker.input, self.on_colour, [state, self.picker, view], "colour"),
      (self.pal.select, self.on_palette, [state, view], None),
      (self.recent.select, self.on_recent, [state, view], None),
      (self.listed.input, self.on_select, [state, self.listed, view], "select"),
      (self.suggest.click, self.edit(actions.model_colour), [state, view], "model_colour"),
      (self.undo.click, self.edit(actions.undo), [state, view], "undo"),
      (self.delete.click, self.edit(actions.delete), [state, view], "delete"),
      (self.clear.click, self.edit(actions.clear), [state, view], "clear"),
      (self.saturation.release, self.on_saturation, [state, self.saturation, view], "saturation"),
      (self.reference.upload, self.on_reference, [state, self.reference, view], "reference"),
      (self.no_reference.click, self.on_no_reference, [state, view], "no_reference"),
      (self.view.input, self.on_view, [state, view], "view"),
    ]
    for event, fn, inputs, name in events:
      common.wire(outputs, event, fn, inputs, name and api + name)

  def on_click(self, state, mode, evt: gr.SelectData, request: gr.Request):
    s = self.get(state)
    if s.photo is None:
      return self.show(state, mode, request)
    x, y = evt.index
    s = actions.click(self.engine, s, x, y, s.photo.display_size)
    return self.edited(state, s, mode, request)

  def on_gesture(self, state, data, stroke_width, mode, request: gr.Request):
    s = self.get(state)
    if not data or s.photo is None:
      return self.show(state, mode, request)
    s = actions.gesture(self.engine, s, data, int(stroke_width))
    return self.edited(state, s, mode, request)

  def on_colour(self, state, text, mode, request: gr.Request):
    try:
      rgb = session.rgb_of(text or "")
    except ValueError as e:
      raise gr.Error(str(e), print_exception=False) from e
    s = actions.set_colour(self.engine, self.get(state), rgb)
    return self.edited(state, s, mode, request)

  def on_palette(self, state, mode, evt: gr.SelectData, request: gr.Request):
    x, y = evt.index
    s = actions.pick_palette(self.engine, self.get(state), x, y)
    return self.edited(state, s, mode, request)

  def on_recent(self, state, mode, evt: gr.SelectData, request: gr.Request):
    s = self.get(state)
    rgb = canvas.swatch_at(evt.index[0], s.hints.recent)
    s = s if rgb is None else actions.set_colour(self.engine, s, rgb)
    return self.edited(state, s, mode, request)

  def on_select(self, state, index, mode, request: gr.Request):
    return self.edited(state, actions.select(self.get(state), index), mode, request)

  def edit(self, fn):
    def on_edit(state, mode, request: gr.Request):
      return self.edited(state, fn(self.engine, self.get(state)), mode, request)

    return on_edit

  def on_saturation(self, state, value, mode, request: gr.Request):
    s = actions.set_saturation(self.engine, self.get(state), value)
    return self.edited(state, s, mode, request)

  def on_reference(self, state, path, mode, request: gr.Request):
    self.files.uploaded(request, path)
    name = None if path is None else os.path.basename(path)
    s = actions.set_reference(self.engine, self.get(state), path, name)
    return self.edited(state, s, mode, request)

  def on_no_reference(self, state, mode, request: gr.Request):
    return self.on_reference(state, None, mode, request)

  def on_view(self, state, mode, request: gr.Request):
    updates = self.show(state, mode, request, both=True)
    result_shown = gr.Image(value=updates[2], visible=mode != VIEWS[2])
    slider_shown = gr.ImageSlider(value=updates[3], visible=mode == VIEWS[2])
    return [updates[0], updates[1], result_shown, slider_shown, *updates[4:]]
