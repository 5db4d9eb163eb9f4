// Shared by the pages: translations, the gateway's JSON API, the local signing agent, formatting.

const body = document.body;
export const agentUrl = body.dataset.agentUrl;
export const publicOrigin = body.dataset.origin;
export const agreementVersion = body.dataset.agreementVersion;
export const lang = body.dataset.lang || "zh-CN";
const table = JSON.parse(document.getElementById("certgate-i18n").textContent);

// Where the USB-key login remembers which key it used, so pulling that key signs out.
export const TOKEN_KEY = "certgate.token_label";

/** The translation of `key`, with `{name}` placeholders filled from `values`. */
export function t(key, values = {}) {
  const text = table[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

/** An error the page can explain: a stable code (DESIGN.md) and what the server said. */
export class LoginError extends Error {
  constructor(code, { message = "", retriesLeft = null, source = "gateway" } = {}) {
    super(message || code);
    this.code = code;
    this.retriesLeft = retriesLeft;
    this.source = source;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/** A request to the gateway (same origin, session cookie); resolves to the JSON body. */
export async function gateway(path, { method = "GET", json, csrf } = {}) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  if (csrf) headers["X-CSRF-Token"] = csrf;
  headers["Accept-Language"] = lang;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new LoginError("network");
  }
  const data = await readJson(response);
  if (!response.ok || !data || data.ok === false) {
    throw new LoginError((data && data.error) || "unavailable", {
      message: data && data.message,
    });
  }
  return data;
}

/** A request to the local signing agent (loopback, cross-origin, no cookies). */
export async function agent(path, { json } = {}) {
  let response;
  try {
    response = await fetch(agentUrl + path, {
      method: json === undefined ? "GET" : "POST",
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
      headers: json === undefined ? {} : { "Content-Type": "application/json" },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
  } catch {
    // Not running, or running without this site on its allow-list (it then sends no CORS
    // headers, which the browser reports the same way).
    throw new LoginError("agent_unreachable", { source: "agent" });
  }
  const data = await readJson(response);
  if (!response.ok) {
    throw new LoginError((data && data.error) || "unavailable", {
      message: data && data.message,
      retriesLeft: data && Number.isInteger(data.retries_left) ? data.retries_left : null,
      source: "agent",
    });
  }
  return data;
}

/** The plain sentence for an error code (what happened and what to do next). */
export function explain(error) {
  if (error.code === "pin_incorrect" && error.retriesLeft !== null) {
    return t("error.pin_incorrect.retries", { retries: error.retriesLeft });
  }
  const key = `error.${error.code}`;
  if (key in table) return t(key, { origin: publicOrigin });
  return error.message && error.message !== error.code ? error.message : t("error.unknown", { code: error.code });
}

/** One attribute of an RFC 4514 distinguished name ("CN=张三,O=...,C=CN"). */
export function dnAttribute(dn, name) {
  const pattern = new RegExp(`(?:^|,)${name}=((?:\\\\.|[^,\\\\])*)`);
  const match = pattern.exec(dn || "");
  return match ? match[1].replace(/\\(.)/g, "$1") : "";
}

// Attribute types cryptography's RFC 4514 form spells as dotted OIDs.
const DN_NAMES = { "2.5.4.5": "serialNumber", "1.2.156.10260.4.1.1": "idCardNumber", "1.2.156.10260.4.1.4": "creditCode" };

/** A distinguished name for people: known OIDs by name. */
export function readableDn(dn) {
  return (dn || "").replace(/(^|,)([0-9.]+)=/g, (whole, comma, oid) => (oid in DN_NAMES ? `${comma}${DN_NAMES[oid]}=` : whole));
}

export function formatDate(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeZone: "UTC" }).format(new Date(iso));
}

export function formatTime(iso) {
  if (!iso) return "";
  return new Intl.DateTimeFormat(lang, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
    timeZone: "UTC",
    timeZoneName: "short",
  }).format(new Date(iso));
}

/** An element with text and attributes; children are nodes or strings. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child);
  }
  return node;
}

/** Show `text` (or hide when empty) in an alert region; optionally with a command to copy. */
export function showMessage(region, text, { command = null } = {}) {
  region.replaceChildren();
  if (!text) {
    region.hidden = true;
    return;
  }
  region.append(el("p", { text }));
  if (command) region.append(el("pre", {}, el("code", { text: command })));
  region.hidden = false;
}
