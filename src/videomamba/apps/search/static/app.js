"use strict";
// Plain JS: query /api/search, show one card per moment, play the file from the moment's start.
const form = document.getElementById("search-form");
const input = document.getElementById("q");
const statusBox = document.getElementById("status");
const results = document.getElementById("results");
const player = document.getElementById("player");
const playerBox = document.getElementById("player-box");
const nowPlaying = document.getElementById("now-playing");

function clock(t) {
  const m = Math.floor(t / 60), s = (t - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${s}`;
}

function play(hit) {
  playerBox.hidden = false;
  player.dataset.start = hit.start;
  player.dataset.media = hit.media;
  nowPlaying.textContent = `${hit.name}  ${clock(hit.start)} - ${clock(hit.end)}`;
  const seek = () => { player.currentTime = hit.start; player.play().catch(() => {}); };
  if (player.getAttribute("src") === hit.media && player.readyState >= 1) { seek(); return; }
  player.addEventListener("loadedmetadata", seek, { once: true });
  player.src = hit.media;   // the #t= fragment is not needed: we seek once the metadata is in
}

function card(hit, rank) {
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.rank = rank;
  li.dataset.path = hit.path;
  li.dataset.start = hit.start;
  li.dataset.end = hit.end;
  const img = document.createElement("img");
  img.src = hit.thumb;
  img.alt = `${hit.name} at ${clock(hit.start)}`;
  img.loading = "lazy";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = hit.name;
  name.title = hit.path;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${clock(hit.start)} - ${clock(hit.end)} · ${hit.score.toFixed(3)}`;
  li.append(img, name, meta);
  li.addEventListener("click", () => play(hit));
  return li;
}

async function search(q) {
  statusBox.textContent = "searching...";
  statusBox.className = "";
  results.replaceChildren();
  try {
    const r = await fetch(`/api/search?q=${encodeURIComponent(q)}&k=12`);
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || body.detail || r.statusText);
    body.hits.forEach((h, i) => results.append(card(h, i + 1)));
    statusBox.textContent = `${body.hits.length} moment${body.hits.length === 1 ? "" : "s"}`;
  } catch (e) {
    statusBox.textContent = String(e.message || e);
    statusBox.className = "error";
  }
}

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = input.value.trim();
  if (q) search(q);
});

fetch("/api/info").then((r) => r.json()).then((info) => {
  const kind = info.text ? "" : " (classifier index: text search needs a video-text model)";
  statusBox.textContent = `${info.files} files, ${info.windows} windows${kind}`;
});
