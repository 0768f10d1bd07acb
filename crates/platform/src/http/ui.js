// Shared by every page the services serve (GET /assets/ui.js on each service): building
// elements, keeping the signed-in person's token, calling the APIs with it, following
// Server-Sent Events with it, and the sign-in form. Plain browser JavaScript, no build step.
//
// The pages run under `Content-Security-Policy: script-src 'self'; style-src 'self'`: no
// inline script or style, no `style` attribute. Everything here builds text with the DOM
// (textContent, never innerHTML) and sets styles through the CSSOM only.
//
// It defines two globals, `h` and `ui`; a page's own script must not redeclare them.
'use strict';

/**
 * An element with attributes and children (strings become text, never HTML).
 * - `onclick: fn` (any `on…`) adds an event listener;
 * - `false` or `null` leaves the attribute out, `true` sets it empty;
 * - `style` is applied through the CSSOM (an object such as `{ width: '40%' }`, or a string
 *   for `element.style.cssText`), never as an attribute, which the CSP would refuse.
 */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value == null) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'style') {
      if (typeof value === 'string') element.style.cssText = value;
      else Object.assign(element.style, value);
    } else element.setAttribute(name, value === true ? '' : value);
  }
  element.append(...children.flat().filter((c) => c != null));
  return element;
}

