// distfold report page script: plain ES2017, inlined into each report (distfold.report.html).
// Licence: Apache-2.0, as distfold.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("distfold-data").textContent);
  var selftest = {viewer: {}, heatmaps: {}, table: [], perResidue: {}, errors: []};
  var AA3 = {A:"ALA",R:"ARG",N:"ASN",D:"ASP",C:"CYS",Q:"GLN",E:"GLU",G:"GLY",H:"HIS",I:"ILE",L:"LEU",
             K:"LYS",M:"MET",F:"PHE",P:"PRO",S:"SER",T:"THR",W:"TRP",Y:"TYR",V:"VAL"};

  function hexToRgb(h) { return [parseInt(h.substr(1, 2), 16), parseInt(h.substr(3, 2), 16), parseInt(h.substr(5, 2), 16)]; }
  function bandColour(v) {
    if (v === null || v === undefined) return "#999999";
    for (var k = 0; k < D.colours.bands.length; k++) if (v >= D.colours.bands[k][0]) return D.colours.bands[k][1];
    return D.colours.bands[D.colours.bands.length - 1][1];
  }

  // ------------------------------------------------------------ 3D viewer
  var viewer = null, models = {};
  function atomsOf(coords, bondsAfter, which) {
    var bonded = {};
    bondsAfter.forEach(function (i) { bonded[i] = true; });
    return coords.map(function (xyz, i) {
      return {elem: "C", atom: "CA", x: xyz[0], y: xyz[1], z: xyz[2], resi: i + 1, resn: AA3[D.sequence[i]] || "UNK",
              chain: which === "model" ? "M" : "R", hetflag: false,
              b: D.confidence ? (D.confidence[i] === null ? 0 : D.confidence[i]) : 0,
              bonds: bonded[i] ? [i + 1] : [], bondOrder: bonded[i] ? [1] : [],
              properties: {which: which, index: i}};
    });
  }
  function applyStyle() {
    var mode = document.getElementById("colour-mode").value;
    var showRef = document.getElementById("show-ref");
    var refOn = !showRef || showRef.checked;
    var modelColour = function (atom) {
      var i = atom.properties.index;
      if (mode === "confidence" && D.confidence) return bandColour(D.confidence[i]);
      if (mode === "lddt" && D.lddt) return bandColour(D.lddt[i]);
      return D.colours.model;
    };
    models.model.setStyle({}, {stick: {radius: 0.35, colorfunc: modelColour}, sphere: {radius: 0.45, colorfunc: modelColour}});
    if (models.reference) {
      var rc = mode === "single" ? D.colours.reference : "#b8b8b8";
      models.reference.setStyle({}, refOn ? {stick: {radius: 0.25, color: rc}, sphere: {radius: 0.3, color: rc}} : {});
    }
    var sw = document.querySelector("#viewer-legend .model-swatch");
    if (sw) sw.style.display = mode === "single" ? "" : "none";
    viewer.render();
  }
  try {
    var el = document.getElementById("viewer");
    viewer = $3Dmol.createViewer(el, {backgroundColor: "white", antialias: true});
    if (!viewer) throw new Error("3Dmol could not create a WebGL viewer");
    if (D.reference) {
      models.reference = viewer.addModel();
      models.reference.addAtoms(atomsOf(D.reference, D.referenceBonds, "reference"));
    }
    models.model = viewer.addModel();
    models.model.addAtoms(atomsOf(D.model, D.modelBonds, "model"));
    document.getElementById("colour-mode").value = el.getAttribute("data-default-colour");
    document.getElementById("colour-mode").addEventListener("change", applyStyle);
    var sr = document.getElementById("show-ref");
    if (sr) sr.addEventListener("change", applyStyle);
    viewer.setHoverable({}, true, function (atom, v) {
      if (atom.label) return;
      var i = atom.properties.index, txt = atom.properties.which + " " + D.sequence[i] + D.labels[i];
      if (atom.properties.which === "model" && D.confidence && D.confidence[i] !== null) txt += " conf " + D.confidence[i].toFixed(1);
      if (D.lddt && D.lddt[i] !== null) txt += " lDDT " + D.lddt[i].toFixed(1);
      atom.label = v.addLabel(txt, {position: atom, backgroundColor: "#333", backgroundOpacity: 0.8, fontSize: 12});
    }, function (atom, v) { if (atom.label) { v.removeLabel(atom.label); delete atom.label; } });
    applyStyle();
    viewer.zoomTo();
    viewer.render();
  } catch (e) {
    selftest.errors.push("viewer: " + e);
    viewer = null;
    document.getElementById("viewer").innerHTML =
      '<p class="muted" style="padding:1em">The 3D viewer needs WebGL, which this browser did not provide (' +
      String(e).replace(/[<>&]/g, "") + '). The static projection is in the PNG beside this page (*.traces.png).</p>';
  }

  function viewerCheck() {
    var out = {canvas: false};
    if (!viewer) return out;
    var c = viewer.getCanvas();
    var inDiv = document.querySelectorAll("#viewer canvas");
    out.canvas = !!c && inDiv.length > 0;
    out.width = c.width; out.height = c.height;
    out.atoms = {model: models.model.selectedAtoms({}).length,
                 reference: models.reference ? models.reference.selectedAtoms({}).length : 0};
    var cc = document.createElement("canvas");
    cc.width = c.width; cc.height = c.height;
    var cx = cc.getContext("2d");
    cx.drawImage(c, 0, 0);
    var px = cx.getImageData(0, 0, c.width, c.height).data;
    var mc = hexToRgb(D.colours.model), rc = hexToRgb(D.colours.reference);
    var bands = D.colours.bands.map(function (b) { return hexToRgb(b[1]); });
    var nonbg = 0, modelLike = 0, refLike = 0, bandLike = 0;
    // single mode: model and reference colours; confidence/lDDT modes: band colours (reference is grey)
    var single = document.getElementById("colour-mode").value === "single";
    function hueClose(r, g, b, ref) {
      // same chromaticity up to shading: compare normalised colour vectors
      var s = r + g + b, t = ref[0] + ref[1] + ref[2];
      if (s < 30) return false;
      return Math.abs(r / s - ref[0] / t) + Math.abs(g / s - ref[1] / t) + Math.abs(b / s - ref[2] / t) < 0.12;
    }
    for (var k = 0; k < px.length; k += 4) {
      var r = px[k], g = px[k + 1], b = px[k + 2];
      if (px[k + 3] === 0 || (r > 245 && g > 245 && b > 245)) continue;
      nonbg++;
      if (hueClose(r, g, b, mc)) modelLike++;
      else if (single ? hueClose(r, g, b, rc) : false) refLike++;
      else if (!single && bands.some(function (bc) { return hueClose(r, g, b, bc); })) bandLike++;
    }
    out.pixels = px.length / 4; out.nonBackground = nonbg; out.modelColoured = modelLike;
    out.referenceColoured = refLike; out.confidenceColoured = bandLike;
    return out;
  }

  function colourModeCheck() {
    // Switch the colouring as a user would (every mode offered), redraw, measure, restore.
    var sel = document.getElementById("colour-mode"), initial = sel.value, out = {};
    Array.prototype.forEach.call(sel.options, function (o) {
      sel.value = o.value; applyStyle();
      var v = viewerCheck();
      out[o.value] = {nonBackground: v.nonBackground, modelColoured: v.modelColoured,
                      confidenceColoured: v.confidenceColoured, referenceColoured: v.referenceColoured};
    });
    sel.value = initial; applyStyle();
    return out;
  }

  // ------------------------------------------------------------ heatmaps
  var hover = document.getElementById("hover");
  function drawMap(m) {
    var n = D.n, bytes = atob(m.data), lut = D.luts[m.lut].map(hexToRgb);
    var box = document.createElement("div"); box.className = "map";
    var cap = document.createElement("div"); cap.textContent = m.label; box.appendChild(cap);
    var c = document.createElement("canvas"); c.id = m.id; c.width = n; c.height = n; box.appendChild(c);
    var ctx = c.getContext("2d"), img = ctx.createImageData(n, n), p = img.data;
    var grid = new Uint8Array(n * n);
    function put(i, j, q) {
      var o = (i * n + j) * 4, col = q === 255 ? [200, 200, 200] : lut[q];
      p[o] = col[0]; p[o + 1] = col[1]; p[o + 2] = col[2]; p[o + 3] = 255;
    }
    var zero = Math.round((0 - m.vmin) / (m.vmax - m.vmin) * 254);
    for (var d = 0; d < n; d++) { put(d, d, zero); grid[d * n + d] = zero; }
    var k = 0;
    for (var i = 0; i < n; i++) for (var j = i + 1; j < n; j++, k++) {
      var q = bytes.charCodeAt(k);
      put(i, j, q); put(j, i, q); grid[i * n + j] = q; grid[j * n + i] = q;
    }
    ctx.putImageData(img, 0, 0);
    var bar = document.createElement("div"); bar.className = "cbar";
    bar.style.background = "linear-gradient(to right," + D.luts[m.lut].filter(function (_, t) { return t % 16 === 0; }).join(",") + ")";
    box.appendChild(bar);
    var lab = document.createElement("div"); lab.className = "cbar-labels";
    lab.innerHTML = "<span>" + m.vmin + " Å</span><span>" + m.vmax + " Å</span>";
    box.appendChild(lab);
    c.addEventListener("mousemove", function (ev) {
      var r = c.getBoundingClientRect();
      var j = Math.floor((ev.clientX - r.left) / r.width * n), i = Math.floor((ev.clientY - r.top) / r.height * n);
      if (i < 0 || j < 0 || i >= n || j >= n) return;
      var q = grid[i * n + j];
      var v = q === 255 ? "missing" : "≈ " + (m.vmin + q / 254 * (m.vmax - m.vmin)).toFixed(1) + " Å";
      hover.textContent = m.label + ": " + D.sequence[i] + D.labels[i] + " – " + D.sequence[j] + D.labels[j] + "  " + v;
    });
    document.getElementById("maps").appendChild(box);
    return c;
  }
  function mapCheck(c) {
    var d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data, painted = 0, colours = {};
    for (var k = 0; k < d.length; k += 4) if (d[k + 3] === 255) { painted++; colours[(d[k] << 16) | (d[k + 1] << 8) | d[k + 2]] = 1; }
    return {present: true, width: c.width, height: c.height, painted: painted, distinctColours: Object.keys(colours).length};
  }
  D.maps.forEach(function (m) {
    try { selftest.heatmaps[m.id] = mapCheck(drawMap(m)); }
    catch (e) { selftest.errors.push("heatmap " + m.id + ": " + e); }
  });

  // ------------------------------------------------------------ self-check
  try { selftest.viewer = viewerCheck(); } catch (e) { selftest.errors.push("viewer check: " + e); }
  try { if (viewer) selftest.colourModes = colourModeCheck(); } catch (e) { selftest.errors.push("colour modes: " + e); }
  document.querySelectorAll("#metrics td.val").forEach(function (td) {
    selftest.table.push({key: td.getAttribute("data-key"), value: td.getAttribute("data-value"), text: td.textContent});
  });
  var svg = document.getElementById("per-residue");
  selftest.perResidue = {present: !!svg,
                         series: svg ? Array.prototype.map.call(svg.querySelectorAll("[data-series]"), function (e) { return e.getAttribute("data-series"); })
                                          .filter(function (v, i, a) { return a.indexOf(v) === i; }) : []};
  selftest.resources = performance.getEntriesByType("resource").map(function (e) { return e.name; });
  selftest.errors = selftest.errors.concat(window.__distfoldErrors);
  document.getElementById("selftest").textContent = JSON.stringify(selftest);
})();
