// pxed status page: polls the JSON API and redraws the machines table.
// Everything from the server goes into the page as text (textContent), never
// as HTML: MACs, file names and errors come from the network.
"use strict";

(function () {
  const API = document.body.dataset.api;
  const POLL_MS = 2000;
  const body = document.querySelector("#machines tbody");
  const live = document.getElementById("live");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  // pxed as the DHCP server serves its leases beside the machines.
  const LEASES = API.replace(/machines$/, "leases");
  const leaseSection = document.getElementById("leases");
  const leaseBody = leaseSection.querySelector("tbody");

  let listTag = null;      // ETag of the last list
  let list = null;         // the last list
  let fetchedAt = 0;       // Date.now() when it arrived
  const open = new Set(decodeURIComponent(location.hash.slice(1)).split(",").filter(Boolean));
  const details = new Map();   // mac -> {tag, data}

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function bytes(n) {
    if (typeof n !== "number") return "";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " days ago";
  }

  function serverNow() {
    return list ? list.now + (Date.now() - fetchedAt) / 1000 : Date.now() / 1000;
  }

  // The path of a URL, without its query (script URLs carry a long signed one).
  function tail(url) {
    if (typeof url !== "string") return "";
    const i = url.indexOf("://");
    const path = i < 0 ? 0 : url.indexOf("/", i + 3);
    const rest = path < 0 ? url : url.slice(path);
    const query = rest.indexOf("?");
    return query < 0 ? rest : rest.slice(0, query);
  }

  // With a shared state store, which pxed served the step.
  function describe(e) {
    const what = describeStage(e);
    const by = (e.fields || {}).pxed;
    return by ? (what ? what + " " : "") + "[" + by + "]" : what;
  }

  function describeStage(e) {
    const f = e.fields || {};
    const took = typeof f.seconds === "number" ? " in " + f.seconds.toFixed(2) + " s" : "";
    switch (e.stage) {
      case "proxydhcp":
      case "dhcp":
      case "bootserver":
        return (f.arch ? f.arch + " " : "") + "\u2192 " + tail(f.bootfile);
      case "tftp-start": {
        const asked = Object.entries(f.options || {}).map(([k, v]) => k + "=" + v).join(" ");
        return f.file + (asked ? " (asked " + asked + ")" : "");
      }
      case "tftp-end":
      case "tftp-upload":
        return f.file + ": " + [
          f.outcome,
          typeof f.bytes === "number" ? bytes(f.bytes) + took : null,
          f.blksize !== undefined ? "blksize " + f.blksize : null,
          f.windowsize !== undefined ? "window " + f.windowsize : null,
          f.retransmits !== undefined ? f.retransmits + " retransmits" : null,
        ].filter((part) => part !== null && part !== undefined).join(", ") +
          (f.error ? " (" + f.error + ")" : "");
      case "script": {
        const n = Object.keys(f.files || {}).length;
        return (f.action ? f.action + ", " : "") + n + (n === 1 ? " file" : " files") +
          (f.peer ? " to " + f.peer : "");
      }
      case "booting":
        return "kernel and initrds loaded, kernel started";
      case "loop":
        return "fetched " + f.fetched + " " + f.count + " times without finishing a boot";
      default:
        if (f.file !== undefined) return f.file + ", " + bytes(f.bytes) + took;
        return "";
    }
  }

  function timelineTable(data) {
    const table = el("table", "timeline");
    const start = data.timeline.length ? data.timeline[0].when : 0;
    for (const e of data.timeline) {
      const tr = el("tr", "ev ev-" + e.stage);
      tr.append(el("td", "t", "+" + (e.when - start).toFixed(1) + " s"),
                el("td", "st", e.label), el("td", "d", describe(e)));
      table.append(tr);
    }
    return table;
  }

  function row(m) {
    const tr = el("tr", "machine");
    tr.dataset.mac = m.mac;
    tr.tabIndex = 0;
    const who = el("td", "who");
    who.dataset.label = "Machine";
    who.append(el("span", "mac", m.mac));
    who.append(el("span", "sub", [m.arch, m.address].filter(Boolean).join(" \u00b7 ")));
    const status = el("td", "status");
    status.dataset.label = "Status";
    status.append(el("span", "badge s-" + m.status, m.status));
    if (m.loops) status.append(el("span", "loops", m.loops + " loop" + (m.loops > 1 ? "s" : "")));
    const stage = el("td", "stage", m.label);
    stage.dataset.label = "Stage";
    const progress = el("td", "progress");
    progress.dataset.label = "Progress";
    const bar = el("div", "bar s-" + m.status);
    const fill = el("div", "fill");
    fill.style.width = Math.round(m.progress * 100) + "%";
    bar.append(fill);
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuenow", String(Math.round(m.progress * 100)));
    progress.append(bar, el("span", "pct", Math.round(m.progress * 100) + "%"));
    const seen = el("td", "seen");
    seen.dataset.label = "Last seen";
    seen.dataset.when = String(m.last_seen);
    seen.textContent = ago(serverNow() - m.last_seen);
    seen.title = new Date(m.last_seen * 1000).toLocaleString();
    tr.append(who, status, stage, progress, seen);
    tr.addEventListener("click", () => toggle(m.mac));
    tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") toggle(m.mac); });
    return tr;
  }

  function detailRow(mac) {
    const tr = el("tr", "detail");
    tr.dataset.for = mac;
    const td = el("td");
    td.colSpan = 5;
    const known = details.get(mac);
    td.append(known ? timelineTable(known.data) : el("span", "sub", "loading\u2026"));
    tr.append(td);
    return tr;
  }

  function render() {
    const machines = list ? list.machines : [];
    empty.hidden = machines.length > 0;
    const counts = {};
    for (const m of machines) counts[m.status] = (counts[m.status] || 0) + 1;
    summary.textContent = machines.length + (machines.length === 1 ? " machine" : " machines") +
      Object.entries(counts).map(([k, v]) => " \u00b7 " + v + " " + k).join("");
    const rows = [];
    for (const m of machines) {
      const tr = row(m);
      if (open.has(m.mac)) tr.classList.add("open");
      rows.push(tr);
      if (open.has(m.mac)) rows.push(detailRow(m.mac));
    }
    body.replaceChildren(...rows);
  }

  function tick() {
    for (const td of body.querySelectorAll("td.seen")) {
      td.textContent = ago(serverNow() - Number(td.dataset.when));
    }
  }

  function toggle(mac) {
    if (open.has(mac)) open.delete(mac); else open.add(mac);
    history.replaceState(null, "", open.size ? "#" + [...open].join(",") : location.pathname);
    render();
    if (open.has(mac)) loadDetail(mac).then(render, () => {});
  }

  async function loadDetail(mac) {
    const known = details.get(mac);
    const headers = known ? { "If-None-Match": known.tag } : {};
    const response = await fetch(API + "/" + encodeURIComponent(mac), { headers, cache: "no-store" });
    if (response.status === 304) return;
    if (!response.ok) { details.delete(mac); return; }
    details.set(mac, { tag: response.headers.get("ETag"), data: await response.json() });
  }

  async function pollLeases() {
    try {
      const response = await fetch(LEASES, { cache: "no-store" });
      if (!response.ok) { leaseSection.hidden = true; return; }
      const data = await response.json();
      leaseSection.hidden = false;
      leaseBody.replaceChildren(...data.leases.map((l) => {
        const tr = el("tr");
        tr.append(el("td", "mac", l.address), el("td", "mac", l.mac), el("td", null, l.state),
                  el("td", null, "in " + ago(l.expires - data.now).replace(/ ago$/, "")));
        return tr;
      }));
    } catch (err) {
      leaseSection.hidden = true;
    }
  }

  async function poll() {
    pollLeases();
    try {
      const headers = listTag ? { "If-None-Match": listTag } : {};
      const response = await fetch(API, { headers, cache: "no-store" });
      if (response.status === 200) {
        list = await response.json();
        listTag = response.headers.get("ETag");
        fetchedAt = Date.now();
        await Promise.all([...open].map((mac) => loadDetail(mac).catch(() => {})));
        render();
      } else if (response.status !== 304) {
        throw new Error("HTTP " + response.status);
      }
      live.textContent = "live";
      live.className = "live ok";
    } catch (err) {
      live.textContent = "offline, retrying";
      live.className = "live down";
    }
    setTimeout(poll, POLL_MS);
  }

  setInterval(tick, 1000);
  poll();
})();
