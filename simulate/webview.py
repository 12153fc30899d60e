"""An interactive 3D view for the book: surface meshes embedded in the page and a small WebGL viewer.

Turns meshes into an HTML fragment and script that need no network; it renders no image itself.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

from nmosim.phantoms.progression import STAGES
from nmosim.simulate import render3d
from nmosim.simulate.book_data import CaseFolder
from nmosim.simulate.book_figures import (
    FEMUR_CLASS,
    PELVIS_CLASS,
    RENDER_COLOURS,
    STAGE_CLASS0,
)

BONE_STEP = 2  # marching-cubes step (voxels) for pelvis and femurs: keeps the page a few MB
LESION_STEP = 1  # HO and confounders are small: full resolution


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _class_name(value: int) -> str:
    if value == PELVIS_CLASS:
        return "pelvis"
    if value == FEMUR_CLASS:
        return "femur"
    if value >= STAGE_CLASS0 + 1:
        return f"HO, {STAGES[value - STAGE_CLASS0 - 1]}"
    return "not HO (confounder)"


def mesh_payload(case: CaseFolder, classes: np.ndarray) -> dict:
    """Meshes of every render class (positions float32 mm, indices uint16 or uint32), base64 in JSON."""
    meshes = []
    for value in (int(v) for v in np.unique(classes) if v > 0):
        step = BONE_STEP if value in (PELVIS_CLASS, FEMUR_CLASS) else LESION_STEP
        mesh = render3d.surface_mesh(classes == value, case.grid, step=step)
        if mesh is None:
            continue
        wide = mesh.vertices.shape[0] > 65535
        meshes.append({
            "name": _class_name(value),
            "colour": [round(c, 3) for c in RENDER_COLOURS[value]],
            "positions": _b64(mesh.vertices.astype(np.float32)),
            "indices": _b64(mesh.faces.astype(np.uint32 if wide else np.uint16)),
            "wide": wide,
        })  # fmt: skip
    points = np.concatenate([np.frombuffer(base64.b64decode(m["positions"]), np.float32) for m in meshes])
    points = points.reshape(-1, 3) if points.size else np.zeros((1, 3), np.float32)
    lo, hi = points.min(0), points.max(0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
    return {"meshes": meshes, "centre": [float(c) for c in centre], "radius": radius}


def viewer_html(case: CaseFolder, classes: np.ndarray, element_id: str = "mesh-data") -> str:
    """The viewer's canvas, its legend and the embedded meshes (the script is VIEWER_SCRIPT)."""
    payload = mesh_payload(case, classes)
    legend = " ".join(
        f'<span style="color: rgb({",".join(str(int(255 * c)) for c in m["colour"])})">&#9632;</span> '
        f"{html.escape(m['name'])}"
        for m in payload["meshes"]
    )
    buttons = "".join(
        f'<button type="button" data-yaw="{yaw}">{name}</button> '
        for name, yaw in (("AP", 0), ("PA", 180), ("right lateral", 90), ("left lateral", -90))
    )
    return (
        f'<canvas class="viewer" data-mesh="{element_id}" aria-label="interactive 3D surfaces"></canvas>'
        f'<p class="note">Drag to rotate, wheel to zoom. {buttons} {legend}</p>'
        f'<script type="application/json" id="{element_id}">{json.dumps(payload)}</script>'
    )


