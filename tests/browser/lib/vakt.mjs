// A real vakt for the browser tests: its own free ports, its own temporary
// data directory, users made with the `vakt` command line, cases seeded over
// the HTTP API, and alarms sent by the real firmware simulator over MQTT.

import { spawn, execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..', '..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(REPO, 'target');
export const VAKT_BIN = process.env.VAKT_BIN || join(TARGET, 'debug', 'vakt');
export const SIM_BIN = process.env.FIRMWARE_SIM_BIN || join(TARGET, 'debug', 'firmware-sim');

export const PASSWORD = 'correct horse battery staple';

/** A port nothing listens on right now (the OS picks it). */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

export async function waitFor(check, { timeoutMs = 15000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
}

/**
 * Starts `vakt serve` with `users` ([{username, role, region?}]) created
 * first, `toml` as its configuration file and `env` as extra VAKT_*
 * variables, if given. Returns a handle with the URL, an API client per user (bearer
 * tokens), alarm() to send a device message, and stop()/start().
 */
export async function startVakt({ users, toml = '', env: extraEnv = {} }) {
  const dir = await mkdtemp(join(tmpdir(), 'vakt-browser-'));
  // vakt reads ./vakt.toml from its working directory (e.g. shorter overdue times).
  if (toml) await writeFile(join(dir, 'vakt.toml'), toml);
  const httpPort = await freePort();
  const mqttPort = await freePort();
  const env = {
    ...process.env,
    VAKT_DATA_DIR: join(dir, 'data'),
    VAKT_HTTP_ADDR: `127.0.0.1:${httpPort}`,
    VAKT_MQTT_LISTEN: `127.0.0.1:${mqttPort}`,
    // firmware-sim keeps each device's boot counter here; fresh per run.
    XDG_STATE_HOME: join(dir, 'sim-state'),
    RUST_LOG: process.env.RUST_LOG || 'warn',
    ...extraEnv,
  };
  const tokens = {};
  const totpSecrets = {};
  for (const u of users) {
    const args = ['user', 'add', '--username', u.username, '--role', u.role];
    if (u.region) args.push('--region', u.region);
    const out = await runWithStdin(VAKT_BIN, args, `${PASSWORD}\n`, { env, cwd: dir });
    // Roles that need a second factor get an otpauth:// URI with the secret.
    const secret = /[?&]secret=([A-Z2-7]+)/i.exec(out);
    if (secret) totpSecrets[u.username] = secret[1];
    const { stdout } = await execFileP(VAKT_BIN, ['token', 'create', '--username', u.username], { env, cwd: dir });
    tokens[u.username] = stdout.trim().split('\n').pop().trim();
  }

  const usedSteps = {};
  const handle = {
    /**
     * A fresh one-time code for `username`, or '' when the user has no second
     * factor. The server takes each 30 s step once per user (and one step
     * ahead), so a second login within a step uses the next one.
     */
    async totp(username) {
      const secret = totpSecrets[username];
      if (!secret) return '';
      for (;;) {
        const now = Math.floor(Date.now() / 30000);
        const step = Math.max(now, (usedSteps[username] ?? -1) + 1);
        if (step <= now + 1) {
          usedSteps[username] = step;
          return totpCode(secret, step);
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    },
    dir,
    env,
    url: `http://127.0.0.1:${httpPort}`,
    mqttPort,
    proc: null,
    log: [],
    async start() {
      const proc = spawn(VAKT_BIN, ['serve'], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      handle.proc = proc;
      const keep = (chunk) => {
        handle.log.push(chunk.toString());
        if (handle.log.length > 5000) handle.log.shift();
      };
      proc.stdout.on('data', keep);
      proc.stderr.on('data', keep);
      await waitFor(async () => {
        if (proc.exitCode !== null) throw new Error(`vakt exited: ${handle.log.join('')}`);
        const res = await fetch(`${handle.url}/readyz`);
        return res.ok;
      }, { timeoutMs: 30000, what: 'vakt to be ready' });
    },
    /** SIGTERM, then SIGKILL if it lingers (open event streams can hold it up). */
    async stop({ graceMs = 3000 } = {}) {
      const proc = handle.proc;
      if (!proc || proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
    /** Dies at once, as in a crash or a cut cable. */
    async crash() {
      const proc = handle.proc;
      if (!proc || proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGKILL');
      await exited;
    },
    /** Stops vakt and removes its files; its log is kept when VAKT_LOG_DIR is set. */
    async cleanup() {
      await handle.stop();
      if (process.env.VAKT_LOG_DIR) {
        await writeFile(join(process.env.VAKT_LOG_DIR, `vakt-${httpPort}.log`), handle.log.join(''));
      }
      await rm(dir, { recursive: true, force: true });
    },
    /** JSON over HTTP as `username` (bearer token); throws on an error status. */
    async api(username, method, path, body) {
      const res = await fetch(`${handle.url}${path}`, {
        method,
        headers: { Authorization: `Bearer ${tokens[username]}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    /**
     * Sends one alarm with firmware-sim and waits for the backend's signed
     * "received" ack. `sentAt` is when the simulator reported the publish.
     */
    alarm({ id, key, kind = 'panic', lat, lon, acc = 10 }) {
      const args = ['alarm', '--host', '127.0.0.1', '--port', String(mqttPort), '--id', id, '--key', key, '--kind', kind];
      if (lat !== undefined) args.push('--lat', String(lat), '--lon', String(lon), '--acc', String(acc));
      return new Promise((ok, fail) => {
        const proc = spawn(SIM_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        let sentAt = null;
        let out = '';
        proc.stdout.on('data', (chunk) => {
          out += chunk;
          if (sentAt === null && out.includes(' sent by ')) sentAt = Date.now();
        });
        proc.stderr.on('data', (chunk) => { out += chunk; });
        proc.on('exit', (code) => {
          if (code === 0) ok({ sentAt, output: out });
          else fail(new Error(`firmware-sim exited ${code}: ${out}`));
        });
      });
    },
  };
  await handle.start();
  return handle;
}

/** RFC 6238: HMAC-SHA1 over the 30 s step, 6 digits (what authenticator apps do). */
export function totpCode(base32Secret, step) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of base32Secret.toUpperCase().replace(/=+$/, '')) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', key).update(counter).digest();
  const offset = h[h.length - 1] & 0x0f;
  return String((h.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0');
}

function runWithStdin(bin, args, input, options) {
  return new Promise((ok, fail) => {
    const proc = execFile(bin, args, options, (err, stdout, stderr) => {
      if (err) fail(new Error(`${bin} ${args.join(' ')}: ${stderr || err.message}`));
      else ok(stdout);
    });
    proc.stdin.end(input);
  });
}

/**
 * One protected person's case as a coordinator registers it: person with an
 * address, case with response plan and relatives, an order naming the
 * restrained person with a circular zone around the address, and an issued
 * alarm device. Returns the ids and the device key.
 */
export async function seedCase(vakt, coordinator, spec) {
  const person = await vakt.api(coordinator, 'POST', '/api/persons', {
    name: spec.person,
    phone: spec.phone,
    address: { text: spec.address, lat: spec.lat, lon: spec.lon },
    protected_identity: Boolean(spec.protectedIdentity),
    region: spec.region,
  });
  const kase = await vakt.api(coordinator, 'POST', '/api/cases', {
    reference: spec.reference,
    person_id: person.id,
    risk: spec.risk,
    region: spec.region,
    response_plan: spec.plan,
    relatives: spec.relatives || [],
  });
  const now = Date.now();
  const order = await vakt.api(coordinator, 'POST', `/api/cases/${kase.id}/orders`, {
    kind: 'extended',
    restrained: { name: spec.restrained, description: spec.description, vehicle: spec.vehicle },
    valid_from: new Date(now - 86400000).toISOString(),
    valid_to: new Date(now + 300 * 86400000).toISOString(),
    zones: [
      { name: spec.zoneName || 'Home', geometry: { type: 'Point', coordinates: [spec.lon, spec.lat] }, radius_m: 300 },
      ...(spec.extraZones || []),
    ],
  });
  const device = await vakt.api(coordinator, 'POST', '/api/devices', { id: spec.deviceId, kind: 'alarm', model: 'Test alarm' });
  await vakt.api(coordinator, 'POST', `/api/devices/${spec.deviceId}/issue`, { case_id: kase.id, holder_person_id: person.id });
  return { person, kase, order, deviceId: spec.deviceId, key: device.key };
}
