/* The priors panel (each earlier study with its decision and AI score, and a button to compare with it),
 * and the thumbnail strip: every image of the exam and of its priors, from their 8-bit previews; a click
 * shows the image (enlarges a current one, compares with a prior's study). */
import { $, el, prob, viewName } from "./util.js";

/** The priors panel; `chosen` is the index of the prior compared with; choose(index) compares with another. */
export function renderPriors(priors, chosen, choose) {
  const list = $("priors");
  $("priors-empty").hidden = priors.length > 0;
  list.replaceChildren(
    ...priors.map((prior, index) => {
      const review = prior.decision;
      return el(
        "li",
        { "data-study": prior.id, class: index === chosen ? "chosen" : "" },
        el("strong", { text: prior.study_date || `Study #${prior.id}` }),
        // A blinded reader's page has no "decision" key: nothing is said about it.
        !("decision" in prior) ? null : review ? ` ${review.decision === "abnormal" ? "Abnormal" : "Normal"} · BI-RADS ${review.birads}` : " No decision",
        "exam_score" in prior ? el("span", { class: "muted", text: ` · AI ${prob(prior.exam_score)}` }) : null,
        " ",
        el("button", {
          type: "button",
          class: "link compare-prior",
          "aria-pressed": String(index === chosen),
          text: index === chosen ? "Compared (B)" : "Compare",
          title: "Compare the current study with this one",
          onclick: () => choose(index),
        }),
      );
    }),
  );
  const button = document.querySelector('[data-action="compare"]');
  if (button) button.disabled = priors.length === 0;
}

function thumb(image, label, onclick) {
  // The preview (a 1024-pixel JPEG, tens of kB), not the 2048-pixel rendition (a PNG of megabytes), for 48 pixels.
  const src = image.preview_url || image.preview || image.rendition_url || image.rendition;
  const picture = src ? el("img", { src, alt: "", loading: "lazy", width: 48, height: 60 }) : null;
  return el(
    "button",
    { type: "button", class: "thumb", "data-image-id": image.id, title: label, onclick },
    picture,
    el("span", { text: label }),
  );
}

/** The strip of every image of the exam (current first) and of its priors, grouped by study. */
export function renderThumbnails(study, priors, { showCurrent, showPrior }) {
  const strip = $("thumbnails");
  if (!strip) return;
  const group = (title, images, onclick, attrs) =>
    el(
      "div",
      { class: "thumb-study", ...attrs },
      el("span", { class: "thumb-title", text: title }),
      ...images.map((image) => thumb(image, viewName(image), () => onclick(image))),
    );
  strip.replaceChildren(
    group("Current", study.images || [], showCurrent, { "data-study": study.id }),
    ...priors.map((prior, index) =>
      group(prior.study_date || `Study #${prior.id}`, prior.images, () => showPrior(index), { "data-study": prior.id, "data-prior": index }),
    ),
  );
}
