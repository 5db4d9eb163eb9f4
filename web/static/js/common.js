// Shared by the pages: translations, the gateway's JSON API, the local signing agent, formatting.

const body = document.body;
export const agentUrl = body.dataset.agentUrl;
export const publicOrigin = body.dataset.origin;
export const agreementVersion = body.dataset.agreementVersion;
export const lang = body.dataset.lang || "zh-CN";
// The operator's display_time_zone (Asia/Shanghai unless configured): every page shows times in it.
export const timeZone = body.dataset.timeZone || "Asia/Shanghai";
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
  constructor(code, { message = "", retriesLeft = null, lockedUntil = null, retryAfter = null, source = "gateway", data = null } = {}) {
    super(message || code);
    this.code = code;
    this.retriesLeft = retriesLeft;
    this.lockedUntil = lockedUntil;
    this.retryAfter = retryAfter;
    this.source = source;
    this.data = data;
  }
}

/** The error a gateway answer carries: its code and what it says beyond the message (tries
 * left, when a lock ends, when to try again: the Retry-After header). */
export function gatewayError(response, data) {
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return new LoginError((data && data.error) || "unavailable", {
    message: data && data.message,
    retriesLeft: data && Number.isInteger(data.retries_left) ? data.retries_left : null,
    lockedUntil: data && typeof data.locked_until === "string" ? data.locked_until : null,
    retryAfter: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    data,
  });
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
  if (!response.ok || !data || data.ok === false) throw gatewayError(response, data);
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
  if (error.code === "account_locked" && error.lockedUntil) {
    return t("error.account_locked.until", { time: formatTime(error.lockedUntil) });
  }
  if (error.code === "rate_limited" && error.retryAfter) {
    return t("error.rate_limited.after", { seconds: error.retryAfter });
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
  return new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeZone }).format(new Date(iso));
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
    timeZone,
    timeZoneName: "short",
  }).format(new Date(iso));
}

// --- what people type ---------------------------------------------------------------------------

/** An identifier, phone number or code as typed with a Chinese IME: full-width digits and
 * letters to ASCII (NFKC), spaces (the ideographic one too) removed. The gateway does the same. */
export function normaliseTyped(value) {
  return (value || "").normalize("NFKC").replace(/\s+/g, "");
}

function normaliseField(input) {
  const normalised = normaliseTyped(input.value);
  if (normalised !== input.value) input.value = normalised;
}

// Every field marked data-typed="identifier" is normalised as it is typed (not while an IME is
// still composing) and when text is pasted.
document.addEventListener("input", (event) => {
  if (event.target.matches && event.target.matches("input[data-typed]") && !event.isComposing) normaliseField(event.target);
});
document.addEventListener("compositionend", (event) => {
  if (event.target.matches && event.target.matches("input[data-typed]")) normaliseField(event.target);
});

// --- certificates -------------------------------------------------------------------------------

// Attribute types of a subject, in the words of the pages (dn.* translations).
const DN_TYPES = { ...DN_NAMES, "2.5.4.12": "title", "1.2.840.113549.1.9.1": "emailAddress" };

/** A distinguished name in RFC 4514 form as [type, value] pairs, most specific first
 * (as cryptography writes it: CN first, C last). */
export function dnFields(dn) {
  const fields = [];
  const pattern = /(?:^|[,+])\s*([A-Za-z][\w-]*|[0-9.]+)=((?:\\.|[^,+\\])*)/g;
  let match;
  while ((match = pattern.exec(dn || ""))) {
    const type = DN_TYPES[match[1]] || match[1];
    fields.push([type, match[2].replace(/\\(.)/g, "$1")]);
  }
  return fields;
}

const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const USCC_CHARACTERS = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/** GB 11643-1999: 17 digits and a check character. */
export function isIdCardNumber(value) {
  if (!/^\d{17}[\dX]$/.test(value)) return false;
  const sum = ID_WEIGHTS.reduce((total, weight, index) => total + weight * Number(value[index]), 0);
  return "10X98765432"[sum % 11] === value[17];
}

