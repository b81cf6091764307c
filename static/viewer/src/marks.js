/* Findings, AI marks and the heatmap as Cornerstone3D annotations: each kind is an annotation tool
 * (RectangleROITool for boxes, ProbeTool for points) whose annotations live in Cornerstone's annotation
 * state, referenced to the cell's image in world coordinates, and are drawn by Cornerstone's SVG layer
 * whenever the viewport renders (pan, zoom, flip, resize need nothing from us). The tools are only
 * enabled (drawn, never edited by the mouse): the portal's data is the truth, and a cell's annotations
 * are replaced when it changes (drawMarks). The elements carry the portal's classes (.ai-mark, .cad-mark,
 * .finding.new, .finding.saved, .heatmap) for the style sheet and the AI mark's click-to-zoom. */
import { ProbeTool, RectangleROITool, annotation, drawing } from "@cornerstonejs/tools";
import { csUtils } from "./imaging.js";
import { renderAnnotationsNow } from "./tools.js";

const { addAnnotation, getAnnotations, removeAnnotation } = annotation.state;

/** An enabled-only tool of `Base` whose annotations are drawn by `draw(viewport, helper, annotation)`. */
function displayTool(Base, toolName, draw) {
  return class extends Base {
    static toolName = toolName;

    constructor(toolProps = {}, defaultToolProps = undefined) {
      super(toolProps, defaultToolProps);
      this.renderAnnotation = ({ viewport }, helper) => {
        const all = getAnnotations(this.getToolName(), viewport.element) || [];
        const shown = (this.filterInteractableAnnotationsForElement(viewport.element, all) || []).filter(
          (a) => a.isVisible !== false,
        );
        for (const a of shown) draw(viewport, helper, a);
        return shown.length > 0;
      };
    }
  };
}

