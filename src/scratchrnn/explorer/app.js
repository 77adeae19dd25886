// The explorer page: generates through the server's OpenAI-compatible API, and draws the analyses of a text
// that /api/analyze returns (scratchrnn serve) or that the file holds (scratchrnn explain).
"use strict";

const explorer = {
  embedded: null,     // explain's data when the page is a file, else null
  model: null,
  analysis: null,     // the analysed text's JSON (bundle.py)
  series: null,       // per layer: {name: {shape, values}} decoded
  chosen: 0,          // the position whose prediction the gradient view explains
  layer: 0, seriesName: "H", unit: 0,
  abort: null,
  heatMap: null,      // the units' heat map as drawn, and the height of a unit's row
};

function $(id) { return document.getElementById(id); }

function escapeChar(ch) { return ch === "\n" ? "\u21b5\n" : ch === "\t" ? "\u2192" : ch; }

function tokenLabel(id) {
  const token = explorer.model.vocab[id];
  return token === "\n" ? "\u21b5" : token === " " ? "\u2423" : token === "\t" ? "\u2192" : token;
}

async function fetchJson(url, body) {
  const response = await fetch(url, body === undefined ? {} : {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

// -- the model line and the generate panel -------------------------------------------------------------------
function describeModel(model) {
  const cell = {rnn: "RNN", gru: "GRU", lstm: "LSTM"}[model.cell];
  const epoch = model.epoch === null ? "" : `, epoch ${model.epoch}`;
  $("model-line").textContent = `${model.id}: ${model.layers} ${cell} layer${model.layers > 1 ? "s" : ""} of ` +
    `${model.hidden} units, ${model.vocab.length} characters (${model.embedding} inputs, ${model.cleaning} cleaning)${epoch}`;
}

function setUpGenerate() {
  for (const [slider, output] of [["temperature", "temperature-value"], ["top-p", "top-p-value"]]) {
    $(slider).addEventListener("input", () => { $(output).textContent = Number($(slider).value).toFixed(2); });
  }
  // a prompt edited after a generation is the text to analyse, not the old continuation
  $("prompt").addEventListener("input", () => {
    $("completion-prompt").textContent = "";
    $("completion-text").textContent = "";
  });
  $("generate-button").addEventListener("click", generate);
  $("stop-button").addEventListener("click", () => { if (explorer.abort) explorer.abort.abort(); });
  $("analyze-button").addEventListener("click", () => analyzeText($("completion-prompt").textContent +
    $("completion-text").textContent || $("prompt").value));
}

async function generate() {
  const prompt = $("prompt").value;
  $("completion-prompt").textContent = prompt;
  $("completion-text").textContent = "";
  $("generate-status").textContent = "generating...";
  $("generate-button").disabled = true;
  $("stop-button").disabled = false;
  explorer.abort = new AbortController();
  try {
    const response = await fetch("/v1/completions", {method: "POST", signal: explorer.abort.signal,
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({model: explorer.model.id, prompt, stream: true, max_tokens: Number($("max-tokens").value),
        temperature: Number($("temperature").value), top_p: Number($("top-p").value)})});
    if (!response.ok) throw new Error((await response.json()).error.message);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finish = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/^data: /, "");
        buffer = buffer.slice(end + 2);
        if (line === "[DONE]") continue;
        const event = JSON.parse(line);
        if (event.error) throw new Error(event.error.message);
        for (const choice of event.choices) {
          $("completion-text").textContent += choice.text;
          finish = choice.finish_reason || finish;
        }
      }
    }
    $("generate-status").textContent = `done (${finish || "stopped"})`;
    await analyzeText($("completion-prompt").textContent + $("completion-text").textContent);
  } catch (error) {
    $("generate-status").textContent = error.name === "AbortError" ? "stopped" : `error: ${error.message}`;
  } finally {
    $("generate-button").disabled = false;
    $("stop-button").disabled = true;
    explorer.abort = null;
  }
}

async function analyzeText(text) {
  if (!text) return;
  $("generate-status").textContent = "analysing...";
  try {
    showAnalysis(await fetchJson("/api/analyze", {text}));
    $("generate-status").textContent = explorer.analysis.truncated ?
      `analysed the first ${explorer.analysis.text.length} characters` : "";
  } catch (error) {
    $("generate-status").textContent = `error: ${error.message}`;
  }
}

