/* What the page's early script (early.js, its own small bundle) hands to the viewer bundle: answers to the
 * first requests and the first-paint layer (firstpaint.js). The two bundles share nothing but the `#viewer`
 * element: a property on it holds them, so the hand-over does not rely on both bundles resolving one module
 * URL (collectstatic renames them). */
export const KEY = "portalEarly";

function early() {
  const root = document.getElementById("viewer");
  return (root && root[KEY]) || null;
}

function taken(kind, url) {
  const held = early();
  if (!held) return null;
  const key = new URL(url, window.location.href).href;
  const found = held[kind].get(key) || null;
  held[kind].delete(key);
  return found;
}

/** The early answer (a fetch Response promise) to a JSON GET of this URL, once; null when there is none. */
export const takeEarlyJson = (url) => taken("json", url);

/** The early bytes of this pixel URL, once: a promise of { bytes, from }, or null when none were asked for. */
export const takeEarly = (url) => taken("bytes", url);

const NO_LAYER = { quality: () => null, release: () => {}, releaseAll: () => {} };

/** The first-paint layer: quality(imageId) (what it shows of the image: "preview", "full" or null), release(imageId) once the viewer's own
 * cell has painted that image, releaseAll() when the viewer changes the layout. */
export const firstPaint = () => (early() && early().layer) || NO_LAYER;
