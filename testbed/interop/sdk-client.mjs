// The official TypeScript SDK's MCP client, with the SDK's own OAuth client
// (an OAuthClientProvider driven by auth() inside
// StreamableHTTPClientTransport), against both MCP servers of the gateway.
// The script plays the person in the browser; everything else is the SDK.
//
//   node sdk-client.mjs <gateway URL> <access_token_lifetime in seconds>
//
// It prints "ok - <step>" for each step and exits 1 at the first failure.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, refreshAuthorization } from '@modelcontextprotocol/sdk/client/auth.js';

import { ScriptedBrowser, authorizeInBrowser } from './lib/browser.mjs';
import { check, passed, step } from './lib/steps.mjs';

const [gatewayArg, lifetimeArg] = process.argv.slice(2);
if (!gatewayArg || !lifetimeArg) {
  console.error('usage: node sdk-client.mjs <gateway URL> <access token lifetime in seconds>');
  process.exit(2);
}
const gateway = new URL(gatewayArg);
const lifetime = Number(lifetimeArg);
// A native client's loopback redirect. Nothing listens there: the scripted
// browser stops when it is sent there, as a real browser would hand the
// code to the listening client.
const REDIRECT = 'http://127.0.0.1:33500/callback';

function equal(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// InMemoryOAuthProvider keeps what the SDK gives it, as a desktop client
// keeps it on disk, and records the authorization requests the SDK makes.
class InMemoryOAuthProvider {
  constructor(clientName) {
    this.clientName = clientName;
    this.authorizationUrls = [];
    this.savedTokens = [];
    this.invalidated = [];
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info) {
    this.client = info;
  }
  tokens() {
    return this.current;
  }
  saveTokens(tokens) {
    this.current = tokens;
    this.savedTokens.push(tokens);
  }
  redirectToAuthorization(url) {
    // A desktop client opens the system browser here; the script opens
    // its own after the SDK gave up with UnauthorizedError.
    this.authorizationUrls.push(new URL(url));
  }
  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  saveDiscoveryState(state) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
  invalidateCredentials(scope) {
    this.invalidated.push(scope);
    if (scope === 'all' || scope === 'tokens') this.current = undefined;
    if (scope === 'all' || scope === 'client') this.client = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
    if (scope === 'all' || scope === 'discovery') this.discovery = undefined;
  }
}

// connect connects the SDK client to an MCP server of the gateway. The
// first attempt ends in UnauthorizedError after the SDK has discovered,
// registered and asked for the browser; the person approves; the SDK
// redeems the code; the second attempt connects.
async function connect(path, provider, browser, consentShows) {
  const url = new URL(path, gateway);
  const first = new StreamableHTTPClientTransport(url, { authProvider: provider });
  let failure;
  try {
    await new Client({ name: 'ts-sdk-interop', version: '1.0.0' }).connect(first);
  } catch (err) {
    failure = err;
  }
  check(failure instanceof UnauthorizedError, `the first connection without a token did not end in UnauthorizedError: ${failure}`);
  check(provider.authorizationUrls.length > 0, 'the SDK did not ask for the browser');
  const authorizationUrl = provider.authorizationUrls.at(-1);
  const back = await authorizeInBrowser(browser, authorizationUrl, REDIRECT, consentShows);
  check(!back.searchParams.get('error'), `the authorization failed: ${back}`);
  equal(back.searchParams.get('iss'), provider.discovery?.authorizationServerUrl, 'iss of the authorization response');
  await first.finishAuth(back.searchParams.get('code'));

  const transport = new StreamableHTTPClientTransport(url, { authProvider: provider });
  const client = new Client({ name: 'ts-sdk-interop', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport, authorizationUrl };
}

function structured(result) {
  check(!result.isError, `tool error: ${JSON.stringify(result.content)}`);
  return result.structuredContent;
}

// bearerStatus posts an MCP initialize request with a bearer token.
async function bearerStatus(path, token) {
  const response = await fetch(new URL(path, gateway), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'probe', version: '1' } },
    }),
  });
  await response.body?.cancel();
  return response.status;
}

// One browser for both servers: one person, one browser session.
const browser = new ScriptedBrowser();
const support = new InMemoryOAuthProvider('TypeScript SDK interop client');
const ops = new InMemoryOAuthProvider('TypeScript SDK interop client');

await step('an unauthenticated request gets 401 with the resource metadata URL', async () => {
  const response = await fetch(new URL('/support', gateway), { method: 'POST', body: '{}' });
  equal(response.status, 401, 'status');
  const challenge = response.headers.get('www-authenticate') ?? '';
  check(
    challenge.includes(`resource_metadata="${new URL('/.well-known/oauth-protected-resource/support', gateway)}"`),
    `challenge ${challenge}`,
  );
});

