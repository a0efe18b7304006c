"use strict";
// The livesettings console: the settings tree from the event stream's
// snapshot, kept live by its commit events; edits go through the REST API
// with If-Match, so a value changed elsewhere meanwhile is never overwritten
// silently. No framework, no build step: DOM nodes are built with
// createElement and textContent only (values are never parsed as HTML).

(function () {
  const TOKEN_KEY = "livesettings-token";
  const REDACTED = "<redacted>";
  const state = {
    token: null,
    values: new Map(), // key -> JSON value
    seq: 0, // the position the page reflects
    source: null,
    historyKey: null,
  };
  const $ = (id) => document.getElementById(id);

  // --- the token: from ?token= or #token= once, then sessionStorage ------
  function takeToken() {
    const url = new URL(window.location.href);
    const fromHash = new URLSearchParams(url.hash.replace(/^#/, "")).get("token");
    const fromQuery = url.searchParams.get("token");
    const given = fromHash || fromQuery;
    if (given) {
      sessionStorage.setItem(TOKEN_KEY, given);
      url.searchParams.delete("token");
      url.hash = "";
      // Out of the address bar (and so out of bookmarks and screen shares).
      history.replaceState(null, "", url.pathname + url.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(method, path, body, headers) {
    const init = { method, headers: Object.assign({ Authorization: "Bearer " + state.token }, headers || {}) };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (response.status === 401) { askForToken("The token was refused."); }
    return { ok: response.ok, status: response.status, data };
  }

  // --- small DOM helpers ------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }
  const isRedacted = (value) => value !== null && typeof value === "object" && !Array.isArray(value) && value[REDACTED] === true;
  function shown(value) {
    if (value === undefined || value === null) return value === null ? "null" : "";
    if (isRedacted(value)) return "";
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function described(value) {
    if (value === undefined) return "(none)";
    if (isRedacted(value)) return "(secret)";
    return JSON.stringify(value);
  }

  // --- banners and connection state ---------------------------------------
  function banner(kind, text) {
    const close = el("button", { type: "button", text: "Dismiss", "aria-label": "Dismiss this notice" });
    const node = el("div", { class: "banner " + kind, role: kind === "bad" ? "alert" : "status" }, el("p", { text }), close);
    close.addEventListener("click", () => node.remove());
    $("banners").prepend(node);
    while ($("banners").children.length > 5) $("banners").lastElementChild.remove();
  }
  function connection(stateName, text) {
    const pill = $("connection");
    pill.dataset.state = stateName;
    pill.textContent = text;
  }
  function askForToken(message) {
    $("login").hidden = false;
    if (message) banner("bad", message);
    if (state.source) { state.source.close(); state.source = null; }
    connection("offline", "not connected");
  }

  // --- the tree -----------------------------------------------------------
  function flatten(prefix, value, into) {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && !isRedacted(value)) {
      for (const [name, child] of Object.entries(value)) flatten(prefix ? prefix + "." + name : name, child, into);
    } else if (prefix) {
      into.set(prefix, value);
    }
    return into;
  }

  function row(key) {
    return document.querySelector('.row[data-key="' + CSS.escape(key) + '"]');
  }

  function buildRow(key, value) {
    const segments = key.split(".");
    const name = segments.pop();
    const input = el("input", {
      class: "value", "aria-label": "Value of " + key, autocomplete: "off", spellcheck: "false",
    });
    input.value = shown(value);
    input.dataset.type = isRedacted(value) ? "secret" : (value === null ? "null" : typeof value === "object" ? "json" : typeof value);
    if (isRedacted(value)) input.placeholder = "secret: type a new value to replace it";
    const error = el("span", { class: "error", role: "alert" });
    const save = el("button", { type: "button", class: "primary save", text: "Save" });
    const hist = el("button", { type: "button", class: "show-history", text: "History", "aria-label": "History of " + key });
    input.addEventListener("input", () => input.classList.toggle("dirty", input.value !== shown(state.values.get(key))));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); saveValue(key); }
      if (event.key === "Escape") { input.value = shown(state.values.get(key)); input.classList.remove("dirty"); error.textContent = ""; }
    });
    save.addEventListener("click", () => saveValue(key));
    hist.addEventListener("click", () => openHistory(key));
    // The sections above show the path; the full key is the tooltip.
    const label = el("span", { class: "key", title: key }, name);
    return el("div", { class: "row", "data-key": key }, label, input, save, hist, error);
  }

  function render() {
    const tree = $("tree");
    const open = new Set([...tree.querySelectorAll("details")].filter((d) => !d.open).map((d) => d.dataset.section));
    tree.replaceChildren();
    const keys = [...state.values.keys()].sort();
    const sections = new Map([["", tree]]);
    for (const key of keys) {
      const segments = key.split(".");
      let parent = tree;
      for (let depth = 1; depth < segments.length; depth++) {
        const section = segments.slice(0, depth).join(".");
        let node = sections.get(section);
        if (!node) {
          node = el("details", { "data-section": section }, el("summary", { text: segments[depth - 1] }));
          node.open = !open.has(section);
          parent.append(node);
          sections.set(section, node);
        }
        parent = node;
      }
      parent.append(buildRow(key, state.values.get(key)));
    }
    $("summary").textContent = keys.length + " settings · seq " + state.seq;
    filter();
  }

  function filter() {
    const query = $("search").value.trim().toLowerCase();
    for (const node of document.querySelectorAll(".row")) {
      const key = node.dataset.key;
      const text = key.toLowerCase() + " " + shown(state.values.get(key)).toLowerCase();
      node.classList.toggle("hidden", query !== "" && !text.includes(query));
    }
    const sections = [...document.querySelectorAll(".tree details")].reverse();
    for (const section of sections) {
      const visible = section.querySelector(".row:not(.hidden)") !== null;
      section.classList.toggle("hidden", !visible);
      if (query !== "" && visible) section.open = true;
    }
  }

  function flash(key) {
    const node = row(key);
    if (!node) return;
    node.classList.remove("changed");
    void node.offsetWidth; // restart the animation
    node.classList.add("changed");
  }

  // --- the event stream ---------------------------------------------------
  function applySnapshot(data) {
    state.values = flatten(data.prefix || "", data.settings, new Map());
    state.seq = data.seq;
    render();
    if (data.reason === "compacted") banner("info", "Resynchronized from a full snapshot: the change log no longer reaches back to where this page was (seq " + data.seq + ").");
    if (data.reason === "lagged") banner("info", "This page fell behind the changes and was resynchronized from a full snapshot (seq " + data.seq + ").");
    if (data.reason === "unknown_seq") banner("info", "The database is not the one this page was showing; reloaded everything (seq " + data.seq + ").");
  }

  function applyCommit(data) {
    let reshape = false;
    for (const change of data.changes) {
      const had = state.values.has(change.key);
      if (change.new === null || change.new === undefined) {
        state.values.delete(change.key);
        reshape = true;
      } else {
        state.values.set(change.key, change.new);
        if (!had) reshape = true;
      }
    }
    state.seq = Math.max(state.seq, data.seqs[1]);
    if (reshape) {
      render();
    } else {
      for (const change of data.changes) {
        const node = row(change.key);
        if (!node) continue;
        const input = node.querySelector("input.value");
        if (input.classList.contains("dirty")) {
          node.classList.add("changed-elsewhere");
        } else {
          input.value = shown(change.new);
        }
      }
      $("summary").textContent = state.values.size + " settings · seq " + state.seq;
      filter();
    }
    for (const change of data.changes) flash(change.key);
    if (state.historyKey && data.changes.some((change) => change.key === state.historyKey)) openHistory(state.historyKey);
  }

  function connect() {
    if (state.source) state.source.close();
    connection("connecting", "connecting…");
    // EventSource cannot send headers: the stream takes the token in its
    // query (accepted on this route and the page only). It reconnects by
    // itself with Last-Event-ID, and the server resumes after that seq.
    const source = new EventSource("/api/events?token=" + encodeURIComponent(state.token));
    state.source = source;
    source.addEventListener("open", () => connection("live", "live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        connection("offline", "disconnected");
        // A refused token closes the stream for good; find out which.
        api("GET", "/api/stats").then((answer) => {
          if (answer.ok) setTimeout(connect, 2000);
        }).catch(() => setTimeout(connect, 2000));
      } else {
        connection("reconnecting", "reconnecting…");
      }
    });
    source.addEventListener("snapshot", (event) => applySnapshot(JSON.parse(event.data)));
    source.addEventListener("commit", (event) => applyCommit(JSON.parse(event.data)));
    source.addEventListener("reloaded", (event) => {
      const data = JSON.parse(event.data);
      banner("warn", "The store reloaded every setting (" + data.reason.replace(/_/g, " ") + ", seq " + data.seq + ").");
    });
    source.addEventListener("rejected", (event) => {
      const data = JSON.parse(event.data);
      banner("bad", "Refused a value written to " + data.keys.join(", ") + ": " + data.reason + ". The last good value is kept.");
    });
  }

  // --- editing ------------------------------------------------------------
  function parseInput(key, input) {
    const text = input.value;
    if (input.dataset.type === "string") return { value: text };
    try {
      return { value: JSON.parse(text) };
    } catch (_) {
      if (input.dataset.type === "secret") return { value: text };
      return { error: "not JSON: a string needs double quotes, e.g. \"" + text + "\"" };
    }
  }

  async function saveValue(key) {
    const node = row(key);
    if (!node) return;
    const input = node.querySelector("input.value");
    const error = node.querySelector(".error");
    const parsed = parseInput(key, input);
    if (parsed.error) { error.textContent = parsed.error; return; }
    error.textContent = "";
    const answer = await api("PUT", "/api/settings/" + key, parsed.value, { "If-Match": '"' + state.seq + '"' });
    if (answer.ok) {
      input.classList.remove("dirty");
      node.classList.remove("changed-elsewhere");
      return;
    }
    const data = answer.data || {};
    if (answer.status === 422 && data.rule) {
      error.textContent = "Refused: " + data.rule;
    } else if (answer.status === 412) {
      error.textContent = "Changed elsewhere meanwhile; the current value is shown. Edit again to overwrite it.";
      input.value = shown(state.values.get(key));
      input.classList.remove("dirty");
    } else {
      error.textContent = data.error || ("failed (" + answer.status + ")");
    }
  }

  async function addValue(event) {
    event.preventDefault();
    const key = $("add-key").value.trim();
    const text = $("add-value").value;
    let value;
    try { value = JSON.parse(text); } catch (_) { $("add-error").textContent = "not JSON: a string needs double quotes"; return; }
    const answer = await api("PUT", "/api/settings/" + key, value);
    if (answer.ok) {
      $("add-error").textContent = "";
      $("add-key").value = "";
      $("add-value").value = "";
    } else {
      const data = answer.data || {};
      $("add-error").textContent = data.rule ? "Refused: " + data.rule : (data.error || "failed");
    }
  }

  // --- history --------------------------------------------------------------
  async function openHistory(key) {
    state.historyKey = key;
    const panel = $("history");
    $("history-title").textContent = "History of " + key;
    panel.hidden = false;
    const answer = await api("GET", "/api/history/" + key + "?limit=50");
    const list = $("history-list");
    list.replaceChildren();
    $("history-error").textContent = answer.ok ? "" : ((answer.data && answer.data.error) || "cannot read the history");
    if (!answer.ok) return;
    const entries = answer.data.entries.slice().reverse();
    for (const entry of entries) {
      const revert = el("button", { type: "button", class: "revert", text: "Revert", "aria-label": "Revert the change at seq " + entry.seq });
      revert.addEventListener("click", async () => {
        const result = await api("POST", "/api/revert/" + entry.seq);
        $("history-error").textContent = result.ok ? "" : ((result.data && (result.data.rule || result.data.error)) || "revert failed");
      });
      list.append(el("li", { "data-seq": String(entry.seq) },
        el("span", { class: "change", text: described(entry.old === null ? undefined : entry.old) + " → " + described(entry.new === null ? undefined : entry.new) + " " }),
        revert,
        el("span", { class: "meta", text: "seq " + entry.seq + " · " + entry.at + " · " + entry.origin })));
    }
    if (!entries.length) list.append(el("li", { text: "No logged changes." }));
    const close = $("history-close");
    if (document.activeElement === document.body || !panel.contains(document.activeElement)) close.focus();
  }
  function closeHistory() {
    const key = state.historyKey;
    state.historyKey = null;
    $("history").hidden = true;
    const node = key && row(key);
    if (node) node.querySelector(".show-history").focus();
  }

  // --- start ------------------------------------------------------------------
  async function start() {
    state.token = takeToken();
    $("search").addEventListener("input", filter);
    $("add-form").addEventListener("submit", addValue);
    $("history-close").addEventListener("click", closeHistory);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !$("history").hidden) closeHistory();
      if (event.key === "/" && document.activeElement.tagName !== "INPUT") { event.preventDefault(); $("search").focus(); }
    });
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token-input").value.trim();
      sessionStorage.setItem(TOKEN_KEY, state.token);
      $("login").hidden = true;
      start2();
    });
    if (!state.token) { askForToken(); return; }
    start2();
  }
  async function start2() {
    const stats = await api("GET", "/api/stats");
    if (!stats.ok) return;
    $("database").textContent = stats.data.path + (stats.data.read_only ? " (read-only)" : "");
    connect();
  }
  start();
})();
