// The login page: 个人用户 / 法人用户, USB key / certificate through the local signing agent
// (the certificate helper), and password. The QR-code and SMS tabs have their own scripts.
import {
  LoginError,
  TOKEN_KEY,
  agent,
  agentUrl,
  agreementVersion,
  certificateHolder,
  dnAttribute,
  el,
  explain,
  formatDate,
  gateway,
  maskNumber,
  normaliseTyped,
  showMessage,
  sortCertificates,
  t,
} from "./common.js";

const errorRegion = document.getElementById("login-error");
const statusRegion = document.getElementById("login-status");
const list = document.getElementById("certificate-list");
const pinInput = document.getElementById("pin");
const consent = document.getElementById("consent");
const tokenSubmit = document.getElementById("token-submit");
const passwordSubmit = document.getElementById("password-submit");
const helperMissing = document.getElementById("helper-missing");
const kindNote = document.getElementById("certificate-kind-note");
// Which entry the person chose (个人用户 / 法人用户), remembered on this browser.
const KIND_KEY = "certgate.user_kind";
let userKind = localStorage.getItem(KIND_KEY) === "enterprise" ? "enterprise" : "person";
let entries = [];
let events = null;

function setStatus(text) {
  statusRegion.textContent = text;
}

function fail(error, focus = null) {
  setStatus("");
  const code = error instanceof LoginError ? error.code : "unknown";
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
  errorRegion.dataset.code = code;
  // The helper is not reached: what to start or download, and the browser's local-network prompt.
  helperMissing.hidden = code !== "agent_unreachable";
  if (focus) focus.focus();
}

function clearError() {
  showMessage(errorRegion, "");
  delete errorRegion.dataset.code;
  helperMissing.hidden = true;
}

// --- tabs (WAI-ARIA tabs pattern: arrow keys, Home, End) -------------------------------------

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, focus = true) {
  for (const other of tabs) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
  }
  // Each form's sign-in button sits below the agreement box; only the open tab's shows.
  for (const button of document.querySelectorAll(".login-actions [data-tab]")) button.hidden = button.dataset.tab !== tab.id;
  clearError();
  setStatus("");
  if (focus) tab.focus();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const index = tabs.indexOf(tab);
    const next = {
      ArrowRight: tabs[(index + 1) % tabs.length],
      ArrowLeft: tabs[(index - 1 + tabs.length) % tabs.length],
      Home: tabs[0],
      End: tabs[tabs.length - 1],
    }[event.key];
    if (next) {
      event.preventDefault();
      selectTab(next);
    }
  });
}

// --- certificates on inserted keys -----------------------------------------------------------

function certificateOption(entry, index, checked) {
  const id = `certificate-${index}`;
  const expired = Date.parse(entry.not_after) <= Date.now();
  const { kind, number, name: holder, organisation } = certificateHolder(entry.subject, entry.certificate);
  const issuer = dnAttribute(entry.issuer, "CN") || entry.issuer;
  // Phrasing content only (a label may hold nothing else): spans laid out as a grid.
  const details = el(
    "span",
    { className: "certificate-details" },
    number ? el("span", { className: "term", text: t(`cert.number.${kind}`) }) : null,
    number ? el("span", { className: "number", text: maskNumber(number) }) : null,
    el("span", { className: "term", text: t("token.issuer") }),
    el("span", { text: issuer }),
    el("span", { className: "term", text: t("token.expiry") }),
    el("span", {}, formatDate(entry.not_after), expired ? el("span", { className: "tag", text: t("token.expired_tag") }) : null),
    el("span", { className: "term", text: t("token.on_key") }),
    el("span", { text: entry.token_label }),
  );
  return el(
    "div",
    { className: "certificate-option" },
    el("input", {
      type: "radio",
      name: "certificate",
      id,
      value: `${entry.token_label}/${entry.cert_id}`,
      "data-cert-id": entry.cert_id,
      "data-token-label": entry.token_label,
      checked,
    }),
    el(
      "label",
      { for: id },
      el(
        "span",
        { className: "holder" },
        el("span", { className: `tag kind ${kind}`, "data-kind": kind, text: t(`bind.kind.${kind}`) }),
        " ",
        holder,
        organisation && organisation !== holder ? el("span", { className: "organisation", text: organisation }) : null,
      ),
      details,
    ),
  );
}

/** The certificates in a stable order, the chosen kind first; the first valid one of that kind
 * is chosen (else the first valid one). A choice the person made stays. */
function showCertificates() {
  const before = list.querySelector('input[name="certificate"]:checked');
  const kept = before ? before.value : null;
  const sorted = sortCertificates(entries, userKind);
  const valid = (entry) => Date.parse(entry.not_after) > Date.now();
  const ofKind = sorted.filter((entry) => certificateHolder(entry.subject, entry.certificate).kind === userKind);
  const chosen = sorted.find((entry) => `${entry.token_label}/${entry.cert_id}` === kept) || ofKind.find(valid) || sorted.find(valid) || sorted[0];
  list.replaceChildren(...sorted.map((entry, index) => certificateOption(entry, index, entry === chosen)));
  kindNote.hidden = !sorted.length || ofKind.length > 0;
  kindNote.textContent = kindNote.hidden ? "" : t(`cert.none_of_kind.${userKind}`);
}

// --- 个人用户 / 法人用户 ----------------------------------------------------------------------------

const intro = document.getElementById("login-intro");
const registerLink = document.getElementById("register-link");

