"""The learning check: data, colour conversion, losses and the train step learn together."""

import numpy as np
import pytest
import short_training


@pytest.mark.slow
def test_overfitting_four_photos_halves_the_gray_baseline_ciede2000(tmp_path):
  """150 steps (GAN + 100 L1, Lab, Adam 2e-4 as the paper; U-Net num_downs 5, widths 16) on 4
  embedded photos at 32x32 through the input pipeline: the generator's CIEDE2000 on those photos
  must fall below half the gray output's (measured 3.3 against 12.3)."""
  config = short_training.overfit_config(short_training.photo_folder(tmp_path / "photos"))
  nets, state, history = short_training.train(config, steps=150)
  assert np.isfinite(history["g_loss"]).all()
  assert history["g_l1"][-10:].mean() < 0.5 * history["g_l1"][:10].mean()
  values = short_training.eval_metrics(config, nets, state.generator_variables)
  model, gray = values["model"]["ciede2000"].mean(), values["gray"]["ciede2000"].mean()
  assert model < 0.5 * gray, (model, gray)
