// Shared plumbing for the browser tests: one AS per test file in a fresh temp dir,
// TLS-verifying (and client-certificate presenting) fetch for the TPP side, RFC 6238
// codes, and Chromium driving the customer's sign-in.
import { spawn } from 'node:child_process';
import { createHash, createHmac, randomInt, X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, fetch as undiciFetch } from 'undici';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../../..');
export const SCREENSHOTS = resolve(HERE, '../screenshots');
const BINARY =
  process.env.WEKEZA_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target'), 'debug/wekeza');

// Distinct free loopback ports: all bound at once so none is handed out twice.
async function freePorts(n) {
  const servers = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise((ok, fail) => {
        const s = createServer();
        s.once('error', fail);
        s.listen(0, '127.0.0.1', () => ok(s));
      }),
    ),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  return ports;
}

/** fetch that verifies the AS against the kit's CA and, given cert/key, presents them. */
export function tlsFetch({ ca, cert, key }) {
  const dispatcher = new Agent({ connect: { ca, cert, key } });
  const f = (url, init = {}) => undiciFetch(url, { ...init, dispatcher });
  f.close = () => dispatcher.close();
  return f;
}

/**
 * Start `wekeza` in a new empty directory and wait until it serves. A minimal environment,
 * so no DATABASE_URL / REDIS_URL / WEKEZA_* of the caller's leaks into the server.
 */
