/* The viewer page's one script (viewer.html links it in its head, with the list of the case's images; it imports
 * the viewer bundle itself). Run as soon as it is here, before the viewer bundle downloads, compiles and starts
 * Cornerstone, it
 *  - lays out the first-paint layer (firstpaint.js) and shows each image's preview in it at once;
 *  - fetches this case's pixel data (the sources #viewer-pixels lists: the original DICOM instances as stored),
 *    each out of the next-case store when the previous page prefetched it there (prefetch.js), else from the
 *    network with progress, draws each image's first full-depth picture from it as it arrives (fastpaint.js),
 *    and keeps the bytes for the viewer (handover.js `takeEarly`);
 *  - and then, once that first paint is done, asks for the study and viewer data (`takeEarlyJson`) and imports
 *    the viewer bundle: on two cores these would take the CPU the reads and pictures need.
 * The viewer takes each answer once and asks again itself for anything absent. */
import { createFirstPaint, decodePreviews } from "./firstpaint.js";
import { KEY } from "./handover.js";
import { ORIGINAL_DICOM, takePrefetched } from "./prefetch.js";

/** Until the first paint is done the viewer bundle waits, at most this long. */
const FIRST_PAINT_WAIT_MS = 2500;

const absolute = (url) => new URL(url, window.location.href).href;

/** GET one DICOM instance as an ArrayBuffer, reporting progress (per cent) while it arrives; null when the
 * request fails. An XMLHttpRequest: the browser assembles the body and reports progress about every 50 ms,
 * where reading a fetch body chunk by chunk in JavaScript here waits on this thread's other work (the page's
 * layout, the pictures). */
function download(url, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("GET", url);
    xhr.responseType = "arraybuffer";
    xhr.setRequestHeader("Accept", ORIGINAL_DICOM);
    let reported = -1;
    xhr.onprogress = (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.floor((100 * event.loaded) / event.total);
      if (percent !== reported) onProgress((reported = percent));
    };
    xhr.onload = () => resolve(xhr.status === 200 ? xhr.response : null); // else the loader asks again
    xhr.onerror = () => resolve(null);
    xhr.onabort = () => resolve(null);
    xhr.send();
  });
}

/** One instance's bytes and where they came from ({ bytes, from }); bytes null when the request failed. */
async function pixels(url, onProgress) {
  const stored = await takePrefetched(url);
  if (stored) {
    performance.mark("viewer:image-bytes", { detail: { from: "prefetch", size: stored.byteLength } });
    return { bytes: stored, from: "prefetch" };
  }
  performance.mark("viewer:image-requested", { detail: { early: true } });
  const bytes = await download(url, onProgress);
  if (bytes) performance.mark("viewer:image-bytes", { detail: { from: "network", size: bytes.byteLength } });
  return { bytes, from: "network" };
}

/** The page's list of current images: { id, laterality, view, columns, rows, url (absolute), preview }. */
function listedImages() {
  const listed = document.getElementById("viewer-pixels");
  const images = listed ? JSON.parse(listed.textContent) : [];
  return images.map((image) => ({ ...image, url: absolute(image.url), preview: image.preview ? absolute(image.preview) : null }));
}

/** Once the page is parsed (the viewer's elements exist) and styled: this script can run before either, and
 * the layer is laid out from the page's layout (its stylesheets load apart from the document). */
const parsed = async () => {
  if (document.readyState === "loading") {
    await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
  }
  const pending = [...document.querySelectorAll('link[rel="stylesheet"]')].filter((link) => !link.sheet);
  await Promise.all(
    pending.map((link) => new Promise((resolve) => {
      link.addEventListener("load", resolve, { once: true });
      link.addEventListener("error", resolve, { once: true });
    })),
  );
};

/** Fetch at once (the head lists the images: this script may run before the body is parsed), then lay out
 * and draw once it is; resolves once every laid-out image has its full-depth picture or cannot have one. */
async function start(images) {
  let layer = null; // laid out once the page is parsed: until then the fetches run
  const bytes = new Map();
  const drawn = [];
  const progress = (url) => (percent) => {
    const root = document.getElementById("viewer");
    if (root) root.dispatchEvent(new CustomEvent("viewer:pixel-progress", { detail: { url, percent } }));
  };
  const previews = decodePreviews(images); // while the page is parsed and styled
  for (const image of images) {
    const fetched = pixels(image.url, progress(image.url)).catch(() => ({ bytes: null, from: "network" }));
    bytes.set(image.url, fetched);
    drawn.push(
      fetched.then(async ({ bytes: buffer }) => {
        await parsed();
        try {
          if (layer && buffer) layer.full(image.id, buffer);
        } catch (error) {
          performance.mark("viewer:image-not-shown", { detail: { image: image.id, reason: String(error) } });
        }
      }),
    );
  }
  await parsed();
  const root = document.getElementById("viewer");
  if (!root) return null;
  try {
    layer = createFirstPaint(root, images, previews);
  } catch {
    layer = null; // the first paint is an optimisation: the viewer's cells paint as before
  }
  root[KEY] = { json: new Map(), bytes, layer };
  const waited = new Promise((resolve) => setTimeout(resolve, FIRST_PAINT_WAIT_MS));
  await Promise.race([Promise.all(drawn), waited]);
  return root;
}

/** Ask for the study and viewer data, which the viewer takes (after the first paint: they take the server's CPU). */
function askForData(root) {
  for (const url of [root.dataset.studyUrl, root.dataset.viewerDataUrl].filter(Boolean)) {
    root[KEY].json.set(absolute(url), fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
  }
}

performance.mark("viewer:early-start"); // the bench reads when the page's script ran
if (document.getElementById("viewer-pixels") && !window.portalEarlyStarted) {
  window.portalEarlyStarted = true;
  start(listedImages()).then((root) => {
    // Then the viewer itself: its study data and its bundle.
    if (!root) return;
    askForData(root);
    if (!root.dataset.viewerScript) return;
    import(/* @vite-ignore */ root.dataset.viewerScript).catch((error) => {
      const message = document.getElementById("stage-message");
      if (!message) return;
      message.hidden = false;
      message.classList.add("failed"); // over the first pictures, which stay to be looked at
      message.textContent = `The image viewer could not be loaded (${error.message}): reload the page.`;
    });
  });
}
