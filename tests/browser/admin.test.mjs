// The coordinators' pages in a real Chromium: a coordinator registers a
// person, a case, an order with a zone drawn on the map and a device, all
// through the pages; then an alarm from that device reaches a duty officer
// with what the coordinator entered.

import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startVakt, totpCode, waitFor } from './lib/vakt.mjs';
import { launch, openPage, login, SHOT_DIR } from './lib/browser.mjs';

const ADDRESS = { text: 'Sveavägen 44, 111 34 Stockholm', lat: 59.3389, lon: 18.0605 };
const REF = 'SE-2026-7001';
const DEVICE = 'alarm-7001';

describe("coordinators' pages", () => {
  let vakt;
  let browser;
  let page;
  let key;
  let caseId;

  before(async () => {
    vakt = await startVakt({
      users: [
        { username: 'coord', role: 'coordinator', region: 'Stockholm' },
        { username: 'officer', role: 'officer', region: 'Stockholm' },
        { username: 'boss', role: 'admin' },
        { username: 'investigator', role: 'investigator', region: 'Stockholm' },
      ],
    });
    browser = await launch();
    page = await openPage(browser, { viewport: { width: 1366, height: 900 } });
  });

  after(async () => {
    if (page) await writeFile(join(SHOT_DIR, 'admin-requests.log'), page.requestLog.join('\n'));
    if (browser) await browser.close();
    if (vakt) await vakt.cleanup();
  });

  // The page after every step, to look at when something fails.
  let step = 0;
  afterEach(async () => {
    step += 1;
    await page.screenshot({ path: join(SHOT_DIR, `admin-${String(step).padStart(2, '0')}.png`), fullPage: true }).catch(() => {});
  });

  it('logs a coordinator in to the cases page, without the admins-only users tab', async () => {
    await login(page, `${vakt.url}/admin`, 'coord', { vakt });
    await page.getByRole('heading', { name: 'Cases', level: 1 }).waitFor();
    await page.getByRole('link', { name: 'Persons' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Users' }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'Regions' }).count(), 0);
  });

  it('registers persons, one with a protected identity, checking the form in the page first', async () => {
    await page.getByRole('link', { name: 'Persons' }).click();
    await page.getByRole('heading', { name: 'New person' }).waitFor();
    const personForm = page.locator('#person-form');
    await personForm.getByRole('button', { name: 'Register person' }).click();
    const name = personForm.getByLabel('Name', { exact: true });
    await page.getByText('This field is required.').waitFor();
    assert.equal(await name.getAttribute('aria-invalid'), 'true');

    await name.fill('Anna Svensson');
    await personForm.getByLabel('Phone').fill('+46 70 111 22 33');
    await personForm.getByLabel('Address').fill(ADDRESS.text);
    await personForm.getByLabel('Latitude').fill('59,3389'); // a Swedish decimal comma is fine
    await personForm.getByLabel('Longitude').fill(String(ADDRESS.lon));
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await page.getByText('Anna Svensson is registered.').waitFor();
    await page.locator('#persons-body tr', { hasText: 'Anna Svensson' }).waitFor();

    await personForm.getByLabel('Name', { exact: true }).fill('Leila Haddad');
    await personForm.getByLabel('Protected identity').check();
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await page.getByText('Leila Haddad is registered.').waitFor();
    // In lists a protected identity stays hidden.
    await page.locator('#persons-body tr', { hasText: 'Protected identity' }).waitFor();
    assert.equal(await page.locator('#persons-body').getByText('Leila Haddad').count(), 0);
  });

  it('refuses a home position outside Sweden and reads one typed in the other order', async () => {
    const personForm = page.locator('#person-form');
    await personForm.getByLabel('Name', { exact: true }).fill('Per Holm');
    await personForm.getByLabel('Address').fill('Storgatan 1, 903 26 Umeå');
    await personForm.getByLabel('Latitude').fill('63.8258');
    await personForm.getByLabel('Longitude').fill('2.2630'); // a lost digit: the North Sea
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await personForm.getByText('The position lies outside Sweden. Are latitude and longitude swapped?').waitFor();
    assert.equal((await vakt.api('coord', 'GET', '/api/persons')).filter((p) => p.name === 'Per Holm').length, 0);

    await personForm.getByLabel('Latitude').fill('20.2630');
    await personForm.getByLabel('Longitude').fill('63.8258');
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await page.getByText('Per Holm is registered.').waitFor();
    const [per] = (await vakt.api('coord', 'GET', '/api/persons')).filter((p) => p.name === 'Per Holm');
    assert.deepEqual([per.address.lat, per.address.lon], [63.8258, 20.263]);
    assert.equal(await page.locator('#pf-place-check').isVisible(), false, 'an Umeå address in Umeå raises no doubt');
  });

  it('asks before registering a home position in another town than the address names', async () => {
    const personForm = page.locator('#person-form');
    await personForm.getByLabel('Name', { exact: true }).fill('Lars Ek');
    await personForm.getByLabel('Address').fill('Drottninggatan 71, 111 36 Stockholm');
    await personForm.getByLabel('Latitude').fill('63.8258'); // Umeå
    await personForm.getByLabel('Longitude').fill('20.2630');
    await personForm.getByRole('button', { name: 'Register person' }).click();
    const warning = personForm.locator('#pf-place-check');
    await warning.getByText(/^The position lies [\d.]+ (m|km) from Umea, Umea kommun, but the address names neither/).waitFor();
    assert.equal((await vakt.api('coord', 'GET', '/api/persons')).filter((p) => p.name === 'Lars Ek').length, 0, 'nothing saved yet');
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await page.waitForTimeout(300);
    assert.equal((await vakt.api('coord', 'GET', '/api/persons')).filter((p) => p.name === 'Lars Ek').length, 0, 'not without the confirmation');
    await warning.getByLabel('The position is right').check();
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await page.getByText('Lars Ek is registered.').waitFor();
    assert.equal(await warning.isVisible(), false);
  });

  it('creates a case with risk, response plan and a relative', async () => {
    await page.getByRole('link', { name: 'Cases' }).click();
    const caseForm = page.locator('#case-form');
    await caseForm.getByLabel('Reference').fill(REF);
    await caseForm.getByLabel('Protected person').selectOption({ label: 'Anna Svensson' });
    await caseForm.getByLabel('Risk level').selectOption('high');
    // A regional coordinator chooses between the person's region and their own only.
    const regionChoices = await caseForm.getByLabel('Region').locator('option').allInnerTexts();
    assert.deepEqual(regionChoices, ['Same as person', 'Stockholm']);
    assert.equal(await caseForm.getByLabel('Region').inputValue(), '');
    await caseForm.getByLabel('Response plan').fill('Send a patrol at once. Call Anna; if no answer, call her brother.');
    await caseForm.getByRole('button', { name: 'Add relative' }).click();
    const relative = page.locator('#case-relatives .relative-row').first();
    await relative.getByLabel('Name').fill('Erik Svensson');
    await relative.getByLabel('Relation').fill('brother');
    await relative.getByLabel('Phone').fill('+46 70 999 88 77');
    await caseForm.getByRole('button', { name: 'Create case' }).click();
    await page.getByRole('heading', { name: `Case ${REF}` }).waitFor();
    caseId = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
    const kase = await vakt.api('coord', 'GET', `/api/cases/${caseId}`);
    assert.equal(kase.risk, 'high');
    assert.equal(kase.region, 'Stockholm', "the case took its person's region");
    assert.deepEqual(kase.relatives, [{ name: 'Erik Svensson', relation: 'brother', phone: '+46 70 999 88 77' }]);
  });

  it('records a structured risk assessment that sets the case risk and heads its history', async () => {
    const form = page.locator('#assessment-form');
    await page.locator('#c-assessments-empty').waitFor();
    await form.getByRole('button', { name: 'Record assessment' }).click();
    await form.getByText('This field is required.').first().waitFor();
    assert.equal((await vakt.api('coord', 'GET', `/api/cases/${caseId}/assessments`)).length, 0, 'nothing saved yet');

    const review = new Date(Date.now() + 90 * 86_400_000).toISOString().slice(0, 10);
    await form.getByLabel('Method').selectOption('SARA');
    await form.getByLabel('Risk level').selectOption('critical');
    await form.getByLabel('Next review').fill(review);
    await form.getByLabel('Risk factors considered (one per line)').fill('Threats with a weapon\nBreach of an earlier order');
    await form.getByLabel('Summary').fill('Threats have grown since the separation.');
    await form.getByRole('button', { name: 'Record assessment' }).click();
    await page.getByText('The risk assessment is recorded.').waitFor();
    const latest = page.locator('#c-assessments li').first();
    await latest.getByText(`review by ${review}`, { exact: false }).waitFor();
    assert.equal(await page.locator('#c-assessments-empty').isVisible(), false);

    const [stored] = await vakt.api('coord', 'GET', `/api/cases/${caseId}/assessments`);
    assert.equal(stored.method, 'SARA');
    assert.equal(stored.risk, 'critical');
    assert.equal(stored.next_review, review);
    assert.deepEqual(stored.factors, ['Threats with a weapon', 'Breach of an earlier order']);
    assert.equal((await vakt.api('coord', 'GET', `/api/cases/${caseId}`)).risk, 'critical', 'the latest assessment is the case risk');
  });

  it('registers an order with an exclusion zone drawn on the map with the pointer', async () => {
    await page.getByRole('button', { name: 'New order' }).click();
    const form = page.locator('#order-form');
    await form.getByRole('button', { name: 'Register order' }).click();
    await form.getByText('This field is required.').waitFor();

    await form.getByLabel('Restrained person').fill('Mikael Berg');
    await form.getByLabel('Description').fill('about 185 cm, short dark hair');
    await form.getByLabel('Order', { exact: true }).selectOption('extended');
    await form.getByRole('button', { name: 'Draw area' }).click();
    // The map opens centred on the registered address; draw a square around it.
    const map = form.locator('.zone-map svg');
    const box = await map.boundingBox();
    const at = (fx, fy) => [box.x + box.width * fx, box.y + box.height * fy];
    for (const [fx, fy] of [[0.4, 0.35], [0.6, 0.35], [0.6, 0.65], [0.4, 0.65]]) {
      await page.mouse.click(...at(fx, fy));
    }
    await form.getByText('4 corners.').waitFor();
    await page.mouse.click(...at(0.4, 0.35)); // back on the first corner closes it
    const zoneName = form.getByLabel('Name of zone 1');
    await zoneName.waitFor();
    assert.equal(await zoneName.evaluate((n) => n === document.activeElement), true, 'the new zone is ready to be named');
    await zoneName.fill('Home');
    await page.screenshot({ path: join(SHOT_DIR, 'admin-order-form.png'), fullPage: true });
    // Leaving the zone's name field can scroll the page (seen: 69 px between the button's
    // mousedown and mouseup, so the click fell on the form): leave it first, then click.
    await zoneName.blur();
    await form.getByRole('button', { name: 'Register order' }).click();
    await page.getByText('The order is registered.').waitFor();
    const card = page.locator('.order-card', { hasText: 'Mikael Berg' });
    await card.locator('dd').getByText('Home', { exact: true }).waitFor();
    assert.equal(await card.locator('svg .zone-shape').count(), 1, 'the card maps the zone');

    const [order] = await vakt.api('coord', 'GET', `/api/cases/${caseId}/orders`);
    const ring = order.zones[0].geometry.coordinates[0];
    assert.equal(order.zones[0].geometry.type, 'Polygon');
    assert.equal(ring.length, 5, 'four corners and the closing point');
    const lons = ring.map((c) => c[0]);
    const lats = ring.map((c) => c[1]);
    assert.ok(Math.min(...lons) < ADDRESS.lon && ADDRESS.lon < Math.max(...lons), 'the square is around the address (east-west)');
    assert.ok(Math.min(...lats) < ADDRESS.lat && ADDRESS.lat < Math.max(...lats), 'the square is around the address (north-south)');
  });

  it('adds a device, shows its key once, and refuses a bad id next to the field', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByRole('heading', { name: 'Add a device' }).waitFor();
    const deviceForm = page.locator('#device-form');
    const id = deviceForm.getByLabel('Device ID');
    await id.fill('bad id!');
    await deviceForm.getByRole('button', { name: 'Add device' }).click();
    await page.locator('#device-form .field-error').waitFor();
    assert.equal(await id.getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator('#device-form .field-error').innerText(), /Invalid value: 3 to 64/);

    await id.fill(DEVICE);
    await deviceForm.getByLabel('Model').fill('Larmpaket 3');
    await deviceForm.getByRole('button', { name: 'Add device' }).click();
    const keyBox = page.locator('#device-key-box');
    await keyBox.getByText('Device key – shown only this once').waitFor();
    key = (await page.locator('#device-key').innerText()).trim();
    assert.match(key, /^[0-9a-f]{64}$/);
    await page.getByRole('button', { name: 'I have noted the key' }).click();
    await keyBox.waitFor({ state: 'hidden' });
    assert.equal((await page.content()).includes(key), false, 'the key is gone from the page');
    await page.reload();
    await page.locator('#devices-body tr', { hasText: DEVICE }).waitFor();
    assert.equal((await page.content()).includes(key), false, 'and is never shown again');
  });

  it('issues the device to the case holder', async () => {
    const row = page.locator('#devices-body tr', { hasText: DEVICE });
    await row.getByRole('button', { name: `Issue ${DEVICE}` }).click();
    const form = page.locator('#dev-issue-form');
    await form.getByLabel('Case').selectOption({ label: REF });
    assert.match(await form.getByLabel('Holder').locator('option:checked').innerText(), /Anna Svensson – the case's protected person/);
    await form.getByRole('button', { name: 'Issue' }).click();
    await page.getByText(`${DEVICE} is issued in case ${REF}.`).waitFor();
    await row.getByText('Issued').waitFor();
    await row.getByRole('link', { name: REF }).waitFor();
    await page.screenshot({ path: join(SHOT_DIR, 'admin-devices.png'), fullPage: true });
  });

  it('brings an alarm from that device to a duty officer with the order and zone drawn above', async () => {
    const officer = await openPage(browser);
    await login(officer, vakt.url, 'officer', { vakt });
    await officer.locator('#st-conn.conn-live').waitFor();
    await vakt.alarm({ id: DEVICE, key, kind: 'panic', lat: ADDRESS.lat + 0.0001, lon: ADDRESS.lon, acc: 8 });
    await officer.locator('#queue-body tr', { hasText: REF }).click();
    const detail = officer.locator('#detail');
    await detail.getByText('Mikael Berg').first().waitFor();
    await detail.getByText('Erik Svensson').waitFor();
    await waitFor(async () => /Exclusion zone “Home” – THE ALARM IS INSIDE/.test(await officer.locator('#d-map-legend').innerText()),
      { what: 'the legend to say the alarm is inside the drawn zone' });
    assert.deepEqual(officer.problems, []);
    await officer.context().close();
  });

  it('edits the order: a new vehicle and a circle typed in by keyboard', async () => {
    await page.goto(`${vakt.url}/admin#/cases/${encodeURIComponent(caseId)}`);
    await page.getByRole('button', { name: 'Edit the order against Mikael Berg' }).click();
    const form = page.locator('#order-form');
    await form.getByLabel('Vehicle').fill('black Volvo V70, ABC 123');
    await form.getByText('Add by coordinates').click();
    await form.getByLabel('Latitude').fill('59.3420');
    await form.getByLabel('Longitude').fill('18.0500');
    await form.getByLabel('Radius (m)').last().fill('250');
    await form.getByRole('button', { name: 'Add circle' }).click();
    await form.getByLabel('Name of zone 2').fill('School');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByText('The order is saved.').waitFor();
    const card = page.locator('.order-card', { hasText: 'Mikael Berg' });
    await card.getByText('black Volvo V70, ABC 123').waitFor();
    await card.getByText('Home; School (radius 250 m)').waitFor();
  });

  it('takes an area pasted as coordinates, and saves zones only when named and, under 50 m, confirmed', async () => {
    await page.getByRole('button', { name: 'Edit the order against Mikael Berg' }).click();
    const form = page.locator('#order-form');
    await form.getByText('Add by coordinates').click();
    const corners = form.getByLabel('Corners of the area');
    // Decimal degrees with a decimal comma, SWEREF 99 TM, and one corner off the map.
    await corners.fill('59,3450 18,0550\n59.3450, 8.0600\n6582573 674500\n59.3470 18.0550');
    await form.getByRole('button', { name: 'Add area' }).click();
    await form.getByText('Line 2: The position lies outside Sweden. Are latitude and longitude swapped?').waitFor();
    await corners.fill('59,3450 18,0550\n59.3450, 18.0600\n6582573 674500\n59.3470 18.0550');
    await form.getByRole('button', { name: 'Add area' }).click();
    const third = form.getByLabel('Name of zone 3');
    await third.waitFor();
    assert.equal(await third.inputValue(), '', 'a new zone has no made-up name');
    assert.equal(await third.evaluate((n) => n === document.activeElement), true, 'the new zone is ready to be named');

    await form.getByRole('button', { name: 'Save' }).click();
    await form.getByText('Every exclusion zone needs a name.').waitFor();
    await third.fill('Zone 3');
    await form.getByRole('button', { name: 'Save' }).click();
    await form.getByText('Give every exclusion zone a name that says what it protects').waitFor();
    await third.fill('Workplace');

    await form.getByLabel('Latitude').fill('59.3400');
    await form.getByLabel('Longitude').fill('18.0650');
    await form.getByLabel('Radius (m)').last().fill('20');
    await form.getByRole('button', { name: 'Add circle' }).click();
    await form.getByLabel('Name of zone 4').fill('Front door');
    await form.getByText('A radius of 20 m is under 50 m').waitFor();
    await form.getByRole('button', { name: 'Save' }).click();
    await form.getByText('An exclusion zone is under 50 m: make it larger or confirm').waitFor();
    await form.getByLabel('Yes, the zone is meant to be this small').check();
    // The previous test's "saved" may still be showing: wait for this save's own answer.
    const saved = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/api/orders/'));
    await form.getByRole('button', { name: 'Save' }).click();
    assert.equal((await saved).status(), 200);
    await page.getByText('The order is saved.').waitFor();

    const [order] = await vakt.api('coord', 'GET', `/api/cases/${caseId}/orders`);
    assert.deepEqual(order.zones.map((z) => z.name), ['Home', 'School', 'Workplace', 'Front door']);
    const ring = order.zones[2].geometry.coordinates[0];
    assert.equal(ring.length, 5, 'four corners and the closing point');
    // The SWEREF 99 TM corner came through as WGS 84, about 59.3457 N 18.0688 E.
    assert.ok(Math.abs(ring[2][1] - 59.3457) < 0.0001 && Math.abs(ring[2][0] - 18.0688) < 0.0001, `SWEREF corner at ${ring[2]}`);
    assert.equal(order.zones[3].radius_m, 20);
  });

  it('gives the device a new key, shown once; an alarm signed with it completes the change', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    const row = page.locator('#devices-body tr', { hasText: DEVICE });
    page.once('dialog', (dialog) => dialog.accept());
    await row.getByRole('button', { name: `Give ${DEVICE} a new key` }).click();
    const keyBox = page.locator('#device-key-box');
    await keyBox.getByText('The device gets the new key by itself').waitFor();
    const newKey = (await page.locator('#device-key').innerText()).trim();
    assert.match(newKey, /^[0-9a-f]{64}$/);
    assert.notEqual(newKey, key);
    await row.getByText('Key change under way').waitFor();
    await page.getByRole('button', { name: 'I have noted the key' }).click();
    // The device signs with the new key (here the simulator is given it directly): the
    // backend takes it up and the old one is done with.
    await vakt.alarm({ id: DEVICE, key: newKey, kind: 'panic' });
    await waitFor(async () => {
      await page.locator('#devices-refresh').click();
      return !(await row.innerText()).includes('Key change under way');
    }, { what: 'the key change to complete' });
    key = newKey;
  });

  it('returns the device', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    const row = page.locator('#devices-body tr', { hasText: DEVICE });
    await row.getByRole('button', { name: `Register the return of ${DEVICE}` }).click();
    const returnForm = page.locator('#dev-return-form');
    await returnForm.getByLabel('Reason', { exact: true }).fill('Case ended, device handed back');
    await returnForm.getByRole('button', { name: 'Register return' }).click();
    await page.getByText(`The return of ${DEVICE} is registered.`).waitFor();
    await row.getByText('Returned').waitFor();
  });

  it('switches the pages to Swedish', async () => {
    await page.locator('#lang-select').selectOption('sv');
    await page.getByRole('link', { name: 'Ärenden' }).waitFor();
    await page.getByRole('heading', { name: 'Lägg till en enhet' }).waitFor();
    await page.locator('#lang-select').selectOption('en');
    await page.getByRole('heading', { name: 'Add a device' }).waitFor();
  });

  it("keeps a protected person's plan, relatives and zones hidden until a reason is given, and saving leaves them as they were", async () => {
    const persons = await vakt.api('coord', 'GET', '/api/persons');
    const leila = persons.find((p) => p.protected_identity);
    const kase = await vakt.api('coord', 'POST', '/api/cases', {
      reference: 'SE-2026-7002', person_id: leila.id, risk: 'critical', region: 'Stockholm',
      response_plan: 'Call Leila on her mobile', relatives: [{ name: 'Omar Haddad', relation: 'brother', phone: '+46 70 222 33 44' }],
    });
    await vakt.api('coord', 'POST', `/api/cases/${kase.id}/orders`, {
      kind: 'contact_ban', restrained: { name: 'Peter Holm' },
      valid_from: '2026-01-01T00:00:00Z', valid_to: '2099-01-01T00:00:00Z',
      zones: [{ name: 'Home', geometry: { type: 'Point', coordinates: [18.0730, 59.3130] }, radius_m: 300 }],
    });
    await page.goto(`${vakt.url}/admin#/cases/${encodeURIComponent(kase.id)}`);
    await page.getByText('Protected identity: the response plan and the relatives are hidden').waitFor();
    assert.equal(await page.getByText('Omar Haddad').count(), 0);
    assert.equal(await page.locator('#ce-plan').inputValue(), '');
    const card = page.locator('.order-card', { hasText: 'Peter Holm' });
    await card.getByText('Home (location protected)').waitFor();

    await page.locator('#ce-risk').selectOption('high');
    await page.locator('#case-edit-form').getByRole('button', { name: 'Save' }).click();
    await page.getByText('The case is saved.').waitFor();
    await page.getByRole('button', { name: 'Edit the order against Peter Holm' }).click();
    const form = page.locator('#order-form');
    await form.getByText('Where the zones lie is protected, and they are kept as they are.').waitFor();
    await form.getByLabel('Vehicle').fill('white Saab');
    await form.getByRole('button', { name: 'Save' }).click();
    await page.getByText('The order is saved.').waitFor();

    const kept = await vakt.api('coord', 'GET', `/api/cases/${kase.id}?reason=checking%20the%20edit`);
    assert.equal(kept.risk, 'high');
    assert.equal(kept.response_plan, 'Call Leila on her mobile');
    assert.deepEqual(kept.relatives, [{ name: 'Omar Haddad', relation: 'brother', phone: '+46 70 222 33 44' }]);
    assert.equal(kept.orders[0].restrained.vehicle, 'white Saab');
    assert.equal(kept.orders[0].zones[0].radius_m, 300);
  });

  it('lets an admin add users, who can then log in, a coordinator with a one-time code', async () => {
    const admin = await openPage(browser);
    await login(admin, `${vakt.url}/admin#/users`, 'boss', { vakt });
    await admin.getByRole('heading', { name: 'New user' }).waitFor();
    const userForm = admin.locator('#user-form');
    await userForm.getByLabel('Username').fill('night-officer');
    await userForm.getByLabel('Password').fill('short');
    await userForm.getByRole('button', { name: 'Create user' }).click();
    await userForm.locator('.field-error', { hasText: 'At least 12 characters.' }).waitFor();
    await userForm.getByLabel('Password').fill('a long enough night password');
    await userForm.getByLabel('Role').selectOption('officer');
    await userForm.getByLabel('Region').selectOption('Stockholm');
    await userForm.getByRole('button', { name: 'Create user' }).click();
    await admin.locator('#users-body tr', { hasText: 'night-officer' }).waitFor();

    const newcomer = await openPage(browser);
    await login(newcomer, vakt.url, 'night-officer', { password: 'a long enough night password', vakt });
    await newcomer.getByRole('heading', { name: 'Alert queue' }).waitFor();
    await newcomer.context().close();

    // A coordinator needs a second factor: its key is shown once, here.
    await userForm.getByLabel('Username').fill('day-coordinator');
    await userForm.getByLabel('Password').fill('another long password');
    await userForm.getByLabel('Role').selectOption('coordinator');
    await userForm.getByRole('button', { name: 'Create user' }).click();
    const totpBox = admin.locator('#user-totp-box');
    await totpBox.getByText('One-time code key for day-coordinator – shown only this once').waitFor();
    const link = (await admin.locator('#user-totp-uri').innerText()).trim();
    assert.match(link, /^otpauth:\/\/totp\/.*secret=[A-Z2-7]+/);
    const secret = /secret=([A-Z2-7]+)/.exec(link)[1];
    assert.equal((await admin.locator('#user-totp-secret').innerText()).replace(/\s/g, ''), secret);
    await totpBox.getByRole('button', { name: 'The user has it' }).click();
    await totpBox.waitFor({ state: 'hidden' });
    assert.equal((await admin.content()).includes(secret), false, 'the key is gone from the page');
    await admin.context().close();

    const coordinator = await openPage(browser);
    await coordinator.goto(`${vakt.url}/admin`);
    await coordinator.locator('#login-username').fill('day-coordinator');
    await coordinator.locator('#login-password').fill('another long password');
    await coordinator.locator('#login-submit').click();
    // Without the code the answer is the same as for a wrong password.
    await coordinator.getByText('Login failed. Check the username, the password and the one-time code (if you have one).').waitFor();
    await coordinator.locator('#login-totp').fill(totpCode(secret, Math.floor(Date.now() / 30000)));
    await coordinator.locator('#login-submit').click();
    await coordinator.getByRole('heading', { name: 'Cases', level: 1 }).waitFor();
    await coordinator.context().close();
  });

  it('lets an admin edit the regions, which the forms then offer, and a case take its person\'s region', async () => {
    const admin = await openPage(browser);
    await login(admin, `${vakt.url}/admin#/regions`, 'boss', { vakt });
    await admin.getByRole('heading', { name: 'Police regions' }).waitFor();
    for (const name of ['Nord', 'Mitt', 'Bergslagen', 'Stockholm', 'Öst', 'Väst', 'Syd']) {
      await admin.locator('#regions-body tr', { hasText: name }).first().waitFor();
    }
    const south = admin.locator('#regions-body tr', { has: admin.locator('code', { hasText: /^syd$/ }) });
    assert.match(await south.innerText(), /Malmö Norr/);

    const regionForm = admin.locator('#region-form');
    await regionForm.getByLabel('Name').fill('Gränspolisen');
    await regionForm.getByRole('button', { name: 'Add region' }).click();
    await admin.getByText('Region Gränspolisen added.').waitFor();
    await admin.locator('#regions-body tr', { hasText: 'granspolisen' }).waitFor();

    const areaForm = admin.locator('#area-form');
    await areaForm.getByLabel('Region').selectOption({ label: 'Gränspolisen' });
    await areaForm.getByLabel('Name').fill('Arlanda');
    await areaForm.getByRole('button', { name: 'Add local police area' }).click();
    await admin.locator('#regions-body tr', { hasText: 'Arlanda' }).waitFor();

    await admin.getByRole('button', { name: 'Retire Mitt' }).click();
    await admin.getByRole('button', { name: 'Put Mitt back in force' }).waitFor();
    const audit = await vakt.api('boss', 'GET', '/api/audit?limit=50');
    assert.ok(audit.some((e) => e.action === 'region_changed' && e.detail === 'retired "Mitt"'));

    // The users form offers the regions in force: the new one, not the retired one.
    await admin.getByRole('link', { name: 'Users' }).click();
    await admin.locator('#uf-region option', { hasText: 'Gränspolisen' }).waitFor({ state: 'attached' });
    const userRegions = await admin.locator('#uf-region option').allInnerTexts();
    assert.ok(userRegions.includes('Gränspolisen') && !userRegions.includes('Mitt'), userRegions.join(', '));
    assert.equal(userRegions[0], 'National (all regions)');

    // A national admin registers a person in Syd; the case left "same as person" is in Syd.
    await admin.getByRole('link', { name: 'Persons' }).click();
    const personForm = admin.locator('#person-form');
    await personForm.getByLabel('Name', { exact: true }).fill('Maja Holm');
    await personForm.getByLabel('Region').selectOption('Syd');
    await personForm.getByRole('button', { name: 'Register person' }).click();
    await admin.locator('#persons-body tr', { hasText: 'Maja Holm' }).waitFor();
    await admin.getByRole('link', { name: 'Cases' }).click();
    const caseForm = admin.locator('#case-form');
    await caseForm.getByLabel('Reference').fill('SE-2026-7003');
    await caseForm.getByLabel('Protected person').selectOption({ label: 'Maja Holm' });
    assert.equal(await caseForm.getByLabel('Region').inputValue(), '');
    await caseForm.getByRole('button', { name: 'Create case' }).click();
    await admin.getByRole('heading', { name: 'Case SE-2026-7003' }).waitFor();
    const cases = await vakt.api('boss', 'GET', '/api/cases');
    assert.equal(cases.find((c) => c.reference === 'SE-2026-7003').region, 'Syd');
    assert.deepEqual(admin.problems, []);
    await admin.context().close();
  });

  it('takes an investigator from the console to the cases, read only, and shows a person only for a logged reason', async () => {
    const nils = await vakt.api('coord', 'POST', '/api/persons', { name: 'Nils Berg', region: 'Stockholm' });
    const kase = await vakt.api('coord', 'POST', '/api/cases', {
      reference: 'SE-2026-7004', person_id: nils.id, risk: 'high', region: 'Stockholm',
      response_plan: 'Call Nils at work', relatives: [{ name: 'Eva Berg', relation: 'mother' }],
    });
    const reader = await openPage(browser);
    // The console is the duty officers'; an investigator lands on the case pages.
    await login(reader, vakt.url, 'investigator', { vakt });
    await reader.getByRole('heading', { name: 'Cases', level: 1 }).waitFor();
    assert.match(reader.url(), /\/admin/);
    await reader.getByText("Read only: a person's details are shown once you state a reason, which is logged.").waitFor();
    for (const tab of ['Persons', 'Devices', 'Users', 'Regions']) {
      assert.equal(await reader.getByRole('link', { name: tab, exact: true }).count(), 0, tab);
    }
    assert.equal(await reader.getByRole('heading', { name: 'New case' }).isVisible(), false);
    const row = reader.locator('#cases-body tr', { hasText: 'SE-2026-7004' });
    await row.getByText(`Shown for a reason (${nils.id})`).waitFor();

    await row.getByRole('link', { name: 'SE-2026-7004' }).click();
    await reader.getByRole('heading', { name: 'Case SE-2026-7004' }).waitFor();
    await reader.getByText('Shown once you state a reason above; the reason is logged.').first().waitFor();
    assert.equal(await reader.getByText('Nils Berg').count(), 0);
    assert.equal(await reader.getByText('Call Nils at work').count(), 0);
    for (const name of ['Save', 'Close case…', 'Record assessment', 'New order', 'Issue']) {
      assert.equal(await reader.getByRole('button', { name, exact: true }).count(), 0, name);
    }

    await reader.locator('#c-reveal-reason').fill('preliminary investigation 2026:14');
    await reader.locator('#c-reveal-form').getByRole('button', { name: 'Reveal' }).click();
    await reader.locator('#c-person').getByText('Nils Berg').waitFor();
    assert.equal(await reader.locator('#ce-plan').inputValue(), 'Call Nils at work');
    assert.equal(await reader.locator('#ce-plan').isDisabled(), true);
    assert.equal(await reader.getByRole('button', { name: 'Save', exact: true }).count(), 0);
    await reader.context().close();

    const audit = await vakt.api('boss', 'GET', '/api/audit?user=investigator');
    assert.ok(
      audit.some((e) => e.action === 'person_revealed' && e.subject === nils.id && e.detail === 'preliminary investigation 2026:14'),
      JSON.stringify(audit),
    );
  });

  it('had no script errors, CSP violations or missing translations', () => {
    assert.deepEqual(page.problems, []);
  });
});
