// A sandbox TPP over mTLS for the browser tests: token endpoint calls, resource-server
// calls (Bearer over the client certificate) and a UK OB account-access request (intent →
// PAR naming it → the front-channel URL). The customer side is driven in Chromium.
import assert from 'node:assert/strict';
import { constants, createHash, createPrivateKey, randomBytes, randomUUID, sign } from 'node:crypto';
import { tlsFetch } from './harness.mjs';

const AISP = '/open-banking/v4.0/aisp';
const PISP = '/open-banking/v4.0/pisp';
const b64url = (b) => Buffer.from(b).toString('base64url');

export const READ_ALL = [
  'ReadAccountsDetail',
  'ReadBalances',
  'ReadTransactionsDetail',
  'ReadTransactionsCredits',
  'ReadTransactionsDebits',
];

export class SandboxTpp {
  /** `server` from `startServer`, `clientId` a tls_client_auth kit client. */
  static async connect(server, clientId) {
    const t = new SandboxTpp(server, clientId);
    t.meta = await (await t.fetch(`${server.kit.issuer}/.well-known/openid-configuration`)).json();
    return t;
  }

  constructor(server, clientId) {
    this.server = server;
    this.clientId = clientId;
    this.client = server.client(clientId);
    this.fetch = tlsFetch({ ca: server.ca, cert: this.client.certPem, key: this.client.keyPem });
  }

  close() {
    return this.fetch.close();
  }

  endpoint(name) {
    return this.meta.mtls_endpoint_aliases?.[name] ?? this.meta[name];
  }

  async token(params) {
    const r = await this.fetch(this.endpoint('token_endpoint'), {
      method: 'POST',
      body: new URLSearchParams({ client_id: this.clientId, ...params }),
    });
    return { status: r.status, body: await r.json() };
  }

