// The login page's "扫码登录" tab: a QR code for the platform's mobile app, its state heard by
// server-sent events (or long polls where those fail), a new code on expiry.
import { LoginError, agreementVersion, explain, gateway, showMessage, t } from "./common.js";

const panel = document.getElementById("panel-qr");
const image = document.getElementById("qr-image");
const stateText = document.getElementById("qr-state");
const refresh = document.getElementById("qr-refresh");
const consent = document.getElementById("consent");
const errorRegion = document.getElementById("login-error");
const FINAL = new Set(["confirmed", "cancelled", "expired"]);
let ticket = null;
let events = null;
let round = 0; // each new QR code starts a round; answers of older rounds are dropped

function show(state) {
  panel.dataset.state = state;
  stateText.textContent = t(`qr.state.${state}`);
  refresh.hidden = !["expired", "cancelled", "error"].includes(state);
  image.classList.toggle("qr-spent", state !== "waiting");
}

function stop() {
  round += 1;
  ticket = null;
  if (events) events.close();
  events = null;
}

async function start() {
  stop();
  const mine = round;
  showMessage(errorRegion, "");
  if (!consent.checked) {
    image.hidden = true;
    show("consent");
    return;
  }
  show("loading");
  let created;
  try {
    created = await gateway("/api/v1/login/qr", { method: "POST", json: {} });
  } catch (error) {
    if (mine === round) failed(error);
    return;
  }
  if (mine !== round) return;
  ticket = created.ticket;
  image.src = created.qr_image;
  image.dataset.payload = created.qr_payload; // what the code says (anyone can read it there)
  image.hidden = false;
  show("waiting");
  listen(mine);
}

function failed(error) {
  show("error");
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
}

function heard(state, mine) {
  if (mine !== round) return;
  if (FINAL.has(state) && events) {
    events.close();
    events = null;
  }
  if (state === "confirmed") finish(mine);
  else show(state);
}

function listen(mine) {
  if (!("EventSource" in window)) {
    poll(mine, "waiting");
    return;
  }
  events = new EventSource(`/api/v1/login/qr/${encodeURIComponent(ticket)}`);
  events.addEventListener("state", (event) => heard(JSON.parse(event.data).state, mine));
  events.addEventListener("error", () => {
    // The stream was refused (not a reconnect after a normal end): ask by long polls.
    if (events && events.readyState === EventSource.CLOSED) {
      events = null;
      poll(mine, panel.dataset.state);
    }
  });
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function poll(mine, since) {
  while (mine === round) {
    const started = Date.now();
    let answer;
    try {
      answer = await gateway(`/api/v1/login/qr/${encodeURIComponent(ticket)}?wait=25&since=${since}`);
    } catch (error) {
      if (mine === round) failed(error);
      return;
    }
    if (mine !== round) return;
    if (answer.state === "confirmed") return signedIn(answer);
    show(answer.state);
    if (FINAL.has(answer.state)) return;
    since = answer.state;
    if (Date.now() - started < 1000) await pause(2000); // answered at once: no free wait slot
  }
}

/** The phone confirmed: this answer (JSON, not the event stream) starts the session. */
async function finish(mine) {
  try {
    const answer = await gateway(`/api/v1/login/qr/${encodeURIComponent(ticket)}`);
    if (mine !== round) return;
    if (answer.state === "confirmed") await signedIn(answer);
    else show(answer.state);
  } catch (error) {
    if (mine === round) failed(error);
  }
}

async function signedIn(result) {
  stop();
  show("confirmed");
  await gateway("/api/v1/account/consent", { method: "POST", json: { version: agreementVersion }, csrf: result.csrf_token });
  const next = document.getElementById("login-card").dataset.next;
  window.location.assign(next && next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : "/account");
}

// The tab's panel is shown and hidden by the login page's tabs (login.js).
new MutationObserver(() => {
  if (panel.hidden) {
    stop();
    show("idle");
  } else if (!ticket) start();
}).observe(panel, { attributes: true, attributeFilter: ["hidden"] });
consent.addEventListener("change", () => {
  if (!panel.hidden && !ticket) start();
});
refresh.addEventListener("click", () => start());
document.documentElement.dataset.qrReady = "true";
