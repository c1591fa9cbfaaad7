"""Reference PyTorch Pix2Pix weights: import, same outputs, export round trip, clear errors."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import exit_status

from pix2pix_jax import checkpoint, models
from pix2pix_jax.models import torch_weights
from pix2pix_jax.tools import import_torch

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = 1e-4


# The torch networks here are rebuilt from the reference's description with its module nesting
# (skip blocks holding an nn.Sequential `model`, submodule at index 1 or 3), so their state_dict
# keys are the reference's own, e.g. `model.model.1.model.1.weight`.
class SkipBlock(nn.Module):
  """The reference's UnetSkipConnectionBlock with BatchNorm (convs before a norm have no bias)."""

  def __init__(self, outer, inner, sub=None, in_ch=None, outermost=False, dropout=False):
    super().__init__()
    self.outermost = outermost
    in_ch = in_ch or outer
    down = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
    if outermost:
      layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
    elif sub is None:  # innermost
      up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False)
      layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nn.BatchNorm2d(outer)]
    else:
      up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False)
      layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner), sub, nn.ReLU(True), up]
      layers += [nn.BatchNorm2d(outer)] + ([nn.Dropout(0.5)] if dropout else [])
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    # As in the reference, the in-place LeakyReLU also changes the x that is concatenated.
    return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class TorchUnet(nn.Module):
  """The reference's UnetGenerator (unet_128: num_downs=7, unet_256: 8)."""

  def __init__(self, in_ch, out_ch, num_downs, ngf):
    super().__init__()
    block = SkipBlock(ngf * 8, ngf * 8)
    for _ in range(num_downs - 5):
      block = SkipBlock(ngf * 8, ngf * 8, block, dropout=True)
    for mult in (4, 2, 1):
      block = SkipBlock(ngf * mult, ngf * mult * 2, block)
    self.model = SkipBlock(out_ch, ngf, block, in_ch=in_ch, outermost=True)

  def forward(self, x):
    return self.model(x)


