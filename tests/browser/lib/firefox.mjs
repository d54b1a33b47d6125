// Debian's Firefox (firefox-esr) driven over WebDriver BiDi by puppeteer-core,
// which never downloads a browser. Playwright-core's own Firefox needs its
// patched build (not downloadable here), and its experimental BiDi mode
// ("moz-firefox" channel) sends emulation.setMediaFeaturesOverride for every
// new context, which Firefox 153 ESR does not know, so it cannot open a page.

import { mkdir } from 'node:fs/promises';
import puppeteer from 'puppeteer-core';
import { PASSWORD, waitFor } from './vakt.mjs';
import { SHOT_DIR } from './browser.mjs';

export { SHOT_DIR };
export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

/**
 * Headless Firefox with a fresh profile, British English as the browser's
 * language (as the Chromium suites use en-GB) and nothing that phones home.
 */
export async function launchFirefox() {
  await mkdir(SHOT_DIR, { recursive: true });
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    protocolTimeout: 30000,
    extraPrefsFirefox: {
      'intl.accept_languages': 'en-GB, en',
      'intl.locale.requested': 'en-GB',
      'app.update.enabled': false,
      'browser.shell.checkDefaultBrowser': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
      // The console asks for one click before it plays sound; no other blocking.
      'media.autoplay.default': 0,
    },
  });
}

/**
 * A page in its own browser context (its own cookies and local storage, as
 * another person's browser would have), 1366×768. Page errors, missing
 * translations and CSP violations are collected in page.problems; every other
 * console error or warning in page.consoleLog, for the report.
 */
export async function openFirefoxPage(browser, { viewport = { width: 1366, height: 768 } } = {}) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport(viewport);
  page.setDefaultTimeout(10000);
  page.problems = [];
  page.consoleLog = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message ?? err}`));
  page.on('console', (msg) => {
    const type = msg.type();
    const text = msg.text();
    if (type === 'warn' && text.includes('i18n')) page.problems.push(text);
    else if (text.includes('Content Security Policy')) page.problems.push(text);
    else if (type === 'error' || type === 'warn') page.consoleLog.push(`${type}: ${text}`);
  });
  // Firefox reports CSP violations to its own console, not always over BiDi;
  // the page's event sees every one.
  await page.evaluateOnNewDocument(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`Content Security Policy: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`);
    });
  });
  return page;
}

/** Logs in through the page's own form and waits until the form is gone. */
export async function loginFirefox(page, url, username, { password = PASSWORD, vakt = null } = {}) {
  await page.goto(url);
  await page.locator('#login-username').fill(username);
  await page.locator('#login-password').fill(password);
  const code = vakt ? await vakt.totp(username) : '';
  if (code) await page.locator('#login-totp').fill(code);
  await page.locator('#login-submit').click();
  await page.waitForSelector('#login-view', { hidden: true });
}

/** The visible text of the first element matching `selector`, '' when none. */
export function textOf(page, selector) {
  return page.evaluate((sel) => document.querySelector(sel)?.innerText ?? '', selector);
}

/**
 * Waits until the element matching `selector` is visible and its text
 * contains `text` (a string) or matches it (a RegExp); returns the text.
 */
export async function waitForText(page, selector, text, { timeoutMs = 10000 } = {}) {
  const pattern = text instanceof RegExp ? text : null;
  let last = '';
  try {
    return await waitFor(async () => {
      last = await page.evaluate((sel) => {
        const node = document.querySelector(sel);
        if (!node || node.closest('[hidden]') || !node.getClientRects().length) return null;
        return node.innerText;
      }, selector) ?? '';
      const ok = pattern ? pattern.test(last) : last.includes(text);
      return ok ? last : null;
    }, { timeoutMs, what: `${selector} to show ${text}` });
  } catch (err) {
    err.message += `; it shows ${JSON.stringify(last.slice(0, 500))}`;
    throw err;
  }
}
