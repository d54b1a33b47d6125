// The duty-officer console in a real Chromium against a real vakt, with
// alarms from the real firmware simulator over MQTT.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startVakt, seedCase, waitFor, PASSWORD } from './lib/vakt.mjs';
import { ANNA } from './lib/cases.mjs';
import { launch, openPage, login, SHOT_DIR } from './lib/browser.mjs';
import { startTileServer } from './lib/tiles.mjs';
import { startGeocoder } from './lib/geocoder.mjs';

// More cases, so the queue looks like a night shift for the README screenshot.
const OTHERS = [
  { reference: 'SE-2026-0388', person: 'Sara Nilsson', phone: '+46 70 000 00 01', address: 'Hornsgatan 100, 117 26 Stockholm', lat: 59.3170, lon: 18.0480, region: 'Stockholm', risk: 'medium', plan: 'Call Sara first; send a patrol if she does not answer within one minute.', restrained: 'Johan Ek', description: 'about 175 cm, beard, glasses', deviceId: 'alarm-0388' },
  { reference: 'SE-2026-0402', person: 'Leila Haddad', phone: '+46 70 000 00 02', address: 'Götgatan 45, 118 26 Stockholm', lat: 59.3130, lon: 18.0730, region: 'Stockholm', risk: 'critical', plan: 'Send the nearest patrol at once, blue lights.', restrained: 'Peter Holm', description: 'about 190 cm, shaved head', deviceId: 'alarm-0402', protectedIdentity: true },
  { reference: 'SE-2026-0355', person: 'Eva Johansson', phone: '+46 70 000 00 03', address: 'Odengatan 60, 113 22 Stockholm', lat: 59.3440, lon: 18.0560, region: 'Stockholm', risk: 'low', plan: 'Call Eva; send a patrol if the call-back fails.', restrained: 'Lars Öberg', description: 'about 170 cm, grey hair', deviceId: 'alarm-0355' },
];

