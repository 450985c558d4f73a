// Passkeys (WebAuthn) in a real browser, with Chromium's DevTools virtual authenticator:
// enrolment after a password + TOTP sign-in, sign-in with the passkey alone (ID token
// `amr` hwk + user, `acr` SCA), refusal without user verification, refusal of an answer
// belonging to another interaction or replayed, a counter regression, and rename /
// removal. The TPP side is plain mTLS fetch.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  Authenticator,
  decide,
  jwtParts,
  launchChromium,
  newContext,
  screenshot,
  startServer,
  submitOtp,
  submitPassword,
  tlsFetch,
  tracked,
  virtualAuthenticator,
} from './lib/harness.mjs';

const CLIENT_ID = 'sandbox-tpp-mtls';
const ACR_SCA = 'urn:openbanking:psd2:sca';

let server;
let browser;
let totp;
let client;
let tpp;
let meta;
/** The enrolled credential as exported from the virtual authenticator (with private key). */
let credential;
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('passkeys');
  totp = new Authenticator(server.kit.customer.totp_secret);
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
const pathOf = (page) => new URL(page.url()).pathname;

async function push() {
  const verifier = b64url(randomBytes(32));
  const r = await tpp(endpoint('pushed_authorization_request_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code',
      redirect_uri: client.redirect_uri,
      scope: 'openid accounts',
      state: b64url(randomBytes(16)),
      nonce: b64url(randomBytes(16)),
      code_challenge: b64url(createHash('sha256').update(verifier).digest()),
      code_challenge_method: 'S256',
    }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  const { request_uri } = await r.json();
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({ client_id: CLIENT_ID, request_uri }).toString();
  return { url: url.href, verifier };
}

async function exchange(code, verifier) {
  const r = await tpp(endpoint('token_endpoint'), {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      client_id: CLIENT_ID,
      code,
      redirect_uri: client.redirect_uri,
      code_verifier: verifier,
    }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, JSON.stringify(body));
  return body;
}

/** A context + page with a virtual authenticator holding the enrolled credential. */
async function withAuthenticator(opts, fn) {
  const context = await newContext(browser);
  try {
    const page = await context.newPage();
    const va = await virtualAuthenticator(context, page, opts);
    if (credential && opts.withCredential !== false) {
      await va.addCredential({ ...credential, ...(opts.credential ?? {}) });
    }
    const result = await fn({ context, page, va });
    // Keep the exported signCount current for the next test's authenticator.
    const creds = await va.credentials();
    if (credential && creds.length === 1 && opts.keepCount !== false) {
      credential = { ...credential, signCount: creds[0].signCount };
    }
    return result;
  } finally {
    await context.close();
  }
}

/** From the login page to the passkey prompt: the link, then the username. */
async function startPasskeySignIn(page, shot) {
  await page.waitForURL((u) => u.pathname === '/login');
  await page.click('#passkey-signin');
  await page.waitForURL((u) => u.pathname === '/login/passkey');
  if (shot) await screenshot(page, `${shot}-username`);
  await page.fill('#username', server.kit.customer.username);
  await page.click('#passkey-continue');
}

const finishPosted = (page) =>
  page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/login/passkey/finish' && r.request().method() === 'POST',
  );

