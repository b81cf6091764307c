/* Hanging protocols as data (as OHIF keeps them): each protocol is a sequence of steps, each step a grid of
 * slots; a slot names the study (current or the chosen prior), the side (R hangs on the left, L on the
 * right, chest walls facing) and the view. hanging.js fills a step with the images that match; rows with no
 * image at all are dropped, a missing image in a shown row is labelled. `strip` puts the current study's
 * images no slot took (magnification, spot and other views) in a strip below. The reader steps through a
 * protocol's sequence with ] and [ (or the arrow keys); the chosen protocol is remembered per user, on the
 * server (the reader's preferences), so it follows the reader from browser to browser. */
import { csrfToken } from "./util.js";

const pair = (view, study = "current") => [
  { study, side: "R", view },
  { study, side: "L", view },
];
const single = (side, view) => ({ name: `${side} ${view}`, rows: [[{ study: "current", side, view }]] });
const FOUR_UP = { name: "4-up", rows: [pair("CC"), pair("MLO")], strip: true };
const PRIOR_BESIDE = (view) => ({ name: `${view}: current and prior`, rows: [[...pair(view), ...pair(view, "prior")]] });

export const PROTOCOLS = [
  {
    id: "four-up",
    name: "Current 4-up",
    title: "RCC/LCC above RMLO/LMLO, mirrored; other views in a strip (B adds the prior beside each view)",
    steps: [FOUR_UP],
  },
  {
    id: "sequence",
    name: "Screening sequence",
    title: "4-up, then the CC pair, the MLO pair, and each view alone",
    steps: [
      FOUR_UP,
      { name: "CC pair", rows: [pair("CC")] },
      { name: "MLO pair", rows: [pair("MLO")] },
      single("R", "CC"),
      single("L", "CC"),
      single("R", "MLO"),
      single("L", "MLO"),
    ],
  },
  {
    id: "prior",
    name: "Current vs prior",
    title: "Each view beside the chosen prior's, mirrored pairs side by side",
    needsPrior: true,
    steps: [{ name: "Current and prior", rows: [[...pair("CC"), ...pair("CC", "prior")], [...pair("MLO"), ...pair("MLO", "prior")]] }, PRIOR_BESIDE("CC"), PRIOR_BESIDE("MLO")],
  },
  {
    id: "extra",
    name: "Magnification and spot views",
    title: "The views that are neither CC nor MLO (magnification, spot, ...), R beside L, then the 4-up",
    steps: [{ name: "Other views", rows: [pair("OTHER")] }, FOUR_UP],
  },
];

export const protocolById = (id) => PROTOCOLS.find((p) => p.id === id) || PROTOCOLS[0];

/** The reader's protocol, as chosen last in any browser: the page carries the server's preference. */
export function savedProtocol(root) {
  return protocolById(root.dataset.hangingProtocol);
}

/** Keep the reader's choice on the server (reading-preferences): the next case, in this browser or another,
 * opens with it. A failure leaves the choice for this page and says so. */
export async function saveProtocol(root, id, say) {
  try {
    const response = await fetch(root.dataset.preferencesUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ hanging_protocol: id }),
    });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    root.dataset.hangingProtocol = id;
  } catch (error) {
    say(`The hanging protocol could not be kept for your next cases (${error.message}); it stays for this page.`);
  }
}

/** The step's grid as built: the comparison toggle (B) puts the prior's pair beside each current pair of a
 * step that has no prior slot of its own. */
export function withComparison(step, comparison) {
  if (!comparison || step.rows.some((row) => row.some((slot) => slot.study === "prior"))) return step;
  const rows = step.rows.map((row) => [...row, ...row.map((slot) => ({ ...slot, study: "prior" }))]);
  return { ...step, rows };
}
