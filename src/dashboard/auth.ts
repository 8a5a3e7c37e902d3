/**
 * Access to the dashboard: HTTP basic auth for Bull Board and a bearer token
 * for the read-only API, both compared in constant time, and the rule that a
 * dashboard reachable from elsewhere must have a password.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { ConfigError } from '../errors.ts';

/** Compare two secrets in constant time (hashing first makes the lengths equal). */
export function secretsEqual(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected)) && expected !== '';
}

/** Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || host.toLowerCase().startsWith('::ffff:127.');
  return false;
}

/** Throw ConfigError when the dashboard would listen beyond loopback without a password. */
export function checkDashboardExposure(options: { host: string; password: string }): void {
  if (!isLoopback(options.host) && options.password === '') {
    throw new ConfigError([
      `dashboard.password: required when dashboard.host is not a loopback address (it is ${JSON.stringify(options.host)}): ` +
        'Bull Board lets whoever reaches it retry and delete jobs. Set BYSU_DASHBOARD_PASSWORD, or listen on 127.0.0.1.',
    ]);
  }
}

/**
 * Express middleware: HTTP basic auth with the user and password that
 * `credentials` returns at each request (a reload applies to the next one);
 * a no-op when the password is empty (loopback only).
 */
export function basicAuth(credentials: () => { user: string; password: string }) {
  return (request: Request, response: Response, next: NextFunction): void => {
    const { user, password } = credentials();
    if (password === '') {
      next();
      return;
    }
    const header = request.headers.authorization ?? '';
    const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header);
    if (match) {
      const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon !== -1 && secretsEqual(decoded.slice(0, colon), user) && secretsEqual(decoded.slice(colon + 1), password)) {
        next();
        return;
      }
    }
    response.set('WWW-Authenticate', 'Basic realm="bysu", charset="UTF-8"').status(401).type('text/plain').send('authentication required\n');
  };
}

/** Express middleware: `Authorization: Bearer <token>` with the token as of each request; refuses everything when none is configured. */
export function bearerAuth(currentToken: () => string) {
  return (request: Request, response: Response, next: NextFunction): void => {
    const token = currentToken();
    if (token === '') {
      response.status(403).json({ error: 'the API is off: set dashboard.apiToken (BYSU_API_TOKEN) to enable it' });
      return;
    }
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
    if (match && secretsEqual(match[1]!, token)) {
      next();
      return;
    }
    response.set('WWW-Authenticate', 'Bearer realm="bysu"').status(401).json({ error: 'a valid bearer token is required' });
  };
}

/**
 * Express middleware for a dashboard without a password: serve only requests
 * whose Host is a loopback name or address, so that a web page that rebinds
 * its own name to 127.0.0.1 cannot reach the dashboard from a browser.
 */
export function loopbackHostOnly(request: Request, response: Response, next: NextFunction): void {
  const host = (request.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (isLoopback(host)) {
    next();
    return;
  }
  response.status(421).type('text/plain').send('this dashboard has no password and answers only to a loopback Host (127.0.0.1, localhost)\n');
}
