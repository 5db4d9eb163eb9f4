// /m/: the phone-width app standing in for the platform's mobile app. It signs the phone in
// through the ordinary login routes, scans a login QR code (camera where the browser has a
// BarcodeDetector, a paste field always), shows where the login is asked for, and confirms or
// cancels it.
import { LoginError, agreementVersion, explain, formatTime, gateway, publicOrigin, showMessage, t } from "./common.js";

const $ = (id) => document.getElementById(id);
const errorRegion = $("mobile-error");
const statusRegion = $("mobile-status");
const sections = ["mobile-signin", "mobile-scan", "mobile-confirm", "mobile-done"];
let csrf = null;
let ticket = null;
let camera = null;

function view(id) {
  for (const other of sections) $(other).hidden = other !== id;
}

function fail(error) {
  statusRegion.textContent = "";
  showMessage(errorRegion, explain(error instanceof LoginError ? error : new LoginError("unknown")));
  errorRegion.dataset.code = error instanceof LoginError ? error.code : "unknown";
}

function clear() {
  showMessage(errorRegion, "");
  delete errorRegion.dataset.code;
  statusRegion.textContent = "";
}

function post(path, json) {
  return gateway(path, { method: "POST", json, csrf });
}

// --- the phone's own login ----------------------------------------------------------------------

async function signedIn(result) {
  csrf = result.csrf_token;
  await gateway("/api/v1/account/consent", { method: "POST", json: { version: agreementVersion }, csrf }).catch(() => null);
  await ready();
}

function consented() {
  if ($("consent").checked) return true;
  showMessage(errorRegion, t("consent.required"));
  $("consent").focus();
  return false;
}

$("mobile-password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clear();
  if (!consented()) return;
  const password = $("password");
  try {
    const result = await gateway("/api/v1/login/password", { method: "POST", json: { identifier: $("identifier").value.trim(), password: password.value } });
    password.value = "";
    await signedIn(result);
  } catch (error) {
    password.value = "";
    fail(error);
  }
});

if ($("mobile-sms-form")) {
  $("send-code").addEventListener("click", async () => {
    clear();
    try {
      await gateway("/api/v1/codes", { method: "POST", json: { channel: "sms", to: $("phone").value.trim(), purpose: "login" } });
      statusRegion.textContent = t("code.sent");
    } catch (error) {
      fail(error);
    }
  });
  $("mobile-sms-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    if (!consented()) return;
    try {
      await signedIn(await gateway("/api/v1/login/sms", { method: "POST", json: { phone: $("phone").value.trim(), code: $("code").value.trim() } }));
    } catch (error) {
      fail(error);
    }
  });
}

// --- scanning -----------------------------------------------------------------------------------

async function scan(payload) {
  clear();
  stopCamera();
  try {
    const shown = await post("/api/v1/mobile/qr/scan", { qr_payload: payload.trim() });
    ticket = shown.ticket;
    $("confirm-site").textContent = shown.site;
    $("confirm-address").textContent = shown.address;
    $("confirm-browser").textContent = shown.browser;
    $("confirm-time").textContent = formatTime(shown.requested_at);
    view("mobile-confirm");
    $("confirm-login").focus();
  } catch (error) {
    fail(error);
  }
}

function stopCamera() {
  if (!camera) return;
  for (const track of camera.getTracks()) track.stop();
  camera = null;
  $("scan-video").hidden = true;
}

async function startCamera() {
  clear();
  const video = $("scan-video");
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch {
    showMessage(errorRegion, t("mobile.scan.no_camera"));
    return;
  }
  video.srcObject = camera;
  video.hidden = false;
  await video.play();
  const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
  const look = async () => {
    if (!camera) return;
    const found = await detector.detect(video).catch(() => []);
    if (found.length) scan(found[0].rawValue);
    else requestAnimationFrame(look);
  };
  look();
}

if ("BarcodeDetector" in window && navigator.mediaDevices) {
  $("scan-camera").hidden = false;
  $("scan-camera").addEventListener("click", startCamera);
}

$("scan-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if ($("scan-payload").value.trim()) scan($("scan-payload").value);
});

async function decide(step) {
  clear();
  try {
    await post(`/api/v1/mobile/qr/${step}`, { ticket });
    $("mobile-done-text").textContent = t(`mobile.done.${step}`);
    $("mobile-done").dataset.outcome = step;
    view("mobile-done");
  } catch (error) {
    fail(error);
  }
  ticket = null;
}

$("confirm-login").addEventListener("click", () => decide("confirm"));
$("cancel-login").addEventListener("click", () => decide("cancel"));
$("scan-again").addEventListener("click", () => {
  clear();
  $("scan-payload").value = "";
  view("mobile-scan");
});

// --- start ----------------------------------------------------------------------------------------

async function ready() {
  const who = await gateway("/api/v1/session");
  csrf = who.csrf_token;
  $("mobile-who").textContent = t("mobile.signed_in_as", { name: who.account.display_name });
  view("mobile-scan");
  // Opened from the phone's camera app: the QR code's URL carries the scan code in its fragment.
  if (location.hash.startsWith("#qr=")) {
    const payload = `${publicOrigin}/m/${location.hash}`;
    history.replaceState(null, "", location.pathname);
    await scan(payload);
  }
}

ready()
  .catch(() => view("mobile-signin"))
  .finally(() => {
    document.documentElement.dataset.ready = "mobile";
  });
