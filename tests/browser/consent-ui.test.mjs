// The customer-facing pages in a real browser: errors on bad credentials, what the
// consent page shows and the headers it is served with, the deny path, CSRF refusal, and
// a full approval with JavaScript disabled. The TPP side is plain mTLS fetch.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  Authenticator,
  decide,
  launchChromium,
  newContext,
  screenshot,
  startServer,
  submitOtp,
  submitPassword,
  tlsFetch,
  tracked,
} from './lib/harness.mjs';

const CLIENT_ID = 'sandbox-tpp-mtls'; // tls_client_auth: the certificate is the credential
const CLIENT_NAME = 'Sandbox Payments App'; // its registered client_name

let server;
let browser;
let authenticator;
let client;
let tpp;
let meta;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('consent-ui');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  client = server.client(CLIENT_ID);
  tpp = tlsFetch({ ca: server.ca, cert: client.certPem, key: client.keyPem });
  meta = await (await tpp(`${server.kit.issuer}/.well-known/openid-configuration`)).json();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await tpp?.close();
  await server?.stop();
});

const b64url = (b) => Buffer.from(b).toString('base64url');
const endpoint = (name) => meta.mtls_endpoint_aliases?.[name] ?? meta[name];

/** Push an authorization request (RFC 9126) and return the front-channel URL. */
async function push(scope = 'openid accounts') {
  const verifier = b64url(randomBytes(32));
  const state = b64url(randomBytes(16));
  const r = await tpp(endpoint('pushed_authorization_request_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: client.redirect_uri,
      scope,
      state,
      nonce: b64url(randomBytes(16)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
    }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const { request_uri } = await r.json();
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({ client_id: CLIENT_ID, request_uri }).toString();
  return { url: url.href, state, verifier };
}

/** A page signed in with password and a fresh TOTP, on /consent. */
async function atConsent(context, scope) {
  const req = await push(scope);
  const page = await context.newPage();
  await page.goto(req.url);
  await submitPassword(page, server.kit.customer);
  const consentResponse = await submitOtp(page, await authenticator.freshCode());
  return { page, req, consentResponse };
}

async function withContext(opts, fn) {
  const context = await newContext(browser, opts);
  try {
    return await fn(context);
  } finally {
    await context.close();
  }
}

const postTo = (page, path) =>
  page.waitForResponse((r) => new URL(r.url()).pathname === path && r.request().method() === 'POST');

test('a wrong password shows an error and stays on /login', () =>
  withContext({}, async (context) => {
    const page = await context.newPage();
    await page.goto((await push()).url);
    await page.waitForURL((u) => u.pathname === '/login');
    await page.fill('#username', server.kit.customer.username);
    await page.fill('#password', `${server.kit.customer.password}x`);
    const posted = postTo(page, '/login');
    await page.click('form button[type=submit]');
    assert.equal((await posted).status(), 401);
    await page.waitForLoadState();
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.ok(await page.locator('#error').isVisible(), 'no #error on the login page');
    assert.match(await page.locator('#error').innerText(), /\S/);
    assert.equal(await page.locator('#otp').count(), 0);
  }));

test('a wrong security code shows an error and stays on /login/otp', () =>
  withContext({}, async (context) => {
    const page = await context.newPage();
    await page.goto((await push()).url);
    await submitPassword(page, server.kit.customer);
    assert.equal(await page.locator('#error').count(), 0);
    await page.fill('#otp', authenticator.wrongCode());
    const posted = postTo(page, '/login/otp');
    await page.click('form button[type=submit]');
    assert.equal((await posted).status(), 401);
    await page.waitForLoadState();
    assert.equal(new URL(page.url()).pathname, '/login/otp');
    assert.ok(await page.locator('#error').isVisible(), 'no #error on the OTP page');
    assert.equal(await page.locator('#approve').count(), 0);
    await screenshot(page, 'otp-error');
  }));

test('the consent page names the client, lists the requested scopes, and is framing-proof', () =>
  withContext({}, async (context) => {
    const { page, consentResponse } = await atConsent(context, 'openid accounts');
    await screenshot(page, 'consent');
    assert.equal(consentResponse.status(), 200);
    assert.equal((await page.locator('#client-name').innerText()).trim(), CLIENT_NAME);
    const scopes = page.locator('#consent-scopes');
    assert.ok(await scopes.isVisible());
    // Exactly what was pushed (in any order), not the client's registered scope, which
    // adds payments.
    assert.deepEqual(
      (await scopes.locator('li .scope__name').allInnerTexts()).map((s) => s.trim()).sort(),
      ['accounts', 'openid'],
    );
    assert.equal(await scopes.locator('li').count(), 2);

    const h = await consentResponse.allHeaders();
    const csp = Object.fromEntries(
      (h['content-security-policy'] ?? '')
        .split(';')
        .map((d) => d.trim().split(/\s+/))
        .filter((d) => d[0])
        .map(([name, ...values]) => [name.toLowerCase(), values]),
    );
    assert.deepEqual(csp['frame-ancestors'], ["'none'"], `CSP: ${h['content-security-policy']}`);
    const hsts = h['strict-transport-security'] ?? '';
    const maxAge = Number(/max-age=(\d+)/i.exec(hsts)?.[1] ?? 0);
    assert.ok(maxAge > 0, `Strict-Transport-Security: ${hsts}`);
  }));

test('the consent page shows the TPP logo from the platform and fetches nothing from elsewhere', () =>
  withContext({}, async (context) => {
    const origins = new Set();
    context.on('request', (r) => origins.add(new URL(r.url()).origin));
    const { page } = await atConsent(context, 'openid accounts');
    const logo = page.locator('#client-logo');
    await logo.waitFor();
    // Rendered: the image decoded at its real size, not a broken-image box.
    const natural = await logo.evaluate(async (img) => {
      await img.decode();
      return [img.naturalWidth, img.naturalHeight, img.complete];
    });
    assert.deepEqual(natural, [80, 80, true]);
    const src = new URL(await logo.evaluate((img) => img.src));
    assert.equal(src.origin, new URL(server.kit.issuer).origin);
    assert.equal(src.pathname, `/clients/${CLIENT_ID}/logo`);
    assert.match(src.searchParams.get('v') ?? '', /^[0-9a-f]{16}$/);
    // Decorative next to the name that says who asks.
    assert.equal(await logo.getAttribute('alt'), '');
    assert.deepEqual([...origins], [new URL(server.kit.issuer).origin]);
    await screenshot(page, 'consent-logo');
  }));

test('denying consent returns error=access_denied with state and iss', () =>
  withContext({}, async (context) => {
    const { page, req } = await atConsent(context);
    const back = await decide(page, '#deny', client.redirect_uri);
    assert.equal(back.searchParams.get('error'), 'access_denied');
    assert.equal(back.searchParams.get('state'), req.state);
    assert.equal(back.searchParams.get('iss'), server.kit.issuer);
    assert.equal(back.searchParams.get('code'), null);
  }));

test('a consent decision with a forged csrf value is refused with 403', () =>
  withContext({}, async (context) => {
    const { page } = await atConsent(context);
    // Same length, last character changed: defeats the comparison, not just a length check.
    const forged = await page.locator('form input[name=csrf]').evaluate((el) => {
      el.value = el.value.slice(0, -1) + (el.value.endsWith('A') ? 'B' : 'A');
      return el.value;
    });
    assert.ok(forged.length > 0);
    const posted = postTo(page, '/consent');
    await page.click('#approve');
    assert.equal((await posted).status(), 403);
    await page.waitForLoadState();
    assert.equal(new URL(page.url()).pathname, '/consent');
    assert.ok(await page.locator('#error').isVisible());
  }));

test('the whole approval works with JavaScript disabled', () =>
  withContext({ javaScriptEnabled: false }, async (context) => {
    const { page, req } = await atConsent(context);
    const back = await decide(page, '#approve', client.redirect_uri);
    assert.equal(back.searchParams.get('state'), req.state);
    assert.equal(back.searchParams.get('iss'), server.kit.issuer);
    const code = back.searchParams.get('code');
    assert.ok(code, `no code in ${back}`);

    // The code is real: it redeems for tokens at the mTLS token endpoint.
    const r = await tpp(endpoint('token_endpoint'), {
      method: 'POST',
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: CLIENT_ID,
        code,
        redirect_uri: client.redirect_uri,
        code_verifier: req.verifier,
      }),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.ok(body.access_token && body.id_token);
  }));