const supportSession = await step('support-assistant: discovery, registration, PKCE authorization, token exchange', async () => {
  const session = await connect('/support', support, browser, [
    'TypeScript SDK interop client',
    'support-assistant',
    'tickets.read',
    'accounts.read',
    '127.0.0.1:33500',
  ]);
  const q = session.authorizationUrl.searchParams;
  equal(session.authorizationUrl.origin + session.authorizationUrl.pathname, new URL('/oauth/support-assistant/authorize', gateway).href, 'authorization endpoint');
  equal(q.get('code_challenge_method'), 'S256', 'code_challenge_method');
  check(/^[A-Za-z0-9_-]{43}$/.test(q.get('code_challenge') ?? ''), 'code_challenge');
  equal(q.get('resource'), new URL('/support', gateway).href, 'resource');
  equal(q.get('scope'), 'accounts.read tickets.read', 'scope (from the WWW-Authenticate challenge)');
  check(support.client?.client_id?.startsWith('mcp_'), `registered client ${JSON.stringify(support.client)}`);
  const tokens = support.tokens();
  equal(tokens.scope, 'accounts.read tickets.read', 'granted scope');
  equal(tokens.token_type.toLowerCase(), 'bearer', 'token_type');
  equal(tokens.expires_in, lifetime, 'expires_in');
  check(tokens.refresh_token, 'no refresh token');
  return session;
});

await step('support-assistant: tools/list', async () => {
  const { tools } = await supportSession.client.listTools();
  const names = tools.map((t) => t.name).sort();
  equal(names, ['list_tickets', 'stream_progress', 'whoami'], 'tools');
});

await step("support-assistant: tools/call whoami gets the provider's token upstream, never the gateway's", async () => {
  const who = structured(await supportSession.client.callTool({ name: 'whoami', arguments: {} }));
  equal(who.server, 'support-assistant', 'server');
  check(who.authorization.startsWith('Bearer '), `upstream Authorization ${who.authorization}`);
  check(!who.authorization.includes(support.tokens().access_token), "the gateway's token reached the upstream");
});

await step('support-assistant: tools/call list_tickets', async () => {
  const list = structured(await supportSession.client.callTool({ name: 'list_tickets', arguments: {} }));
  equal(list.tickets.length, 3, 'tickets');
});

await step('support-assistant: stream_progress streams each progress notification before the result', async () => {
  const events = [];
  const result = await supportSession.client.callTool(
    { name: 'stream_progress', arguments: { count: 3, interval_ms: 50 } },
    undefined,
    { onprogress: (p) => events.push(p) },
  );
  equal(result.content, [{ type: 'text', text: 'done' }], 'result');
  equal(events.map((p) => [p.progress, p.total]), [[1, 3], [2, 3], [3, 3]], 'progress');
});

await step('support-assistant: a held stream delivers every notification while the call is still open', async () => {
  // With hold the server never answers: only a stream that is not buffered
  // anywhere on the way delivers the three notifications.
  const abort = new AbortController();
  let count = 0;
  const call = supportSession.client.callTool(
    { name: 'stream_progress', arguments: { count: 3, interval_ms: 1, hold: true } },
    undefined,
    {
      signal: abort.signal,
      timeout: 20000,
      onprogress: () => {
        if (++count === 3) abort.abort();
      },
    },
  );
  let ended;
  try {
    await call;
  } catch (err) {
    ended = err;
  }
  check(ended, 'the held call answered');
  equal(count, 3, 'notifications received before cancelling');
  check(abort.signal.aborted, `the call failed before its notifications arrived: ${ended}`);
});

const opsSession = await step('ops-console: a second server in the same browser session', async () => {
  const session = await connect('/ops', ops, browser, ['ops-console', 'tickets.write', 'admin.read']);
  equal(session.authorizationUrl.searchParams.get('resource'), new URL('/ops', gateway).href, 'resource');
  equal(ops.tokens().scope, 'admin.read tickets.write', 'granted scope');
  const { tools } = await session.client.listTools();
  equal(tools.map((t) => t.name).sort(), ['restart_service', 'stream_progress', 'whoami'], 'tools');
  const result = await session.client.callTool({ name: 'restart_service', arguments: { service: 'billing' } });
  equal(result.content, [{ type: 'text', text: 'service billing restarted' }], 'restart_service');
  equal(structured(await session.client.callTool({ name: 'whoami', arguments: {} })).server, 'ops-console', 'whoami server');
  return session;
});

