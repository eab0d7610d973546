// Camera, microphone and MediaRecorder: everything the portal needs to make one take.

/**
 * Container and codec choices, best first: VP9/Opus where the browser has it (Chromium,
 * Firefox), then VP8, then whatever WebM it makes, then Safari's MP4 (H.264/AAC).
 */
export const PREFERRED_TYPES = [
  "video/webm;codecs=vp9,opus",
  "video/webm;codecs=vp8,opus",
  "video/webm",
  "video/mp4;codecs=avc1,mp4a",
  "video/mp4",
];

/** Target video bitrate: plenty for a talking head, small enough to upload on a phone. */
export const VIDEO_BITS_PER_SECOND = 2_500_000;

/** How often MediaRecorder hands over data, in ms, so a long take is never one huge buffer. */
export const TIMESLICE_MS = 1000;

/**
 * Whether this browser can record at all (getUserMedia and MediaRecorder).
 * @returns {boolean}
 */
export function canRecord() {
  return Boolean(
    globalThis.MediaRecorder && navigator.mediaDevices && navigator.mediaDevices.getUserMedia,
  );
}

/**
 * The first of PREFERRED_TYPES the browser can record, or "" to let it choose.
 * @param {(type: string) => boolean} [isSupported] defaults to MediaRecorder.isTypeSupported
 * @returns {string}
 */
export function pickMimeType(isSupported = (type) => MediaRecorder.isTypeSupported(type)) {
  return PREFERRED_TYPES.find((type) => isSupported(type)) ?? "";
}

/**
 * Ask for the camera and microphone. Rejects with the browser's DOMException
 * (NotAllowedError, NotFoundError, ...) which {@link cameraProblem} turns into a reason.
 * @returns {Promise<MediaStream>}
 */
export async function openCamera() {
  return navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: "user" },
    audio: { echoCancellation: true, noiseSuppression: true },
  });
}

/**
 * Why the camera could not be used, as one of "denied", "missing" or "other".
 * @param {unknown} error what openCamera rejected with
 * @returns {"denied" | "missing" | "other"}
 */
export function cameraProblem(error) {
  const name = error && typeof error === "object" && "name" in error ? error.name : "";
  if (name === "NotAllowedError" || name === "SecurityError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "missing";
  return "other";
}

/**
 * Stop every track of a stream (turns the camera light off).
 * @param {MediaStream | null | undefined} stream
 */
export function closeStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/**
 * Report the microphone's loudness (0..1, RMS of the waveform) about 20 times a second.
 * @param {MediaStream} stream
 * @param {(level: number) => void} onLevel
 * @returns {() => void} stops measuring
 */
export function watchLevel(stream, onLevel) {
  if (!stream.getAudioTracks().length || !globalThis.AudioContext) return () => {};
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    // RMS of speech sits around 0.05-0.3; stretch it so the meter moves visibly.
    onLevel(Math.min(1, Math.sqrt(sum / samples.length) * 4));
  }, 50);
  // A context made before a user gesture starts suspended in some browsers.
  context.resume().catch(() => {});
  return () => {
    clearInterval(timer);
    context.close().catch(() => {});
  };
}

/** One take: start() then stop() resolves with the recorded Blob. */
export class Recorder {
  /**
   * @param {MediaStream} stream the camera and microphone
   * @param {string} [mimeType] defaults to {@link pickMimeType}
   */
  constructor(stream, mimeType = pickMimeType()) {
    this.stream = stream;
    this.mimeType = mimeType;
    /** @type {Blob[]} */
    this.pieces = [];
    /** @type {MediaRecorder | null} */
    this.mediaRecorder = null;
  }

  /** Start recording; data arrives every TIMESLICE_MS. */
  start() {
    const options = { videoBitsPerSecond: VIDEO_BITS_PER_SECOND };
    if (this.mimeType) options.mimeType = this.mimeType;
    this.pieces = [];
    this.mediaRecorder = new MediaRecorder(this.stream, options);
    this.mediaRecorder.addEventListener("dataavailable", (event) => {
      if (event.data && event.data.size > 0) this.pieces.push(event.data);
    });
    this.mediaRecorder.start(TIMESLICE_MS);
  }

  /** @returns {boolean} */
  get recording() {
    return this.mediaRecorder?.state === "recording";
  }

  /**
   * Stop and return the take.
   * @returns {Promise<Blob>}
   */
  stop() {
    const mediaRecorder = this.mediaRecorder;
    if (!mediaRecorder) return Promise.reject(new Error("not recording"));
    return new Promise((resolve, reject) => {
      mediaRecorder.addEventListener(
        "stop",
        () => {
          // The type MediaRecorder really used ("video/webm;codecs=vp9,opus"), without codecs
          // for the Blob: servers and <video> want the container type.
          const type = (mediaRecorder.mimeType || this.mimeType || "video/webm").split(";")[0];
          resolve(new Blob(this.pieces, { type }));
        },
        { once: true },
      );
      mediaRecorder.addEventListener("error", (event) => reject(event.error), { once: true });
      if (mediaRecorder.state !== "inactive") mediaRecorder.stop();
    });
  }
}
