"""pix2pix-app in a real browser: Debian's headless Chromium driven by Selenium uploads a photo,
puts a red point and a blue one (from the ab palette), paints a stroke, checks the result's hue
near each, saves the hints and compares them with the clicks; in the Clip tab it uploads a
two-shot clip, sees its two shots, hints the second, previews it and colourises the clip; closing
the tab removes the session's files, its uploads among them. Where chromium is missing the test
skips, except under CI (.ci/run installs it).

The screenshots docs/app.md shows (the Clip tab's beside it, as app_clip.png), and its edits'
round trips on a 1-megapixel photo:
PIX2PIX_APP_SCREENSHOT=docs/images/app.png PIX2PIX_APP_WORKDIR=runs/hints \
  .venv/bin/python -m pytest tests/app_browser_test.py -k docs
PIX2PIX_APP_WORKDIR=runs/hints .venv/bin/python -m pytest tests/app_browser_test.py -k megapixel -s
"""

import glob
import json
import os
import shutil
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install -e '.[app]')")
pytest.importorskip("selenium", reason="the app extra is not installed (pip install -e '.[app]')")

import io  # noqa: E402

from app_clip_test import two_shot_clip  # noqa: E402
from helpers import REPO, hint_generator_workdir, start_app  # noqa: E402
from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from pix2pix_jax import color  # noqa: E402
from pix2pix_jax.app import palette  # noqa: E402
from pix2pix_jax.colorize.video import sample_clip  # noqa: E402
from pix2pix_jax.tools.bench import app as bench_app  # noqa: E402

pytestmark = pytest.mark.integration

W, H = 320, 240
DEFAULT_RGB = (200, 30, 40)  # the page's first colour


def _browser_paths():
  chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
  if not (chromium and driver):
    reason = "Debian's chromium and chromium-driver are not installed (apt-get install ...)"
    if os.environ.get("CI"):
      pytest.fail(f"CI is set but {reason}")
    pytest.skip(reason)
  return chromium, driver


def chrome(chromium, driver):
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
    options.add_argument(arg)
  options.add_argument("--window-size=1500,1250")
  return webdriver.Chrome(service=Service(driver), options=options)


# Times each edit in the page itself: from the pointer going down to the result's new image
# loaded (window.p2pEdits, milliseconds).
TIME_EDITS = """
window.p2pEdits = [];
document.addEventListener("pointerdown", () => { window.p2pDown = performance.now(); }, true);
const host = document.querySelector(arguments[0]);
new MutationObserver(() => {
  const img = host.querySelector("img");
  if (!img || img.src === window.p2pShown) return;
  window.p2pShown = img.src;
  const down = window.p2pDown;
  const loaded = () => window.p2pEdits.push(performance.now() - down);
  if (img.complete && img.naturalWidth) loaded();
  else img.addEventListener("load", loaded, {once: true});
}).observe(host, {subtree: true, childList: true, attributes: true, attributeFilter: ["src"]});
"""


