/** The machine's PostgreSQL for tests that dump and restore a real database (127.0.0.1:5432, user postgres). */
import { run } from './processes.ts';

/** Connection options for psql and pg_dump, as command-line words. */
export const PG = ['-h', '127.0.0.1', '-p', '5432', '-U', 'postgres'];

/** Run one SQL statement in a database with psql (ON_ERROR_STOP, tuples only). */
export async function psql(database: string, sql: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run('psql', [...PG, '-v', 'ON_ERROR_STOP=1', '-tAq', '-d', database, '-c', sql]);
}

/** Null when PostgreSQL answers; else why not (for a test's skip message). */
export async function postgresUnavailable(): Promise<string | null> {
  try {
    const probe = await psql('postgres', 'select 1');
    return probe.code === 0 ? null : probe.stderr.trim();
  } catch (error) {
    return (error as Error).message;
  }
}
