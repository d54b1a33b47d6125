// User-visible text of the duty-officer console, in Swedish and English.
//
// Both tables must have exactly the same keys. Placeholders are written
// {name} and filled by t(key, {name: value}). Enumerations from the API
// (alert kinds, risk levels, ...) are looked up as `<prefix>_<value>` by
// tEnum(), which falls back to the raw value for anything unknown.
//
// Language: stored choice, else navigator.language (sv* → Swedish, else English).

const STORAGE_KEY = 'vakt.console.lang';

const STRINGS = {
  sv: {
    app_title: 'vakt – vakthavande',
    title_p1: '({n}) PRIO 1 – vakt',
    lang_label: 'Språk',
    loading: 'Laddar…',
    dash: '–',
    yes: 'Ja',
    no: 'Nej',
    dismiss: 'Stäng',

    login_heading: 'Logga in',
    login_username: 'Användarnamn',
    login_password: 'Lösenord',
    login_totp: 'Engångskod (om den krävs)',
    login_submit: 'Logga in',
    login_busy: 'Loggar in…',
    login_failed: 'Inloggningen misslyckades.',
    login_missing: 'Fyll i användarnamn och lösenord.',
    session_ended: 'Din session har upphört. Logga in igen.',
    logged_out: 'Du är utloggad.',
    logout: 'Logga ut',
    err_logout: 'Utloggningen misslyckades: {msg}',

    user_label: '{user} ({role})',
    user_region: 'Region: {region}',
    region_all: 'alla regioner',
    conn_connecting: 'Ansluter…',
    conn_live: 'Live',
    conn_lost: 'Förbindelsen bruten – återansluter…',
    conn_syncing: 'Återansluten – kontrollerar kön…',
    banner_lost: 'LIVEFÖRBINDELSEN ÄR BRUTEN – återansluter. Nya larm kan saknas tills den är återställd.',
    banner_syncing: 'Liveförbindelsen är återställd – kontrollerar kön…',
    banner_sync_failed: 'Liveförbindelsen är återställd men kön kunde inte hämtas – försöker igen…',
    counts_label: 'Öppna:',
    count_prio: 'Prio {p}: {n} öppna',
    count_prio_short: 'P{p}: {n}',
    count_acked: 'Kvitterade: {n}',
    sys_broker: 'Meddelandeserver',
    sys_database: 'Databas',
    sys_ok: 'OK',
    sys_down: 'NERE',
    sys_silent: 'Tysta enheter: {n}',

    sound_on: 'Ljud på',
    sound_off: 'Ljud av',
    sound_prompt: 'Ljudet är AV. Webbläsaren tillåter ljud först efter ett klick – slå på det så att nya prio 1-larm hörs.',
    sound_enable: 'Slå på ljud',
    sound_unavailable: 'Den här webbläsaren kan inte spela upp ljud.',

    queue_heading: 'Larmkö',
    queue_caption: 'Öppna och kvitterade larm, mest brådskande först',
    queue_hint: 'Tabb eller ↑/↓ flyttar · Enter: öppna · A: kvittera · R: avsluta',
    queue_empty: 'Inga öppna larm.',
    col_priority: 'Prio',
    col_kind: 'Typ',
    col_case: 'Ärende',
    col_risk: 'Risk',
    col_region: 'Region',
    col_age: 'Ålder',
    col_state: 'Status',
    col_count: 'Antal',
    priority_sr_prefix: 'Prioritet',
    overdue: 'FÖRSENAT',
    cancel_marker: 'Avbryt tryckt',
    acked_by: 'av {user}',
    age_s: '{s} s',
    age_min_s: '{m} min {s} s',
    age_h_min: '{h} tim {m} min',
    age_d_h: '{d} d {h} tim',

    notice_new_p1: 'NYTT PRIO 1-LARM:',
    notice_overdue: 'FÖRSENAT – EJ KVITTERAT:',
    notice_repeated: 'LARMET UPPREPAT:',
    notice_cancel: 'BÄRAREN TRYCKTE AVBRYT – verifiera genom återuppringning:',
    notice_text: 'prio {priority}, {kind}, ärende {case}, {region}',
    notice_open: 'Öppna',
    notice_dismiss: 'Dölj notisen',

    detail_heading: 'Larmdetaljer',
    detail_placeholder: 'Välj ett larm i kön för att se detaljerna.',
    detail_close: 'Stäng',
    detail_refresh: 'Uppdatera',
    detail_error: 'Larmet kunde inte hämtas: {msg}',
    detail_title: '{kind} – ärende {case}',
    detail_age: 'ålder {age}',
    detail_count: 'antal {n}',
    overdue_long: 'FÖRSENAT: larmet har inte kvitterats i tid.',
    cancel_long: 'Bäraren tryckte avbryt. Det stänger INTE larmet: verifiera genom återuppringning.',
    resolved_banner: 'Avslutat av {user} {at}: {outcome}',

    ack_note: 'Anteckning (valfri)',
    ack_submit: 'Kvittera (A)',
    resolve_outcome: 'Utfall',
    resolve_choose: '– välj utfall –',
    resolve_note: 'Anteckning (valfri)',
    resolve_submit: 'Avsluta (R)',
    resolve_need_outcome: 'Välj ett utfall innan larmet avslutas.',
    msg_acked: 'Larmet i ärende {case} är kvitterat.',
    msg_resolved: 'Larmet i ärende {case} är avslutat.',
    err_not_open: 'Larmet är inte öppet (redan kvitterat eller avslutat).',
    err_already_resolved: 'Larmet är redan avslutat.',

    sec_reasons: 'Varför denna prioritet',
    sec_case: 'Ärende',
    sec_plan: 'Insatsplan',
    sec_person: 'Skyddad person',
    sec_map: 'Lägesbild',
    sec_orders: 'Gällande kontaktförbud',
    sec_device: 'Enhet',
    sec_alert: 'Larm',
    sec_history: 'Historik',
    no_reasons: 'Inga skäl angivna.',
    no_plan: 'Ingen insatsplan registrerad.',
    no_device: 'Ingen information om enheten.',
    no_orders: 'Inga gällande kontaktförbud.',
    no_history: 'Ingen historik.',

    f_reference: 'Diarienummer',
    f_risk: 'Risknivå',
    f_region: 'Region',
    f_name: 'Namn',
    f_phone: 'Telefon',
    f_address: 'Adress',
    f_protected: 'Skyddad identitet',
    f_device_id: 'Enhets-id',
    f_device_kind: 'Typ',
    f_model: 'Modell',
    f_status: 'Status',
    f_last_heard: 'Senast hörd',
    f_battery: 'Batteri',
    f_alert_id: 'Larm-id',
    f_first_at: 'Första',
    f_last_at: 'Senaste',
    f_count: 'Antal',
    f_position: 'Position',
    f_acked: 'Kvitterat',
    f_resolved: 'Avslutat',
    f_outcome: 'Utfall',
    f_restrained: 'Förbudsperson',
    f_description: 'Signalement',
    f_valid: 'Giltigt',
    f_zones: 'Förbudsområden',
    f_order_id: 'Beslut',
    by_at: '{user}, {at}',
    valid_range: '{from} – {to}',
    battery_pct: '{n} %',
    position_fmt: '{lat}, {lon} (±{acc} m)',
    position_fmt_noacc: '{lat}, {lon}',
    position_none: 'Ingen position',
    actor_system: 'systemet',

    masked_note: 'Skyddad identitet: uppgifterna är dolda. Att visa dem loggas tillsammans med ditt skäl.',
    revealed_note: 'Skyddad identitet visas – denna visning är loggad.',
    reveal_still_masked: 'Uppgifterna är fortfarande dolda (ditt konto saknar behörighet).',
    reveal_button: 'Visa (ange skäl)',
    reveal_reason: 'Skäl till visningen',
    reveal_submit: 'Visa',
    reveal_cancel: 'Avbryt',
    reveal_need_reason: 'Ange ett skäl (minst 3 tecken).',

    map_title: 'Lägesbild, norr uppåt',
    map_empty: 'Ingen position, inga områden och ingen adress att rita.',
    map_north: 'N',
    map_alarm: 'Larm',
    map_address: 'Adress',
    dist_m: '{n} m',
    dist_km: '{n} km',
    legend_position: 'Larmets position, osäkerhet ±{acc} m',
    legend_position_noacc: 'Larmets position',
    legend_zone: 'Förbudsområde ”{name}”',
    legend_zone_circle: 'Förbudsområde ”{name}” (radie {r} m)',
    legend_zone_bad: 'Området ”{name}” kan inte ritas',
    legend_address: 'Folkbokförd/registrerad adress',
    legend_no_position: 'Larmet saknar position.',

    err_network: 'Servern går inte att nå.',
    err_timeout: 'Servern svarade inte i tid.',
    err_http: 'Begäran misslyckades (HTTP {status}).',
    err_bad_response: 'Oväntat svar från servern.',
    err_queue: 'Kön kunde inte uppdateras: {msg}',

    kind_panic: 'Överfallslarm',
    kind_fall: 'Fallarm',
    kind_tamper: 'Sabotage',
    kind_power_loss: 'Strömavbrott',
    kind_low_battery: 'Lågt batteri',
    kind_silent: 'Tyst enhet',
    kind_bad_signatures: 'Felaktiga signaturer',
    kind_tag_in_zone: 'Fotboja i förbudsområde',
    kind_tag_near: 'Fotboja nära skyddad person',
    kind_order_ending: 'Kontaktförbud upphör snart',

    risk_low: 'Låg',
    risk_medium: 'Medel',
    risk_high: 'Hög',
    risk_critical: 'Kritisk',

    state_open: 'Öppet',
    state_acknowledged: 'Kvitterat',
    state_resolved: 'Avslutat',

    outcome_police_dispatched: 'Polis skickad',
    outcome_false_alarm: 'Falsklarm',
    outcome_technical: 'Tekniskt fel',
    outcome_test: 'Test',
    outcome_other: 'Annat',

    order_contact_ban: 'Kontaktförbud',
    order_extended: 'Utvidgat kontaktförbud',
    order_special_extended: 'Särskilt utvidgat kontaktförbud',
    order_shared_residence: 'Kontaktförbud avseende gemensam bostad',

    role_officer: 'vakthavande',
    role_coordinator: 'samordnare',
    role_admin: 'administratör',

    devkind_alarm: 'Larmenhet',
    devkind_tag: 'Fotboja',
    devstatus_in_stock: 'I lager',
    devstatus_issued: 'Utlämnad',
    devstatus_returned: 'Återlämnad',
    devstatus_lost: 'Förlorad',
    devstatus_online: 'Uppkopplad',
    devstatus_silent: 'Tyst',
    devstatus_connection_lost: 'Anslutning bruten',
    devstatus_never_heard: 'Aldrig hörd',
    f_connection: 'Anslutning',
    f_signal: 'Signal',
    f_firmware: 'Programvara',
    battery_pct_charging: '{n} % (laddar)',
    rssi_dbm: '{n} dBm',

    action_opened: 'Larm öppnat',
    action_updated: 'Uppdaterat',
    action_repeated: 'Larmet upprepat',
    action_acknowledged: 'Kvitterat',
    action_resolved: 'Avslutat',
    action_overdue: 'Försenat',
    action_escalated: 'Prioritet höjd',
    action_cancel_pressed: 'Avbryt tryckt',
    action_reminder: 'Påminnelse',
    action_back_online: 'Enheten hörs igen',
    action_viewed: 'Visat',
    action_revealed: 'Skyddad identitet visad',
    action_note: 'Anteckning',
  },

  en: {
    app_title: 'vakt – duty officer',
    title_p1: '({n}) PRIORITY 1 – vakt',
    lang_label: 'Language',
    loading: 'Loading…',
    dash: '–',
    yes: 'Yes',
    no: 'No',
    dismiss: 'Dismiss',

    login_heading: 'Log in',
    login_username: 'Username',
    login_password: 'Password',
    login_totp: 'One-time code (if required)',
    login_submit: 'Log in',
    login_busy: 'Logging in…',
    login_failed: 'Login failed.',
    login_missing: 'Enter your username and password.',
    session_ended: 'Your session has ended. Please log in again.',
    logged_out: 'You are logged out.',
    logout: 'Log out',
    err_logout: 'Logging out failed: {msg}',

    user_label: '{user} ({role})',
    user_region: 'Region: {region}',
    region_all: 'all regions',
    conn_connecting: 'Connecting…',
    conn_live: 'Live',
    conn_lost: 'Connection lost – reconnecting…',
    conn_syncing: 'Reconnected – checking the queue…',
    banner_lost: 'LIVE CONNECTION LOST – reconnecting. New alerts may be missing until it is restored.',
    banner_syncing: 'Live connection restored – checking the queue…',
    banner_sync_failed: 'Live connection restored, but the queue could not be fetched – retrying…',
    counts_label: 'Open:',
    count_prio: 'Priority {p}: {n} open',
    count_prio_short: 'P{p}: {n}',
    count_acked: 'Acknowledged: {n}',
    sys_broker: 'Broker',
    sys_database: 'Database',
    sys_ok: 'OK',
    sys_down: 'DOWN',
    sys_silent: 'Silent devices: {n}',

    sound_on: 'Sound on',
    sound_off: 'Sound off',
    sound_prompt: 'Sound is OFF. Browsers only allow sound after a click – enable it so that new priority-1 alerts are heard.',
    sound_enable: 'Enable sound',
    sound_unavailable: 'This browser cannot play sound.',

    queue_heading: 'Alert queue',
    queue_caption: 'Open and acknowledged alerts, most urgent first',
    queue_hint: 'Tab or ↑/↓ to move · Enter: open · A: acknowledge · R: resolve',
    queue_empty: 'No open alerts.',
    col_priority: 'Prio',
    col_kind: 'Kind',
    col_case: 'Case',
    col_risk: 'Risk',
    col_region: 'Region',
    col_age: 'Age',
    col_state: 'State',
    col_count: 'Count',
    priority_sr_prefix: 'Priority',
    overdue: 'OVERDUE',
    cancel_marker: 'Cancel pressed',
    acked_by: 'by {user}',
    age_s: '{s} s',
    age_min_s: '{m} min {s} s',
    age_h_min: '{h} h {m} min',
    age_d_h: '{d} d {h} h',

    notice_new_p1: 'NEW PRIORITY 1 ALERT:',
    notice_overdue: 'OVERDUE – NOT ACKNOWLEDGED:',
    notice_repeated: 'ALARM REPEATED:',
    notice_cancel: 'HOLDER PRESSED CANCEL – verify by call-back:',
    notice_text: 'priority {priority}, {kind}, case {case}, {region}',
    notice_open: 'Open',
    notice_dismiss: 'Hide notice',

    detail_heading: 'Alert detail',
    detail_placeholder: 'Select an alert in the queue to see its details.',
    detail_close: 'Close',
    detail_refresh: 'Refresh',
    detail_error: 'Could not load the alert: {msg}',
    detail_title: '{kind} – case {case}',
    detail_age: 'age {age}',
    detail_count: 'count {n}',
    overdue_long: 'OVERDUE: this alert has not been acknowledged in time.',
    cancel_long: 'The holder pressed cancel. This does NOT close the alert: verify by call-back.',
    resolved_banner: 'Resolved by {user} at {at}: {outcome}',

    ack_note: 'Note (optional)',
    ack_submit: 'Acknowledge (A)',
    resolve_outcome: 'Outcome',
    resolve_choose: '– choose outcome –',
    resolve_note: 'Note (optional)',
    resolve_submit: 'Resolve (R)',
    resolve_need_outcome: 'Choose an outcome before resolving.',
    msg_acked: 'Alert for case {case} acknowledged.',
    msg_resolved: 'Alert for case {case} resolved.',
    err_not_open: 'This alert is not open (already acknowledged or resolved).',
    err_already_resolved: 'This alert is already resolved.',

    sec_reasons: 'Why this priority',
    sec_case: 'Case',
    sec_plan: 'Response plan',
    sec_person: 'Protected person',
    sec_map: 'Situation map',
    sec_orders: 'Active restraining orders',
    sec_device: 'Device',
    sec_alert: 'Alert',
    sec_history: 'History',
    no_reasons: 'No reasons given.',
    no_plan: 'No response plan recorded.',
    no_device: 'No device information.',
    no_orders: 'No active restraining orders.',
    no_history: 'No history.',

    f_reference: 'Reference',
    f_risk: 'Risk level',
    f_region: 'Region',
    f_name: 'Name',
    f_phone: 'Phone',
    f_address: 'Address',
    f_protected: 'Protected identity',
    f_device_id: 'Device ID',
    f_device_kind: 'Kind',
    f_model: 'Model',
    f_status: 'Status',
    f_last_heard: 'Last heard',
    f_battery: 'Battery',
    f_alert_id: 'Alert ID',
    f_first_at: 'First',
    f_last_at: 'Latest',
    f_count: 'Count',
    f_position: 'Position',
    f_acked: 'Acknowledged',
    f_resolved: 'Resolved',
    f_outcome: 'Outcome',
    f_restrained: 'Restrained person',
    f_description: 'Description',
    f_valid: 'Valid',
    f_zones: 'Exclusion zones',
    f_order_id: 'Order',
    by_at: '{user}, {at}',
    valid_range: '{from} – {to}',
    battery_pct: '{n} %',
    position_fmt: '{lat}, {lon} (±{acc} m)',
    position_fmt_noacc: '{lat}, {lon}',
    position_none: 'No position',
    actor_system: 'system',

    masked_note: 'Protected identity: the details are hidden. Revealing them is logged with your reason.',
    revealed_note: 'Protected identity shown – this view is logged.',
    reveal_still_masked: 'The details are still hidden (your account is not permitted to see them).',
    reveal_button: 'Reveal (state reason)',
    reveal_reason: 'Reason for viewing',
    reveal_submit: 'Reveal',
    reveal_cancel: 'Cancel',
    reveal_need_reason: 'State a reason (at least 3 characters).',

    map_title: 'Situation map, north up',
    map_empty: 'No position, zones or address to draw.',
    map_north: 'N',
    map_alarm: 'Alarm',
    map_address: 'Address',
    dist_m: '{n} m',
    dist_km: '{n} km',
    legend_position: 'Alarm position, accuracy ±{acc} m',
    legend_position_noacc: 'Alarm position',
    legend_zone: 'Exclusion zone “{name}”',
    legend_zone_circle: 'Exclusion zone “{name}” (radius {r} m)',
    legend_zone_bad: 'Zone “{name}” cannot be drawn',
    legend_address: 'Registered address',
    legend_no_position: 'The alert has no position.',

    err_network: 'Cannot reach the server.',
    err_timeout: 'The server did not answer in time.',
    err_http: 'Request failed (HTTP {status}).',
    err_bad_response: 'Unexpected answer from the server.',
    err_queue: 'Could not refresh the queue: {msg}',

    kind_panic: 'Panic',
    kind_fall: 'Fall',
    kind_tamper: 'Tamper',
    kind_power_loss: 'Power loss',
    kind_low_battery: 'Low battery',
    kind_silent: 'Silent device',
    kind_bad_signatures: 'Bad signatures',
    kind_tag_in_zone: 'Tag in exclusion zone',
    kind_tag_near: 'Tag near protected person',
    kind_order_ending: 'Order ending soon',

    risk_low: 'Low',
    risk_medium: 'Medium',
    risk_high: 'High',
    risk_critical: 'Critical',

    state_open: 'Open',
    state_acknowledged: 'Acknowledged',
    state_resolved: 'Resolved',

    outcome_police_dispatched: 'Police dispatched',
    outcome_false_alarm: 'False alarm',
    outcome_technical: 'Technical fault',
    outcome_test: 'Test',
    outcome_other: 'Other',

    order_contact_ban: 'Contact ban',
    order_extended: 'Extended contact ban',
    order_special_extended: 'Specially extended contact ban',
    order_shared_residence: 'Contact ban, shared residence',

    role_officer: 'duty officer',
    role_coordinator: 'coordinator',
    role_admin: 'administrator',

    devkind_alarm: 'Alarm device',
    devkind_tag: 'Monitoring tag',
    devstatus_in_stock: 'In stock',
    devstatus_issued: 'Issued',
    devstatus_returned: 'Returned',
    devstatus_lost: 'Lost',
    devstatus_online: 'Online',
    devstatus_silent: 'Silent',
    devstatus_connection_lost: 'Connection lost',
    devstatus_never_heard: 'Never heard',
    f_connection: 'Connection',
    f_signal: 'Signal',
    f_firmware: 'Firmware',
    battery_pct_charging: '{n} % (charging)',
    rssi_dbm: '{n} dBm',

    action_opened: 'Alert opened',
    action_updated: 'Updated',
    action_repeated: 'Alarm repeated',
    action_acknowledged: 'Acknowledged',
    action_resolved: 'Resolved',
    action_overdue: 'Overdue',
    action_escalated: 'Priority raised',
    action_cancel_pressed: 'Cancel pressed',
    action_reminder: 'Reminder',
    action_back_online: 'Device heard again',
    action_viewed: 'Viewed',
    action_revealed: 'Protected identity revealed',
    action_note: 'Note',
  },
};

