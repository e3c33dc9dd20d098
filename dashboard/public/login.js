// The login form: shown when the server asks for a token (401). The token lives in
// sessionStorage only and travels in the Authorization header of each request.

import { $, setText } from './dom.js';
import { TOKEN_KEY, hooks, state } from './state.js';

/** Hides the page and asks for the token (with why, when one was refused). */
export function showLogin(message) {
  hooks.stopLive();
  $('main').hidden = true;
  $('login').hidden = false;
  setText($('login-error'), state.token ? message || '' : '');
  $('token').focus();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $('token').value = '';
  hooks.boot();
});
