// The official TypeScript SDK's machine-to-machine OAuth providers
// (client/auth-extensions: the MCP extension
// io.modelcontextprotocol/oauth-client-credentials) against the gateway:
// ClientCredentialsProvider (a client secret) and PrivateKeyJwtProvider (a
// private_key_jwt assertion), each discovering the authorization server
// from the 401 and calling tools, with no person and no browser.
//
//   node sdk-client-credentials.mjs <gateway URL>
//
// The secret client is ci-bot (secret in CI_BOT_SECRET), the key client
// key-bot (PKCS #8 private key in KEY_BOT_PRIVATE_KEY, ES256). It prints
// "ok - <step>" for each step, "WHOAMI <client> <json>" for what the
// upstream saw, and exits 1 at the first failure.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider, PrivateKeyJwtProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

import { check, passed, step } from './lib/steps.mjs';

const [gatewayArg] = process.argv.slice(2);
const secret = process.env.CI_BOT_SECRET;
const privateKey = process.env.KEY_BOT_PRIVATE_KEY;
if (!gatewayArg || !secret || !privateKey) {
  console.error('usage: CI_BOT_SECRET=... KEY_BOT_PRIVATE_KEY=... node sdk-client-credentials.mjs <gateway URL>');
  process.exit(2);
}
const gateway = new URL(gatewayArg);

// callWhoami connects with provider to the server at path, lists the
// tools, calls whoami and reports what the upstream saw.
async function callWhoami(label, provider, path) {
  const transport = new StreamableHTTPClientTransport(new URL(path, gateway), { authProvider: provider });
  const client = new Client({ name: label, version: '1.0.0' });
  await client.connect(transport);
  try {
    const { tools } = await client.listTools();
    check(tools.some((t) => t.name === 'whoami'), `no whoami tool in ${JSON.stringify(tools.map((t) => t.name))}`);
    const who = (await client.callTool({ name: 'whoami', arguments: {} })).structuredContent;
    check(who && who.authorization, `whoami answered ${JSON.stringify(who)}`);
    const token = provider.tokens()?.access_token;
    check(token, 'the provider holds no access token');
    check(!who.authorization.includes(token), "the gateway's own token reached the upstream");
    check(provider.tokens().refresh_token === undefined, 'a client credentials token came with a refresh token');
    console.log(`WHOAMI ${label} ${JSON.stringify(who)}`);
    return who;
  } finally {
    await client.close();
  }
}

const issuer = (server) => new URL(`/oauth/${server}`, gateway).href;

await step('ClientCredentialsProvider: client_secret_basic, then tools/call whoami', async () => {
  const provider = new ClientCredentialsProvider({ clientId: 'ci-bot', clientSecret: secret, expectedIssuer: issuer('support-assistant') });
  await callWhoami('ci-bot', provider, '/support');
});

await step('PrivateKeyJwtProvider: a private_key_jwt assertion, then tools/call whoami', async () => {
  const provider = new PrivateKeyJwtProvider({ clientId: 'key-bot', privateKey, algorithm: 'ES256', expectedIssuer: issuer('support-assistant') });
  await callWhoami('key-bot', provider, '/support');
});

await step('PrivateKeyJwtProvider: a second server, a new assertion', async () => {
  const provider = new PrivateKeyJwtProvider({ clientId: 'key-bot', privateKey, algorithm: 'ES256', expectedIssuer: issuer('ops-console') });
  const who = await callWhoami('key-bot-ops', provider, '/ops');
  check(who.server === 'ops-console', `whoami answered from ${who.server}`);
});

await step('a wrong secret is refused', async () => {
  const provider = new ClientCredentialsProvider({ clientId: 'ci-bot', clientSecret: 'wrong', expectedIssuer: issuer('support-assistant') });
  let failed = false;
  try {
    await callWhoami('wrong', provider, '/support');
  } catch (err) {
    failed = true;
    check(/invalid_?client/i.test(`${err?.name} ${err?.message ?? err}`), `refused with ${err}`);
  }
  check(failed, 'a wrong secret got through');
});

console.log(`SUMMARY ${JSON.stringify({ passed })}`);