describe('duty-officer console', () => {
  let vakt;
  let browser;
  let officer;      // officer1's page, kept open through the tests
  let second;       // officer2's page, to see the same queue elsewhere
  let anna;

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer', region: 'Stockholm' },
        { username: 'officer2', role: 'officer' },
        { username: 'coord', role: 'coordinator', region: 'Stockholm' },
      ],
    });
    anna = await seedCase(vakt, 'coord', ANNA);
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('refuses a wrong password and then logs the officer in', async () => {
    officer = await openPage(browser);
    await officer.goto(vakt.url);
    await officer.locator('#login-username').fill('officer1');
    await officer.locator('#login-password').fill('not the password at all');
    await officer.locator('#login-submit').click();
    await officer.getByText('Login failed.').waitFor();

    await login(officer, vakt.url, 'officer1', { vakt });
    await officer.getByRole('heading', { name: 'Alert queue' }).waitFor();
    await officer.getByText('No open alerts.').waitFor();
    await officer.locator('#st-conn.conn-live').waitFor();
    // Sound needs one click in a browser; the officer gives it.
    await officer.getByRole('button', { name: 'Enable sound' }).click();
    await officer.locator('#sound-toggle[aria-pressed="true"]').waitFor();
  });

  it('shows a panic from a real MQTT device without a reload in under a second, with a priority-1 notice', async () => {
    second = await openPage(browser);
    await login(second, vakt.url, 'officer2', { vakt });
    await second.locator('#st-conn.conn-live').waitFor();

    // Marks the document, and records when the first row appears in it.
    await officer.evaluate(() => {
      window.noReloadMarker = true;
      window.rowSeenAt = null;
      const body = document.getElementById('queue-body');
      new MutationObserver(() => {
        if (window.rowSeenAt === null && body.querySelector('tr')) window.rowSeenAt = Date.now();
      }).observe(body, { childList: true });
    });

    const { sentAt } = await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: 59.3367, lon: 18.0615, acc: 12 });
    assert.ok(sentAt, 'firmware-sim reported the publish');
    const row = officer.locator('#queue-body tr').first();
    await row.waitFor();
    const seenAt = await officer.evaluate(() => window.rowSeenAt);
    const latency = seenAt - sentAt;
    console.log(`# live arrival: published → row visible in ${latency} ms`);
    assert.ok(latency < 1000, `the alert took ${latency} ms to appear`);
    assert.equal(await officer.evaluate(() => window.noReloadMarker), true, 'the page was not reloaded');

    await assertRowShows(row, ['1', 'Panic', ANNA.reference, 'High', 'Stockholm', 'Open']);
    const notice = officer.locator('#notices .notice').filter({ hasText: 'NEW PRIORITY 1 ALERT' });
    await notice.waitFor();
    assert.match(await notice.innerText(), new RegExp(ANNA.reference));
    assert.match(await officer.title(), /PRIORITY 1/);
    await second.locator('#queue-body tr', { hasText: ANNA.reference }).waitFor();
  });

  it('opens the detail with the response plan, relatives, restrained person and a map of zones and position', async () => {
    await officer.locator('#notices').getByRole('button', { name: 'Open' }).first().click();
    const detail = officer.locator('#detail');
    await detail.waitFor();
    await detail.getByRole('heading', { name: `Panic – case ${ANNA.reference}` }).waitFor();
    for (const text of [ANNA.plan, ANNA.person, ANNA.phone, 'Karin Lindqvist', ANNA.restrained, ANNA.description, ANNA.vehicle]) {
      await detail.getByText(text, { exact: false }).first().waitFor();
    }
    const map = officer.locator('#d-map svg[role="img"]');
    await map.waitFor();
    assert.equal(await map.locator('.zone-shape').count(), 2, 'both exclusion zones are drawn');
    assert.equal(await map.locator('.zone-hit').count(), 1, 'the zone with the alarm in it stands out');
    assert.equal(await map.locator('.map-position .dot').count(), 1, 'the alarm position is drawn');
    assert.equal(await map.locator('.map-position .acc').count(), 1, 'with its accuracy circle');
    assert.equal(await map.locator('.map-address').count(), 1, 'and the registered address');
    assert.equal(await map.locator('.map-scale').count(), 1, 'with a scale bar');
    const legend = await officer.locator('#d-map-legend').innerText();
    assert.match(legend, /Exclusion zone “Home” \(radius 300 m\) – THE ALARM IS INSIDE/);
    assert.match(legend, /Exclusion zone “Workplace” – [\d.,]+ m outside/);
    assert.match(legend, /Registered address – \d+ m from the alarm/);
    assert.match(await detail.innerText(), /Device was told\s+Received/);

    // The reasons are the server's facts worded by the page: Swedish in Swedish.
    const reasons = officer.locator('#d-reasons');
    assert.match(await reasons.innerText(), /^Panic button pressed$/m);
    assert.match(await reasons.innerText(), /Position is inside exclusion zone “Home”/);
    await officer.locator('#lang-select').selectOption('sv');
    await reasons.getByText('Larmknappen tryckt', { exact: true }).waitFor();
    const swedish = await reasons.innerText();
    assert.match(swedish, new RegExp(`Ärende ${ANNA.reference}: risknivå hög`));
    assert.match(swedish, new RegExp(`Utvidgat kontaktförbud gäller till .*: förbudsperson ${ANNA.restrained}, ${ANNA.description}`));
    assert.match(swedish, /Positionen är inne i förbudsområdet ”Home”/);
    assert.match(swedish, /Positionen är \d+ m från den registrerade adressen/);
    assert.doesNotMatch(swedish, /Position is|Case |Restraining order/, 'no English left');
    // The backend's own history notes too.
    assert.match(await officer.locator('#d-history').innerText(), /Överfallslarm \(meddelande \d+ från enheten sedan den startade\)/);
    await officer.locator('#lang-select').selectOption('en');
    await reasons.getByText('Panic button pressed', { exact: true }).waitFor();
  });

  it('acknowledges with the keyboard; it survives a reload and shows on another officer’s screen', async () => {
    const row = officer.locator('#queue-body tr', { hasText: ANNA.reference });
    await row.focus();
    await officer.keyboard.press('a');
    await row.getByText('Acknowledged').waitFor();
    await row.getByText('by officer1').waitFor();
    await officer.locator('#notices .notice').filter({ hasText: 'NEW PRIORITY 1 ALERT' }).waitFor({ state: 'detached' });
    const detail = officer.locator('#detail');
    await waitFor(async () => /Device was told\s+Accepted/.test(await detail.innerText()), { what: 'the device feedback to show "accepted"' });

    // The other officer's console changes live, without a reload.
    await second.locator('#queue-body tr', { hasText: ANNA.reference }).getByText('by officer1').waitFor();

    await officer.reload();
    await officer.locator('#queue-body tr', { hasText: ANNA.reference }).getByText('Acknowledged').waitFor();
    await second.reload();
    await second.locator('#queue-body tr', { hasText: ANNA.reference }).getByText('by officer1').waitFor();
  });

  it('resolves only with an outcome, all by keyboard, and the alert leaves every queue', async () => {
    const row = officer.locator('#queue-body tr', { hasText: ANNA.reference });
    await row.focus();
    await officer.keyboard.press('r');
    const outcome = officer.locator('#resolve-outcome');
    await waitFor(() => outcome.evaluate((node) => node === document.activeElement), { what: 'the outcome to take focus' });
    assert.equal(await officer.locator('#resolve-btn').isDisabled(), true, 'no outcome, no resolve');
    await officer.keyboard.press('ArrowDown');
    assert.equal(await outcome.inputValue(), 'police_dispatched');
    await officer.keyboard.press('Tab');
    await officer.keyboard.type('Patrol 2314 on site, all calm.');
    await officer.keyboard.press('Tab');
    await officer.keyboard.press('Enter');
    await officer.getByText(`Alert for case ${ANNA.reference} resolved.`).waitFor();
    await officer.getByText('No open alerts.').waitFor();
    await second.getByText('No open alerts.').waitFor();
    await officer.reload();
    await officer.getByText('No open alerts.').waitFor();
  });

  it('switches between Swedish and English, and remembers the choice', async () => {
    await officer.locator('#lang-select').selectOption('sv');
    await officer.getByRole('heading', { name: 'Larmkö' }).waitFor();
    await officer.getByText('Inga öppna larm.').waitFor();
    assert.equal(await officer.locator('html').getAttribute('lang'), 'sv');
    await officer.reload();
    await officer.getByRole('heading', { name: 'Larmkö' }).waitFor();
    await officer.getByRole('button', { name: 'Logga ut' }).waitFor();
    // Sound was on before the reload: the first click brings it back.
    await officer.getByText('Ljudet är AV efter omladdningen').waitFor();
    await officer.getByRole('heading', { name: 'Larmkö' }).click();
    await officer.locator('#sound-toggle[aria-pressed="true"]').waitFor();
    await officer.locator('#lang-select').selectOption('en');
    await officer.getByRole('heading', { name: 'Alert queue' }).waitFor();
    await officer.getByRole('button', { name: 'Log out' }).waitFor();
  });

  it('shows a dropped live connection at once and catches up after it returns', async () => {
    await vakt.crash();
    const banner = officer.getByRole('alert').filter({ hasText: 'LIVE CONNECTION LOST' });
    await banner.waitFor({ timeout: 5000 });
    await vakt.start();
    await officer.locator('#st-conn.conn-live').waitFor({ timeout: 20000 });
    await banner.waitFor({ state: 'detached' });
    await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'fall', lat: 59.3367, lon: 18.0615 });
    await officer.locator('#queue-body tr', { hasText: 'Fall' }).waitFor();
    await second.locator('#queue-body tr', { hasText: 'Fall' }).waitFor();
  });

  it('takes the README screenshot: a night-shift queue with a detail open', async () => {
    const cases = [];
    for (const spec of OTHERS) cases.push(await seedCase(vakt, 'coord', spec));
    const [sara, leila, eva] = cases;
    await vakt.alarm({ id: eva.deviceId, key: eva.key, kind: 'low_battery' });
    await vakt.alarm({ id: sara.deviceId, key: sara.key, kind: 'tamper', lat: 59.3172, lon: 18.0476 });
    await vakt.alarm({ id: leila.deviceId, key: leila.key, kind: 'panic', lat: 59.3141, lon: 18.0745, acc: 25 });
    // The fall from the previous test is being handled.
    const fall = officer.locator('#queue-body tr', { hasText: 'Fall' });
    await fall.focus();
    await officer.keyboard.press('Enter');
    await officer.locator('#d-title', { hasText: 'Fall' }).waitFor();
    await officer.keyboard.press('a');
    await fall.getByText('by officer1').waitFor();
    await waitFor(async () => (await officer.locator('#queue-body tr').count()) === 4, { what: 'four alerts in the queue' });

    const panic = officer.locator('#queue-body tr', { hasText: leila.kase.reference });
    await panic.click();
    await officer.locator('#detail').getByText('Peter Holm').first().waitFor();
    await officer.locator('#d-map svg').waitFor();
    // Let the ages tick and the confirmation line go, as on a real screen.
    await officer.locator('#flash-ok:empty').waitFor({ state: 'attached', timeout: 10000 });
    await officer.waitForTimeout(1000);
    const path = process.env.VAKT_SCREENSHOT || join(SHOT_DIR, 'console.png');
    await officer.screenshot({ path });
    console.log(`# screenshot: ${path}`);
  });

  it('fits a 1366×768 laptop and grows for a wall screen, never scrolling sideways', async () => {
    const layout = () => officer.evaluate(() => {
      const box = (id) => document.getElementById(id).getBoundingClientRect();
      return {
        overflow: document.documentElement.scrollWidth - window.innerWidth,
        rootFont: parseFloat(getComputedStyle(document.documentElement).fontSize),
        queue: box('queue-body'),
        detail: box('detail'),
        ack: document.querySelector('#detail button.btn-primary, #detail button')?.getBoundingClientRect(),
      };
    });
    for (const [width, height] of [[1366, 768], [1920, 1080], [3840, 2160]]) {
      await officer.setViewportSize({ width, height });
      await officer.waitForTimeout(300); // the map redraws at its new width
      const l = await layout();
      assert.ok(l.overflow <= 0, `${width}×${height}: ${l.overflow} px wider than the screen`);
      // Queue and detail side by side, both on screen from the top.
      assert.ok(l.queue.width > 0 && l.detail.width > 0, `${width}×${height}: queue and detail shown`);
      assert.ok(l.detail.left >= l.queue.right - 1, `${width}×${height}: the detail beside the queue`);
      assert.ok(l.queue.top < height && l.detail.top < height, `${width}×${height}: both start on screen`);
      if (width >= 3400) assert.ok(l.rootFont >= 32, `wall screen: text ${l.rootFont} px`);
      if (width === 1366) assert.ok(l.rootFont >= 14, `laptop: text ${l.rootFont} px`);
      await officer.screenshot({ path: join(SHOT_DIR, `console-${width}x${height}.png`) });
    }
    await officer.setViewportSize({ width: 1366, height: 768 });
  });

  it('reveals a protected identity only with a stated reason', async () => {
    const detail = officer.locator('#detail');
    await detail.getByText('Protected identity – details hidden.').waitFor();
    assert.equal(await detail.getByText('Leila Haddad').count(), 0);
    // The plan, the relatives and where the zones lie point to her too: hidden with her.
    await detail.getByText('Protected – state a reason to see the response plan.').waitFor();
    assert.equal(await detail.getByText('Send the nearest patrol at once').count(), 0);
    await detail.getByText('Protected – state a reason to see the relatives.').waitFor();
    await officer.locator('#d-map-legend').getByText('Zone “Home” is protected – state a reason to see it').waitFor();
    await detail.getByRole('button', { name: 'Reveal (state reason)' }).click();
    const reason = officer.getByLabel('Reason for viewing (logged)');
    await reason.fill('Panic alarm, calling her back');
    await reason.press('Enter');
    await detail.getByText('Leila Haddad').waitFor();
    await detail.getByText('Protected identity shown – this view is logged.').waitFor();
    await detail.getByText('Send the nearest patrol at once, blue lights.').waitFor();
    // Revealed, the address and the zone around it are on the map too.
    await officer.locator('#d-map .map-address').waitFor();
    assert.equal(await officer.locator('#d-map-legend').getByText('is protected').count(), 0);
  });

  it('shows the login in every tab of a session the moment it logs out in one', async () => {
    const first = await openPage(browser);
    await login(first, vakt.url, 'officer2', { vakt });
    await first.locator('#st-conn.conn-live').waitFor();
    const other = await first.context().newPage();
    await other.goto(vakt.url);
    await other.locator('#st-conn.conn-live').waitFor();
    await first.getByRole('button', { name: 'Log out' }).click();
    // The server ends the other tab's live stream with the session; no request of its own.
    await other.locator('#login-view').waitFor({ state: 'visible', timeout: 3000 });
    await other.getByText('You are logged out.').waitFor();
    await first.context().close();
  });

  it('had no script errors, CSP violations or missing translations', () => {
    assert.deepEqual([...officer.problems, ...second.problems], []);
  });
});

