// Bundles the case viewer (static/viewer/src) and Cornerstone3D into static/viewer/dist.
// Run by scripts/build_viewer.sh. Fixed entry names (the template links early.js, the first requests, and
// viewer.js); chunks, workers and the codecs' WASM get content hashes. No CDN: everything is served by Django.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

// Cornerstone modules the viewer replaces with its own (src/shims), each pinned to the exact upstream
// file it was written against: a Cornerstone upgrade that changes one stops the build here.
const REPLACED = {
  "/@cornerstonejs/core/dist/esm/RenderingEngine/helpers/cpuFallback/rendering/initializeRenderCanvas.js": {
    sha256: "24d52ccc71af1ed061dd12f922fff94f9a91649e35bdc842e89e5ad2f67131eb",
    with: resolve(here, "src/shims/initializeRenderCanvas.js"),
  },
};

function replaceModules() {
  return {
    name: "portal-replace-modules",
    enforce: "pre",
    load(id) {
      const path = id.split("?")[0];
      const key = Object.keys(REPLACED).find((suffix) => path.endsWith(suffix));
      if (!key) return null;
      const found = createHash("sha256").update(readFileSync(path)).digest("hex");
      if (found !== REPLACED[key].sha256) {
        throw new Error(`${key} is not the version src/shims replaces (sha256 ${found}): review the shim`);
      }
      return readFileSync(REPLACED[key].with, "utf8");
    },
  };
}

export default defineConfig({
  root: here,
  base: "./",
  logLevel: "error",
  publicDir: false,
  plugins: [replaceModules()],
  resolve: { alias: { events: resolve(here, "src/shims/events.js") } },
  build: {
    outDir: resolve(here, "dist"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 6000,
    rollupOptions: {
      input: { early: resolve(here, "src/early.js"), viewer: resolve(here, "src/main.js") },
      output: {
        entryFileNames: "[name].js",
        chunkFileNames: "chunks/[name]-[hash].js",
        assetFileNames: "assets/[name]-[hash][extname]",
      },
    },
  },
  worker: { format: "es" },
});
