// Swedish and English for every string: the same keys in both tables, the
// same placeholders in both wordings, and a translation for every key the
// pages use and every value the API can send. No browser needed.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO } from './lib/vakt.mjs';

const WEB = join(REPO, 'src', 'web');
const SOURCES = [
  'console/index.html', 'console/console.js', 'console/common.js', 'console/map.js', 'console/place.js', 'console/watch.js',
  'admin/index.html', 'admin/admin.js', 'admin/zone-editor.js',
];

// Values that reach tEnum(prefix, value) or t(`prefix_${value}`).
const ENUMS = {
  kind: ['panic', 'fall', 'tamper', 'power_loss', 'low_battery', 'silent', 'bad_signatures', 'tag_in_zone', 'tag_near', 'order_ending', 'messages_missing', 'review_due'],
  risk: ['low', 'medium', 'high', 'critical'],
  method: ['PATRIARK', 'SARA', 'SRA', 'other'],
  compass: ['N', 'NE', 'E', 'SE', 'S', 'SW', 'W', 'NW'],
  state: ['open', 'acknowledged', 'resolved'],
  outcome: ['police_dispatched', 'false_alarm', 'technical', 'test', 'other'],
  order: ['contact_ban', 'extended', 'special_extended', 'shared_residence'],
  role: ['officer', 'coordinator', 'investigator', 'admin'],
  devkind: ['alarm', 'tag'],
  devstatus: ['in_stock', 'issued', 'returned', 'lost', 'online', 'silent', 'connection_lost', 'never_heard'],
  action: ['opened', 'repeated', 'acknowledged', 'resolved', 'cancel_pressed', 'risk_changed'],
  notice: ['new_p1', 'overdue', 'repeated', 'cancel'],
  conn: ['connecting', 'live', 'lost', 'syncing'],
  lost: ['stream', 'server', 'session'],
  feedback: ['received', 'accepted', 'resolved'],
  title: ['cases', 'case', 'persons', 'devices', 'users'],
};

/** i18n.js is a browser module; Node loads it from its text. */
async function loadI18n() {
  const text = await readFile(join(WEB, 'console', 'i18n.js'), 'utf8');
  return import(`data:text/javascript;base64,${Buffer.from(text).toString('base64')}`);
}

const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('translations', () => {
  it('offers Swedish and English with exactly the same keys', async () => {
    const { LANGUAGES, table } = await loadI18n();
    assert.deepEqual([...LANGUAGES].sort(), ['en', 'sv']);
    assert.deepEqual(Object.keys(table('sv')).sort(), Object.keys(table('en')).sort());
  });

  it('fills the same placeholders in both languages and leaves no string empty', async () => {
    const { table } = await loadI18n();
    const sv = table('sv');
    const en = table('en');
    for (const key of Object.keys(sv)) {
      assert.ok(sv[key].trim() && en[key].trim(), `${key} is empty in a language`);
      assert.deepEqual(placeholders(sv[key]), placeholders(en[key]), `placeholders of ${key}`);
    }
  });

  it('has every key the pages use', async () => {
    const { table } = await loadI18n();
    const known = new Set(Object.keys(table('sv')));
    const used = new Set();
    for (const file of SOURCES) {
      const text = await readFile(join(WEB, file), 'utf8');
      for (const m of text.matchAll(/\bt\(\s*'([a-z0-9_]+)'/g)) used.add(m[1]);
      // Keys chosen by a condition: t(x ? 'a' : 'b').
      for (const m of text.matchAll(/\bt\([^()]*\?\s*'([a-z0-9_]+)'\s*:\s*'([a-z0-9_]+)'/g)) used.add(m[1]).add(m[2]);
      for (const m of text.matchAll(/data-i18n="([a-z0-9_]+)"/g)) used.add(m[1]);
      for (const m of text.matchAll(/data-i18n-attr="([^"]+)"/g)) {
        for (const pair of m[1].split(';')) used.add(pair.split(':')[1].trim());
      }
      for (const m of text.matchAll(/\[\s*'([a-z0-9_]+)'\s*,/g)) if (/^(f|sec)_/.test(m[1])) used.add(m[1]);
    }
    const missing = [...used].filter((k) => !known.has(k));
    assert.deepEqual(missing, [], 'keys used but not translated');
    assert.ok(used.size > 300, `found ${used.size} keys in use`);
  });

  it('names every value the API can send', async () => {
    const { table } = await loadI18n();
    const known = new Set(Object.keys(table('en')));
    const missing = [];
    for (const [prefix, values] of Object.entries(ENUMS)) {
      for (const v of values) if (!known.has(`${prefix}_${v}`)) missing.push(`${prefix}_${v}`);
    }
    assert.deepEqual(missing, []);
  });

  it('words every reason code the server can give, in both languages', async () => {
    const { table } = await loadI18n();
    // Every `Reason::new("code", ...)` in the Rust sources is a code the console may receive.
    // Written by the retention erasure in SQL, and the history notes of device messages.
    const codes = new Set(['erased', 'message', 'message_again']);
    for (const file of await rustSources(join(REPO, 'src'))) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/Reason::new\(\s*"(\w+)"/g)) if (m[1] !== 'text') codes.add(m[1]);
    }
    assert.ok(codes.size >= 20, `found ${codes.size} reason codes`);
    for (const lang of ['sv', 'en']) {
      const known = new Set(Object.keys(table(lang)));
      const missing = [...codes].filter((code) => !known.has(`reason_${code}`));
      assert.deepEqual(missing, [], `${lang}: reason codes without words`);
    }
  });
});

async function rustSources(dir) {
  const { readdir } = await import('node:fs/promises');
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...await rustSources(path));
    else if (entry.name.endsWith('.rs')) out.push(path);
  }
  return out;
}