/** Each text appears somewhere in the row, in order of the columns. */
async function assertRowShows(row, texts) {
  const text = (await row.innerText()).replace(/\s+/g, ' ');
  let from = 0;
  for (const expected of texts) {
    const at = text.indexOf(expected, from);
    assert.ok(at >= 0, `row "${text}" should show "${expected}"`);
    from = at + expected.length;
  }
}

describe('duty-officer console: an alert not acknowledged in time', () => {
  let vakt;
  let browser;

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer' },
        { username: 'coord', role: 'coordinator' },
      ],
      toml: '[supervision]\noverdue_p1_s = 3\n',
    });
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('stands out as overdue and takes over the notice', async () => {
    const anna = await seedCase(vakt, 'coord', ANNA);
    const page = await openPage(browser);
    await login(page, vakt.url, 'officer1', { vakt });
    await page.locator('#st-conn.conn-live').waitFor();
    await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: ANNA.lat, lon: ANNA.lon });
    const notices = page.locator('#notices');
    await notices.getByText('NEW PRIORITY 1 ALERT').waitFor();
    await page.locator('#queue-body tr').click();

    await notices.getByText('OVERDUE – NOT ACKNOWLEDGED').waitFor({ timeout: 15000 });
    const row = page.locator('#queue-body tr.overdue', { hasText: ANNA.reference });
    await row.getByText('OVERDUE').waitFor();
    await page.locator('#d-overdue').getByText('OVERDUE: this alert has not been acknowledged in time.').waitFor();
    assert.equal(await notices.getByText('NEW PRIORITY 1 ALERT').count(), 0, 'the overdue notice replaced the first one');
    await page.screenshot({ path: join(SHOT_DIR, 'console-overdue.png') });

    await page.keyboard.press('a');
    await row.waitFor({ state: 'detached' });
    await notices.getByText('OVERDUE').waitFor({ state: 'detached' });
    assert.deepEqual(page.problems, []);
  });
});

