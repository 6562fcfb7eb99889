// mmsim studio curve editor: runs as gr.HTML js_on_load (scope: element, props, trigger, watch).
// props.value = {modality, steps, context, cursor, series: [{name, values, original, color}],
//                ymin, ymax, unit, selection, present, version}   (values in display units)
// Sends back:  trigger('edit',  {channel, step, value})  a dragged point (on release; the point nearest
//                                                         the pointer, so overlapping curves pick right)
//              trigger('apply', {start, end})            a brushed time range
// A click on the background moves the shared cursor in the browser (window event "mmsim-cursor").
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 640, H = 240, M = {l: 44, r: 12, t: 14, b: 26};
  // The template re-renders when props change: look the container up on every draw.
  const getRoot = () => element.querySelector(".mm-curve-root") || element;
  let drag = null;   // {series, step, y} while dragging a point
  const shared = window.__mmsim || (window.__mmsim = {cursor: 0, playing: false});
  const fmt = (v, span) => { const a = Math.abs(span);
    return a >= 50 ? v.toFixed(0) : a >= 5 ? v.toFixed(1) : a >= 0.5 ? v.toFixed(2) : a >= 0.05 ? v.toFixed(3) : v.toPrecision(2); };
  let brush = null;  // {x0, x1} while brushing a range

  const el = (tag, attrs, parent) => {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  };
  const data = () => (props.value && typeof props.value === "object") ? props.value : null;
  const sx = (d, t) => M.l + (W - M.l - M.r) * (d.steps > 1 ? t / (d.steps - 1) : 0.5);
  const sy = (d, v) => M.t + (H - M.t - M.b) * (1 - (v - d.ymin) / ((d.ymax - d.ymin) || 1));
  const inv = (d, py) => d.ymin + (1 - (py - M.t) / (H - M.t - M.b)) * (d.ymax - d.ymin);
  const stepAt = (d, px) => Math.max(0, Math.min(d.steps - 1,
    Math.round((px - M.l) / ((W - M.l - M.r) || 1) * (d.steps - 1))));
  const svgPoint = (svg, ev) => {
    const r = svg.getBoundingClientRect();
    return {x: (ev.clientX - r.left) * W / r.width, y: (ev.clientY - r.top) * H / r.height};
  };

  function draw() {
    const d = data();
    shared.editorDraws = (shared.editorDraws || 0) + 1;  // benchmarks wait on this
    const root = getRoot();
    root.innerHTML = "";
    if (!d) { root.textContent = "load a clip to edit its curves"; return; }
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "mm-curve-svg", "data-modality": d.modality}, root);
    if (!d.present) {
      el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "mm-note"}, svg).textContent =
        `no ${d.modality} in this clip (copy it from another clip)`;
      return;
    }
    // Context steps shaded; cursor; selection.
    el("rect", {x: M.l, y: M.t, width: sx(d, d.context - 0.5) - M.l, height: H - M.t - M.b, class: "mm-context"}, svg);
    if (d.selection) {
      const [a, b] = d.selection;
      el("rect", {x: sx(d, a - 0.5), y: M.t, width: sx(d, b + 0.5) - sx(d, a - 0.5), height: H - M.t - M.b,
                  class: "mm-selection"}, svg);
    }
    const bg = el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, class: "mm-bg"}, svg);
    for (let i = 0; i <= 4; i++) {
      const v = d.ymin + (d.ymax - d.ymin) * i / 4, y = sy(d, v);
      el("line", {x1: M.l, x2: W - M.r, y1: y, y2: y, class: "mm-grid"}, svg);
      el("text", {x: M.l - 4, y: y + 3, "text-anchor": "end", class: "mm-tick"}, svg).textContent = fmt(v, d.ymax - d.ymin);
    }
    for (let t = 0; t < d.steps; t++) {
      el("text", {x: sx(d, t), y: H - 8, "text-anchor": "middle", class: "mm-tick"}, svg).textContent = t;
    }
    const cur = Math.min(shared.cursor || 0, d.steps - 1);
    el("line", {x1: sx(d, cur), x2: sx(d, cur), y1: M.t, y2: H - M.b, class: "mm-cursor"}, svg);
    if (d.unit) el("text", {x: W - M.r, y: M.t - 3, "text-anchor": "end", class: "mm-tick"}, svg).textContent = d.unit;
    d.series.forEach((s, si) => {
      if (s.original) {
        el("polyline", {points: s.original.map((v, t) => `${sx(d, t)},${sy(d, v)}`).join(" "),
                        class: "mm-original", stroke: s.color}, svg);
      }
      el("polyline", {points: s.values.map((v, t) => `${sx(d, t)},${sy(d, v)}`).join(" "),
                      class: "mm-line", stroke: s.color, "data-series": si}, svg);
      s.values.forEach((v, t) => {
        el("circle", {cx: sx(d, t), cy: sy(d, v), r: 5, fill: s.color, class: "mm-point",
                       "data-series": si, "data-step": t, "data-channel": s.name}, svg);
      });
    });
    const legend = el("g", {class: "mm-legend"}, svg);
    d.series.forEach((s, i) => {
      el("text", {x: M.l + 6 + (i % 6) * 96, y: M.t + 10 + Math.floor(i / 6) * 11, fill: s.color,
                  class: "mm-tick"}, legend).textContent = s.name;
    });

    svg.addEventListener("pointerdown", (ev) => {
      if (drag) return;
      const p = svgPoint(svg, ev);
      // The point nearest the pointer (within 9 px), whatever was drawn last.
      let best = null;
      svg.querySelectorAll("circle.mm-point").forEach((c) => {
        const dd = Math.hypot(+c.getAttribute("cx") - p.x, +c.getAttribute("cy") - p.y);
        if (dd <= 9 && (!best || dd < best.dd)) best = {dd, c};
      });
      if (best) {
        ev.preventDefault();
        svg.setPointerCapture && svg.setPointerCapture(ev.pointerId);
        const c = best.c;
        drag = {series: +c.dataset.series, step: +c.dataset.step, y: +c.getAttribute("cy"), circle: c};
        return;
      }
      brush = {x0: p.x, x1: p.x, rect: el("rect", {x: p.x, y: M.t, width: 0, height: H - M.t - M.b,
                                                   class: "mm-selection"}, svg)};
      svg.setPointerCapture && svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointermove", (ev) => {
      const p = svgPoint(svg, ev);
      if (drag) {
        drag.y = Math.max(M.t, Math.min(H - M.b, p.y));
        drag.circle.setAttribute("cy", drag.y);
        const s = d.series[drag.series];
        const vals = s.values.slice(); vals[drag.step] = inv(d, drag.y);
        const line = svg.querySelector(`polyline.mm-line[data-series="${drag.series}"]`);
        if (line) line.setAttribute("points", vals.map((v, t) => `${sx(d, t)},${sy(d, v)}`).join(" "));
      } else if (brush) {
        brush.x1 = p.x;
        brush.rect.setAttribute("x", Math.min(brush.x0, brush.x1));
        brush.rect.setAttribute("width", Math.abs(brush.x1 - brush.x0));
      }
    });
    const finish = (ev) => {
      if (drag) {
        const s = d.series[drag.series];
        const value = inv(d, drag.y);
        s.values[drag.step] = value;
        const payload = {channel: s.name, step: drag.step, value: value, modality: d.modality};
        drag = null;
        trigger("edit", payload);
      } else if (brush) {
        const a = stepAt(d, Math.min(brush.x0, brush.x1)), b = stepAt(d, Math.max(brush.x0, brush.x1));
        const moved = Math.abs(brush.x1 - brush.x0) > 6;
        brush = null;
        if (moved) trigger("apply", {start: a, end: b});
        else {
          shared.cursor = a;
          window.dispatchEvent(new CustomEvent("mmsim-cursor", {detail: {step: a, from: "editor"}}));
        }
      }
    };
    svg.addEventListener("pointerup", finish);
    svg.addEventListener("pointercancel", () => { drag = null; brush = null; draw(); });
  }

  // The shared cursor moved (viewer scrub, playback, keys): move the line only.
  window.addEventListener("mmsim-cursor", (ev) => {
    const d = data();
    const line = getRoot().querySelector("line.mm-cursor");
    if (!d || !line || drag || brush) return;
    const x = sx(d, Math.min(ev.detail.step, d.steps - 1));
    line.setAttribute("x1", x); line.setAttribute("x2", x);
  });
  draw();
  watch("value", draw);
})();
