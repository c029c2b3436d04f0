// MDR console: SLA countdowns, live queue over server-sent events, raw records on demand.
// Loaded from this origin only (CSP: no inline script). Record text is only ever set with textContent.
"use strict";

function span(seconds) {
  let s = Math.floor(Math.abs(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${pad(m)}m`;
  return `${m}m ${pad(s)}s`;
}

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".countdown[data-due]")) {
    const due = Date.parse(el.dataset.due);
    if (Number.isNaN(due)) continue;
    const left = (due - now) / 1000;
    el.textContent = left >= 0 ? `${span(left)} left` : `overdue ${span(left)}`;
    el.classList.toggle("late", left < 0);
    const row = el.closest("tr");
    if (row) row.classList.toggle("breached", left < 0 || row.classList.contains("breached"));
  }
}

function setLive(state) {
  const el = document.getElementById("live");
  if (el) el.dataset.state = state;
}

async function refreshQueue() {
  const table = document.getElementById("queue");
  if (!table) return;
  const query = table.dataset.query ? `?${table.dataset.query}` : "";
  const resp = await fetch(`/queue/rows${query}`, {credentials: "same-origin", headers: {Accept: "text/html"}});
  if (resp.status === 401 || resp.redirected) { window.location.assign("/login"); return; }
  if (!resp.ok) return;
  const doc = new DOMParser().parseFromString(`<table>${await resp.text()}</table>`, "text/html");
  const fresh = doc.getElementById("queue-rows");
  const old = document.getElementById("queue-rows");
  if (!fresh || !old) return;
  const before = new Set([...old.querySelectorAll("tr[data-ticket]")].map((r) => r.dataset.ticket));
  old.replaceWith(document.adoptNode(fresh));
  for (const row of fresh.querySelectorAll("tr[data-ticket]")) {
    if (!before.has(row.dataset.ticket)) row.classList.add("fresh");
  }
  const total = document.getElementById("queue-total");
  if (total) total.textContent = fresh.dataset.total || total.textContent;
  tick();
}

function listen() {
  if (!window.EventSource) return;
  const page = document.body.dataset.page;
  const incident = document.querySelector("article.incident");
  if (!document.getElementById("queue") && !incident) return;
  const es = new EventSource("/events");
  let pending = null;
  es.addEventListener("open", () => setLive("on"));
  es.addEventListener("error", () => setLive("off"));
  es.addEventListener("signedout", () => { es.close(); window.location.assign("/login"); });
  es.addEventListener("tickets", (ev) => {
    let ids = [];
    try { ids = JSON.parse(ev.data).ids || []; } catch (e) { return; }
    if (incident) {
      if (ids.map(String).includes(incident.dataset.ticket)) {
        document.getElementById("changed").classList.remove("hidden");
      }
      return;
    }
    if (page === "queue" && !pending) {  // coalesce bursts into one refresh
      pending = setTimeout(() => { pending = null; refreshQueue().catch(() => setLive("off")); }, 150);
    }
  });
}

function rawRecords() {
  for (const link of document.querySelectorAll("a.raw-link[data-alert]")) {
    link.addEventListener("click", async (ev) => {
      ev.preventDefault();
      const pre = [...document.querySelectorAll("pre.raw")].find((p) => p.dataset.rawFor === link.dataset.alert);
      if (!pre) return;
      if (!pre.classList.contains("hidden")) { pre.classList.add("hidden"); return; }
      const resp = await fetch(link.getAttribute("href"), {credentials: "same-origin"});
      pre.textContent = resp.ok ? await resp.text() : `(${resp.status})`;
      pre.classList.remove("hidden");
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 1000);
  listen();
  rawRecords();
});
