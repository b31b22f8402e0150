// Argus web app: the little JavaScript the server-rendered pages need. No framework, no build step.
// Rules: user text only ever goes in through textContent / attributes (never innerHTML); every write
// carries X-Argus-CSRF (api/security.py); the API key lives in an HttpOnly cookie, never in a URL or here.

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const PENDING = "/static/pending.svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function data(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

async function api(method, url, body) {
  const opts = { method, headers: { "X-Argus-CSRF": "1", Accept: "application/json" }, credentials: "same-origin" };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(url, opts);
  let payload = null;
  try { payload = await resp.json(); } catch { /* empty or not JSON */ }
  if (!resp.ok) {
    const detail = payload && payload.detail;
    const why = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : resp.statusText;
    throw Object.assign(new Error(`${resp.status}: ${why}`), { status: resp.status });
  }
  return payload;
}

const mmss = (ms) => `${Math.floor(ms / 60000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, "0")}`;

// ------------------------------------------------------------------ everywhere
function thumbnails(root = document) {
  // a rendition that is not made yet (the asset is still being processed) shows a placeholder
  for (const img of $$("img[src*='/renditions/']", root)) {
    img.addEventListener("error", () => { if (!img.src.endsWith(PENDING)) img.src = PENDING; }, { once: true });
    if (img.complete && img.naturalWidth === 0 && img.src && !img.src.endsWith(PENDING)) img.src = PENDING;
  }
}

function reveal(root = document) {
  for (const btn of $$("button.reveal", root)) {
    btn.addEventListener("click", () => {
      btn.closest(".nsfw")?.classList.add("revealed");
      btn.remove();
    });
  }
}

function hitCard(h) {
  const id = h.asset_id;
  const img = el("img", { src: `/v1/assets/${id}/renditions/thumb`, alt: h.title || h.filename || id.slice(0, 12),
                          loading: "lazy" });
  const li = el("li", { class: "hit", "data-asset": id },
    el("a", { class: "thumb", href: `/asset/${id}` }, img),
    el("div", { class: "meta" },
      el("a", { class: "name", href: `/asset/${id}`, text: h.title || h.filename || id.slice(0, 12) }),
      el("p", { class: "labels", text: h.detail || (h.labels || []).slice(0, 5).join(", ") })));
  thumbnails(li);
  if (h.box) outline(img, h.box);
  return li;
}

function outline(img, box) {
  // the region a near-duplicate shares with the query, drawn over the (contained) thumbnail
  const frame = img.parentElement;
  frame.classList.add("contain");
  const mark = el("span", { class: "shared", title: "shared region" });
  frame.append(mark);
  const place = () => {
    const W = img.naturalWidth, H = img.naturalHeight, cw = frame.clientWidth, ch = frame.clientHeight;
    if (!W || !H || img.src.endsWith(PENDING)) { mark.remove(); return; }
    const s = Math.min(cw / W, ch / H), ox = (cw - W * s) / 2, oy = (ch - H * s) / 2;
    const [x0, y0, x1, y1] = box;
    Object.assign(mark.style, { left: `${ox + x0 * W * s}px`, top: `${oy + y0 * H * s}px`,
                                width: `${(x1 - x0) * W * s}px`, height: `${(y1 - y0) * H * s}px` });
  };
  if (img.complete) place(); else img.addEventListener("load", place, { once: true });
}

function fillGrid(section, hits, emptyText) {
  section.hidden = false;
  const grid = $("ul", section);
  grid.replaceChildren(...hits.map(hitCard));
  if (!hits.length) grid.append(el("li", { class: "muted", text: emptyText }));
}