export async function startServer(name) {
  const dir = await mkdtemp(join(tmpdir(), `wekeza-${name}-`));
  const [web, mtls, rs] = await freePorts(3);
  const logLines = [];
  const child = spawn(BINARY, [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? dir,
      RUST_LOG: process.env.RUST_LOG ?? 'info',
      NO_COLOR: '1',
      WEKEZA_WEB_PORT: String(web),
      WEKEZA_MTLS_PORT: String(mtls),
      WEKEZA_RS_PORT: String(rs),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => logLines.push(...d.split('\n').filter(Boolean)));
  }
  let exited = null;
  const exit = new Promise((ok) => child.once('exit', (code, sig) => ok((exited = sig ?? code))));
  // Never outlive the test process, even when it dies before `stop`.
  const reap = () => exited === null && child.kill('SIGKILL');
  process.once('exit', reap);
  const tail = () => logLines.slice(-40).join('\n');

  const kitPath = join(dir, 'certs/sandbox/kit.json');
  const deadline = Date.now() + 60_000;
  let kit, ca, probe;
  for (;;) {
    if (exited !== null) throw new Error(`wekeza exited (${exited}) during start-up:\n${tail()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`wekeza did not become ready in 60 s:\n${tail()}`);
    }
    try {
      kit ??= JSON.parse(await readFile(kitPath, 'utf8')); // may be half-written: retry
      ca ??= readFileSync(kit.ca_cert, 'utf8');
      probe ??= tlsFetch({ ca });
      const r = await probe(`${kit.issuer}/healthz`);
      if (r.ok) break;
    } catch {
      // not there yet
    }
    await sleep(100);
  }
  await probe.close();
  assertPort(kit.issuer, web);
  assertPort(kit.mtls_base_url, mtls);

  const server = {
    dir,
    kit,
    ca,
    failed: false,
    log: tail,
    client(id) {
      const c = kit.clients.find((x) => x.client_id === id);
      if (!c) throw new Error(`kit has no client ${id}`);
      return {
        ...c,
        certPem: readFileSync(c.cert, 'utf8'),
        keyPem: readFileSync(c.key, 'utf8'),
        jwk: c.private_jwk ? JSON.parse(readFileSync(c.private_jwk, 'utf8')) : undefined,
        signingJwk: c.signing_jwk ? JSON.parse(readFileSync(c.signing_jwk, 'utf8')) : undefined,
      };
    },
    async stop() {
      process.off('exit', reap);
      if (exited === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(killer);
      }
      if (server.failed) {
        console.error(`wekeza log tail (kept ${dir}):\n${tail()}`);
      } else {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  return server;
}

function assertPort(url, port) {
  if (new URL(url).port !== String(port)) throw new Error(`${url} is not on port ${port}`);
}

/** Wrap node:test's `test` so a failure keeps the server's dir and prints its log. */
export function tracked(test, server) {
  return (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        server().failed = true;
        throw e;
      }
    });
}

// --- RFC 6238 TOTP (SHA-1, 6 digits, 30 s) ---------------------------------------

function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totpAt(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', base32(secret)).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const stepNow = () => Math.floor(Date.now() / 30_000);

/**
 * The customer's authenticator. The AS accepts each time-step once per customer, so a
 * second sign-in waits exactly until the next step begins.
 */
export class Authenticator {
  #secret;
  #last = -Infinity;
  constructor(secret) {
    this.#secret = secret;
  }
  async freshCode() {
    let step = stepNow();
    if (step <= this.#last) {
      step = this.#last + 1;
      await sleep(step * 30_000 - Date.now() + 20);
    }
    this.#last = step;
    return totpAt(this.#secret, step);
  }
  /** A well-formed code valid for no step near now (the AS allows ±1 step of skew). */
  wrongCode() {
    const s = stepNow();
    const near = new Set([s - 2, s - 1, s, s + 1, s + 2].map((x) => totpAt(this.#secret, x)));
    for (;;) {
      const c = String(randomInt(1_000_000)).padStart(6, '0');
      if (!near.has(c)) return c;
    }
  }
}

// --- certificates, JWTs ---------------------------------------------------------

/** RFC 8705 §3.1: base64url SHA-256 of the certificate's DER. */
export const x5tS256 = (pem) =>
  createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url');

export function jwtParts(jwt) {
  const [h, p] = jwt.split('.');
  const dec = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  return { header: dec(h), payload: dec(p) };
}

// --- Chromium ---------------------------------------------------------------------

export async function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

// The browser never needs to trust the dev CA: it only follows the AS's pages.
export const newContext = (browser, opts = {}) =>
  browser.newContext({ ignoreHTTPSErrors: true, ...opts });

export function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

const path = (page) => new URL(page.url()).pathname;

/** Password step: lands on /login/otp. */
export async function submitPassword(page, { username, password }, shot) {
  await page.waitForURL((u) => u.pathname === '/login');
  if (shot) await screenshot(page, `${shot}-login`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/login/otp');
}

/** OTP step: lands on /consent and returns that page's response. */
export async function submitOtp(page, code, shot) {
  if (path(page) !== '/login/otp') throw new Error(`expected /login/otp, at ${page.url()}`);
  if (shot) await screenshot(page, `${shot}-otp`);
  await page.fill('#otp', code);
  const consent = page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/consent' && r.request().method() === 'GET',
  );
  await page.click('form button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/consent');
  return consent;
}

/** Press #approve or #deny and return the URL the AS redirected the browser to. */
export async function decide(page, button, redirectUri) {
  const target = new URL(redirectUri);
  await page.click(button);
  await page.waitForURL((u) => u.origin === target.origin && u.pathname === target.pathname);
  return new URL(page.url());
}

// --- WebAuthn virtual authenticator (Chrome DevTools Protocol) -------------------------

/**
 * Attach a CTAP2 platform authenticator to `page` (before navigating). Options:
 * `isUserVerified` (default true). Returns `credentials()` (with private keys, so a
 * credential can move to another authenticator) and `addCredential(cred)`.
 */
export async function virtualAuthenticator(context, page, { isUserVerified = true } = {}) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified,
      automaticPresenceSimulation: true,
    },
  });
  return {
    authenticatorId,
    async credentials() {
      return (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
    },
    async addCredential(credential) {
      await cdp.send('WebAuthn.addCredential', { authenticatorId, credential });
    },
  };
}

/** Signs `customer` in to the dashboard (/account: password, then the TOTP `code`). */
export async function signInToDashboard(page, issuer, { username, password }, code) {
  await page.goto(`${issuer}/account/login`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form.form button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/account/login/otp');
  await page.fill('#otp', code);
  await page.click('form.form button[type=submit]');
  await page.waitForURL((u) => u.pathname === '/account');
}