test('enrolment after password + TOTP, then sign-in with the passkey alone', async () => {
  await withAuthenticator({ withCredential: false, keepCount: false }, async ({ page, va }) => {
    // First authorization: password, TOTP, then the offer on the consent page.
    const first = await push();
    await page.goto(first.url);
    await submitPassword(page, server.kit.customer, 'passkey-first');
    await submitOtp(page, await totp.freshCode());
    await screenshot(page, 'passkey-consent-offer');
    const enrolPage = page.waitForResponse(
      (r) => new URL(r.url()).pathname === '/passkey' && r.request().method() === 'GET',
    );
    await page.click('#passkey-offer');
    await page.waitForURL((u) => u.pathname === '/passkey');
    const csp = (await enrolPage).headers()['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.ok(await page.locator('#passkeys-none').isVisible());
    await screenshot(page, 'passkey-enrol');
    await page.fill('#passkey-name', 'Test laptop');
    await page.click('#passkey-start');
    await page.waitForURL((u) => u.pathname === '/passkey' && u.searchParams.get('done') === 'added');
    assert.ok(await page.locator('#notice').isVisible());
    const items = await page.locator('#passkeys li').allInnerTexts();
    assert.equal(items.length, 1);
    assert.match(items[0], /Test laptop/);
    assert.match(items[0], /Never used/);
    await screenshot(page, 'passkey-enrolled');

    const creds = await va.credentials();
    assert.equal(creds.length, 1);
    assert.equal(creds[0].rpId, 'localhost');
    credential = creds[0];

    // Skipping back to consent and approving works as before; the login was pwd + otp.
    await page.click('#passkey-skip');
    await page.waitForURL((u) => u.pathname === '/consent');
    const back1 = await decide(page, '#approve', client.redirect_uri);
    const t1 = await exchange(back1.searchParams.get('code'), first.verifier);
    assert.deepEqual(jwtParts(t1.id_token).payload.amr, ['pwd', 'otp', 'mfa']);

    // Second authorization: the passkey only, no password, no TOTP.
    const second = await push();
    await page.goto(second.url);
    const posted = finishPosted(page);
    await startPasskeySignIn(page, 'passkey-signin');
    assert.equal((await posted).status(), 303);
    await page.waitForURL((u) => u.pathname === '/consent');
    await screenshot(page, 'passkey-signed-in-consent');
    const back2 = await decide(page, '#approve', client.redirect_uri);
    const code = back2.searchParams.get('code');
    assert.ok(code, `no code in ${back2}`);
    const t2 = await exchange(code, second.verifier);
    const id = jwtParts(t2.id_token).payload;
    assert.ok(id.amr.includes('hwk'), `amr ${JSON.stringify(id.amr)}`);
    assert.ok(id.amr.includes('user'), `amr ${JSON.stringify(id.amr)}`);
    assert.ok(!id.amr.includes('pwd'));
    assert.equal(id.acr, ACR_SCA);
    credential = { ...credential, signCount: (await va.credentials())[0].signCount };
  });
});

test('an authenticator without user verification is refused', async () => {
  // As the browser is told (userVerification required): the prompt fails, nothing is posted.
  await withAuthenticator({ isUserVerified: false }, async ({ page }) => {
    await page.goto((await push()).url);
    await startPasskeySignIn(page);
    await page.waitForURL((u) => u.pathname === '/login/passkey');
    await page.locator('#passkey-status.passkey-status--error, #error').first().waitFor();
    assert.equal(pathOf(page), '/login/passkey');
    await screenshot(page, 'passkey-uv-missing');
  });
  // With the page's options tampered to "discouraged", the authenticator answers without
  // the UV flag; the server, holding its own state (UV required), refuses.
  await withAuthenticator({ isUserVerified: false }, async ({ page }) => {
    await page.route('**/login/passkey', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      const r = await route.fetch();
      const body = (await r.text()).replace(
        /(userVerification&#34;:&#34;)required/g,
        '$1discouraged',
      );
      assert.match(body, /discouraged/, 'options not found to tamper with');
      await route.fulfill({ response: r, body });
    });
    await page.goto((await push()).url);
    const posted = finishPosted(page);
    await startPasskeySignIn(page);
    assert.equal((await posted).status(), 401);
    await page.locator('#error').waitFor();
    assert.match(pathOf(page), /^\/login\/passkey/); // the error shows where it was posted
    assert.equal(await page.locator('#approve').count(), 0);
    await screenshot(page, 'passkey-uv-refused');
  });
});

test("an answer for another interaction, or replayed, is refused; the state is single use", async () => {
  // B: a ceremony whose answer is held back (the POST is aborted, B's state stays).
  let bodyB;
  let csrfB;
  const contextB = await newContext(browser);
  try {
    const pageB = await contextB.newPage();
    const vaB = await virtualAuthenticator(contextB, pageB, {});
    await vaB.addCredential(credential);
    await pageB.route('**/login/passkey/finish', (route) => {
      bodyB = route.request().postData();
      return route.abort();
    });
    await pageB.goto((await push()).url);
    await startPasskeySignIn(pageB);
    for (let i = 0; i < 200 && !bodyB; i++) await new Promise((ok) => setTimeout(ok, 50));
    assert.ok(bodyB, 'no answer captured in B');
    csrfB = new URLSearchParams(bodyB).get('csrf');
    credential = { ...credential, signCount: (await vaB.credentials())[0].signCount };

    // A: a normal passkey sign-in; its answer is captured on the way.
    let bodyA;
    await withAuthenticator({}, async ({ page }) => {
      page.on('request', (r) => {
        if (new URL(r.url()).pathname === '/login/passkey/finish') bodyA = r.postData();
      });
      await page.goto((await push()).url);
      await startPasskeySignIn(page);
      await page.waitForURL((u) => u.pathname === '/consent');
    });
    assert.ok(bodyA);

    // A's answer in B's interaction (B's cookie and csrf): refused, B stays at login.
    const foreign = new URLSearchParams(bodyA);
    foreign.set('csrf', csrfB);
    const r1 = await contextB.request.post(`${server.kit.issuer}/login/passkey/finish`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      data: foreign.toString(),
      maxRedirects: 0,
    });
    assert.equal(r1.status(), 401);
    // B's own, genuine answer now: B's state was taken by the attempt above.
    const r2 = await contextB.request.post(`${server.kit.issuer}/login/passkey/finish`, {
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      data: bodyB,
      maxRedirects: 0,
    });
    assert.equal(r2.status(), 401);
    await pageB.goto(`${server.kit.issuer}/consent`);
    assert.notEqual(pathOf(pageB), '/consent', 'B must not have reached consent');
  } finally {
    await contextB.close();
  }
  assert.match(server.log(), /passkey sign-in failed/);
});

