/* The viewer's first requests, started as soon as the page is parsed: its own small entry script (early.js,
 * linked before viewer.js), so they do not wait for the viewer bundle to download, compile and start
 * Cornerstone. It asks for the study and viewer data and then for this case's pixel data (the sources the
 * page lists in #viewer-pixels: the original DICOM instances as stored), each out of the next-case store when
 * the previous page prefetched it there (prefetch.js), else from the network, while the bundle boots; the
 * viewer takes each answer once (`takeEarly`, `takeEarlyJson`) and asks again itself for anything absent.
 *
 * The two entry scripts share nothing but the `#viewer` element: a property on it holds the answers, so the
 * hand-over does not rely on both bundles resolving one module URL (collectstatic renames them). */
import { ORIGINAL_DICOM, takePrefetched } from "./prefetch.js";

const KEY = "portalEarly";
const absolute = (url) => new URL(url, window.location.href).href;

/** The body as one ArrayBuffer, reporting progress (per cent) while it arrives when its length is known. */
async function bodyWithProgress(response, onProgress) {
  const total = Number(response.headers.get("Content-Length") || 0);
  if (!total || !response.body) return response.arrayBuffer();
  const buffer = new Uint8Array(total);
  const reader = response.body.getReader();
  let received = 0;
  let reported = -1;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > total) return null; // not the length it announced: the loader asks again
    buffer.set(value, received);
    received += value.length;
    const percent = Math.floor((100 * received) / total);
    if (percent !== reported) onProgress((reported = percent));
  }
  return received === total ? buffer.buffer : null;
}

/** One instance's bytes and where they came from ({ bytes, from }); bytes null when the fetch failed. */
async function pixels(url, root) {
  const stored = await takePrefetched(url);
  if (stored) {
    performance.mark("viewer:image-bytes", { detail: { from: "prefetch" } }); // out of the store (network: resource timing)
    return { bytes: stored, from: "prefetch" };
  }
  performance.mark("viewer:image-requested", { detail: { early: true } });
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: ORIGINAL_DICOM }, cache: "no-store" });
  if (!response.ok) return { bytes: null, from: "network" }; // the loader asks again and reports the failure
  const progress = (percent) => root.dispatchEvent(new CustomEvent("viewer:pixel-progress", { detail: { url, percent } }));
  return { bytes: await bodyWithProgress(response, progress), from: "network" };
}

function start(root) {
  const listed = document.getElementById("viewer-pixels");
  const urls = listed ? JSON.parse(listed.textContent).map(absolute) : [];
  const json = new Map();
  for (const url of [root.dataset.studyUrl, root.dataset.viewerDataUrl].filter(Boolean)) {
    json.set(absolute(url), fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
  }
  const bytes = new Map(urls.map((url) => [url, pixels(url, root).catch(() => ({ bytes: null, from: "network" }))]));
  root[KEY] = { json, bytes };
}

function taken(kind, url) {
  const root = document.getElementById("viewer");
  const early = root && root[KEY];
  if (!early) return null;
  const key = absolute(url);
  const found = early[kind].get(key) || null;
  early[kind].delete(key);
  return found;
}

/** The early answer (a fetch Response promise) to a JSON GET of this URL, once; null when there is none. */
export const takeEarlyJson = (url) => taken("json", url);

/** The early bytes of this pixel URL, once: a promise of { bytes, from }, or null when none were asked for. */
export const takeEarly = (url) => taken("bytes", url);

const root = document.getElementById("viewer");
if (root && !root[KEY]) start(root);