VIEWER_SCRIPT = r"""<script>
(function () {
  "use strict";
  function decode(text, Type) {
    var bin = atob(text), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }
  function normals(pos, idx) {
    var n = new Float32Array(pos.length);
    for (var t = 0; t < idx.length; t += 3) {
      var a = 3 * idx[t], b = 3 * idx[t + 1], c = 3 * idx[t + 2];
      var ux = pos[b] - pos[a], uy = pos[b + 1] - pos[a + 1], uz = pos[b + 2] - pos[a + 2];
      var vx = pos[c] - pos[a], vy = pos[c + 1] - pos[a + 1], vz = pos[c + 2] - pos[a + 2];
      var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
      [a, b, c].forEach(function (k) { n[k] += nx; n[k + 1] += ny; n[k + 2] += nz; });
    }
    return n;
  }
  function shader(gl, type, source) {
    var s = gl.createShader(type);
    gl.shaderSource(s, source);
    gl.compileShader(s);
    return s;
  }
  var VS = "attribute vec3 p; attribute vec3 n; uniform mat3 r; uniform vec3 c; uniform vec2 s;" +
    "varying vec3 vn; void main() { vec3 q = r * (p - c); vn = r * n;" +
    "gl_Position = vec4(q.x * s.x, q.y * s.y, -q.z * s.y * 0.5, 1.0); }";
  var FS = "precision mediump float; uniform vec3 k; varying vec3 vn; void main() {" +
    "float d = abs(dot(normalize(vn), normalize(vec3(-0.35, 0.55, 1.0))));" +
    "gl_FragColor = vec4(k * (0.28 + 0.72 * d), 1.0); }";
  function setup(canvas) {
    var data = JSON.parse(document.getElementById(canvas.dataset.mesh).textContent);
    var gl = canvas.getContext("webgl", {antialias: true});
    if (!gl) {
      var note = document.createElement("p");
      note.className = "note";
      note.textContent = "This browser offers no WebGL; the renderings above show the same surfaces.";
      canvas.replaceWith(note);
      return;
    }
    var wide = gl.getExtension("OES_element_index_uint");
    var prog = gl.createProgram();
    gl.attachShader(prog, shader(gl, gl.VERTEX_SHADER, VS));
    gl.attachShader(prog, shader(gl, gl.FRAGMENT_SHADER, FS));
    gl.linkProgram(prog);
    gl.useProgram(prog);
    var loc = {p: gl.getAttribLocation(prog, "p"), n: gl.getAttribLocation(prog, "n"),
      r: gl.getUniformLocation(prog, "r"), c: gl.getUniformLocation(prog, "c"),
      s: gl.getUniformLocation(prog, "s"), k: gl.getUniformLocation(prog, "k")};
    var meshes = data.meshes.filter(function (m) { return !m.wide || wide; }).map(function (m) {
      var pos = decode(m.positions, Float32Array);
      var idx = decode(m.indices, m.wide ? Uint32Array : Uint16Array);
      var buffers = [pos, normals(pos, idx)].map(function (array) {
        var b = gl.createBuffer();
        gl.bindBuffer(gl.ARRAY_BUFFER, b);
        gl.bufferData(gl.ARRAY_BUFFER, array, gl.STATIC_DRAW);
        return b;
      });
      var ib = gl.createBuffer();
      gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, ib);
      gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, idx, gl.STATIC_DRAW);
      return {pos: buffers[0], nor: buffers[1], idx: ib, count: idx.length,
        type: m.wide ? gl.UNSIGNED_INT : gl.UNSIGNED_SHORT, colour: m.colour};
    });
    var view = {yaw: 0, pitch: 0, zoom: 1.5};
    function rotation() {
      // Patient (x right, y anterior, z superior) to screen, starting as an AP view.
      var cy = Math.cos(view.yaw), sy = Math.sin(view.yaw);
      var cp = Math.cos(view.pitch), sp = Math.sin(view.pitch);
      var base = [[-1, 0, 0], [0, 0, 1], [0, 1, 0]];
      var yaw = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]];
      var pitch = [[1, 0, 0], [0, cp, -sp], [0, sp, cp]];
      function mul(a, b) {
        return a.map(function (row) { return [0, 1, 2].map(function (j) {
          return row[0] * b[0][j] + row[1] * b[1][j] + row[2] * b[2][j]; }); });
      }
      var m = mul(pitch, mul(yaw, base));
      return [m[0][0], m[1][0], m[2][0], m[0][1], m[1][1], m[2][1], m[0][2], m[1][2], m[2][2]];
    }
    var pending = false;
    function draw() {
      pending = false;
      var w = canvas.clientWidth, h = canvas.clientHeight;
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      gl.viewport(0, 0, w, h);
      gl.clearColor(0.07, 0.07, 0.09, 1);
      gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
      gl.enable(gl.DEPTH_TEST);
      var scale = view.zoom / data.radius;
      gl.uniformMatrix3fv(loc.r, false, rotation());
      gl.uniform3fv(loc.c, data.centre);
      gl.uniform2f(loc.s, scale * h / Math.max(w, 1), scale);
      meshes.forEach(function (m) {
        gl.uniform3fv(loc.k, m.colour);
        gl.bindBuffer(gl.ARRAY_BUFFER, m.pos);
        gl.enableVertexAttribArray(loc.p);
        gl.vertexAttribPointer(loc.p, 3, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, m.nor);
        gl.enableVertexAttribArray(loc.n);
        gl.vertexAttribPointer(loc.n, 3, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, m.idx);
        gl.drawElements(gl.TRIANGLES, m.count, m.type, 0);
      });
    }
    function redraw() { if (!pending) { pending = true; requestAnimationFrame(draw); } }
    var drag = null;
    canvas.addEventListener("pointerdown", function (e) { drag = [e.clientX, e.clientY]; });
    window.addEventListener("pointerup", function () { drag = null; });
    window.addEventListener("pointermove", function (e) {
      if (!drag) return;
      view.yaw += 0.01 * (e.clientX - drag[0]);
      view.pitch = Math.max(-1.5, Math.min(1.5, view.pitch + 0.01 * (e.clientY - drag[1])));
      drag = [e.clientX, e.clientY];
      redraw();
    });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      view.zoom = Math.max(0.3, Math.min(8, view.zoom * Math.exp(-0.001 * e.deltaY)));
      redraw();
    }, {passive: false});
    var panel = canvas.nextElementSibling;
    var buttons = panel ? panel.querySelectorAll("button[data-yaw]") : [];
    Array.prototype.forEach.call(buttons, function (b) {
      b.addEventListener("click", function () {
        view.yaw = Number(b.dataset.yaw) * Math.PI / 180; view.pitch = 0; redraw();
      });
    });
    window.addEventListener("resize", redraw);
    redraw();
  }
  Array.prototype.forEach.call(document.querySelectorAll("canvas.viewer"), setup);
})();
</script>
"""
