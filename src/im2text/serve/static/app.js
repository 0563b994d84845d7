// The compare page: one image, one task, several models side by side. No framework, no build.
// Model output is always inserted as text (textContent), never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { task: "caption", file: null, models: [], selected: new Set(), limits: {} };
const TASK_TEXT = {
  caption: { label: "Prompt", optional: true, placeholder: "a photograph of" },
  ask: { label: "Question", optional: false, placeholder: "What is in the picture?" },
  read: null,
  detect: null,
};

function headers() {
  const key = localStorage.getItem("im2text-key") || "";
  return key ? { Authorization: "Bearer " + key } : {};
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (kind || "");
}

async function loadInfo() {
  let resp;
  try {
    resp = await fetch("/v1/info", { headers: headers() });
  } catch (e) {
    setStatus("server unreachable", "bad");
    return;
  }
  if (resp.status === 401) {
    $("key-field").hidden = false;
    setStatus("API key needed", "bad");
    return;
  }
  const info = await resp.json();
  $("key-field").hidden = true;
  if (!info.models.length) {
    // Models still loading: ask again shortly.
    setStatus("loading models…");
    setTimeout(loadInfo, 1000);
    return;
  }
  // Every model starts ticked; each task shows the ones that can do it.
  if (!state.models.length) for (const m of info.models) state.selected.add(m.id);
  state.models = info.models;
  state.limits = info.limits;
  setStatus(info.models.length + " model" + (info.models.length === 1 ? "" : "s") + " ready", "ok");
  renderModels();
}

function able(model) {
  return model.can.includes(state.task);
}

function renderModels() {
  const box = $("models");
  box.replaceChildren();
  for (const m of state.models) {
    const row = document.createElement("label");
    row.className = "model" + (able(m) ? "" : " off");
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.value = m.id;
    cb.disabled = !able(m);
    cb.checked = able(m) && state.selected.has(m.id);
    cb.addEventListener("change", () => {
      cb.checked ? state.selected.add(m.id) : state.selected.delete(m.id);
      refresh();
    });
    const name = document.createElement("span");
    name.textContent = m.id;
    const fam = document.createElement("span");
    fam.className = "family";
    fam.textContent = m.family;
    row.append(cb, name, fam);
    box.append(row);
  }
  for (const b of document.querySelectorAll("#tasks button")) {
    b.disabled = !state.models.some((m) => m.can.includes(b.dataset.task));
  }
  refresh();
}

function chosen() {
  return state.models.filter((m) => able(m) && state.selected.has(m.id));
}

function refresh() {
  const t = TASK_TEXT[state.task];
  $("style-field").hidden = state.task !== "caption";
  $("prompt-field").hidden = !t;
  if (t) {
    $("prompt-label").replaceChildren(t.label + " ");
    if (t.optional) {
      const em = document.createElement("em");
      em.textContent = "(optional)";
      $("prompt-label").append(em);
    }
    $("prompt").placeholder = t.placeholder;
  }
  const needText = t && !t.optional && !$("prompt").value.trim();
  $("run").disabled = !state.file || chosen().length === 0 || needText;
  $("hint").textContent = !state.file
    ? "Pick an image first."
    : chosen().length === 0
      ? "Tick one or more models."
      : needText
        ? "Type a question."
        : "";
}

function setTask(task) {
  state.task = task;
  for (const b of document.querySelectorAll("#tasks button")) {
    b.setAttribute("aria-selected", String(b.dataset.task === task));
  }
  renderModels();
}

function setFile(file) {
  if (!file || !file.type.startsWith("image/")) {
    $("hint").textContent = "That is not an image.";
    return;
  }
  state.file = file;
  const img = $("preview");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  img.hidden = false;
  $("drop-hint").hidden = true;
  refresh();
}