class TorchPatchGAN(nn.Module):
  """The reference's NLayerDiscriminator with BatchNorm."""

  def __init__(self, in_ch, ndf, n_layers=3):
    super().__init__()
    layers = [nn.Conv2d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    width = ndf
    for n in range(1, n_layers + 1):
      new = ndf * min(2**n, 8)
      stride = 2 if n < n_layers else 1
      layers += [nn.Conv2d(width, new, 4, stride, 1, bias=False), nn.BatchNorm2d(new)]
      layers += [nn.LeakyReLU(0.2, True)]
      width = new
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


def randomize(net, seed):
  """Random weights and non-trivial BatchNorm running statistics (a 'trained' network)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in net.state_dict().items():
      if name.endswith("num_batches_tracked"):
        tensor.fill_(1234)
      elif name.endswith("running_var"):
        tensor.copy_(0.5 + torch.rand(tensor.shape, generator=gen))
      elif name.endswith("running_mean"):
        tensor.copy_(0.3 * torch.randn(tensor.shape, generator=gen))
      elif name.endswith("weight") and tensor.ndim == 1:  # BatchNorm scale
        tensor.copy_(1.0 + 0.2 * torch.randn(tensor.shape, generator=gen))
      else:
        tensor.copy_(0.1 * torch.randn(tensor.shape, generator=gen))
  return net.eval()


def saved_state_dict(net, tmp_path, prefix=""):
  path = os.path.join(tmp_path, "net.pth")
  torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
  return torch_weights.load_torch_file(path)


def torch_apply(net, x_nhwc):
  with torch.no_grad():
    y = net(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  return y.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
  "num_downs, ngf, out_ch, form, prefix",
  [
    (7, 4, 3, "auto", ""),  # unet_128-like, RGB
    (7, 4, 2, "plain", "module."),  # unet_128-like, Lab ab; saved from DataParallel
    (8, 4, 2, "cpu_tuned", ""),  # unet_256-like, Lab ab
    (8, 2, 3, "plain", ""),  # unet_256-like, RGB
  ],
)
def test_generator_matches_torch(tmp_path, num_downs, ngf, out_ch, form, prefix):
  net = randomize(TorchUnet(1, out_ch, num_downs, ngf), seed=num_downs + out_ch)
  variables = torch_weights.generator_from_torch(
    saved_state_dict(net, tmp_path, prefix), num_downs=num_downs
  )
  assert torch_weights.generator_shape(variables) == (1, ngf, out_ch)
  size = 2**num_downs
  x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 1)).astype(np.float32)
  policy = models.ConvPolicy(form)
  model = models.UNetGenerator(
    out_ch,
    num_downs=num_downs,
    ngf=ngf,
    down=functools.partial(models.Downsample, policy=policy),
    up=functools.partial(models.Upsample, policy=policy),
  )
  ours = np.asarray(model.apply(variables, jnp.asarray(x), train=False))
  want = torch_apply(net, x)
  assert ours.shape == want.shape == (2, size, size, out_ch)
  assert np.abs(want).mean() > 0.05  # tanh neither saturated nor ~0: a real comparison
  diff = np.abs(ours - want).max()
  assert diff <= TOL, diff


def test_discriminator_matches_torch(tmp_path):
  net = randomize(TorchPatchGAN(4, 4), seed=7)
  variables = torch_weights.discriminator_from_torch(saved_state_dict(net, tmp_path), n_layers=3)
  x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 4)).astype(np.float32)
  ours = np.asarray(models.PatchDiscriminator(ndf=4, n_layers=3).apply(variables, x, train=False))
  want = torch_apply(net, x)
  assert ours.shape == want.shape == (2, 6, 6, 1)
  assert np.abs(want).std() > 0.01
  diff = np.abs(ours - want).max()
  assert diff <= TOL, diff


def test_export_round_trip():
  net = randomize(TorchUnet(1, 2, 6, 4), seed=3)
  original = {k: v.numpy() for k, v in net.state_dict().items()}
  exported = torch_weights.generator_to_torch(
    torch_weights.generator_from_torch(original, num_downs=6), num_downs=6
  )
  assert set(exported) == set(original)
  for key, value in original.items():
    if not key.endswith("num_batches_tracked"):
      np.testing.assert_array_equal(exported[key], value, err_msg=key)
  # The exported dict loads strictly into a fresh reference network.
  fresh = TorchUnet(1, 2, 6, 4)
  fresh.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)

  d_net = randomize(TorchPatchGAN(3, 4), seed=4)
  d_original = {k: v.numpy() for k, v in d_net.state_dict().items()}
  d_exported = torch_weights.discriminator_to_torch(
    torch_weights.discriminator_from_torch(d_original), n_layers=3
  )
  assert set(d_exported) == set(d_original)
  for key, value in d_original.items():
    if not key.endswith("num_batches_tracked"):
      np.testing.assert_array_equal(d_exported[key], value, err_msg=key)


def test_exported_flax_generator_matches_torch():
  """Random variables of our generator's own tree, exported, compute the same in torch."""
  model = models.UNetGenerator(3, num_downs=5, ngf=4)
  x = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  rng = np.random.default_rng(5)
  variables = {
    "params": jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape), shapes["params"]),
    "batch_stats": jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape), shapes["batch_stats"]),
  }
  variables = jax.tree.map(lambda v: v.astype(np.float32), variables)
  net = TorchUnet(1, 3, 5, 4).eval()
  state = torch_weights.generator_to_torch(variables, num_downs=5)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
  want = torch_apply(net, x)
  assert 0.05 < np.abs(want).mean() < 0.9
  diff = np.abs(np.asarray(model.apply(variables, x, train=False)) - want).max()
  assert diff <= TOL, diff


def test_unexpected_and_missing_keys_are_named():
  state = {k: v.numpy() for k, v in TorchUnet(1, 3, 5, 4).state_dict().items()}
  with pytest.raises(ValueError, match=r"unexpected keys \['model.extra.weight'\]"):
    torch_weights.generator_from_torch({**state, "model.extra.weight": np.zeros(3)}, num_downs=5)
  del state["model.model.1.model.2.running_var"]
  with pytest.raises(ValueError, match=r"missing keys \['model.model.1.model.2.running_var'\]"):
    torch_weights.generator_from_torch(state, num_downs=5)


def test_wrong_num_downs_fails_clearly():
  state = TorchUnet(1, 3, 6, 4).state_dict()
  with pytest.raises(ValueError, match="num_downs=5.*unexpected keys"):
    torch_weights.generator_from_torch(state, num_downs=5)


