// Map preview panel: progress + live preview while generating; then per run (plain / Attend-and-Excite) the image, a
// grid of per-token maps (click or Enter to overlay on the image), an opacity slider, a layer/resolution filter and a
// step slider for the maps (the choice logic is window.heedViews, the tested extension/src/core/mapViews.ts), the
// latent previews per step, the A&E loss chart, save buttons.
/* eslint-disable no-undef */
(function () {
  'use strict';
  const { vscode, h, heatCanvas, lineChart } = window.heed;
  const views = window.heedViews;
  const app = document.getElementById('app');
  const LABEL = { plain: 'Plain', excite: 'Attend-and-Excite' };

  /** @type {{prompt: string, labels: string[], subjects: string[], runs: Record<string, any>} | null} */
  let state = vscode.getState() || null;

  function run(label) {
    if (!state.runs[label]) state.runs[label] = { status: 'queued', progress: null, preview: null, previews: [], stepShown: null, result: null, selected: null, opacity: 0.6, losses: [], error: null, view: 'daam', mapStep: null };
    return state.runs[label];
  }

  function render() {
    // Re-rendering replaces the controls: keep keyboard focus on the one the user was on.
    const focusedId = document.activeElement && document.activeElement.id;
    draw();
    if (focusedId) {
      const again = document.getElementById(focusedId);
      if (again) again.focus();
    }
  }

  function draw() {
    app.replaceChildren();
    if (!state) {
      app.append(h('p', { class: 'muted' }, 'Run "Heed: Generate" on a prompt (or the Generate CodeLens above it) to see its maps here.'));
      return;
    }
    const busy = state.labels.some((l) => ['queued', 'running'].includes(run(l).status));
    app.append(
      h('header', { class: 'panel-header' },
        h('h1', {}, 'Heed maps'),
        h('p', { class: 'prompt', title: 'prompt' }, state.prompt),
        state.subjects.length ? h('p', { class: 'muted' }, `Subjects: ${state.subjects.join(', ')}`) : null,
        busy ? h('button', { id: 'cancel', class: 'secondary', onclick: () => vscode.postMessage({ type: 'cancel' }) }, 'Cancel') : null,
      ),
    );
    const cols = h('div', { class: `runs runs-${state.labels.length}` });
    for (const label of state.labels) cols.append(renderRun(label));
    app.append(cols);
    vscode.setState(state);
  }

  function renderRun(label) {
    const r = run(label);
    const sec = h('section', { class: 'run', id: `run-${label}`, 'aria-label': `${LABEL[label]} run` }, h('h2', {}, LABEL[label]));
    if (r.error) sec.append(h('p', { class: 'error', role: 'alert' }, r.error));
    if (r.status === 'cancelled') sec.append(h('p', { class: 'muted' }, 'Cancelled.'));
    if (!r.result && (r.status === 'running' || r.status === 'queued')) {
      const p = r.progress;
      const pct = p && p.total ? Math.round((100 * p.step) / p.total) : 0;
      sec.append(
        h('div', { class: 'progress-line' },
          h('span', {}, p ? `${p.phase} ${p.total ? `${p.step}/${p.total}` : ''}${p.iteration !== undefined ? ` (refinement ${p.iteration})` : ''}${p.etaMs ? ` — about ${Math.ceil(p.etaMs / 1000)} s left` : ''}` : 'queued…'),
          h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': `${LABEL[label]} progress` }, barFill(pct)),
        ),
      );
      if (r.preview) sec.append(h('img', { class: 'preview', src: r.preview, alt: 'live preview from the latents (low resolution)' }));
    }
    if (r.result) sec.append(renderResult(label, r));
    if (r.result && r.previews.length > 1) sec.append(renderSteps(label, r));
    if (label === 'excite' || r.losses.length) sec.append(renderLoss(label, r));
    return sec;
  }

  function barFill(pct) {
    const d = h('div', { class: 'fill' });
    d.style.width = `${pct}%`;
    return d;
  }

  function renderResult(label, r) {
    const res = r.result;
    const wrap = h('div', { class: 'result' });
    const choose = chooser(r);
    const stage = h('div', { class: 'stage' }, h('img', { class: 'image', src: res.image, alt: `generated image (${res.width}×${res.height})` }));
    const sel = res.maps.find((m) => m.word === r.selected);
    const shown = res.maps.length ? choose(sel || res.maps[0]) : null;
    if (sel) stage.append(overlayCanvas(sel.word, shown, r.opacity));
    wrap.append(stage);
    wrap.append(
      h('div', { class: 'controls' },
        h('label', { for: `opacity-${label}` }, 'Overlay opacity'),
        h('input', { id: `opacity-${label}`, type: 'range', min: 0, max: 1, step: 0.05, value: r.opacity, oninput: (e) => {
          r.opacity = Number(e.target.value);
          const o = document.querySelector(`#run-${label} .overlay`);
          if (o) o.style.opacity = String(r.opacity);
          vscode.setState(state);
        } }),
        h('span', { class: 'muted' }, sel ? `showing "${sel.word}"` : 'click a token map to overlay it'),
      ),
    );
    if (res.maps.length) wrap.append(renderMapControls(label, r, shown));
    if (res.maps.length === 0) wrap.append(h('p', { class: 'muted' }, 'This run returned no token maps.'));
    const top = Math.max(...res.maps.map((m) => m.maxAttention || 0), 0);
    const grid = h('div', { class: 'token-grid', role: 'listbox', 'aria-label': 'per-token attention maps' });
    res.maps.forEach((m, i) => {
      const rel = top > 0 && m.maxAttention !== undefined ? m.maxAttention / top : undefined;
      const cell = h('button', {
        class: `token-map${m.word === r.selected ? ' selected' : ''}`,
        role: 'option',
        'aria-selected': m.word === r.selected ? 'true' : 'false',
        'data-word': m.word,
        title: `${m.word} (tokens ${m.tokenIndices.join(', ')})${m.maxAttention !== undefined ? `, max attention ${m.maxAttention.toPrecision(3)}` : ''}`,
        onclick: () => {
          r.selected = r.selected === m.word ? null : m.word;
          render();
          const again = document.querySelector(`#run-${label} .token-map[data-word="${CSS.escape(m.word)}"]`);
          if (again) again.focus();
        },
        onkeydown: (e) => {
          const cells = [...grid.querySelectorAll('.token-map')];
          const k = cells.indexOf(e.currentTarget);
          if (e.key === 'ArrowRight' || e.key === 'ArrowDown') cells[Math.min(cells.length - 1, k + 1)].focus();
          else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') cells[Math.max(0, k - 1)].focus();
          else return;
          e.preventDefault();
        },
      }, heatCanvas(choose(m).plane, false), h('span', { class: 'word' }, m.word), rel !== undefined ? h('span', { class: `score${rel < 0.2 ? ' low' : ''}` }, rel.toFixed(2)) : null);
      if (i === 0) cell.setAttribute('tabindex', '0');
      grid.append(cell);
    });
    wrap.append(grid);
    wrap.append(
      h('div', { class: 'buttons' },
        h('button', { onclick: () => vscode.postMessage({ type: 'save', label, what: 'png' }) }, 'Save PNG'),
        h('button', { title: 'the selected word\'s map as shown (layer filter and step)', onclick: () => vscode.postMessage({ type: 'save', label, what: 'npy', word: r.selected || undefined, view: r.view, step: r.mapStep }) }, 'Save .npy'),
        h('button', { onclick: () => vscode.postMessage({ type: 'save', label, what: 'report' }) }, 'Save report'),
        h('button', { class: 'secondary', onclick: () => vscode.postMessage({ type: 'explainSubjects', label }) }, 'Is each subject there? (CLIP)'),
      ),
      h('p', { class: 'muted small' }, `Files: ${res.outDir}${res.seed !== undefined ? ` · seed ${res.seed}` : ''}${res.timingsMs && res.timingsMs.total ? ` · ${(res.timingsMs.total / 1000).toFixed(1)} s` : ''}`),
    );
    return wrap;
  }

  /** The map to draw for a word under the run's current filter and step. */
  function chooser(r) {
    const res = r.result;
    return (m) => views.selectPlane(m, r.view, r.mapStep, res.layerGroups || [], res.stepGroups || []);
  }

  function overlayCanvas(word, shown, opacity) {
    const overlay = heatCanvas(shown.plane, false);
    overlay.classList.add('overlay');
    overlay.style.opacity = String(opacity);
    overlay.setAttribute('aria-label', `attention map of "${word}" over the image: ${shown.caption}`);
    return overlay;
  }

  /**
   * Redraws the maps of a run in place after the filter or the step changed. The controls are not rebuilt, so a
   * slider being dragged keeps the pointer and the keyboard focus.
   */
  function updateMaps(label) {
    const r = run(label);
    const res = r.result;
    const root = document.getElementById(`run-${label}`);
    if (!root || !res) return;
    const choose = chooser(r);
    for (const cell of root.querySelectorAll('.token-map')) {
      const m = res.maps.find((x) => x.word === cell.getAttribute('data-word'));
      const old = cell.querySelector('canvas');
      if (m && old) old.replaceWith(heatCanvas(choose(m).plane, false));
    }
    const sel = res.maps.find((m) => m.word === r.selected);
    const shown = choose(sel || res.maps[0]);
    const ov = root.querySelector('.overlay');
    if (ov && sel) ov.replaceWith(overlayCanvas(sel.word, shown, r.opacity));
    const steps = views.stepCount(res.maps);
    const v = r.mapStep === null ? 0 : r.mapStep + 1;
    const slider = document.getElementById(`map-step-${label}`);
    if (slider) slider.setAttribute('aria-valuetext', stepText(v, steps));
    document.getElementById(`map-step-text-${label}`).textContent = stepText(v, steps);
    document.getElementById(`map-caption-${label}`).textContent = `Maps: ${shown.caption}`;
    const note = document.getElementById(`map-note-${label}`);
    note.textContent = shown.note || '';
    note.hidden = !shown.note;
    if (r.mapStep !== null) showPreviewOfCall(label, r, r.mapStep);
    vscode.setState(state);
  }

  /** Moves the latent-preview slider to the same denoising step as the maps, so map and image are seen together. */
  function showPreviewOfCall(label, r, call) {
    const k = r.previews.findIndex((p) => p.step === call + 1);
    if (k < 0) return;
    r.stepShown = k;
    const q = r.previews[k];
    const img = document.querySelector(`#steps-${label} .step-preview`);
    const slider = document.getElementById(`step-${label}`);
    const caption = document.getElementById(`step-caption-${label}`);
    if (img) {
      img.src = q.uri;
      img.alt = `latent preview after step ${q.step}`;
    }
    if (slider) {
      slider.value = String(k);
      slider.setAttribute('aria-valuetext', `step ${q.step}`);
    }
    if (caption) caption.textContent = `after step ${q.step} of ${r.previews[r.previews.length - 1].step}`;
  }

  function stepText(v, steps) {
    return v === 0 ? 'all steps' : `step ${v} of ${steps}`;
  }

  /** The layer/resolution filter and the step slider of the maps (0 = all steps), with what is shown and why. */
  function renderMapControls(label, r, shown) {
    const res = r.result;
    const options = res.views && res.views.length ? res.views : [{ id: 'daam', label: 'All layers (DAAM)' }];
    const steps = views.stepCount(res.maps);
    const select = h('select', { id: `map-view-${label}`, onchange: (e) => {
      r.view = e.target.value;
      updateMaps(label);
    } }, ...options.map((o) => h('option', { value: o.id }, o.label)));
    select.value = options.some((o) => o.id === r.view) ? r.view : 'daam';
    const stepValue = r.mapStep === null ? 0 : r.mapStep + 1;
    return h('div', { class: 'map-controls', id: `map-controls-${label}` },
      h('div', { class: 'controls' },
        h('label', { for: `map-view-${label}` }, 'Layers'),
        select,
        h('label', { for: `map-step-${label}` }, 'Maps at'),
        h('input', {
          id: `map-step-${label}`, type: 'range', min: 0, max: steps, step: 1, value: stepValue, disabled: steps === 0 ? true : undefined,
          'aria-valuetext': stepText(stepValue, steps),
          title: steps === 0 ? 'this run kept no per-step maps' : 'drag: maps of one denoising step; leftmost: all steps',
          oninput: (e) => {
            const v = Number(e.target.value);
            r.mapStep = v === 0 ? null : v - 1;
            updateMaps(label);
          },
        }),
        h('span', { class: 'muted', id: `map-step-text-${label}` }, stepText(stepValue, steps)),
      ),
      h('p', { class: 'muted small map-caption', id: `map-caption-${label}` }, `Maps: ${shown.caption}`),
      h('p', { class: 'muted small map-note', id: `map-note-${label}`, role: 'status', hidden: !shown.note }, shown.note || ''),
    );
  }

  /** A step slider over the live previews the engine sent (decoded from the latents of each denoising step). */
  function renderSteps(label, r) {
    const k = r.stepShown === null ? r.previews.length - 1 : r.stepShown;
    const p = r.previews[k];
    const img = h('img', { class: 'preview step-preview', src: p.uri, alt: `latent preview after step ${p.step}` });
    const caption = h('span', { class: 'muted', id: `step-caption-${label}` }, `after step ${p.step} of ${r.previews[r.previews.length - 1].step}`);
    return h('div', { class: 'steps', id: `steps-${label}` }, h('h3', {}, 'Denoising previews'),
      h('div', { class: 'controls' },
        h('label', { for: `step-${label}` }, 'Preview after step'),
        h('input', { id: `step-${label}`, type: 'range', min: 0, max: r.previews.length - 1, step: 1, value: k, 'aria-valuetext': `step ${p.step}`, oninput: (e) => {
          r.stepShown = Number(e.target.value);
          const q = r.previews[r.stepShown];
          img.src = q.uri;
          img.alt = `latent preview after step ${q.step}`;
          caption.textContent = `after step ${q.step} of ${r.previews[r.previews.length - 1].step}`;
          e.target.setAttribute('aria-valuetext', `step ${q.step}`);
          vscode.setState(state);
        } }),
        caption),
      img);
  }

  function renderLoss(label, r) {
    const losses = r.result && r.result.lossTrace && r.result.lossTrace.length ? r.result.lossTrace : r.losses;
    const series = [{ name: 'loss', points: losses.map((p, i) => [i, p.loss]) }];
    const subjects = new Set(losses.flatMap((p) => Object.keys(p.scores || {})));
    for (const s of subjects) series.push({ name: `score "${s}"`, points: losses.filter((p) => p.scores && s in p.scores).map((p) => [losses.indexOf(p), p.scores[s]]) });
    return h('div', { class: 'loss', id: `loss-${label}` }, h('h3', {}, 'Attend-and-Excite loss'),
      lineChart(series, { label: 'Attend-and-Excite loss and subject scores per update', xLabel: 'update (steps and refinements)', className: 'loss-chart', empty: 'No loss yet (Attend-and-Excite reports one per guided step).' }));
  }

  window.addEventListener('message', (ev) => {
    const m = ev.data;
    switch (m.type) {
      case 'start':
        state = { prompt: m.prompt, labels: m.labels, subjects: m.subjects, runs: {} };
        m.labels.forEach((l) => run(l));
        break;
      case 'progress': {
        const r = run(m.label);
        r.status = 'running';
        r.progress = m;
        if (m.preview) {
          r.preview = m.preview;
          if (m.phase === 'denoising') r.previews.push({ step: m.step, uri: m.preview });
        }
        if (typeof m.loss === 'number') r.losses.push({ step: m.step, iteration: m.iteration, loss: m.loss, scores: m.scores });
        break;
      }
      case 'result': {
        const r = run(m.label);
        r.status = 'done';
        r.result = m;
        if (!r.selected && m.maps.length) r.selected = null;
        break;
      }
      case 'error':
        if (m.label) {
          run(m.label).status = 'error';
          run(m.label).error = m.message;
        } else if (state) state.labels.forEach((l) => { if (run(l).status !== 'done') { run(l).status = 'error'; run(l).error = m.message; } });
        else state = { prompt: '', labels: [], subjects: [], runs: {} };
        break;
      case 'cancelled':
        run(m.label).status = 'cancelled';
        break;
    }
    render();
  });

  render();
  vscode.postMessage({ type: 'ready' });
})();