function chooseKind(kind) {
  userKind = kind;
  localStorage.setItem(KIND_KEY, kind);
  for (const button of document.querySelectorAll(".user-kinds [data-kind]")) button.setAttribute("aria-pressed", String(button.dataset.kind === kind));
  intro.textContent = intro.dataset[kind];
  registerLink.href = kind === "enterprise" ? "/register?kind=enterprise" : "/register";
  if (entries.length) showCertificates();
}

for (const button of document.querySelectorAll(".user-kinds [data-kind]")) button.addEventListener("click", () => chooseKind(button.dataset.kind));
chooseKind(userKind);

async function loadCertificates() {
  clearError();
  setStatus(t("token.searching"));
  list.replaceChildren();
  kindNote.hidden = true;
  entries = [];
  try {
    entries = await agent("/v1/certificates");
  } catch (error) {
    fail(error);
    return;
  }
  watchKeys();
  if (!entries.length) {
    fail(new LoginError("no_certificates"));
    return;
  }
  showCertificates();
  setStatus(t("token.found", { count: entries.length }));
}

/** Refresh the list when a key is inserted or pulled out (the agent's event stream). */
function watchKeys() {
  if (events) return;
  events = new EventSource(`${agentUrl}/v1/events`);
  const refresh = (event) => {
    const data = JSON.parse(event.data || "{}");
    if (data.source === "pkcs11") loadCertificates();
  };
  events.addEventListener("token_inserted", refresh);
  events.addEventListener("token_removed", refresh);
}

document.getElementById("token-refresh").addEventListener("click", () => loadCertificates());

// --- sign-in ---------------------------------------------------------------------------------

function consented() {
  if (consent.checked) return true;
  setStatus("");
  showMessage(errorRegion, t("consent.required"));
  errorRegion.dataset.code = "consent_required";
  consent.focus();
  return false;
}

async function signedIn(result, tokenLabel) {
  if (tokenLabel) localStorage.setItem(TOKEN_KEY, tokenLabel);
  else localStorage.removeItem(TOKEN_KEY);
  setStatus(t("status.signed_in"));
  // Record consent to the agreement version shown on this page (the agreements ask for it).
  await gateway("/api/v1/account/consent", {
    method: "POST",
    json: { version: agreementVersion },
    csrf: result.csrf_token,
  });
  // Back to where the login was asked for (an application signing in through the gateway):
  // the server put it on the page only if it is a path on this origin.
  const next = document.getElementById("login-card").dataset.next;
  window.location.assign(next && next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/account");
}

async function tokenLogin() {
  const chosen = list.querySelector('input[name="certificate"]:checked');
  if (!chosen) return fail(new LoginError("choose_certificate"), list.querySelector("input") || document.getElementById("token-refresh"));
  if (!pinInput.value) return fail(new LoginError("pin_required"), pinInput);
  if (!consented()) return;
  clearError();
  setStatus(t("token.signing"));
  const tokenLabel = chosen.dataset.tokenLabel;
  let signed;
  try {
    const challenge = await gateway("/api/v1/login/challenge", { method: "POST", json: {} });
    const pin = pinInput.value;
    try {
      // The PIN goes to the agent on this computer, never to the gateway.
      const request = {
        cert_id: chosen.dataset.certId,
        token_label: tokenLabel,
        pin,
        challenge_id: challenge.challenge_id,
        nonce: challenge.nonce,
      };
      try {
        signed = await agent("/v1/sign", { json: request });
      } catch (error) {
        // The key has one PIN try left: the agent sends the PIN only once the person agrees.
        if (!(error instanceof LoginError && error.code === "pin_final_try")) throw error;
        if (!window.confirm(t("pin.final_try.confirm"))) throw error;
        signed = await agent("/v1/sign", { json: { ...request, confirm_final_try: true } });
      }
    } finally {
      pinInput.value = "";
    }
    setStatus(t("status.signing_in"));
    const result = await gateway("/api/v1/login/token", {
      method: "POST",
      json: {
        challenge_id: challenge.challenge_id,
        certificate: signed.certificate,
        chain: signed.chain || [],
        signature: signed.signature,
        signature_algorithm: signed.signature_algorithm,
      },
    });
    await signedIn(result, tokenLabel);
  } catch (error) {
    const pinProblem = error instanceof LoginError && error.code.startsWith("pin_");
    fail(error, pinProblem ? pinInput : null);
  }
}

async function passwordLogin() {
  const identifier = document.getElementById("identifier");
  const password = document.getElementById("password");
  identifier.value = normaliseTyped(identifier.value);
  if (!identifier.value) return fail(new LoginError("credentials_invalid"), identifier);
  if (!password.value) return fail(new LoginError("credentials_invalid"), password);
  if (!consented()) return;
  clearError();
  setStatus(t("status.signing_in"));
  try {
    const result = await gateway("/api/v1/login/password", {
      method: "POST",
      json: { identifier: identifier.value, password: password.value },
    });
    password.value = "";
    await signedIn(result, null);
  } catch (error) {
    password.value = "";
    fail(error, password);
  }
}

function guarded(button, action) {
  return async (event) => {
    event.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await action();
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  };
}

document.getElementById("token-form").addEventListener("submit", guarded(tokenSubmit, tokenLogin));
document.getElementById("password-form").addEventListener("submit", guarded(passwordSubmit, passwordLogin));

localStorage.removeItem(TOKEN_KEY);
document.documentElement.dataset.ready = "login"; // handlers attached (tests wait for this)
loadCertificates();
