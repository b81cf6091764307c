/* Next-case prefetch. The portal answers pixel data with `Cache-Control: no-store`, so the browser's HTTP
 * cache keeps none of it, and the next case is a new page (the viewer's memory goes with the old one). The
 * viewer therefore keeps the next case's DICOM instances itself, in one Cache Storage cache of its own:
 * fetched one at a time at low priority once the open case has painted, taken out (and deleted) by the next
 * page instead of fetching them, and dropped when stale (TTL) or when another case comes next. */
const STORE = "portal-next-case";
const TTL_MS = 10 * 60 * 1000;
const STAMP = "X-Portal-Prefetched-At";
// WADO-RS: one plain Part 10 file, the original as stored (the viewer's codecs decode it; no transcoding).
export const ORIGINAL_DICOM = "application/dicom; transfer-syntax=*";

const available = () => typeof caches !== "undefined"; // Cache Storage: secure contexts only
// The URLs the last prefetch in this tab stored: a page asks Cache Storage (slow to open, 0.1-0.3 s on a fresh
// profile) only for these. Session storage: per tab, as the next case opens in the same tab.
const HELD = "portal.next-case";

function held() {
  try {
    return JSON.parse(sessionStorage.getItem(HELD) || "[]");
  } catch {
    return [];
  }
}

function remember(urls) {
  try {
    if (urls.length) sessionStorage.setItem(HELD, JSON.stringify(urls));
    else sessionStorage.removeItem(HELD);
  } catch {
    /* no session storage: pages then do not look in the store */
  }
}

const absolute = (url) => new URL(url, self.location.href).href; // self: the page or the early worker (early.js)

function fresh(response) {
  const age = Date.now() - Number(response.headers.get(STAMP) || 0);
  return age >= 0 && age < TTL_MS;
}

/** The prefetched bytes of one instance, taken out of the store; null when there are none (or stale ones). */
export async function takePrefetched(url) {
  if (!available() || !held().includes(absolute(url))) return null;
  try {
    const store = await caches.open(STORE);
    const response = await store.match(absolute(url));
    if (!response) return null;
    await store.delete(absolute(url));
    return fresh(response) ? await response.arrayBuffer() : null;
  } catch {
    return null; // the store is an optimisation: the loader fetches as usual
  }
}

/** Fetch these instances into the store, one after the other at low priority; anything else there goes.
 * Resolves with how many are held; stops early when `signal` aborts (the page leaves). */
export async function prefetch(urls, { signal } = {}) {
  if (!available()) return 0;
  if (!urls.length) {
    remember([]);
    await caches.delete(STORE);
    return 0;
  }
  const wanted = urls.map(absolute);
  remember(wanted); // before any is stored: a page that looks finds one or finds nothing
  const store = await caches.open(STORE);
  for (const request of await store.keys()) if (!wanted.includes(request.url)) await store.delete(request);
  let count = 0;
  for (const url of wanted) {
    const kept = await store.match(url);
    if (kept && fresh(kept)) {
      count += 1;
      continue;
    }
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: ORIGINAL_DICOM },
      cache: "no-store",
      priority: "low",
      signal,
    });
    if (!response.ok) continue;
    const headers = { "Content-Type": "application/dicom", [STAMP]: String(Date.now()) };
    await store.put(url, new Response(response.body, { headers }));
    count += 1;
  }
  return count;
}
