// Security keys in the browser: a form marked data-webauthn="create" or "get"
// carries the server's options (JSON, base64url binaries) in
// data-webauthn-options. On submit this calls navigator.credentials.create()
// or .get(), puts the result, as JSON, in the form's hidden "credential" field
// and submits the form. Served from /assets-local/ as a module: no inline
// script, so the Content-Security-Policy stays script-src 'self' + nonce.

const toBytes = (text) => {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/')
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4)
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)).buffer
}

const toText = (buffer) => {
  if (!buffer) return null
  let binary = ''
  for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

const descriptors = (list) =>
  (list || []).map((item) => ({ ...item, id: toBytes(item.id) }))

function creationOptions (json) {
  return {
    ...json,
    challenge: toBytes(json.challenge),
    user: { ...json.user, id: toBytes(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials)
  }
}

function requestOptions (json) {
  return {
    ...json,
    challenge: toBytes(json.challenge),
    allowCredentials: descriptors(json.allowCredentials)
  }
}

function serialise (credential) {
  const response = credential.response
  const result = {
    id: credential.id,
    rawId: toText(credential.rawId),
    type: credential.type,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: toText(response.clientDataJSON) }
  }
  if (response.attestationObject) {
    result.response.attestationObject = toText(response.attestationObject)
    if (typeof response.getTransports === 'function') {
      result.response.transports = response.getTransports()
    }
  } else {
    result.response.authenticatorData = toText(response.authenticatorData)
    result.response.signature = toText(response.signature)
    result.response.userHandle = toText(response.userHandle)
  }
  if (credential.authenticatorAttachment) {
    result.authenticatorAttachment = credential.authenticatorAttachment
  }
  return result
}

function say (form, message) {
  const status = form.querySelector('#webauthn-status')
  if (status) {
    status.textContent = message
    status.hidden = !message
  }
}

function enhance (form) {
  const mode = form.dataset.webauthn
  const field = form.querySelector('input[name="credential"]')
  if (!field || !form.dataset.webauthnOptions) return
  if (!window.PublicKeyCredential || !navigator.credentials) {
    say(form, 'This browser cannot use security keys. Use your token instead.')
    return
  }
  form.addEventListener('submit', async (event) => {
    if (field.value) return // already answered: let the post go
    event.preventDefault()
    say(form, '')
    const json = JSON.parse(form.dataset.webauthnOptions)
    try {
      const credential = mode === 'create'
        ? await navigator.credentials.create({ publicKey: creationOptions(json) })
        : await navigator.credentials.get({ publicKey: requestOptions(json) })
      if (!credential) throw new Error('no credential')
      field.value = JSON.stringify(serialise(credential))
      form.submit()
    } catch (error) {
      say(form, 'Your security key was not used. Try again, or use a different key.')
    }
  })
}

document.querySelectorAll('form[data-webauthn]').forEach(enhance)
