// Debian's Chromium driven by playwright-core (which never downloads a
// browser), with helpers for logging in and watching the page.

import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { PASSWORD } from './vakt.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Where screenshots go: docs/console.png only when the run asks to update it. */
export const SHOT_DIR = process.env.VAKT_SHOT_DIR || join(tmpdir(), 'vakt-browser-shots');

export async function launch() {
  await mkdir(SHOT_DIR, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

/**
 * A fresh browser profile (context) in `locale`, 1366×768 unless told
 * otherwise. Page errors and i18n warnings are collected so tests can assert
 * there are none.
 */
export async function openPage(browser, { locale = 'en-GB', viewport = { width: 1366, height: 768 } } = {}) {
  const context = await browser.newContext({ locale, viewport });
  const page = await context.newPage();
  page.problems = [];
  // Every request with its timing, to see what was slow when a step times out.
  page.requestLog = [];
  const started = new Map();
  page.on('request', (req) => started.set(req, Date.now()));
  const done = (req, outcome) => {
    const t0 = started.get(req) ?? Date.now();
    page.requestLog.push(`${new Date(t0).toISOString()} ${String(Date.now() - t0).padStart(6)} ms ${outcome} ${req.method()} ${req.url()}`);
  };
  page.on('requestfinished', (req) => {
    req.response().then((res) => done(req, res ? res.status() : '-'), () => done(req, 'closed'));
  });
  page.on('requestfailed', (req) => done(req, `failed(${req.failure()?.errorText})`));
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'warning' && msg.text().includes('i18n')) page.problems.push(msg.text());
    if (msg.type() === 'error' && msg.text().includes('Content Security Policy')) page.problems.push(msg.text());
  });
  return page;
}

/**
 * Logs in through the page's own form (with a one-time code from `vakt`'s
 * totp() when the user has one) and waits until the form is gone.
 */
export async function login(page, url, username, { password = PASSWORD, vakt = null } = {}) {
  await page.goto(url);
  await page.locator('#login-username').fill(username);
  await page.locator('#login-password').fill(password);
  const code = vakt ? await vakt.totp(username) : '';
  if (code) await page.locator('#login-totp').fill(code);
  await page.locator('#login-submit').click();
  await page.locator('#login-view').waitFor({ state: 'hidden' });
}
