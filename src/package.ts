/**
 * The package's own files, found from its root: this module sits one level below it in
 * src/ (tests), dist/ (the library) and the one-file bundle dist/cli.js alike, so every
 * path is resolved here and no other module needs `import.meta.url`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = new URL('../', import.meta.url);

const manifest = JSON.parse(readFileSync(new URL('package.json', ROOT), 'utf8')) as { version: string };

export const VERSION = manifest.version;

/** The browser code of our own pages (viewer, dashboard), shipped as source. */
export const STATIC_ROOT = fileURLToPath(new URL('src/web/static/', ROOT));

/** noVNC's package root, which holds core/ and vendor/ (its package exports core/rfb.js). */
export const NOVNC_ROOT = dirname(dirname(createRequire(ROOT).resolve('@novnc/novnc')));