describe('duty-officer console: street tiles beneath the situation map', () => {
  let vakt;
  let browser;
  let tiles;

  before(async () => {
    tiles = await startTileServer();
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer' },
        { username: 'coord', role: 'coordinator' },
      ],
      env: { VAKT_MAP_TILE_URL: tiles.template },
    });
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
    if (tiles) await tiles.close();
  });

  it('lays the configured tiles under the zones and the position, allowed by the page policy', async () => {
    const anna = await seedCase(vakt, 'coord', ANNA);
    const page = await openPage(browser);
    await login(page, vakt.url, 'officer1', { vakt });
    await page.locator('#st-conn.conn-live').waitFor();
    await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: ANNA.lat, lon: ANNA.lon });
    await page.locator('#queue-body tr').click();
    const map = page.locator('#d-map svg');
    await map.locator('.map-tiles image').first().waitFor({ state: 'attached' });
    await waitFor(() => tiles.requests.length > 0, { what: 'the browser to fetch tiles' });
    // Tiles first, geometry on top, all in one drawing.
    const order = await map.evaluate((svg) => [...svg.children].map((n) => n.getAttribute('class')));
    assert.ok(order.indexOf('map-tiles') < order.indexOf('map-zone zone-hit'), `tiles beneath zones: ${order}`);
    const loaded = await map.locator('.map-tiles image').first().evaluate((img) => img.getBBox().width > 0);
    assert.ok(loaded);
    await page.getByText(`Map: ${new URL(tiles.template.replace(/[{}]/g, '')).host}`).waitFor();
    await page.screenshot({ path: join(SHOT_DIR, 'console-tiles.png') });
    assert.deepEqual(page.problems, []);
  });
});

describe('duty-officer console: the keyboard acts only on the alert that is open', () => {
  let vakt;
  let browser;
  let page;
  let ids;          // row ids in queue order at the first load
  let refs;         // their case references
  const acks = [];  // alert ids of every acknowledge the page sent

  const row = (id) => page.locator(`#queue-body tr[data-id="${id}"]`);
  const focusedRowId = () => page.evaluate(() => document.activeElement?.closest?.('#queue-body > tr')?.dataset.id ?? null);
  const detailShows = (ref) => page.locator('#d-title', { hasText: ref }).waitFor();

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer' },
        { username: 'coord', role: 'coordinator' },
      ],
    });
    const [sara, , eva] = OTHERS;
    // All priority 1; sent lowest risk first, so risk and age disagree on the order.
    for (const spec of [eva, sara, ANNA]) {
      const kase = await seedCase(vakt, 'coord', spec);
      await vakt.alarm({ id: kase.deviceId, key: kase.key, kind: 'panic', lat: spec.lat, lon: spec.lon });
    }
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('puts a visible focus on the first alert after a mouse login, with its detail open', async () => {
    page = await openPage(browser);
    page.on('request', (req) => {
      const m = /^\/api\/alerts\/([^/]+)\/ack$/.exec(new URL(req.url()).pathname);
      if (m && req.method() === 'POST') acks.push(m[1]);
    });
    await login(page, vakt.url, 'officer1', { vakt }); // the form is sent with a mouse click
    await waitFor(async () => (await page.locator('#queue-body tr').count()) === 3, { what: 'three alerts in the queue' });
    ids = await page.locator('#queue-body tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    refs = await page.locator('#queue-body tr .case-ref').allInnerTexts();
    await waitFor(async () => (await focusedRowId()) === ids[0], { what: 'the first row to have focus' });
    const ring = await row(ids[0]).evaluate((tr) => getComputedStyle(tr).outlineStyle);
    assert.notEqual(ring, 'none', 'the focused row shows a focus ring');
    await detailShows(refs[0]);
    assert.equal(await row(ids[0]).getAttribute('aria-current'), 'true');
  });

  it('orders alerts of the same priority by case risk before age', () => {
    assert.deepEqual(refs, [ANNA.reference, OTHERS[0].reference, OTHERS[2].reference]);
  });

  it('moves the selection and the detail together with ↓, and A acknowledges the alert shown', async () => {
    await page.keyboard.press('ArrowDown');
    await detailShows(refs[1]);
    await page.keyboard.press('ArrowDown');
    await detailShows(refs[2]);
    assert.equal(await focusedRowId(), ids[2]);
    assert.equal(await row(ids[2]).getAttribute('aria-current'), 'true');
    await page.keyboard.press('a');
    await row(ids[2]).getByText('Acknowledged').waitFor();
    assert.deepEqual(acks, [ids[2]]);
    assert.equal(await focusedRowId(), ids[2], 'focus stays on the acknowledged alert');
    await page.keyboard.press('ArrowUp');
    await detailShows(refs[1]);
  });

  it('never acknowledges an alert that only has focus and was not opened', async () => {
    // As after a Tab: the first row has focus, the second alert is in the detail.
    await row(ids[0]).focus();
    await page.keyboard.press('a');
    await page.keyboard.press('A');
    await page.waitForTimeout(700);
    assert.deepEqual(acks, [ids[2]], 'no acknowledge was sent');
    await row(ids[0]).getByText('Open').waitFor();
    await row(ids[1]).getByText('Open').waitFor();
    await page.locator('#ack-form').waitFor(); // still offered for the alert shown
  });

  it('turns the shortcuts off, so A does nothing, and remembers that', async () => {
    await row(ids[1]).focus();
    await page.keyboard.press('Enter');
    await detailShows(refs[1]);
    const toggle = page.locator('#shortcuts-toggle');
    await toggle.click();
    await page.locator('#shortcuts-toggle[aria-pressed="false"]').waitFor();
    await row(ids[1]).focus();
    await page.keyboard.press('a');
    await page.keyboard.press('r');
    await page.waitForTimeout(700);
    assert.deepEqual(acks, [ids[2]], 'no acknowledge was sent');
    await row(ids[1]).getByText('Open').waitFor();
    assert.equal(await page.locator('#ack-btn').innerText(), 'Acknowledge');

    await page.reload();
    await page.locator('#shortcuts-toggle[aria-pressed="false"]').waitFor();
    await page.locator('#lang-select').selectOption('sv');
    await page.getByRole('button', { name: 'Kortkommandon av' }).waitFor();
    await page.locator('#lang-select').selectOption('en');
    await page.locator('#shortcuts-toggle').click();
    await page.locator('#shortcuts-toggle[aria-pressed="true"]').waitFor();
  });

  it('puts acknowledged alerts below open ones and keeps the focus through acknowledge and resolve', async () => {
    await row(ids[0]).click();
    await detailShows(refs[0]);
    await page.keyboard.press('a');
    await row(ids[0]).getByText('Acknowledged').waitFor();
    const order = () => page.locator('#queue-body tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    await waitFor(async () => JSON.stringify(await order()) === JSON.stringify([ids[1], ids[0], ids[2]]), { what: 'open before acknowledged, then risk' });
    assert.equal(await focusedRowId(), ids[0], 'focus moved with the row');

    await page.keyboard.press('r');
    await waitFor(() => page.locator('#resolve-outcome').evaluate((n) => n === document.activeElement), { what: 'the outcome to take focus' });
    await page.keyboard.press('ArrowDown');
    await page.locator('#resolve-btn').click();
    await row(ids[0]).waitFor({ state: 'detached' });
    await waitFor(async () => (await focusedRowId()) !== null, { what: 'focus back on a queue row after resolving' });
    assert.deepEqual(acks, [ids[2], ids[0]]);
    assert.deepEqual(page.problems, []);
  });
});

