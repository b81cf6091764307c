/* Mouse tools (Cornerstone3D tools): pan, window/level (also right-drag in any mode), zoom on the
 * wheel, ruler (mm when the image is calibrated), magnifying glass; mark mode is the portal's own. */
import {
  Enums as ToolEnums,
  LengthTool,
  MagnifyTool,
  PanTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
} from "@cornerstonejs/tools";
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

export function setupTools() {
  for (const tool of [PanTool, WindowLevelTool, ZoomTool, LengthTool, MagnifyTool]) addTool(tool);
  group = ToolGroupManager.createToolGroup(GROUP_ID);
  for (const tool of [PanTool, WindowLevelTool, ZoomTool, LengthTool, MagnifyTool]) group.addTool(tool.toolName);
  group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
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
