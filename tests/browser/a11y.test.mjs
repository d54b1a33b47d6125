// Accessibility of the duty-officer console and the coordinators' pages in a
// real Chromium: axe-core over every kind of screen (login, a queue with
// alerts, an open alert, the coordinators' pages), the queue as one Tab
// stop, and what a screen reader is told when an alert arrives or is late.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { startVakt, seedCase, waitFor } from './lib/vakt.mjs';
import { ANNA } from './lib/cases.mjs';
import { launch, login } from './lib/browser.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

const SARA = {
  reference: 'SE-2026-0388', person: 'Sara Nilsson', phone: '+46 70 000 00 01', address: 'Hornsgatan 100, 117 26 Stockholm',
  lat: 59.3170, lon: 18.0480, region: 'Stockholm', risk: 'medium', plan: 'Call Sara first.', restrained: 'Johan Ek',
  description: 'about 175 cm, beard', deviceId: 'alarm-0388',
};

const LEILA = {
  reference: 'SE-2026-0402', person: 'Leila Haddad', phone: '+46 70 000 00 02', address: 'Götgatan 45, 118 26 Stockholm',
  lat: 59.3130, lon: 18.0730, region: 'Stockholm', risk: 'critical', plan: 'Send the nearest patrol at once, blue lights.',
  restrained: 'Peter Holm', description: 'about 190 cm, shaved head', deviceId: 'alarm-0402', protectedIdentity: true,
};

/**
 * A page whose context lets the test inject axe-core: the pages' own policy
 * forbids inline scripts, which addScriptTag uses. Script errors are still
 * collected.
 */
async function openAuditedPage(browser) {
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1366, height: 768 }, bypassCSP: true });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (err) => page.problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'warning' && msg.text().includes('i18n')) page.problems.push(msg.text());
  });
  return page;
}