describe('duty-officer console: where the alarm is', () => {
  let vakt;
  let browser;
  let page;
  // 1.5 km due west of the registered address (a degree of longitude is 56.87 km here).
  const WEST = { lat: 59.3366, lon: 18.0612 - 1500 / 56870 };
  const NORA = {
    reference: 'SE-2026-0500', person: 'Nora Berg', phone: '+46 70 000 00 05',
    address: 'Drottninggatan 71, 111 36 Stockholm', lat: 59.3366, lon: 18.0612,
    region: 'Stockholm', risk: 'high', plan: 'Send a patrol.', restrained: 'Olle Ek',
    description: 'about 180 cm', deviceId: 'alarm-0500',
  };
  // An alarm at home with zones around it: many labels in a small space.
  const CROWDED = {
    reference: 'SE-2026-0501', person: 'Mira Sjö', phone: '+46 70 000 00 06',
    address: 'Hornsgatan 100, 117 26 Stockholm', lat: 59.3170, lon: 18.0480,
    region: 'Stockholm', risk: 'medium', plan: 'Call first.', restrained: 'Pelle Ås',
    description: 'about 170 cm', deviceId: 'alarm-0501',
    extraZones: [{
      name: 'School',
      geometry: { type: 'Polygon', coordinates: [[[18.0485, 59.3172], [18.0500, 59.3172], [18.0500, 59.3180], [18.0485, 59.3180], [18.0485, 59.3172]]] },
    }],
  };

  let geocoder;

  before(async () => {
    geocoder = await startGeocoder();
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer', region: 'Stockholm' },
        { username: 'coord', role: 'coordinator', region: 'Stockholm' },
      ],
      env: { VAKT_GEOCODER_URL: geocoder.url },
    });
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
    if (geocoder) await geocoder.close();
  });

  it('names the place and "1.5 km W of home" in the row and the detail header, with the zone status', async () => {
    const nora = await seedCase(vakt, 'coord', NORA);
    page = await openPage(browser);
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: vakt.url });
    await login(page, vakt.url, 'officer1', { vakt });
    await page.locator('#st-conn.conn-live').waitFor();
    await vakt.alarm({ id: nora.deviceId, key: nora.key, kind: 'panic', lat: WEST.lat, lon: WEST.lon, acc: 20 });

    const row = page.locator('#queue-body tr', { hasText: NORA.reference });
    await row.waitFor();
    await row.locator('.place-way', { hasText: '1.5 km W of home' }).waitFor();
    const place = (await row.locator('.place-name').innerText()).trim();
    assert.ok(place.length > 0 && place !== '–', `a place is named: "${place}"`);
    assert.match(await row.locator('.place-name').getAttribute('title'), /Stockholm/);
    // 1.2 km from the Home zone's edge: outside, and not near.
    assert.equal(await row.locator('.zone-tag').innerText(), '1.2 km from Home');

    await row.click();
    const where = page.locator('#d-where-line');
    await where.waitFor();
    const line = await where.innerText();
    assert.ok(line.startsWith(place), `the header names ${place}: "${line}"`);
    assert.match(line, /Stockholm — 1\.5 km W of home$/);
    // The street address comes from the geocoder once the detail shows.
    await page.locator('#d-street', { hasText: 'Street address: Fleminggatan 12, 112 26 Stockholm' }).waitFor();
    assert.ok(geocoder.asked.some((q) => q.includes(`lat=${WEST.lat.toFixed(6)}`)), `asked: ${geocoder.asked}`);
    // Near the top of the detail: above the actions.
    const whereBox = await page.locator('#d-where').boundingBox();
    const actions = await page.locator('#d-actions').boundingBox();
    assert.ok(whereBox.y < actions.y, 'the location is above the actions');

    // In Swedish the same facts read as Swedish words.
    await page.locator('#lang-select').selectOption('sv');
    await page.locator('#d-where-line', { hasText: '1,5 km V om hemmet' }).waitFor();
    await row.locator('.place-way', { hasText: '1,5 km V om hemmet' }).waitFor();
    await page.locator('#lang-select').selectOption('en');
    await page.locator('#d-where-line', { hasText: '1.5 km W of home' }).waitFor();
  });

  it('copies the WGS84 and SWEREF 99 TM coordinates with their copy buttons', async () => {
    const id = await page.locator('#queue-body tr', { hasText: NORA.reference }).getAttribute('data-id');
    const detail = await page.evaluate(async (alertId) => (await fetch(`/api/alerts/${alertId}`)).json(), id);
    const { n, e } = detail.location.sweref99tm;
    // PROJ (EPSG:4326 → EPSG:3006) gives N 6581467.3, E 672614.2 for this point.
    assert.ok(Math.abs(n - 6581467) <= 1 && Math.abs(e - 672614) <= 1, `SWEREF 99 TM ${n}, ${e}`);

    await page.locator('#coord-wgs84 button').click();
    await page.locator('#coord-wgs84 button', { hasText: 'Copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${WEST.lat.toFixed(5)}, ${WEST.lon.toFixed(5)}`);
    await page.locator('#coord-sweref button').click();
    await page.locator('#coord-sweref button', { hasText: 'Copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${n}, ${e}`);
    assert.equal(await page.locator('#coord-sweref .coord-value').innerText(), 'N 6\u202f581\u202f467 · E 672\u202f614');
  });

  it('fits every queue column at 1366×768 and keeps map labels apart', async () => {
    const crowded = await seedCase(vakt, 'coord', CROWDED);
    await vakt.alarm({ id: crowded.deviceId, key: crowded.key, kind: 'panic', lat: 59.31705, lon: 18.04812, acc: 15 });
    const row = page.locator('#queue-body tr', { hasText: CROWDED.reference });
    await row.waitFor();
    await row.locator('.zone-tag', { hasText: 'In zone Home' }).waitFor();
    await page.setViewportSize({ width: 1366, height: 768 });
    await row.click();
    await page.locator('#d-map svg .map-address').waitFor();
    await page.waitForTimeout(300);
    const fit = await page.evaluate(() => {
      const panel = document.getElementById('queue-panel');
      const table = document.getElementById('queue-table');
      const cells = [...document.querySelectorAll('#queue-table th, #queue-body td')];
      return {
        panel: [panel.scrollWidth, panel.clientWidth],
        table: [table.scrollWidth, table.clientWidth],
        cut: cells.filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.textContent),
      };
    });
    assert.ok(fit.panel[0] <= fit.panel[1], `queue panel ${fit.panel[0]} > ${fit.panel[1]} px`);
    assert.ok(fit.table[0] <= fit.table[1], `queue table ${fit.table[0]} > ${fit.table[1]} px`);
    assert.deepEqual(fit.cut, [], 'no cell is cut');
    await page.screenshot({ path: join(SHOT_DIR, 'console-where-1366x768.png') });

    const boxes = await page.locator('#d-map svg text.map-label').evaluateAll((nodes) => nodes
      .filter((n) => n.getAttribute('visibility') !== 'hidden')
      .map((n) => { const r = n.getBoundingClientRect(); return { text: n.textContent, x: r.x, y: r.y, w: r.width, h: r.height }; }));
    assert.ok(boxes.length >= 4, `labels drawn: ${boxes.map((b) => b.text)}`);
    for (let i = 0; i < boxes.length; i += 1) {
      for (let j = i + 1; j < boxes.length; j += 1) {
        const a = boxes[i];
        const b = boxes[j];
        const overlap = a.x < b.x + b.w - 0.5 && b.x < a.x + a.w - 0.5 && a.y < b.y + b.h - 0.5 && b.y < a.y + a.h - 0.5;
        assert.ok(!overlap, `"${a.text}" and "${b.text}" overlap`);
      }
    }
    assert.deepEqual(page.problems, []);
  });
});

/** Counts the tones the page starts, and the state of their audio, before any script runs. */
function countTones() {
  window.tonesStarted = 0;
  window.toneAudioState = null;
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function countedStart(...args) {
    window.tonesStarted += 1;
    window.toneAudioState = this.context.state;
    return start.apply(this, args);
  };
}

const tones = (page) => page.evaluate(() => ({ n: window.tonesStarted, state: window.toneAudioState }));

describe('duty-officer console: a session that reaches its limit', () => {
  const ABSOLUTE_S = 30;
  let vakt;
  let browser;
  let page;
  let anna;
  let sara;
  let coordPage;
  let renewedAt;
  const streams = [];

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer' },
        { username: 'coord', role: 'coordinator' },
      ],
      toml: `session_absolute_s = ${ABSOLUTE_S}\n`,
    });
    anna = await seedCase(vakt, 'coord', ANNA);
    sara = await seedCase(vakt, 'coord', OTHERS[0]);
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('warns before the session ends, and logging in again keeps the queue, the detail and the stream', async () => {
    page = await openPage(browser);
    await page.addInitScript(countTones);
    page.on('request', (req) => { if (req.url().includes('/api/alerts/stream')) streams.push(req.url()); });
    coordPage = await openPage(browser);
    await login(coordPage, vakt.url, 'coord', { vakt });
    const loggedInAt = Date.now();
    await login(page, vakt.url, 'officer1', { vakt });
    assert.equal(await page.locator('#reauth-totp').isVisible(), false, 'an officer without a code is not asked for one');
    await page.locator('#st-conn.conn-live').waitFor();
    // Live, so the page knows the id of the last event it was sent.
    await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: ANNA.lat, lon: ANNA.lon });
    await page.locator('#queue-body tr', { hasText: ANNA.reference }).click();
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    await page.evaluate(() => { window.noReloadMarker = true; });

    const panel = page.locator('#session-panel');
    assert.equal(await panel.isVisible(), false, 'no warning at the start of a session');
    await panel.getByText('Your session ends at').waitFor({ timeout: ABSOLUTE_S * 1000 });
    const warnedAfter = Date.now() - loggedInAt;
    assert.ok(warnedAfter < ABSOLUTE_S * 1000 - 3000, `warned ${warnedAfter} ms after login, before the end`);
    await panel.getByText(/^In \d+ s\.$/).waitFor();

    // A coordinator, logged in about as long, is asked for a one-time code as well.
    const coordPanel = coordPage.locator('#session-panel');
    await coordPanel.getByText('Your session ends at').waitFor({ timeout: 10000 });
    await coordPanel.getByLabel('Password').fill(PASSWORD);
    await coordPanel.getByLabel('One-time code').fill(await vakt.totp('coord'));
    await coordPanel.getByRole('button', { name: 'Log in again' }).click();
    await coordPanel.waitFor({ state: 'hidden' });
    await coordPage.locator('#st-conn.conn-live').waitFor();

    const streamsBefore = streams.length;
    await panel.getByLabel('Password').fill(PASSWORD);
    await panel.getByRole('button', { name: 'Log in again' }).click();
    renewedAt = Date.now();
    await panel.waitFor({ state: 'hidden' });
    await page.getByText('Logged in again – watching goes on.').waitFor();
    await waitFor(() => streams.length > streamsBefore, { what: 'a stream on the new session' });
    assert.match(streams.at(-1), /[?&]last_event_id=\d+/, 'the new stream catches up from the last event');
    await page.locator('#st-conn.conn-live').waitFor();
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    assert.equal(await page.locator('#queue-body tr').count(), 1);
    assert.equal(await page.evaluate(() => window.noReloadMarker), true, 'the page was not reloaded');

    // Past the first session's absolute end, the stream goes on with the new one.
    await page.waitForTimeout(Math.max(0, loggedInAt + (ABSOLUTE_S + 2) * 1000 - Date.now()));
    await vakt.alarm({ id: sara.deviceId, key: sara.key, kind: 'panic', lat: OTHERS[0].lat, lon: OTHERS[0].lon });
    await page.locator('#queue-body tr', { hasText: OTHERS[0].reference }).waitFor({ timeout: 5000 });
    assert.equal(await page.locator('#watch-lost').isVisible(), false);
    assert.equal(await page.locator('#st-conn.conn-live').count(), 1);
    assert.deepEqual(coordPage.problems, []);
  });

  it('shows NOT RECEIVING ALARMS with a sound when the session ends, and logging in again there keeps the page', async () => {
    const lost = page.locator('#watch-lost');
    await lost.getByText('NOT RECEIVING ALARMS').waitFor({ timeout: Math.max(5000, renewedAt + (ABSOLUTE_S + 5) * 1000 - Date.now()) });
    await lost.getByText(/The session ended at/).waitFor();
    const panel = page.locator('#session-panel');
    await panel.getByText('Your session has ended.').waitFor();
    // The last known queue stays, marked stale; the detail stays open.
    assert.equal(await page.locator('#queue-body tr').count(), 2);
    await page.locator('#console-view.stale').waitFor();
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    assert.equal(await page.locator('#login-view').isVisible(), false, 'not thrown out to the login page');
    // It sounds, and again a few seconds later.
    await waitFor(async () => (await tones(page)).n > 0, { what: 'a tone' });
    const first = await tones(page);
    assert.equal(first.state, 'running', 'the login click let the audio play');
    await waitFor(async () => (await tones(page)).n > first.n, { timeoutMs: 8000, what: 'the sound to repeat' });
    await page.screenshot({ path: join(SHOT_DIR, 'console-session-lost.png') });

    await page.locator('#reauth-password').fill(PASSWORD); // focus was put there
    await page.keyboard.press('Enter');
    await lost.waitFor({ state: 'hidden' });
    await page.locator('#st-conn.conn-live').waitFor();
    assert.equal(await page.locator('#queue-body tr').count(), 2);
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    assert.equal(await page.locator('#console-view.stale').count(), 0);
    assert.equal(await page.evaluate(() => window.noReloadMarker), true, 'the page was not reloaded');
    const after = (await tones(page)).n;
    await page.waitForTimeout(4500);
    assert.equal((await tones(page)).n, after, 'the sound stopped');
    assert.deepEqual(page.problems, []);
  });
});

