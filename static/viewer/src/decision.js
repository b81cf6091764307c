/* The decision panel: each breast's recall and BI-RADS, density, findings, note; keyboard first.
 * The keys N, A and 0–6 set the breasts chosen under "Keys set" (both by default); a BI-RADS category
 * brings its side of recall with it (1, 2 normal; 0, 3–6 recall), and the exam's result follows the
 * breasts as on the server (screening/reading/assessment.py).
 * "Confirm AI" pre-fills from the AI flags; when the AI says abnormal it asks for a second
 * press (automation bias). Submitting saves one version (Idempotency-Key) and opens the next case. */
import { createReported } from "./findings.js";
import { $, TYPE_LABELS, csrfToken, el, examFlag, say, viewName } from "./util.js";

const SIDES = ["R", "L"];
const SIDE_NAMES = { R: "right", L: "left" };
const NORMAL_BIRADS = ["1", "2"];
const SEVERITY = ["1", "2", "3", "6", "0", "4", "5"]; // ACR order of increasing concern: the exam takes the latest

/** The exam's decision and BI-RADS from its breasts ({R: {decision, birads}, L: ...}), or null if incomplete. */
export function examResult(breasts) {
  const calls = SIDES.map((side) => breasts[side]);
  if (calls.some((c) => !c || !c.decision || c.birads === null || c.birads === undefined)) return null;
  const decision = calls.some((c) => c.decision === "abnormal") ? "abnormal" : "normal";
  const birads = calls.map((c) => String(c.birads)).reduce((a, b) => (SEVERITY.indexOf(b) > SEVERITY.indexOf(a) ? b : a));
  return { decision, birads: Number(birads) };
}

