/* The decision panel: normal/abnormal, BI-RADS, density, findings, note; keyboard first.
 * "Confirm AI" pre-fills from the AI exam flag; when the AI says abnormal it asks for a second
 * press (automation bias). Submitting saves one version (Idempotency-Key) and opens the next case. */
import { $, TYPE_LABELS, el, examFlag, say, viewName } from "./util.js";

export function createDecision({ state, config, redraw }) {
  const form = $("decision-form");
  let confirmArmed = false;

  function csrfToken() {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

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

  function chooseDecision(value) {
    setChoice("decision", value);
    if (value === "normal" && choice("birads") === null) setChoice("birads", "1");
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
    if (flag) {
      setChoice("decision", "abnormal");
      setChoice("birads", "0");
    } else {
      setChoice("decision", "normal");
      setChoice("birads", "1");
    }
    say(
      flag
        ? "Pre-filled from the AI flag: abnormal, BI-RADS 0 (recall). Mark findings, check and submit."
        : "Pre-filled from the AI: normal, BI-RADS 1. Check and submit.",
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
        const select = el(
          "select",
          {
            "aria-label": `Type of finding ${i + 1}`,
            onchange: (event) => {
              f.type = event.target.value;
              redraw();
            },
          },
          ...Object.entries(TYPE_LABELS).map(([value, label]) => el("option", { value, selected: value === f.type, text: label })),
        );
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
              renderFindings();
            },
          }),
        );
      }),
    );
    redraw();
  }

  function addFinding(image, box) {
    const type = $("finding-type").value;
    state.findings.push({ image: image.id, laterality: image.laterality, view: image.view, type, ...box });
    renderFindings();
    say(`Marked ${TYPE_LABELS[type]} on ${viewName(image)}.`);
  }

  function deleteLast() {
    if (!state.findings.length) return;
    const gone = state.findings.pop();
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
    const decision = choice("decision");
    const birads = choice("birads");
    if (!decision || birads === null) {
      showError("Choose normal or abnormal and a BI-RADS category before submitting.");
      return;
    }
    const body = {
      decision,
      birads: Number(birads),
      density: choice("density") || "",
      note: $("note").value.trim(),
      findings: state.findings.map(({ image, type, x, y, width, height }) => ({ image, type, x, y, width, height })),
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
          "X-CSRFToken": csrfToken(),
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

  function copyReview(review, message = null) {
    setChoice("decision", review.decision);
    setChoice("birads", String(review.birads));
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
          el("p", { class: "muted", text: `${who(review.radiologist)}, ${when(review.created)}` }),
          review.note ? el("p", { class: "history-note", text: review.note }) : null,
          findings.length
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

  $("confirm-ai").addEventListener("click", confirmAi);
  for (const input of form.querySelectorAll('input[name="decision"]')) {
    input.addEventListener("change", () => chooseDecision(input.value));
  }
  for (const type of ["change", "input"]) form.addEventListener(type, changed);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  window.addEventListener("beforeunload", (event) => {
    if (state.dirty) event.preventDefault();
  });

  return { addFinding, chooseDecision, confirmAi, deleteLast, disarm, renderHistory, setChoice, startCorrection, submit, get armed() { return confirmArmed; } };
}