function faceCrops(root = document) {
  // a face cut out of a thumbnail: scale and shift the image so the (padded) box fills the square frame
  for (const frame of $$("a.face[data-box]", root)) {
    const img = $("img", frame);
    const place = () => {
      const [x1, y1, x2, y2] = frame.dataset.box.split(",").map(Number);
      const W = img.naturalWidth, H = img.naturalHeight, size = frame.clientWidth || 96;
      if (!W || !H) return;
      const pad = 0.25, bw = (x2 - x1) * W * (1 + 2 * pad), bh = (y2 - y1) * H * (1 + 2 * pad);
      const s = size / Math.max(bw, bh, 1);
      Object.assign(img.style, { width: `${W * s}px`, height: `${H * s}px`,
        left: `${size / 2 - ((x1 + x2) / 2) * W * s}px`, top: `${size / 2 - ((y1 + y2) / 2) * H * s}px` });
    };
    if (img.complete) place(); else img.addEventListener("load", place, { once: true });
  }
}

// ------------------------------------------------------------------ live model states (server-sent events)
function follow(ids, onState) {
  // one EventSource for these assets; the server sends the current states first, then each change
  const qs = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
  const source = new EventSource(`/v1/live/assets?${qs}`);
  source.addEventListener("state", (ev) => onState(JSON.parse(ev.data)));
  return source;
}

function setState(li, state) {
  li.className = `state ${state.status}`;
  $(".status", li).textContent = state.status;
  let reason = $(".reason", li);
  if (state.reason) {
    if (!reason) li.append(reason = el("span", { class: "reason" }));
    reason.textContent = state.reason;
  }
}

// ------------------------------------------------------------------ search page
function searchPage() {
  for (const btn of $$("button.remove")) {
    btn.addEventListener("click", async () => {
      const li = btn.closest("li.hit");
      try {
        await api("DELETE", `/v1/projects/${btn.dataset.project}/assets/${li.dataset.asset}`);
        li.remove();
        const total = $("#total");
        if (total) total.textContent = String(Math.max(0, Number(total.textContent) - 1));
      } catch (err) { btn.textContent = `Failed: ${err.message}`; }
    });
  }
  for (const sel of $$(".searchbar select")) sel.addEventListener("change", () => sel.form.requestSubmit());
}

