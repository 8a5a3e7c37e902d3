/**
 * Debian's Chromium for the browser tests, driven by playwright-core: where
 * it is, the flags for a headless run on a machine with only loopback, where
 * screenshots go, and the check that a page refuses a visitor without
 * credentials.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { PROJECT_ROOT } from './cluster.ts';

export const CHROMIUM = '/usr/bin/chromium';
/** Where screenshots are kept for a person to look at. */
export const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A test's skip option: false when Chromium is installed, else why the test is skipped. */
export const skipWithoutChromium = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (apt-get install -y chromium; npm test installs it when run as root)`;

/** Start a headless Chromium (and make the screenshot directory). */
export async function launchChromium(): Promise<Browser> {
  await mkdir(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
}

/** Given the browser and a URL behind basic auth, assert that a visitor without credentials is refused. */
export async function assertRefusedWithoutCredentials(browser: Browser, url: string, what: string): Promise<void> {
  const anonymous = await browser.newPage();
  const refused = await anonymous.goto(url).catch((error: Error) => error);
  // Headless Chromium turns the 401 challenge it cannot answer into an error page.
  assert.ok(refused instanceof Error ? /ERR_INVALID_AUTH_CREDENTIALS/.test(refused.message) : refused?.status() === 401, `no credentials, no ${what}`);
  await anonymous.close();
}
