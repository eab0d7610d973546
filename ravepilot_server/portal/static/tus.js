// A small tus 1.0.0 client (core, creation and termination): https://tus.io/protocols/resumable-upload
//
// An upload never gives up on its own. A network error, a timeout, a 5xx, a 429 or an offset
// conflict makes it wait (growing, capped, jittered; a Retry-After is honoured; going back
// online cuts the wait short), ask the server with HEAD how many bytes it really has, and carry
// on from there. Only answers that retrying cannot change (400, 403, 413, 415, ...) end it.

export const TUS_VERSION = "1.0.0";

/** PATCH body size: big enough for few round trips, small enough to lose little on a drop. */
export const DEFAULT_CHUNK_SIZE = 5 * 1024 * 1024;

/** Waits between attempts in ms; the last one repeats for as long as it takes. */
export const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000, 30000];

const REQUEST_TIMEOUT_MS = 30_000;
const PATCH_TIMEOUT_MS = 120_000; // 5 MiB on a slow phone connection

/** An error that retrying will not fix, or a retryable one with its HTTP status. */
export class UploadError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, permanent?: boolean, retryAfterMs?: number}} [details]
   */
  constructor(message, { status = 0, permanent = false, retryAfterMs = 0 } = {}) {
    super(message);
    this.name = "UploadError";
    this.status = status;
    this.permanent = permanent;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Encode tus Upload-Metadata: "key base64(value),key base64(value)" (values as UTF-8).
 * @param {Record<string, string>} metadata
 * @returns {string}
 */
export function encodeMetadata(metadata) {
  return Object.entries(metadata)
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([key, value]) => {
      const bytes = new TextEncoder().encode(String(value));
      let binary = "";
      for (const byte of bytes) binary += String.fromCharCode(byte);
      return `${key} ${btoa(binary)}`;
    })
    .join(",");
}

/**
 * @typedef {object} Answer
 * @property {number} status
 * @property {(name: string) => string | null} header
 * @property {string} text
 */

/**
 * One HTTP request with XMLHttpRequest (fetch cannot report upload progress).
 * Rejects with UploadError (status 0) on a network error or timeout, and with a DOMException
 * "AbortError" when ``signal`` aborts.
 * @param {string} method
 * @param {string} url
 * @param {{headers?: Record<string, string>, body?: Blob | null, signal?: AbortSignal,
 *   timeout?: number, onUploadProgress?: (sent: number) => void}} [options]
 * @returns {Promise<Answer>}
 */
function send(method, url, options = {}) {
  const { headers = {}, body = null, signal, timeout = REQUEST_TIMEOUT_MS } = options;
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DOMException("upload aborted", "AbortError"));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.timeout = timeout;
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (options.onUploadProgress) {
      xhr.upload.onprogress = (event) => options.onUploadProgress?.(event.loaded);
    }
    const onAbort = () => xhr.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = () => signal?.removeEventListener("abort", onAbort);
    xhr.onload = () => {
      settle();
      resolve({ status: xhr.status, header: (name) => xhr.getResponseHeader(name), text: xhr.responseText });
    };
    xhr.onerror = () => {
      settle();
      reject(new UploadError(`network error on ${method}`));
    };
    xhr.ontimeout = () => {
      settle();
      reject(new UploadError(`${method} timed out`));
    };
    xhr.onabort = () => {
      settle();
      reject(new DOMException("upload aborted", "AbortError"));
    };
    xhr.send(body);
  });
}

/**
 * The server's reason from a JSON error body ({"error": ...}), or the status.
 * @param {Answer} answer
 * @returns {string}
 */
function reasonOf(answer) {
  try {
    const body = JSON.parse(answer.text);
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // not JSON: fall through
  }
  return `HTTP ${answer.status}`;
}

/**
 * Turn a non-success answer into the right UploadError.
 * @param {Answer} answer
 * @returns {UploadError}
 */
function failure(answer) {
  const { status } = answer;
  const retryable = status >= 500 || status === 429 || status === 408 || status === 423;
  const seconds = Number(answer.header("Retry-After"));
  return new UploadError(reasonOf(answer), {
    status,
    permanent: !retryable && status !== 409 && status !== 404 && status !== 410,
    retryAfterMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0,
  });
}

/**
 * @typedef {object} UploadOptions
 * @property {string} endpoint the tus creation URL
 * @property {Blob} file what to send
 * @property {Record<string, string>} metadata Upload-Metadata (e.g. script_key, filename, filetype)
 * @property {string | null} [uploadUrl] an upload created earlier, to resume
 * @property {number} [chunkSize] bytes per PATCH
 * @property {number[]} [retryDelays] ms between attempts
 * @property {(sent: number, total: number) => void} [onProgress]
 * @property {(url: string) => (void | Promise<void>)} [onUploadUrl] the upload was created
 * @property {(error: Error, delayMs: number) => void} [onRetry] an attempt failed; waiting
 */

/** One resumable upload of one Blob. */
export class TusUpload {
  /** @param {UploadOptions} options */
  constructor(options) {
    this.endpoint = new URL(options.endpoint, location.href).href;
    this.file = options.file;
    this.metadata = options.metadata;
    this.url = options.uploadUrl ?? null;
    this.chunkSize = Math.max(1, options.chunkSize ?? DEFAULT_CHUNK_SIZE);
    this.retryDelays = options.retryDelays ?? RETRY_DELAYS_MS;
    this.onProgress = options.onProgress ?? (() => {});
    this.onUploadUrl = options.onUploadUrl ?? (() => {});
    this.onRetry = options.onRetry ?? (() => {});
    /** Bytes the server is known to have; null when it must be asked (HEAD). */
    this.offset = this.url ? null : 0;
    this.controller = new AbortController();
  }

