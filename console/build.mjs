// Builds the console into the directory named by the first argument (default `dist`):
// `index.html`, `assets/console.js`, `assets/console.css` and `assets/icon.svg`. The names
// carry no content hash and the output depends only on the sources and the locked
// versions, so `check-dist.sh` can compare a fresh build with the committed one byte for
// byte, and the control plane embeds a fixed list of files.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "dist"));

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });

await build({
  entryPoints: { console: join(here, "src/main.tsx") },
  outdir: join(out, "assets"),
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  jsx: "automatic",
  jsxImportSource: "preact",
  charset: "utf8",
  logLevel: "warning",
  absWorkingDir: here,
});

copyFileSync(join(here, "src/index.html"), join(out, "index.html"));
copyFileSync(join(here, "src/icon.svg"), join(out, "assets/icon.svg"));