function tag(helper, hash, attributes) {
  const node = helper.getSvgNode(hash);
  if (node) for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function label(helper, a, lines, position, cls) {
  drawing.drawTextBox(helper, a.annotationUID, "label", lines, position, { padding: 0, centerY: false, fontSize: "12px" });
  tag(helper, `${a.annotationUID}::text::label`, { class: cls });
}

/** The on-screen box of a world-space box (flip and rotation included). */
function screenBox(viewport, points) {
  const canvas = points.map((p) => viewport.worldToCanvas(p));
  const xs = canvas.map((c) => c[0]);
  const ys = canvas.map((c) => c[1]);
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

function drawBox(viewport, helper, a) {
  const { kind, text, region } = a.data;
  const box = screenBox(viewport, a.data.handles.points);
  drawing.drawRect(helper, a.annotationUID, "box", [box.x0, box.y0], [box.x1, box.y1], { lineWidth: 2 });
  const attributes = { class: kind === "ai" || kind === "cad" ? `${kind}-mark` : `finding ${kind}` };
  if (region !== undefined) attributes["data-region"] = region;
  tag(helper, `${a.annotationUID}::rect::box`, attributes);
  const labelClass = kind === "ai" || kind === "cad" ? `${kind}-mark-label` : `finding-label ${kind}`;
  if (text) label(helper, a, [text], [box.x0 + 3, Math.max(0, box.y0 - 18)], labelClass);
}

function drawPoint(viewport, helper, a) {
  const [cx, cy] = viewport.worldToCanvas(a.data.handles.points[0]);
  drawing.drawCircle(helper, a.annotationUID, "point", [cx, cy], 9, { lineWidth: 2 });
  const cad = a.data.kind === "cad";
  tag(helper, `${a.annotationUID}::circle::point`, { class: cad ? "cad-mark" : `finding ${a.data.kind}` });
  label(helper, a, [a.data.text], [cx + 3, Math.max(0, cy - 18)], cad ? "cad-mark-label" : `finding-label ${a.data.kind}`);
}

/** The colourised heatmap stretched over the image (an SVG image through the image-to-canvas matrix),
 * beneath every other annotation of the cell. */
function drawHeatmap(viewport, helper, a) {
  const { url, opacity, columns, rows } = a.data;
  const [origin, across, down] = a.data.handles.points.map((p) => viewport.worldToCanvas(p));
  const matrix = [
    (across[0] - origin[0]) / columns,
    (across[1] - origin[1]) / columns,
    (down[0] - origin[0]) / rows,
    (down[1] - origin[1]) / rows,
    origin[0],
    origin[1],
  ];
  const hash = `${a.annotationUID}::image::heat`;
  let node = helper.getSvgNode(hash);
  if (!node) {
    node = document.createElementNS("http://www.w3.org/2000/svg", "image");
    helper.appendNode(node, hash);
    const layer = helper.svgLayerElement;
    layer.insertBefore(node, layer.querySelector("defs")?.nextSibling || layer.firstChild);
  } else helper.setNodeTouched(hash);
  const attributes = { href: url, x: 0, y: 0, width: columns, height: rows, preserveAspectRatio: "none", opacity, class: "heatmap" };
  attributes.transform = `matrix(${matrix.join(" ")})`;
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
}

export const AiMarkTool = displayTool(RectangleROITool, "AiMark", drawBox);
export const FindingBoxTool = displayTool(RectangleROITool, "FindingBox", drawBox);
export const FindingPointTool = displayTool(ProbeTool, "FindingPoint", drawPoint);
export const HeatmapTool = displayTool(RectangleROITool, "Heatmap", drawHeatmap);
export const CadBoxTool = displayTool(RectangleROITool, "CadBox", drawBox);
export const CadPointTool = displayTool(ProbeTool, "CadPoint", drawPoint);
/** In drawing order: the heatmap beneath, the marks above. */
export const MARK_TOOLS = [HeatmapTool, CadBoxTool, CadPointTool, AiMarkTool, FindingBoxTool, FindingPointTool];

/** Replace the cell's annotations by `marks` and draw them: the heatmap ({url, opacity} or null), the vendor's CAD
 * marks ({x, y, width, height, text}: a point when it has no size), the AI regions, the findings ({finding, text, kind}) and the box being drawn (image coordinates, or null). */
export function drawMarks(cell, { heat, cad = [], regions, findings, drawingBox }) {
  const viewport = cell.viewport;
  clearMarks(cell);
  if (!cell.loaded || !viewport) return;
  const world = (x, y) => csUtils.imageToWorldCoords(cell.imageId, [x, y]);
  const corners = ({ x, y, width, height }) => [world(x, y), world(x + width, y), world(x, y + height), world(x + width, y + height)];
  const add = (Tool, points, data) => {
    const a = Tool.createAnnotationForViewport(viewport, {
      highlighted: false,
      invalidated: false,
      isLocked: true,
      data: { ...data, handles: { points, activeHandleIndex: null } },
    });
    addAnnotation(a, viewport.element);
    cell.annotationUIDs.push(a.annotationUID);
  };
  const { columns, rows } = cell.image;
  if (heat) add(HeatmapTool, [world(0, 0), world(columns, 0), world(0, rows)], { ...heat, columns, rows });
  cad.forEach((mark, index) => {
    const data = { kind: "cad", region: index, text: mark.text };
    if (mark.width > 0 || mark.height > 0) add(CadBoxTool, corners(mark), data);
    else add(CadPointTool, [world(mark.x, mark.y)], data);
  });
  regions.forEach((region, index) =>
    add(AiMarkTool, corners(region), { kind: "ai", region: index, text: `AI ${Number(region.probability).toFixed(2)}` }),
  );
  for (const { finding, text, kind } of findings) {
    if (finding.width > 0 || finding.height > 0) add(FindingBoxTool, corners(finding), { kind, text });
    else add(FindingPointTool, [world(finding.x, finding.y)], { kind, text });
  }
  if (drawingBox) add(FindingBoxTool, corners(drawingBox), { kind: "drawing", text: "" });
  renderAnnotationsNow(viewport);
}

/** Take the cell's annotations out of Cornerstone's state (a cell hung again for the same image, after a
 * layout change, would otherwise draw them twice). */
export function clearMarks(cell) {
  for (const uid of cell.annotationUIDs || []) removeAnnotation(uid);
  cell.annotationUIDs = [];
}

/** Mark mode on a cell: the primary button drags a box or clicks a point; the finding, in stored pixels
 * inside the image, goes to `hooks.addFinding`. Cornerstone's tools never see that button in this mode. */
export function bindMarking(cell) {
  const local = (event) => {
    const rect = cell.element.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  };
  const marking = (event) => cell.hooks.mode() === "mark" && event.button === 0 && cell.loaded;
  cell.el.addEventListener(
    "mousedown",
    (event) => {
      if (marking(event)) event.stopPropagation();
    },
    true,
  );
  cell.el.addEventListener("pointerdown", (event) => {
    if (!marking(event) || event.target === cell.enlarge) return;
    event.preventDefault();
    cell.el.setPointerCapture(event.pointerId);
    const [x, y] = local(event);
    cell.drag = { x0: x, y0: y, x1: x, y1: y, moved: false };
  });
  cell.el.addEventListener("pointermove", (event) => {
    if (!cell.drag) return;
    const [x, y] = local(event);
    Object.assign(cell.drag, { x1: x, y1: y });
    if (Math.hypot(x - cell.drag.x0, y - cell.drag.y0) > 4) cell.drag.moved = true;
    cell.drawMarks();
  });
  const finish = (event) => {
    const drag = cell.drag;
    if (!drag) return;
    cell.drag = null;
    if (cell.el.hasPointerCapture(event.pointerId)) cell.el.releasePointerCapture(event.pointerId);
    if (event.type === "pointerup") addFinding(cell, drag);
    cell.drawMarks();
  };
  cell.el.addEventListener("pointerup", finish);
  cell.el.addEventListener("pointercancel", finish);
}

/** The image-space box of a drag in canvas pixels (unclamped), or null when there is none. */
export function dragBox(cell) {
  const drag = cell.drag;
  if (!drag || !drag.moved) return null;
  const [ax, ay] = cell.toImage(drag.x0, drag.y0);
  const [bx, by] = cell.toImage(drag.x1, drag.y1);
  return { x: Math.min(ax, bx), y: Math.min(ay, by), width: Math.abs(bx - ax), height: Math.abs(by - ay) };
}

function addFinding(cell, drag) {
  const { columns, rows } = cell.image;
  const inside = ([x, y]) => [Math.min(columns, Math.max(0, x)), Math.min(rows, Math.max(0, y))];
  const [px, py] = cell.toImage(drag.x0, drag.y0);
  let finding;
  if (drag.moved) {
    const [ax, ay] = inside([px, py]);
    const [bx, by] = inside(cell.toImage(drag.x1, drag.y1));
    finding = { x: Math.min(ax, bx), y: Math.min(ay, by), width: Math.abs(bx - ax), height: Math.abs(by - ay) };
    if (finding.width < 1 || finding.height < 1) return cell.hooks.say("That box lies outside the image: draw it on the breast.");
  } else {
    if (px < 0 || py < 0 || px > columns || py > rows) return cell.hooks.say("That point lies outside the image.");
    finding = { x: px, y: py, width: 0, height: 0 };
  }
  for (const key of ["x", "y", "width", "height"]) finding[key] = Math.round(finding[key] * 10) / 10;
  return cell.hooks.addFinding(cell, finding);
}