  /** A resource-server call: mTLS with the client certificate, Bearer token. */
  async rs(method, path, accessToken, body) {
    const headers = {
      authorization: `Bearer ${accessToken}`,
      accept: 'application/json',
      'x-fapi-interaction-id': randomUUID(),
    };
    if (body) headers['content-type'] = 'application/json';
    const base = this.server.kit.resource_base_url.replace(/\/$/, '');
    const r = await this.fetch(`${base}${AISP}${path}`, {
      method,
      headers,
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  /** The UK OB `x-jws-signature` (detached JWS, ADR 0017) of `bytes` with this client's
   * signing key from the kit: PS256 (kit RSA keys carry PKCS#8 in `x_pkcs8`) or ES256. */
  jwsSignature(bytes) {
    const jwk = this.client.signingJwk ?? this.client.jwk;
    assert.ok(jwk, `kit client ${this.clientId} has no signing key`);
    const rsa = jwk.kty === 'RSA';
    const key = rsa
      ? createPrivateKey({ key: Buffer.from(jwk.x_pkcs8, 'base64url'), format: 'der', type: 'pkcs8' })
      : createPrivateKey({ key: jwk, format: 'jwk' });
    const header = {
      alg: rsa ? 'PS256' : 'ES256',
      kid: jwk.kid,
      typ: 'JOSE',
      cty: 'application/json',
      'http://openbanking.org.uk/iat': Math.floor(Date.now() / 1000),
      'http://openbanking.org.uk/iss': this.clientId,
      'http://openbanking.org.uk/tan': this.server.kit.jws_trust_anchor,
      crit: [
        'http://openbanking.org.uk/iat',
        'http://openbanking.org.uk/iss',
        'http://openbanking.org.uk/tan',
      ],
    };
    const h = b64url(JSON.stringify(header));
    const input = Buffer.from(`${h}.${b64url(bytes)}`);
    const sig = rsa
      ? sign('sha256', input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
      : sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' });
    return `${h}..${b64url(sig)}`;
  }

  /** A payment-initiation call (`x-idempotency-key` set, a new one each call; bodies
   * signed with `x-jws-signature`). */
  async pisp(method, path, accessToken, body) {
    const headers = {
      authorization: `Bearer ${accessToken}`,
      accept: 'application/json',
      'x-fapi-interaction-id': randomUUID(),
      'x-idempotency-key': randomUUID(),
    };
    const payload = body ? JSON.stringify(body) : undefined;
    if (body) {
      headers['content-type'] = 'application/json';
      headers['x-jws-signature'] = this.jwsSignature(payload);
    }
    const base = this.server.kit.resource_base_url.replace(/\/$/, '');
    const r = await this.fetch(`${base}${PISP}${path}`, {
      method,
      headers,
      body: payload,
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }

  /** A domestic-payment consent (`initiation` as in UK OB v4) → PAR naming it →
   * `{ consentId, url, verifier, body }`. */
  async paymentRequest(initiation) {
    const cc = await this.token({ grant_type: 'client_credentials', scope: 'payments' });
    assert.equal(cc.status, 200, JSON.stringify(cc.body));
    const body = { Data: { Initiation: initiation }, Risk: { PaymentContextCode: 'EcommerceGoods' } };
    const intent = await this.pisp('POST', '/domestic-payment-consents', cc.body.access_token, body);
    assert.equal(intent.status, 201, JSON.stringify(intent.body));
    const consentId = intent.body.Data.ConsentId;
    return { ...(await this.pushIntent(consentId, 'openid payments')), body };
  }

  /** PAR naming an intent → `{ consentId, url, verifier }`. */
  async pushIntent(consentId, scope) {
    const verifier = b64url(randomBytes(32));
    const r = await this.fetch(this.endpoint('pushed_authorization_request_endpoint'), {
      method: 'POST',
      body: new URLSearchParams({
        client_id: this.clientId,
        response_type: 'code',
        redirect_uri: this.client.redirect_uri,
        scope,
        state: b64url(randomBytes(16)),
        nonce: b64url(randomBytes(16)),
        code_challenge: b64url(createHash('sha256').update(verifier).digest()),
        code_challenge_method: 'S256',
        claims: JSON.stringify({
          id_token: { openbanking_intent_id: { value: consentId, essential: true } },
        }),
      }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    const { request_uri } = await r.json();
    const url = new URL(this.meta.authorization_endpoint);
    url.search = new URLSearchParams({ client_id: this.clientId, request_uri }).toString();
    return { consentId, url: url.href, verifier };
  }

  /** UK OB intent → PAR naming it → `{ consentId, url, verifier }`. */
  async accountAccessRequest(permissions = READ_ALL) {
    const cc = await this.token({ grant_type: 'client_credentials', scope: 'accounts' });
    assert.equal(cc.status, 200, JSON.stringify(cc.body));
    const intent = await this.rs('POST', '/account-access-consents', cc.body.access_token, {
      Data: {
        Permissions: permissions,
        ExpirationDateTime: '2099-01-01T00:00:00Z',
        TransactionFromDateTime: '2020-01-01T00:00:00Z',
        TransactionToDateTime: '2099-01-01T00:00:00Z',
      },
      Risk: {},
    });
    assert.equal(intent.status, 201, JSON.stringify(intent.body));
    const consentId = intent.body.Data.ConsentId;
    const verifier = b64url(randomBytes(32));
    const r = await this.fetch(this.endpoint('pushed_authorization_request_endpoint'), {
      method: 'POST',
      body: new URLSearchParams({
        client_id: this.clientId,
        response_type: 'code',
        redirect_uri: this.client.redirect_uri,
        scope: 'openid accounts',
        state: b64url(randomBytes(16)),
        nonce: b64url(randomBytes(16)),
        code_challenge: b64url(createHash('sha256').update(verifier).digest()),
        code_challenge_method: 'S256',
        claims: JSON.stringify({
          id_token: { openbanking_intent_id: { value: consentId, essential: true } },
        }),
      }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    const { request_uri } = await r.json();
    const url = new URL(this.meta.authorization_endpoint);
    url.search = new URLSearchParams({ client_id: this.clientId, request_uri }).toString();
    return { consentId, url: url.href, verifier };
  }
}
