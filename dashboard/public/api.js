// Requests to the dashboard's JSON API, with the token when there is one.

import { showLogin } from './login.js';
import { state } from './state.js';

/** fetch relative to the page, with the token in the Authorization header. */
export function api(path, init = {}) {
  const headers = { Accept: 'application/json', ...(init.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return fetch(new URL(path, document.baseURI), { ...init, headers, cache: 'no-store' });
}

/** The JSON body of a request; a 401 shows the login form, other errors throw their message. */
export async function apiJson(path, init) {
  const res = await api(path, init);
  if (res.status === 401) {
    showLogin('The token was not accepted.');
    throw new Error('unauthorized');
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const msg = body && body.error ? `${body.error.message} (${body.error.code})` : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return body;
}
