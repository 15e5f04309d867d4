"""Rendering a neuroglancer link in headless Chromium (WebGL2 through SwiftShader): what is on
screen, measured, for the tests that check a link shows what it should."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CAN_RENDER = bool(CHROMIUM and CHROMEDRIVER) or bool(os.environ.get("CI"))
RENDER_REASON = "needs Debian's chromium and chromium-driver (.ci/run installs them)"
CHROME_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--use-gl=angle",  # WebGL2 without a GPU: ANGLE on SwiftShader
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",  # this machine has no network but the registries
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=900,700",
]


@dataclass(frozen=True)
class Rendered:
    """The screen's centre: the fraction of strongly coloured pixels (segments) and the number
    of distinct colours (EM texture gives hundreds; flat colours a handful), and the browser's
    severe console errors."""

    coloured: float
    distinct: int
    errors: list[str]


def measure(png: bytes) -> tuple[float, int]:
    import matplotlib.image

    rgb = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    height, width = rgb.shape[:2]
    panel = rgb[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4]
    saturation = panel.max(axis=-1) - panel.min(axis=-1)
    distinct = np.unique((panel * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    return float((saturation > 0.25).mean()), len(distinct)


def drawn(coloured: float, distinct: int) -> bool:
    """Segments and EM texture on screen (a 2-D panel over the image)."""
    return coloured > 0.05 and distinct > 150


def render(
    url: str,
    folder: Path,
    timeout_s: float = 120,
    ready: Callable[[float, int], bool] = drawn,
) -> Rendered:
    """Opens ``url`` and waits (up to ``timeout_s``) until ``ready(coloured, distinct)``; the
    last screenshot is kept as ``folder/neuroglancer.png``."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'chromium'}")
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(url)
        coloured, distinct, png = 0.0, 0, b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # wait for the viewer to fetch chunks and draw
            time.sleep(2)
            png = driver.get_screenshot_as_png()
            coloured, distinct = measure(png)
            if ready(coloured, distinct):
                break
        (folder / "neuroglancer.png").write_bytes(png)
        logs = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    return Rendered(coloured, distinct, [m for m in logs if "favicon" not in m])