// The image with each region's box and label drawn over it (model text drawn, never parsed).
async function boxes(regions) {
  const bitmap = await createImageBitmap(state.file);
  const canvas = document.createElement("canvas");
  canvas.className = "regions";
  const scale = Math.min(1, 480 / bitmap.width);
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.dataset.regions = String(regions.length);
  const g = canvas.getContext("2d");
  g.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  g.lineWidth = 2;
  g.font = "12px sans-serif";
  for (const r of regions) {
    const [x0, y0, x1, y1] = r.box.map((v) => v * scale);
    g.strokeStyle = g.fillStyle = "hsl(" + Math.round(360 * r.score) + ", 80%, 50%)";
    g.strokeRect(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
    g.fillText(r.label + " " + r.score.toFixed(2), x0 + 2, Math.max(12, y0 - 2));
  }
  return canvas;
}

function pill(label, value) {
  const p = document.createElement("span");
  p.className = "pill";
  const b = document.createElement("b");
  b.textContent = value;
  p.append(label + " ", b);
  return p;
}

function card(model) {
  const c = document.createElement("article");
  c.className = "card";
  c.dataset.model = model.id;
  const head = document.createElement("header");
  const name = document.createElement("span");
  name.className = "model-name";
  name.textContent = model.id;
  const task = document.createElement("span");
  task.className = "task";
  task.textContent = state.task + " · " + model.family;
  head.append(name, task);
  const out = document.createElement("div");
  out.className = "output pending";
  out.textContent = "running…";
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.append(document.createElement("span"));
  const meta = document.createElement("div");
  meta.className = "meta";
  c.append(head, out, bar, meta);
  return c;
}

// What each task's record says, and a 0..1 number for the confidence bar.
function summarize(task, r) {
  if (task === "caption") {
    const p = Math.exp(r.mean_logprob);
    return { text: r.caption, score: "log-p " + r.mean_logprob.toFixed(3), bar: p };
  }
  if (task === "ask") {
    return { text: r.answer, score: "confidence " + r.confidence.toFixed(3), bar: r.confidence };
  }
  if (task === "detect") {
    const scores = r.regions.map((g) => g.score);
    const mean = scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : 0;
    return {
      text: r.labels.length ? r.labels.join(", ") : "(nothing found)",
      score: r.regions.length + " regions · mean " + mean.toFixed(3),
      bar: mean,
    };
  }
  const scores = r.lines.map((l) => l.confidence);
  const mean = scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : 0;
  return {
    text: r.text || "(no text found)",
    score: r.lines.length + " lines · mean " + mean.toFixed(3),
    bar: mean,
  };
}

async function runOne(model, c) {
  const form = new FormData();
  form.append("model", model.id);
  form.append("image", state.file, state.file.name || "image");
  const text = $("prompt").value.trim();
  if (state.task === "caption" && text) form.append("prompt", text);
  if (state.task === "caption" && $("style").value) form.append("style", $("style").value);
  if (state.task === "ask") form.append("question", text);
  const out = c.querySelector(".output");
  const meta = c.querySelector(".meta");
  const t0 = performance.now();
  try {
    const resp = await fetch("/v1/" + state.task, { method: "POST", body: form, headers: headers() });
    const body = await resp.json();
    const rtt = performance.now() - t0;
    if (!resp.ok) throw new Error(body.error ? body.error.message : "HTTP " + resp.status);
    const r = body.results[0];
    if (r.error) throw new Error(r.error);
    const s = summarize(state.task, r);
    out.className = "output";
    out.textContent = s.text;
    if (state.task === "detect") c.insertBefore(await boxes(r.regions), out);
    c.querySelector(".bar span").style.width = Math.round(100 * Math.max(0, Math.min(1, s.bar))) + "%";
    meta.replaceChildren(
      pill("latency", Math.round(rtt) + " ms"),
      pill("server", Math.round(body.latency_ms) + " ms"),
      pill("", s.score),
    );
    c.dataset.state = "done";
  } catch (e) {
    out.className = "output error";
    out.textContent = String(e.message || e);
    meta.replaceChildren(pill("latency", Math.round(performance.now() - t0) + " ms"));
    c.dataset.state = "error";
  }
}

async function run() {
  const models = chosen();
  if (!state.file || !models.length) return;
  const results = $("results");
  results.replaceChildren();
  $("run").disabled = true;
  const cards = models.map((m) => {
    const c = card(m);
    results.append(c);
    return c;
  });
  await Promise.all(models.map((m, i) => runOne(m, cards[i])));
  refresh();
}

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const ev of ["dragleave", "drop"]) {
    drop.addEventListener(ev, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    setFile(e.dataTransfer.files[0]);
  });
  for (const b of document.querySelectorAll("#tasks button")) {
    b.addEventListener("click", () => setTask(b.dataset.task));
  }
  $("prompt").addEventListener("input", refresh);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !$("run").disabled) run();
  });
  $("run").addEventListener("click", run);
  $("api-key").addEventListener("change", (e) => {
    localStorage.setItem("im2text-key", e.target.value.trim());
    loadInfo();
  });
}

wire();
loadInfo();
