// build.mjs - bundles the buyer's page and the organizer's console, then writes them as a C
// source (the catraca binary serves them from memory; src/gateway/api_pages.c).
//
// usage: node web/build.mjs NODE_MODULES_DIR OUT_DIR
//   OUT_DIR/assets/...   the files as served (for a look, and for the size check)
//   OUT_DIR/web_assets.c the table src/gateway/web_assets.h declares
//   OUT_DIR/manifest.json name -> served path, bytes, gzip bytes
//
// Every script, style sheet and worker gets a name fingerprinted by its content (served with a
// year-long immutable cache); the two HTML pages keep their names and are revalidated each time.
// The build is deterministic: the same sources give the same bytes (gzip without a timestamp).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync, constants } from 'node:zlib';

const [nodeModules, outDir] = process.argv.slice(2);
if (!nodeModules || !outDir) {
  console.error('usage: node build.mjs NODE_MODULES_DIR OUT_DIR');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(nodeModules, 'noop.js'));
const esbuild = require('esbuild');

const assets = []; // {path, contentType, bytes, isImmutable}

function fingerprint(bytes) {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 12);
}

function addFingerprinted(stem, extension, contentType, bytes) {
  const path = `/assets/${stem}-${fingerprint(bytes)}.${extension}`;
  assets.push({ path, contentType, bytes: Buffer.from(bytes), isImmutable: true });
  return path;
}

async function bundleCss(entry) {
  const result = await esbuild.build({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    minify: true,
    write: false,
    nodePaths: [nodeModules],
    // Style sheets of packages are exported under "import" (altcha/altcha.css).
    conditions: ['style', 'import'],
    legalComments: 'none',
    logLevel: 'warning',
  });
  return Buffer.from(result.outputFiles[0].contents);
}

// The ALTCHA worker runs the proof of work off the main thread; the strict-CSP build of the
// widget loads it from a URL (script-src 'self'), never from a blob.
const altchaWorker = readFileSync(join(nodeModules, 'altcha/dist_external/worker.js'));
const workerPath = addFingerprinted('altcha-worker', 'js', 'text/javascript; charset=utf-8', altchaWorker);

// Both pages' scripts in one build: ES modules split into chunks, so what a page needs only
// sometimes (the ALTCHA widget when the challenge is on, the QR library once tickets exist)
// is fetched only then, and the code the pages share is one cached file. esbuild names every
// file by its content's hash.
const pages = ['buyer', 'admin'];
const PUBLIC_DEMO_WARNING =
  '<p id="public-demo-warning" class="public-demo" role="alert"><strong>Public demo.</strong> ' +
  'This server runs in demo mode on a public address: anyone can mint admin tokens here and ' +
  'change every event. Never use it for a real sale. / <strong lang="pt-BR">Demo pública.</strong> ' +
  '<span lang="pt-BR">Qualquer pessoa pode criar tokens de admin aqui; nunca use numa venda real.</span></p>';
const scripts = await esbuild.build({
  entryPoints: Object.fromEntries(pages.map((name) => [name, join(here, 'src', name, `${name}.js`)])),
  bundle: true,
  minify: true,
  write: false,
  format: 'esm',
  splitting: true,
  outdir: '/assets',
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  metafile: true,
  target: ['es2022', 'chrome100', 'firefox100', 'safari15.4'],
  nodePaths: [nodeModules],
  define: { __ALTCHA_WORKER_URL__: JSON.stringify(workerPath) },
  legalComments: 'none',
  logLevel: 'warning',
  // No source maps: the repository holds the sources; the binary stays small.
});
const entryPaths = {};
for (const file of scripts.outputFiles) {
  const path = `/assets/${basename(file.path)}`;
  assets.push({ path, contentType: 'text/javascript; charset=utf-8', bytes: Buffer.from(file.contents), isImmutable: true });
  const entry = scripts.metafile.outputs[relative(process.cwd(), file.path)]?.entryPoint
    ?? Object.entries(scripts.metafile.outputs).find(([out]) => out.endsWith(basename(file.path)))?.[1].entryPoint;
  for (const name of pages) if (entry && entry.endsWith(`${name}/${name}.js`)) entryPaths[name] = path;
}
for (const name of pages) {
  if (!entryPaths[name]) throw new Error(`no script came out for ${name}`);
  const cssPath = addFingerprinted(name, 'css', 'text/css; charset=utf-8', await bundleCss(`${name}/${name}.css`));
  const template = readFileSync(join(here, 'src', name, 'index.html'), 'utf8')
    .replaceAll('{{script}}', entryPaths[name])
    .replaceAll('{{style}}', cssPath);
  // Two variants: as is, and for a demo on a public address (--demo-public), which says so
  // before anything else (api_pages.c picks the variant).
  for (const [suffix, warning] of [['', ''], ['-public-demo', PUBLIC_DEMO_WARNING]]) {
    const html = template.replaceAll('{{public_demo_warning}}', warning);
    if (html.includes('{{')) throw new Error(`${name}/index.html: a placeholder is left`);
    assets.push({ path: `/${name}${suffix}.html`, contentType: 'text/html; charset=utf-8',
                  bytes: Buffer.from(html), isImmutable: false });
  }
}
const icon = readFileSync(join(here, 'src/common/icon.svg'));
assets.push({ path: '/favicon.svg', contentType: 'image/svg+xml', bytes: icon, isImmutable: false });

// ---- output ----------------------------------------------------------------------------------
rmSync(join(outDir, 'assets'), { recursive: true, force: true });
mkdirSync(join(outDir, 'assets'), { recursive: true });
const manifest = {};
for (const a of assets) {
  a.gzip = gzipSync(a.bytes, { level: constants.Z_BEST_COMPRESSION });
  a.etag = `"${fingerprint(a.bytes)}"`;
  writeFileSync(join(outDir, 'assets', a.path.split('/').pop()), a.bytes);
  manifest[a.path] = { bytes: a.bytes.length, gzip_bytes: a.gzip.length };
}
writeFileSync(join(outDir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');

function cBytes(name, bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 24)
    lines.push('    ' + Array.from(bytes.subarray(i, i + 24), (b) => `${b},`).join(''));
  return `static const unsigned char ${name}[] = {\n${lines.join('\n')}\n    0};\n`;
}
let c = '/* Generated by web/build.mjs from web/src: do not edit. */\n' +
        '#include "gateway/web_assets.h"\n\n';
assets.forEach((a, i) => {
  c += cBytes(`asset_${i}`, a.bytes);
  c += a.gzip.length < a.bytes.length ? cBytes(`asset_${i}_gzip`, a.gzip) : '';
});
c += '\nconst struct web_asset web_assets[] = {\n';
assets.forEach((a, i) => {
  const hasGzip = a.gzip.length < a.bytes.length;
  c += `    {${JSON.stringify(a.path)}, ${JSON.stringify(a.contentType)}, ${JSON.stringify(a.etag)},\n` +
       `     asset_${i}, ${a.bytes.length}, ${hasGzip ? `asset_${i}_gzip` : 'NULL'}, ` +
       `${hasGzip ? a.gzip.length : 0}, ${a.isImmutable}},\n`;
});
c += '};\n\nconst size_t web_asset_count = sizeof(web_assets) / sizeof(web_assets[0]);\n';
writeFileSync(join(outDir, 'web_assets.c'), c);
console.log(`web: ${assets.length} assets into ${outDir}`);
