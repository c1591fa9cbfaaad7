"""Hints carried through a shot by optical flow: synthetic clips of a photo moved by known affine
maps, with an occluder and a cut; each kept hint must be where its content went."""

import os

import cv2
import numpy as np
import pytest

from pix2pix_jax import images
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import keyframes
from pix2pix_jax.hints import track as hint_track

HEIGHT, WIDTH = 192, 256  # full frame size; the reduced size is half (MAX_SIDE)
MAX_SIDE = 128
FRAMES = 100


def _photo(name: str = "skimage_chelsea.jpg") -> np.ndarray:
  rgb = images.load_image(os.path.join(images.SAMPLES_DIR, "eval", name)).rgb
  return cv2.resize(rgb, (400, 300), interpolation=cv2.INTER_AREA)


def _maps(frames: int) -> np.ndarray:
  """Per frame, the affine map [2, 3] from frame pixels to photo pixels: over the clip the view
  pans 40 x 24 px, turns 8 degrees and zooms in 1.25x."""
  maps = []
  for t in range(frames):
    u = t / max(1, frames - 1)
    angle, zoom = np.deg2rad(8.0 * u), 1.0 + 0.25 * u
    rot = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]]) / zoom
    centre = np.array([200.0 - 20 + 40 * u, 150.0 - 12 + 24 * u])
    frame_centre = np.array([(WIDTH - 1) / 2, (HEIGHT - 1) / 2])
    maps.append(np.c_[rot, centre - rot @ frame_centre])
  return np.array(maps)


def _clip(photo: np.ndarray, maps: np.ndarray) -> np.ndarray:
  flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
  return np.stack([cv2.warpAffine(photo, m, (WIDTH, HEIGHT), flags=flags) for m in maps])


def _truth(maps: np.ndarray, start: np.ndarray, k: int, t: int) -> np.ndarray:
  """Where content at reduced-size (x, y) `start` on frame k is on frame t (reduced size)."""
  full = (start + 0.5) * 2 - 0.5
  photo = full @ maps[k][:, :2].T + maps[k][:, 2]
  inverse = cv2.invertAffineTransform(maps[t])
  return ((photo @ inverse[:, :2].T + inverse[:, 2]) + 0.5) / 2 - 0.5


