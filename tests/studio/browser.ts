/**
 * Debian's chromium driven by playwright-core (Playwright's own browser download cannot work
 * here): the launch the studio's tests share, and where they put their screenshots.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium (apt-get install chromium). */
export const CHROMIUM = '/usr/bin/chromium';
/** True when the browser is there; the browser tests skip, saying so, when it is not. */
export const hasChromium = existsSync(CHROMIUM);
/** Why the browser tests were skipped, for their titles. */
export const SKIP_REASON = `SKIPPED: ${CHROMIUM} is missing (apt-get install chromium)`;

/** test-artifacts/studio (git-ignored): the screenshots of the browser tests. */
export const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/studio/', import.meta.url));

/** Headless chromium with nothing that reaches the network by itself; Playwright gives it a fresh profile. */
export async function launchChromium(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** Where a screenshot named `name` goes. */
export function screenshotPath(name: string): string {
  return join(ARTIFACTS, `${name}.png`);
}
