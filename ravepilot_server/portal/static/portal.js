// The recording page's step machine: welcome → consent → one step per prompt → upload → thanks
// (and withdraw from anywhere once consent is given). It talks to /r/<token>/api/* for state and
// to the tus endpoint for media; finished takes wait in IndexedDB until the server has them.

import {
  Recorder,
  cameraProblem,
  canRecord,
  closeStream,
  openCamera,
  pickMimeType,
  watchLevel,
} from "./recorder.js";
import * as store from "./store.js";
import { DEFAULT_CHUNK_SIZE, TusUpload, terminate } from "./tus.js";

const COUNTDOWN_SECONDS = 3;
const data = JSON.parse(document.getElementById("portal-data").textContent);
const strings = data.strings;
/** @type {any} the PortalSession, as the server last answered it */
let session = data.session;

// A test hook: ?chunk_size=N makes a short clip span several PATCH requests. It only changes
// how this browser splits its own upload, so it is harmless to leave in.
const chunkSize = (() => {
  const asked = Number(new URLSearchParams(location.search).get("chunk_size"));
  return Number.isInteger(asked) && asked >= 1024 ? asked : DEFAULT_CHUNK_SIZE;
})();

const $ = (selector) => document.querySelector(selector);
const main = $("#main");
const statusRegion = $("#status");
const alertRegion = $("#alert");
const liveVideo = $("#live-video");
const takeVideo = $("#take-video");
const fileInput = $("#file-input");
const filePanel = $("#file-panel");
const fileToggle = $('[data-action="toggle-file"]');
const cameraNotice = $("#camera-problem");
const button = (action) => $(`[data-action="${action}"]`);

/**
 * A user-visible string with its {placeholders} filled.
 * @param {string} key
 * @param {Record<string, string | number>} [values]
 * @returns {string}
 */
