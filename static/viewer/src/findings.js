/* Findings in ACR BI-RADS lexicon terms (issue 24): each mark on an image shows one reported finding; one
 * finding seen on CC and MLO is one finding with two marks. A new mark joins the latest finding of the same
 * breast and kind that has no mark on that view yet (the same lesion on the other view), else starts a new
 * one; its "Finding" select moves it. The lexicon comes from the server (screening/reading/lexicon.py). */
import { $, el } from "./util.js";

const LEXICON_TYPE = { mass: "mass", calcification: "calcifications", distortion: "distortion", asymmetry: "asymmetry", other: "associated" };
const MARK_TYPE = Object.fromEntries(Object.entries(LEXICON_TYPE).map(([mark, type]) => [type, mark]));
const SIDE = { R: "Right", L: "Left" };

export function lexicon() {
  const node = document.getElementById("lexicon");
  return node ? JSON.parse(node.textContent) : { types: {}, descriptors: {}, quadrants: {}, depths: {} };
}

export function createReported({ state, changed }) {
  const lex = lexicon();

  /** The number (1, 2, ...) of a reported finding, as the report and the marks on the images show it. */
  const numberOf = (finding) => state.reported.indexOf(finding) + 1;

  function newFinding(type, laterality) {
    const finding = { type, laterality, descriptors: {}, clock: null, quadrant: "", depth: "", distance_cm: null };
    state.reported.push(finding);
    return finding;
  }

  /** Give a new mark its finding: the same lesion on the other view, or a new finding. */
  function attach(mark) {
    const type = LEXICON_TYPE[mark.type] || "associated";
    const sameBreast = state.reported.filter((r) => r.laterality === mark.laterality && r.type === type);
    const open = sameBreast.reverse().find((r) => !state.findings.some((m) => m !== mark && m.reported === r && m.view === mark.view));
    mark.reported = open || newFinding(type, mark.laterality);
  }

  /** Drop the findings no mark shows any more. */
  function prune() {
    state.reported = state.reported.filter((r) => state.findings.some((m) => m.reported === r));
  }

  function select(label, value, options, onchange, blank = "–") {
    return el(
      "select",
      { "aria-label": label, onchange: (event) => { onchange(event.target.value); changed(); } },
      el("option", { value: "", text: blank }),
      ...Object.entries(options).map(([key, text]) => el("option", { value: key, selected: key === String(value ?? ""), text })),
    );
  }

  /** The select on a mark's row: which finding it shows. */
  function markSelect(mark, i, rerender) {
    const options = Object.fromEntries(
      state.reported.filter((r) => r.laterality === mark.laterality).map((r) => [String(numberOf(r)), `Finding ${numberOf(r)}`]),
    );
    options.new = "New finding";
    return select(`Finding shown by mark ${i + 1}`, String(numberOf(mark.reported)), options, (value) => {
      mark.reported = value === "new" || !value ? newFinding(LEXICON_TYPE[mark.type] || "associated", mark.laterality) : state.reported[Number(value) - 1];
      mark.type = MARK_TYPE[mark.reported.type];
      prune();
      rerender();
    }, "…");
  }

  /** The lexicon form of every reported finding. */
  function render(rerender) {
    $("reported").replaceChildren(
      ...state.reported.map((finding) => {
        const n = numberOf(finding);
        const views = state.findings.filter((m) => m.reported === finding).map((m) => m.view).join(" + ");
        const descriptors = Object.entries(lex.descriptors[finding.type] || {}).map(([name, values]) =>
          select(`Finding ${n} ${name}`, finding.descriptors[name], values, (value) => {
            if (value) finding.descriptors[name] = value;
            else delete finding.descriptors[name];
          }, name),
        );
        const clocks = Object.fromEntries(Array.from({ length: 12 }, (_, h) => [String(h + 1), `${h + 1} o'clock`]));
        const distance = el("input", {
          type: "number", min: "0", max: "30", step: "0.5", placeholder: "cm", value: finding.distance_cm ?? "",
          "aria-label": `Finding ${n} distance from the nipple (cm)`,
          oninput: (event) => { finding.distance_cm = event.target.value === "" ? null : Number(event.target.value); },
        });
        return el(
          "li",
          { "data-number": n, "data-laterality": finding.laterality },
          el("p", { class: "reported-head" },
            el("strong", { text: `Finding ${n}` }),
            ` · ${SIDE[finding.laterality] || finding.laterality} · ${views}`),
          el("div", { class: "lexicon-row" },
            select(`Finding ${n} type`, finding.type, lex.types, (value) => {
              finding.type = value || finding.type;
              finding.descriptors = {};
              for (const m of state.findings) if (m.reported === finding) m.type = MARK_TYPE[finding.type];
              rerender();
            }, "type"),
            ...descriptors),
          el("div", { class: "lexicon-row" },
            select(`Finding ${n} clock position`, finding.clock, clocks, (value) => { finding.clock = value ? Number(value) : null; }, "clock"),
            select(`Finding ${n} quadrant`, finding.quadrant, lex.quadrants, (value) => { finding.quadrant = value; }, "quadrant"),
            select(`Finding ${n} depth`, finding.depth, lex.depths, (value) => { finding.depth = value; }, "depth"),
            distance),
        );
      }),
    );
  }

  /** What the API takes: each finding with the indexes of its marks in the marks list. */
  function payload() {
    return state.reported.map((finding) => {
      const marks = [];
      state.findings.forEach((m, i) => { if (m.reported === finding) marks.push(i); });
      const { type, laterality, descriptors, clock, quadrant, depth, distance_cm } = finding;
      return { type, laterality, descriptors, clock, quadrant, depth, distance_cm, marks };
    });
  }

  /** A saved read's findings into the form (a correction, "Start from"): marks first (state.findings). */
  function copy(review) {
    const byMarkId = new Map();
    state.reported = (review.reported_findings || []).map((r) => {
      const finding = { type: r.type, laterality: r.laterality, descriptors: { ...r.descriptors }, clock: r.clock, quadrant: r.quadrant, depth: r.depth, distance_cm: r.distance_cm };
      for (const id of r.marks) byMarkId.set(id, finding);
      return finding;
    });
    (review.findings || []).forEach((saved, i) => {
      const mark = state.findings[i];
      mark.reported = byMarkId.get(saved.id) || null;
      if (!mark.reported) attach(mark); // a mark from before the lexicon: its own finding
    });
  }

  return { attach, copy, markSelect, numberOf, payload, prune, render };
}
