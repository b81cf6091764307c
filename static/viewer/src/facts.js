/* The study panel's facts: the study API's fields, and the woman's name, birth date and age when the
 * viewer data carry them (only for a reader the portal lets see identity: roles.can_see_identity). */
import { $ } from "./util.js";

export function renderFacts(study, identity) {
  for (const dd of $("study-facts").querySelectorAll("[data-field]")) {
    const value = study[dd.dataset.field];
    dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value).replace("_", " ");
  }
  // Name, birth date and age: only in the viewer data of a reader the server lets see identity (else absent).
  for (const node of $("study-facts").querySelectorAll(".identity")) node.hidden = !identity;
  for (const dd of $("study-facts").querySelectorAll("[data-identity]")) {
    const value = identity ? identity[dd.dataset.identity] : null;
    dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  }
}