class Page:
  """The page in a browser: its status line, images and clicks in image pixels."""

  def __init__(self, driver, url):
    self.d = driver
    driver.get(url)
    self.wait(lambda: driver.find_elements(By.CSS_SELECTOR, "input[type=file]"))

  def wait(self, condition, timeout=180):
    return WebDriverWait(self.d, timeout, poll_frequency=0.02).until(lambda _: condition())

  def status(self, selector="#p2p-status") -> str:
    found = self.d.find_elements(By.CSS_SELECTOR, selector)
    return found[0].text if found else ""

  def wait_status(self, text, timeout=180, selector="#p2p-status"):
    self.wait(lambda: text in self.status(selector), timeout)

  def open_tab(self, name):
    self.d.find_element(By.XPATH, f"//button[@role='tab' and contains(., '{name}')]").click()

  def upload(self, accepting, path):
    """Sends `path` to the (visible tab's) file input whose accepted types include `accepting`."""
    inputs = self.d.find_elements(By.CSS_SELECTOR, f"input[type=file][accept*='{accepting}']")
    inputs[0].send_keys(str(path))

  def image(self, selector):
    return self.d.find_element(By.CSS_SELECTOR, f"{selector} img")

  def src(self, selector):
    images = self.d.find_elements(By.CSS_SELECTOR, f"{selector} img")
    return images[0].get_attribute("src") if images else None

  def fetch(self, url) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
      return response.read()

  def click_at(self, selector, x, y):
    """Clicks pixel (x, y) of the image shown in `selector` (object-fit: contain), once loaded."""
    size = "return [arguments[0].naturalWidth, arguments[0].naturalHeight]"

    def loaded():  # the image element shown now, and its size once it has loaded
      img = self.image(selector)
      natural = self.d.execute_script(size, img)
      return (img, natural) if natural[0] > 0 else None

    img, natural = self.wait(loaded)
    w, h = img.size["width"], img.size["height"]
    scale = min(w / natural[0], h / natural[1])
    dx = (x + 0.5 - natural[0] / 2) * scale
    dy = (y + 0.5 - natural[1] / 2) * scale
    ActionChains(self.d).move_to_element_with_offset(img, round(dx), round(dy)).click().perform()

  def timed_click(self, selector, x, y, result="#p2p-result") -> float:
    """`click_at`, then waits for the result's new image; returns the milliseconds from the
    pointer going down to that image loaded, as the page measured them (`TIME_EDITS`)."""
    if self.d.execute_script("return window.p2pEdits === undefined"):
      self.d.execute_script(TIME_EDITS, result)
    count = "return window.p2pEdits.length"
    before = self.d.execute_script(count)
    self.click_at(selector, x, y)
    self.wait(lambda: self.d.execute_script(count) > before)
    return self.d.execute_script("return window.p2pEdits[window.p2pEdits.length - 1]")

  def drag(self, selector, path):
    img = self.image(selector)
    natural = self.d.execute_script(
      "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img
    )
    scale = min(img.size["width"] / natural[0], img.size["height"] / natural[1])
    (x0, y0), rest = path[0], path[1:]
    chain = ActionChains(self.d).move_to_element_with_offset(
      img, round((x0 - natural[0] / 2) * scale), round((y0 - natural[1] / 2) * scale)
    )
    chain.click_and_hold()
    last = (x0, y0)
    for x, y in rest:
      chain.move_by_offset(round((x - last[0]) * scale), round((y - last[1]) * scale))
      last = (x, y)
    chain.release().perform()


def _photo(path):
  yy, xx = np.mgrid[0:H, 0:W]
  gray = (70 + 0.3 * xx + 0.1 * yy).clip(0, 255).astype(np.uint8)
  Image.fromarray(gray).save(path)
  return gray


def _lab_near(rgb, x, y, r=6):
  patch = rgb[y - r : y + r + 1, x - r : x + r + 1] / 255.0
  lab = np.asarray(color.rgb_to_lab(patch)).reshape(-1, 3).mean(0)
  return lab


