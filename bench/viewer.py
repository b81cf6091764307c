"""Case open to the first paints in the viewer, in headless Chromium.

    python -m bench.viewer [--cases 20] [--workers 2] [--threads 8] [--database-url postgres://...]

Seeds a scratch database (SQLite unless --database-url) and media folder with N + 1 four-view studies of
synthetic 3328x4096 16-bit MG DICOM through the ingest service, with its queue mocked (no predictions run);
each image is then rendered in the same child process, as the render worker does at once after a real ingest,
so the cases have their display and full-resolution PNGs and their preview JPEGs as a real portal's would
(about 0.8 s more an image for the seed, on 2 cores: the full-resolution PNG most of it). Serves the portal on
gunicorn (loopback), logs the demo radiologist in to the system Chromium (headless, 1920x1080) and opens
each case in a fresh browser context (cold HTTP cache, no prefetched images). Then, in the same context, once
the viewer has prefetched the next case (`data-prefetch`, prefetch.js), it follows "Next case" and times that
open too (its static files are cached by then as well).

Milestones, from navigation start, each the last of the case's four images:
- preview: something useful of every image on the screen: its preview (the server's 8-bit JPEG of the
  display rendition) or anything better (`viewer:image-shown`, firstpaint.js);
- full: every image painted from its stored values at full bit depth: the early script's picture
  (`viewer:image-shown` quality "full", firstpaint.js) or the Cornerstone cell's paint, whichever came first;
- interactive: every Cornerstone cell painted (`viewer:image-painted`, cell.js): zoom, window and tools work.
The breakdown adds bytes (the last image's bytes handed to the page, from the network or the next-case store)
and decoded (the last image decoded by the viewer's loader, `viewer:image-loaded`).
MB per case: what the page moved until the last interactive paint (page, static files, previews, pixel data;
the prefetch after it is counted apart). Prints markdown.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import manage, scratch_env, start_gunicorn  # noqa: E402

ROWS, COLUMNS = 4096, 3328
VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))

# Everything the page measured, read once the four images are interactive.
COLLECT = """() => {
  const marks = (name) => performance.getEntriesByName(name).map((e) => ({ t: e.startTime, ...(e.detail || {}) }));
  const nav = performance.getEntriesByType("navigation")[0];
  return {
    requested: marks("viewer:image-requested"),
    stored: marks("viewer:image-bytes"),
    shown: marks("viewer:image-shown"),
    painted: marks("viewer:image-painted"),
    loaded: marks("viewer:image-loaded"),
    nav: { bytes: nav.transferSize, end: nav.responseEnd },
    resources: performance.getEntriesByType("resource").map((e) => ({ first: e.responseStart,
      url: e.name, start: e.startTime, end: e.responseEnd, bytes: e.transferSize })),
  };
}"""
FOUR_PAINTED = "() => performance.getEntriesByName('viewer:image-painted').length >= 4"


def wait_until(page, predicate: str, timeout: float = 120.0) -> None:
    """Poll the page from here, a plain evaluation every 0.2 s: Playwright's wait_for_function first injects its
    own script into the page (60-80 ms of the main thread, traced) at the very moment being measured. The
    marks carry their own times, so the polling's coarseness changes no figure."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page did not reach {predicate} in {timeout:.0f} s")
        time.sleep(0.2)