function t(key, values = {}) {
  let text = strings[key] ?? key;
  for (const [name, value] of Object.entries(values)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

/** @param {string} message said politely by screen readers, shown under the step */
function announce(message) {
  statusRegion.textContent = message;
}

/** @param {string} message an error: said at once, shown prominently; "" hides it */
function showAlert(message) {
  alertRegion.textContent = message;
  alertRegion.hidden = !message;
}

/** @param {number} bytes @returns {string} "20 MB" or "1 GB" */
function sizeLabel(bytes) {
  if (bytes >= 1024 ** 3) return t("size_gb", { n: Math.round((bytes / 1024 ** 3) * 10) / 10 });
  return t("size_mb", { n: Math.max(1, Math.round(bytes / 1024 ** 2)) });
}
const clock = (seconds) => `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;

// -- the JSON API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/**
 * Call the portal API; resolves with the JSON answer, rejects with ApiError.
 * @param {string} path "session", "consent", "finish" or "withdraw"
 * @param {object} [body] POSTed as JSON when given
 */
async function api(path, body) {
  let response;
  try {
    response = await fetch(`${data.api_base}/${path}`, {
      method: path === "session" ? "GET" : "POST",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      body: path === "session" ? undefined : JSON.stringify(body ?? {}),
    });
  } catch {
    throw new ApiError(t("error_network"), 0);
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(payload?.error ?? t("error_generic"), response.status);
  return payload;
}

// -- steps ---------------------------------------------------------------------------------------

let currentStep = main.dataset.initialStep;
let stepBeforeWithdraw = currentStep;

/**
 * Show one step; move focus to its heading so keyboard and screen reader users land there.
 * @param {string} name
 * @param {{focus?: boolean}} [options]
 */
function show(name, { focus = true } = {}) {
  for (const section of document.querySelectorAll("section[data-step]")) {
    section.hidden = section.dataset.step !== name;
  }
  currentStep = name;
  main.dataset.current = name;
  showAlert("");
  const consented = session.consent !== null && session.status !== "withdrawn";
  button("withdraw").hidden = !consented || name === "withdraw" || name === "withdrawn";
  if (name !== "record") stopCamera();
  if (focus) $(`#step-${name} h2`).focus();
}

const answeredOnServer = (key) => session.clips.some((clip) => clip.script_key === key);
const answered = (key) => uploads.has(key) || answeredOnServer(key);

/** Go where the session says the customer is. */
function route({ focus = true } = {}) {
  if (session.status === "withdrawn") return show("withdrawn", { focus });
  if (session.consent === null || session.status === "invited") {
    return show(currentStep === "consent" ? "consent" : "welcome", { focus });
  }
  if (session.status !== "recording") return show("thanks", { focus });
  const next = session.script.findIndex((prompt) => !answered(prompt.key));
  if (next >= 0) return enterRecord(next, { focus });
  show("upload", { focus });
  renderUploads();
  finishWhenDone();
}

// -- consent -------------------------------------------------------------------------------------

async function giveConsent(event) {
  event.preventDefault();
  const checkbox = $("#consent-check");
  const error = $("#consent-error");
  if (!checkbox.checked) {
    error.hidden = false;
    checkbox.setAttribute("aria-invalid", "true");
    checkbox.focus();
    return;
  }
  error.hidden = true;
  checkbox.removeAttribute("aria-invalid");
  try {
    session = await api("consent", { accepted: true });
  } catch (failure) {
    showAlert(failure.message);
    return;
  }
  announce(t("consent_saved"));
  route();
}

// -- recording -----------------------------------------------------------------------------------

let promptIndex = 0;
/** @type {MediaStream | null} */
let stream = null;
let stopLevel = () => {};
/** @type {Recorder | null} */
let recorder = null;
let recordTimer = 0;
/** @type {{blob: Blob, filename: string} | null} the take on screen, not yet accepted */
let candidate = null;
let cameraFailed = false;
let cameraRetry = false;

/** Show exactly these record buttons. */
function recordButtons(...visible) {
  for (const action of ["camera", "record", "stop", "accept", "retake"]) {
    button(action).hidden = !visible.includes(action);
  }
}

function setFilePanel(open) {
  filePanel.hidden = !open;
  fileToggle.setAttribute("aria-expanded", String(open));
}

function enterRecord(index, { focus = true } = {}) {
  promptIndex = index;
  const prompt = session.script[index];
  $('[data-field="record-heading"]').textContent = t("record_heading", {
    number: index + 1,
    count: session.script.length,
  });
  $('[data-field="prompt"]').textContent = prompt.prompt;
  $('[data-field="limit"]').textContent = t("record_limit", { seconds: prompt.max_seconds });
  clearCandidate();
  fileInput.value = "";
  setFilePanel(cameraFailed);
  show("record", { focus });
  if (stream) showLive();
  else if (!canRecord()) cameraUnavailable(t("record_unsupported"));
  else if (!cameraFailed) startCamera();
  else recordButtons(cameraRetry ? "camera" : undefined);
}

/**
 * No camera: say why (the notice is an alert, so it is read out) and open the file fallback.
 * @param {string} message
 * @param {boolean} retry offer "Turn on camera" again (after a denial the customer may allow it)
 */
function cameraUnavailable(message, retry = false) {
  cameraFailed = true;
  cameraRetry = retry;
  cameraNotice.textContent = message;
  cameraNotice.hidden = false;
  announce("");
  // The file input is the way forward now; trying the camera again is the secondary choice.
  button("camera").classList.remove("button--primary");
  recordButtons(retry ? "camera" : undefined);
  setFilePanel(true);
  if (!candidate) $("#stage").hidden = true; // an empty black box helps nobody
}

async function startCamera() {
  // Focus follows the customer's own press of "Turn on camera"; when the camera starts by
  // itself on entering the step, focus stays on the step's heading where it was put.
  const pressed = document.activeElement === button("camera");
  recordButtons();
  announce(t("record_starting_camera"));
  try {
    stream = await openCamera();
  } catch (error) {
    const problem = cameraProblem(error);
    cameraUnavailable(t(`record_no_camera_${problem}`), problem !== "missing");
    return;
  }
  if (currentStep !== "record") return stopCamera();
  cameraFailed = false;
  cameraNotice.hidden = true;
  button("camera").classList.add("button--primary");
  $("#stage").hidden = false;
  liveVideo.srcObject = stream;
  const meter = $("#level-meter");
  stopLevel = watchLevel(stream, (level) => (meter.value = level));
  $("#level-row").hidden = false;
  showLive();
  announce(t("record_camera_ready"));
  if (pressed) button("record").focus();
}

function stopCamera() {
  stopLevel();
  stopLevel = () => {};
  if (recorder?.recording) recorder.stop().catch(() => {});
  clearInterval(recordTimer);
  closeStream(stream);
  stream = null;
  liveVideo.srcObject = null;
  $("#level-row").hidden = true;
}

function showLive() {
  liveVideo.hidden = false;
  takeVideo.hidden = true;
  recordButtons("record");
}

function clearCandidate() {
  if (takeVideo.src) URL.revokeObjectURL(takeVideo.src);
  takeVideo.removeAttribute("src");
  takeVideo.hidden = true;
  liveVideo.hidden = false;
  candidate = null;
  $("#stage").hidden = cameraFailed && !stream;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function record() {
  recordButtons();
  const countdown = $("#countdown");
  countdown.hidden = false;
  for (let n = COUNTDOWN_SECONDS; n > 0; n -= 1) {
    countdown.textContent = String(n);
    announce(t("record_countdown", { n }));
    await sleep(1000);
    if (!stream) return; // the customer left the step
  }
  countdown.hidden = true;
  const limit = session.script[promptIndex].max_seconds;
  recorder = new Recorder(stream, pickMimeType());
  recorder.start();
  const started = performance.now();
  const badge = $("#recording-badge");
  const timeLeft = $("#time-left");
  badge.hidden = false;
  timeLeft.textContent = t("record_time_left", { time: clock(limit) });
  announce(t("record_recording", { seconds: limit }));
  recordButtons("stop");
  button("stop").focus();
  recordTimer = setInterval(() => {
    const left = limit - (performance.now() - started) / 1000;
    timeLeft.textContent = t("record_time_left", { time: clock(Math.max(0, Math.ceil(left))) });
    if (left <= 0) stopRecording(true);
  }, 100);
}

async function stopRecording(automatic = false) {
  clearInterval(recordTimer);
  if (!recorder?.recording) return;
  const current = recorder;
  recorder = null;
  $("#recording-badge").hidden = true;
  const blob = await current.stop();
  const extension = blob.type.includes("mp4") ? "mp4" : "webm";
  showCandidate(blob, `${session.script[promptIndex].key}.${extension}`);
  announce(t(automatic ? "record_auto_stopped" : "record_stopped"));
}

/** Put a take (recorded or chosen) on screen for review. */
function showCandidate(blob, filename) {
  clearCandidate();
  candidate = { blob, filename };
  $("#stage").hidden = false;
  takeVideo.src = URL.createObjectURL(blob);
  takeVideo.hidden = false;
  liveVideo.hidden = true;
  recordButtons("accept", "retake");
  button("accept").focus();
}

function retake() {
  clearCandidate();
  if (stream) {
    showLive();
    button("record").focus();
  } else {
    recordButtons(cameraFailed && cameraRetry ? "camera" : undefined);
    fileInput.value = "";
    fileInput.focus();
  }
}

function chooseFile() {
  const file = fileInput.files?.[0];
  if (!file) return;
  if (file.type && !session.accepted_types.includes(file.type)) {
    showAlert(t("file_wrong_type"));
    fileInput.value = "";
    return;
  }
  if (file.size > session.max_upload_bytes) {
    showAlert(t("file_too_large", { size: sizeLabel(session.max_upload_bytes) }));
    fileInput.value = "";
    return;
  }
  showAlert("");
  showCandidate(file, file.name);
  announce(t("file_chosen", { name: file.name }));
}

async function acceptTake() {
  if (!candidate) return;
  const { blob, filename } = candidate;
  if (blob.size > session.max_upload_bytes) {
    showAlert(t("take_too_large", { size: sizeLabel(session.max_upload_bytes) }));
    return;
  }
  const scriptKey = session.script[promptIndex].key;
  /** @type {import("./store.js").Take} */
  const take = {
    id: store.takeId(session.submission_id, scriptKey),
    submissionId: session.submission_id,
    scriptKey,
    blob,
    mimeType: blob.type || "application/octet-stream",
    filename,
    size: blob.size,
    uploadUrl: null,
    createdAt: Date.now(),
  };
  // Kept before anything else: from here on a reload or a crash cannot lose it.
  await store.saveTake(take).catch(() => {}); // no IndexedDB (a private window): upload anyway
  queueUpload(take);
  clearCandidate();
  announce(t("record_saved"));
  route();
}

// -- uploads -------------------------------------------------------------------------------------

/**
 * @typedef {object} Entry
 * @property {import("./store.js").Take} take
 * @property {"waiting" | "sending" | "retrying" | "done" | "failed"} state
 * @property {number} sent
 * @property {string} error
 * @property {TusUpload | null} upload
 */

/** @type {Map<string, Entry>} by script key, one per prompt */
const uploads = new Map();
let pumping = false;

/** @param {import("./store.js").Take} take */
function queueUpload(take) {
  const previous = uploads.get(take.scriptKey);
  if (previous && previous.state !== "done") {
    // A retake replaces a take still on its way: stop it and drop what the server has of it.
    previous.state = "failed";
    previous.upload?.abort();
    if (previous.take.uploadUrl) terminate(previous.take.uploadUrl);
  }
  uploads.set(take.scriptKey, { take, state: "waiting", sent: 0, error: "", upload: null });
  renderUploads();
  pump();
}

/** Send waiting takes one at a time (one upload at a time is kindest to a phone's uplink). */
async function pump() {
  if (pumping) return;
  pumping = true;
  try {
    for (let entry = nextWaiting(); entry; entry = nextWaiting()) await send(entry);
  } finally {
    pumping = false;
  }
  finishWhenDone();
}

const nextWaiting = () => [...uploads.values()].find((entry) => entry.state === "waiting");

/** @param {Entry} entry */
async function send(entry) {
  const { take } = entry;
  entry.state = "sending";
  const upload = new TusUpload({
    endpoint: session.upload_url,
    file: take.blob,
    metadata: { script_key: take.scriptKey, filename: take.filename, filetype: take.mimeType },
    uploadUrl: take.uploadUrl,
    chunkSize,
    onUploadUrl: async (url) => {
      entry.take = { ...entry.take, uploadUrl: url };
      await store.setUploadUrl(take, url).catch(() => {});
    },
    onProgress: (sent) => {
      entry.sent = sent;
      if (entry.state === "retrying") entry.state = "sending";
      renderEntry(entry);
      updateOffline();
    },
    onRetry: () => {
      entry.state = "retrying";
      renderEntry(entry);
      updateOffline();
    },
  });
  entry.upload = upload;
  renderEntry(entry);
  try {
    await upload.start();
  } catch (error) {
    if (uploads.get(take.scriptKey) !== entry) return; // replaced by a retake
    entry.state = "failed";
    entry.error = error.message;
    renderEntry(entry);
    return;
  }
  if (uploads.get(take.scriptKey) !== entry) return;
  entry.state = "done";
  entry.sent = take.size;
  await store.deleteTake(take).catch(() => {});
  renderEntry(entry);
  updateOffline();
  const done = [...uploads.values()].filter((e) => e.state === "done").length;
  announce(t("upload_summary", { done, count: uploads.size }));
}

function updateOffline() {
  const retrying = [...uploads.values()].some((entry) => entry.state === "retrying");
  $("#offline-notice").hidden = navigator.onLine && !retrying;
  $("#offline-notice").textContent = navigator.onLine ? t("upload_retrying") : t("upload_offline");
}

/** Build the upload list: one item per prompt with a progress bar. */
function renderUploads() {
  const list = $("#upload-list");
  list.replaceChildren();
  session.script.forEach((prompt, index) => {
    if (!answered(prompt.key)) return;
    const item = document.createElement("li");
    item.dataset.scriptKey = prompt.key;
    const label = document.createElement("p");
    label.className = "upload__label";
    label.id = `upload-label-${index}`;
    label.textContent = t("upload_item", { number: index + 1, prompt: prompt.prompt });
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-labelledby", label.id);
    bar.setAttribute("aria-describedby", `upload-state-${index}`);
    const state = document.createElement("p");
    state.id = `upload-state-${index}`;
    state.className = "upload__state";
    item.append(label, bar, state);
    list.append(item);
    const entry = uploads.get(prompt.key);
    if (entry) renderEntry(entry);
    else paint(item, 100, t("upload_done"), "done");
  });
}

/** @param {Entry} entry */
function renderEntry(entry) {
  const item = $(`#upload-list li[data-script-key="${CSS.escape(entry.take.scriptKey)}"]`);
  if (!item) return;
  item.dataset.bytes = String(entry.take.size);
  const percent = entry.take.size ? Math.floor((entry.sent / entry.take.size) * 100) : 100;
  const text = {
    waiting: t("upload_waiting"),
    sending: t("upload_progress", { percent }),
    retrying: t("upload_retrying"),
    done: t("upload_done"),
    failed: t("upload_failed", { reason: entry.error }),
  }[entry.state];
  paint(item, entry.state === "done" ? 100 : percent, text, entry.state);
}

function paint(item, percent, text, state) {
  const bar = item.querySelector("progress");
  bar.value = percent;
  bar.setAttribute("aria-valuetext", text);
  item.querySelector(".upload__state").textContent = text;
  item.dataset.state = state;
  item.querySelector("button")?.remove();
  if (state === "failed") {
    // Retrying cannot fix this one (too large, not a video...): offer to answer it again.
    const again = document.createElement("button");
    again.type = "button";
    again.className = "button";
    again.textContent = t("record_retake");
    const index = session.script.findIndex((prompt) => prompt.key === item.dataset.scriptKey);
    again.setAttribute("aria-describedby", `upload-label-${index}`);
    again.addEventListener("click", () => enterRecord(index));
    item.append(again);
  }
}

let finishing = false;

/** Once every prompt's take is on the server, submit. */
async function finishWhenDone() {
  if (currentStep !== "upload" || finishing || session.status !== "recording") return;
  const entries = [...uploads.values()];
  if (entries.some((entry) => entry.state !== "done")) return;
  if (!session.script.every((prompt) => answered(prompt.key))) return;
  finishing = true;
  button("finish").hidden = true;
  try {
    session = await api("finish");
    announce(t("upload_all_done"));
    route();
  } catch (failure) {
    showAlert(failure.status === 0 ? failure.message : t("finish_failed"));
    button("finish").hidden = false;
  } finally {
    finishing = false;
  }
}

// -- withdrawing ---------------------------------------------------------------------------------

async function withdraw() {
  try {
    await api("withdraw");
  } catch (failure) {
    showAlert(failure.message);
    return;
  }
  for (const entry of uploads.values()) {
    entry.state = "failed";
    entry.upload?.abort();
    await store.deleteTake(entry.take).catch(() => {});
  }
  uploads.clear();
  session = { ...session, status: "withdrawn" };
  route();
}

// -- wiring --------------------------------------------------------------------------------------

function bind() {
  button("start").addEventListener("click", () => {
    if (session.consent === null) show("consent");
    else route();
  });
  $("#consent-form").addEventListener("submit", giveConsent);
  button("camera").addEventListener("click", startCamera);
  button("record").addEventListener("click", record);
  button("stop").addEventListener("click", () => stopRecording(false));
  button("retake").addEventListener("click", retake);
  button("accept").addEventListener("click", acceptTake);
  fileToggle.addEventListener("click", () => {
    setFilePanel(filePanel.hidden);
    if (!filePanel.hidden) fileInput.focus();
  });
  fileInput.addEventListener("change", chooseFile);
  button("finish").addEventListener("click", finishWhenDone);
  button("withdraw").addEventListener("click", () => {
    stepBeforeWithdraw = currentStep;
    show("withdraw");
  });
  button("withdraw-cancel").addEventListener("click", () => {
    if (stepBeforeWithdraw === "record") enterRecord(promptIndex);
    else show(stepBeforeWithdraw);
  });
  button("withdraw-confirm").addEventListener("click", withdraw);
  window.addEventListener("online", updateOffline);
  window.addEventListener("offline", updateOffline);
}

async function start() {
  bind();
  // Takes recorded before a reload (or a crash) whose upload never finished: send them now.
  const pending = await store.pendingTakes(session.submission_id).catch(() => []);
  if (session.status === "recording") {
    for (const take of pending) queueUpload(take);
    if (pending.length) {
      const key = pending.length === 1 ? "upload_restored_one" : "upload_restored_other";
      announce(t(key, { count: pending.length }));
    }
  } else {
    for (const take of pending) store.deleteTake(take).catch(() => {}); // submitted or withdrawn
  }
  route({ focus: false });
  main.dataset.ready = "true";
}

start();