// -- the analysis views -------------------------------------------------------------------------------------------
function showAnalysis(analysis) {
  explorer.analysis = analysis;
  explorer.series = analysis.series.map((layer) => Object.fromEntries(
    Object.entries(layer).map(([name, packed]) => [name, decodeArray(packed)])));
  explorer.chosen = Math.max(0, analysis.text.length - 1);
  explorer.layer = Math.min(explorer.layer, explorer.series.length - 1);
  fillUnitControls();
  drawSurprise();
  drawUnits();
  drawFeatures();
  drawGates();
  choosePosition(explorer.chosen);
}

function textSpans(container, colourOf, onClick, beyond) {
  const text = explorer.analysis.text;
  const fragment = document.createDocumentFragment();
  for (let i = 0; i < text.length; i++) {
    const span = document.createElement("span");
    span.textContent = escapeChar(text[i]);
    span.style.background = colourOf(i);
    span.dataset.position = i;
    if (beyond !== undefined && i > beyond) span.className = "beyond";
    fragment.appendChild(span);
  }
  container.replaceChildren(fragment);
  container.onclick = (event) => {
    const position = event.target.dataset && event.target.dataset.position;
    if (position !== undefined && onClick) onClick(Number(position));
  };
}

const SURPRISE_TOP = 6;    // nats at which the colour is fully red

function drawSurprise() {
  const surprise = explorer.analysis.surprise;
  legendBar($("surprise-legend"), (v) => surpriseColour(v, SURPRISE_TOP), SURPRISE_TOP, "surprise, nats");
  // character i was predicted after position i - 1; the first had nothing before it
  textSpans($("surprise-text"), (i) => (i === 0 ? "#fff" : surpriseColour(surprise[i - 1], SURPRISE_TOP)),
    choosePosition);
  $("surprise-text").onmouseover = (event) => {
    const position = event.target.dataset && event.target.dataset.position;
    if (position !== undefined) drawCandidates(Number(position));
  };
}

function drawCandidates(position) {
  const a = explorer.analysis;
  const next = position + 1 < a.text.length ? a.text[position + 1] : null;
  const shown = JSON.stringify(escapeChar(a.text[position]));
  const said = next === null ? "" : `; the text goes on with ${JSON.stringify(escapeChar(next))}` +
    `, surprise ${a.surprise[position].toFixed(2)} nats`;
  $("candidates-title").textContent = `Candidates after position ${position} (${shown})${said}`;
  const bars = a.top_ids[position].map((id, k) => ({label: tokenLabel(id), value: a.top_probs[position][k],
    colour: next !== null && explorer.model.vocab[id] === next ? "#2ca02c" : "#0057b8",
    title: `${JSON.stringify(explorer.model.vocab[id])}: ${(a.top_probs[position][k] * 100).toFixed(1)}%`}));
  barChart($("candidates"), bars, {width: 360, height: 150, yLabel: "probability"});
}

function fillUnitControls() {
  const layers = $("layer-select"), series = $("series-select");
  layers.replaceChildren(...explorer.series.map((_, i) => new Option(`layer ${i}`, i)));
  layers.value = explorer.layer;
  const names = Object.keys(explorer.series[0]);
  series.replaceChildren(...names.map((name) => new Option(explorer.model.series[name] || name, name)));
  if (!names.includes(explorer.seriesName)) explorer.seriesName = "H";
  series.value = explorer.seriesName;
  $("unit-input").max = explorer.model.hidden - 1;
  layers.onchange = () => { explorer.layer = Number(layers.value); drawUnits(); };
  series.onchange = () => { explorer.seriesName = series.value; drawUnits(); };
  $("unit-input").onchange = () => { chooseUnit(Number($("unit-input").value)); };
}

function currentSeries() { return explorer.series[explorer.layer][explorer.seriesName]; }

