// panva's oidc-provider, configured like ContactPoint's token endpoint, for bench/oidc.py.
//
//     node server.mjs PORT [REFRESH_TOKENS]
//
// Listens on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT and token endpoint
// /oauth2/token, like ours. One client (client_secret_basic; client_credentials,
// authorization_code and refresh_token); access tokens are ES256 JWTs (RFC 9068)
// for the resource `${issuer}/api/v1`, valid 300 s; refresh tokens rotate on every
// use. The default in-memory adapter keeps everything (nothing is written anywhere),
// unless STORE names a SQLite file: then sqlite_adapter.mjs keeps the models there
// and findAccount reads each person's standing from it (bench/oidc.py --their-store sqlite).
//
// Once listening it prints one line of JSON on stdout, which the benchmark reads:
//   {"port": ..., "issuer": ..., "client_id": ..., "client_secret": ...,
//    "refresh_tokens": [...REFRESH_TOKENS opaque refresh tokens, one grant each]}
// and then, for each line N read on stdin, one line {"refresh_tokens": [...N more]}.
// Tokens are best minted just before they are used: the default in-memory adapter
// is an LRU cache of 1,000 entries, so a grant nobody touched while others were
// being rotated is evicted (and its refresh token then answers invalid_grant).

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import readline from 'node:readline';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.argv[2], 10);
const refreshCount = Number.parseInt(process.argv[3] ?? '16', 10);
if (!Number.isInteger(port) || port <= 0 || !Number.isInteger(refreshCount) || refreshCount < 0) {
  process.stderr.write('usage: node server.mjs PORT [REFRESH_TOKENS]\n');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const resource = `${issuer}/api/v1`;
const clientId = 'bench-client';
const clientSecret = randomBytes(32).toString('base64url');

// An ES256 signing key of its own, as ours keeps one in its database.
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

// The durable store, when asked for: imported only then, so that the default
// needs no native module.
const storePath = process.env.STORE;
let store;
if (storePath) {
  store = await import('./sqlite_adapter.mjs');
  store.openStore(storePath);
  const clearanceUntil = new Date(Date.now() + 900 * 86400 * 1000).toISOString().slice(0, 10);
  store.addAccounts(Array.from({ length: 16 }, (_, i) => `bench-person-${i}`), clearanceUntil);
}

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: ['https://rp.example.org/cb'],
    scope: 'openid profile offline_access admin',
  }],
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'offline_access', 'profile', 'admin'],
  routes: { token: '/oauth2/token' },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Like ours: without a `resource` parameter, tokens are for the default API,
      // and a refresh keeps the grant's resource.
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, identifier) => {
        if (identifier !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'openid profile admin',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: 300,
    ClientCredentials: 300,
    Grant: 12 * 3600,
    RefreshToken: 12 * 3600,
    IdToken: 300,
  },
  findAccount: store ? store.findAccount : (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  ...(store ? { adapter: store.SqliteAdapter } : {}),
  cookies: { keys: [randomBytes(32).toString('base64url')] },
};

const provider = new Provider(issuer, configuration);

// The refresh tokens a code exchange would have left, one grant (and one person) each.
// Their scope leaves out `openid` so that, like ours, a refresh returns no ID token:
// oidc-provider signs an ID token on refresh whenever the scope has `openid`.
const scope = 'profile offline_access';
let minted = 0;
async function mint(count) {
  const tokens = [];
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < count; i += 1) {
    minted += 1;
    tokens.push(await refreshToken(`bench-person-${minted % 16}`, now));
  }
  return tokens;
}

async function refreshToken(accountId, now) {
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope(scope);
  grant.addResourceScope(resource, 'profile');
  const grantId = await grant.save();
  const token = new provider.RefreshToken({
    accountId,
    clientId,
    grantId,
    scope,
    resource,
    gty: 'authorization_code',
    acr: 'AAL2',
    amr: ['pwd', 'otp', 'pin'],
    authTime: now,
    sid: randomBytes(16).toString('base64url'),
    expiresWithSession: false,
    rotations: 0,
  });
  return token.save();
}

const refreshTokens = await mint(refreshCount);

const server = http.createServer(provider.callback());
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({
    port, issuer, client_id: clientId, client_secret: clientSecret, refresh_tokens: refreshTokens,
  })}\n`);
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const tokens = await mint(Number.parseInt(line, 10) || 0);
  process.stdout.write(`${JSON.stringify({ refresh_tokens: tokens })}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
