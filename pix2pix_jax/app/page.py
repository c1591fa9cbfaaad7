"""The page (Gradio Blocks): a header and two tabs, Photo (`photo_tab`) and Clip (`clip_tab`),
both built on the hint editor (`editor`).

Each browser tab's state is a gr.State per page tab (a `session.Session`, a
`clip_actions.ClipState`); the Engine (the model) is shared and read-only. A session's files (the
images it is shown, its downloads, its uploads) are removed when its browser tab closes.
"""

import html
import tempfile

import gradio as gr

from pix2pix_jax.app import clip_tab, common, editor, photo_tab
from pix2pix_jax.app import engine as engine_lib

__all__ = ["CSS", "DELETE_CACHE", "DRAG_SCRIPT", "VIEWS", "build", "new_root", "samples"]
__all__ += ["write_image"]

# Gradio's own cache (what it serves besides the sessions' folders; the uploads of API clients,
# whose sessions may never end): every 10 minutes, files older than an hour go.
DELETE_CACHE = (600, 3600)
CSS, DRAG_SCRIPT, VIEWS = editor.CSS, editor.DRAG_SCRIPT, common.VIEWS
samples, write_image = common.samples, common.write_image


def build(engine: engine_lib.Engine, root: str, *, title: str = "pix2pix_jax: colour by eye"):
  """The whole page; `root`: the folder under which each session keeps its files."""
  files = common.SessionFiles(root)
  # Served from there as they are: not copied into Gradio's cache, so they go with the session.
  gr.set_static_paths([root])
  with gr.Blocks(title=title, delete_cache=DELETE_CACHE, analytics_enabled=False) as demo:
    gr.Markdown(f"## {html.escape(title)}\n{html.escape(engine.description)}")
    with gr.Tabs():
      with gr.Tab("Photo"):
        photo_tab.build(engine, files)
      with gr.Tab("Clip"):
        clip_tab.build(engine, files)

    demo.unload(files.end)
  return demo


def new_root() -> str:
  """A folder for the sessions' files of one server."""
  return tempfile.mkdtemp(prefix="pix2pix-app-")
