// The console's watching rules (src/web/console/watch.js) over plain data:
// when the session warning comes, what the attention bar says and which
// alert "Open next" opens. No browser needed.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO } from './lib/vakt.mjs';

const watch = await import(pathToFileURL(join(REPO, 'src', 'web', 'console', 'watch.js')).href);

const MIN = 60000;
const at = (ms) => new Date(ms).toISOString();
const alert = (id, fields) => ({ id, state: 'open', priority: 1, overdue: false, first_at: at(0), ...fields });

describe('the session warning', () => {
  it('comes 15 minutes before the absolute end of a twelve-hour session', () => {
    const info = { endsAtMs: 12 * 60 * MIN, absoluteS: 12 * 3600 };
    assert.equal(watch.sessionPhase(info, info.endsAtMs - 15 * MIN - 1), 'ok');
    assert.equal(watch.sessionPhase(info, info.endsAtMs - 15 * MIN), 'warn');
    assert.equal(watch.sessionPhase(info, info.endsAtMs), 'ended');
  });

  it('comes a third of the way before the end of a short session, not at its start', () => {
    assert.equal(watch.sessionWarnLeadMs(30), 10000);
    const info = { endsAtMs: 30000, absoluteS: 30 };
    assert.equal(watch.sessionPhase(info, 1000), 'ok');
    assert.equal(watch.sessionPhase(info, 20000), 'warn');
  });

  it('never comes for a session whose end is unknown', () => {
    assert.equal(watch.sessionPhase(null, 0), 'ok');
    assert.equal(watch.sessionPhase({ endsAtMs: NaN, absoluteS: 30 }, 0), 'ok');
  });
});

describe('the attention bar', () => {
  it('counts open priority-1 and overdue alerts, not acknowledged ones or lower priorities', () => {
    const s = watch.attentionSummary([
      alert(1, { first_at: at(5 * MIN) }),
      alert(2, { first_at: at(2 * MIN) }),
      alert(3, { priority: 2, overdue: true, first_at: at(8 * MIN) }),
      alert(4, { state: 'acknowledged', first_at: at(0) }),
      alert(5, { priority: 3, first_at: at(0) }),
    ], 12 * MIN);
    assert.deepEqual([s.count, s.p1, s.overdue, s.oldestWaitMs], [3, 2, 1, 10 * MIN]);
  });

  it('opens next the overdue alert, then the priority-1 alert that has waited longest', () => {
    const p1old = alert('a', { first_at: at(1 * MIN) });
    const p1new = alert('b', { first_at: at(3 * MIN) });
    assert.equal(watch.attentionSummary([p1new, p1old], 4 * MIN).next, p1old);
    const overdue = alert('c', { priority: 2, overdue: true, first_at: at(2 * MIN) });
    assert.equal(watch.attentionSummary([p1new, p1old, overdue], 4 * MIN).next, overdue);
  });

  it('opens next the priority-1 alert of the highest case risk before an older one of lower risk', () => {
    const mediumOld = alert('m', { risk: 'medium', first_at: at(1 * MIN) });
    const critical = alert('c', { risk: 'critical', first_at: at(3 * MIN) });
    const noRisk = alert('n', { first_at: at(0) });
    assert.equal(watch.attentionSummary([mediumOld, noRisk, critical], 4 * MIN).next, critical);
    assert.equal(watch.attentionSummary([noRisk, mediumOld], 4 * MIN).next, mediumOld);
  });

  it('offers nothing to open when nothing waits', () => {
    const s = watch.attentionSummary([alert(1, { state: 'acknowledged' })], MIN);
    assert.deepEqual([s.count, s.next, s.oldestWaitMs], [0, null, 0]);
  });
});