const ui = (() => {
  // -------------------------------------------------------------------------------------
  // The site: where people sign in (GET /assets/site.json on the page's own service).

  let site = null;

  /** `{ signInUrl }`, asked once per page. */
  function siteInfo() {
    if (!site) {
      site = request('/assets/site.json', { auth: false }).catch((problem) => {
        site = null;
        throw problem;
      });
    }
    return site;
  }

  // -------------------------------------------------------------------------------------
  // The token: kept in sessionStorage (this page's origin, this tab, until it is closed), with
  // the role and subject it was issued for. No cookie is used, so no request carries it
  // unless a page adds it.

  const TOKEN_KEY = 'shop.token';
  /** A token this close to its end is treated as ended (clocks differ a little). */
  const EXPIRY_MARGIN_MS = 10_000;

  // When the browser refuses storage (some private modes), the token lives in the page.
  let unstored = null;

  const session = {
    /** `{ token, role, subject, expiresAt }` of whoever is signed in on this page, or null. */
    get() {
      let kept = unstored;
      try {
        kept = JSON.parse(sessionStorage.getItem(TOKEN_KEY)) || unstored;
      } catch {
        // Unreadable: as if nobody were signed in, unless the page holds a token.
      }
      if (!kept || typeof kept.token !== 'string' || !kept.token) return null;
      if (typeof kept.expiresAt !== 'number' || kept.expiresAt - EXPIRY_MARGIN_MS < Date.now()) {
        session.clear();
        return null;
      }
      return kept;
    },
    /** Keeps what a sign-in answered (`{ token, expiresIn, role, subject }`) and returns it. */
    set(signedIn) {
      const kept = {
        token: signedIn.token,
        role: signedIn.role,
        subject: signedIn.subject,
        expiresAt: Date.now() + (Number(signedIn.expiresIn) || 3600) * 1000,
      };
      unstored = null;
      try {
        sessionStorage.setItem(TOKEN_KEY, JSON.stringify(kept));
      } catch {
        unstored = kept;
      }
      return kept;
    },
    /** Forgets the token. */
    clear() {
      unstored = null;
      try {
        sessionStorage.removeItem(TOKEN_KEY);
      } catch {
        // Nothing was kept.
      }
    },
  };

  // What the page does when its token is refused or the person signs out: show its sign-in.
  const signedOutHandlers = [];

  /** Registers `handler({ reason, message })`, called after the token has been dropped:
   * reason `refused` (an API answered 401), `missing` (no token, or it expired) or
   * `signed-out` (the person signed out). */
  function onSignedOut(handler) {
    signedOutHandlers.push(handler);
  }

  function signedOut(reason, message) {
    session.clear();
    for (const handler of signedOutHandlers) {
      try {
        handler({ reason, message });
      } catch (error) {
        console.warn('A sign-out handler failed', error);
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // Calling the APIs

  /** A refused or failed request: `status` (0 when nothing answered), `reason` (the JSON
   * `error` of the answer, or what went wrong) and the answer's `body`. */
  class ApiError extends Error {
    constructor(status, reason, body = null) {
      super(reason);
      this.name = 'ApiError';
      this.status = status;
      this.reason = reason;
      this.body = body;
    }

    /** The service could not be reached at all. */
    get unreachable() {
      return this.status === 0;
    }
  }

  async function problemOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Not JSON: the status says enough.
    }
    let reason = body && typeof body.error === 'string' && body.error
      ? body.error
      : `it answered ${response.status} ${response.statusText}`.trim();
    const retryAfter = response.headers.get('retry-after');
    if (response.status === 429 && retryAfter && /^\d+$/.test(retryAfter)) reason += ` (try again in ${retryAfter} s)`;
    return new ApiError(response.status, reason, body);
  }

  function authorization(auth) {
    if (auth === false) return {};
    const kept = session.get();
    if (kept) return { authorization: `Bearer ${kept.token}` };
    if (auth === 'optional') return {};
    return null;
  }

  /**
   * `fetch` for the JSON APIs. Adds the bearer token (unless `auth: false`; `'optional'`
   * sends it only when there is one), sends `body` as JSON, and answers the parsed JSON
   * body (null when empty). Anything but a 2xx throws an ApiError with the status and the
   * answer's `error` text; a 401 first drops the token and tells the page (onSignedOut).
   * Without a token no request is made: it is a 401 at once.
   *
   *   const orders = await ui.api(`${orderUrl}/orders`);
   *   await ui.api('/deliveries/ID/shipped', { method: 'POST' });
   */
  async function request(url, options = {}) {
    const { auth = true, body, headers = {}, ...rest } = options;
    const credentials = authorization(auth);
    if (!credentials) {
      signedOut('missing', 'Please sign in.');
      throw new ApiError(401, 'not signed in');
    }
    const init = {
      ...rest,
      credentials: 'omit',
      headers: { accept: 'application/json', ...credentials, ...headers },
    };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      init.headers['content-type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error && error.name === 'AbortError') throw error;
      throw new ApiError(0, 'cannot be reached');
    }
    if (!response.ok) {
      const problem = await problemOf(response);
      if (response.status === 401 && auth !== false) signedOut('refused', 'Your session has ended: please sign in again.');
      throw problem;
    }
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(response.status, 'answered something that is not JSON');
    }
  }

  // -------------------------------------------------------------------------------------
  // Server-Sent Events over fetch. EventSource cannot send an Authorization header, and
  // the system uses no cookies, so a stream is read with fetch and parsed here as the HTML
  // standard's EventSource does it (event/data/id/retry fields, comments, any line ending).

  const DEFAULT_RETRY_MS = 2000;

  /**
   * Follows the event stream at `url` with the bearer token until `close()` is called.
   *   handlers.on        { eventType: (data, event) => … }; `message` for unnamed events;
   *                      `event` is { type, data, id } (data as sent: parse JSON yourself)
   *   handlers.onOpen    (response) each time it connects
   *   handlers.onError   (problem, retrying) when it cannot connect or the stream breaks:
   *                      retrying is true when it reconnects after a short delay (network
   *                      errors, 5xx, 408, 429, a stream that ended), false when it gives
   *                      up (401 — the page is also told to sign in —, 403, 404, other 4xx)
   *   handlers.auth      as for ui.api (default true)
   *   handlers.retryMs   the delay before reconnecting (default 2 s; the stream's `retry:`
   *                      field changes it, as for EventSource)
   * It reconnects when the server ends the stream; call close() once it has said all it
   * will (the order stream's `done`). `Last-Event-ID` is not sent (CORS does not allow the
   * header): the pages skip events they already show.
   * Returns { close(), get lastEventId() }.
   */
  function stream(url, handlers = {}) {
    const on = handlers.on || {};
    const auth = handlers.auth === undefined ? true : handlers.auth;
    let retryMs = handlers.retryMs ?? DEFAULT_RETRY_MS;
    let closed = false;
    let controller = null;
    let wake = null;
    let lastEventId = '';

    const report = (problem, retrying) => {
      if (!closed && handlers.onError) handlers.onError(problem, retrying);
    };
    const pause = () => new Promise((resolve) => {
      const timer = setTimeout(resolve, retryMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    const dispatch = (type, data, id) => {
      if (closed) return;
      const handler = on[type];
      if (!handler) return;
      try {
        handler(data, { type, data, id });
      } catch (error) {
        console.error(`A handler of the "${type}" events of ${url} failed`, error);
      }
    };

    async function run() {
      while (!closed) {
        const credentials = authorization(auth);
        if (!credentials) {
          signedOut('missing', 'Please sign in.');
          report(new ApiError(401, 'not signed in'), false);
          return;
        }
        controller = new AbortController();
        let response;
        try {
          response = await fetch(url, {
            headers: { accept: 'text/event-stream', ...credentials },
            cache: 'no-store',
            credentials: 'omit',
            signal: controller.signal,
          });
        } catch {
          if (closed) return;
          report(new ApiError(0, 'cannot be reached'), true);
          await pause();
          continue;
        }
        if (!response.ok) {
          const problem = await problemOf(response);
          if (closed) return;
          if (response.status === 401 && auth !== false) {
            signedOut('refused', 'Your session has ended: please sign in again.');
            report(problem, false);
            return;
          }
          const transient = response.status >= 500 || response.status === 408 || response.status === 429;
          report(problem, transient);
          if (!transient) return;
          await pause();
          continue;
        }
        if (!/^text\/event-stream/i.test(response.headers.get('content-type') || '') || !response.body) {
          report(new ApiError(response.status, 'did not answer an event stream'), false);
          return;
        }
        if (handlers.onOpen) handlers.onOpen(response);
        try {
          await read(response.body, {
            event: dispatch,
            id: (id) => { lastEventId = id; },
            retry: (ms) => { retryMs = ms; },
          });
          if (closed) return;
          report(new ApiError(0, 'the stream ended'), true);
        } catch {
          if (closed) return;
          report(new ApiError(0, 'the stream broke off'), true);
        }
        await pause();
      }
    }

    run();
    return {
      close() {
        closed = true;
        if (controller) controller.abort();
        if (wake) wake();
      },
      get lastEventId() {
        return lastEventId;
      },
      get closed() {
        return closed;
      },
    };
  }

  /** Reads an event stream body to its end, calling sink.event(type, data, id) per event. */
  async function read(body, sink) {
    const reader = body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buffer = '';
    let first = true;
    let type = '';
    let data = '';
    let hasData = false;
    let id = '';

    const line = (text) => {
      if (text === '') {
        // A blank line dispatches the event gathered so far.
        if (hasData) sink.event(type || 'message', data, id);
        type = '';
        data = '';
        hasData = false;
        return;
      }
      if (text.startsWith(':')) return; // a comment: the server's keep-alive
      const colon = text.indexOf(':');
      const field = colon === -1 ? text : text.slice(0, colon);
      let value = colon === -1 ? '' : text.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      switch (field) {
        case 'event':
          type = value;
          break;
        case 'data':
          data = hasData ? `${data}\n${value}` : value;
          hasData = true;
          break;
        case 'id':
          if (!value.includes('\0')) {
            id = value;
            sink.id(value);
          }
          break;
        case 'retry':
          if (/^\d+$/.test(value)) sink.retry(Number(value));
          break;
        default:
          // Unknown fields are ignored.
      }
    };

    try {
      for (;;) {
        const { done, value } = await reader.read();
        buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
        if (first && buffer.length) {
          if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
          first = false;
        }
        // Lines end with CRLF, LF or CR; a CR at the end of what has arrived may be the
        // first half of a CRLF, so it waits for the next chunk (unless the stream is over).
        let start = 0;
        for (let i = 0; i < buffer.length; i += 1) {
          const c = buffer[i];
          if (c !== '\n' && c !== '\r') continue;
          if (c === '\r' && i === buffer.length - 1 && !done) break;
          line(buffer.slice(start, i));
          if (c === '\r' && buffer[i + 1] === '\n') i += 1;
          start = i + 1;
        }
        buffer = buffer.slice(start);
        if (done) return; // an event not ended by a blank line is dropped, as the standard says
      }
    } finally {
      reader.releaseLock();
    }
  }

  // -------------------------------------------------------------------------------------
  // Signing in

  const STAFF = { courier: 'the courier', operator: 'the operator' };

  /**
   * A sign-in form, posting to `{signInUrl}` of /assets/site.json:
   *   options.as         'customer' (email and password; POST /auth/sign-in, and
   *                      /auth/customers with `register`), 'courier' or 'operator' (that
   *                      fixed username and a password; POST /auth/staff/sign-in)
   *   options.register   customers only: a "Create account" button too
   *   options.title      the heading (default "Sign in")
   *   options.intro      a sentence under it
   *   options.onSignedIn (session) once the token is kept
   * A token for another role than asked is not kept. Answers the <form>.
   */
  function signInForm(options) {
    const as = options.as || 'customer';
    const customer = as === 'customer';
    if (!customer && !STAFF[as]) throw new Error(`cannot sign in as ${as}`);
    const id = `sign-in-${as}`;
    const error = h('p', { class: 'error', role: 'alert', id: `${id}-error`, hidden: true });
    const identity = customer
      ? h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true, maxlength: '254', placeholder: 'you@example.com' })
      : h('input', { name: 'username', autocomplete: 'username', readonly: true, value: as });
    const password = h('input', { name: 'password', type: 'password', required: true, maxlength: '128', autocomplete: 'current-password' });
    const signIn = h('button', { type: 'submit', 'data-action': 'sign-in' }, 'Sign in');
    const register = customer && options.register
      ? h('button', { type: 'button', class: 'secondary', 'data-action': 'register' }, 'Create account')
      : null;
    const form = h('form', { class: 'sign-in', 'data-sign-in': as, novalidate: true, 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, options.title || 'Sign in'),
      options.intro ? h('p', { class: 'muted intro' }, options.intro) : null,
      h('label', {}, customer ? 'Email' : 'Username', identity),
      h('label', {}, 'Password', password),
      customer && options.register ? h('p', { class: 'muted small hint' }, 'New here? Choose a password of 8 to 128 characters and create your account.') : null,
      error,
      h('div', { class: 'sign-in-actions' }, signIn, register));

    const say = (text) => {
      error.textContent = text;
      error.hidden = !text;
    };

    async function submit(registering) {
      say('');
      const name = customer ? identity.value.trim() : as;
      const secret = password.value;
      identity.setAttribute('aria-invalid', String(customer && !identity.checkValidity()));
      const tooShort = registering && (secret.length < 8 || secret.length > 128);
      password.setAttribute('aria-invalid', String(!secret || tooShort));
      if (customer && (!name || !identity.checkValidity())) return say('Please give your email address.');
      if (!secret) return say('Please give your password.');
      if (tooShort) return say('Choose a password of 8 to 128 characters.');
      const buttons = [signIn, register].filter(Boolean);
      const labels = buttons.map((b) => b.textContent);
      for (const b of buttons) b.disabled = true;
      (registering ? register : signIn).textContent = registering ? 'Creating your account…' : 'Signing in…';
      try {
        const { signInUrl } = await siteInfo();
        const path = customer ? (registering ? '/auth/customers' : '/auth/sign-in') : '/auth/staff/sign-in';
        const body = customer ? { email: name, password: secret } : { username: name, password: secret };
        const answer = await request(`${signInUrl}${path}`, { method: 'POST', body, auth: false });
        if (!answer || answer.role !== as) {
          say(customer ? 'That is not a customer account.' : `That is not ${STAFF[as]}’s account.`);
          return;
        }
        password.value = '';
        const kept = session.set(answer);
        if (options.onSignedIn) options.onSignedIn(kept);
      } catch (problem) {
        if (!(problem instanceof ApiError)) throw problem;
        if (problem.unreachable) say('The sign-in service cannot be reached. Check your connection and try again.');
        else if (problem.status === 401) say(`${capital(problem.reason)}.`);
        else if (problem.status === 409) say(`${capital(problem.reason)}.`);
        else if (problem.status === 429) say(`Too many attempts: ${problem.reason}.`);
        else if (problem.status >= 500) say(`Signing in failed: ${problem.reason}. Try again in a moment.`);
        else say(`${capital(problem.reason)}.`);
      } finally {
        buttons.forEach((b, i) => {
          b.disabled = false;
          b.textContent = labels[i];
        });
      }
    }

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      submit(false);
    });
    if (register) register.addEventListener('click', () => submit(true));
    return form;
  }

  function capital(text) {
    return text ? text[0].toUpperCase() + text.slice(1) : text;
  }

  /** A "Sign out" link: drops the token and tells the page (onSignedOut, reason `signed-out`). */
  function signOutLink() {
    return h('a', {
      href: '#',
      class: 'sign-out',
      'data-action': 'sign-out',
      onclick: (event) => {
        event.preventDefault();
        signedOut('signed-out', 'You are signed out.');
      },
    }, 'Sign out');
  }

  /** "Signed in as <subject> · Sign out", or nothing when nobody is. */
  function signedInAs(kept = session.get()) {
    if (!kept) return null;
    return h('span', { class: 'signed-in', 'data-role': kept.role, 'data-subject': kept.subject },
      'Signed in as ', h('strong', {}, kept.subject), ' · ', signOutLink());
  }

  /** An order id as a person reads it: its last 8 hex digits, upper case (`OrderId::short`). */
  const shortId = (id) => id.slice(-8).toUpperCase();

  return { site: siteInfo, session, onSignedOut, api: request, ApiError, stream, signInForm, signOutLink, signedInAs, shortId };
})();