// ------------------------------------------------------------------ asset page
function assetPage() {
  const article = $("article.asset");
  const assetId = article.dataset.asset;
  const overlays = data("overlay-data") || [];
  const svg = $("#overlay");
  const stage = $("#stage");
  const player = $("#player");
  const shown = new Set($$("#toggles input:checked").map((i) => i.value));
  const NS = "http://www.w3.org/2000/svg";
  let currentT = null;

  function keyframeAt(seconds) {
    // the latest keyframe at or before the player's time: its boxes are the ones to show
    const times = [...new Set(overlays.filter((o) => o.t !== null).map((o) => o.t))].sort((a, b) => a - b);
    let best = times.length ? times[0] : null;
    for (const t of times) if (t <= seconds * 1000 + 1) best = t;
    return best;
  }

  function draw() {
    svg.replaceChildren();
    for (const o of overlays) {
      if (!shown.has(o.model) || (o.t !== null && o.t !== currentT)) continue;
      const [x1, y1, x2, y2] = o.box;
      const g = document.createElementNS(NS, "g");
      g.setAttribute("class", `box m-${o.model}`);
      g.setAttribute("data-model", o.model);
      const rect = document.createElementNS(NS, "rect");
      rect.setAttribute("x", x1); rect.setAttribute("y", y1);
      rect.setAttribute("width", Math.max(0, x2 - x1)); rect.setAttribute("height", Math.max(0, y2 - y1));
      rect.setAttribute("vector-effect", "non-scaling-stroke");
      const title = document.createElementNS(NS, "title");
      title.textContent = `${o.model}: ${o.label}`;
      g.append(title, rect);
      svg.append(g);
    }
  }

  for (const box of $$("#toggles input")) {
    box.addEventListener("change", () => { box.checked ? shown.add(box.value) : shown.delete(box.value); draw(); });
  }
  if (player) {
    currentT = keyframeAt(0);
    player.addEventListener("timeupdate", () => {
      const t = keyframeAt(player.currentTime);
      if (t !== currentT) { currentT = t; draw(); }
    });
    for (const btn of $$("button.keyframe")) {
      btn.addEventListener("click", () => {
        player.currentTime = Number(btn.dataset.t) / 1000;
        // not playing yet (nothing loaded: preload=none): show that keyframe's picture meanwhile
        if (player.readyState < 2) player.poster = $("img", btn).src;
        currentT = Number(btn.dataset.t);
        draw();
        for (const d of $$(".annotation[data-t]")) d.open = Number(d.dataset.t) === currentT;
      });
    }
    // transcript: a line seeks the player to when it is said; the line being said is marked while playing
    const cues = $$("button.cue");
    const seek = (ms) => {
      player.currentTime = ms / 1000;
      player.play().catch(() => {});  // autoplay may be refused: the player still sits at that time
    };
    for (const cue of cues) cue.addEventListener("click", () => seek(Number(cue.dataset.t)));
    if (cues.length) {
      player.addEventListener("timeupdate", () => {
        const ms = player.currentTime * 1000;
        for (const cue of cues) {
          const on = ms >= Number(cue.dataset.t) && ms < Number(cue.dataset.end) + 250;
          cue.classList.toggle("now", on);
          if (on) cue.setAttribute("aria-current", "true"); else cue.removeAttribute("aria-current");
        }
      });
    }
    // ?t=42.5 (a moment from search): start there
    const startAt = Number(new URLSearchParams(location.search).get("t"));
    if (startAt > 0) {
      player.preload = "metadata";
      player.currentTime = startAt;
      player.addEventListener("loadedmetadata", () => { player.currentTime = startAt; }, { once: true });
    }
  }
  draw();

  // region search: drag a box on the picture
  const picture = $("#picture");
  const region = $("#region");
  if (picture) regionSearch(stage, picture, region, assetId);

  // add to a project
  const form = $("#add-project");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const status = $(".status", form);
      try {
        const p = await api("POST", `/v1/projects/${form.project.value}/assets`, { asset_ids: [assetId] });
        status.textContent = `Added to ${p.name} (${p.assets} assets).`;
      } catch (err) { status.textContent = `Not added: ${err.message}`; }
    });
  }

  // live model states while the asset is still being annotated
  const list = $("#models");
  if (list && $$("li.pending", list).length) {
    const source = follow([assetId], (s) => {
      let li = $(`li[data-model="${CSS.escape(s.model)}"]`, list);
      if (!li) list.append(li = el("li", { "data-model": s.model }, el("span", { class: "model", text: s.model }),
        " ", el("span", { class: "status" })));
      setState(li, s);
      if (!$$("li.pending", list).length) source.close();
    });
  }
}

function regionSearch(stage, picture, region, assetId) {
  let start = null;
  const frac = (ev) => {
    const r = picture.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)),
            Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height))];
  };
  const place = (a, b) => {
    const r = picture.getBoundingClientRect();
    const s = stage.getBoundingClientRect();
    const [x1, x2] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
    const [y1, y2] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
    Object.assign(region.style, { left: `${r.left - s.left + x1 * r.width}px`, top: `${r.top - s.top + y1 * r.height}px`,
                                  width: `${(x2 - x1) * r.width}px`, height: `${(y2 - y1) * r.height}px` });
    return [x1, y1, x2, y2];
  };
  stage.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || ev.target.closest("button")) return;
    ev.preventDefault();
    start = frac(ev);
    region.hidden = false;
    place(start, start);
    stage.setPointerCapture(ev.pointerId);
  });
  stage.addEventListener("pointermove", (ev) => { if (start) place(start, frac(ev)); });
  stage.addEventListener("pointerup", async (ev) => {
    if (!start) return;
    const box = place(start, frac(ev));
    start = null;
    if (box[2] - box[0] < 0.03 || box[3] - box[1] < 0.03) { region.hidden = true; return; }
    const out = $("#region-results");
    out.hidden = false;
    const status = $(".status", out);
    status.textContent = "Searching…";
    const form = new FormData();
    form.append("asset_id", assetId);
    form.append("box", box.map((v) => v.toFixed(4)).join(","));
    form.append("k", "12");
    try {
      const res = await api("POST", "/v1/search/region", form);
      const hits = res.hits.filter((h) => h.asset_id !== assetId);
      fillGrid(out, hits, "Nothing similar found.");
      status.textContent = `${hits.length} result(s) for the selected region (${res.model}).`;
    } catch (err) { status.textContent = `Region search failed: ${err.message}`; }
  });
}

