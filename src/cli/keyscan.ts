/** `bysu keyscan <host> [--port N]`: print the host key fingerprints to pin, and known_hosts lines. */
import { scanHostKeys } from '../ssh/session.ts';
import { EXIT_OK } from './context.ts';

export async function keyscan(host: string, options: { port: number; timeout: number }): Promise<number> {
  const keys = await scanHostKeys(host, options.port, options.timeout);
  console.log(`# ${host}:${options.port}: check these out of band before you trust them`);
  for (const key of keys) console.log(`${key.type} ${key.fingerprint}`);
  console.log('# known_hosts lines:');
  for (const key of keys) console.log(key.knownHostsLine);
  return EXIT_OK;
}
