// The duty-officer console in a real Firefox (Debian's firefox-esr, over
// WebDriver BiDi with puppeteer-core) against a real vakt, with a panic from
// the real firmware simulator over MQTT: the same path as console.test.mjs
// takes in Chromium, kept to what an officer does first on a shift.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startVakt, seedCase, waitFor } from './lib/vakt.mjs';
import { ANNA } from './lib/cases.mjs';
import { launchFirefox, openFirefoxPage, loginFirefox, textOf, waitForText, SHOT_DIR } from './lib/firefox.mjs';

// The suite's only alert: Anna's panic.
const ROW = '#queue-body tr';

describe('duty-officer console in Firefox', () => {
  let vakt;
  let browser;
  let page;
  let anna;

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'officer1', role: 'officer', region: 'Stockholm' },
        { username: 'coord', role: 'coordinator', region: 'Stockholm' },
      ],
    });
    anna = await seedCase(vakt, 'coord', ANNA);
    browser = await launchFirefox();
  });

  after(async () => {
    if (page?.consoleLog.length) console.log(`# Firefox console:\n#   ${page.consoleLog.join('\n#   ')}`);
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  it('is Firefox, and logs the officer in to an empty, live queue', async () => {
    assert.match(await browser.version(), /^firefox\//i, 'puppeteer drives Firefox');
    page = await openFirefoxPage(browser);
    assert.match(await page.evaluate(() => navigator.userAgent), /Gecko\/\d+ Firefox\/\d+/);
    await loginFirefox(page, vakt.url, 'officer1', { vakt });
    await waitForText(page, '#queue-heading', 'Alert queue');
    await waitForText(page, '#queue-empty', 'No open alerts.');
    await page.waitForSelector('#st-conn.conn-live');
    await waitForText(page, '#st-user', 'officer1');
    // Sound needs one click in a browser; Firefox's audio must take it too.
    await page.locator('#sound-enable').click();
    await page.waitForSelector('#sound-toggle[aria-pressed="true"]');
    await page.waitForSelector('#sound-prompt', { hidden: true });
    assert.equal(await page.evaluate(() => typeof (window.AudioContext || window.webkitAudioContext)), 'function');
  });

  it('shows a panic from a real MQTT device without a reload in under a second, with a priority-1 notice', async () => {
    // Marks the document, and records when the first row appears in it.
    await page.evaluate(() => {
      window.noReloadMarker = true;
      window.rowSeenAt = null;
      const body = document.getElementById('queue-body');
      new MutationObserver(() => {
        if (window.rowSeenAt === null && body.querySelector('tr')) window.rowSeenAt = Date.now();
      }).observe(body, { childList: true });
    });

    const { sentAt } = await vakt.alarm({ id: anna.deviceId, key: anna.key, kind: 'panic', lat: 59.3367, lon: 18.0615, acc: 12 });
    assert.ok(sentAt, 'firmware-sim reported the publish');
    await page.waitForSelector('#queue-body tr');
    const seenAt = await page.evaluate(() => window.rowSeenAt);
    const latency = seenAt - sentAt;
    console.log(`# live arrival in Firefox: published → row visible in ${latency} ms`);
    assert.ok(latency < 1000, `the alert took ${latency} ms to appear`);
    assert.equal(await page.evaluate(() => window.noReloadMarker), true, 'the page was not reloaded');

    const row = (await textOf(page, '#queue-body tr')).replace(/\s+/g, ' ');
    assertInOrder(row, ['1', 'Panic', ANNA.reference, 'High', 'Stockholm', 'Open']);
    // Where it is, offline: the nearest place, the way from home and the zone it is in.
    assert.equal(await textOf(page, '#queue-body tr .place-name'), 'Stockholm');
    assert.equal(await textOf(page, '#queue-body tr .place-way'), 'at home');
    assert.equal(await textOf(page, '#queue-body tr .zone-tag'), 'In zone Home');

    // The notice is visible with its buttons; the alert alone is read out from
    // the assertive live region (role="alert").
    const notice = await waitForText(page, '#notices', 'NEW PRIORITY 1 ALERT');
    assert.match(notice, new RegExp(ANNA.reference));
    let heard = '';
    await waitFor(async () => {
      heard = await page.$eval('[role="alert"]#announcer', (n) => n.textContent);
      return heard.includes('New priority 1 alert');
    }, { what: 'the alert read out' });
    assert.match(heard, new RegExp(ANNA.reference));
    assert.doesNotMatch(heard, /Open|Hide notice/);
    assert.match(await page.title(), /PRIORITY 1/);
  });

  it('opens the detail from the notice, naming the restrained person, with the map of zones and position', async () => {
    await page.locator('#notices .notice-new_p1 ::-p-text(Open)').click();
    await waitForText(page, '#d-title', `Panic – case ${ANNA.reference}`);
    for (const text of [ANNA.plan, ANNA.person, ANNA.phone, 'Karin Lindqvist', ANNA.restrained, ANNA.description, ANNA.vehicle]) {
      await waitForText(page, '#detail', text);
    }
    const map = await page.waitForSelector('#d-map svg[role="img"]', { visible: true });
    const drawn = await map.evaluate((svg) => {
      const box = svg.getBoundingClientRect();
      return {
        width: box.width,
        height: box.height,
        zones: svg.querySelectorAll('.zone-shape').length,
        hit: svg.querySelectorAll('.zone-hit').length,
        dot: svg.querySelectorAll('.map-position .dot').length,
        acc: svg.querySelectorAll('.map-position .acc').length,
        address: svg.querySelectorAll('.map-address').length,
        scale: svg.querySelectorAll('.map-scale').length,
      };
    });
    assert.ok(drawn.width > 100 && drawn.height > 100, `the map has a size: ${JSON.stringify(drawn)}`);
    assert.deepEqual(
      { zones: drawn.zones, hit: drawn.hit, dot: drawn.dot, acc: drawn.acc, address: drawn.address, scale: drawn.scale },
      { zones: 2, hit: 1, dot: 1, acc: 1, address: 1, scale: 1 },
      'both zones, the hit one standing out, the position with its accuracy circle, the address and a scale bar',
    );
    const legend = await textOf(page, '#d-map-legend');
    assert.match(legend, /Exclusion zone “Home” \(radius 300 m\) – THE ALARM IS INSIDE/);
    assert.match(legend, /Exclusion zone “Workplace” – [\d.,]+ m outside/);
    await waitForText(page, '#detail', /Device was told\s+Received/);
    // The place and both coordinate systems at the top of the detail.
    assert.equal(await waitForText(page, '#d-where-line', 'Stockholm'), 'Stockholm — at home');
    assert.match(await textOf(page, '#coord-wgs84'), /59\.33670, 18\.06150\s+Copy/);
    assert.match(await textOf(page, '#coord-sweref'), /N 6\u202f581\u202f548 · E 674\u202f130/);
    await page.screenshot({ path: join(SHOT_DIR, 'console-firefox.png') });
  });

  it('acknowledges with the button, and the state survives a reload', async () => {
    await page.locator('#ack-btn').click();
    await waitForText(page, ROW, ANNA.reference);
    await waitForText(page, ROW, 'Acknowledged');
    await waitForText(page, ROW, 'by officer1');
    await waitFor(async () => !(await textOf(page, '#notices')).includes('NEW PRIORITY 1 ALERT'), { what: 'the priority-1 notice to go' });
    await waitForText(page, '#detail', /Device was told\s+Accepted/);

    await page.reload();
    await page.waitForSelector('#st-conn.conn-live');
    await waitForText(page, ROW, 'Acknowledged');
    await waitForText(page, ROW, 'by officer1');
    assert.equal(await page.evaluate(() => window.noReloadMarker), undefined, 'the page really was reloaded');
  });

  it('switches to Swedish and back, and remembers the choice over a reload', async () => {
    await page.select('#lang-select', 'sv');
    await waitForText(page, '#queue-heading', 'Larmkö');
    await waitForText(page, ROW, 'Kvitterat');
    await waitForText(page, ROW, 'Överfallslarm');
    await waitForText(page, '#logout-btn', 'Logga ut');
    assert.equal(await page.$eval('html', (n) => n.lang), 'sv');
    await page.reload();
    await waitForText(page, '#queue-heading', 'Larmkö');
    await waitForText(page, ROW, 'Kvitterat');
    await page.select('#lang-select', 'en');
    await waitForText(page, '#queue-heading', 'Alert queue');
    await waitForText(page, '#logout-btn', 'Log out');
    assert.equal(await page.$eval('html', (n) => n.lang), 'en');
  });

  it('had no script errors, CSP violations or missing translations', () => {
    assert.deepEqual(page.problems, []);
  });
});

/** Each text appears somewhere in `text`, in this order. */
function assertInOrder(text, expected) {
  let from = 0;
  for (const part of expected) {
    const at = text.indexOf(part, from);
    assert.ok(at >= 0, `"${text}" should show "${part}"`);
    from = at + part.length;
  }
}
