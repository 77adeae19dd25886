// Small drawing helpers for the explorer: SVG charts, colour scales, and the arrays the server sends as
// base64 (scratchrnn/explorer/bundle.py). Plain browser JavaScript, no library, no build step.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(tag, attributes, parent) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) element.setAttribute(name, value);
  if (parent) parent.appendChild(element);
  return element;
}

function newSvg(container, width, height) {
  container.replaceChildren();
  return svgElement("svg", {width, height, viewBox: `0 0 ${width} ${height}`}, container);
}

function svgText(parent, x, y, text, attributes) {
  const element = svgElement("text", Object.assign({x, y}, attributes || {}), parent);
  element.textContent = text;
  return element;
}

// {shape, u8, min, max} or {shape, f32} -> {shape, values: Float32Array}
function decodeArray(packed) {
  const bytes = Uint8Array.from(atob(packed.u8 || packed.f32), (c) => c.charCodeAt(0));
  if (packed.f32 !== undefined) return {shape: packed.shape, values: new Float32Array(bytes.buffer)};
  const step = (packed.max - packed.min) / 255;
  const values = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) values[i] = packed.min + bytes[i] * step;
  return {shape: packed.shape, values};
}

// white -> red as surprise grows to `top` nats
function surpriseColour(nats, top) {
  const t = Math.max(0, Math.min(1, nats / top));
  const other = Math.round(255 * (1 - 0.85 * t));
  return `rgb(255,${other},${other})`;
}

// blue (t = 0) -> white (0.5) -> red (1)
function divergingColour(t) {
  t = Math.max(0, Math.min(1, t));
  if (t < 0.5) {
    const k = Math.round(255 * (t / 0.5));
    return [k, k, 255];
  }
  const k = Math.round(255 * ((1 - t) / 0.5));
  return [255, k, k];
}

function greenColour(t) {
  t = Math.max(0, Math.min(1, t));
  return `rgb(${Math.round(255 - 180 * t)},${Math.round(255 - 60 * t)},${Math.round(255 - 180 * t)})`;
}

const PALETTE = ["#0057b8", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2"];

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) ticks.push(+v.toPrecision(12));
  return ticks;
}

function formatNumber(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(0);
  return +v.toPrecision(3) + "";
}

// on a log axis (values are log10): powers of ten (every other, or fewer, over many decades), and 2 and 5
// times them when under two decades show
function logTicks(lo, hi) {
  const ticks = [];
  const steps = hi - lo < 2 ? [1, 2, 5] : [1];
  const every = Math.max(1, Math.ceil((hi - lo) / 6));     // no more than about six powers labelled
  for (let power = Math.floor(lo / every) * every; power <= Math.ceil(hi); power += every) {
    for (const m of steps) {
      const v = power + Math.log10(m);
      if (v >= lo - 1e-9 && v <= hi + 1e-9) ticks.push(v);
    }
  }
  return ticks;
}

// series: [{name, xs, ys, colour}] ; options: {width, height, xLabel, yLabel, logY}
function lineChart(container, series, options) {
  const width = options.width || 640, height = options.height || 240;
  const margin = {left: 56, right: 120, top: 26, bottom: 36};
  const svg = newSvg(container, width, height);
  const points = series.flatMap((s) => s.xs.map((x, i) => [x, s.ys[i]]))
    .filter(([x, y]) => y !== null && isFinite(y) && (!options.logY || y > 0));
  if (!points.length) {
    svgText(svg, margin.left, height / 2, options.empty || "nothing to plot yet", {fill: "#777"});
    return svg;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => (options.logY ? Math.log10(p[1]) : p[1]));
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const px = (x) => margin.left + (x - x0) / (x1 - x0) * (width - margin.left - margin.right);
  const py = (y) => height - margin.bottom - (y - y0) / (y1 - y0) * (height - margin.top - margin.bottom);
  const axes = svgElement("g", {stroke: "#999"}, svg);
  svgElement("line", {x1: margin.left, y1: height - margin.bottom, x2: width - margin.right, y2: height - margin.bottom}, axes);
  svgElement("line", {x1: margin.left, y1: margin.top, x2: margin.left, y2: height - margin.bottom}, axes);
  for (const x of niceTicks(x0, x1, 6)) {
    svgText(svg, px(x), height - margin.bottom + 14, formatNumber(x), {"text-anchor": "middle", fill: "#555"});
  }
  const yTicks = options.logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5);
  for (const y of yTicks) {
    if (y < y0 - 1e-9 || y > y1 + 1e-9) continue;
    svgText(svg, margin.left - 6, py(y) + 4, options.logY ? formatNumber(Math.pow(10, y)) : formatNumber(y),
      {"text-anchor": "end", fill: "#555"});
    svgElement("line", {x1: margin.left, x2: width - margin.right, y1: py(y), y2: py(y), stroke: "#eee"}, svg);
  }
  svgText(svg, (margin.left + width - margin.right) / 2, height - 4, options.xLabel || "", {"text-anchor": "middle", fill: "#333"});
  svgText(svg, 4, 12, options.yLabel || "", {fill: "#333"});
  series.forEach((s, k) => {
    const colour = s.colour || PALETTE[k % PALETTE.length];
    let d = "";
    let pen = "M";
    s.xs.forEach((x, i) => {
      const y = s.ys[i];
      if (y === null || !isFinite(y) || (options.logY && y <= 0)) { pen = "M"; return; }
      d += `${pen}${px(x).toFixed(1)},${py(options.logY ? Math.log10(y) : y).toFixed(1)} `;
      pen = "L";
    });
    if (d) svgElement("path", {d, fill: "none", stroke: colour, "stroke-width": 1.8, class: "series"}, svg);
    svgElement("rect", {x: width - margin.right + 10, y: margin.top + 16 * k, width: 10, height: 10, fill: colour}, svg);
    svgText(svg, width - margin.right + 24, margin.top + 16 * k + 9, s.name, {fill: "#333"});
  });
  return svg;
}