// ------------------------------------------------------------------ search by example
function examplePage() {
  const input = $("#example-file");
  const zone = $("#dropzone");
  const status = $("#example-status");
  const ndd = $("#ndd-results");
  const similar = $("#similar-results");

  const evidence = (m) => m.evidence && m.evidence.inliers !== undefined
    ? `${m.evidence.inliers} matching keypoints` : `distance ${m.distance}`;
  const nddHit = (m) => ({ asset_id: m.asset_id, filename: m.filename || m.asset_id.slice(0, 12), title: m.title,
                           box: m.region?.ref_box,
                           detail: `${m.relation} · found by ${m.path || "hash"} · ${evidence(m)}` });

  async function run(file) {
    if (!file) return;
    if (file.type.startsWith("image/")) {
      $("#example-preview").src = URL.createObjectURL(file);
      $("#example-query").hidden = false;
    }
    status.textContent = `Searching for ${file.name}…`;
    const ask = (mode) => { const f = new FormData(); f.append("file", file); f.append("mode", mode);
                            f.append("limit", mode === "similar" ? "12" : "50");
                            return api("POST", "/v1/ndd/search", f); };
    try {
      const near = await ask("near");
      fillGrid(ndd, near.matches.map(nddHit), "No copies of this picture in the archive.");
      status.textContent = `${near.total} near-duplicate(s).`;
      if (file.type.startsWith("image/")) {
        const sim = await ask("similar");
        fillGrid(similar, sim.matches.map((m) => ({ ...m, detail: `similarity ${m.score}` })), "Nothing similar.");
      }
      status.textContent = `${near.total} near-duplicate(s) found.`;
    } catch (err) { status.textContent = `Search failed: ${err.message}`; }
  }

  input.addEventListener("change", () => run(input.files[0]));
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); zone.classList.remove("over");
                                          run(ev.dataTransfer.files[0]); });
  document.addEventListener("paste", (ev) => {
    const file = [...(ev.clipboardData?.files || [])][0];
    if (file) run(file);
  });

  const asset = new URLSearchParams(location.search).get("asset");
  if (asset) {
    status.textContent = "Searching…";
    Promise.all([api("GET", `/v1/ndd/assets/${encodeURIComponent(asset)}?mode=near`),
                 api("GET", `/v1/ndd/assets/${encodeURIComponent(asset)}?mode=similar&limit=12`)])
      .then(([near, sim]) => {
        fillGrid(ndd, near.matches.map(nddHit), "No copies of this picture in the archive.");
        fillGrid(similar, sim.matches.map((m) => ({ ...m, detail: `similarity ${m.score}` })), "Nothing similar.");
        status.textContent = `${near.total} near-duplicate(s) of asset ${asset.slice(0, 12)}.`;
      })
      .catch((err) => { status.textContent = `Search failed: ${err.message}`; });
  }
}