/** The serious and critical axe-core violations on the page as it is now. */
async function seriousViolations(page) {
  if (!(await page.evaluate(() => Boolean(window.axe)))) await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    // Proof that the rules ran: a page with nothing checked would pass too.
    if (result.passes.length === 0) return [{ id: 'axe-did-not-run', impact: 'critical' }];
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary}`),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

async function assertAccessible(page, where) {
  const found = await seriousViolations(page);
  assert.deepEqual(found, [], `${where}: ${JSON.stringify(found, null, 2)}`);
}

describe('accessibility of the console and the coordinators’ pages', () => {
  let vakt;
  let browser;
  let page;
  let anna;
  let leila;
  // Every line the page put in its live region, with the time it was added.
  const heard = () => page.evaluate(() => window.heardLines);

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer', region: 'Stockholm' },
        { username: 'officer2', role: 'officer', region: 'Stockholm' },
        { username: 'coord', role: 'coordinator', region: 'Stockholm' },
        { username: 'boss', role: 'admin' },
      ],
      toml: '[supervision]\noverdue_p1_s = 3\n',
    });
    anna = await seedCase(vakt, 'coord', ANNA);
    leila = await seedCase(vakt, 'coord', LEILA);
    const sara = await seedCase(vakt, 'coord', SARA);
    await vakt.alarm({ id: sara.deviceId, key: sara.key, kind: 'tamper', lat: SARA.lat, lon: SARA.lon });
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('has no serious or critical violations on the console login, in English and Swedish', async () => {
    page = await openAuditedPage(browser);
    await page.goto(vakt.url);
    await page.locator('#login-view').waitFor();
    await assertAccessible(page, 'console login');
    await page.locator('#lang-select').selectOption('sv');
    await page.getByRole('heading', { name: 'Logga in' }).waitFor();
    await assertAccessible(page, 'console login (sv)');
    await page.locator('#lang-select').selectOption('en');
  });

  it('has no serious or critical violations on the queue with alerts and on an open alert', async () => {
    await login(page, vakt.url, 'officer1', { vakt });
    await page.locator('#st-conn.conn-live').waitFor();
    await page.evaluate(() => {
      window.heardLines = [];
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) window.heardLines.push({ text: n.textContent, at: Date.now() });
      }).observe(document.getElementById('announcer'), { childList: true });
    });
    await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: ANNA.lat + 0.0002, lon: ANNA.lon });
    await page.locator('#notices').getByText('NEW PRIORITY 1 ALERT').waitFor();
    await waitFor(async () => (await page.locator('#queue-body tr').count()) === 2, { what: 'two alerts in the queue' });
    await assertAccessible(page, 'queue with alerts');
    await page.locator('#queue-body tr', { hasText: ANNA.reference }).click();
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    await page.locator('#d-map svg').waitFor();
    await assertAccessible(page, 'open alert detail');
    await page.locator('#lang-select').selectOption('sv');
    await page.getByRole('heading', { name: 'Larmkö' }).waitFor();
    await assertAccessible(page, 'open alert detail (sv)');
    await page.locator('#lang-select').selectOption('en');
  });

  it('reads out the alert itself, priority, kind, case and place, without the buttons of its notice', async () => {
    await waitFor(async () => (await heard()).some((l) => /^New priority 1 alert:/.test(l.text)), { what: 'the new alert read out' });
    const line = (await heard()).find((l) => /^New priority 1 alert:/.test(l.text)).text;
    assert.equal(line, `New priority 1 alert: priority 1, Panic, case ${ANNA.reference}, Stockholm, place Stockholm, at home, inside exclusion zone “Home”`);
    const region = await page.locator('#announcer').innerText();
    assert.doesNotMatch(region, /Open|Hide notice|Dismiss/, 'no button labels in the live region');
    assert.equal(await page.locator('#notices').getAttribute('role'), null, 'the notices with their buttons are not a live region');
    assert.equal(await page.locator('#notices').getByRole('button', { name: 'Open' }).count(), 1, 'the notice still has its button');
  });

  it('reads out an overdue alert once, not again while its waiting time counts up', async () => {
    await page.locator('#notices').getByText('OVERDUE – NOT ACKNOWLEDGED').waitFor({ timeout: 15000 });
    // The visible notice counts the minutes; the live region must not repeat with it.
    await page.locator('#notices').getByText(/waiting 1 min/).waitFor({ timeout: 75000 });
    await page.waitForTimeout(1500);
    const overdue = (await heard()).filter((l) => /^Overdue, not acknowledged:/.test(l.text));
    assert.equal(overdue.length, 1, JSON.stringify(await heard()));
    assert.match(overdue[0].text, new RegExp(`Panic, case ${ANNA.reference}`));
  });

  it('is one Tab stop for the whole queue: Tab enters at the selected alert, the next Tab leaves, arrows move', async () => {
    const rows = page.locator('#queue-body tr');
    const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    const stops = await rows.evaluateAll((trs) => trs.map((tr) => tr.tabIndex));
    const selected = await page.locator('#queue-body tr[aria-current="true"]').getAttribute('data-id');
    assert.deepEqual(stops, ids.map((id) => (id === selected ? 0 : -1)), 'only the selected row is a Tab stop');

    await page.locator('#queue-panel').focus(); // where the skip link lands
    await page.keyboard.press('Tab');
    const focused = () => page.evaluate(() => document.activeElement?.closest?.('#queue-body > tr')?.dataset.id ?? null);
    assert.equal(await focused(), selected, 'Tab enters the queue at the selected alert');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), null, 'the next Tab leaves the queue');
    await page.keyboard.press('Shift+Tab');
    assert.equal(await focused(), selected);

    const other = ids.find((id) => id !== selected);
    await page.keyboard.press(ids.indexOf(other) > ids.indexOf(selected) ? 'ArrowDown' : 'ArrowUp');
    await waitFor(async () => (await focused()) === other, { what: 'the arrow to move to the other alert' });
    await page.locator(`#queue-body tr[data-id="${other}"][aria-current="true"]`).waitFor();
    assert.equal(await page.locator(`#queue-body tr[data-id="${other}"]`).evaluate((tr) => tr.tabIndex), 0, 'the Tab stop moved with the selection');
    assert.equal(await page.locator(`#queue-body tr[data-id="${selected}"]`).evaluate((tr) => tr.tabIndex), -1);
  });

  it('words the history in the page language, without the device’s raw boot number', async () => {
    await page.locator('#queue-body tr', { hasText: ANNA.reference }).click();
    const history = page.locator('#d-history');
    await history.getByText(/Panic \(message \d+ from the device since it started\)/).waitFor();
    assert.doesNotMatch(await history.innerText(), /boot|seq/);
    await page.locator('#lang-select').selectOption('sv');
    await history.getByText(/Överfallslarm \(meddelande \d+ från enheten sedan den startade\)/).waitFor();
    assert.doesNotMatch(await history.innerText(), /boot|seq/);
  });

  it('tells the count of open alerts from the button that opens one, in Swedish as in English', async () => {
    const counts = page.locator('#st-counts');
    await counts.getByText('Öppna larm:', { exact: true }).waitFor();
    await page.locator('#notices').getByRole('button', { name: 'Öppna', exact: true }).first().waitFor();
    await page.locator('#lang-select').selectOption('en');
    await counts.getByText('Open alerts:', { exact: true }).waitFor();
    assert.deepEqual(page.problems, []);
  });

  it('has no serious or critical violations on the coordinators’ pages', async () => {
    const admin = await openAuditedPage(browser);
    await admin.goto(`${vakt.url}/admin`);
    await admin.locator('#login-view').waitFor();
    await assertAccessible(admin, '/admin login');
    await login(admin, `${vakt.url}/admin`, 'boss', { vakt });
    await admin.getByRole('heading', { name: 'Cases', level: 1 }).waitFor();
    await admin.locator('#cases-body tr', { hasText: ANNA.reference }).waitFor();
    await assertAccessible(admin, '/admin cases');
    await admin.locator('#cases-body tr', { hasText: LEILA.reference }).getByRole('link').first().click();
    await admin.getByRole('heading', { name: `Case ${LEILA.reference}` }).waitFor();
    await assertAccessible(admin, '/admin case');
    for (const [tab, heading] of [['Persons', 'Persons'], ['Devices', 'Devices'], ['Users', 'Users']]) {
      await admin.getByRole('link', { name: tab, exact: true }).click();
      await admin.getByRole('heading', { name: heading, level: 1 }).waitFor();
      await assertAccessible(admin, `/admin ${tab.toLowerCase()}`);
    }
    await admin.locator('#lang-select').selectOption('sv');
    await admin.getByRole('heading', { name: 'Användare', level: 1 }).waitFor();
    await assertAccessible(admin, '/admin users (sv)');
    assert.deepEqual(admin.problems, []);
    await admin.context().close();
  });

  it('lets the officer handling a protected person’s alert reveal them with one button, logged with the server’s reason', async () => {
    await vakt.alarm({ id: leila.deviceId, key: leila.key, kind: 'panic', lat: LEILA.lat, lon: LEILA.lon });
    const row = page.locator('#queue-body tr', { hasText: LEILA.reference });
    await row.click();
    const detail = page.locator('#detail');
    await detail.getByText('Protected identity – details hidden.').waitFor();
    // Open: nobody handles it yet, so only the typed reason is offered.
    assert.equal(await page.locator('#reveal-handling-btn').isVisible(), false);
    await page.locator('#ack-btn').click();
    await row.getByText('by officer1').waitFor();
    const id = await row.getAttribute('data-id');
    const show = detail.getByRole('button', { name: `Show identity – handling alert ${id}` });
    await show.click();
    await detail.getByText(LEILA.person).waitFor();
    await detail.getByText(LEILA.plan).waitFor();
    await detail.getByText('Protected identity shown – this view is logged.').waitFor();
    const audit = await vakt.api('boss', 'GET', '/api/audit?user=officer1');
    assert.ok(audit.some((e) => e.action === 'person_revealed' && e.detail === `handling alert ${id}`), JSON.stringify(audit));

    // Another officer of the region is not handling it: the typed reason only.
    const other = await openAuditedPage(browser);
    await login(other, vakt.url, 'officer2', { vakt });
    await other.locator('#queue-body tr', { hasText: LEILA.reference }).click();
    await other.locator('#detail').getByText('Protected identity – details hidden.').waitFor();
    await other.getByRole('button', { name: 'Reveal (state reason)' }).waitFor();
    assert.equal(await other.locator('#reveal-handling-btn').isVisible(), false);
    assert.equal(await other.locator('#detail').getByText(LEILA.person).count(), 0);
    assert.deepEqual([...page.problems, ...other.problems], []);
    await other.context().close();
  });
});
