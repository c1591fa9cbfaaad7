"""experiments/colourise.ipynb runs top to bottom (nbclient) on a tiny random model and clip,
restored from a workdir and from a .p2p file, and a tiny random hint model."""

import os
import sys

import mediapy
import nbclient
import nbformat
import numpy as np
import pytest
from helpers import REPO, tiny_config, tiny_generator_workdir

from pix2pix_jax.colorize.video import probe
from pix2pix_jax.export import main as export_main

pytestmark = pytest.mark.integration  # every test here starts processes

NOTEBOOK = os.path.join(REPO, "experiments", "colourise.ipynb")


def _outputs(notebook, key):
  """The `key` payloads (e.g. "text/html") of every display and result output."""
  return [
    out["data"][key]
    for cell in notebook.cells
    if cell.cell_type == "code"
    for out in cell.get("outputs", [])
    if key in out.get("data", {})
  ]


@pytest.mark.parametrize("model", ["workdir", "p2p"])
def test_notebook_runs_on_a_tiny_model(tmp_path, model):
  workdir = tiny_generator_workdir(tmp_path / "model")
  hints_workdir = tiny_generator_workdir(
    tmp_path / "hints", config=tiny_config(**{"model.hints": True})
  )
  model_file = ""
  if model == "p2p":
    model_file = str(tmp_path / "model.p2p")
    export_main.export_workdir(workdir, model_file, platforms=("cpu",), batch_per_device=2)
  out_dir = tmp_path / "out"
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  # As papermill does: a cell right after the one tagged "parameters" overrides its values.
  index = next(
    i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])
  )
  params = {
    "WORKDIR": workdir,
    "MODEL_FILE": model_file,
    "HINTS_WORKDIR": hints_workdir,
    "OUTPUT_DIR": str(out_dir),
    "CLIP_SECONDS": 0.4,  # 10 frames at 25 fps
    "CLIP_SIZE": (64, 48),
  }
  source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
  notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
  notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
  client = nbclient.NotebookClient(
    notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError naming the cell if any cell fails

  errors = [
    out for cell in notebook.cells for out in cell.get("outputs", []) if out.output_type == "error"
  ]
  assert not errors
  # The kernel is this environment's python (ipykernel installed in it).
  assert notebook.cells[-1].outputs[0]["text"].strip() == sys.prefix

  photo = mediapy.read_image(out_dir / "photo_colorized.png")
  assert photo.shape == (256, 384, 3) and photo.dtype == np.uint8
  clip = probe.probe(str(out_dir / "sample_clip.mp4"))
  colourised = probe.probe(str(out_dir / "sample_clip_colorized.mp4"))
  assert probe.count_frames(str(out_dir / "sample_clip.mp4")) == 10  # 0.4 s at 25 fps
  assert probe.count_frames(str(out_dir / "sample_clip_colorized.mp4")) == 10
  assert (colourised.width, colourised.height) == (clip.width, clip.height) == (64, 48)
  assert colourised.audio_codec is not None  # the soundtrack is kept
  for motion in ("fixed", "track"):  # the keyframe-hint strips' clips
    assert probe.count_frames(str(out_dir / f"sample_clip_hints_{motion}.mp4")) == 10
  html = "".join(_outputs(notebook, "text/html"))
  assert html.count("<img") >= 3 + 4 + 3 + 4  # photo, saturation, reference, hints rows
  assert html.count("<video") == 3
