"""A self-contained HTML gallery of an evaluation: thumbnails and a table sortable by metric."""

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Clicking a header sorts the table by that column; clicking again reverses the order.
_SORT_SCRIPT = """
document.querySelectorAll("th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = document.querySelector("#images tbody");
    var col = +th.dataset.col, up = th.dataset.up !== "1";
    th.dataset.up = up ? "1" : "0";
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = parseFloat(a.cells[col].dataset.v), y = parseFloat(b.cells[col].dataset.v);
      return up ? x - y : y - x;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

_STYLE = """
body { font-family: sans-serif; margin: 1em; }
table { border-collapse: collapse; }
td, th { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th[data-col] { cursor: pointer; background: #eee; }
td.file { text-align: left; font-family: monospace; }
"""


def _img(jpeg: bytes, alt: str) -> str:
  data = base64.b64encode(jpeg).decode("ascii")
  return f'<img src="data:image/jpeg;base64,{data}" alt="{alt}">'


def _number(value: float) -> str:
  return f"{value:.4g}" if math.isfinite(value) else str(value)


def _sort_key(value: float) -> str:
  """The value as JavaScript's parseFloat reads it (inf -> Infinity)."""
  if math.isnan(value):
    return "NaN"
  return repr(value) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def render(
  *,
  title: str,
  labels: Sequence[str],
  thumbnails: Sequence[dict[str, bytes]],
  values: dict[str, np.ndarray],
  summary: dict[str, Any],
  predictors: Sequence[str],
) -> str:
  """The gallery page: a summary table (mean and 95% CI per predictor), then one row per image
  with "input", "model" and "target" thumbnails and the model's per-image `values`."""
  names = list(values)
  out = [
    "<!DOCTYPE html>",
    '<html><head><meta charset="utf-8">',
    f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
    f"<h1>{html.escape(title)}</h1>",
    "<h2>Summary (mean, 95% CI)</h2><table><tr><th>metric</th>",
  ]
  out += [f"<th>{html.escape(p)}</th>" for p in predictors]
  out.append("</tr>")
  for name in names:
    cells = []
    for p in predictors:
      s = summary[p][name]
      ci = f"[{_number(s['ci95_low'])}, {_number(s['ci95_high'])}]"
      cells.append(f"<td>{_number(s['mean'])} {ci}</td>")
    out.append(f"<tr><td class=file>{html.escape(name)}</td>{''.join(cells)}</tr>")
  out.append("</table>")
  out.append(
    f"<h2>Images ({len(thumbnails)} of {len(labels)}; click a metric to sort)</h2>"
    '<table id="images"><thead><tr><th data-col="0">#</th><th>file</th>'
    "<th>input (L)</th><th>model</th><th>ground truth</th>"
  )
  out += [f'<th data-col="{5 + k}">{html.escape(n)}</th>' for k, n in enumerate(names)]
  out.append("</tr></thead><tbody>")
  for i, thumbs in enumerate(thumbnails):
    cells = [
      f'<td data-v="{i}">{i}</td>',
      f"<td class=file>{html.escape(labels[i])}</td>",
      f"<td>{_img(thumbs['input'], 'input')}</td>",
      f"<td>{_img(thumbs['model'], 'model')}</td>",
      f"<td>{_img(thumbs['target'], 'ground truth')}</td>",
    ]
    for n in names:
      v = float(values[n][i])
      cells.append(f'<td data-v="{_sort_key(v)}">{_number(v)}</td>')
    out.append(f"<tr>{''.join(cells)}</tr>")
  out.append(f"</tbody></table><script>{_SORT_SCRIPT}</script></body></html>")
  return "\n".join(out) + "\n"