const LOCALES = { sv: 'sv-SE', en: 'en-GB' };

function storedLang() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return value && Object.prototype.hasOwnProperty.call(STRINGS, value) ? value : null;
  } catch {
    return null; // storage disabled: fall back to the browser language
  }
}

function browserLang() {
  const nav = (typeof navigator !== 'undefined' && navigator.language) || '';
  return nav.toLowerCase().startsWith('sv') ? 'sv' : 'en';
}

let current = storedLang() || browserLang();
if (typeof document !== 'undefined') document.documentElement.lang = current;

export function getLang() {
  return current;
}

/** BCP 47 locale for Intl formatting of dates and numbers. */
export function locale() {
  return LOCALES[current];
}

/** Switches language, remembers it, and re-translates static markup. */
export function setLang(lang) {
  if (!Object.prototype.hasOwnProperty.call(STRINGS, lang)) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered, but still switched for this page.
  }
  document.documentElement.lang = lang;
  applyStatic(document);
}

/** Translated text for `key`, with {placeholders} filled from `vars`. */
export function t(key, vars) {
  const table = STRINGS[current];
  let text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : null;
  if (text === null) {
    console.warn(`i18n: missing key "${key}"`);
    text = key;
  }
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (
    Object.prototype.hasOwnProperty.call(vars, name) && vars[name] !== null && vars[name] !== undefined
      ? String(vars[name])
      : whole
  ));
}

/** Translation of an API enumeration value; unknown values are shown as they are. */
export function tEnum(prefix, value) {
  if (value === null || value === undefined || value === '') return t('dash');
  const key = `${prefix}_${value}`;
  return Object.prototype.hasOwnProperty.call(STRINGS[current], key) ? STRINGS[current][key] : String(value);
}

/**
 * Fills static markup: data-i18n="key" sets the text; data-i18n-attr=
 * "attr:key;attr2:key2" sets attributes (placeholder, aria-label, title).
 */
export function applyStatic(root) {
  for (const node of root.querySelectorAll('[data-i18n]')) {
    node.textContent = t(node.getAttribute('data-i18n'));
  }
  for (const node of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of node.getAttribute('data-i18n-attr').split(';')) {
      const [attr, key] = pair.split(':').map((s) => s.trim());
      if (attr && key) node.setAttribute(attr, t(key));
    }
  }
}
