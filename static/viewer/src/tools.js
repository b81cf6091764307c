/* Mouse tools (Cornerstone3D tools): pan, window/level (also right-drag in any mode), zoom on the
 * wheel, ruler (mm when the image is calibrated), magnifying glass; mark mode is the portal's own
 * (marks.js). The annotation tools of the marks are enabled: drawn, not edited by the mouse. */
import {
  Enums as ToolEnums,
  LengthTool,
  MagnifyTool,
  PanTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  drawing,
} from "@cornerstonejs/tools";
import { getEnabledElement } from "@cornerstonejs/core";
import { ENGINE_ID } from "./imaging.js";

const { MouseBindings } = ToolEnums;
const GROUP_ID = "screening-tools";
const PRIMARY_TOOL = {
  pan: PanTool.toolName,
  wl: WindowLevelTool.toolName,
  ruler: LengthTool.toolName,
  magnify: MagnifyTool.toolName,
  mark: null,
};
export const MODES = Object.keys(PRIMARY_TOOL);

let group = null;

/** The group of every viewport; `displayTools` (marks.js) are only enabled: drawn, never edited by the mouse. */
export function setupTools(displayTools = []) {
  for (const tool of [PanTool, WindowLevelTool, ZoomTool, LengthTool, MagnifyTool]) addTool(tool);
  group = ToolGroupManager.createToolGroup(GROUP_ID);
  for (const tool of [PanTool, WindowLevelTool, ZoomTool, LengthTool, MagnifyTool]) group.addTool(tool.toolName);
  group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  for (const tool of displayTools) {
    addTool(tool);
    group.addTool(tool.toolName);
    group.setToolEnabled(tool.toolName);
  }
  useMode("pan");
}

export function addViewport(viewportId) {
  group.addViewport(viewportId, ENGINE_ID);
}

export function removeViewport(viewportId) {
  group.removeViewports(ENGINE_ID, viewportId);
}

/** The primary button's tool for a mode; W/L stays on the right button in every mode. */
export function useMode(mode) {
  for (const name of [PanTool.toolName, LengthTool.toolName, MagnifyTool.toolName]) group.setToolPassive(name);
  group.setToolPassive(WindowLevelTool.toolName);
  const primary = PRIMARY_TOOL[mode];
  const wlBindings = [{ mouseButton: MouseBindings.Secondary }];
  if (primary === WindowLevelTool.toolName) wlBindings.push({ mouseButton: MouseBindings.Primary });
  group.setToolActive(WindowLevelTool.toolName, { bindings: wlBindings });
  if (primary && primary !== WindowLevelTool.toolName) {
    group.setToolActive(primary, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  }
}

/** Draw a viewport's annotations now, as Cornerstone's annotation rendering engine does on the next animation
 * frame: every tool of the group that is not disabled draws into the SVG layer, and what none drew goes.
 * Synchronous, so a toggled or deleted mark is gone when the key press or click returns. */
export function renderAnnotationsNow(viewport) {
  const enabledElement = getEnabledElement(viewport.element);
  if (!enabledElement || !group) return;
  drawing.draw(viewport.element, (helper) => {
    for (const [name, options] of Object.entries(group.toolOptions)) {
      const tool = group.getToolInstance(name);
      if (options.mode !== ToolEnums.ToolModes.Disabled && tool && tool.renderAnnotation) tool.renderAnnotation(enabledElement, helper);
    }
  });
}