def seed(studies: int) -> None:
    """Runs in a child process with the scratch environment: N four-view studies through ingest_file."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from unittest import mock

    from pydicom.uid import generate_uid

    from screening.intake.services.ingest import ingest_file
    from screening.intake.services.renditions import render_image
    from tests.dicom_factory import mg_dataset, phantom, to_bytes

    base = {view: phantom(ROWS, COLUMNS, bits=16, seed=k) for k, view in enumerate(("CC", "MLO"))}
    with mock.patch("screening.dispatch.send"):  # no queued work: the renders run here, no inference at all
        for s in range(studies):
            study_uid = generate_uid()
            for k, (side, view) in enumerate(VIEWS):
                pixels = np.roll(base[view], 7 * (s * 4 + k), axis=0)
                ds = mg_dataset(
                    pixels, bits=16, laterality=side, view=view, study_uid=study_uid, patient_id=f"VIEWER-{s:03d}"
                )
                image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"viewer-{s:03d}-{side}{view}.dcm").image
                if render_image(image.pk) != "ready":  # what the render worker does after a real ingest
                    raise SystemExit(f"the render of image {image.pk} did not finish")


def demo_password(env: dict) -> str:
    out = manage(env, "setup_demo", "--cases", "no")  # accounts only: the bench seeds its own studies
    line = next(line for line in out.splitlines() if "username=radiologist" in line)
    return line.split("password=")[1].split()[0]


def first_per_image(marks: list[dict], painted: list[dict]) -> float:
    """When the last image had one of these marks (or its Cornerstone paint, if that came first)."""
    first: dict[int, float] = {}
    for m in marks + painted:
        first[m["image"]] = min(first.get(m["image"], m["t"]), m["t"])
    return max(first.values())


def breakdown(m: dict, pixel_urls: set[str]) -> dict:
    """Milliseconds from navigation start, and bytes, of one case open."""
    interactive = max(p["t"] for p in m["painted"])
    full = first_per_image([s for s in m["shown"] if s.get("quality") == "full"], m["painted"])
    preview = first_per_image(m["shown"], m["painted"])
    loaded = max(p["t"] for p in m["loaded"])
    pixels = [r for r in m["resources"] if r["url"] in pixel_urls and r["start"] <= interactive]
    handed = [s for s in m["stored"] if s["t"] <= interactive]  # from the network or the next-case store
    last_byte = max([r["end"] for r in pixels] + [s["t"] for s in handed])
    before = [r for r in m["resources"] if r["start"] <= interactive]
    return {
        "preview": preview,
        "full": full,
        "interactive": interactive,
        "bytes_in": last_byte,
        "decoded": loaded,
        "bytes": m["nav"]["bytes"] + sum(r["bytes"] for r in before),
        "prefetched": sum(1 for p in m["loaded"] if p.get("from") == "prefetch"),
        "prefetch_bytes": sum(
            r["bytes"] for r in m["resources"] if r["start"] > interactive and r["url"] in pixel_urls
        ),
    }


def pixel_urls_of(env: dict, base: str) -> set[str]:
    out = manage(
        env,
        "shell",
        "-c",
        "from screening.models import Image; from screening.reading.views import _pixel_source\n"
        "for i in Image.objects.select_related('study'): print(_pixel_source(i)['url'])",
    )
    return {base + line.strip() for line in out.splitlines() if line.startswith("/")}


def measure(base: str, password: str, study_ids: list[int], pixel_urls: set[str], follow_next: bool):
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    cold, warm, loads = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        size = {"width": 1920, "height": 1080}
        login = browser.new_context(viewport=size)
        page = login.new_page()
        page.goto(f"{base}/")  # the login page
        page.fill("#id_username", "radiologist")
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        state = login.storage_state()
        login.close()
        for study in study_ids:
            context = browser.new_context(viewport=size, storage_state=state)  # cold cache, logged in
            page = context.new_page()
            page.goto(f"{base}/studies/{study}/", wait_until="commit")
            time.sleep(2.0)  # nothing of Playwright's runs in the page while it opens and first paints
            wait_until(page, FOUR_PAINTED)
            cold.append(breakdown(page.evaluate(COLLECT), pixel_urls))
            if follow_next and page.locator("#skip-link").count():
                page.wait_for_selector("#viewer[data-prefetch^='done:']", timeout=120_000)
                after = page.evaluate(COLLECT)["resources"]
                cold[-1]["prefetch_bytes"] = sum(
                    r["bytes"] for r in after if r["url"] in pixel_urls and r["start"] > cold[-1]["interactive"]
                )
                page.click("#skip-link")
                time.sleep(2.0)
                wait_until(page, FOUR_PAINTED)
                warm.append(breakdown(page.evaluate(COLLECT), pixel_urls))
            context.close()
            loads.append(os.getloadavg()[0])
            c = cold[-1]
            line = (
                f"  case {study}: preview {c['preview']:.0f}, full {c['full']:.0f}, interactive {c['interactive']:.0f}"
            )
            if warm and len(warm) == len(cold):
                w = warm[-1]
                line += f"; next: {w['preview']:.0f} / {w['full']:.0f} / {w['interactive']:.0f} ms"
            print(line, file=sys.stderr)
        browser.close()
    return cold, warm, loads


def row(name: str, runs: list[dict], load: float) -> str:
    def stat(key: str) -> str:
        values = np.array([r[key] for r in runs])
        return f"{np.median(values):.0f} / {np.percentile(values, 95):.0f}"

    med = {k: float(np.median([r[k] for r in runs])) for k in ("bytes_in", "decoded", "bytes")}
    from_prefetch = sum(r["prefetched"] for r in runs) / len(runs)
    return (
        f"| {name} | {len(runs)} | {stat('preview')} | {stat('full')} | {stat('interactive')} | "
        f"{med['bytes_in']:.0f} / {med['decoded']:.0f} | {med['bytes'] / 1e6:.1f} | {from_prefetch:.1f} | {load:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--no-next", action="store_true", help="skip the open of the next case after its prefetch")
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed is not None:
        seed(args.seed)
        return

    if args.database_url:  # a scratch database of its own, made afresh
        base, name = args.database_url.rsplit("/", 1)
        subprocess.run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True)
        subprocess.run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = scratch_env(Path(tmp), DATABASE_URL=args.database_url)
        env.pop("REDIS_URL", None)  # in-process tasks and a local cache: nothing queued anywhere
        env.pop("CELERY_BROKER_URL", None)
        t0 = time.perf_counter()
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        password = demo_password(env)
        subprocess.run(
            [sys.executable, "-m", "bench.viewer", "--seed", str(args.cases + 1)], cwd=ROOT, env=env, check=True
        )
        print(f"seeded {args.cases + 1} studies in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        server = start_gunicorn(env, args.port, args.workers, args.threads)
        base = f"http://127.0.0.1:{args.port}"
        try:
            urls = pixel_urls_of(env, base)
            out = manage(
                env,
                "shell",
                "-c",
                "from screening.models import Study\n"
                "for pk in Study.objects.values_list('id', flat=True): print('study', pk)",
            )
            ids = sorted(int(line.split()[1]) for line in out.splitlines() if line.startswith("study "))
            started = time.perf_counter()
            cold, warm, loads = measure(base, password, ids[: args.cases], urls, not args.no_next)
            elapsed = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait()
    load = float(np.mean(loads))
    print(
        f"\nCase open of four {COLUMNS}x{ROWS} 16-bit MG images, 1920x1080, headless Chromium, gunicorn "
        f"({args.workers} workers x {args.threads} threads, {'PostgreSQL' if args.database_url else 'SQLite'}) "
        f"on loopback, {os.cpu_count()} CPUs; {elapsed:.0f} s. Milliseconds from navigation start, median / p95.\n"
    )
    print(
        "| open | cases | preview (useful first paint) | full (full-depth paint) | interactive (Cornerstone) "
        "| median bytes in / decoded | MB per case | images from prefetch | load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(row("cold (fresh browser context)", cold, load))
    if warm:
        print(row("next case, after the prefetch", warm, load))
        moved = np.median([r["prefetch_bytes"] for r in cold]) / 1e6
        print(f"\nThe prefetch moved {moved:.1f} MB per case (median), after the paint.")


if __name__ == "__main__":
    main()
