// A person's browser, scripted with fetch: it keeps cookies per host,
// follows redirects one by one, and submits the HTML forms of the gateway's
// consent page and the identity provider's login page. It runs no script;
// neither page has any.

const MAX_REDIRECTS = 10;

export class ScriptedBrowser {
  constructor() {
    // host -> Map(cookie name -> value)
    this.jar = new Map();
    // Every URL the browser loaded, in order.
    this.visited = [];
  }

  cookieHeader(url) {
    const cookies = this.jar.get(new URL(url).host);
    if (!cookies) return undefined;
    return [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  storeCookies(url, response) {
    const host = new URL(url).host;
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let cookies = this.jar.get(host);
      if (!cookies) this.jar.set(host, (cookies = new Map()));
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
      if (expired) cookies.delete(name);
      else cookies.set(name, value);
    }
  }

  // request sends one request without following redirects.
  async request(url, init = {}) {
    const headers = new Headers(init.headers);
    const cookie = this.cookieHeader(url);
    if (cookie) headers.set('cookie', cookie);
    this.visited.push(String(url));
    const response = await fetch(url, { ...init, headers, redirect: 'manual' });
    this.storeCookies(url, response);
    return response;
  }

  // navigate loads url and follows redirects until stop(url) says the next
  // address is the client's (it is then returned, not loaded) or a page
  // answers. It returns { url, status, html } for a page, { redirect } for a
  // stop.
  async navigate(url, stop, init = {}) {
    let target = new URL(url);
    let response = await this.request(target, init);
    for (let i = 0; ; i++) {
      if (response.status < 300 || response.status > 399) {
        return { url: target, status: response.status, html: await response.text() };
      }
      await response.body?.cancel();
      const next = new URL(response.headers.get('location'), target);
      if (stop(next) || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
        return { redirect: next, status: response.status };
      }
      if (i >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects from ${url}`);
      target = next;
      response = await this.request(target);
    }
  }

  // submit sends the form with id formId of page, with the button
  // name=value pressed (if given), and navigates on.
  async submit(page, formId, button, stop) {
    const form = findForm(page.html, formId);
    if (!form) throw new Error(`no form #${formId} at ${page.url} (status ${page.status}):\n${page.html}`);
    const values = new URLSearchParams(form.values);
    if (button) values.append(button.name, button.value);
    const action = new URL(form.action || page.url, page.url);
    if (form.method === 'POST') {
      return this.navigate(action, stop, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: values.toString(),
      });
    }
    action.search = values.toString();
    return this.navigate(action, stop);
  }
}

const decode = (s) =>
  s
    .replaceAll('&#34;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&quot;', '"')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
  return m ? decode(m[1] ?? m[2] ?? m[3]) : undefined;
}

// findForm reads the form with the given id: its action, its method and
// the values of its text, password and hidden inputs. The two pages it
// reads are server-rendered and simple; this is not a general HTML parser.
export function findForm(html, id) {
  const forms = html.matchAll(/<form\b[^>]*>[\s\S]*?<\/form>/gi);
  for (const [body] of forms) {
    const open = body.match(/<form\b[^>]*>/i)[0];
    if (attr(open, 'id') !== id) continue;
    const values = [];
    for (const [input] of body.matchAll(/<input\b[^>]*>/gi)) {
      const type = (attr(input, 'type') || 'text').toLowerCase();
      const name = attr(input, 'name');
      if (!name || !['text', 'password', 'hidden', 'email'].includes(type)) continue;
      values.push([name, attr(input, 'value') ?? '']);
    }
    const buttons = [...body.matchAll(/<button\b[^>]*>([\s\S]*?)<\/button>/gi)].map(([tag, label]) => ({
      name: attr(tag, 'name'),
      value: attr(tag, 'value'),
      label: label.replace(/<[^>]*>/g, '').trim(),
    }));
    return {
      action: attr(open, 'action'),
      method: (attr(open, 'method') || 'GET').toUpperCase(),
      values,
      buttons,
    };
  }
  return undefined;
}

// textOf strips tags and collapses white space, for checks on what a page
// says.
export function textOf(html) {
  return decode(html.replace(/<style[\s\S]*?<\/style>/gi, '').replace(/<[^>]*>/g, ' '))
    .replace(/\s+/g, ' ')
    .trim();
}

// authorizeInBrowser plays the person: it opens the authorization URL,
// checks and approves the consent page (the hidden handle and CSRF fields
// go with the form), signs in at the provider if asked, and returns the
// redirect to the client's redirect URI. expect lists strings the consent
// page must show.
export async function authorizeInBrowser(browser, authorizationUrl, redirectUrl, expect = []) {
  const isClient = (u) => u.href.startsWith(String(redirectUrl));
  let page = await browser.navigate(authorizationUrl, isClient);
  if (page.redirect) throw new Error(`the gateway skipped the consent page and sent the browser to ${page.redirect}`);
  const consent = findForm(page.html, 'consent');
  if (!consent) throw new Error(`no consent form at ${page.url} (status ${page.status}):\n${textOf(page.html)}`);
  if (!consent.values.some(([k, v]) => k === 'csrf' && v.length > 0)) throw new Error('the consent form has no CSRF field');
  const text = textOf(page.html);
  for (const want of expect) {
    if (!text.includes(want)) throw new Error(`the consent page does not show ${JSON.stringify(want)}: ${text}`);
  }
  page = await browser.submit(page, 'consent', { name: 'decision', value: 'approve' }, isClient);
  if (!page.redirect && findForm(page.html, 'login')) {
    page = await browser.submit(page, 'login', undefined, isClient);
  }
  if (!page.redirect) throw new Error(`the flow ended at ${page.url} (status ${page.status}), not at the client:\n${textOf(page.html)}`);
  return page.redirect;
}