/** GB 32100-2015: the unified social credit code with its check character. */
export function isUscc(value) {
  if (!/^[0-9A-HJ-NPQRTUWXY]{18}$/.test(value)) return false;
  const sum = USCC_WEIGHTS.reduce((total, weight, index) => total + weight * USCC_CHARACTERS.indexOf(value[index]), 0);
  return USCC_CHARACTERS[(31 - (sum % 31)) % 31] === value[17];
}

/** The first 4 and last 2 characters, the rest hidden (as the gateway masks numbers). */
export function maskNumber(value) {
  if (!value) return "";
  return value.length <= 6 ? "*".repeat(value.length) : value.slice(0, 4) + "*".repeat(value.length - 6) + value.slice(-2);
}

// DER of the identity OIDs of Chinese CA certificates: 1.2.156.10260.4.1.1 (ID-card number)
// and 1.2.156.10260.4.1.4 (unified social credit code).
const IDENTITY_OIDS = { idCardNumber: [6, 8, 42, 129, 28, 208, 20, 4, 1, 1], creditCode: [6, 8, 42, 129, 28, 208, 20, 4, 1, 4] };
const STRING_TAGS = new Set([0x0c, 0x13, 0x16]); // UTF8String, PrintableString, IA5String

/** The value CAs put under `type`'s OID, as a subject attribute or in a certificate extension
 * (an OCTET STRING holding the string), read from the certificate's DER (base64). */
function identityValue(certificate, type) {
  let der;
  try {
    der = Uint8Array.from(atob(certificate || ""), (character) => character.charCodeAt(0));
  } catch {
    return "";
  }
  const oid = IDENTITY_OIDS[type];
  search: for (let start = 0; start + oid.length < der.length; start += 1) {
    for (let index = 0; index < oid.length; index += 1) if (der[start + index] !== oid[index]) continue search;
    let at = start + oid.length;
    if (der[at] === 0x01) at += 3; // critical: BOOLEAN
    if (der[at] === 0x04) at += 2; // the extension's OCTET STRING (short length)
    if (!STRING_TAGS.has(der[at]) || der[at + 1] > 0x7f) continue;
    return new TextDecoder().decode(der.slice(at + 2, at + 2 + der[at + 1]));
  }
  return "";
}

/** Whose certificate this is: an organisation's (单位证书, its credit code) or a person's
 * (个人证书, the ID-card number), with the number the subject or its extension carries. */
export function certificateHolder(subject, certificate = "") {
  const fields = dnFields(subject);
  const value = (type) => (fields.find(([name]) => name === type) || [])[1] || "";
  const serial = normaliseTyped(value("serialNumber")).toUpperCase();
  const credit = normaliseTyped(value("creditCode") || identityValue(certificate, "creditCode")).toUpperCase();
  const idCard = normaliseTyped(value("idCardNumber") || identityValue(certificate, "idCardNumber")).toUpperCase();
  let kind = "person";
  let number = idCard;
  if (credit) [kind, number] = ["enterprise", credit];
  else if (!idCard && isIdCardNumber(serial)) number = serial;
  else if (!idCard && isUscc(serial)) [kind, number] = ["enterprise", serial];
  else if (!idCard && value("O")) kind = "enterprise";
  return { kind, number, name: value("CN") || subject || "", organisation: value("O") };
}

/** A stable order for the certificates on inserted keys: the chosen kind first (单位证书 for
 * 法人用户, 个人证书 for 个人用户), then by holder, expiry and place on the key — the same
 * certificates are always listed the same way, whatever order the keys answer in. */
export function sortCertificates(entries, firstKind = "person") {
  const rank = (entry) => (certificateHolder(entry.subject, entry.certificate).kind === firstKind ? 0 : 1);
  const text = (value) => value || "";
  return [...entries].sort(
    (a, b) =>
      rank(a) - rank(b) ||
      text(certificateHolder(a.subject).name).localeCompare(text(certificateHolder(b.subject).name), "zh-CN") ||
      text(a.not_after).localeCompare(text(b.not_after)) ||
      text(a.token_label).localeCompare(text(b.token_label)) ||
      text(a.cert_id).localeCompare(text(b.cert_id)),
  );
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
