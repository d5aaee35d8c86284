// The page's API key, for a service that requires keys (SERVING_REQUIRE_KEYS=true,
// docs/security.md). The page learns that from a 401 on any of its calls: no extra endpoint.
// The key is kept in sessionStorage (this tab only, gone when it closes), never in the URL or
// a cookie, and sent as "Authorization: Bearer <key>" on every API call. The page and its files
// are served without a key: a browser cannot send one when it navigates.

const STORAGE_KEY = "mnist-inference.api-key";

let unauthorized = () => {};

/** The key kept for this tab, or null (also when storage is unavailable). */
export function storedKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

export function storeKey(key) {
  try {
    sessionStorage.setItem(STORAGE_KEY, key);
    return true;
  } catch {
    return false;
  }
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Nothing stored.
  }
}

/** `headers` plus the Authorization header when a key is kept. */
export function withKey(headers = {}) {
  const key = storedKey();
  return key === null ? headers : { ...headers, Authorization: `Bearer ${key}` };
}

/** Called with the response whenever the service answers 401. */
export function onUnauthorized(callback) {
  unauthorized = callback;
}

/** fetch() for the service's API: the key added, a 401 reported. */
export async function apiFetch(path, options = {}) {
  const response = await fetch(path, { ...options, headers: withKey(options.headers) });
  if (response.status === 401) unauthorized(response);
  return response;
}

/** The key panel: hidden until a key is kept or the service asks for one. */
export class KeyPanel {
  constructor(root, { onChange }) {
    this.root = root;
    this.input = root.querySelector("#key-input");
    this.status = root.querySelector("#key-status");
    this.forget = root.querySelector("#key-forget");
    this.onChange = onChange;
    root.querySelector("#key-use").addEventListener("click", () => this.use());
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.use();
    });
    this.forget.addEventListener("click", () => {
      forgetKey();
      this.show("Key forgotten: API calls go without a key.");
      this.onChange();
    });
    if (storedKey() !== null) this.show("Using the API key kept for this tab.");
  }

  show(text) {
    this.status.textContent = text;
    this.forget.hidden = storedKey() === null;
    this.root.hidden = false;
  }

  /** The service answered 401: ask for a key (or another one). */
  ask() {
    this.show(storedKey() === null
      ? "This service needs an API key (it answered 401). Enter your key to continue."
      : "The service did not accept the key kept for this tab (401). Enter another key.");
    this.root.classList.add("asking");
  }

  use() {
    const key = this.input.value.trim();
    if (key === "") {
      this.show("Enter a key first.");
      return;
    }
    this.input.value = "";
    if (!storeKey(key)) {
      this.show("This browser does not allow storing the key (sessionStorage is off).");
      return;
    }
    this.root.classList.remove("asking");
    this.show("Using the API key kept for this tab.");
    this.onChange();
  }
}
