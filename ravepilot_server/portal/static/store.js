// Takes waiting to be uploaded, kept in IndexedDB so a reload, a crash or a closed tab loses
// nothing: a take stays here (with its tus upload URL once the upload exists) until the server
// has every byte.

const DB_NAME = "ravepilot-portal";
const DB_VERSION = 1;
const TAKES = "takes";

/**
 * @typedef {object} Take
 * @property {string} id "<submission_id>:<script_key>": one pending take per prompt
 * @property {string} submissionId
 * @property {string} scriptKey
 * @property {Blob} blob
 * @property {string} mimeType
 * @property {string} filename
 * @property {number} size
 * @property {string | null} uploadUrl the tus upload once created, to resume it
 * @property {number} createdAt ms since the epoch
 */

/** @type {Promise<IDBDatabase> | null} */
let opening = null;

/**
 * Open (and on first use create) the database.
 * @returns {Promise<IDBDatabase>}
 */
function open() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const takes = request.result.createObjectStore(TAKES, { keyPath: "id" });
      takes.createIndex("submissionId", "submissionId");
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opening;
}

/**
 * Run one request in its own transaction and resolve when that transaction commits.
 * @template T
 * @param {IDBTransactionMode} mode
 * @param {(store: IDBObjectStore) => IDBRequest<T>} operation
 * @returns {Promise<T>}
 */
async function run(mode, operation) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(TAKES, mode);
    const request = operation(transaction.objectStore(TAKES));
    transaction.oncomplete = () => resolve(request.result);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

/**
 * The id of the take for a prompt of a submission.
 * @param {string} submissionId
 * @param {string} scriptKey
 * @returns {string}
 */
export function takeId(submissionId, scriptKey) {
  return `${submissionId}:${scriptKey}`;
}

/**
 * Keep a take, replacing any earlier pending take for the same prompt.
 * @param {Take} take
 * @returns {Promise<void>}
 */
export async function saveTake(take) {
  await run("readwrite", (store) => store.put(take));
}

/**
 * Every pending take of a submission, oldest first.
 * @param {string} submissionId
 * @returns {Promise<Take[]>}
 */
export async function pendingTakes(submissionId) {
  const takes = await run("readonly", (store) =>
    store.index("submissionId").getAll(IDBKeyRange.only(submissionId)),
  );
  return takes.sort((a, b) => a.createdAt - b.createdAt);
}

/**
 * Change the take ``id`` in one transaction, but only if it is still the take made at
 * ``createdAt``: a retake may have replaced it while its upload was running.
 * @param {string} id
 * @param {number} createdAt
 * @param {(take: Take) => Take | null} change the new take, or null to delete it
 * @returns {Promise<void>}
 */
async function update(id, createdAt, change) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const transaction = db.transaction(TAKES, "readwrite");
    const store = transaction.objectStore(TAKES);
    const read = store.get(id);
    read.onsuccess = () => {
      const take = read.result;
      if (!take || take.createdAt !== createdAt) return;
      const changed = change(take);
      if (changed) store.put(changed);
      else store.delete(id);
    };
    transaction.oncomplete = () => resolve();
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

/**
 * Remember the tus upload URL of a take, so a reload resumes that upload.
 * @param {Take} take
 * @param {string} uploadUrl
 * @returns {Promise<void>}
 */
export function setUploadUrl(take, uploadUrl) {
  return update(take.id, take.createdAt, (stored) => ({ ...stored, uploadUrl }));
}

/**
 * Forget a take once its upload finished (unless a retake has replaced it meanwhile).
 * @param {Take} take
 * @returns {Promise<void>}
 */
export function deleteTake(take) {
  return update(take.id, take.createdAt, () => null);
}
