/**
 * The logger: pino, JSON lines by default, pretty when stderr is a terminal.
 * Logs go to stderr so that CLI output on stdout stays clean for scripts.
 * Keys that may hold secrets are redacted wherever they appear.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

const REDACT = ['password', 'apiToken', 'passphrase', 'privateKey', '*.password', '*.apiToken', '*.passphrase', '*.privateKey', 'redis.url'];

/** Given a level, return the process logger. `BYSU_LOG_FORMAT=json|pretty` overrides the TTY guess. */
export function createLogger(level = 'info', name = 'bysu'): Logger {
  const format = process.env.BYSU_LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const options = { name, level, redact: { paths: REDACT, censor: '[redacted]' } };
  if (format === 'pretty') {
    return pino(options, pretty({ destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname', sync: true }));
  }
  return pino(options, pino.destination({ dest: 2, sync: true }));
}
