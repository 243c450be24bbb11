// solarscan web map: upload images, follow jobs, show quicklooks and detected panels (no network but this server).
"use strict";

const map = L.map("map", { zoomSnap: 0.25 }).setView([20, 0], 2);
const layers = L.layerGroup().addTo(map);
let apiKey = sessionStorage.getItem("solarscan-key") || "";
let selected = null; // id of the job on the map
let shown = null; // id of the job whose layers are drawn
let pollTimer = null;

const $ = (id) => document.getElementById(id);

function say(text) {
  $("message").textContent = text || "";
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${apiKey}` },
  });
  if (!response.ok) {
    let problem = `${response.status}`;
    try {
      const body = await response.json();
      problem = `${body.error}: ${typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)}`;
    } catch (_) { /* not JSON */ }
    const error = new Error(problem);
    error.status = response.status;
    throw error;
  }
  return response;
}

async function login() {
  apiKey = $("key").value.trim() || apiKey;
  try {
    await api("/v1/jobs");
  } catch (error) {
    say(error.status === 401 ? "That key is not accepted." : error.message);
    return;
  }
  sessionStorage.setItem("solarscan-key", apiKey);
  $("login").hidden = true;
  $("upload").hidden = false;
  $("jobs-section").hidden = false;
  say("");
  refresh();
}

async function upload() {
  const chosen = $("files").files;
  if (!chosen.length) {
    say("Choose one or more GeoTIFFs first.");
    return;
  }
  const form = new FormData();
  for (const file of chosen) form.append("files", file, file.name);
  // Options left empty are the server's; the server checks the values and says what is wrong.
  const options = new URLSearchParams();
  if ($("threshold").value) options.set("threshold", $("threshold").value);
  if ($("min-area").value) options.set("min_area_m2", $("min-area").value);
  if ($("regularise").checked) options.set("regularise", "true");
  $("send").disabled = true;
  try {
    const job = await (await api(`/v1/jobs?${options}`, { method: "POST", body: form })).json();
    selected = job.id;
    $("files").value = "";
    say("");
  } catch (error) {
    say(error.message);
  } finally {
    $("send").disabled = false;
  }
  refresh();
}

function jobCard(job) {
  const card = document.createElement("div");
  card.className = `job${job.id === selected ? " selected" : ""}`;
  card.dataset.jobId = job.id;
  const title = document.createElement("div");
  title.textContent = job.files.map((f) => f.name).join(", ");
  const state = document.createElement("div");
  state.className = `state state-${job.state}`;
  state.textContent = job.summary
    ? `${job.state}: ${job.summary.panels} panel(s), ${job.summary.area_m2.toFixed(1)} m²`
    : job.state;
  card.append(title, state);
  if (job.state === "running" || job.state === "queued") {
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = job.progress.fraction;
    card.append(bar);
  }
  for (const problem of [job.error, ...job.errors.map((e) => `${e.file}: ${e.error}`)]) {
    if (!problem) continue;
    const line = document.createElement("div");
    line.className = "error";
    line.textContent = problem;
    card.append(line);
  }
  card.addEventListener("click", () => {
    selected = job.id;
    refresh();
  });
  return card;
}

async function refresh() {
  clearTimeout(pollTimer);
  let delay = 3000; // after an error
  try {
    const jobs = (await (await api("/v1/jobs")).json()).jobs;
    $("jobs").replaceChildren(...jobs.slice().reverse().map(jobCard));
    delay = jobs.some((j) => j.state === "queued" || j.state === "running") ? 1000 : 5000;
    const job = jobs.find((j) => j.id === selected);
    $("download").disabled = !(job && job.state === "done");
    if (job && job.state === "done" && shown !== job.id) await show(job);
  } catch (error) {
    say(error.message);
  } finally {
    clearTimeout(pollTimer); // a refresh started meanwhile (a click) has set one too: keep a single poll
    pollTimer = setTimeout(refresh, delay);
  }
}

async function blobUrl(path) {
  return URL.createObjectURL(await (await api(path)).blob());
}

function attributes(properties) {
  const table = document.createElement("table");
  table.className = "attributes";
  for (const [name, value] of Object.entries(properties)) {
    const row = table.insertRow();
    row.insertCell().textContent = name;
    // an attribute with no value (e.g. the presence of a panel too large to be judged) is shown empty
    const text = value === null ? "" : typeof value === "number" ? String(+value.toFixed(6)) : String(value);
    row.insertCell().textContent = text;
  }
  return table;
}

async function show(job) {
  shown = job.id;
  layers.clearLayers();
  let extent = null;
  const problems = [];
  for (const file of job.files) {
    if (!file.quicklook) continue;
    const [west, south, east, north] = file.bounds;
    const bounds = L.latLngBounds([south, west], [north, east]);
    try {
      L.imageOverlay(await blobUrl(file.quicklook), bounds, { alt: file.name }).addTo(layers);
    } catch (error) {
      problems.push(`${file.name}: ${error.message}`); // the other pictures and the panels are still drawn
    }
    extent = extent ? extent.extend(bounds) : L.latLngBounds([south, west], [north, east]); // extend() mutates
  }
  if (problems.length) say(problems.join(" "));
  const panels = await (await api(`/v1/jobs/${job.id}/panels.geojson`)).json();
  const outlines = L.geoJSON(panels, {
    style: { className: "panel", color: "#ff3b30", weight: 2, fillOpacity: 0.25 },
    onEachFeature: (feature, layer) => layer.bindPopup(() => attributes(feature.properties)),
  }).addTo(layers);
  if (panels.features.length) extent = extent ? extent.extend(outlines.getBounds()) : outlines.getBounds();
  if (extent) map.fitBounds(extent, { padding: [20, 20] });
  $("map").dataset.panels = String(panels.features.length);
}

async function download() {
  if (!selected) return;
  const link = document.createElement("a");
  link.href = await blobUrl(`/v1/jobs/${selected}/panels.geojson`);
  link.download = `${selected}-panels.geojson`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

$("use-key").addEventListener("click", login);
$("key").addEventListener("keydown", (event) => event.key === "Enter" && login());
$("send").addEventListener("click", upload);
$("download").addEventListener("click", download);
if (apiKey) login();
