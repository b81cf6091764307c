/* Cornerstone3D set-up: the rendering engine, the DICOM loader (full bit depth from the portal's
 * WADO-RS instance endpoint, and the portal's DICOM wrapping of uploaded PNG/JPEG files). */
import {
  Enums,
  RenderingEngine,
  cache,
  imageLoader,
  init as coreInit,
  metaData,
  utilities as csUtils,
} from "@cornerstonejs/core";
import { init as dicomLoaderInit, prefetchPart10Instance } from "@cornerstonejs/dicom-image-loader";
import { init as toolsInit } from "@cornerstonejs/tools";
import { takeEarly } from "./handover.js";
import { decodePlainFramesHere } from "./plaindecode.js";
import { ORIGINAL_DICOM, takePrefetched } from "./prefetch.js";

export const ENGINE_ID = "screening";
let engine = null;

export async function initImaging() {
  await coreInit();
  dicomLoaderInit({
    // One decoder per core (at most 4): the main thread waits while the case's images decode, so on a
    // 2-core machine two workers decode two images at once where one worker took them in turn.
    maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2)),
    // The WADO-RS instance endpoint answers one plain Part 10 file for this Accept (not multipart), the
    // original as stored (transfer-syntax=*): the codecs here decode it, no transcoding on the server.
    beforeSend: () => ({ Accept: ORIGINAL_DICOM }),
  });
  decodePlainFramesHere(); // uncompressed frames: no 27 MB copies to a worker and back (plaindecode.js)
  toolsInit();
  engine = new RenderingEngine(ENGINE_ID);
  return engine;
}

export const getEngine = () => engine;

/** The Cornerstone image id of a portal image: its DICOM instance, or an uploaded picture's stored values,
 * which the portal serves as DICOM too (one loader: the same windowing, probe and presets for both). */
export function imageIdFor(source) {
  return `wadouri:${new URL(source.url, window.location.href).href}`;
}

/** Load one image into Cornerstone's cache, as `imageLoader.loadAndCacheImage` does, minus its unhandled
 * rejection: the cache chains its own promise on the load (and rethrows a failure into it) without
 * returning it, so a broken file was an "Uncaught (in promise)" page error besides the failure the cell
 * reports. Here the cache's promise is handled; the caller gets the load's failure. */
function loadAndCache(imageId) {
  const cached = cache.getImageLoadObject(imageId);
  if (cached) return cached.promise;
  const promise = imageLoader.loadImage(imageId);
  cache.putImageLoadObject(imageId, { promise }).catch(() => {}); // the failure reaches the caller via `promise`
  return promise;
}

const VOI_FUNCTIONS = ["LINEAR", "LINEAR_EXACT", "SIGMOID"]; // DICOM's VOI LUT Function values, as Cornerstone names them

/** The image's VOI LUT Function (0028,1056), LINEAR when absent or unknown (DICOM's default). Cornerstone's
 * DICOM loader keeps only the value's first character ("L", "S"), which nothing knows: an image with the
 * attribute had no VOI range (saturated, no window readout) and SIGMOID was drawn as LINEAR. */
function voiFunctionOf(imageId) {
  const module = metaData.get("voiLutModule", imageId) || {};
  const value = String([].concat(module.voiLUTFunction ?? "")[0] ?? "")
    .trim()
    .toUpperCase();
  return VOI_FUNCTIONS.includes(value) ? value : "LINEAR";
}

/** A loaded DICOM image as the viewport must see it before `setStack` (which reads its VOI function). */
function withVoiFunction(imageId, image) {
  image.voiLUTFunction = voiFunctionOf(imageId);
  return image;
}

/** Where an image's bytes are before the loader asks for them: fetched by the page's early script (from the
 * network or the next-case store), or, for an image it did not ask for, in the next-case store. */
async function bytesAtHand(url) {
  const early = takeEarly(url);
  if (early) return await early;
  const stored = await takePrefetched(url);
  if (stored) performance.mark("viewer:image-bytes", { detail: { from: "prefetch" } }); // out of the store (network: resource timing)
  return { bytes: stored, from: stored ? "prefetch" : "network" };
}

/** Load (and cache) one image; its bytes come from the early script or the next-case prefetch of the previous
 * page (prefetch.js), else the loader fetches them (with progress events, per image, by URL). Resolves with
 * the image and where its bytes came from. */
export async function loadImage(imageId) {
  const url = imageId.slice("wadouri:".length);
  const { bytes, from } = cache.getImageLoadObject(imageId) ? { bytes: null, from: "network" } : await bytesAtHand(url);
  if (!bytes) return { image: withVoiFunction(imageId, await loadAndCache(imageId)), from: "network" };
  // The loader's metadata now holds the instance, so loading the image id fetches nothing.
  await prefetchPart10Instance(imageId, bytes);
  return { image: withVoiFunction(imageId, await loadAndCache(imageId)), from };
}

/** A loaded DICOM image's attributes by keyword (DICOM JSON naturalised: PhotometricInterpretation,
 * KVP, ImagerPixelSpacing...), as the loader parsed them. */
export function dicomAttributes(imageId) {
  if (!imageId || !imageId.startsWith("wadouri:")) return {};
  try {
    return metaData.get("instance", imageId) || {};
  } catch {
    return {};
  }
}

/** One attribute as text (multiple values joined by backslashes, DICOM style); "" when absent. */
export function attributeText(attributes, keyword) {
  const value = attributes[keyword];
  if (value === undefined || value === null) return "";
  if (Array.isArray(value)) return value.join("\\");
  if (typeof value === "object") return String(value.Alphabetic ?? "");
  return String(value);
}

/** What went wrong with a load, for the cell's message (the portal's JSON error where it sent one). */
export function describeError(error) {
  if (!error) return "unknown error";
  const xhr = error.request || (error.error instanceof XMLHttpRequest ? error.error : null);
  if (xhr) {
    let message = `HTTP ${xhr.status}`;
    try {
      const body = JSON.parse(new TextDecoder().decode(xhr.response));
      if (body.error && body.error.message) message += `: ${body.error.message}`;
    } catch {
      /* not the portal's JSON error */
    }
    return message;
  }
  if (typeof error === "string") return error;
  if (error.message) return error.message;
  if (error.error) return describeError(error.error);
  return String(error);
}

/** Which edge is the chest wall: the tissue-heavy (brighter after the photometric) half. */
export function chestWallOnLeft(image) {
  const pixels = image.getPixelData();
  const { columns, rows } = image;
  const step = Math.max(1, Math.floor(Math.min(columns, rows) / 64));
  let left = 0;
  let right = 0;
  for (let y = 0; y < rows; y += step) {
    const row = y * columns;
    for (let x = 0; x < columns; x += step) {
      if (x < columns / 2) left += pixels[row + x];
      else right += pixels[row + x];
    }
  }
  const photometric = attributeText(dicomAttributes(image.imageId), "PhotometricInterpretation");
  const monochrome1 = (photometric || image.photometricInterpretation) === "MONOCHROME1";
  return monochrome1 ? left <= right : left >= right;
}

export const Events = Enums.Events;
export const ImageQualityStatus = Enums.ImageQualityStatus;
export const ViewportType = Enums.ViewportType;
export { csUtils };