// freshTokens refreshes a provider's tokens with the SDK, so that checks on
// what a token may do run with a token that has not expired.
async function freshTokens(provider, path) {
  const { authorizationServerUrl, authorizationServerMetadata: metadata } = provider.discovery;
  const tokens = await refreshAuthorization(authorizationServerUrl, {
    metadata,
    clientInformation: provider.client,
    refreshToken: provider.tokens().refresh_token,
    resource: new URL(path, gateway),
  });
  provider.saveTokens({ ...tokens, issuer: provider.tokens().issuer });
  return tokens.access_token;
}

await step("the two servers' tokens are not interchangeable", async () => {
  // Each token works at its own server before and after it is refused by
  // the other: it was valid when refused.
  for (const [own, other, provider] of [
    ['/support', '/ops', support],
    ['/ops', '/support', ops],
  ]) {
    const token = await freshTokens(provider, own);
    equal(await bearerStatus(own, token), 200, `the ${own} token at ${own}`);
    equal(await bearerStatus(other, token), 401, `the ${own} token at ${other}`);
    equal(await bearerStatus(own, token), 200, `the ${own} token at ${own}, again`);
  }
});

await step('an expired access token is refreshed by the SDK on the 401 and the call goes through', async () => {
  const before = support.tokens();
  await sleep(lifetime * 1000 + 1100);
  equal(await bearerStatus('/support', before.access_token), 401, 'the expired token');
  const who = structured(await supportSession.client.callTool({ name: 'whoami', arguments: {} }));
  equal(who.server, 'support-assistant', 'server');
  const after = support.tokens();
  check(after.access_token !== before.access_token, 'no new access token');
  check(after.refresh_token && after.refresh_token !== before.refresh_token, 'the refresh token was not rotated');
  equal(after.scope, 'accounts.read tickets.read', 'scope after the refresh');
});

await step('two concurrent refreshes with the same refresh token both succeed (grace window)', async () => {
  const { authorizationServerUrl, authorizationServerMetadata: metadata } = support.discovery;
  const refreshToken = support.tokens().refresh_token;
  const refresh = () =>
    refreshAuthorization(authorizationServerUrl, {
      metadata,
      clientInformation: support.client,
      refreshToken,
      resource: new URL('/support', gateway),
    });
  const [a, b] = await Promise.all([refresh(), refresh()]);
  check(a.access_token && b.access_token, 'a refresh returned no access token');
  equal(a.refresh_token, b.refresh_token, 'the refresh token both racing refreshes got');
  check(a.refresh_token !== refreshToken, 'the refresh token was not rotated');
  equal(await bearerStatus('/support', a.access_token), 200, 'the first access token');
  equal(await bearerStatus('/support', b.access_token), 200, 'the second access token');
  support.saveTokens({ ...b, issuer: support.tokens().issuer });
});

await step('revocation ends the grant; the SDK then asks for a new authorization', async () => {
  const { authorizationServerUrl, authorizationServerMetadata: metadata } = support.discovery;
  await freshTokens(support, '/support');
  const revoked = support.tokens();
  check(metadata.revocation_endpoint, 'no revocation_endpoint in the metadata');
  equal(await bearerStatus('/support', revoked.access_token), 200, 'the access token before revocation');
  const response = await fetch(metadata.revocation_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: revoked.refresh_token, token_type_hint: 'refresh_token', client_id: support.client.client_id }),
  });
  equal(response.status, 200, 'revocation status');
  equal(await bearerStatus('/support', revoked.access_token), 401, 'an access token of the revoked grant');
  let refreshError;
  try {
    await refreshAuthorization(authorizationServerUrl, {
      metadata,
      clientInformation: support.client,
      refreshToken: revoked.refresh_token,
      resource: new URL('/support', gateway),
    });
  } catch (err) {
    refreshError = err;
  }
  check(refreshError, 'the revoked refresh token still works');
  check(/invalid_grant/i.test(refreshError.errorCode ?? refreshError.message), `refresh error ${refreshError}`);

  const asked = support.authorizationUrls.length;
  let callError;
  try {
    await supportSession.client.callTool({ name: 'whoami', arguments: {} });
  } catch (err) {
    callError = err;
  }
  check(callError instanceof UnauthorizedError, `the call with a revoked grant ended in ${callError}, not UnauthorizedError`);
  equal(support.authorizationUrls.length, asked + 1, 'authorizations asked for');
  check(support.invalidated.includes('tokens') || support.invalidated.includes('all'), `the SDK kept the dead tokens (invalidated ${support.invalidated})`);
  // The other server's grant is a separate refresh family: still fine.
  equal(structured(await opsSession.client.callTool({ name: 'whoami', arguments: {} })).server, 'ops-console', 'ops-console after revoking support-assistant');
});

await supportSession.client.close();
await opsSession.client.close();
console.log(`SUMMARY ${JSON.stringify({ passed })}`);