def _grid_hints(ab=(20.0, -30.0), step=8) -> hint_files.Hints:
  mask = np.zeros((HEIGHT, WIDTH), bool)
  mask[step // 2 :: step, step // 2 :: step] = True
  ab_image = np.zeros((HEIGHT, WIDTH, 2), np.float32)
  ab_image[mask] = ab
  return hint_files.Hints(ab_image, mask)


@pytest.fixture(scope="module")
def moving():
  maps = _maps(FRAMES)
  return maps, hint_track.small_luma(_clip(_photo(), maps), MAX_SIDE)


def test_kept_hints_stay_within_a_pixel_of_their_content_forward_and_backward(moving):
  maps, luma = moving
  assert luma.shape == (FRAMES, HEIGHT // 2, WIDTH // 2)
  k = 40  # carried forward 59 frames and backward 40
  track = hint_track.track(luma, [keyframes.Keyframe(k, _grid_hints())], np.zeros(FRAMES, bool))
  seeds = track.positions(k)[0]
  errors = []
  for t in range(FRAMES):
    start, xy = track.positions(t)
    error = np.linalg.norm(xy - _truth(maps, start, k, t), axis=1)
    # A few points, in flat areas or zoomed towards the frame's edge, are off by 1-2 px.
    assert error.max() < 2.0 and np.mean(error <= 1.0) > 0.95, (t, error.max())
    errors.append(error)
    # Most points whose content is still in view are kept.
    truth = _truth(maps, seeds, k, t)
    in_view = ((truth > 3) & (truth < [WIDTH // 2 - 4, HEIGHT // 2 - 4])).all(axis=1).sum()
    assert len(xy) > 0.85 * in_view, (t, len(xy), in_view)
  assert np.mean(np.concatenate(errors) <= 1.0) > 0.99


def test_hints_at_full_size_move_with_their_seeds(moving):
  maps, luma = moving
  key = keyframes.Keyframe(0, _grid_hints(ab=(35.0, 10.0)))
  track = hint_track.track(luma, [key], np.zeros(FRAMES, bool))
  first = track.hints(0)
  np.testing.assert_array_equal(first.mask, key.hints.mask)
  np.testing.assert_array_equal(first.ab, key.hints.ab)
  last = track.hints(FRAMES - 1)
  assert last.shape == (HEIGHT, WIDTH) and 0 < last.mask.sum() <= key.hints.mask.sum()
  np.testing.assert_allclose(last.ab[last.mask], np.tile([35.0, 10.0], (last.mask.sum(), 1)))
  # The zoom spreads the hint pixels apart: they are no longer on the keyframe's grid.
  assert (last.mask & ~key.hints.mask).sum() > 0.5 * last.mask.sum()
  # `points` are the same pixels, sparse.
  yx, ab = track.points(FRAMES - 1)
  np.testing.assert_array_equal(np.sort(yx[:, 0] * WIDTH + yx[:, 1]), np.flatnonzero(last.mask))
  np.testing.assert_array_equal(ab, last.ab[yx[:, 0], yx[:, 1]])
  # Held still (--hint-motion fixed), every frame has the keyframe's hints where they were.
  still = hint_track.track(luma, [key], np.zeros(FRAMES, bool), still=True)
  np.testing.assert_array_equal(still.hints(FRAMES - 1).mask, key.hints.mask)


def test_an_occluder_drops_the_hints_it_covers():
  frames = _clip(_photo(), np.repeat(_maps(1), 60, axis=0))  # a still view
  size, speed = 64, 4  # full-size pixels: a flat block enters from the left, 4 px a frame
  top = HEIGHT // 2 - size // 2
  lefts = [speed * t - size for t in range(60)]
  for frame, left in zip(frames, lefts, strict=True):
    frame[top : top + size, max(0, left) : max(0, left + size)] = (90, 90, 90)
  luma = hint_track.small_luma(frames, MAX_SIDE)
  track = hint_track.track(luma, [keyframes.Keyframe(0, _grid_hints())], np.zeros(60, bool))
  start, _ = track.positions(0)
  swept = (start[:, 1] > top / 2 + 1) & (start[:, 1] < (top + size) / 2 - 2)
  swept &= start[:, 0] < (lefts[-1] + size) / 2 - 2  # under the block at some frame
  for t, left in enumerate(lefts):
    kept, xy = track.positions(t)
    # No hint inside the block (3 px in from its edges, at the reduced size).
    rows = (xy[:, 1] > top / 2 + 3) & (xy[:, 1] < (top + size) / 2 - 3)
    under = rows & (xy[:, 0] > left / 2 + 3) & (xy[:, 0] < (left + size) / 2 - 3)
    assert not under.any(), (t, xy[under])
    # The rest stay on their content (it does not move), but for points just ahead of the
    # block: the flow there follows the block a little before they are dropped.
    ahead = (xy[:, 1] > top / 2 - 4) & (xy[:, 1] < (top + size) / 2 + 4)
    ahead &= xy[:, 0] < (left + size) / 2 + 8
    assert np.abs(xy - kept)[~ahead].max() < 1.0, t
    assert np.abs(xy - kept)[ahead].max(initial=0) < 5.0, t
  # Under the still view, the hints the block has passed come back where they were.
  behind = swept & (start[:, 0] < lefts[-1] / 2 - 3)
  kept, _ = track.positions(59)
  is_kept = (np.abs(start[:, None] - kept[None]).sum(-1) < 1e-6).any(axis=1)
  assert is_kept[behind].mean() > 0.8, (is_kept[behind].sum(), behind.sum())
  assert is_kept[~swept].mean() > 0.9  # the others stay


def test_hints_stop_at_a_cut():
  maps = _maps(40)
  frames = np.concatenate([_clip(_photo(), maps[:20]), _clip(_photo("sklearn_china.jpg"), maps)])
  cuts = np.zeros(60, bool)
  cuts[20] = True
  luma = hint_track.small_luma(frames, MAX_SIDE)
  track = hint_track.track(luma, [keyframes.Keyframe(5, _grid_hints())], cuts)
  assert all(track.hints(t) is not None for t in range(20))
  assert all(track.hints(t) is None for t in range(20, 60))
  later = hint_track.track(luma, [keyframes.Keyframe(30, _grid_hints())], cuts)
  assert [later.hints(t) is None for t in (0, 19, 20, 59)] == [True, True, False, False]


def test_each_frame_takes_the_nearer_keyframe_of_its_shot(moving):
  _, luma = moving
  keys = [
    keyframes.Keyframe(50, _grid_hints(ab=(-40.0, 5.0))),
    keyframes.Keyframe(10, _grid_hints(ab=(40.0, 5.0))),
  ]
  nearer = hint_track.Options(blend=False)
  track = hint_track.track(luma, keys, np.zeros(FRAMES, bool), options=nearer)
  for t in range(FRAMES):
    hints = track.hints(t)
    expected = 40.0 if t <= 30 else -40.0  # 30 is as near to 10 as to 50: the earlier wins
    np.testing.assert_array_equal(np.unique(hints.ab[hints.mask][:, 0]), [expected])
  assert len(track.runs) == 2 and track.runs[0].xy.shape[0] == 31  # frames 0..30
  with pytest.raises(ValueError, match="two keyframes at frame 10"):
    hint_track.track(luma, keys + [keys[1]], np.zeros(FRAMES, bool))


def test_blend_gives_a_frame_between_two_keyframes_both_hint_sets(moving):
  _, luma = moving
  keys = [
    keyframes.Keyframe(10, _grid_hints(ab=(40.0, 5.0))),
    keyframes.Keyframe(50, _grid_hints(ab=(-40.0, 5.0))),
  ]
  nearer = hint_track.track(
    luma, keys, np.zeros(FRAMES, bool), options=hint_track.Options(blend=False)
  )
  blend = hint_track.track(luma, keys, np.zeros(FRAMES, bool))  # the default
  for t in range(FRAMES):
    colours = set(np.unique(blend.hints(t).ab[blend.hints(t).mask][:, 0]))
    # Only each keyframe's own hints on it and beyond it; both between them.
    assert colours == ({40.0} if t <= 10 else {-40.0} if t >= 50 else {40.0, -40.0}), t
    # The nearer keyframe's hints are all there, where `nearer` puts them.
    mine = nearer.hints(t)
    np.testing.assert_array_equal(blend.hints(t).ab[mine.mask], mine.ab[mine.mask])


def test_seeds_group_hint_pixels_by_reduced_pixel_and_a_stroke_moves_pixel_by_pixel():
  luma = np.tile(np.arange(64, dtype=np.uint8)[None, None] * 4, (3, 48, 1))
  mask = np.zeros((96, 128), bool)
  mask[40, 10:60] = True  # a stroke 50 px long: 25 reduced-size pixels
  hints = hint_files.Hints(np.ones((96, 128, 2), np.float32), mask)
  track = hint_track.track(luma, [keyframes.Keyframe(1, hints)], np.zeros(3, bool))
  assert track.runs[0].xy.shape == (3, 25, 2)
  for t in range(3):  # a still clip: the stroke stays where it is, every pixel of it
    np.testing.assert_array_equal(track.hints(t).mask, mask)


def test_small_luma_is_the_models_gray_at_the_reduced_size():
  assert hint_track.reduced_size(1080, 1920) == (144, 256)
  assert hint_track.reduced_size(100, 60) == (100, 60)
  frames = np.zeros((2, 40, 80, 3), np.uint8)
  frames[..., 0] = 200
  luma = hint_track.small_luma(frames, 40)
  assert luma.shape == (2, 20, 40) and (luma == 60).all()


def test_flat_background_keeps_its_hints_while_a_textured_object_crosses_it():
  """A still, almost flat wall (noise of 1 level) and a textured square moving 3 px a frame
  across it: the wall's hints are kept (the flow there is filled in from the square; its
  forward-backward and disagreement checks alone dropped 3 of the 4)."""
  rng = np.random.default_rng(0)
  square = _photo()[100:140, 100:140]
  frames = []
  for t in range(30):
    frame = np.full((HEIGHT, WIDTH, 3), 180, np.uint8) + rng.integers(0, 2, (HEIGHT, WIDTH, 1))
    x = 20 + 3 * t
    frame[60:100, x : x + 40] = square
    frames.append(frame.astype(np.uint8))
  luma = hint_track.small_luma(np.stack(frames), MAX_SIDE)
  mask = np.zeros((HEIGHT, WIDTH), bool)
  mask[[20, 20, 160, 160], [30, 220, 30, 220]] = True
  hints = hint_files.Hints(np.where(mask[..., None], 30.0, 0.0).astype(np.float32), mask)
  track = hint_track.track(luma, [keyframes.Keyframe(0, hints)], np.zeros(30, bool))
  kept = [len(track.positions(t)[0]) for t in range(30)]
  assert np.mean(kept) > 3.5, kept
