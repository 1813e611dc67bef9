// Bundle the playground with esbuild: `node build.mjs <output directory>`. One ES module entry
// (playground.js, with playground.css beside it) and a chunk per syntax mode, loaded on demand.
import { build } from "esbuild";

const outdir = process.argv[2];
if (!outdir) {
  console.error("usage: node build.mjs <output directory>");
  process.exit(2);
}

await build({
  entryPoints: { playground: "src/main.js" },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  minify: true,
  target: ["es2022"],
  chunkNames: "chunks/[name]-[hash]",
  legalComments: "linked",
  logLevel: "warning",
});
