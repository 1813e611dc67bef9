// The gateway's HTTP routes, as the page calls them. The root is derived from this module's own
// URL (it is served from <root>playground/assets/), so the page also works behind a path prefix.

export const ROOT = new URL("../../", import.meta.url);

/** An HTTP answer that is not 2xx, with the gateway's `{"message"}` text. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(new URL(path, ROOT), { cache: "no-store", ...options });
  } catch (error) {
    throw new ApiError(0, `the gateway cannot be reached (${error.message})`);
  }
  if (response.ok) return response;
  let text = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") text = body.message;
  } catch {
    // Not JSON: keep the status line.
  }
  throw new ApiError(response.status, text);
}

/** `GET /api/v2/runtimes`. */
export async function runtimes() {
  return (await request("api/v2/runtimes")).json();
}

/** `POST /api/v2/execute`. */
export async function execute(body, signal) {
  const response = await request("api/v2/execute", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  return response.json();
}

/** `GET /status`: the daemon's status. */
export async function status() {
  return (await request("status")).json();
}

/** `GET /metrics`: Prometheus text. */
export async function metrics() {
  return (await request("metrics")).text();
}

/** `GET /playground/examples.json`: one example program per runtime language. */
export async function examples() {
  return (await request("playground/examples.json")).json();
}

/** The WebSocket URL of `/api/v2/connect`. */
export function connectUrl() {
  const url = new URL("api/v2/connect", ROOT);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