def test_colouring_a_photo_in_the_browser(tmp_path):
  chromium, driver_path = _browser_paths()
  gray = _photo(tmp_path / "photo.png")
  proc, url = start_app(hint_generator_workdir(tmp_path / "hinted"), tmp_path)
  cached = _files(tmp_path / "gradio")  # Gradio's cache (TMPDIR/gradio) before the session
  try:
    _colour_in_the_browser(chrome(chromium, driver_path), url, gray, tmp_path)
    # Nothing of the closed session stays in Gradio's cache: not its uploads, not its images.
    assert _files(tmp_path / "gradio") - cached == set()
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def _files(folder):
  return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def _colour_in_the_browser(driver, url, gray, tmp_path):
  try:
    page = Page(driver, url)
    driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(
      str(tmp_path / "photo.png")
    )
    page.wait_status("0 hints")
    times = [page.timed_click("#p2p-canvas", 60, 120)]
    page.wait_status("1 hints")
    red = np.asarray(Image.open(io.BytesIO(page.fetch(page.src("#p2p-result")))))
    lab = _lab_near(red, 60, 120)
    assert lab[1] > 20 and abs(np.degrees(np.arctan2(lab[2], lab[1])) - 40) < 45, lab
    # A second point, turned blue from the palette at its lightness.
    times.append(page.timed_click("#p2p-canvas", 260, 120))
    page.wait_status("2 hints")
    lightness = float(np.asarray(color.luminance(gray[120, 260] / 255.0 * np.ones(3)))[0])
    plane = palette.plane(lightness)
    inside = (plane != 238).any(-1) & (plane != 128).any(-1)  # in gamut, off the axes
    inside &= np.arange(palette.SIZE)[:, None] > palette.SIZE * 0.65  # b < 0: blue
    ys, xs = np.nonzero(inside)
    px, py = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    blue = palette.pick(lightness, px, py)
    before = page.src("#p2p-result")
    page.click_at("#p2p-palette", px, py)
    page.wait(lambda: page.src("#p2p-result") != before)
    result = np.asarray(Image.open(io.BytesIO(page.fetch(page.src("#p2p-result")))))
    near, far = _lab_near(result, 60, 120), _lab_near(result, 260, 120)
    hue_gap = abs(np.degrees(np.arctan2(far[2], far[1]) - np.arctan2(near[2], near[1])))
    assert near[1] > 20 and far[1] < near[1] - 20 and min(hue_gap, 360 - hue_gap) > 90, (near, far)
    # A stroke painted by dragging.
    page.drag("#p2p-canvas", [(100, 200), (140, 205), (180, 210)])
    page.wait_status("3 hints")
    # The saved hints are the clicks (a pixel each, within a pixel of the click) and the stroke.
    driver.find_element(By.XPATH, "//button[contains(., 'Save result and hints')]").click()
    page.wait(lambda: driver.find_elements(By.CSS_SELECTOR, "a[href*='photo_hints.json']"))
    link = driver.find_element(By.CSS_SELECTOR, "a[href*='photo_hints.json']")
    points = json.loads(page.fetch(link.get_attribute("href")))
    by_colour = {}
    for p in points:
      by_colour.setdefault(tuple(p["rgb"]), []).append((p["x"], p["y"]))
    (red_point,) = by_colour[DEFAULT_RGB]
    assert abs(red_point[0] - 60) <= 1 and abs(red_point[1] - 120) <= 1, red_point
    blue_points = by_colour[blue]  # the second point, then the stroke in the colour last chosen
    assert sum(abs(x - 260) <= 1 and abs(y - 120) <= 1 for x, y in blue_points) == 1
    stroke = [(x, y) for x, y in blue_points if y > 150]
    assert len(stroke) > 100 and all(95 <= x <= 185 and 190 <= y <= 220 for x, y in stroke)
    shot = tmp_path / "app.png"
    driver.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 1000
    print(f"browser: click -> the result's new image loaded, {times[0]:.0f} and {times[1]:.0f} ms")
    _clip_in_the_browser(page, two_shot_clip(tmp_path / "pan.mkv"))
  finally:
    driver.save_screenshot(str(tmp_path / "last.png"))
    print("page at the end:", tmp_path / "last.png")
    driver.quit()
  # The closed tab's session files go (Gradio notices the closed page within seconds).
  roots = glob.glob(str(tmp_path / "pix2pix-app-*"))
  assert len(roots) == 1
  deadline = time.monotonic() + 60
  while os.listdir(roots[0]) and time.monotonic() < deadline:
    time.sleep(0.5)
  assert not os.listdir(roots[0])


CLIP_STATUS = "#p2p-clip-status"


def _clip_in_the_browser(page, clip):
  """The Clip tab: the clip's two shots appear; the second's first frame takes a point; the
  preview shows six frames; Colourise gives the video and its keyframe file."""
  page.open_tab("Clip")
  page.upload(".mkv", clip)
  page.wait_status("shot 1 of 2", selector=CLIP_STATUS)
  thumbs = page.d.find_elements(By.CSS_SELECTOR, "#p2p-shots img")
  assert len(thumbs) == 2
  thumbs[1].click()
  page.wait_status("pan frame 12", selector=CLIP_STATUS)
  page.click_at("#p2p-clip-canvas", 40, 30)
  page.wait_status("keyframes with hints: 12", selector=CLIP_STATUS)
  page.d.find_element(By.XPATH, "//button[contains(., 'Preview the shot')]").click()
  page.wait(lambda: len(page.d.find_elements(By.CSS_SELECTOR, "#p2p-preview img")) == 6)
  page.d.find_element(By.XPATH, "//button[contains(., 'Colourise the clip')]").click()
  page.wait(lambda: page.d.find_elements(By.CSS_SELECTOR, "a[href*='keyframes.json']"))
  link = page.d.find_element(By.CSS_SELECTOR, "a[href*='keyframes.json']")
  listing = json.loads(page.fetch(link.get_attribute("href")))
  assert listing == {"keyframes": [{"frame": 12, "scribble": "000012.png"}]}
  assert page.d.find_elements(By.CSS_SELECTOR, "#p2p-video video")


