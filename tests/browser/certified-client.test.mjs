// The full FAPI 2.0 flow with a certified relying-party library (openid-client) as the
// TPP and Chromium as the customer, for both sandbox clients: PAR + PKCE, password + TOTP,
// consent, code exchange with mTLS-bound tokens, userinfo, and a non-rotating refresh.
import { after, before, test as nodeTest } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
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
  x5tS256,
} from './lib/harness.mjs';

const ACR_SCA = 'urn:openbanking:psd2:sca';

let server;
let browser;
let authenticator;
const fetches = [];
const test = tracked(nodeTest, () => server);

before(async () => {
  server = await startServer('certified');
  authenticator = new Authenticator(server.kit.customer.totp_secret);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await Promise.all(fetches.map((f) => f.close()));
  await server?.stop();
});

/** A TPP configured from discovery, authenticating as the given sandbox client. */
async function configure(client) {
  const customFetch = tlsFetch({ ca: server.ca, cert: client.certPem, key: client.keyPem });
  fetches.push(customFetch);
  let auth;
  if (client.token_endpoint_auth_method === 'private_key_jwt') {
    const { kid, ...jwk } = client.jwk;
    assert.ok(kid, 'the kit JWK carries a kid');
    const key = await crypto.subtle.importKey(
      'jwk',
      jwk,
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['sign'],
    );
    auth = oidc.PrivateKeyJwt({ key, kid });
  } else {
    assert.equal(client.token_endpoint_auth_method, 'tls_client_auth');
    auth = oidc.TlsClientAuth();
  }
  const config = await oidc.discovery(
    new URL(server.kit.issuer),
    client.client_id,
    { use_mtls_endpoint_aliases: true, redirect_uris: [client.redirect_uri] },
    auth,
    { [oidc.customFetch]: customFetch, execute: [oidc.enableNonRepudiationChecks] },
  );
  config[oidc.customFetch] = customFetch;
  return config;
}

async function fullFlow(clientId) {
  const client = server.client(clientId);
  const config = await configure(client);
  const meta = config.serverMetadata();
  assert.equal(meta.issuer, server.kit.issuer);
  assert.equal(meta.require_pushed_authorization_requests, true);

  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const authUrl = await oidc.buildAuthorizationUrlWithPAR(config, {
    redirect_uri: client.redirect_uri,
    scope: 'openid accounts',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  // FAPI 2.0: the front channel carries only client_id and the PAR request_uri.
  assert.deepEqual([...authUrl.searchParams.keys()].sort(), ['client_id', 'request_uri']);

  const context = await newContext(browser);
  let callback;
  try {
    const page = await context.newPage();
    await page.goto(authUrl.href);
    const customer = server.kit.customer;
    await submitPassword(page, customer, clientId);
    await submitOtp(page, await authenticator.freshCode(), clientId);
    await screenshot(page, `${clientId}-consent`);
    callback = await decide(page, '#approve', client.redirect_uri);
  } finally {
    await context.close();
  }
  assert.ok(callback.searchParams.get('code'), `no code in ${callback}`);

  // Checks iss (RFC 9207), state, PKCE, and the ID token (signature via jwks_uri, nonce).
  const tokens = await oidc.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(typeof tokens.consent_id, 'string');
  assert.ok(tokens.consent_id.length > 0);
  assert.ok(tokens.refresh_token, 'a refresh token is issued');

  const id = tokens.claims();
  assert.equal(id.iss, server.kit.issuer);
  assert.equal(id.nonce, nonce);
  assert.equal(id.acr, ACR_SCA);
  assert.ok(Array.isArray(id.amr) && id.amr.includes('otp') && id.amr.includes('pwd'), `amr ${id.amr}`);
  assert.ok([id.aud].flat().includes(clientId));
  const now = Math.floor(Date.now() / 1000);
  assert.ok(id.auth_time <= now + 5 && id.auth_time > now - 300, `auth_time ${id.auth_time}`);
  assert.equal(jwtParts(tokens.id_token).header.alg, 'ES256');

  // RFC 8705: the access token is bound to the certificate this client presented.
  const thumbprint = x5tS256(client.certPem);
  const at = jwtParts(tokens.access_token);
  assert.equal(at.header.alg, 'ES256');
  assert.equal(at.payload.cnf?.['x5t#S256'], thumbprint);

  const info = await oidc.fetchUserInfo(config, tokens.access_token, id.sub);
  assert.equal(info.sub, id.sub);

  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.access_token, tokens.access_token);
  assert.equal(jwtParts(refreshed.access_token).payload.cnf?.['x5t#S256'], thumbprint);
  assert.equal(refreshed.refresh_token ?? tokens.refresh_token, tokens.refresh_token, 'rotated');
  // Not rotated means the original stays usable.
  const again = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(again.access_token);
}

test('private_key_jwt client: PAR, sign-in, consent, tokens, userinfo, refresh', () =>
  fullFlow('sandbox-tpp-pkjwt'));

test('tls_client_auth client: PAR, sign-in, consent, tokens, userinfo, refresh', () =>
  fullFlow('sandbox-tpp-mtls'));
