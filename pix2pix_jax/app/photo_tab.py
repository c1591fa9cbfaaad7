"""The photo tab: a photo (uploaded or a sample) in the hint editor, saved with its hint files."""

import html
import os

import gradio as gr

from pix2pix_jax.app import actions, common, editor, session
from pix2pix_jax.app import engine as engine_lib


def build(engine: engine_lib.Engine, files: common.SessionFiles) -> None:
  """The photo tab's components and events, in the Blocks being built."""
  ed = editor.Editor(engine, files)
  state = gr.State(session.Session())
  with gr.Row():
    with gr.Column(scale=1, min_width=260):
      upload = gr.UploadButton("Upload a photo", file_types=["image"], type="filepath")
      sample = gr.Dropdown(
        list(common.samples()), value=None, label="…or a sample photo", interactive=True
      )
      if not engine.takes_hints:
        gr.Markdown(f"**Hint tools are off**: {html.escape(engine.hints_off_reason)}")
      ed.tools()
    with gr.Column(scale=4):
      ed.status_line()
      ed.views()
      with gr.Row():
        save = gr.Button("Save result and hints", variant="primary")
      downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
      command = gr.Code(label="The same result from the command line", language="shell")

  def on_upload(s, path, mode, request: gr.Request):
    if path is None:
      return ed.show(s, mode, request)
    files.uploaded(request, path)
    return ed.show(actions.open_photo(engine, s, path, os.path.basename(path)), mode, request)

  def on_sample(s, name, mode, request: gr.Request):
    if not name:
      return ed.show(s, mode, request)
    return ed.show(actions.open_photo(engine, s, common.samples()[name]), mode, request)

  def on_save(s, request: gr.Request):
    return actions.save(engine, s, files.folder(request))

  outputs = [state, *ed.outputs, ed.listed, ed.status]
  common.wire(outputs, upload.upload, on_upload, [state, upload, ed.view], "upload")
  common.wire(outputs, sample.input, on_sample, [state, sample, ed.view], "sample")
  ed.wire(state)
  common.wire([downloads, command], save.click, on_save, [state], "save")