// ------------------------------------------------------------------ upload
function uploadPage() {
  const input = $("#upload-files");
  if (!input) return;
  const zone = $("#dropzone");
  const list = $("#uploads");
  const expected = data("expected-data") || { image: [], video: [] };
  const rows = new Map(); // asset id -> row
  let source = null;

  function refollow() {
    if (source) source.close();
    source = follow([...rows.keys()], (s) => {
      const row = rows.get(s.asset_id);
      if (!row) return;
      let chip = $(`li[data-model="${CSS.escape(s.model)}"]`, row);
      if (!chip) $(".models", row).append(chip = el("li", { "data-model": s.model },
        el("span", { class: "model", text: s.model }), " ", el("span", { class: "status" })));
      setState(chip, s);
      const open = $$(".models li.pending", row).length;
      row.dataset.done = open ? "false" : "true";
    });
  }

  async function send(file) {
    const row = el("li", { class: "upload" },
      el("span", { class: "name", text: file.name }), " ", el("span", { class: "state", text: "uploading…" }),
      el("ul", { class: "models" }));
    list.prepend(row);
    const form = new FormData();
    form.append("file", file);
    const collection = $("#collection").value.trim();
    if (collection) form.append("collection", collection);
    try {
      const res = await api("POST", "/v1/assets", form);
      row.dataset.asset = res.asset_id;
      const media = res.content_type.startsWith("video/") ? "video" : "image";
      $(".state", row).replaceChildren(res.duplicate ? "already in the archive · " : "uploaded · ",
        el("a", { href: `/asset/${res.asset_id}`, text: "open" }));
      for (const m of expected[media] || []) {
        $(".models", row).append(el("li", { "data-model": m, class: "state pending" },
          el("span", { class: "model", text: m }), " ", el("span", { class: "status", text: "pending" })));
      }
      row.dataset.done = "false";
      rows.set(res.asset_id, row);
      refollow();
    } catch (err) {
      row.classList.add("rejected");
      $(".state", row).textContent = `rejected: ${err.message}`;
    }
  }

  const sendAll = (files) => { for (const f of files) send(f); };
  input.addEventListener("change", () => { sendAll([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => { ev.preventDefault(); zone.classList.remove("over");
                                          sendAll([...ev.dataTransfer.files]); });
}

// ------------------------------------------------------------------ projects
function projectsPage() {
  const form = $("#new-project");
  if (!form) return;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const body = { name: form.elements.namedItem("name").value.trim() };
      if (form.description.value.trim()) body.description = form.description.value.trim();
      const p = await api("POST", "/v1/projects", body);
      location.href = `/?project=${encodeURIComponent(p.project_id)}`;
    } catch (err) { $(".status", form).textContent = `Not created: ${err.message}`; }
  });
}

// ------------------------------------------------------------------ a person: name, merge, hide, remove, undo
function personPage() {
  const id = $("article.person-page").dataset.person;
  const status = $(".person-actions .status");
  const act = async (url, body, done) => {
    try { await api("POST", url, body); location.reload(); }
    catch (err) { if (status) status.textContent = `${done} failed: ${err.message}`; }
  };
  $("#name-person")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = ev.target.elements.namedItem("name").value.trim();
    act(`/v1/people/${id}/name`, { name: name || null }, "Naming");
  });
  $("#merge-person")?.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(`/v1/people/${id}/merge`, { sources: [ev.target.elements.namedItem("source").value] }, "Merging");
  });
  $("#hide-person")?.addEventListener("click", (ev) => {
    act(`/v1/people/${id}/hide`, { hidden: ev.target.dataset.hidden !== "true" }, "Hiding");
  });
  for (const b of $$("button.remove-face")) b.addEventListener("click", () =>
    act(`/v1/people/${id}/faces/${b.dataset.face}/remove`, undefined, "Removing"));
  for (const b of $$("button.cover-face")) b.addEventListener("click", () =>
    act(`/v1/people/${id}/cover`, { face_id: b.dataset.face }, "Setting the cover"));
  for (const b of $$("button.undo")) b.addEventListener("click", () =>
    act(`/v1/people/audit/${b.dataset.audit}/undo`, undefined, "Undo"));
}

const PAGES = { search: searchPage, asset: assetPage, example: examplePage, upload: uploadPage,
                projects: projectsPage, person: personPage };
thumbnails();
reveal();
faceCrops();
PAGES[document.body.dataset.page]?.();
