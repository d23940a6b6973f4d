// The page of `tkit serve`: paint a label map or upload an image, and see the model's translation.
// Plain JavaScript, no library: the API is GET api/models and POST api/translate (docs/serve.md).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const UNDO_DEPTH = 50;
  const BRUSHES = [1 / 128, 1 / 64, 1 / 32, 1 / 16]; // brush radii as shares of the canvas side

  const state = {
    models: [], model: null, limits: null,
    tool: "brush", classIndex: 0, radius: 1,
    input: null, // {source: "canvas"} or {source: "upload", blob, url}
    pixels: null, undo: [], last: null,
    timer: null, latest: 0, inflight: 0, shown: 0, outputs: [],
    busy() { return this.timer !== null || this.inflight > 0; },
  };
  window.tkit = state; // for the browser test: busy() and shown

  function setStatus(text, error = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", error);
  }

  // ---------------------------------------------------------------------------------------------
  // Models and options

  async function start() {
    let body;
    try {
      body = await (await fetch("api/models")).json();
    } catch (err) {
      setStatus(`Cannot list the models (${err.message}). Is tkit serve still running?`, true);
      return;
    }
    state.models = body.models;
    state.limits = body.limits;
    $("samples").max = body.limits.max_samples;
    for (const m of body.models) $("model").add(new Option(m.name, m.name));
    selectModel(body.models[0].name);
  }

  function selectModel(name) {
    const m = state.models.find((x) => x.name === name);
    state.model = m;
    $("model").value = name;
    const meta = [m.input === "label_map" ? `label map, ${m.palette.names.length} classes`
                                          : `${m.channels === 1 ? "gray" : "colour"} image`];
    if (m.scale > 1) meta.push(`×${m.scale} output`);
    if (m.step !== null) meta.push(`step ${m.step}`);
    $("model-meta").textContent = meta.join(" · ");
    $("mode").replaceChildren(...m.modes.map((x) => new Option(x, x)));
    $("mode").value = m.default_mode;
    $("mode-box").hidden = m.modes.length < 2;
    $("samples-box").hidden = !m.multimodal;
    $("style-box").hidden = !m.style_image;
    updateSeedBox();
    $("before").classList.toggle("pixelated", m.input === "label_map");
    $("draw").hidden = m.input !== "label_map";
    if (m.input === "label_map") {
      setupCanvas(m);
      useCanvas();
    } else if (state.input && state.input.source === "upload") {
      schedule(0);
    } else {
      state.input = null;
      $("compare").classList.add("empty");
      setStatus("Upload an image to translate it.");
    }
  }

  function seeded() {
    return state.model.multimodal || $("mode").value === "paper";
  }

  function updateSeedBox() {
    $("seed-box").hidden = !seeded();
  }

  // ---------------------------------------------------------------------------------------------
  // The canvas: pixels are written directly, so every pixel is exactly one palette colour

  function setupCanvas(m) {
    canvas.width = m.canvas_width;
    canvas.height = m.canvas_height;
    const legend = $("legend");
    legend.replaceChildren();
    m.palette.names.forEach((name, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.classIndex = i;
      button.setAttribute("role", "radio");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${m.palette.colors[i].join(",")})`;
      button.append(swatch, name);
      button.addEventListener("click", () => chooseClass(i));
      legend.append(button);
    });
    const sizes = $("sizes");
    sizes.replaceChildren();
    const radii = [...new Set(BRUSHES.map((share) => Math.max(0, Math.round(m.canvas_size * share))))];
    radii.forEach((radius, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "size";
      button.dataset.radius = radius;
      button.textContent = `${2 * radius + 1} px`;
      button.addEventListener("click", () => chooseRadius(radius));
      sizes.append(button);
      if (i === Math.min(1, radii.length - 1)) chooseRadius(radius);
    });
    chooseClass(Math.min(1, m.palette.names.length - 1));
    state.undo = [];
    state.pixels = ctx.createImageData(canvas.width, canvas.height);
    fill(background());
  }

  function chooseClass(i) {
    state.classIndex = i;
    for (const b of $("legend").children) {
      const on = Number(b.dataset.classIndex) === i;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-checked", on);
    }
  }

  function chooseRadius(radius) {
    state.radius = radius;
    for (const b of $("sizes").children) b.classList.toggle("selected", Number(b.dataset.radius) === radius);
  }

  const colour = () => state.model.palette.colors[state.classIndex];
  const background = () => state.model.palette.colors[0]; // the palette's first class

  function fill([r, g, b]) {
    const d = state.pixels.data;
    for (let i = 0; i < d.length; i += 4) [d[i], d[i + 1], d[i + 2], d[i + 3]] = [r, g, b, 255];
    ctx.putImageData(state.pixels, 0, 0);
  }

  function stamp(x, y) {
    const [r, g, b] = colour();
    const { width: w, height: h } = canvas;
    const d = state.pixels.data;
    const radius = state.radius;
    for (let dy = -radius; dy <= radius; dy++) {
      for (let dx = -radius; dx <= radius; dx++) {
        const px = x + dx, py = y + dy;
        if (dx * dx + dy * dy > radius * radius + radius || px < 0 || py < 0 || px >= w || py >= h) continue;
        const i = (py * w + px) * 4;
        [d[i], d[i + 1], d[i + 2], d[i + 3]] = [r, g, b, 255];
      }
    }
  }

  function line([x0, y0], [x1, y1]) {
    const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    for (let k = 0; k <= n; k++) stamp(Math.round(x0 + ((x1 - x0) * k) / n), Math.round(y0 + ((y1 - y0) * k) / n));
  }

  function flood(x, y) {
    const [r, g, b] = colour();
    const w = canvas.width, h = canvas.height, d = state.pixels.data;
    const start = (y * w + x) * 4;
    const [tr, tg, tb] = [d[start], d[start + 1], d[start + 2]];
    if (tr === r && tg === g && tb === b) return;
    const stack = [x, y];
    while (stack.length) {
      const py = stack.pop(), px = stack.pop();
      if (px < 0 || py < 0 || px >= w || py >= h) continue;
      const i = (py * w + px) * 4;
      if (d[i] !== tr || d[i + 1] !== tg || d[i + 2] !== tb) continue;
      [d[i], d[i + 1], d[i + 2], d[i + 3]] = [r, g, b, 255];
      stack.push(px + 1, py, px - 1, py, px, py + 1, px, py - 1);
    }
  }

  function point(event) {
    const box = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - box.left) * canvas.width) / box.width);
    const y = Math.floor(((event.clientY - box.top) * canvas.height) / box.height);
    return [Math.min(canvas.width - 1, Math.max(0, x)), Math.min(canvas.height - 1, Math.max(0, y))];
  }

  function remember() {
    state.undo.push(new Uint8ClampedArray(state.pixels.data));
    if (state.undo.length > UNDO_DEPTH) state.undo.shift();
  }

  function changed() {
    ctx.putImageData(state.pixels, 0, 0);
    useCanvas(250);
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    remember();
    const p = point(event);
    if (state.tool === "fill") {
      flood(...p);
      changed();
      return;
    }
    canvas.setPointerCapture(event.pointerId);
    state.last = p;
    stamp(...p);
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!state.last) return;
    const p = point(event);
    line(state.last, p);
    state.last = p;
    changed();
  });
  for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => { state.last = null; });

  function undo() {
    const previous = state.undo.pop();
    if (!previous) return;
    state.pixels.data.set(previous);
    changed();
  }

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", () => { remember(); fill(background()); changed(); });
  for (const b of document.querySelectorAll("button.tool")) {
    b.addEventListener("click", () => {
      state.tool = b.dataset.tool;
      for (const other of document.querySelectorAll("button.tool")) other.classList.toggle("selected", other === b);
    });
  }
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "z" && !$("draw").hidden) {
      event.preventDefault();
      undo();
    }
  });

  // ---------------------------------------------------------------------------------------------
  // Uploads: file input, drag and drop, paste

  function useFile(file) {
    if (!file) return;
    if (state.input && state.input.source === "upload") URL.revokeObjectURL(state.input.url);
    const url = URL.createObjectURL(file);
    state.input = { source: "upload", blob: file, url };
    $("upload-preview").src = url;
    $("upload-preview").hidden = false;
    schedule(0);
  }

  $("file").addEventListener("change", (event) => useFile(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    useFile(event.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not make the browser leave the page.
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const item = [...event.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) {
      event.preventDefault();
      useFile(item.getAsFile());
    }
  });

  // ---------------------------------------------------------------------------------------------
  // Translation: debounced, and only the newest request's answer is shown

  function useCanvas(delay = 0) {
    state.input = { source: "canvas" };
    schedule(delay);
  }

  function schedule(delay = 250) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => { state.timer = null; translate(); }, delay);
  }

  async function translate() {
    const m = state.model;
    if (!m || !state.input) return;
    const id = ++state.latest;
    state.inflight++;
    try {
      let blob, before;
      if (state.input.source === "canvas") {
        blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
        before = canvas.toDataURL("image/png");
      } else {
        ({ blob, url: before } = state.input);
      }
      const form = new FormData();
      form.append("model", m.name);
      form.append("image", blob, "input.png");
      form.append("mode", $("mode").value);
      form.append("seed", $("seed").value || "0");
      form.append("samples", m.multimodal ? $("samples").value || "1" : "1");
      form.append("format", "json");
      const style = $("style").files[0];
      if (m.style_image && style) form.append("style", style);
      setStatus("Translating…");
      const response = await fetch("api/translate", { method: "POST", body: form });
      let body;
      try {
        body = await response.json();
      } catch {
        body = { error: `The server answered ${response.status} ${response.statusText}.` };
      }
      if (id !== state.latest) return; // a newer request is on its way
      if (!response.ok) {
        setStatus(body.error || `The server answered ${response.status}.`, true);
        return;
      }
      show(body, before, id);
    } catch (err) {
      if (id === state.latest) setStatus(`No answer from the server (${err.message}). Is tkit serve still running?`, true);
    } finally {
      state.inflight--;
    }
  }

  function show(body, before, id) {
    state.outputs = body.images.map((b) => `data:image/png;base64,${b}`);
    $("before").src = before;
    const strip = $("sample-strip");
    strip.replaceChildren();
    if (state.outputs.length > 1) {
      state.outputs.forEach((src, i) => {
        const img = document.createElement("img");
        img.src = src;
        img.alt = `sample ${i + 1}`;
        img.addEventListener("click", () => choose(i));
        strip.append(img);
      });
    }
    choose(0);
    $("output").dataset.request = id;
    $("compare").classList.remove("empty");
    const seed = seeded() ? `, seed ${body.seed}` : "";
    setStatus(`${body.width} × ${body.height} px, ${body.mode} mode${seed}, ${Math.round(body.seconds * 1000)} ms`);
    state.shown++;
  }

  function choose(i) {
    $("output").src = state.outputs[i];
    for (const [k, img] of [...$("sample-strip").children].entries()) img.classList.toggle("selected", k === i);
    const link = $("download");
    link.href = state.outputs[i];
    const seed = seeded() ? `-seed${Number($("seed").value || 0) + i}` : "";
    link.download = `${state.model.name}-${$("mode").value}${seed}.png`;
    link.hidden = false;
  }

  // ---------------------------------------------------------------------------------------------
  // Controls

  $("model").addEventListener("change", (event) => selectModel(event.target.value));
  $("mode").addEventListener("change", () => { updateSeedBox(); schedule(0); });
  for (const id of ["seed", "samples"]) $(id).addEventListener("input", () => schedule());
  $("style").addEventListener("change", () => schedule(0));
  function applyView() {
    const side = document.querySelector("input[name=view]:checked").value === "side";
    $("compare").classList.toggle("side", side);
    $("compare").classList.toggle("overlay", !side);
    $("split-box").hidden = side;
    // Overlay: the input covers the output left of the slider.
    $("before").style.clipPath = side ? "none" : `inset(0 ${100 - Number($("split").value)}% 0 0)`;
  }
  $("split").addEventListener("input", applyView);
  for (const radio of document.querySelectorAll("input[name=view]")) radio.addEventListener("change", applyView);

  applyView();
  start();
})();