test('a signature counter that goes backwards is refused', async () => {
  // A clone of the credential whose counter lags behind the stored one.
  await withAuthenticator({ credential: { signCount: 0 }, keepCount: false }, async ({ page }) => {
    await page.goto((await push()).url);
    const posted = finishPosted(page);
    await startPasskeySignIn(page);
    assert.equal((await posted).status(), 401);
    await page.locator('#error').waitFor();
    assert.match(pathOf(page), /^\/login\/passkey/); // the error shows where it was posted
  });
});

test('passkeys are listed with last use, renamed and removed', async () => {
  await withAuthenticator({}, async ({ page }) => {
    await page.goto((await push()).url);
    await startPasskeySignIn(page);
    await page.waitForURL((u) => u.pathname === '/consent');
    await page.click('#passkey-offer');
    await page.waitForURL((u) => u.pathname === '/passkey');
    const item = page.locator('#passkeys li');
    assert.equal(await item.count(), 1);
    assert.match(await item.innerText(), /Test laptop/);
    assert.match(await item.innerText(), /Last used \d+ \w+ \d{4}, \d\d:\d\d UTC/);
    await screenshot(page, 'passkey-manage');

    await item.locator('input[name=name]').fill('Work laptop');
    await item.locator('button', { hasText: 'Rename' }).click();
    await page.waitForURL((u) => u.searchParams.get('done') === 'renamed');
    assert.match(await page.locator('#passkeys li').innerText(), /Work laptop/);

    await page.locator('#passkeys li button', { hasText: 'Remove' }).click();
    await page.waitForURL((u) => u.searchParams.get('done') === 'removed');
    assert.ok(await page.locator('#passkeys-none').isVisible());
    await screenshot(page, 'passkey-removed');
    await page.click('#passkey-skip');
    await page.waitForURL((u) => u.pathname === '/consent');
  });
  // The removed passkey no longer signs anyone in.
  await withAuthenticator({}, async ({ page }) => {
    await page.goto((await push()).url);
    await startPasskeySignIn(page);
    await page.locator('#error').waitFor();
    assert.match(pathOf(page), /^\/login\/passkey/); // the error shows where it was posted
    assert.match(await page.locator('#error').innerText(), /no passkey/i);
  });
});
