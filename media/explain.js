// Explanation panel: pick CLIP or ViT, type texts (CLIP), run; then scores, relevance overlays, head grid and the
// mean-attention-distance plot drawn from the engine's explain.json.
/* eslint-disable no-undef */
(function () {
  'use strict';
  const { vscode, h, turbo, heatCanvas, lineChart } = window.heed;
  // The compare view's logic (extension/src/core/compareView.ts, bundled by build.mjs).
  const compareLib = window.heedCompare;
  const LRP = [['transformer-attribution', 'transformer attribution (LRP × gradient, rolled out)'], ['partial-lrp', 'partial LRP (last layer)'],
    ['raw-attention', 'raw attention (last layer)'], ['gradcam', 'GradCAM (last attention block)'], ['attn-lrp', 'AttnLRP (LXT: one backward to the pixels, summed per patch)']];
  const app = document.getElementById('app');
  let state = vscode.getState() || { image: null, texts: ['a photo of a frog'], kind: 'clip', models: {}, status: 'idle', result: null, error: null, opacity: 0.6 };

  const toMap = (nested) => ({ width: nested[0] ? nested[0].length : 0, height: nested.length, data: nested.flat() });

  function overlayTile(caption, nested, input, id) {
    const stage = h('div', { class: 'stage' }, h('img', { class: 'image', src: input || (state.image && state.image.uri), alt: `input image with ${caption}` }));
    const c = heatCanvas(toMap(nested), false);
    c.classList.add('overlay');
    c.style.opacity = String(state.opacity);
    stage.append(c);
    return h('figure', { class: 'explain-map', id }, stage, h('figcaption', {}, caption));
  }

  /** Method options, folded away: blank fields keep the engine's defaults (each label says which). */
  function renderOptions() {
    const o = (state.options = state.options || {});
    const set = (key) => (e) => {
      o[key] = e.target.value;
      vscode.setState(state);
    };
    const numberField = (key, label, attrs) => [
      h('label', { for: `opt-${key}` }, label),
      h('input', { id: `opt-${key}`, type: 'number', value: o[key] ?? '', oninput: set(key), ...attrs }),
    ];
    const select = (key, label, options) => {
      const el = h('select', { id: `opt-${key}`, onchange: set(key) }, ...options.map(([v, text]) => h('option', { value: v }, text)));
      el.value = o[key] ?? options[0][0];
      return [h('label', { for: `opt-${key}` }, label), el];
    };
    return h('details', { class: 'options', open: state.optionsOpen ? true : undefined, ontoggle: (e) => { state.optionsOpen = e.target.open; vscode.setState(state); } },
      h('summary', {}, 'Options'),
      h('div', { class: 'form' },
        ...(state.kind === 'vit' ? numberField('top', 'Classes to explain, top k (default 5)', { min: 1, max: 100, step: 1, placeholder: '5' }) : []),
        ...select('headFusion', 'Rollout head fusion', [['', 'default (max)'], ['mean', 'mean'], ['max', 'max'], ['min', 'min']]),
        ...numberField('discard', 'Rollout discard ratio (default 0.9)', { min: 0, max: 0.99, step: 0.05, placeholder: '0.9' }),
        ...numberField('headsLayer', 'Head grid layer (default −1 = last)', { min: -1024, max: 1023, step: 1, placeholder: '-1' }),
        ...select('cheferStart', 'Chefer from block', [['', state.kind === 'clip' ? 'default (last)' : 'default (all)'], ['all', 'all blocks'], ['last', 'last block'], ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((i) => [String(i), `block ${i}`])]),
        ...(state.kind === 'vit' ? [
          h('span', {}, 'Also run (LRP family)'),
          h('div', { class: 'checks', id: 'opt-lrp' }, LRP.map(([m, label]) => h('label', {},
            h('input', { type: 'checkbox', value: m, checked: (o.lrp || []).includes(m) ? true : undefined, onchange: (e) => {
              const set = new Set(o.lrp || []);
              if (e.target.checked) set.add(m); else set.delete(m);
              o.lrp = [...set];
              vscode.setState(state);
            } }), ' ', label))),
          ...select('attnLrpAttention', 'AttnLRP attention rule', [['', 'default (CP-LRP, as LXT for ViTs)'], ['cp', 'CP-LRP (none through the softmax)'], ['attnlrp', 'AttnLRP softmax + uniform rules']]),
          ...numberField('compareClass', 'Compare methods: class (default the top one)', { min: 0, step: 1, placeholder: 'top' }),
        ] : []),
      ));
  }

  function render() {
    app.replaceChildren();
    app.append(h('h1', {}, 'Heed explain'));
    const form = h('div', { class: 'form' },
      h('span', {}, 'Image'),
      h('span', {}, state.image ? state.image.name : h('span', { class: 'muted' }, 'none'), ' ', h('button', { class: 'secondary', onclick: () => vscode.postMessage({ type: 'pickImage' }) }, 'Choose image…')),
      h('label', { for: 'kind' }, 'Model'),
      h('select', { id: 'kind', onchange: (e) => { state.kind = e.target.value; render(); } },
        h('option', { value: 'clip', selected: state.kind === 'clip' }, `CLIP${state.models.clip ? '' : ' (not set: heed.models.clip)'}`),
        h('option', { value: 'vit', selected: state.kind === 'vit' }, `ViT${state.models.vit ? '' : ' (not set: heed.models.vit)'}`)),
    );
    if (state.kind === 'clip') {
      form.append(h('label', { for: 'texts' }, 'Texts (one per line)'),
        h('textarea', { id: 'texts', rows: 3, oninput: (e) => { state.texts = e.target.value.split('\n'); vscode.setState(state); } }, state.texts.join('\n')));
    }
    app.append(form);
    app.append(renderOptions());
    const busy = state.status === 'running';
    app.append(h('div', { class: 'buttons' },
      h('button', { id: 'run', disabled: busy || !state.image, onclick: () => vscode.postMessage({ type: 'run', model: state.kind, texts: state.texts, options: state.options || {} }) }, busy && !state.comparing ? 'Explaining…' : 'Explain'),
      h('button', { id: 'compare', class: 'secondary', disabled: busy || !state.image, title: 'Every map method that applies, side by side on one colour scale, with each method\'s time',
        onclick: () => vscode.postMessage({ type: 'run', model: state.kind, texts: state.texts, options: state.options || {}, compare: true }) }, busy && state.comparing ? 'Comparing…' : 'Compare methods'),
      busy ? h('button', { class: 'secondary', onclick: () => vscode.postMessage({ type: 'cancel' }) }, 'Cancel') : null,
      h('label', { for: 'opacity' }, ' Overlay opacity '),
      h('input', { id: 'opacity', type: 'range', min: 0, max: 1, step: 0.05, value: state.opacity, oninput: (e) => {
        state.opacity = Number(e.target.value);
        document.querySelectorAll('.overlay').forEach((o) => { o.style.opacity = String(state.opacity); });
        vscode.setState(state);
      } })));
    if (state.error) app.append(h('p', { class: 'error', role: 'alert' }, state.error));
    if (state.image && !state.result) app.append(h('img', { class: 'preview', src: state.image.uri, alt: state.image.name }));
    if (state.result) app.append(state.result.compare ? renderCompare(state.result) : renderResult(state.result));
    vscode.setState(state);
  }

  function renderResult(res) {
    const ex = res.explain || {};
    const m = ex.methods || {};
    const out = h('div', { class: 'explain-result', id: 'explain-result' });
    if (ex.similarities && ex.similarities.length) {
      out.append(h('h2', {}, 'CLIP similarity'),
        h('table', { class: 'scores', id: 'clip-scores' }, h('tr', {}, h('th', {}, 'text'), h('th', {}, 'probability'), h('th', {}, 'logit'), h('th', {}, '')),
          ex.similarities.map((s) => {
            const meter = h('div', { class: 'meter' });
            meter.style.width = `${Math.round(100 * s.probability)}%`;
            return h('tr', { class: 'score-row' }, h('td', {}, s.text), h('td', {}, s.probability.toFixed(3)), h('td', {}, s.logit.toFixed(2)), h('td', { class: 'bar-cell' }, meter));
          })));
    }
    if (ex.classes && ex.classes.length) {
      out.append(h('h2', {}, 'Top classes'),
        h('table', { class: 'scores', id: 'vit-classes' }, h('tr', {}, h('th', {}, 'class'), h('th', {}, 'probability')),
          ex.classes.map((c) => h('tr', { class: 'score-row' }, h('td', {}, `${c.label} (${c.index})`), h('td', {}, c.probability.toFixed(3))))));
    }
    // CLIP: one Chefer relevance per text. ViT: per class, its gradient rollout and Chefer side by side.
    const cheferText = (m.chefer || []).filter((c) => c.text !== undefined);
    if (cheferText.length) {
      out.append(h('h2', {}, 'Relevance per text (Chefer)'),
        h('div', { class: 'maps-row', id: 'overlays' }, cheferText.map((c) => overlayTile(`Chefer relevance: "${c.text}"`, c.image, res.input))));
    }
    const classIdx = [...new Set([...(m.gradRollout || []).map((g) => g.classIndex), ...(m.chefer || []).filter((c) => c.text === undefined).map((c) => c.classIndex), ...(m.lrp || []).map((l) => l.classIndex)])];
    if (classIdx.length) {
      const rows = h('div', { id: 'overlays' });
      for (const ci of classIdx) {
        const cls = (ex.classes || []).find((c) => c.index === ci);
        const tiles = [];
        for (const g of (m.gradRollout || []).filter((x) => x.classIndex === ci)) tiles.push(overlayTile(`grad rollout: ${g.label}`, g.map, res.input));
        for (const c of (m.chefer || []).filter((x) => x.text === undefined && x.classIndex === ci)) tiles.push(overlayTile(`Chefer: ${c.label}`, c.image, res.input));
        for (const l of (m.lrp || []).filter((x) => x.classIndex === ci)) tiles.push(overlayTile(`${l.method}: ${l.label}`, l.map, res.input));
        rows.append(h('h3', {}, `${cls ? cls.label : `class ${ci}`}${cls ? ` — p = ${cls.probability.toFixed(3)}` : ''}`), h('div', { class: 'maps-row' }, tiles));
      }
      out.append(h('h2', {}, 'Relevance per class'), rows);
    }
    if ((m.rollout || []).length) {
      out.append(h('h2', {}, 'Attention rollout (class-agnostic)'),
        h('div', { class: 'maps-row', id: 'rollout' }, m.rollout.map((r) => overlayTile(`rollout (${r.fusion}, discard ${r.discard})`, r.map, res.input))));
    }
    if (m.heads && m.heads.maps) {
      out.append(h('h2', {}, `CLS attention per head, layer ${m.heads.layer}`),
        h('div', { class: 'maps-row heads-grid' }, m.heads.maps.map((hm, i) => overlayTile(`head ${i}`, hm, res.input))));
    }
    if (m.distance && m.distance.values) {
      const vals = m.distance.values; // [layer][head]
      const heads = vals[0] ? vals[0].length : 0;
      const series = [];
      for (let hd = 0; hd < heads; hd++) series.push({ name: `head ${hd}`, points: vals.map((row, l) => [l, row[hd]]) });
      out.append(h('h2', {}, 'Mean attention distance'), lineChart(series, { label: 'mean attention distance in pixels per layer and head', xLabel: 'layer', className: 'distance-chart' }));
    }
    if (ex.notes && ex.notes.length) out.append(h('ul', { class: 'muted' }, ex.notes.map((n) => h('li', {}, n))));
    if (ex.skipped && Object.keys(ex.skipped).length) out.append(h('p', { class: 'muted' }, `Skipped: ${JSON.stringify(ex.skipped)}`));
    out.append(h('p', { class: 'muted small' }, `Files: ${res.outDir}`));
    return out;
  }

  /** A vertical colour bar (top = max) with its two end values and label. */
  function colorBar(bar) {
    const c = h('canvas', { width: 1, height: 128, class: 'colorbar-strip' });
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(1, 128);
    for (let y = 0; y < 128; y++) {
      const [r, g, b] = turbo(1 - y / 127);
      img.data.set([r, g, b, 255], 4 * y);
    }
    ctx.putImageData(img, 0, 0);
    const fmt = (v) => (Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01) ? v.toExponential(2) : String(Number(v.toFixed(3))));
    return h('figure', { class: 'colorbar', id: 'compare-colorbar', 'aria-label': `colour bar from ${fmt(bar.min)} to ${fmt(bar.max)}: ${bar.label}` },
      h('span', { class: 'small' }, fmt(bar.max)), c, h('span', { class: 'small' }, fmt(bar.min)), h('figcaption', { class: 'muted small' }, bar.label));
  }

  /** *Compare methods*: the input, then each method's map on one colour scale, its wall time under it, a colour bar. */
  function renderCompare(res) {
    const scale = state.compareScale || 'normalized';
    const view = compareLib.compareView(res.explain || { methods: [] }, scale);
    const out = h('div', { class: 'explain-result', id: 'compare-result' });
    out.append(h('h2', {}, view.heading),
      h('div', { class: 'form' }, h('label', { for: 'compare-scale' }, 'Colour scale'),
        (() => {
          const el = h('select', { id: 'compare-scale', onchange: (e) => { state.compareScale = e.target.value; render(); } },
            h('option', { value: 'normalized' }, 'each map min–max'), h('option', { value: 'shared' }, 'one range (raw values)'));
          el.value = scale;
          return el;
        })()));
    const tiles = [h('figure', { class: 'explain-map compare-tile' }, h('figcaption', { class: 'tile-title' }, 'input'),
      h('div', { class: 'stage' }, h('img', { class: 'image', src: res.input || (state.image && state.image.uri), alt: 'input image' })), h('figcaption', { class: 'muted small' }, ' '))];
    for (const t of view.tiles) {
      const map = toMap(t.map);
      const c = heatCanvas(map, false, t.range);
      c.classList.add('compare-heat');
      tiles.push(h('figure', { class: 'explain-map compare-tile', 'data-method': t.method },
        h('figcaption', { class: 'tile-title' }, t.title), h('div', { class: 'stage' }, c), h('figcaption', { class: 'muted small compare-time' }, t.caption)));
    }
    out.append(h('div', { class: 'maps-row', id: 'compare-tiles' }, tiles, colorBar(view.bar)));
    if (view.skipped.length) out.append(h('ul', { class: 'muted' }, view.skipped.map((s) => h('li', {}, `skipped ${s}`))));
    out.append(h('p', { class: 'muted small' }, `Times: each method run on its own after a warm-up (forward pass included). Files: ${res.outDir}`));
    return out;
  }

  window.addEventListener('message', (ev) => {
    const msg = ev.data;
    switch (msg.type) {
      case 'models': state.models = { clip: msg.clip, vit: msg.vit }; break;
      case 'image':
        state.image = { path: msg.path, name: msg.name, uri: msg.uri };
        if (msg.texts && msg.texts.length) state.texts = msg.texts;
        state.result = null;
        state.error = null;
        break;
      case 'running': state.status = 'running'; state.comparing = msg.compare === true; state.kind = msg.kind; state.error = null; state.result = null; if (msg.texts.length) state.texts = msg.texts; break;
      case 'result': state.status = 'done'; state.result = msg; break;
      case 'error': state.status = 'error'; state.error = msg.message; break;
    }
    render();
  });

  render();
  vscode.postMessage({ type: 'ready' });
})();