function drawUnits() {
  const {shape, values} = currentSeries();
  const [steps, units] = shape;
  const canvas = $("units-canvas");
  const cell = Math.max(1, Math.min(24, Math.floor(960 / steps)));
  const rowHeight = Math.max(1, Math.min(8, Math.floor(480 / units)));
  canvas.width = steps * cell;
  canvas.height = units * rowHeight;
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const span = hi > lo ? hi - lo : 1;
  for (let u = 0; u < units; u++) {
    for (let t = 0; t < steps; t++) {
      const [r, g, b] = divergingColour((values[t * units + u] - lo) / span);
      for (let dy = 0; dy < rowHeight; dy++) {
        for (let dx = 0; dx < cell; dx++) {
          const k = 4 * ((u * rowHeight + dy) * canvas.width + t * cell + dx);
          image.data[k] = r; image.data[k + 1] = g; image.data[k + 2] = b; image.data[k + 3] = 255;
        }
      }
    }
  }
  context.putImageData(image, 0, 0);
  explorer.heatMap = {image, rowHeight};
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [Math.floor((event.clientX - box.left) / box.width * steps),
      Math.floor((event.clientY - box.top) / box.height * units)];
  };
  canvas.onmousemove = (event) => {
    const [t, u] = at(event);
    if (t >= 0 && t < steps && u >= 0 && u < units) {
      $("units-hover").textContent = `unit ${u} at position ${t} (${JSON.stringify(explorer.analysis.text[t])}): ` +
        `${values[t * units + u].toFixed(3)}`;
    }
  };
  canvas.onclick = (event) => chooseUnit(at(event)[1]);
  chooseUnit(Math.min(explorer.unit, units - 1));
}

