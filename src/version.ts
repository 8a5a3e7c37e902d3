import { existsSync, readFileSync } from 'node:fs';

/** The package.json nearest above this file: ../ from src/, ../../ from the compiled dist/src/. */
function packageJson(): URL {
  for (const relative of ['../package.json', '../../package.json']) {
    const candidate = new URL(relative, import.meta.url);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`no package.json above ${import.meta.url}`);
}

/** BYSU's version, from package.json (recorded in every manifest). */
export const BYSU_VERSION: string = (JSON.parse(readFileSync(packageJson(), 'utf8')) as { version: string }).version;