export function createDecision({ state, config, redraw }) {
  const form = $("decision-form");
  let confirmArmed = false;
  state.reported = state.reported || []; // the findings in lexicon terms; each mark points at one (findings.js)
  const reported = createReported({ state, changed: () => changed() });

  /** The decision changed: unsaved, and a new submit is a new request. */
  function changed() {
    state.dirty = true;
    state.attemptKey = null;
  }

  function setChoice(name, value) {
    const input = form.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) input.checked = true;
    changed();
  }

  function choice(name) {
    const input = form.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : null;
  }

  /** The breasts the keys set: both, or the one chosen under "Keys set". */
  function keySides() {
    const side = choice("keys_side");
    return SIDES.includes(side) ? [side] : SIDES;
  }

  function breasts() {
    return Object.fromEntries(SIDES.map((side) => [side, { decision: choice(`decision_${side}`), birads: choice(`birads_${side}`) }]));
  }

  function clear(name) {
    for (const input of form.querySelectorAll(`input[name="${name}"]`)) input.checked = false;
  }

  function showExam() {
    const exam = examResult(breasts());
    $("exam-result").textContent = exam
      ? `Exam: ${exam.decision === "abnormal" ? "recall" : "normal"}, BI-RADS ${exam.birads}`
      : "Exam: choose each breast's call.";
    $("exam-result").dataset.decision = exam ? exam.decision : "";
  }

  /** Normal or recall for one breast; a BI-RADS category of the other side is cleared (normal: 1 if none). */
  function setDecision(side, value) {
    setChoice(`decision_${side}`, value);
    const birads = choice(`birads_${side}`);
    if (value === "normal" && (birads === null || !NORMAL_BIRADS.includes(birads))) setChoice(`birads_${side}`, "1");
    if (value === "abnormal" && birads !== null && NORMAL_BIRADS.includes(birads)) clear(`birads_${side}`);
    showExam();
  }

  /** A BI-RADS category for one breast, with the recall it implies. */
  function setBreastBirads(side, value) {
    setChoice(`birads_${side}`, value);
    setChoice(`decision_${side}`, NORMAL_BIRADS.includes(String(value)) ? "normal" : "abnormal");
    showExam();
  }

  function chooseDecision(value) {
    for (const side of keySides()) setDecision(side, value);
  }

  function setBirads(value) {
    for (const side of keySides()) setBreastBirads(side, String(value));
  }

  function disarm() {
    confirmArmed = false;
    $("confirm-ai").classList.remove("armed");
    $("confirm-ai").textContent = "Confirm AI";
  }

  function confirmAi() {
    const flag = examFlag(state.study);
    if (flag === null) {
      say("There is no AI exam result to confirm.");
      return;
    }
    if (flag && !confirmArmed) {
      confirmArmed = true;
      $("confirm-ai").classList.add("armed");
      $("confirm-ai").textContent = "AI says abnormal: press C again";
      say("The AI flags this exam as abnormal. Look at the images, then press C again to confirm (recall, BI-RADS 0).");
      return;
    }
    disarm();
    const study = state.study;
    const sideFlags = { R: study.flag_right, L: study.flag_left };
    const known = SIDES.some((side) => typeof sideFlags[side] === "boolean");
    // the flagged breasts; every breast when the exam's flag names none of them
    let recalled = SIDES.filter((side) => flag && known && sideFlags[side] === true);
    if (flag && !recalled.length) recalled = SIDES;
    for (const side of SIDES) setBreastBirads(side, recalled.includes(side) ? "0" : "1");
    say(
      flag
        ? `Pre-filled from the AI flags: recall the ${recalled.map((s) => SIDE_NAMES[s]).join(" and ")} breast (BI-RADS 0). Mark findings, check and submit.`
        : "Pre-filled from the AI: both breasts normal, BI-RADS 1. Check and submit.",
    );
  }

  function randomKey() {
    // crypto.randomUUID needs a secure context; reading rooms may use plain HTTP on the LAN.
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function renderFindings() {
    changed();
    $("finding-count").textContent = String(state.findings.length);
    $("finding-hint").hidden = state.findings.length > 0;
    $("findings").replaceChildren(
      ...state.findings.map((f, i) => {
        const select = reported.markSelect(f, i, renderFindings);
        const shape =
          f.width > 0 || f.height > 0
            ? `box ${Math.round(f.width)}×${Math.round(f.height)} px at ${Math.round(f.x)}, ${Math.round(f.y)}`
            : `point at ${Math.round(f.x)}, ${Math.round(f.y)}`;
        return el(
          "li",
          { "data-image-id": f.image },
          el("span", { class: "finding-where", text: `${f.laterality} ${f.view}` }),
          select,
          el("span", { class: "finding-shape", text: shape }),
          el("button", {
            type: "button",
            class: "link delete",
            "aria-label": `Delete finding ${i + 1}`,
            text: "Delete",
            onclick: () => {
              state.findings.splice(i, 1);
              reported.prune();
              renderFindings();
            },
          }),
        );
      }),
    );
    reported.render(renderFindings);
    redraw();
  }

  function addFinding(image, box) {
    const type = $("finding-type").value;
    const mark = { image: image.id, laterality: image.laterality, view: image.view, type, ...box };
    state.findings.push(mark);
    reported.attach(mark);
    renderFindings();
    say(`Marked ${TYPE_LABELS[type]} on ${viewName(image)}: finding ${reported.numberOf(mark.reported)}.`);
  }

  function deleteLast() {
    if (!state.findings.length) return;
    const gone = state.findings.pop();
    reported.prune();
    renderFindings();
    say(`Deleted finding ${state.findings.length + 1} (${TYPE_LABELS[gone.type]}, ${gone.laterality} ${gone.view}).`);
  }

  function showError(message, fields) {
    const parts = [message];
    if (fields && typeof fields === "object") {
      for (const [field, problems] of Object.entries(fields)) {
        const text = Array.isArray(problems) ? problems.join(" ") : typeof problems === "object" ? JSON.stringify(problems) : problems;
        if (text !== message) parts.push(`${field}: ${text}`);
      }
    }
    $("form-error").textContent = parts.join(" — ");
    $("form-error").hidden = false;
  }

  async function submit() {
    if (state.submitting || !state.study) return;
    $("form-error").hidden = true;
    const calls = breasts();
    const missing = SIDES.filter((side) => !calls[side].decision || calls[side].birads === null);
    if (missing.length) {
      const which = missing.map((side) => SIDE_NAMES[side]).join(" and ");
      showError(`Choose normal or recall and a BI-RADS category for the ${which} breast before submitting.`);
      return;
    }
    const body = {
      right: { decision: calls.R.decision, birads: Number(calls.R.birads) },
      left: { decision: calls.L.decision, birads: Number(calls.L.birads) },
      density: choice("density") || "",
      note: $("note").value.trim(),
      findings: state.findings.map(({ image, type, x, y, width, height }) => ({ image, type, x, y, width, height })),
      reported_findings: reported.payload(),
    };
    state.submitting = true;
    state.attemptKey = state.attemptKey || randomKey();
    $("submit-decision").disabled = true;
    say("Saving…");
    let saved = false;
    try {
      const response = await fetch(config.reviewsUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": csrfToken(form), // the decision form's own token, as the server checks it
          "Idempotency-Key": state.attemptKey,
        },
        body: JSON.stringify(body),
      });
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      if (!response.ok) {
        const error = (payload && payload.error) || {};
        let message = error.message || `The server refused the decision (HTTP ${response.status}).`;
        if (response.status === 401 || response.status === 403) {
          message += " Your session may have ended: log in again in another tab, then submit again.";
        }
        showError(message, error.fields);
        say("Not saved.");
        return;
      }
      const review = payload.review || {};
      const summary = `Study #${state.study.id}: v${review.version} saved (${review.decision}, BI-RADS ${review.birads}).`;
      state.dirty = false;
      saved = true; // stays disabled while the next case loads: no second version by a double press
      sessionStorage.setItem("portal.saved", summary);
      say(summary);
      window.location.assign(payload.next_url || config.worklistUrl);
    } catch (error) {
      showError(`Could not reach the server: ${error.message}. Your decision is still here; try again.`);
      say("Not saved.");
    } finally {
      if (!saved) {
        state.submitting = false;
        $("submit-decision").disabled = false;
      }
    }
  }

  function who(radiologist) {
    if (radiologist && typeof radiologist === "object") return radiologist.username || radiologist.name || String(radiologist.id);
    return radiologist || "unknown";
  }

  function when(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  /** A correction starts from the read it corrects (`data-corrects`: its version), findings included, so
   * that submitting changes only what the reader changed. Once, when the study first arrives; unsaved. */
  function startCorrection(study) {
    if (state.correctionStarted || !config.corrects) return;
    state.correctionStarted = true;
    const review = (study.reviews || []).find((r) => String(r.version) === config.corrects);
    if (!review) return;
    copyReview(review, `Correcting v${review.version}: the form holds its decision and findings. Change what needs correcting, then submit.`);
    state.dirty = false;
  }

  /** "Right: recall, BI-RADS 0 · Left: normal, BI-RADS 1" (older reads: their mapping onto the breasts). */
  function breastSummary(review) {
    const call = (c) => `${c.decision === "abnormal" ? "recall" : "normal"}, BI-RADS ${c.birads}`;
    const mapped = review.breasts.right.mapped ? " (mapped from the exam's decision)" : "";
    return `Right: ${call(review.breasts.right)} · Left: ${call(review.breasts.left)}${mapped}`;
  }

  function copyReview(review, message = null) {
    const b = review.breasts || { right: review, left: review };
    for (const side of SIDES) {
      setChoice(`decision_${side}`, b[SIDE_NAMES[side]].decision);
      setChoice(`birads_${side}`, String(b[SIDE_NAMES[side]].birads));
    }
    showExam();
    setChoice("density", review.density || "");
    $("note").value = review.note || "";
    const byId = Object.fromEntries(state.study.images.map((i) => [i.id, i]));
    state.findings = (review.findings || []).map((f) => ({
      image: f.image,
      laterality: f.laterality,
      view: byId[f.image] ? byId[f.image].view : "",
      type: f.type,
      x: f.x,
      y: f.y,
      width: f.width,
      height: f.height,
    }));
    reported.copy(review);
    renderFindings();
    say(message || `Form filled from v${review.version}: change what needs correcting, then submit.`);
  }

  /** Earlier decisions; absent for a blinded reader (the key is left out or null). */
  function renderHistory(study) {
    const reviews = study.reviews || [];
    $("history-empty").hidden = reviews.length > 0;
    const byId = Object.fromEntries(study.images.map((i) => [i.id, i]));
    $("history").replaceChildren(
      ...reviews.map((review, index) => {
        const findings = review.findings || [];
        const agreement =
          review.agrees_with_ai === true ? "agrees with AI" : review.agrees_with_ai === false ? "differs from AI" : "";
        return el(
          "li",
          { class: index === 0 ? "latest" : "", "data-version": review.version },
          el(
            "p",
            { class: "history-head" },
            el("strong", { text: `v${review.version}` }),
            ` ${review.decision === "abnormal" ? "Abnormal" : "Normal"} · BI-RADS ${review.birads}`,
            review.density ? ` · density ${review.density}` : "",
            agreement ? el("span", { class: "muted", text: ` · ${agreement}` }) : null,
          ),
          review.breasts ? el("p", { class: "breast-summary", text: breastSummary(review) }) : null,
          el("p", { class: "muted", text: `${who(review.radiologist)}, ${when(review.created)}` }),
          review.note ? el("p", { class: "history-note", text: review.note }) : null,
          (review.reported_findings || []).length
            ? el("ol", { class: "history-findings" }, ...review.reported_findings.map((r) => el("li", { text: r.text })))
            : null,
          findings.length && !(review.reported_findings || []).length
            ? el(
                "ul",
                { class: "history-findings" },
                ...findings.map((f) => {
                  const image = byId[f.image];
                  const where = image ? viewName(image) : `${f.laterality} image #${f.image}`;
                  const shape = f.width > 0 || f.height > 0 ? "box" : "point";
                  return el("li", { text: `${TYPE_LABELS[f.type] || f.type}, ${where} (${shape})` });
                }),
              )
            : null,
          index === 0
            ? el("button", { type: "button", class: "secondary small", onclick: () => copyReview(review), text: `Start from v${review.version}` })
            : null,
        );
      }),
    );
    $("submit-decision").firstChild.textContent = reviews.length
      ? `Submit as v${reviews[0].version + 1} and next `
      : "Submit and next ";
  }

  /** A note template (admin-managed) goes at the end of the note, where the reader edits it. */
  const templates = document.getElementById("note-template");
  templates?.addEventListener("change", () => {
    const option = templates.selectedOptions[0];
    if (!option || !option.value) return;
    const note = $("note");
    note.value = note.value.trim() ? `${note.value.trimEnd()}\n${option.dataset.text}` : option.dataset.text;
    templates.value = "";
    changed();
    note.focus();
  });

  $("confirm-ai").addEventListener("click", confirmAi);
  for (const side of SIDES) {
    for (const input of form.querySelectorAll(`input[name="decision_${side}"]`)) {
      input.addEventListener("change", () => setDecision(side, input.value));
    }
    for (const input of form.querySelectorAll(`input[name="birads_${side}"]`)) {
      input.addEventListener("change", () => setBreastBirads(side, input.value));
    }
  }
  for (const type of ["change", "input"]) form.addEventListener(type, changed);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty) event.preventDefault();
  });

  return { addFinding, chooseDecision, confirmAi, deleteLast, disarm, renderHistory, setBirads, setChoice, startCorrection, submit, get armed() { return confirmArmed; } };
}