function chooseUnit(unit) {
  const {shape, values} = currentSeries();
  const [steps, units] = shape;
  explorer.unit = Math.max(0, Math.min(units - 1, unit | 0));
  $("unit-input").value = explorer.unit;
  // the chosen unit's row, outlined on the heat map
  const canvas = $("units-canvas"), context = canvas.getContext("2d");
  context.putImageData(explorer.heatMap.image, 0, 0);
  context.strokeStyle = "#000";
  context.lineWidth = 1;
  context.strokeRect(0.5, explorer.unit * explorer.heatMap.rowHeight - 0.5, canvas.width - 1,
    explorer.heatMap.rowHeight + 1);
  let lo = Infinity, hi = -Infinity;
  for (let t = 0; t < steps; t++) { const v = values[t * units + explorer.unit]; lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const bound = Math.max(Math.abs(lo), Math.abs(hi), 1e-9);
  textSpans($("unit-text"), (i) => {
    // pale enough at the extremes to read the character on it
    const [r, g, b] = divergingColour(0.5 + 0.4 * values[i * units + explorer.unit] / bound);
    return `rgb(${r},${g},${b})`;
  }, choosePosition);
}

function drawFeatures() {
  const body = $("feature-table").querySelector("tbody");
  body.replaceChildren();
  for (const feature of explorer.analysis.features) {
    const row = body.insertRow();
    row.insertCell().textContent = `${feature.name} (${feature.kind === "binary" ? "AUC" : "r"})`;
    row.cells[0].title = feature.description;
    const cell = row.insertCell();
    for (const match of feature.matches) {
      const link = document.createElement("a");
      link.textContent = `${match.layer} / ${match.series} / ${match.unit}: ${match.score.toFixed(2)}`;
      link.onclick = () => {
        explorer.layer = match.layer; explorer.seriesName = match.series; explorer.unit = match.unit;
        $("layer-select").value = match.layer; $("series-select").value = match.series;
        drawUnits();
      };
      cell.appendChild(link);
    }
  }
  if (!explorer.analysis.features.length) {
    body.insertRow().insertCell().textContent = "no feature varies along this text";
  }
}

function drawGates() {
  const container = $("gates");
  container.replaceChildren();
  const gates = explorer.model.sigmoid_gates;
  if (!gates.length) {
    container.textContent = "The chapter's RNN has no gates: train with --cell lstm or --cell gru to see them.";
    return;
  }
  for (const gate of gates) {
    const box = document.createElement("span");
    container.appendChild(box);
    const points = explorer.analysis.saturation.flatMap((layer, l) => layer[gate].left.map((left, u) => ({
      x: left, y: layer[gate].right[u], colour: PALETTE[l % PALETTE.length], title: `layer ${l}, unit ${u}`})));
    scatterChart(box, points, {title: explorer.model.series[gate], xLabel: "fraction left-saturated (< 0.1)",
      yLabel: "fraction right-saturated (> 0.9)"});
  }
}

async function choosePosition(position) {
  const a = explorer.analysis;
  explorer.chosen = position;
  for (const id of ["surprise-text", "unit-text"]) {
    for (const span of $(id).querySelectorAll("span.chosen")) span.classList.remove("chosen");
    const span = $(id).children[position];
    if (span) span.classList.add("chosen");
  }
  drawCandidates(position);
  let gradients = a.gradients;
  if (!gradients) {
    try {
      gradients = await fetchJson("/api/gradients", {text: a.text, position});
    } catch (error) {
      $("saliency-title").textContent = `error: ${error.message}`;
      return;
    }
    if (explorer.chosen !== position) return;      // another click came first
  }
  drawGradients(gradients, position);
}

function drawGradients(gradients, position) {
  const row = gradients.positions.indexOf(position);
  const length = explorer.analysis.text.length;
  const pick = (packed) => decodeArray(packed).values.slice(row * length, row * length + position + 1);
  const inputs = pick(gradients.inputs);
  const target = explorer.model.vocab[gradients.targets[row]];
  $("saliency-title").textContent = `The prediction of ${JSON.stringify(target)} after position ${position}: ` +
    "gradient norm with respect to each input";
  const top = Math.max(1e-12, ...inputs);
  textSpans($("saliency-text"), (i) => (i <= position ? greenColour(inputs[i] / top) : "#fff"), choosePosition, position);
  const first = Math.max(0, position - 79);
  const bars = [];
  for (let s = first; s <= position; s++) {
    bars.push({label: escapeChar(explorer.analysis.text[s]).replace("\n", ""), value: inputs[s],
      title: `position ${s}: ${inputs[s].toExponential(2)}`, colour: "#2ca02c"});
  }
  barChart($("saliency"), bars, {width: 900, height: 150, yLabel: "||d log p / d input||"});
  const distances = Array.from({length: position + 1}, (_, k) => k);
  const series = gradients.states.map((packed, l) => {
    const norms = pick(packed);
    return {name: `layer ${l}`, xs: distances, ys: distances.map((k) => norms[position - k])};
  });
  lineChart($("gradnorm"), series, {width: 640, height: 220, logY: true, xLabel: "steps back in time (t - s)",
    yLabel: "||d log p / d h_s||"});
}

// -- training curves ---------------------------------------------------------------------------------------------
function drawCurves(curves) {
  const series = [{name: "training", xs: curves.epoch, ys: curves.train_perplexity}];
  if (curves.val_perplexity.some((v) => v !== null)) {
    series.push({name: "held out", xs: curves.epoch, ys: curves.val_perplexity});
  }
  lineChart($("curves"), series, {width: 640, height: 240, logY: true, xLabel: "epoch", yLabel: "perplexity",
    empty: "no epoch recorded yet"});
}

async function pollCurves() {
  try {
    drawCurves(await fetchJson("/api/metrics"));
    $("curves-note").textContent = "Perplexity per epoch, from the run's metrics.jsonl (updated every 2 s while the page is open).";
  } catch (error) {
    $("curves-note").textContent = `could not read the metrics: ${error.message}`;
  }
  setTimeout(pollCurves, 2000);
}

// -- start -----------------------------------------------------------------------------------------------------
async function start() {
  const holder = document.getElementById("embedded-data");
  if (holder) {
    explorer.embedded = JSON.parse(holder.textContent);
    document.body.classList.add("static");
    explorer.model = explorer.embedded.model;
    describeModel(explorer.model);
    showAnalysis(explorer.embedded.analysis);
    drawCurves(explorer.embedded.curves);
    $("curves-note").textContent = "Perplexity per epoch, from the run's metrics.jsonl when this file was written.";
    return;
  }
  explorer.model = await fetchJson("/api/model");
  describeModel(explorer.model);
  $("prompt").value = explorer.model.prompt || explorer.model.vocab.filter((t) => t.length === 1 && /\w/.test(t)).slice(0, 8).join("");
  $("max-tokens").max = explorer.model.max_tokens;
  setUpGenerate();
  pollCurves();
  await analyzeText($("prompt").value);
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((error) => { $("model-line").textContent = `error: ${error.message}`; });
});
