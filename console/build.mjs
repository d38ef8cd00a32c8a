// build.mjs — bundles the console (src/) into OUT (argv[2], default dist/): hashed JS and CSS
// bundles, index.html pointing at them, and a .gz of each for the node to serve compressed.
// No CDN, no inline script: everything the page loads comes from these files.
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, writeFileSync, rmSync, readdirSync, statSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";
import { join, basename } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const out = process.argv[2] || join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

const result = await esbuild.build({
  entryPoints: [join(here, "src/app.js"), join(here, "src/app.css"), join(here, "src/live-worker.js")],
  bundle: true,
  minify: true,
  format: "esm",
  platform: "browser",
  splitting: true, // the map and mqtt.js in chunks of their own, loaded by their pages
  target: ["chrome110", "firefox110"],
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  chunkNames: "chunk-[hash]",
  assetNames: "[name]-[hash]",
  loader: { ".png": "file", ".json": "json" },
  metafile: true,
  legalComments: "linked",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const js = outputs.find((f) => /^app-.*\.js$/.test(f));
const css = outputs.find((f) => /^app-.*\.css$/.test(f));
const worker = outputs.find((f) => /^live-worker-.*\.js$/.test(f));
const html = readFileSync(join(here, "src/index.html"), "utf8")
  .replace("%APP_JS%", "/assets/" + js)
  .replace("%APP_CSS%", "/assets/" + css)
  .replace("%LIVE_WORKER%", "/assets/" + worker);
writeFileSync(join(out, "index.html"), html);

let total = 0;
function compress(dir) {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) compress(p);
    else if (!f.endsWith(".gz")) {
      const gz = gzipSync(readFileSync(p), { level: constants.Z_BEST_COMPRESSION });
      writeFileSync(p + ".gz", gz);
      total += gz.length;
    }
  }
}
compress(out);
console.log(`console: ${outputs.length + 1} files in ${out}, ${(total / 1024).toFixed(0)} kB compressed`);
