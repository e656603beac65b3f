// Bundles the admin console (ui/src, TypeScript) into dist/ui/ for the admin HTTP server.
// `node ui/build.mjs` (part of `npm run build`); `--dev` keeps the output unminified.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'dist', 'ui');

export async function buildUi({ dev = false } = {}) {
  await rm(out, { recursive: true, force: true });
  await mkdir(join(out, 'assets'), { recursive: true });
  await build({
    entryPoints: { app: join(here, 'src', 'main.ts'), style: join(here, 'style.css') },
    outdir: join(out, 'assets'),
    bundle: true,
    format: 'esm',
    target: ['chrome109', 'firefox115', 'safari16'],
    minify: !dev,
    sourcemap: 'linked',
    legalComments: 'linked',
    logLevel: 'warning',
  });
  await copyFile(join(here, 'index.html'), join(out, 'index.html'));
  await copyFile(join(here, 'favicon.svg'), join(out, 'assets', 'favicon.svg'));
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  buildUi({ dev: process.argv.includes('--dev') }).catch((err) => {
    process.stderr.write(`ui build failed: ${err.message}\n`);
    process.exit(1);
  });
}
