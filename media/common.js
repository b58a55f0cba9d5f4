// Helpers shared by Heed's webviews (loaded before maps.js / explain.js). No framework: small DOM helpers, the turbo
// colormap, heat-map rendering to canvases, and a dependency-free SVG line chart.
/* eslint-disable no-undef */
(function () {
  'use strict';
  const vscode = acquireVsCodeApi();

  /** Creates an element: h('div', {class: 'x', onclick: fn}, child, 'text'). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // Google's polynomial approximation of the turbo colormap (Mikhailov 2019), x in [0, 1] → [r, g, b] 0..255.
  function turbo(x) {
    x = Math.max(0, Math.min(1, x));
    const r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
    const g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
    const b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
    return [Math.round(255 * Math.max(0, Math.min(1, r))), Math.round(255 * Math.max(0, Math.min(1, g))), Math.round(255 * Math.max(0, Math.min(1, b)))];
  }

  /**
   * Draws a row-major map on a canvas of the map's own size (CSS scales it): min-max normalised, or on a fixed
   * `range` {min, max} (values outside it are clamped) so that several maps share one colour scale.
   */
  function heatCanvas(map, alphaFromValue, range) {
    const { width, height, data } = map;
    const c = h('canvas', { width, height, class: 'heat' });
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(width, height);
    let lo = Infinity;
    let hi = -Infinity;
    if (range) {
      lo = range.min;
      hi = range.max;
    } else {
      for (const v of data) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const span = hi - lo || 1;
    for (let i = 0; i < data.length; i++) {
      const t = Math.max(0, Math.min(1, (data[i] - lo) / span));
      const [r, g, b] = turbo(t);
      img.data[4 * i] = r;
      img.data[4 * i + 1] = g;
      img.data[4 * i + 2] = b;
      img.data[4 * i + 3] = alphaFromValue ? Math.round(255 * Math.min(1, 0.25 + t)) : 255;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  /** An accessible SVG line chart: series [{name, points: [[x, y]]}], axes labelled, a table fallback for readers. */
  function lineChart(series, opts) {
    const W = opts.width || 420;
    const H = opts.height || 180;
    const pad = { l: 40, r: 10, t: 10, b: 28 };
    const all = series.flatMap((s) => s.points);
    if (all.length === 0) return h('p', { class: 'muted' }, opts.empty || 'No data.');
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    const x0 = Math.min(...xs);
    const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
    const y0 = Math.min(0, ...ys);
    const y1 = Math.max(...ys) === y0 ? y0 + 1 : Math.max(...ys);
    const sx = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
    const sy = (y) => H - pad.b - ((y - y0) / (y1 - y0)) * (H - pad.t - pad.b);
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', opts.label);
    svg.setAttribute('class', 'chart ' + (opts.className || ''));
    const line = (x1_, y1_, x2_, y2_, cls) => {
      const l = document.createElementNS(NS, 'line');
      l.setAttribute('x1', x1_); l.setAttribute('y1', y1_); l.setAttribute('x2', x2_); l.setAttribute('y2', y2_);
      l.setAttribute('class', cls);
      svg.append(l);
    };
    const text = (x, y, s, anchor) => {
      const t = document.createElementNS(NS, 'text');
      t.setAttribute('x', x); t.setAttribute('y', y); t.setAttribute('text-anchor', anchor || 'middle');
      t.setAttribute('class', 'axis-label');
      t.textContent = s;
      svg.append(t);
    };
    line(pad.l, H - pad.b, W - pad.r, H - pad.b, 'axis');
    line(pad.l, pad.t, pad.l, H - pad.b, 'axis');
    text(pad.l - 4, sy(y1) + 4, y1.toPrecision(2), 'end');
    text(pad.l - 4, sy(y0) + 4, y0.toPrecision(2), 'end');
    text(sx(x0), H - 8, String(x0));
    text(sx(x1), H - 8, String(x1));
    text((pad.l + W) / 2, H - 8, opts.xLabel || '');
    series.forEach((s, i) => {
      const p = document.createElementNS(NS, 'polyline');
      p.setAttribute('points', s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' '));
      p.setAttribute('class', `series series-${i % 6}`);
      const title = document.createElementNS(NS, 'title');
      title.textContent = s.name;
      p.append(title);
      svg.append(p);
    });
    const legend = h('ul', { class: 'legend' }, series.map((s, i) => h('li', {}, h('span', { class: `swatch series-${i % 6}` }), s.name)));
    const table = h('details', { class: 'chart-data' }, h('summary', {}, 'Data'),
      h('table', {}, h('tr', {}, h('th', {}, opts.xLabel || 'x'), series.map((s) => h('th', {}, s.name))),
        [...new Set(xs)].sort((a, b) => a - b).map((x) => h('tr', {}, h('td', {}, x), series.map((s) => {
          const pt = s.points.filter((q) => q[0] === x).pop();
          return h('td', {}, pt ? pt[1].toFixed(4) : '');
        })))));
    return h('figure', { class: 'chart-figure ' + (opts.className || '') }, svg, legend, table);
  }

  window.heed = { vscode, h, turbo, heatCanvas, lineChart };
})();
