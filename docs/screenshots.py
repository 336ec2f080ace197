"""Retake the console screenshots in docs/screenshots/ with the shipped model on real content.

    .venv/bin/python docs/screenshots.py [--weights models/weights/gloves-n.pt] [--photo P]

Starts `webui.py` on a free port with a scratch exports folder, drives it in Debian's Chromium as an operator
would (a real scene photo with the "gloves" policy, the desk clip as a video and as a fake webcam, History, the
Model tab) and writes image.png, violation.png, video.png, live.png, history.png and model.png. Needs
../shared/data beside the checkout. Look at the results: they are what a new user sees first.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import CHROMIUM, CHROMIUM_ARGS, running_console, y4m  # noqa: E402

from app.runtime import DESK_CLIP, SHARED_DATA  # noqa: E402  (helpers put the project on the path)

OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1400, "height": 1100}


def choose(page: Page, elem: str, option: str) -> None:
    """Pick an option by its value: shown alone, or followed by its description (`gloves (Gloves required ...)`)."""
    page.locator(f"#{elem} input").click()
    page.locator("[role=option]").filter(has_text=re.compile(rf"^\W*{re.escape(option)}( \(|$)")).first.click()


def upload(page: Page, elem: str, path: Path) -> None:
    if not page.locator(f"#{elem} input[type=file]").count():
        page.locator(f"#{elem}").get_by_label("Clear").first.click()
    page.locator(f"#{elem} input[type=file]").set_input_files(str(path))
    expect(page.locator(f"#{elem}")).to_contain_text(path.stem, timeout=30000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=ROOT / "models" / "weights" / "gloves-n.pt")
    parser.add_argument("--photo", type=Path, default=None, help="scene photo (default: one from gloves-scenes/valid)")
    args = parser.parse_args()
    # Two bare hands in a held-apart scene photo that the default model finds: "gloves" answers VIOLATION.
    photo = args.photo or SHARED_DATA / "gloves-scenes" / "valid" / "images" / "995661e40318.jpg"
    clip = DESK_CLIP
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "weights"
        weights.mkdir()
        (weights / args.weights.name).symlink_to(args.weights.resolve())
        camera = y4m(clip, tmp / "cam.y4m", frames=60, size=480)
        console = running_console("--exports", str(tmp / "exports"), "--weights-dir", str(weights), timeout_s=240)
        args_cam = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                    f"--use-file-for-fake-video-capture={camera}"]  # fmt: skip
        with console as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args_cam)
            page = browser.new_context(viewport=VIEWPORT, permissions=["camera"]).new_page()
            page.goto(url)
            page.wait_for_selector("#image-run")
            upload(page, "image-in", photo)
            page.click("#image-run")
            expect(page.locator("#image-saved")).to_contain_text("Saved to", timeout=120000)
            page.screenshot(path=str(OUT / "image.png"), full_page=True)

            choose(page, "policy", "gloves")
            page.locator("#alarm-mute input").check()
            page.click("#image-run")
            expect(page.locator("#image-saved")).to_contain_text("policy gloves", timeout=120000)
            page.screenshot(path=str(OUT / "violation.png"), full_page=True)

            page.get_by_role("tab", name="Video").click()
            upload(page, "video-in", clip)
            page.locator("#stride input[type=number]").fill("10")
            page.locator("#stride input[type=number]").press("Enter")
            page.click("#video-run")
            page.wait_for_function("document.querySelector('#video-out video')?.readyState === 4", timeout=600000)
            page.screenshot(path=str(OUT / "video.png"), full_page=True)

            page.get_by_role("tab", name="Live camera").click()
            page.locator("#cam [title='grant webcam access'] button").click()
            page.locator("#cam button[aria-label='capture photo']").click()
            expect(page.locator("#live-info")).to_contain_text("frames", timeout=120000)
            page.wait_for_timeout(8000)
            page.screenshot(path=str(OUT / "live.png"), full_page=True)
            page.locator("#cam button[aria-label='capture photo']").click()
            page.click("#live-stop")

            page.get_by_role("tab", name="History & Export").click()
            page.click("#hist-run")
            page.wait_for_timeout(3000)
            page.click("#hist-export")
            expect(page.locator("#hist-file a").first).to_be_visible(timeout=60000)
            page.screenshot(path=str(OUT / "history.png"), full_page=True)

            page.get_by_role("tab", name="Model").click()
            page.wait_for_timeout(1000)
            page.screenshot(path=str(OUT / "model.png"), full_page=True)
            browser.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
