import { readFileSync } from 'node:fs';

/** BYSU's version, from package.json (recorded in every manifest). */
export const BYSU_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
