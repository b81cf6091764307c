/* Hanging protocols. Current: right breast on the viewer's left, left on the right, chest walls
 * facing; CC above MLO; a missing row is dropped (an MLO-only study fills the stage), a missing
 * cell in a shown row is labelled. Comparison: the current pair, then the prior pair, per view.
 * Views other than CC/MLO go to a strip below. */
import { SIDE_NAMES, el } from "./util.js";

const VIEWS = ["CC", "MLO"];
const SIDES = ["R", "L"];

function pick(images, side, view, used) {
  const image = images.find((i) => !used.has(i.id) && i.laterality === side && i.view === view);
  if (image) used.add(image.id);
  return image || null;
}

function emptyCell(side, view, prior) {
  return el(
    "div",
    { class: `vp empty side-${side}${prior ? " prior" : ""}`, "data-slot": `${side}-${view}` },
    el("span", { text: `No ${prior ? "prior " : ""}${SIDE_NAMES[side]} ${view} image` }),
  );
}

/**
 * Lay out cells in `grid` (and `strip`); makeCell(image, side, prior) returns a Cell.
 * Returns the cells created, in reading order.
 */
export function layOut({ grid, strip, current, prior, comparison, makeCell }) {
  grid.replaceChildren();
  strip.replaceChildren();
  const sets = [{ images: [...current].sort((a, b) => a.id - b.id), prior: null }];
  if (comparison && prior) sets.push({ images: [...prior.images].sort((a, b) => a.id - b.id), prior });
  const rows = VIEWS.filter((view) => sets.some((set) => set.images.some((i) => i.view === view && i.laterality !== "U")));
  const cells = [];
  const used = sets.map(() => new Set());
  for (const view of rows) {
    sets.forEach((set, index) => {
      for (const side of SIDES) {
        const image = pick(set.images, side, view, used[index]);
        if (image) {
          const cell = makeCell(image, side, set.prior);
          cells.push(cell);
          grid.append(cell.el);
        } else grid.append(emptyCell(side, view, set.prior));
      }
    });
  }
  grid.style.setProperty("--rows", String(Math.max(1, rows.length)));
  grid.style.setProperty("--cols", String(SIDES.length * sets.length));
  grid.dataset.layout = comparison && prior ? "comparison" : "current";
  grid.hidden = rows.length === 0;
  const extras = sets[0].images.filter((i) => !used[0].has(i.id));
  strip.hidden = extras.length === 0;
  for (const image of extras) {
    const cell = makeCell(image, rows.length ? (SIDES.includes(image.laterality) ? image.laterality : "U") : "U", null);
    cells.push(cell);
    strip.append(cell.el);
  }
  if (!rows.length) strip.classList.add("only");
  else strip.classList.remove("only");
  return cells;
}
