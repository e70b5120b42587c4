// The review page: the inbox as thumbnails (lowest score first), multi-select, label or discard, per-class counts.
"use strict";
const token = new URLSearchParams(location.search).get("token");
// the same page on the live view's port links to the other pages; edge-app review alone serves only this one
for (const a of document.querySelectorAll("#nav a")) if (token) a.href += "?token=" + encodeURIComponent(token);
if (location.pathname === "/") document.getElementById("nav").hidden = true;
const selected = new Set();
let items = [];

function withToken(url) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

async function api(path, body) {
  const headers = { "X-Edge-App": "1" };
  if (token) headers["Authorization"] = "Bearer " + token;
  const init = body === undefined ? { headers } : {
    method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error || resp.status + " " + resp.statusText);
  return data;
}

function say(text, error) {
  const el = document.getElementById("message");
  el.textContent = text;
  el.className = error ? "error" : "";
}

function render(data) {
  items = data.items;
  for (const name of [...selected]) if (!items.some((i) => i.image === name)) selected.delete(name);
  const grid = document.getElementById("grid");
  grid.replaceChildren(...items.map((item) => {
    const card = document.createElement("div");
    card.className = "card" + (selected.has(item.image) ? " selected" : "");
    card.dataset.image = item.image;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.src = withToken("api/review/inbox/" + encodeURIComponent(item.image));
    img.alt = item.image;
    const cap = document.createElement("div");
    cap.className = "caption";
    const score = typeof item.score === "number" ? Math.round(item.score * 100) + "%" : "?";
    cap.innerHTML = "";
    const span = document.createElement("span");
    span.textContent = (item.label || "none") + " " + score + (item.zone && item.zone !== "frame" ? " · " + item.zone : "");
    if (typeof item.score === "number" && item.score < 0.5) span.className = "low";
    cap.append(span);
    card.append(img, cap);
    card.addEventListener("click", () => {
      if (selected.has(item.image)) selected.delete(item.image); else selected.add(item.image);
      card.classList.toggle("selected");
      summary();
    });
    return card;
  }));
  const select = document.getElementById("class-select");
  const keep = select.value;
  // the training set's own classes first; the running model's other labels (the default ImageNet bundle has 1,000) after
  const own = data.classes.filter((c) => Object.hasOwn(data.counts, c)), others = data.classes.filter((c) => !Object.hasOwn(data.counts, c));
  const group = document.createElement("optgroup");
  group.label = "the running model's labels";
  group.append(...others.map((c) => new Option(c, c)));
  select.replaceChildren(...own.map((c) => new Option(c, c)), ...(others.length ? [group] : []));
  if (data.classes.includes(keep)) select.value = keep;
  const body = document.getElementById("counts-body");
  body.replaceChildren(...Object.entries(data.counts).map(([c, n]) => {
    const row = document.createElement("tr");
    row.innerHTML = "<td></td><td></td>";
    row.cells[0].textContent = c;
    row.cells[1].textContent = n;
    return row;
  }));
  summary();
}

function summary() {
  document.getElementById("summary").textContent = items.length + " image(s) to review, " + selected.size + " selected";
}

async function refresh() {
  try { render(await api("api/review/inbox")); } catch (e) { say("could not load the inbox: " + e.message, true); }
  doctor();
}

// the dataset doctor's findings for train/ (GET api/review/doctor): one line each, the files named; it changes nothing
async function doctor() {
  const list = document.getElementById("doctor-list"), summary = document.getElementById("doctor-summary");
  try {
    const r = await api("api/review/doctor");
    list.replaceChildren(...r.findings.map((f) => {
      const li = document.createElement("li");
      li.className = f.severity;
      li.dataset.kind = f.kind;
      li.textContent = f.message;
      return li;
    }));
    const skipped = [];
    if (!r.checked.small_images) skipped.push("small photos (no model input size)");
    if (!r.checked.mislabels) skipped.push("mislabels (no model features)");
    summary.textContent = (r.findings.length ? r.findings.length + " finding(s)" : "no findings") + " in " + r.photos + " photo(s)" +
      (skipped.length ? "; not checked: " + skipped.join(", ") : "");
  } catch (e) { summary.textContent = "the doctor could not check the training set: " + e.message; list.replaceChildren(); }
}

document.getElementById("select-all").addEventListener("click", () => { items.forEach((i) => selected.add(i.image)); render({ items, classes: [...document.getElementById("class-select").options].map((o) => o.value), counts: countsNow() }); });
document.getElementById("select-none").addEventListener("click", () => { selected.clear(); refresh(); });
function countsNow() {
  return Object.fromEntries([...document.getElementById("counts-body").rows].map((r) => [r.cells[0].textContent, Number(r.cells[1].textContent)]));
}
document.getElementById("label-btn").addEventListener("click", async () => {
  const label = document.getElementById("new-class").value.trim() || document.getElementById("class-select").value;
  if (!label) return say("choose a class or type a new one", true);
  if (!selected.size) return say("select some images first", true);
  try {
    const r = await api("api/review/label", { images: [...selected], label });
    say(r.moved.length + " image(s) labelled " + label);
    document.getElementById("new-class").value = "";
    selected.clear();
    await refresh();
  } catch (e) { say("labelling failed: " + e.message, true); }
});
document.getElementById("discard-btn").addEventListener("click", async () => {
  if (!selected.size) return say("select some images first", true);
  try {
    const r = await api("api/review/discard", { images: [...selected] });
    say(r.discarded.length + " image(s) discarded");
    selected.clear();
    await refresh();
  } catch (e) { say("discarding failed: " + e.message, true); }
});
async function candidate() {
  try {
    const r = await api("api/review/candidate");
    const lines = ["validation accuracy (int8): " + (r.val_accuracy.int8 * 100).toFixed(1) + "% on " + r.val_images + " images",
      "recall: " + Object.entries(r.recall).map(([c, v]) => c + " " + (v * 100).toFixed(0) + "%").join(", ")];
    if (r.comparison) lines.push(r.comparison);  // the server's line (edge_app.web.models.compared_with_running), as on /models
    document.getElementById("candidate-text").textContent = lines.join("\n");
    document.getElementById("candidate").hidden = false;
  } catch (e) { /* no candidate yet */ }
}
document.getElementById("download").href = withToken("api/review/dataset.tar.gz");
refresh();
candidate();