def test_inconsistent_shape_is_named():
  state = {k: v.numpy() for k, v in TorchUnet(1, 3, 5, 4).state_dict().items()}
  state["model.model.1.model.2.weight"] = np.ones(5, np.float32)  # BatchNorm of 8 channels
  with pytest.raises(ValueError, match=r"down_norm1.*scale.*\(5,\) vs \(8,\)"):
    torch_weights.generator_from_torch(state, num_downs=5)


def test_load_torch_file_rejects_non_state_dicts(tmp_path):
  path = os.path.join(tmp_path, "whole_model.pth")
  torch.save({"epoch": 3, "netG": TorchUnet(1, 3, 5, 4).state_dict()}, path)
  with pytest.raises(ValueError, match="whole_model.pth.*expected a state_dict"):
    torch_weights.load_torch_file(path)
  with pytest.raises(torch_weights.WeightsError, match="nothing.pth: no such file"):
    torch_weights.load_torch_file(os.path.join(tmp_path, "nothing.pth"))


def write_config_file(config, path):
  with open(path, "w") as f:
    f.write(
      "import ml_collections\n\n\ndef get_config():\n"
      f"  return ml_collections.ConfigDict({config.to_dict()!r})\n"
    )
  return path


def import_with_command_line(tmp_path, config):
  """A random reference generator saved as latest_net_G.pth, imported by the command line."""
  net = randomize(TorchUnet(1, 2, 5, 4), seed=5)
  pth = os.path.join(tmp_path, "latest_net_G.pth")
  torch.save(net.state_dict(), pth)
  config_file = write_config_file(config, os.path.join(tmp_path, "config.py"))
  workdir = os.path.join(tmp_path, "w")
  argv = ["--torch-checkpoint", pth, "--config", config_file, "--workdir", workdir]
  assert import_torch.main(argv) == 0
  assert exit_status(import_torch.main, argv) == 1  # refuses to overwrite an existing checkpoint
  return net, pth, workdir


def test_command_line_writes_generator_checkpoint(tmp_path, make_tiny_config):
  config = make_tiny_config(color_space="lab")  # num_downs=5, ngf=4
  net, pth, workdir = import_with_command_line(tmp_path, config)
  handlers = {"state": ocp.PyTreeCheckpointHandler(), "config": ocp.JsonCheckpointHandler()}
  options = ocp.CheckpointManagerOptions(read_only=True)
  with ocp.CheckpointManager(
    checkpoint.checkpoint_dir(workdir), item_handlers=handlers, options=options
  ) as manager:
    assert manager.all_steps() == [0]
    restored = manager.restore(
      0, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(), config=ocp.args.JsonRestore())
    )
  assert restored["config"] == config.to_dict()
  assert set(restored["state"]) == {"g_params", "g_batch_stats"}
  variables = {
    "params": restored["state"]["g_params"],
    "batch_stats": restored["state"]["g_batch_stats"],
  }
  x = np.random.default_rng(3).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
  ours = np.asarray(models.make_generator(config).apply(variables, x, train=False))
  diff = np.abs(ours - torch_apply(net, x)).max()
  assert diff <= TOL, diff

  wrong = make_tiny_config(color_space="rgb")
  with pytest.raises(ValueError, match=r"output channels\) = \(1, 4, 2\).*needs \(1, 4, 3\)"):
    import_torch.import_generator(pth, wrong, os.path.join(tmp_path, "w2"))


def test_imported_workdir_restores_for_inference(tmp_path, make_tiny_config):
  """What `pix2pix-colorize --workdir` does with the imported workdir."""
  config = make_tiny_config(color_space="lab")
  net, _, workdir = import_with_command_line(tmp_path, config)
  restored_config, variables = checkpoint.restore_generator(workdir)
  assert restored_config.to_dict() == config.to_dict()
  x = np.random.default_rng(4).uniform(-1, 1, (1, 32, 32, 1)).astype(np.float32)
  ours = np.asarray(models.make_generator(restored_config).apply(variables, x, train=False))
  diff = np.abs(ours - torch_apply(net, x)).max()
  assert diff <= TOL, diff