describe('duty-officer console: never silently deaf, one attention bar', () => {
  let vakt;
  let browser;
  let page;
  const sent = []; // case references in the order their alarms were sent

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer' },
        { username: 'coord', role: 'coordinator' },
      ],
    });
    browser = await launch();
  });

  after(async () => {
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('shows the stream, its last event and the server readiness in the status strip', async () => {
    page = await openPage(browser);
    await page.addInitScript(countTones);
    await login(page, vakt.url, 'officer1', { vakt });
    await page.locator('#st-conn.conn-live').waitFor();
    await page.locator('#st-ready', { hasText: 'Server ready' }).waitFor();
    await page.locator('#st-heard', { hasText: /Last event \d+ s ago/ }).waitFor();
    await page.locator('#attention', { hasText: 'No priority-1 or overdue alert waiting.' }).waitFor();
  });

  it('shows NOT RECEIVING ALARMS with a repeating sound when the server goes, and clears when it is back', async () => {
    await vakt.crash();
    const lost = page.locator('#watch-lost');
    await lost.getByText('NOT RECEIVING ALARMS').waitFor({ timeout: 5000 });
    await page.locator('#console-view.stale').waitFor();
    await waitFor(async () => (await tones(page)).n > 0, { what: 'a tone' });
    const first = await tones(page);
    assert.equal(first.state, 'running');
    await waitFor(async () => (await tones(page)).n > first.n, { timeoutMs: 8000, what: 'the sound to repeat' });
    await page.locator('#st-ready', { hasText: 'Server unreachable' }).waitFor({ timeout: 15000 });
    await lost.getByText(/The server has been unreachable since/).waitFor();

    await vakt.start();
    await lost.waitFor({ state: 'hidden', timeout: 20000 });
    await page.locator('#st-conn.conn-live').waitFor();
    assert.equal(await page.locator('#console-view.stale').count(), 0);
    const after = (await tones(page)).n;
    await page.waitForTimeout(4500);
    assert.equal((await tones(page)).n, after, 'the sound stopped');
    await page.locator('#st-ready', { hasText: 'Server ready' }).waitFor({ timeout: 15000 });
  });

  it('says the sound is blocked until a click after a reload that logged in by itself', async () => {
    await page.reload();
    await page.locator('#st-conn.conn-live').waitFor();
    await vakt.crash();
    const hint = page.locator('#watch-lost-sound');
    await page.locator('#watch-lost').getByText('NOT RECEIVING ALARMS').waitFor({ timeout: 5000 });
    await hint.getByText('The browser is blocking sound').waitFor();
    await page.mouse.click(5, 400); // anywhere: the layer lets the pointer through
    await hint.waitFor({ state: 'hidden', timeout: 5000 });
    await waitFor(async () => (await tones(page)).state === 'running', { timeoutMs: 8000, what: 'a tone that plays' });
    await vakt.start();
    await page.locator('#watch-lost').waitFor({ state: 'hidden', timeout: 20000 });
    await page.locator('#st-conn.conn-live').waitFor();
  });

  it('gathers six priority-1 alerts in one bar of unchanged height, and the detail does not move', async () => {
    const specs = [ANNA, ...OTHERS,
      { ...OTHERS[0], reference: 'SE-2026-0501', person: 'Maria Berg', deviceId: 'alarm-0501' },
      { ...OTHERS[2], reference: 'SE-2026-0502', person: 'Nora Lind', deviceId: 'alarm-0502' }];
    const cases = [];
    for (const spec of specs) cases.push({ spec, kase: await seedCase(vakt, 'coord', spec) });
    const bar = page.locator('#attention');
    const boxes = () => page.evaluate(() => ({
      bar: document.getElementById('attention').getBoundingClientRect().toJSON(),
      detail: document.getElementById('detail-panel').getBoundingClientRect().toJSON(),
      title: document.getElementById('d-title').getBoundingClientRect().toJSON(),
      scroll: document.scrollingElement.scrollTop,
    }));
    const empty = await boxes();

    const [one, ...rest] = cases;
    await vakt.alarm({ id: one.kase.deviceId, key: one.kase.key, kind: 'panic', lat: one.spec.lat, lon: one.spec.lon });
    sent.push(one.spec.reference);
    await page.locator('#queue-body tr').first().click();
    await page.locator('#d-title', { hasText: one.spec.reference }).waitFor();
    await bar.getByText('1 priority-1 unacknowledged, oldest').waitFor();
    const withOne = await boxes();
    for (const { spec, kase } of rest) {
      await vakt.alarm({ id: kase.deviceId, key: kase.key, kind: 'panic', lat: spec.lat, lon: spec.lon });
      sent.push(spec.reference);
    }
    await bar.getByText('6 priority-1 unacknowledged, oldest').waitFor();
    await waitFor(async () => (await page.locator('#queue-body tr').count()) === 6, { what: 'six alerts in the queue' });
    const withSix = await boxes();
    assert.equal(await page.locator('#notices .notice').count(), 1, 'one notice line, not a banner per alert');
    assert.equal(withSix.bar.height, empty.bar.height, 'the bar is as high with six alerts as with none');
    assert.equal(withOne.bar.height, empty.bar.height);
    assert.equal(withSix.detail.top, empty.detail.top, 'the detail panel did not move');
    assert.equal(withSix.title.top, withOne.title.top, 'the open detail did not move');
    assert.equal(withSix.scroll, withOne.scroll);
    await page.screenshot({ path: join(SHOT_DIR, 'console-attention.png') });
  });

  it('opens with Open next the priority-1 alert of the highest case risk, then the next by risk', async () => {
    const last = page.locator('#queue-body tr', { hasText: sent.at(-1) });
    await last.click();
    await page.locator('#d-title', { hasText: sent.at(-1) }).waitFor();
    // Leila's case is of critical risk, though her alarm came third.
    const critical = OTHERS[1].reference;
    assert.equal(OTHERS[1].risk, 'critical');
    await page.getByRole('button', { name: 'Open next' }).click();
    await page.locator('#d-title', { hasText: critical }).waitFor();
    const current = page.locator('#queue-body tr[aria-current="true"]');
    await current.getByText(critical).waitFor();
    // Acknowledged, it no longer waits: Open next goes on to Anna's, of high risk.
    await page.keyboard.press('a');
    await current.getByText('Acknowledged').waitFor();
    await page.locator('#attention').getByText('5 priority-1 unacknowledged').waitFor();
    await page.getByRole('button', { name: 'Open next' }).click();
    await page.locator('#d-title', { hasText: ANNA.reference }).waitFor();
    await page.locator('#lang-select').selectOption('sv');
    await page.getByRole('button', { name: 'Öppna nästa' }).waitFor();
    await page.locator('#attention').getByText('5 prio 1 ej kvitterade').waitFor();
    await page.locator('#lang-select').selectOption('en');
    assert.deepEqual(page.problems, []);
  });
});
