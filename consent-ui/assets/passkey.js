// Wekeza Bank passkey ceremonies (WebAuthn). Served same-origin at /assets/passkey.js,
// so the pages need only `script-src 'self'`. The server put its options (JSON, binary
// values base64url) in the ceremony form's data-options; this script runs
// navigator.credentials.create/get, puts the authenticator's answer as JSON into the
// hidden `credential` field and submits the form. Nothing is fetched.
(function () {
  'use strict';

  var form = document.getElementById('passkey-ceremony');
  if (!form) return;
  var status = document.getElementById('passkey-status');
  var mode = form.getAttribute('data-mode');
  var busy = false;

  function say(text, isError) {
    if (!status) return;
    status.textContent = text;
    status.className = 'passkey-status' + (isError ? ' passkey-status--error' : '');
  }

  function toBuf(s) {
    var b64 = s.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function toB64u(buf) {
    var bytes = new Uint8Array(buf);
    var bin = '';
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function creationOptions(pk) {
    pk.challenge = toBuf(pk.challenge);
    pk.user.id = toBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return pk;
  }

  function requestOptions(pk) {
    pk.challenge = toBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return pk;
  }

  function registration(cred) {
    var ext = cred.getClientExtensionResults ? cred.getClientExtensionResults() : {};
    var extensions = {};
    if (ext && ext.credProps) extensions.credProps = { rk: !!ext.credProps.rk };
    return {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        attestationObject: toB64u(cred.response.attestationObject),
        clientDataJSON: toB64u(cred.response.clientDataJSON),
      },
      extensions: extensions,
    };
  }

  function assertion(cred) {
    var r = cred.response;
    return {
      id: cred.id,
      rawId: toB64u(cred.rawId),
      type: cred.type,
      response: {
        authenticatorData: toB64u(r.authenticatorData),
        clientDataJSON: toB64u(r.clientDataJSON),
        signature: toB64u(r.signature),
        userHandle: r.userHandle ? toB64u(r.userHandle) : null,
      },
      extensions: {},
    };
  }

  function run() {
    if (busy) return;
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say('This browser cannot use passkeys. Use your password instead.', true);
      return;
    }
    var options;
    try {
      options = JSON.parse(form.getAttribute('data-options')).publicKey;
    } catch (e) {
      say('This page is out of date. Reload it and try again.', true);
      return;
    }
    busy = true;
    say(mode === 'create' ? 'Creating your passkey…' : 'Waiting for your passkey…', false);
    var ceremony = mode === 'create'
      ? navigator.credentials.create({ publicKey: creationOptions(options) }).then(registration)
      : navigator.credentials.get({ publicKey: requestOptions(options) }).then(assertion);
    ceremony.then(function (answer) {
      form.elements.credential.value = JSON.stringify(answer);
      say('Checking…', false);
      form.submit();
    }, function (err) {
      busy = false;
      var name = err && err.name;
      say(name === 'NotAllowedError'
        ? 'The passkey was not used. Try again, or use your password.'
        : name === 'InvalidStateError'
          ? 'This device already has a passkey for your account.'
          : 'Your passkey could not be used (' + (name || 'error') + ').', true);
    });
  }

  form.addEventListener('submit', function (ev) {
    if (form.elements.credential.value) return;
    ev.preventDefault();
    run();
  });

  // Signing in: the customer already chose the passkey, so start the prompt at once.
  if (mode === 'get') run();
})();
