/**
 * `bysu config schema`: print the JSON Schema (draft-07) of bysu.yaml, generated
 * from the declaration the loader checks against. The repository commits its
 * output as bysu.schema.json; editors that speak yaml-language-server use it.
 */
import { toJsonSchema } from '../config/json-schema.ts';
import { EXIT_OK } from './context.ts';

/** Return the JSON Schema as the text `bysu config schema` prints (and bysu.schema.json holds). */
export function configSchemaText(): string {
  return `${JSON.stringify(toJsonSchema(), null, 2)}\n`;
}

export function configSchema(): number {
  process.stdout.write(configSchemaText());
  return EXIT_OK;
}
