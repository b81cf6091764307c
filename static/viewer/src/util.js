/* Small helpers shared by the viewer's modules: DOM building, formatting, the status line. */

import { takeEarlyJson } from "./handover.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** The viewer fills the window below the page's header (viewer.css reads --viewer-top). */
export function fitViewerToWindow(root) {
  const top = root.getBoundingClientRect().top + window.scrollY;
  root.style.setProperty("--viewer-top", `${Math.ceil(top) + 8}px`);
}

export const prob = (p) => (p === null || p === undefined ? "—" : Number(p).toFixed(2));
export const viewName = (image) => `${image.laterality} ${image.view}`;
export const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
export const SIDE_NAMES = { R: "right", L: "left", U: "unknown side" };
export const TYPE_LABELS = {
  mass: "Mass",
  calcification: "Calcification",
  distortion: "Architectural distortion",
  asymmetry: "Asymmetry",
  other: "Other",
};

/** The CSRF token for a POST under the reader's session: the token of the form that posts (`scope`; else the
 * page's first form token), else Django's cookie. */
export function csrfToken(scope = document) {
  const input = scope.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** GET a portal JSON URL; a failure throws the portal's error message (or the status). */
export async function fetchJson(url) {
  // The page's early script may already have asked (early.js): its answer is used once.
  const response = await (takeEarlyJson(url) || fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).error.message || message;
    } catch {
      /* keep the status */
    }
    throw new Error(message);
  }
  return response.json();
}

export function say(message) {
  $("status-line").textContent = message;
}

export function aboveThreshold(p, threshold) {
  return p !== null && p !== undefined && threshold !== null && threshold !== undefined && p >= threshold;
}

/** The server's flag for the prediction's own model version; the exam threshold only as a fallback. */
export function predictionFlagged(p, threshold) {
  return typeof p.above_threshold === "boolean" ? p.above_threshold : aboveThreshold(p.probability, threshold);
}

/** The study's AI exam flag, or null when the page has none (not scored, or left out for a blinded reader). */
export function examFlag(study) {
  if (!study || study.exam_flag === null || study.exam_flag === undefined) return null;
  return Boolean(study.exam_flag);
}
