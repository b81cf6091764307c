"""Where a case open's time goes: one cold open and one prefetched next case under Chrome tracing.

    python -m bench.viewer_trace [--out /tmp/viewer-trace.json] [--top 15]

Seeds two four-view studies of synthetic 3328x4096 16-bit MG (as bench/viewer.py does), opens the first in a
fresh browser context and then "Next case" once the prefetch is done, with Chrome tracing on (Playwright's
CDP tracing, V8's sampling profiler included), and prints, per thread of the page's renderer (main thread,
decode workers), the functions with the most sampled self time from navigation start to the fourth
full-resolution paint of each open, and the viewer's performance marks. Function names are the bundle's
(minified: look them up in static/viewer/dist/viewer.js); native work (canvas, WebGL, structured clone)
shows as "(program)". The trace file opens in chrome://tracing or Perfetto.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import manage, scratch_env, start_gunicorn  # noqa: E402
from bench.viewer import FOUR_PAINTED, demo_password  # noqa: E402

CATEGORIES = [
    "devtools.timeline",
    "v8",
    "v8.execute",
    "disabled-by-default-devtools.timeline",
    "blink.user_timing",
    "gpu",
    "toplevel",
    "disabled-by-default-v8.cpu_profiler",
]


def record(out: Path, port: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    with tempfile.TemporaryDirectory() as tmp:
        env = scratch_env(Path(tmp), DATABASE_URL="")
        env.pop("REDIS_URL", None)
        env.pop("CELERY_BROKER_URL", None)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        password = demo_password(env)
        subprocess.run(
            [sys.executable, "-m", "bench.viewer", "--seed", "2"], cwd=ROOT, env=env, check=True, capture_output=True
        )
        server = start_gunicorn(env, port, 2)
        base = f"http://127.0.0.1:{port}"
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                size = {"width": 1920, "height": 1080}
                login = browser.new_context(viewport=size)
                page = login.new_page()
                page.goto(f"{base}/")
                page.fill("#id_username", "radiologist")
                page.fill("#id_password", password)
                page.click("button[type=submit]")
                page.wait_for_load_state()
                state = login.storage_state()
                login.close()
                context = browser.new_context(viewport=size, storage_state=state)
                page = context.new_page()
                page.goto(f"{base}/healthz")
                browser.start_tracing(page=None, path=str(out), categories=CATEGORIES)
                page.goto(f"{base}/studies/1/", wait_until="commit")
                page.wait_for_function(FOUR_PAINTED, timeout=120_000, polling=50)
                page.wait_for_selector("#viewer[data-prefetch^='done:']", timeout=120_000)
                page.click("#skip-link")
                page.wait_for_function(FOUR_PAINTED, timeout=120_000, polling=50)
                time.sleep(0.3)
                browser.stop_tracing()
                browser.close()
        finally:
            server.terminate()
            server.wait()


def summarise(events: list[dict], top: int) -> None:
    named = (e for e in events if e.get("ph") == "M" and e.get("name") == "thread_name")
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in named}
    marks = sorted((e for e in events if e.get("name", "").startswith("viewer:")), key=lambda e: e["ts"])
    if not marks:
        print("no viewer marks in the trace")
        return
    pid = marks[0]["pid"]
    # The case pages' own navigations (Chromium also starts one for each blank frame and worker).
    navs = sorted(
        e["ts"]
        for e in events
        if e.get("name") == "navigationStart"
        and e["pid"] == pid
        and "/studies/" in e.get("args", {}).get("data", {}).get("documentLoaderURL", "")
    )
    paints = [e["ts"] for e in marks if e["name"] == "viewer:image-painted"]
    windows = []  # (navigation start, fourth paint) of each open
    for k in range(len(paints) // 4):
        first, last = paints[4 * k], paints[4 * k + 3]
        windows.append((([n for n in navs if n < first] or [first])[-1], last))
    # Sampled CPU profiles: one per thread, its samples timed by deltas from the profile's start.
    profiles: dict = collections.defaultdict(lambda: {"nodes": {}, "samples": [], "tid": None, "clock": 0})
    for e in events:
        if e.get("name") == "Profile":
            p = profiles[(e["pid"], e["id"])]
            p["tid"], p["clock"] = e["tid"], e["args"]["data"]["startTime"]
    for e in events:
        if e.get("name") != "ProfileChunk" or e["pid"] != pid:
            continue
        p = profiles[(e["pid"], e["id"])]
        data = e["args"]["data"]
        profile = data.get("cpuProfile", {})
        for node in profile.get("nodes", []):
            p["nodes"][node["id"]] = node
        for sample, delta in zip(profile.get("samples", []), data.get("timeDeltas", []), strict=False):
            p["clock"] += delta
            p["samples"].append((p["clock"], sample, delta))
    for label, (start, end) in zip(("cold open", "next case, after the prefetch"), windows, strict=False):
        print(f"\n## {label}: navigation start to the fourth paint, {(end - start) / 1000:.0f} ms")
        for p in profiles.values():
            spent: collections.Counter = collections.Counter()
            for ts, sample, delta in p["samples"]:
                node = p["nodes"].get(sample)
                if node is None or not start <= ts <= end:
                    continue
                frame = node["callFrame"]
                where = frame.get("url", "").rsplit("/", 1)[-1]
                spent[f"{frame['functionName'] or '(anonymous)'} {where}:{frame.get('lineNumber')}"] += delta / 1000
            busy = sum(v for k, v in spent.items() if not k.startswith("(idle)"))
            if busy < 50:
                continue
            print(f"\n{threads.get((pid, p['tid']), p['tid'])}: {busy:.0f} ms sampled busy")
            for name, ms in spent.most_common(top + 1):
                if not name.startswith("(idle)"):
                    print(f"  {ms:7.0f} ms  {name}")
        print("\nmarks (ms from navigation start):")
        for e in marks:
            if start <= e["ts"] <= end:
                print(f"  {(e['ts'] - start) / 1000:7.0f}  {e['name']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "viewer-trace.json")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--port", type=int, default=8768)
    args = parser.parse_args()
    record(args.out, args.port)
    data = json.loads(args.out.read_text())
    summarise(data["traceEvents"] if isinstance(data, dict) else data, args.top)
    print(f"\ntrace: {args.out}")


if __name__ == "__main__":
    main()
