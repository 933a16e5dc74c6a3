// SPDX-License-Identifier: Apache-2.0
// Calls to the Bastion API with the cookie session. The access and refresh tokens live in HttpOnly
// cookies this code never sees; state-changing calls echo the readable CSRF cookie in X-CSRF-Token
// (signed double submit). An expired access token is renewed once through the refresh cookie.

const CSRF_COOKIE = "bastion_csrf";
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  // A 404 with the generic message: the route itself is missing on this server (an older
  // version), not an object the route could not find.
  get routeMissing() {
    return this.status === 404 && this.message === "Not found";
  }
}

export function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return decodeURIComponent(rest.join("="));
  }
  return null;
}

export function hasSession() {
  return csrfToken() !== null;
}

function url(path, query) {
  const target = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, String(value));
  }
  return target;
}

async function send(method, path, { query, body, accept } = {}) {
  const headers = { Accept: accept || "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) {
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
  }
  return fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
    redirect: "error",
  });
}

async function failure(response) {
  let code = "error";
  let message = `The server answered ${response.status}`;
  let requestId = null;
  try {
    const detail = (await response.json()).detail;
    if (detail && typeof detail === "object") {
      code = detail.error || code;
      message = detail.message || message;
      requestId = detail.request_id || null;
    }
  } catch {
    // Not the error shape (a proxy's page): keep the status line.
  }
  return new ApiError(response.status, code, message, requestId);
}

let refreshing = null;

async function refresh() {
  // One renewal at a time: parallel calls that all saw 401 wait for the same one.
  refreshing ??= send("POST", "/api/auth/refresh").finally(() => {
    refreshing = null;
  });
  return (await refreshing).ok;
}

// The parsed JSON answer (null for 204), or an ApiError.
export async function api(method, path, options = {}) {
  let response = await send(method, path, options);
  if (response.status === 401 && !options.noRefresh && hasSession() && (await refresh())) {
    response = await send(method, path, options);
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return options.text ? response.text() : response.json();
}

export async function signIn(email, password) {
  return api("POST", "/api/auth/login", { body: { email, password, mode: "cookie" }, noRefresh: true });
}

export async function signOut() {
  await api("POST", "/api/auth/logout", { noRefresh: true });
}
