// vakt coordinators' pages: persons, cases (risk, response plan, relatives,
// structured risk assessments), restraining orders with zones drawn on a map, devices (add, issue, return)
// and, for admins, users. Investigators get the case pages read-only.
//
// Plain ES module, no build step; shares common.js, map.js and i18n.js with
// the duty-officer console. Pages are addressed by the URL fragment
// (#/cases, #/cases/<id>, #/persons, #/devices, #/users, #/regions) so the browser's
// back button and bookmarks work without a server round trip.

import { t, tEnum, getLang, setLang, applyStatic } from './i18n.js';
import {
  $, el, button, fillDl, phoneLink, fmtTime, fmtDate, fmtAge, fmtDistance, nowMs, timeMs, toLocalInput, fromLocalInput,
  api, apiOptional, setUnauthorizedHandler, wireLoginForm, setLoginMessage, normaliseUser,
  clearFormErrors, showFieldError, showFormError, reportFormError,
  RISKS, ORDER_KINDS, ROLES, DEVICE_KINDS,
} from './common.js';
import { collectZones, fitView, mapRoot, drawTiles, drawGrid, drawZone, drawAddress, drawScaleBar, drawNorthArrow, zonePoints } from './map.js';
import { createZoneEditor, createPointPicker } from './zone-editor.js';
import { parseDecimal, parsePosition } from './coords.js';

const FLASH_OK_MS = 6000;
// The assessment methods the API takes, and how far ahead a review may be set (the
// server's rule, docs/policy.md; checked here only to offer the right dates).
const METHODS = ['PATRIARK', 'SARA', 'SRA', 'other'];
const REVIEW_WITHIN_MONTHS = 24;
const YEAR_MS = 365 * 24 * 3600 * 1000;

const state = {
  user: null,
  tileUrl: null,
  persons: [],
  cases: [],
  devices: [],
  users: [],
  regions: [],          // GET /api/regions: where persons, cases and users may be
  caseDetail: null,     // GET /api/cases/{id} of the open case page
  caseReason: null,     // reason stated to see its protected person
  caseAssessments: [],  // GET /api/cases/{id}/assessments of the open case page, newest first
  orderEditing: null,   // null | {mode: 'new'} | {mode: 'edit', order}
  zoneEditor: null,
  pointPicker: null,
  deviceAction: null,   // {kind: 'issue' | 'return', device}
  prefillPersonId: null,
  shownKey: null,       // a new device's key while it is on screen
};

const timers = { flashOk: 0 };

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

function showError(message) {
  $('flash-error-text').textContent = message;
  $('flash-error').hidden = false;
}

function hideError() {
  $('flash-error').hidden = true;
}

function showOk(message) {
  const box = $('flash-ok');
  box.textContent = message;
  clearTimeout(timers.flashOk);
  timers.flashOk = setTimeout(() => { box.textContent = ''; }, FLASH_OK_MS);
}

/** Replaces a <select>'s options; `options` are {value, label}. */
function fillSelect(select, options, selected) {
  const keep = selected !== undefined ? selected : select.value;
  select.replaceChildren();
  for (const { value, label } of options) {
    const option = el('option', null, label);
    option.value = value;
    select.append(option);
  }
  if (options.some((o) => o.value === keep)) select.value = keep;
}

const enumOptions = (values, prefix) => values.map((v) => ({ value: v, label: tEnum(prefix, v) }));

/** A table cell; `content` is text or a Node. */
function td(content, className) {
  const cell = el('td', className);
  if (content instanceof Node) cell.append(content);
  else cell.textContent = content === null || content === undefined || content === '' ? t('dash') : String(content);
  return cell;
}

function personById(id) {
  return state.persons.find((p) => p.id === id) || null;
}

/** A person's name as a list may show it: masked ones are named as protected. */
function personLabel(person) {
  if (!person) return t('dash');
  if (!person.masked) return person.name;
  return t(person.protected_identity === false ? 'person_reason_label' : 'person_masked_label', { id: person.id });
}

/**
 * The words for a masked view: a protected identity's, or (for an investigator, who sees
 * no one's details without a reason) those of a person who is not protected.
 */
function maskedKey(person, protectedKey) {
  return person && person.protected_identity === false ? 'reason_note' : protectedKey;
}

/** Sets a note's text, and keeps it through a change of language. */
function setNote(node, key) {
  node.setAttribute('data-i18n', key);
  node.textContent = t(key);
}

/**
 * An investigator reads cases for the legal process and changes nothing: the case pages
 * without their forms (the server refuses every change anyway).
 */
function readOnly() {
  return Boolean(state.user) && state.user.role === 'investigator';
}

/** The pages a role may open; the first is where it lands. */
function pagesOf(role) {
  if (role === 'investigator') return ['cases', 'case'];
  return PAGES;
}

function caseById(id) {
  return state.cases.find((c) => c.id === id) || null;
}

/** Disables a form's submit button while its request runs. */
async function busy(form, work) {
  const submit = form.querySelector('button[type="submit"]');
  if (submit) submit.disabled = true;
  try {
    return await work();
  } finally {
    if (submit) submit.disabled = false;
  }
}

