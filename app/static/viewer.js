// mmsim studio frame viewer: runs as gr.HTML js_on_load (scope: element, props, trigger, watch).
// props.value = {tiles: [{key, label, src}], steps, context, cursor, version, size, fps}
// Each tile's src is a sprite: every step of the clip side by side. Scrubbing and playback crop the sprite
// in the browser (no server round trip); the cursor is shared with the curve editor through the window
// event "mmsim-cursor" {step}, and sent to the server (trigger('release', {step})) once the user stops.
(() => {
  const state = window.__mmsim || (window.__mmsim = {cursor: 0, playing: false});
  let images = {}, timer = null, syncTimer = null, lastVersion = null, lastKey = null;
  const data = () => (props.value && typeof props.value === "object") ? props.value : null;
  const root = () => element.querySelector(".mm-viewer-root") || element;

  function setCursor(step, from) {
    const d = data();
    if (!d || !d.steps) return;
    step = ((Math.round(step) % d.steps) + d.steps) % d.steps;
    state.cursor = step;
    paint();
    if (from !== "event") window.dispatchEvent(new CustomEvent("mmsim-cursor", {detail: {step, from: "viewer"}}));
    clearTimeout(syncTimer);
    if (!state.playing) syncTimer = setTimeout(() => trigger("release", {step: state.cursor}), 350);
  }

  function paint() {
    const d = data();
    if (!d) return;
    const r = root();
    const t = state.cursor, S = d.size || 64;
    r.querySelectorAll("canvas.mm-tile").forEach((cv) => {
      const img = images[cv.dataset.key];
      const ctx = cv.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      if (img && img.complete && img.naturalWidth) ctx.drawImage(img, t * S, 0, S, S, 0, 0, cv.width, cv.height);
    });
    const slider = r.querySelector("input.mm-scrub");
    if (slider && +slider.value !== t) slider.value = t;
    const label = r.querySelector(".mm-step");
    if (label) label.textContent = t < d.context ? `step ${t} · context ${t + 1}/${d.context}`
                                                 : `step ${t} · future ${t - d.context + 1}/${d.steps - d.context}`;
  }

  function play(on) {
    const d = data();
    const was = state.playing;
    state.playing = (on === undefined) ? !state.playing : on;
    clearInterval(timer);
    const btn = root().querySelector(".mm-play");
    if (btn) btn.textContent = state.playing ? "⏸" : "▶";
    if (state.playing && d && d.steps) {
      timer = setInterval(() => setCursor(state.cursor + 1), 1000 / Math.max(1, Math.min(60, d.fps || 4)));
    } else if (was) {
      setCursor(state.cursor);  // paused: the server learns where the cursor stopped
    }
  }
  state.play = play;
  state.step = (k) => { play(false); setCursor(state.cursor + k); };

  function build() {
    const d = data();
    const r = root();
    clearInterval(timer);
    state.playing = false;
    if (!d || !d.tiles || !d.tiles.length) { r.textContent = "load a clip from the gallery"; return; }
    const key = d.tiles.map((x) => x.key + x.src.length).join("|") + d.version;
    if (key === lastKey && r.querySelector(".mm-tiles")) { paint(); return; }
    lastKey = key;
    state.builds = (state.builds || 0) + 1;  // new frames shown (benchmarks wait on this)
    if (d.final) state.finals = (state.finals || 0) + 1;  // a render's comparisons and scores are in
    if (lastVersion === null || d.cursor !== undefined && d.reset) state.cursor = d.cursor || 0;
    lastVersion = d.version;
    state.cursor = Math.min(state.cursor, d.steps - 1);
    r.innerHTML = "";
    const grid = document.createElement("div");
    grid.className = "mm-tiles";
    images = {};
    d.tiles.forEach((tile) => {
      const fig = document.createElement("figure");
      fig.className = "mm-fig";
      fig.dataset.key = tile.key;
      const cv = document.createElement("canvas");
      cv.width = 192; cv.height = 192; cv.className = "mm-tile"; cv.dataset.key = tile.key;
      const cap = document.createElement("figcaption");
      cap.textContent = tile.short || tile.label;
      cap.title = tile.label;
      fig.appendChild(cv); fig.appendChild(cap); grid.appendChild(fig);
      const img = new Image();
      img.onload = paint;
      img.src = tile.src;
      images[tile.key] = img;
    });
    r.appendChild(grid);
    const bar = document.createElement("div");
    bar.className = "mm-bar";
    bar.innerHTML = `<button class="mm-play" title="play / pause (space)">▶</button>
      <input class="mm-scrub" type="range" min="0" max="${d.steps - 1}" step="1" value="${state.cursor}"
             aria-label="time cursor">
      <span class="mm-step"></span><span class="mm-fps">${(d.fps || 4).toFixed(0)} fps</span>`;
    r.appendChild(bar);
    bar.querySelector(".mm-play").addEventListener("click", () => play());
    bar.querySelector(".mm-scrub").addEventListener("input", (ev) => {
      const step = +ev.target.value;
      play(false);
      setCursor(step);
    });
    paint();
  }

  window.addEventListener("mmsim-cursor", (ev) => {
    if (ev.detail && ev.detail.from !== "viewer") setCursor(ev.detail.step, "event");
  });

  // Keyboard shortcuts, installed once per page; ignored while typing in a field.
  if (!window.__mmsimKeys) {
    window.__mmsimKeys = true;
    const click = (id) => { const b = document.querySelector(`#${id}`); if (b) b.click(); };
    document.addEventListener("keydown", (ev) => {
      const t = ev.target;
      const tag = (t && t.tagName || "").toLowerCase();
      const typing = tag === "textarea" || tag === "select" || (t && t.isContentEditable) ||
        (tag === "input" && !["range", "checkbox", "radio", "button"].includes((t.type || "").toLowerCase()));
      if (typing) return;
      const s = window.__mmsim;
      const mod = ev.ctrlKey || ev.metaKey;
      if (mod && (ev.key === "z" || ev.key === "Z")) { ev.preventDefault(); click(ev.shiftKey ? "redo" : "undo"); }
      else if (mod && (ev.key === "y" || ev.key === "Y")) { ev.preventDefault(); click("redo"); }
      else if (mod || ev.altKey) return;
      else if (ev.key === " ") { ev.preventDefault(); s.play && s.play(); }
      else if (ev.key === "ArrowRight") { ev.preventDefault(); s.step && s.step(1); }
      else if (ev.key === "ArrowLeft") { ev.preventDefault(); s.step && s.step(-1); }
      else if (ev.key === "g" || ev.key === "G") { ev.preventDefault(); click("generate"); }
    });
  }

  build();
  watch("value", build);
})();
