// SPDX-License-Identifier: Apache-2.0
// The console's entry module (the one script the page loads, with the CSP nonce): signs in with a
// cookie session, checks the account is an administrator, then starts the page's own module.

import { api, hasSession, signIn, signOut } from "./api.js";
import { byId, problem, status } from "./dom.js";
import * as alerts from "./page-alerts.js";
import * as audit from "./page-audit.js";
import * as blocklist from "./page-blocklist.js";
import * as keys from "./page-keys.js";
import * as overview from "./page-overview.js";
import * as rateLimits from "./page-rate-limits.js";
import * as users from "./page-users.js";

const PAGES = { overview, alerts, audit, users, keys, blocklist, "rate-limits": rateLimits };

function showSignIn(message) {
  byId("sign-in").hidden = false;
  byId("sign-in-submit").disabled = false;
  byId("sign-out").hidden = true;
  byId("who-name").textContent = "";
  status(message, "info");
  byId("sign-in-email").focus();
}

async function start() {
  let me = null;
  if (hasSession()) {
    try {
      me = await api("GET", "/api/auth/me");
    } catch (error) {
      if (error.status !== 401) problem(error, "Could not check the session");
    }
  }
  if (me === null) {
    showSignIn("Sign in to load this page's data.");
    return;
  }
  byId("who-name").textContent = `${me.email} (${me.role})`;
  byId("sign-out").hidden = false;
  if (me.role !== "admin") {
    byId("sign-in").hidden = false;
    byId("sign-in-submit").disabled = false;
    status("This account is not an administrator: sign in with an administrator account.", "error");
    return;
  }
  byId("sign-in").hidden = true;
  status("");
  const page = PAGES[document.body.dataset.page];
  if (page) await page.start();
  document.body.dataset.ready = "true";
}

byId("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  status("Signing in…");
  try {
    await signIn(form.email.value.trim(), form.password.value);
    form.password.value = "";
    await start();
  } catch (error) {
    form.password.value = "";
    problem(error, "Sign-in failed");
  }
});

byId("sign-out").addEventListener("click", async () => {
  try {
    await signOut();
  } catch (error) {
    problem(error, "Sign-out failed");
    return;
  }
  window.location.reload();
});

start().catch((error) => problem(error, "The page could not start"));