  /**
   * Upload until the server has every byte. Resolves with the upload URL; rejects with a
   * permanent UploadError, or an AbortError after {@link abort}.
   * @returns {Promise<string>}
   */
  async start() {
    let failures = 0;
    for (;;) {
      try {
        if (!this.url) await this.create();
        if (this.offset === null) this.offset = await this.head();
        this.onProgress(this.offset, this.file.size);
        while (this.offset < this.file.size) {
          await this.patch();
          failures = 0;
        }
        return this.url;
      } catch (error) {
        if (!(error instanceof UploadError) || error.permanent) throw error;
        if (error.status === 404 || error.status === 410) {
          // The server no longer knows this upload (expired or cleaned up): start a new one.
          this.url = null;
          this.offset = 0;
        } else {
          this.offset = null; // whatever happened, the server's count is the truth
        }
        const delay = this.delay(failures++, error.retryAfterMs);
        this.onRetry(error, delay);
        await this.wait(delay);
      }
    }
  }

  /** Stop uploading (the bytes sent so far stay on the server: {@link terminate} drops them). */
  abort() {
    this.controller.abort();
  }

  /** POST: create the upload, learn its URL. */
  async create() {
    const answer = await send("POST", this.endpoint, {
      headers: {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": encodeMetadata(this.metadata),
      },
      signal: this.controller.signal,
    });
    const location = answer.header("Location");
    if (answer.status === 404 || answer.status === 410) {
      // Not a lost upload but a link that no longer works (withdrawn): nothing to retry.
      throw new UploadError(reasonOf(answer), { status: answer.status, permanent: true });
    }
    if (answer.status !== 201 || !location) throw failure(answer);
    this.url = new URL(location, this.endpoint).href;
    this.offset = 0;
    await this.onUploadUrl(this.url);
  }

  /**
   * HEAD: how many bytes the server has.
   * @returns {Promise<number>}
   */
  async head() {
    const answer = await send("HEAD", this.url, {
      headers: { "Tus-Resumable": TUS_VERSION },
      signal: this.controller.signal,
    });
    const offset = Number(answer.header("Upload-Offset"));
    if (answer.status !== 200 && answer.status !== 204) throw failure(answer);
    if (!Number.isInteger(offset) || offset < 0 || offset > this.file.size) {
      throw new UploadError("the server sent no usable Upload-Offset", { status: answer.status });
    }
    return offset;
  }

  /** PATCH: send the next chunk from the known offset. */
  async patch() {
    const start = this.offset;
    const chunk = this.file.slice(start, Math.min(start + this.chunkSize, this.file.size));
    const answer = await send("PATCH", this.url, {
      headers: {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": String(start),
        "Content-Type": "application/offset+octet-stream",
      },
      body: chunk,
      signal: this.controller.signal,
      timeout: PATCH_TIMEOUT_MS,
      onUploadProgress: (sent) => this.onProgress(Math.min(start + sent, this.file.size), this.file.size),
    });
    if (answer.status !== 204 && answer.status !== 200) throw failure(answer);
    const offset = Number(answer.header("Upload-Offset"));
    if (!Number.isInteger(offset) || offset <= start || offset > this.file.size) {
      throw new UploadError("the server sent no usable Upload-Offset", { status: answer.status });
    }
    this.offset = offset;
    this.onProgress(offset, this.file.size);
  }

  /**
   * How long to wait after the n-th consecutive failure: the schedule with ±20 % jitter (so
   * many clients do not come back at the same instant), never less than a Retry-After.
   * @param {number} failures
   * @param {number} retryAfterMs
   * @returns {number}
   */
  delay(failures, retryAfterMs) {
    const base = this.retryDelays[Math.min(failures, this.retryDelays.length - 1)];
    return Math.max(retryAfterMs, Math.round(base * (0.8 + Math.random() * 0.4)));
  }

  /**
   * Wait ``ms``, or less when the browser comes back online; rejects if aborted.
   * @param {number} ms
   * @returns {Promise<void>}
   */
  wait(ms) {
    const signal = this.controller.signal;
    return new Promise((resolve, reject) => {
      const cleanUp = () => {
        clearTimeout(timer);
        window.removeEventListener("online", done);
        signal.removeEventListener("abort", aborted);
      };
      const done = () => {
        cleanUp();
        resolve();
      };
      const aborted = () => {
        cleanUp();
        reject(new DOMException("upload aborted", "AbortError"));
      };
      const timer = setTimeout(done, ms);
      window.addEventListener("online", done);
      signal.addEventListener("abort", aborted);
    });
  }
}

/**
 * DELETE an upload the customer no longer wants (a retake replaced it). Best effort.
 * @param {string} url
 * @returns {Promise<boolean>} whether the server confirmed
 */
export async function terminate(url) {
  try {
    const answer = await send("DELETE", url, { headers: { "Tus-Resumable": TUS_VERSION } });
    return answer.status === 204 || answer.status === 404 || answer.status === 410;
  } catch {
    return false;
  }
}
