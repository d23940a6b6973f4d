"""The run page in a real browser at 1300 px wide: every chart visible, none overlapping another,
no label overlapping another; the screenshot is kept in test-artifacts/run_page.png."""

from __future__ import annotations

from browser import browser, screenshot  # noqa: F401  (browser is a fixture)
from test_validation import make_trainer

# Boxes of every chart and, per chart, of every text, as the browser lays them out.
LAYOUT = """
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const charts = Array.from(document.querySelectorAll('svg.chart'));
return {
  width: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
  height: document.documentElement.scrollHeight,
  charts: charts.map(box),
  texts: charts.map(c => Array.from(c.querySelectorAll('text')).map(t => [t.textContent, box(t)])),
};
"""


def overlap(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def test_the_run_page_reads_at_1300_pixels(browser, registry, pm, tiny_facades, tmp_path):  # noqa: F811
    trainer = make_trainer(registry, pm, tiny_facades, tmp_path)
    trainer.fit()
    browser.get((trainer.run_dir / "index.html").as_uri())
    layout = browser.execute_script(LAYOUT)
    browser.set_window_size(1300, min(layout["height"] + 150, 4000))  # the whole page in one picture
    screenshot(browser, "run_page.png")

    assert len(layout["charts"]) == 4 + 4  # pix2pix's four losses, then l1, mse, psnr, ssim
    assert len({top for _, top, _, _ in layout["charts"][:4]}) == 1  # four to a row
    assert layout["scrollWidth"] <= layout["width"]  # nothing runs off to the right
    charts = layout["charts"]
    for i, a in enumerate(charts):
        assert a[2] <= layout["width"]
        assert not any(overlap(a, b) for b in charts[i + 1:]), f"chart {i} overlaps another"
    for texts in layout["texts"]:
        labels = [t for t in texts if t[0].strip()]
        values = [text for text, _ in labels[2:5]]  # the title, the last value, then the value ticks
        assert len(set(values)) == 3, f"value ticks {values} do not tell their values apart"
        for i, (text, a) in enumerate(labels):
            clash = [other for other, b in labels[i + 1:] if overlap(a, b)]
            assert not clash, f"label {text!r} overlaps {clash}"