// bars: [{label, value, colour, title}] ; options: {width, height, yLabel, maxValue}
function barChart(container, bars, options) {
  const width = options.width || 640, height = options.height || 160;
  const margin = {left: 44, right: 8, top: 22, bottom: 22};
  const svg = newSvg(container, width, height);
  const top = options.maxValue || Math.max(1e-12, ...bars.map((b) => b.value));
  const slot = (width - margin.left - margin.right) / Math.max(1, bars.length);
  svgElement("line", {x1: margin.left, x2: width - margin.right, y1: height - margin.bottom, y2: height - margin.bottom, stroke: "#999"}, svg);
  svgText(svg, margin.left - 6, margin.top + 8, formatNumber(top), {"text-anchor": "end", fill: "#555"});
  svgText(svg, margin.left - 6, height - margin.bottom, "0", {"text-anchor": "end", fill: "#555"});
  svgText(svg, 4, 12, options.yLabel || "", {fill: "#333"});
  bars.forEach((bar, i) => {
    const h = (height - margin.top - margin.bottom) * Math.max(0, bar.value) / top;
    const rect = svgElement("rect", {x: margin.left + i * slot + slot * 0.1, y: height - margin.bottom - h,
      width: Math.max(1, slot * 0.8), height: Math.max(0.5, h), fill: bar.colour || "#0057b8"}, svg);
    if (bar.title) svgElement("title", {}, rect).textContent = bar.title;
    if (slot >= 9) {
      svgText(svg, margin.left + i * slot + slot / 2, height - margin.bottom + 14, bar.label,
        {"text-anchor": "middle", fill: "#333", "font-family": "monospace"});
    }
  });
  return svg;
}

// points: [{x, y, colour, title}] in [0, 1] x [0, 1] ; options: {width, height, xLabel, yLabel, legend}
function scatterChart(container, points, options) {
  const size = options.size || 260;
  const margin = {left: 44, right: 12, top: 22, bottom: 36};
  const svg = newSvg(container, size + margin.left + margin.right, size + margin.top + margin.bottom);
  const px = (x) => margin.left + x * size, py = (y) => margin.top + (1 - y) * size;
  svgElement("rect", {x: margin.left, y: margin.top, width: size, height: size, fill: "none", stroke: "#999"}, svg);
  svgElement("line", {x1: px(0), y1: py(1), x2: px(1), y2: py(0), stroke: "#ddd", "stroke-dasharray": "4 3"}, svg);
  for (const v of [0, 0.5, 1]) {
    svgText(svg, px(v), margin.top + size + 14, v + "", {"text-anchor": "middle", fill: "#555"});
    svgText(svg, margin.left - 6, py(v) + 4, v + "", {"text-anchor": "end", fill: "#555"});
  }
  svgText(svg, margin.left + size / 2, margin.top + size + 30, options.xLabel || "", {"text-anchor": "middle", fill: "#333"});
  svgText(svg, margin.left, 14, options.title || "", {fill: "#333", "font-weight": "bold"});
  svgText(svg, 10, margin.top + size / 2, options.yLabel || "",
    {fill: "#333", "text-anchor": "middle", transform: `rotate(-90 10 ${margin.top + size / 2})`});
  for (const p of points) {
    const dot = svgElement("circle", {cx: px(p.x), cy: py(p.y), r: 2.5, fill: p.colour, "fill-opacity": 0.6}, svg);
    if (p.title) svgElement("title", {}, dot).textContent = p.title;
  }
  return svg;
}

// a horizontal colour bar from 0 to `top`
function legendBar(container, colourOf, top, label) {
  const svg = newSvg(container, 400, 30);
  for (let i = 0; i < 100; i++) {
    svgElement("rect", {x: 10 + i * 2.5, y: 4, width: 2.6, height: 10, fill: colourOf(i / 99 * top)}, svg);
  }
  svgText(svg, 10, 27, "0", {fill: "#555"});
  svgText(svg, 260, 27, formatNumber(top), {"text-anchor": "end", fill: "#555"});
  svgText(svg, 268, 13, label, {fill: "#333"});
  return svg;
}