/** Checks required inputs in the form's language before the server sees them. */
function requireFields(form, inputs) {
  for (const input of inputs) {
    if (!input.value.trim()) {
      showFieldError(form, input, t('err_required'));
      showFormError(form, t('form_has_errors'));
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------

function showLoginView(message, notice = false) {
  $('boot').hidden = true;
  $('admin-view').hidden = true;
  $('forbidden-view').hidden = true;
  $('logout-btn').hidden = true;
  $('console-link').hidden = true;
  $('st-user').hidden = true;
  $('login-view').hidden = false;
  setLoginMessage(message || '', notice);
  $('login-username').focus();
}

function startSession(user) {
  state.user = normaliseUser(user);
  $('boot').hidden = true;
  $('login-view').hidden = true;
  $('logout-btn').hidden = false;
  $('console-link').hidden = false;
  renderUser();
  if (!['coordinator', 'investigator', 'admin'].includes(state.user.role)) {
    $('forbidden-view').hidden = false;
    return;
  }
  $('admin-view').hidden = false;
  document.querySelector('.tab[data-page="users"]').hidden = state.user.role !== 'admin';
  document.querySelector('.tab[data-page="regions"]').hidden = state.user.role !== 'admin';
  for (const page of ['persons', 'devices']) {
    document.querySelector(`.tab[data-page="${page}"]`).hidden = !pagesOf(state.user.role).includes(page);
  }
  $('read-only-note').hidden = !readOnly();
  $('admin-view').classList.toggle('read-only', readOnly());
  $('case-new-panel').hidden = readOnly();
  loadConfig().then(route);
}

function renderUser() {
  const box = $('st-user');
  box.hidden = !state.user;
  if (!state.user) return;
  box.textContent = t('user_label', { user: state.user.username, role: tEnum('role', state.user.role) })
    + (state.user.region ? ` · ${state.user.region}` : ` · ${t('region_all')}`);
}

async function loadConfig() {
  try {
    const config = await apiOptional('GET', '/api/console-config');
    const url = config && typeof config.tile_url === 'string' ? config.tile_url : null;
    state.tileUrl = url && /^https?:\/\//.test(url) ? url : null;
  } catch {
    state.tileUrl = null;
  }
}

function onSessionExpired() {
  if (!state.user) return;
  state.user = null;
  showLoginView(t('session_ended'));
}

async function onLogout() {
  try {
    await api('POST', '/api/logout', {});
  } catch {
    // Logged out either way: the cookie is cleared or the session is gone.
  }
  state.user = null;
  showLoginView(t('logged_out'), true);
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

const PAGES = ['cases', 'case', 'persons', 'devices', 'users', 'regions'];

function parseRoute() {
  const parts = (location.hash || '#/cases').replace(/^#\/?/, '').split('/');
  if (parts[0] === 'cases' && parts[1]) return { page: 'case', id: decodeURIComponent(parts[1]) };
  if (PAGES.includes(parts[0]) && parts[0] !== 'case') return { page: parts[0] };
  return { page: 'cases' };
}

async function route() {
  if (!state.user || $('admin-view').hidden) return;
  let { page, id } = parseRoute();
  if (!pagesOf(state.user.role).includes(page)) page = 'cases';
  for (const name of PAGES) $(`page-${name}`).hidden = name !== page;
  for (const tab of document.querySelectorAll('.tab')) {
    const current = tab.dataset.page === page || (page === 'case' && tab.dataset.page === 'cases');
    if (current) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  hideError();
  try {
    if (page === 'cases') await showCasesPage();
    else if (page === 'case') await showCasePage(id);
    else if (page === 'persons') await showPersonsPage();
    else if (page === 'devices') await showDevicesPage();
    else if (page === 'users') await showUsersPage();
    else if (page === 'regions') await showRegionsPage();
  } catch (err) {
    showError(t('err_load', { msg: err.message }));
  }
  document.title = `${t(`title_${page}`)} – vakt`;
}

/** Everything a page lists comes fresh from the API when the page is shown. */
async function loadLists({ persons = false, cases = false, devices = false } = {}) {
  const [p, c, d] = await Promise.all([
    persons ? api('GET', '/api/persons') : null,
    cases ? api('GET', '/api/cases') : null,
    devices ? api('GET', '/api/devices') : null,
  ]);
  if (p) state.persons = p;
  if (c) state.cases = c;
  if (d) state.devices = d;
}

// ---------------------------------------------------------------------------
// Cases list and new case
// ---------------------------------------------------------------------------

async function showCasesPage() {
  if (readOnly()) {
    // Devices are the coordinators' (an investigator sees a case's own on its page).
    await loadLists({ persons: true, cases: true });
    renderCases();
    return;
  }
  await Promise.all([loadLists({ persons: true, cases: true, devices: true }), loadRegions()]);
  renderCases();
  prepareCaseForm();
}

function renderCases() {
  const body = $('cases-body');
  body.replaceChildren();
  const showClosed = $('cases-show-closed').checked;
  const list = state.cases.filter((c) => showClosed || !c.closed_at)
    .sort((a, b) => a.reference.localeCompare(b.reference, getLang()));
  for (const c of list) {
    const tr = el('tr');
    const link = el('a', 'strong', c.reference);
    link.href = `#/cases/${encodeURIComponent(c.id)}`;
    const devices = readOnly() ? t('dash')
      : String(state.devices.filter((d) => d.case_id === c.id && d.status === 'issued').length);
    tr.append(
      td(link),
      td(personLabel(personById(c.person_id))),
      td(el('span', `risk risk-${c.risk}`, tEnum('risk', c.risk))),
      td(c.region),
      td(devices, 'num'),
      td(c.closed_at ? el('span', 'tag tag-muted', t('case_closed_at', { at: fmtDate(c.closed_at) })) : el('span', 'tag tag-ok', t('case_open'))),
    );
    body.append(tr);
  }
  $('cases-empty').hidden = list.length > 0;
}

function prepareCaseForm() {
  fillSelect($('case-person'), [
    { value: '', label: t('choose') },
    ...state.persons.map((p) => ({ value: p.id, label: personLabel(p) })),
  ], state.prefillPersonId || undefined);
  state.prefillPersonId = null;
  fillSelect($('case-risk'), enumOptions(RISKS, 'risk'), $('case-risk').value || 'high');
  // Left at the first choice, the case is where its person is. A regional coordinator
  // works in their own region only.
  const own = state.user.region ? [{ value: state.user.region, label: state.user.region }] : regionOptions();
  fillSelect($('case-region'), [{ value: '', label: t('region_from_person') }, ...own]);
}

async function onCaseSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('case-reference'), $('case-person')])) return;
  const body = {
    reference: $('case-reference').value.trim(),
    person_id: $('case-person').value,
    risk: $('case-risk').value,
    relatives: relativesEditors.create.get(),
  };
  if ($('case-region').value) body.region = $('case-region').value;
  const plan = $('case-plan').value.trim();
  if (plan) body.response_plan = plan;
  await busy(form, async () => {
    try {
      const created = await api('POST', '/api/cases', body);
      form.reset();
      relativesEditors.create.set([]);
      showOk(t('msg_case_created', { ref: created.reference }));
      location.hash = `#/cases/${encodeURIComponent(created.id)}`;
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ---------------------------------------------------------------------------
// Relatives editor (used for new and existing cases)
// ---------------------------------------------------------------------------

const relativesEditors = { create: null, edit: null };
let relativeSeq = 0;

/** Rows of name, relation and phone; returns {get(), set(list)}. */
function createRelativesEditor(container, addButton, initial) {
  let rows = [];
  function addRow(rel = {}) {
    const row = el('div', 'relative-row');
    const make = (key, value, field, type = 'text') => {
      const wrap = el('div', 'field');
      const id = `rel-${++relativeSeq}`;
      const label = el('label', null, t(key));
      label.htmlFor = id;
      const input = el('input');
      input.id = id;
      input.type = type;
      input.autocomplete = 'off';
      input.value = value || '';
      input.dataset.field = field;
      wrap.append(label, input);
      row.append(wrap);
      return input;
    };
    const index = rows.length;
    const entry = {
      row,
      name: make('f_name', rel.name, `relatives[${index}].name`),
      relation: make('f_relation', rel.relation, `relatives[${index}].relation`),
      phone: make('f_phone', rel.phone, `relatives[${index}].phone`, 'tel'),
    };
    row.append(button(t('remove'), 'btn btn-small', () => {
      rows = rows.filter((r) => r !== entry);
      row.remove();
      renumber();
      addButton.focus();
    }));
    rows.push(entry);
    container.append(row);
    return entry;
  }
  /** Field names follow the position, so a server error lands on the right row. */
  function renumber() {
    rows.forEach((r, i) => {
      r.name.dataset.field = `relatives[${i}].name`;
      r.relation.dataset.field = `relatives[${i}].relation`;
      r.phone.dataset.field = `relatives[${i}].phone`;
    });
  }
  addButton.addEventListener('click', () => addRow().name.focus());
  const api_ = {
    get: () => rows
      .map((r) => ({ name: r.name.value.trim(), relation: r.relation.value.trim(), phone: r.phone.value.trim() }))
      .filter((r) => r.name || r.relation || r.phone)
      .map((r) => {
        const out = { name: r.name };
        if (r.relation) out.relation = r.relation;
        if (r.phone) out.phone = r.phone;
        return out;
      }),
    set: (list) => {
      rows = [];
      container.replaceChildren();
      (list || []).forEach((r) => addRow(r));
    },
  };
  api_.set(initial);
  return api_;
}

// ---------------------------------------------------------------------------
// One case: person, risk/plan/relatives, orders, devices
// ---------------------------------------------------------------------------

async function showCasePage(id) {
  if (!state.caseDetail || state.caseDetail.id !== id) {
    state.caseReason = null;
    closeOrderForm();
    resetAssessmentForm();
  }
  $('case-error').hidden = true;
  await loadLists({ persons: true, devices: !readOnly() });
  await loadCase(id);
}

async function loadCase(id) {
  const query = state.caseReason ? `?reason=${encodeURIComponent(state.caseReason)}` : '';
  try {
    state.caseDetail = await api('GET', `/api/cases/${encodeURIComponent(id)}${query}`);
    state.caseAssessments = await api('GET', `/api/cases/${encodeURIComponent(id)}/assessments${query}`);
  } catch (err) {
    state.caseDetail = null;
    state.caseAssessments = [];
    $('case-body').hidden = true;
    $('c-title').textContent = t('case_heading_unknown');
    $('c-sub').textContent = '';
    $('case-error').textContent = err.status === 404 ? t('case_not_found') : t('err_load', { msg: err.message });
    $('case-error').hidden = false;
    return;
  }
  renderCase();
}

function renderCase() {
  const c = state.caseDetail;
  $('case-body').hidden = false;
  $('c-title').textContent = t('case_heading', { ref: c.reference });
  const sub = [t('detail_risk', { risk: tEnum('risk', c.risk) }), c.region];
  if (c.closed_at) sub.push(t('case_closed_at', { at: fmtDate(c.closed_at) }));
  $('c-sub').textContent = sub.join(' · ');
  renderCasePerson(c.person);
  renderCaseEdit(c);
  renderCaseAssessments(c);
  renderCaseOrders(c);
  renderCaseDevices(c);
}

function renderCasePerson(p) {
  const person = p || {};
  fillDl($('c-person'), [
    ['f_name', person.name],
    ['f_phone', person.phone && !person.masked ? phoneLink(person.phone) : null],
    ['f_address', person.address && person.address.text],
    ['f_position', person.address ? `${person.address.lat}, ${person.address.lon}` : null],
    ['f_protected', t(person.protected_identity ? 'yes' : 'no')],
  ]);
  $('c-reveal').hidden = !person.masked;
  setNote($('c-masked-note'), maskedKey(person, 'masked_note'));
}

async function onCaseReveal(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  const reason = $('c-reveal-reason').value.trim();
  if (reason.length < 3) {
    showFieldError(form, $('c-reveal-reason'), t('reveal_need_reason'));
    return;
  }
  state.caseReason = reason;
  $('c-reveal-reason').value = '';
  await loadCase(state.caseDetail.id);
}

/**
 * A masked case (protected person, no reason stated) has no plan or relatives to show or
 * edit: those fields wait for the reveal, and saving leaves them as they are.
 */
function renderCaseEdit(c) {
  const masked = c.masked === true;
  fillSelect($('ce-risk'), enumOptions(RISKS, 'risk'), c.risk);
  $('ce-plan').value = masked ? '' : c.response_plan || '';
  $('ce-plan').placeholder = masked ? t(maskedKey(c.person, 'plan_masked')) : '';
  relativesEditors.edit.set(masked ? [] : c.relatives || []);
  const note = $('ce-masked-note');
  note.hidden = !masked;
  setNote(note, maskedKey(c.person, 'case_masked_edit'));
  const closed = Boolean(c.closed_at);
  // Closed, or read by an investigator: shown, not changed.
  const locked = closed || readOnly();
  for (const node of $('case-edit-form').elements) node.disabled = locked;
  $('case-edit-form').querySelector('.btn-row').hidden = readOnly();
  $('ce-relative-add').hidden = readOnly();
  if (masked) {
    $('ce-plan').disabled = true;
    for (const node of $('case-edit-form').querySelectorAll('.relatives-field button, .relatives-field input')) {
      node.disabled = true;
    }
  }
  $('case-close-btn').hidden = closed;
  $('case-close-confirm').hidden = true;
  $('order-new-btn').hidden = locked;
  $('issue-form').hidden = locked;
}

async function onCaseEditSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  const plan = $('ce-plan').value.trim();
  const body = { risk: $('ce-risk').value };
  if (state.caseDetail.masked !== true) {
    body.response_plan = plan || null;
    body.relatives = relativesEditors.edit.get();
  }
  await busy(form, async () => {
    try {
      await api('PATCH', `/api/cases/${encodeURIComponent(state.caseDetail.id)}`, body);
      showOk(t('msg_case_saved'));
      await loadCase(state.caseDetail.id);
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

/** Closing takes two clicks: it ends alerting for every device of the case. */
function onCaseCloseAsk() {
  $('case-close-btn').hidden = true;
  $('case-close-confirm').hidden = false;
  $('case-close-confirm').focus();
}

async function onCaseCloseConfirm() {
  try {
    await api('POST', `/api/cases/${encodeURIComponent(state.caseDetail.id)}/close`, {});
    showOk(t('msg_case_closed'));
    await loadCase(state.caseDetail.id);
  } catch (err) {
    showError(err.message);
  }
}

// ------------------------------------------------------------- assessments

/** Today and the last day a review may be set, as the server counts days (UTC). */
function reviewDateBounds() {
  const now = new Date();
  const latest = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + REVIEW_WITHIN_MONTHS, now.getUTCDate()));
  // 29 February plus two years has no 29th: the last day of February, as the server says.
  if (latest.getUTCDate() !== now.getUTCDate()) latest.setUTCDate(0);
  return { min: now.toISOString().slice(0, 10), max: latest.toISOString().slice(0, 10) };
}

function renderCaseAssessments(c) {
  const form = $('assessment-form');
  form.hidden = Boolean(c.closed_at) || readOnly();
  // Drawn again on every change of language: what is typed stays.
  fillSelect($('as-method'), enumOptions(METHODS, 'method'));
  fillSelect($('as-risk'), enumOptions(RISKS, 'risk'), $('as-risk').value || c.risk);
  const { min, max } = reviewDateBounds();
  $('as-next-review').min = min;
  $('as-next-review').max = max;

  const items = Array.isArray(state.caseAssessments) ? state.caseAssessments : [];
  const list = $('c-assessments');
  list.replaceChildren();
  items.forEach((a, i) => list.append(assessmentItem(a, i === 0 && !c.closed_at, min)));
  $('c-assessments-empty').hidden = items.length > 0;
  $('c-assessments-masked').hidden = !items.some((a) => a.masked === true);
  setNote($('c-assessments-masked'), maskedKey(c.person, 'assessments_masked'));
}

function assessmentItem(a, latest, today) {
  const li = el('li');
  const head = el('div', 'assessment-head');
  head.append(
    el('h4', null, tEnum('method', a.method)),
    el('span', 'tag tag-info', t('assessment_risk', { from: tEnum('risk', a.previous_risk), to: tEnum('risk', a.risk) })),
  );
  // Only the latest assessment's review counts: a newer one replaced the others'.
  if (latest && a.next_review && a.next_review < today) head.append(el('span', 'tag tag-warn', t('assessment_review_passed')));
  li.append(head);
  const meta = [t('assessment_by', { at: fmtTime(a.assessed_at), by: a.assessed_by || t('actor_system') })];
  if (a.next_review) meta.push(t('assessment_next_review', { date: a.next_review }));
  li.append(el('p', 'muted', meta.join(' · ')));
  const factors = Array.isArray(a.factors) ? a.factors : [];
  if (factors.length > 0) {
    const ul = el('ul');
    ul.setAttribute('aria-label', t('f_factors_short'));
    for (const f of factors) ul.append(el('li', null, f));
    li.append(ul);
  } else if (a.method === 'other' && !a.masked && !a.summary) {
    li.append(el('p', 'muted', t('assessment_case_change')));
  }
  if (a.summary) li.append(el('p', null, a.summary));
  return li;
}

/** An empty form, whose risk starts at the case's when next drawn. */
function resetAssessmentForm() {
  $('assessment-form').reset();
  clearFormErrors($('assessment-form'));
  $('as-risk').replaceChildren();
}

async function onAssessmentSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('as-next-review'), $('as-factors')])) return;
  const body = {
    method: $('as-method').value,
    risk: $('as-risk').value,
    factors: $('as-factors').value.split('\n').map((f) => f.trim()).filter(Boolean),
    next_review: $('as-next-review').value,
  };
  const summary = $('as-summary').value.trim();
  if (summary) body.summary = summary;
  await busy(form, async () => {
    try {
      await api('POST', `/api/cases/${encodeURIComponent(state.caseDetail.id)}/assessments`, body);
      showOk(t('msg_assessment_saved'));
      resetAssessmentForm();
      await loadCase(state.caseDetail.id);
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ------------------------------------------------------------------ orders

function renderCaseOrders(c) {
  const box = $('c-orders');
  box.replaceChildren();
  const orders = Array.isArray(c.orders) ? c.orders : [];
  $('c-orders-empty').hidden = orders.length > 0;
  for (const order of orders) box.append(orderCard(order, c));
}

function orderCard(order, c) {
  const card = el('article', 'order-card');
  const head = el('div', 'order-card-head');
  const title = el('h3', null, order.restrained && order.restrained.name);
  head.append(title, el('span', order.in_force ? 'tag tag-ok' : 'tag tag-muted', t(order.in_force ? 'order_in_force' : 'order_not_in_force')));
  const dl = el('dl', 'kv');
  const zones = Array.isArray(order.zones) ? order.zones : [];
  fillDl(dl, [
    ['f_order_kind', tEnum('order', order.kind)],
    ['f_description', order.restrained && order.restrained.description],
    ['f_vehicle', order.restrained && order.restrained.vehicle],
    ['f_valid', t('valid_range', { from: fmtTime(order.valid_from), to: fmtTime(order.valid_to) })],
    ['f_zones', zones.map((z) => zoneText(z)).join('; ')],
    ['f_tag', order.tag_device_id],
  ]);
  const edit = button(t('order_edit'), 'btn btn-small', () => openOrderForm({ mode: 'edit', order }));
  edit.setAttribute('aria-label', t('order_edit_named', { name: (order.restrained && order.restrained.name) || '' }));
  edit.hidden = Boolean(c.closed_at) || readOnly();
  card.append(head, dl, orderMiniMap(order, c.person), edit);
  return card;
}

function zoneText(zone) {
  if (zone.masked === true) return t('zone_masked_text', { name: zone.name });
  const r = Number(zone.radius_m);
  return Number.isFinite(r) && r > 0 ? t('zone_circle_text', { name: zone.name, r: Math.round(r) }) : zone.name;
}

/** A small read-only map of the order's zones and the address. */
function orderMiniMap(order, person) {
  const box = el('div', 'map mini-map');
  const { zones } = collectZones([order]);
  const addr = person && person.address ? [person.address.lon, person.address.lat] : null;
  const points = zonePoints(zones);
  if (addr) points.push({ c: addr });
  if (points.length === 0) return box;
  const W = 420;
  const H = 220;
  const view = fitView(points, { W, H, pad: 30 });
  const root = mapRoot(t('order_map_title', { name: (order.restrained && order.restrained.name) || '' }), { W, H });
  drawTiles(root, view, state.tileUrl);
  if (!state.tileUrl) drawGrid(root, view);
  zones.forEach((z) => drawZone(root, view, z));
  if (addr) drawAddress(root, view, addr);
  drawNorthArrow(root, view);
  drawScaleBar(root, view);
  box.append(root);
  return box;
}

function openOrderForm(editing) {
  const c = state.caseDetail;
  state.orderEditing = editing;
  const order = editing.mode === 'edit' ? editing.order : null;
  const form = $('order-form');
  clearFormErrors(form);
  $('order-panel').hidden = false;
  $('h-order-form').textContent = order ? t('order_edit_heading', { name: order.restrained.name }) : t('order_new_heading');
  $('of-submit').textContent = order ? t('save') : t('order_create');
  fillSelect($('of-kind'), enumOptions(ORDER_KINDS, 'order'), order ? order.kind : 'contact_ban');
  const tags = state.devices.filter((d) => d.kind === 'tag');
  fillSelect($('of-tag'), [{ value: '', label: t('none') }, ...tags.map((d) => ({ value: d.id, label: d.id }))],
    order && order.tag_device_id ? order.tag_device_id : '');
  syncTagField();
  $('of-name').value = order ? order.restrained.name || '' : '';
  $('of-description').value = order ? order.restrained.description || '' : '';
  $('of-vehicle').value = order ? order.restrained.vehicle || '' : '';
  const now = Date.now();
  $('of-from').value = toLocalInput(order ? order.valid_from : new Date(now).toISOString());
  $('of-to').value = toLocalInput(order ? order.valid_to : new Date(now + YEAR_MS).toISOString());
  const address = c.person && c.person.address && !c.person.masked ? c.person.address : null;
  if (order && order.zones_masked === true) {
    // Where the zones lie is withheld until the case is revealed: they are kept as they are.
    state.zoneEditor = null;
    $('of-zones').replaceChildren(el('p', 'zone-note', t('zones_masked_edit')));
  } else {
    state.zoneEditor = createZoneEditor($('of-zones'), {
      zones: order ? order.zones : [],
      reference: address,
      tileUrl: state.tileUrl,
    });
    // Zones are usually drawn around the home: say why it is not on the map.
    if (c.person && c.person.masked) {
      $('of-zones').prepend(el('p', 'zone-note', t('zone_address_hidden')));
    }
  }
  $('order-panel').scrollIntoView({ block: 'start' });
  $('of-name').focus({ preventScroll: true });
}

function closeOrderForm() {
  state.orderEditing = null;
  state.zoneEditor = null;
  $('order-panel').hidden = true;
  $('of-zones').replaceChildren();
}

/** The tag is only for a specially extended order (electronic monitoring). */
function syncTagField() {
  const special = $('of-kind').value === 'special_extended';
  $('of-tag').closest('.field').hidden = !special;
  if (!special) $('of-tag').value = '';
}

async function onOrderSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('of-name'), $('of-from'), $('of-to')])) return;
  const validFrom = fromLocalInput($('of-from').value);
  const validTo = fromLocalInput($('of-to').value);
  if (validFrom && validTo && validTo <= validFrom) {
    showFieldError(form, $('of-to'), t('err_valid_to'));
    return;
  }
  const zoneProblem = state.zoneEditor ? state.zoneEditor.validate() : null;
  if (zoneProblem) {
    showFormError(form, t(zoneProblem));
    return;
  }
  const restrained = { name: $('of-name').value.trim() };
  if ($('of-description').value.trim()) restrained.description = $('of-description').value.trim();
  if ($('of-vehicle').value.trim()) restrained.vehicle = $('of-vehicle').value.trim();
  const body = {
    kind: $('of-kind').value,
    restrained,
    valid_from: validFrom,
    valid_to: validTo,
    zones: state.zoneEditor ? state.zoneEditor.getZones() : undefined,
    tag_device_id: $('of-tag').value || null,
  };
  const editing = state.orderEditing;
  await busy(form, async () => {
    try {
      if (editing && editing.mode === 'edit') {
        await api('PATCH', `/api/orders/${encodeURIComponent(editing.order.id)}`, body);
        showOk(t('msg_order_saved'));
      } else {
        if (!body.tag_device_id) delete body.tag_device_id;
        await api('POST', `/api/cases/${encodeURIComponent(state.caseDetail.id)}/orders`, body);
        showOk(t('msg_order_created'));
      }
      closeOrderForm();
      await loadCase(state.caseDetail.id);
      $('h-c-orders').scrollIntoView({ block: 'start' });
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ------------------------------------------------------------ case devices

function renderCaseDevices(c) {
  const body = $('c-devices-body');
  body.replaceChildren();
  const devices = (Array.isArray(c.devices) ? c.devices : []).filter((d) => d.status === 'issued');
  for (const d of devices) {
    const tr = el('tr');
    const ret = button(t('device_return'), 'btn btn-small', () => {
      location.hash = '#/devices';
      setTimeout(() => openDeviceAction('return', d), 0);
    });
    ret.setAttribute('aria-label', t('device_return_named', { id: d.id }));
    ret.hidden = readOnly();
    tr.append(
      td(deviceCell(d)),
      td(holderLabel(d.holder_person_id, c)),
      td(connectionCell(d.health)),
      td(batteryText(d.health)),
      td(ret),
    );
    body.append(tr);
  }
  $('c-devices-empty').hidden = devices.length > 0;
  prepareIssueForm(c);
}

/** The device id with its kind beneath: one column instead of two. */
function deviceCell(d) {
  const box = el('span', 'device-cell');
  box.append(el('code', null, d.id), el('span', 'sub muted', tEnum('devkind', d.kind)));
  return box;
}

function holderLabel(personId, c) {
  if (!personId) return t('dash');
  if (c && personId === c.person_id) return t('holder_protected_person');
  return personLabel(personById(personId));
}

function prepareIssueForm(c) {
  const inStock = state.devices.filter((d) => d.status === 'in_stock');
  fillSelect($('issue-device'), [
    { value: '', label: inStock.length ? t('choose') : t('no_devices_in_stock') },
    ...inStock.map((d) => ({ value: d.id, label: `${d.id} (${tEnum('devkind', d.kind)})` })),
  ]);
  fillSelect($('issue-holder'), holderOptions(c), c.person_id);
}

/** The case's protected person first, then everyone else in the region. */
function holderOptions(c) {
  const others = state.persons.filter((p) => p.id !== c.person_id);
  return [
    { value: c.person_id, label: `${personLabel(c.person || personById(c.person_id))} – ${t('holder_case_person')}` },
    ...others.map((p) => ({ value: p.id, label: personLabel(p) })),
  ];
}

async function onIssueSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('issue-device')])) return;
  const deviceId = $('issue-device').value;
  await busy(form, async () => {
    try {
      await api('POST', `/api/devices/${encodeURIComponent(deviceId)}/issue`, {
        case_id: state.caseDetail.id,
        holder_person_id: $('issue-holder').value,
      });
      showOk(t('msg_device_issued', { id: deviceId, ref: state.caseDetail.reference }));
      await loadLists({ devices: true });
      await loadCase(state.caseDetail.id);
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ---------------------------------------------------------------------------
// Persons
// ---------------------------------------------------------------------------

async function showPersonsPage() {
  await Promise.all([loadLists({ persons: true }), loadRegions()]);
  renderPersons();
  preparePersonForm();
}

function renderPersons() {
  const body = $('persons-body');
  body.replaceChildren();
  for (const p of state.persons) {
    const tr = el('tr');
    const name = el('span', null, personLabel(p));
    const nameCell = td(name);
    // A masked name already says "protected identity"; a shown one gets the tag.
    if (p.protected_identity && !p.masked) nameCell.append(' ', el('span', 'tag tag-warn', t('protected_tag')));
    const newCase = button(t('person_new_case'), 'btn btn-small', () => {
      state.prefillPersonId = p.id;
      location.hash = '#/cases';
    });
    newCase.setAttribute('aria-label', t('person_new_case_named', { name: personLabel(p) }));
    tr.append(
      nameCell,
      td(p.phone ? phoneLink(p.phone) : null),
      td(p.address && p.address.text),
      td(p.region || t('region_all')),
      td(newCase),
    );
    body.append(tr);
  }
  $('persons-empty').hidden = state.persons.length > 0;
}

function preparePersonForm() {
  $('pf-region-field').hidden = Boolean(state.user.region);
  fillSelect($('pf-region'), [{ value: '', label: t('region_national') }, ...regionOptions()]);
  // A map to click the address on is only useful with street tiles beneath.
  if (state.tileUrl && !state.pointPicker) {
    state.pointPicker = createPointPicker($('pf-map'), {
      tileUrl: state.tileUrl,
      onPick: (lat, lon) => {
        $('pf-lat').value = String(lat);
        $('pf-lon').value = String(lon);
      },
    });
  }
  $('pf-map').hidden = !state.tileUrl;
  document.querySelector('#person-form [data-i18n="address_pick_help"]').hidden = !state.tileUrl;
}

function onPersonCoordsTyped() {
  if (!state.pointPicker) return;
  state.pointPicker.set(parseDecimal($('pf-lat').value), parseDecimal($('pf-lon').value));
}

/**
 * Address position: both numbers or none; then the address text is needed too. The
 * position is read as coords.js reads it (either order, decimal comma, SWEREF 99 TM, or
 * a whole "lat, lon" pasted into the first field) and must lie in Sweden: zones are
 * drawn around it and alarms measured from it.
 */
function readAddress(form) {
  const text = $('pf-address').value.trim();
  const latText = $('pf-lat').value.trim();
  const lonText = $('pf-lon').value.trim();
  if (!latText && !lonText) {
    if (text) {
      showFieldError(form, $('pf-lat'), t('err_address_position'));
      return undefined;
    }
    return null;
  }
  const position = lonText ? parsePosition(`${latText} ${lonText}`) : parsePosition(latText);
  if (position.error) {
    const onlyLon = position.error === 'coords_unreadable' && latText && !Number.isFinite(parseDecimal(lonText));
    showFieldError(form, onlyLon ? $('pf-lon') : $('pf-lat'), t(position.error === 'coords_unreadable' ? 'err_lat' : position.error));
    return undefined;
  }
  // Show what was understood, so a swapped or converted position is seen before saving.
  $('pf-lat').value = String(position.lat);
  $('pf-lon').value = String(position.lon);
  if (!text) {
    showFieldError(form, $('pf-address'), t('err_address_text'));
    return undefined;
  }
  return { text, lat: position.lat, lon: position.lon };
}

/**
 * Whether the address text names the town its position lies in (the server checks it
 * against the offline place list). When it does not, says where the position is and
 * registers only once the coordinator confirms the position is right: zones are drawn
 * around it and every alarm is measured from it.
 */
async function addressNamesItsPlace(address) {
  const box = $('pf-place-check');
  const confirm = $('pf-place-confirm');
  const checked = `${address.text}|${address.lat}|${address.lon}`;
  if (box.dataset.checked === checked && !box.hidden) return confirm.checked;
  let result;
  try {
    result = await api('POST', '/api/places/address-check', address);
  } catch {
    return true; // the server checks the position itself; a failed warning must not block
  }
  box.dataset.checked = checked;
  if (result.names_place || !result.near) {
    box.hidden = true;
    return true;
  }
  const near = result.near;
  $('pf-place-text').textContent = t('place_check_mismatch', {
    place: near.municipality ? `${near.name}, ${near.municipality}` : near.name,
    d: fmtDistance(near.distance_m),
  });
  confirm.checked = false;
  box.hidden = false;
  confirm.focus();
  return false;
}

async function onPersonSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('pf-name')])) return;
  const address = readAddress(form);
  if (address === undefined) return;
  if (address && !(await addressNamesItsPlace(address))) return;
  const body = { name: $('pf-name').value.trim(), protected_identity: $('pf-protected').checked };
  if ($('pf-phone').value.trim()) body.phone = $('pf-phone').value.trim();
  if (address) body.address = address;
  if (!state.user.region && $('pf-region').value) body.region = $('pf-region').value;
  await busy(form, async () => {
    try {
      const created = await api('POST', '/api/persons', body);
      form.reset();
      $('pf-place-check').hidden = true;
      showOk(t('msg_person_created', { name: created.name }));
      await loadLists({ persons: true });
      renderPersons();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

async function showDevicesPage() {
  await loadLists({ persons: true, cases: true, devices: true });
  renderDevices();
  fillSelect($('df-kind'), enumOptions(DEVICE_KINDS, 'devkind'), $('df-kind').value || 'alarm');
}

function connectionCell(health) {
  const c = health && health.connection;
  return c ? el('span', `conn-state conn-state-${c}`, tEnum('devstatus', c)) : t('dash');
}

function batteryText(health) {
  if (!health || !Number.isFinite(health.battery)) return t('dash');
  return t(health.charging ? 'battery_pct_charging' : 'battery_pct', { n: health.battery });
}

/** "12 s ago", with the exact time on hover: a list is read for what is stale. */
function lastHeard(health) {
  const at = health && health.last_heard_at;
  if (!at) return t('dash');
  const span = el('span', 'when', t('ago', { age: fmtAge(nowMs() - timeMs(at)) }));
  span.title = fmtTime(at);
  return span;
}

const STATUS_TAG = { in_stock: 'tag-info', issued: 'tag-ok', returned: 'tag-muted', lost: 'tag-danger' };

function renderDevices() {
  const body = $('devices-body');
  body.replaceChildren();
  const list = [...state.devices].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  for (const d of list) {
    const tr = el('tr');
    const kase = d.case_id ? caseById(d.case_id) : null;
    let caseCell = t('dash');
    if (kase) {
      caseCell = el('a', null, kase.reference);
      caseCell.href = `#/cases/${encodeURIComponent(kase.id)}`;
    }
    tr.append(
      td(deviceCell(d)),
      td(statusCell(d)),
      td(caseCell),
      td(d.status === 'issued' ? connectionCell(d.health) : t('dash')),
      td(batteryText(d.health)),
      td(lastHeard(d.health)),
      td(deviceActions(d)),
    );
    body.append(tr);
  }
  $('devices-empty').hidden = list.length > 0;
}

function statusCell(d) {
  const cell = el('span', 'status-cell');
  cell.append(el('span', `tag ${STATUS_TAG[d.status] || 'tag-muted'}`, tEnum('devstatus', d.status)));
  if (d.key_rotation) {
    cell.append(' ', el('span', 'tag tag-warn', t('key_rotation_pending')));
  }
  return cell;
}

function deviceActions(d) {
  const box = el('span', 'row-actions');
  if (d.status === 'in_stock') {
    const issue = button(t('device_issue'), 'btn btn-small', () => openDeviceAction('issue', d));
    issue.setAttribute('aria-label', t('device_issue_named', { id: d.id }));
    box.append(issue);
  } else if (d.status === 'issued') {
    const ret = button(t('device_return'), 'btn btn-small', () => openDeviceAction('return', d));
    ret.setAttribute('aria-label', t('device_return_named', { id: d.id }));
    box.append(ret);
  }
  if (d.status === 'in_stock' || d.status === 'issued') {
    const rotate = button(t('device_rotate'), 'btn btn-small', () => rotateDeviceKey(d));
    rotate.setAttribute('aria-label', t('device_rotate_named', { id: d.id }));
    box.append(rotate);
  }
  return box;
}

/**
 * A new key for the device. The device gets it by itself in its signed configuration; the
 * key is still shown once, for re-programming a device that lost its memory.
 */
async function rotateDeviceKey(d) {
  if (!window.confirm(t('device_rotate_confirm', { id: d.id }))) return;
  try {
    const rotated = await api('POST', `/api/devices/${encodeURIComponent(d.id)}/rotate-key`);
    showDeviceKey(rotated, true);
    showOk(t('msg_key_rotated', { id: d.id }));
    await loadLists({ devices: true });
    renderDevices();
  } catch (err) {
    showError(err.message || String(err));
  }
}

async function onDeviceSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('df-id')])) return;
  const body = { id: $('df-id').value.trim(), kind: $('df-kind').value };
  if ($('df-model').value.trim()) body.model = $('df-model').value.trim();
  if ($('df-hb').value.trim()) body.hb_interval_s = Number($('df-hb').value);
  await busy(form, async () => {
    try {
      const created = await api('POST', '/api/devices', body);
      form.reset();
      showDeviceKey(created);
      await loadLists({ devices: true });
      renderDevices();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

/** The key exists on screen only until the coordinator says it is noted. */
function showDeviceKey(created, rotated = false) {
  state.shownKey = created.key;
  $('device-key-help').textContent = t(rotated ? 'device_key_rotated_help' : 'device_key_help');
  $('device-key-id').textContent = t('device_key_for', { id: created.id });
  $('device-key').textContent = created.key;
  $('device-key-box').hidden = false;
  $('device-key-done').focus();
}

function hideDeviceKey() {
  state.shownKey = null;
  $('device-key').textContent = '';
  $('device-key-box').hidden = true;
  $('df-id').focus();
}

async function copyDeviceKey() {
  try {
    await navigator.clipboard.writeText(state.shownKey || '');
    showOk(t('msg_copied'));
  } catch {
    // Clipboard refused (no permission or no HTTPS): select it for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents($('device-key'));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    showOk(t('msg_copy_manually'));
  }
}

function openDeviceAction(kind, device) {
  state.deviceAction = { kind, device };
  $('device-action-panel').hidden = false;
  $('dev-issue-form').hidden = kind !== 'issue';
  $('dev-return-form').hidden = kind !== 'return';
  clearFormErrors($('dev-issue-form'));
  clearFormErrors($('dev-return-form'));
  $('h-device-action').textContent = t(kind === 'issue' ? 'device_issue_heading' : 'device_return_heading', { id: device.id });
  if (kind === 'issue') {
    const open = state.cases.filter((c) => !c.closed_at);
    fillSelect($('di-case'), [{ value: '', label: t('choose') }, ...open.map((c) => ({ value: c.id, label: c.reference }))], '');
    syncIssueHolder();
    $('di-case').focus();
  } else {
    $('dr-reason').value = '';
    $('dr-lost').checked = false;
    $('dr-reason').focus();
  }
  $('device-action-panel').scrollIntoView({ block: 'nearest' });
}

function closeDeviceAction() {
  state.deviceAction = null;
  $('device-action-panel').hidden = true;
}

/** Choosing a case proposes its protected person as the holder. */
function syncIssueHolder() {
  const c = caseById($('di-case').value);
  if (!c) {
    fillSelect($('di-holder'), [{ value: '', label: t('choose_case_first') }], '');
    return;
  }
  fillSelect($('di-holder'), holderOptions(c), c.person_id);
}

async function onDevIssueSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('di-case'), $('di-holder')])) return;
  const { device } = state.deviceAction;
  const c = caseById($('di-case').value);
  await busy(form, async () => {
    try {
      await api('POST', `/api/devices/${encodeURIComponent(device.id)}/issue`, {
        case_id: c.id,
        holder_person_id: $('di-holder').value,
      });
      showOk(t('msg_device_issued', { id: device.id, ref: c.reference }));
      closeDeviceAction();
      await loadLists({ devices: true });
      renderDevices();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

async function onDevReturnSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('dr-reason')])) return;
  const { device } = state.deviceAction;
  await busy(form, async () => {
    try {
      await api('POST', `/api/devices/${encodeURIComponent(device.id)}/return`, {
        reason: $('dr-reason').value.trim(),
        lost: $('dr-lost').checked,
      });
      showOk(t('msg_device_returned', { id: device.id }));
      closeDeviceAction();
      await loadLists({ devices: true });
      renderDevices();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

// ---------------------------------------------------------------------------
// Users (admin)
// ---------------------------------------------------------------------------

async function showUsersPage() {
  fillSelect($('uf-role'), enumOptions(ROLES, 'role'), $('uf-role').value || 'officer');
  await loadRegions();
  fillSelect($('uf-region'), [{ value: '', label: t('region_national') }, ...regionOptions()]);
  const users = await apiOptional('GET', '/api/users');
  state.users = Array.isArray(users) ? users : [];
  renderUsers();
}

function renderUsers() {
  const body = $('users-body');
  body.replaceChildren();
  for (const u of state.users) {
    const tr = el('tr');
    tr.append(td(u.username), td(tEnum('role', u.role)), td(u.region || t('region_all')));
    body.append(tr);
  }
}

async function onUserSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('uf-username'), $('uf-password')])) return;
  if ($('uf-password').value.length < 12) {
    showFieldError(form, $('uf-password'), t('password_help'));
    return;
  }
  const body = { username: $('uf-username').value.trim(), password: $('uf-password').value, role: $('uf-role').value };
  if ($('uf-region').value) body.region = $('uf-region').value;
  await busy(form, async () => {
    try {
      const created = await api('POST', '/api/users', body);
      form.reset();
      showOk(t('msg_user_created', { user: created.username }));
      await showUsersPage();
      if (created.totp_uri) showUserTotp(created);
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

/** A coordinator's or admin's second factor, shown once like a device key. */
function showUserTotp(created) {
  const secret = /[?&]secret=([A-Z2-7]+)/i.exec(created.totp_uri);
  $('user-totp-title').textContent = t('user_totp_title', { user: created.username });
  $('user-totp-secret').textContent = secret ? secret[1].replace(/(.{4})/g, '$1 ').trim() : t('dash');
  $('user-totp-uri').textContent = created.totp_uri;
  $('user-totp-box').hidden = false;
  $('user-totp-done').focus();
}

function hideUserTotp() {
  $('user-totp-secret').textContent = '';
  $('user-totp-uri').textContent = '';
  $('user-totp-box').hidden = true;
  $('uf-username').focus();
}

// ---------------------------------------------------------------------------
// Regions: the list persons, cases and users are placed in (admins edit it)
// ---------------------------------------------------------------------------

async function loadRegions() {
  const list = await api('GET', '/api/regions');
  state.regions = Array.isArray(list) ? list : [];
}

/** The regions in force, as choices for a form; retired ones take no new data. */
function regionOptions() {
  return state.regions.filter((r) => !r.retired).map((r) => ({ value: r.name, label: r.name }));
}

async function showRegionsPage() {
  await loadRegions();
  renderRegions();
  const all = state.regions.map((r) => ({ value: r.code, label: r.retired ? `${r.name} (${t('region_retired')})` : r.name }));
  fillSelect($('rr-region'), all);
  fillSelect($('ar-region'), all);
  syncAreaForm();
}

function renderRegions() {
  const body = $('regions-body');
  body.replaceChildren();
  for (const r of state.regions) {
    const tr = el('tr');
    const name = td(el('span', 'strong', r.name));
    if (r.retired) name.append(' ', el('span', 'tag tag-muted', t('region_retired')));
    const list = el('span', null);
    r.local_areas.forEach((a, i) => {
      if (i > 0) list.append(', ');
      list.append(a.retired ? el('s', 'muted', a.name) : a.name);
    });
    const areas = td(list);
    const toggle = button(t(r.retired ? 'region_reinstate' : 'region_retire'), 'btn btn-small', () => changeRegion(r, { retired: !r.retired }));
    toggle.setAttribute('aria-label', t(r.retired ? 'region_reinstate_named' : 'region_retire_named', { name: r.name }));
    tr.append(name, td(el('code', null, r.code)), areas, td(toggle));
    body.append(tr);
  }
}

async function changeRegion(region, change) {
  hideError();
  try {
    await api('PATCH', `/api/regions/${encodeURIComponent(region.code)}`, change);
    showOk(t('msg_region_saved'));
    await showRegionsPage();
  } catch (err) {
    showError(err.message);
  }
}

async function onRegionSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('rf-name')])) return;
  const body = { name: $('rf-name').value.trim() };
  if ($('rf-code').value.trim()) body.code = $('rf-code').value.trim();
  await busy(form, async () => {
    try {
      const created = await api('POST', '/api/regions', body);
      form.reset();
      showOk(t('msg_region_created', { name: created.name }));
      await showRegionsPage();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

async function onRegionRenameSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('rr-name')])) return;
  await busy(form, async () => {
    try {
      await api('PATCH', `/api/regions/${encodeURIComponent($('rr-region').value)}`, { name: $('rr-name').value.trim() });
      form.reset();
      showOk(t('msg_region_saved'));
      await showRegionsPage();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

/** The area form adds a new area, or renames and retires the one chosen. */
function syncAreaForm() {
  const region = state.regions.find((r) => r.code === $('ar-region').value);
  const areas = region ? region.local_areas : [];
  fillSelect($('ar-area'), [
    { value: '', label: t('area_new_option') },
    ...areas.map((a) => ({ value: a.code, label: a.retired ? `${a.name} (${t('region_retired')})` : a.name })),
  ]);
  syncAreaButtons();
}

function chosenArea() {
  const region = state.regions.find((r) => r.code === $('ar-region').value);
  return region && region.local_areas.find((a) => a.code === $('ar-area').value);
}

function syncAreaButtons() {
  const area = chosenArea();
  $('ar-submit').textContent = t(area ? 'region_rename' : 'area_add');
  $('ar-retire').hidden = !area;
  if (area) $('ar-retire').textContent = t(area.retired ? 'region_reinstate' : 'region_retire');
  $('ar-name').value = area ? area.name : '';
}

function areaPath(code) {
  return `/api/regions/${encodeURIComponent($('ar-region').value)}/local-areas${code ? `/${encodeURIComponent(code)}` : ''}`;
}

async function onAreaSubmit(event) {
  event.preventDefault();
  const form = event.target;
  clearFormErrors(form);
  if (!requireFields(form, [$('ar-name')])) return;
  const area = chosenArea();
  const name = $('ar-name').value.trim();
  await busy(form, async () => {
    try {
      if (area) await api('PATCH', areaPath(area.code), { name });
      else await api('POST', areaPath(null), { name });
      showOk(t('msg_area_saved'));
      await showRegionsPage();
    } catch (err) {
      reportFormError(form, err);
    }
  });
}

async function onAreaRetire() {
  const area = chosenArea();
  if (!area) return;
  hideError();
  try {
    await api('PATCH', areaPath(area.code), { retired: !area.retired });
    showOk(t('msg_area_saved'));
    await showRegionsPage();
  } catch (err) {
    showError(err.message);
  }
}

// ---------------------------------------------------------------------------
// Language and start-up
// ---------------------------------------------------------------------------

function onLanguageChange(event) {
  setLang(event.target.value);
  renderUser();
  $('login-submit').textContent = t('login_submit');
  // Typed relatives stay; their labels are redrawn in the new language.
  relativesEditors.create.set(relativesEditors.create.get());
  // Everything drawn by script is drawn again in the new language.
  state.pointPicker = null;
  $('pf-map').replaceChildren();
  const editing = state.orderEditing;
  route().then(() => { if (editing && state.caseDetail) openOrderForm(editing); });
}

function wireEvents() {
  relativesEditors.create = createRelativesEditor($('case-relatives'), $('case-relative-add'), []);
  relativesEditors.edit = createRelativesEditor($('ce-relatives'), $('ce-relative-add'), []);
  $('lang-select').addEventListener('change', onLanguageChange);
  wireLoginForm(startSession);
  $('logout-btn').addEventListener('click', onLogout);
  $('flash-error-close').addEventListener('click', hideError);
  window.addEventListener('hashchange', route);
  $('cases-show-closed').addEventListener('change', renderCases);
  $('case-form').addEventListener('submit', onCaseSubmit);
  $('c-reveal-form').addEventListener('submit', onCaseReveal);
  $('case-edit-form').addEventListener('submit', onCaseEditSubmit);
  $('assessment-form').addEventListener('submit', onAssessmentSubmit);
  $('case-close-btn').addEventListener('click', onCaseCloseAsk);
  $('case-close-confirm').addEventListener('click', onCaseCloseConfirm);
  $('order-new-btn').addEventListener('click', () => openOrderForm({ mode: 'new' }));
  $('of-cancel').addEventListener('click', () => {
    closeOrderForm();
    $('order-new-btn').focus();
  });
  $('of-kind').addEventListener('change', syncTagField);
  $('order-form').addEventListener('submit', onOrderSubmit);
  $('issue-form').addEventListener('submit', onIssueSubmit);
  $('person-form').addEventListener('submit', onPersonSubmit);
  $('pf-lat').addEventListener('change', onPersonCoordsTyped);
  $('pf-lon').addEventListener('change', onPersonCoordsTyped);
  $('devices-refresh').addEventListener('click', () => showDevicesPage().catch((err) => showError(err.message)));
  $('device-form').addEventListener('submit', onDeviceSubmit);
  $('device-key-copy').addEventListener('click', copyDeviceKey);
  $('device-key-done').addEventListener('click', hideDeviceKey);
  $('di-case').addEventListener('change', syncIssueHolder);
  $('dev-issue-form').addEventListener('submit', onDevIssueSubmit);
  $('dev-return-form').addEventListener('submit', onDevReturnSubmit);
  for (const node of document.querySelectorAll('.dev-action-cancel')) node.addEventListener('click', closeDeviceAction);
  $('user-form').addEventListener('submit', onUserSubmit);
  $('user-totp-done').addEventListener('click', hideUserTotp);
  $('region-form').addEventListener('submit', onRegionSubmit);
  $('region-rename-form').addEventListener('submit', onRegionRenameSubmit);
  $('area-form').addEventListener('submit', onAreaSubmit);
  $('ar-region').addEventListener('change', syncAreaForm);
  $('ar-area').addEventListener('change', syncAreaButtons);
  $('ar-retire').addEventListener('click', onAreaRetire);
}

async function boot() {
  applyStatic(document);
  $('lang-select').value = getLang();
  document.title = t('admin_title');
  setUnauthorizedHandler(onSessionExpired);
  wireEvents();
  try {
    startSession(await api('GET', '/api/me'));
  } catch (err) {
    showLoginView(err.status === 401 ? '' : err.message);
  }
}

boot();