def _palette_points(page, ids, points):
  """Puts points at (x, y) of the canvas of the elements with ids starting `ids`, each coloured
  from the palette at (a, b) at its lightness."""
  status = f"#{ids}status"
  for i, ((x, y), (a, b)) in enumerate(points):
    page.click_at(f"#{ids}canvas", x, y)
    page.wait_status(f"{i + 1} hints", selector=status)
    before = page.src(f"#{ids}result")
    step = (palette.SIZE - 1) / (2 * palette.AB_RANGE)
    page.click_at(f"#{ids}palette", (a + palette.AB_RANGE) * step, (palette.AB_RANGE - b) * step)
    page.wait(lambda: page.src(f"#{ids}result") != before)  # noqa: B023


def test_edit_round_trip_of_a_megapixel_photo(tmp_path):
  """Prints p50 and p95 of 30 clicks' round trips (pointer down to the result's new image
  loaded) on a 1-megapixel photo with the model of PIX2PIX_APP_WORKDIR (the quickstart hint
  model: docs/app.md), served with XLA's optimisations as users run it; only then."""
  workdir = os.environ.get("PIX2PIX_APP_WORKDIR")
  if not workdir:
    pytest.skip("set PIX2PIX_APP_WORKDIR=runs/hints to time edits on a 1-megapixel photo")
  chromium, driver_path = _browser_paths()
  photo = bench_app.gray_photo(1.0, str(tmp_path))
  proc, url = start_app(workdir, tmp_path, JAX_DISABLE_MOST_OPTIMIZATIONS="false")
  driver = chrome(chromium, driver_path)
  try:
    page = Page(driver, url)
    driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(photo)
    page.wait_status("0 hints")
    width, height = Image.open(photo).size
    rng = np.random.default_rng(0)
    times = [
      page.timed_click("#p2p-canvas", int(rng.integers(width)), int(rng.integers(height)))
      for _ in range(32)
    ][2:]  # the first two load the page's other images too
    p50, p95 = np.percentile(times, [50, 95])
    print(f"browser, {width}x{height}: click -> new result, p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert len(times) == 30
  finally:
    driver.quit()
    proc.terminate()
    proc.wait(timeout=30)


def test_screenshot_for_the_docs(tmp_path):
  """docs/images/app.png, made only when PIX2PIX_APP_SCREENSHOT names it (the command is in
  this file's docstring): the quickstart hint model on a sample photo with a few hints."""
  target = os.environ.get("PIX2PIX_APP_SCREENSHOT")
  if not target:
    pytest.skip("set PIX2PIX_APP_SCREENSHOT=docs/images/app.png to make the docs' screenshot")
  chromium, driver_path = _browser_paths()
  workdir = os.environ.get("PIX2PIX_APP_WORKDIR", os.path.join(REPO, "runs", "hints"))
  proc, url = start_app(workdir, tmp_path)
  driver = None
  try:
    driver = chrome(chromium, driver_path)
    driver.set_window_size(1400, 900)
    page = Page(driver, url)
    sample = os.path.join(REPO, "pix2pix_jax", "data", "samples", "eval", "skimage_chelsea.jpg")
    driver.find_elements(By.CSS_SELECTOR, "input[type=file]")[0].send_keys(sample)
    page.wait_status("0 hints")
    _palette_points(
      page, "p2p-", [((150, 120), (25, 45)), ((380, 60), (-5, -30)), ((220, 250), (20, 35))]
    )
    time.sleep(1)
    driver.save_screenshot(str(tmp_path / "app.png"))
    shutil.copy(tmp_path / "app.png", target)
    # The Clip tab: a sample clip (three photos panned, cut), its second shot hinted, previewed.
    clip = sample_clip.make_sample_clip(str(tmp_path / "sample.mp4"), seconds=3, audio=False)
    page.open_tab("Clip")
    page.upload(".mp4", clip)
    page.wait_status("shot 1 of 3", selector=CLIP_STATUS)
    driver.find_elements(By.CSS_SELECTOR, "#p2p-shots img")[1].click()
    page.wait_status("shot 2 of 3", selector=CLIP_STATUS)
    _palette_points(page, "p2p-clip-", [((120, 60), (-5, -30)), ((200, 200), (-20, 25))])
    driver.find_element(By.XPATH, "//button[contains(., 'Preview the shot')]").click()
    page.wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#p2p-preview img")) == 6)
    time.sleep(1)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.set_window_size(1400, 1300)
    time.sleep(1)
    driver.save_screenshot(str(tmp_path / "app_clip.png"))
    shutil.copy(tmp_path / "app_clip.png", os.path.join(os.path.dirname(target), "app_clip.png"))
  finally:
    if driver is not None:
      driver.quit()
    proc.terminate()
    proc.wait(timeout=30)
