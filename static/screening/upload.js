// Upload page: one request per file to the REST endpoint, with a progress bar
// and the server's reason for each rejection. Two uploads run at a time.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  const list = document.getElementById("upload-list");
  const input = document.getElementById("file-input");
  const zone = document.getElementById("dropzone");
  const endpoint = form.dataset.endpoint;
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const queue = [];
  let running = 0;
  const PARALLEL = 2;

  // What the form says now (Patient ID, side, view, site): read once, when a file is added, and kept with
  // that file. Reading it when the file is sent (two at a time, the rest queued) filed files added for one
  // woman under whatever the fields said by then.
  function fieldsNow() {
    const fields = {};
    for (const field of ["patient_id", "laterality", "view", "site"]) {
      const value = form.elements[field] ? form.elements[field].value.trim() : "";
      if (value) fields[field] = value;
    }
    return fields;
  }

  function describe(fields) {
    const side = { L: "left", R: "right" }[fields.laterality] || "side from file";
    const view = fields.view || "view from file";
    return `for ${fields.patient_id ? "patient " + fields.patient_id : "the patient in the file"}, ${side}, ${view}`;
  }

  function row(file, fields) {
    const li = document.createElement("li");
    li.className = "upload-item";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = file.name;
    const applied = document.createElement("span");
    applied.className = "applied";
    applied.textContent = describe(fields);
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = "waiting";
    li.append(name, applied, bar, status);
    list.append(li);
    return { li, bar, status, applied };
  }

  function send(job) {
    running += 1;
    const data = new FormData();
    data.append("file", job.file);
    for (const [field, value] of Object.entries(job.fields)) data.append(field, value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", endpoint);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) job.ui.bar.value = Math.round((100 * e.loaded) / e.total);
      job.ui.status.textContent = "uploading";
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (xhr.status === 201 || xhr.status === 200) {
        job.ui.bar.value = 100;
        job.ui.li.classList.add("ok");
        job.ui.status.textContent = (xhr.status === 201 ? "accepted" : "already in the portal") + ` (study #${body.study})`;
        // What the portal filed it as (a DICOM's own side and view win over the fields).
        job.ui.applied.textContent = describe(job.fields) + ` · stored as ${body.laterality} ${body.view}`;
        follow(job, body);
      } else {
        job.ui.li.classList.add("rejected");
        job.ui.status.textContent = "rejected: " + ((body.error && body.error.message) || `HTTP ${xhr.status}`);
      }
      done();
    };
    xhr.onerror = () => {
      job.ui.li.classList.add("rejected");
      job.ui.status.textContent = "rejected: the connection failed";
      done();
    };
    xhr.send(data);
  }

  // The prediction arrives without reloading: poll the image until its prediction is done or failed.
  function follow(job, image) {
    const ai = document.createElement("span");
    ai.className = "ai";
    job.ui.li.append(ai);
    const show = (img) => {
      const p = img.prediction;
      if (!p) { ai.textContent = "AI: waiting for a model"; return false; }
      if (p.status === "done") {
        ai.textContent = `AI probability ${p.probability.toFixed(2)}` + (p.above_threshold ? " (above threshold)" : "");
        ai.classList.toggle("flag", p.above_threshold);
        return true;
      }
      if (p.status === "failed") { ai.textContent = "AI failed: " + p.error; ai.classList.add("rejected"); return true; }
      ai.textContent = "AI: " + p.status;
      return false;
    };
    if (show(image)) return;
    let tries = 0;
    const timer = setInterval(async () => {
      tries += 1;
      try {
        const r = await fetch(`${endpoint}${image.id}/`, { headers: { Accept: "application/json" } });
        if (r.ok && show(await r.json())) clearInterval(timer);
      } catch (err) { /* transient: try again */ }
      if (tries > 600) clearInterval(timer);
    }, 2000);
  }

  function done() {
    running -= 1;
    pump();
  }

  function pump() {
    while (running < PARALLEL && queue.length) send(queue.shift());
  }

  function add(files, fields = fieldsNow()) {
    for (const file of files) queue.push({ file, fields, ui: row(file, fields) });
    pump();
  }

  async function entries(item) {
    // Folders dropped from the file manager: walk them.
    if (item.isFile) return new Promise((resolve) => item.file((f) => resolve([f]), () => resolve([])));
    if (!item.isDirectory) return [];
    const reader = item.createReader();
    const out = [];
    for (;;) {
      const batch = await new Promise((resolve) => reader.readEntries(resolve, () => resolve([])));
      if (!batch.length) break;
      for (const child of batch) out.push(...(await entries(child)));
    }
    return out;
  }

  input.addEventListener("change", () => { add(input.files); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const fields = fieldsNow(); // as the files are dropped, not after the folders have been walked
    const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (items.length) {
      for (const item of items) add(await entries(item), fields);
    } else {
      add(e.dataTransfer.files, fields);
    }
  });
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
})();
