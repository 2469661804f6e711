// The rating page. Texts are model output: they are only ever set with textContent, never as
// markup. The personal token comes from the link (?token=...), or from /api/prolific for a
// Prolific participant (?study=...&PROLIFIC_PID=...). Ratings of the HIT on screen are kept
// in localStorage until submitted, so a closed tab or a reload resumes where it stopped.
'use strict';

(function () {
  const state = { token: null, hit: null, current: 0, ratings: new Map(), busy: false };
  const $ = (id) => document.getElementById(id);

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(message, ok) {
    $('status').textContent = message;
    $('status').className = ok ? 'ok' : '';
  }

  async function api(path, body) {
    const options = { cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      options.method = 'POST';
      options.headers = { 'Content-Type': 'application/json' };
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    if (!response.ok) throw new Error((data && data.error) || ('the server answered ' + response.status));
    return data;
  }

  // -- drafts: ratings not yet submitted --
  const draftKey = () => 'evalharness-draft:' + state.hit.hit_id;
  function saveDraft() {
    try { localStorage.setItem(draftKey(), JSON.stringify(Array.from(state.ratings))); } catch (ignored) { /* private mode */ }
  }
  function loadDraft() {
    try { return new Map(JSON.parse(localStorage.getItem(draftKey()) || '[]')); } catch (ignored) { return new Map(); }
  }
  function dropDraft() {
    try { localStorage.removeItem(draftKey()); } catch (ignored) { /* nothing kept */ }
  }

  // -- rendering --
  function renderScaleHelp(scale) {
    const list = $('scale-help');
    if (list.childElementCount) return;
    for (const entry of scale) {
      const line = make('li');
      line.append(make('strong', '', entry.value + ' ' + entry.label), document.createTextNode(': ' + entry.help));
      list.append(line);
    }
  }

  function renderItem(item, index, scale) {
    const section = make('section', 'item');
    section.id = 'item-' + index;
    section.tabIndex = -1;
    if (item.context !== undefined && item.context !== null) section.append(make('p', 'context', item.context + ' \u2026'));
    const text = make('p', item.text ? 'text' : 'text empty', item.text || '(this text is empty)');
    text.id = 'text-' + index;
    const fieldset = make('fieldset');
    fieldset.setAttribute('aria-describedby', text.id);
    fieldset.append(make('legend', '', 'Text ' + (index + 1) + ' of ' + state.hit.items.length + ': how typical is it?'));
    const choices = make('div', 'choices');
    for (const entry of scale) {
      const label = make('label');
      const input = make('input');
      input.type = 'radio';
      input.name = 'rating-' + index;
      input.value = String(entry.value);
      input.checked = state.ratings.get(item.item_id) === entry.value;
      input.addEventListener('change', () => rate(index, entry.value, false));
      const caption = make('span');
      caption.append(make('span', 'value', String(entry.value)), make('span', 'label', entry.label));
      label.append(input, caption);
      choices.append(label);
    }
    fieldset.append(choices);
    section.append(text, fieldset);
    section.addEventListener('click', () => setCurrent(index, false));
    return section;
  }

  function renderHit(data) {
    state.hit = data;
    state.ratings = new Map();
    for (const item of data.items) if (item.typicality) state.ratings.set(item.item_id, item.typicality);
    for (const [itemId, value] of loadDraft()) {
      if (data.items.some((item) => item.item_id === itemId)) state.ratings.set(itemId, value);
    }
    const box = $('items');
    box.replaceChildren(...data.items.map((item, index) => renderItem(item, index, data.scale)));
    $('hit').hidden = false;
    $('finished').hidden = true;
    const firstOpen = data.items.findIndex((item) => !state.ratings.has(item.item_id));
    setCurrent(firstOpen < 0 ? 0 : firstOpen, false);
    updateCounts();
    window.scrollTo(0, 0);
  }

  function renderFinished(data) {
    state.hit = null;
    $('hit').hidden = true;
    $('items').replaceChildren();
    $('finished').hidden = false;
    $('finished-text').textContent = data.done >= data.total
      ? 'You have rated every text assigned to you. You can close this page.'
      : 'There are no more texts for you to rate at the moment. You can close this page.';
    if (data.completion_code) {
      $('completion-code').textContent = data.completion_code;
      $('completion-link').href = data.completion_url;
      $('completion').hidden = false;
    }
  }

  function updateCounts() {
    const total = state.hit ? state.hit.items.length : 0;
    const rated = state.hit ? state.hit.items.filter((item) => state.ratings.has(item.item_id)).length : 0;
    $('hit-count').textContent = total ? rated + ' of ' + total + ' texts rated' : '';
    $('submit').disabled = !total || rated < total || state.busy;
    const progress = state.progressData;
    if (progress) {
      const shown = Math.min(progress.done + 1, progress.total);
      $('progress-text').textContent = state.hit
        ? 'HIT ' + shown + ' of at most ' + progress.total + ' \u00b7 ' + rated + ' of ' + total + ' rated'
        : progress.done + ' HITs done';
      $('progress').max = Math.max(progress.total, 1);
      $('progress').value = progress.done + (total ? rated / total : 0);
    }
  }

  // -- interaction --
  function setCurrent(index, focus) {
    if (!state.hit) return;
    const count = state.hit.items.length;
    state.current = Math.max(0, Math.min(count - 1, index));
    document.querySelectorAll('.item.current').forEach((node) => node.classList.remove('current'));
    const section = $('item-' + state.current);
    section.classList.add('current');
    if (focus) {
      section.focus({ preventScroll: true });
      section.scrollIntoView({ block: 'nearest' });
    }
  }

  function rate(index, value, advance) {
    const item = state.hit.items[index];
    state.ratings.set(item.item_id, value);
    const input = document.querySelector('input[name="rating-' + index + '"][value="' + value + '"]');
    if (input) input.checked = true;
    saveDraft();
    updateCounts();
    if (!advance) { setCurrent(index, false); return; }
    const items = state.hit.items;
    for (let step = 1; step <= items.length; step++) {
      const next = (index + step) % items.length;
      if (!state.ratings.has(items[next].item_id)) { setCurrent(next, true); return; }
    }
    setCurrent(index, false);
    $('submit').focus();
  }

  function onKey(event) {
    if (!state.hit || event.altKey || event.ctrlKey || event.metaKey) return;
    if (/^[1-6]$/.test(event.key)) {
      event.preventDefault();
      rate(state.current, Number(event.key), true);
    } else if (event.key === 'ArrowDown' || event.key === 'j') {
      event.preventDefault();
      setCurrent(state.current + 1, true);
    } else if (event.key === 'ArrowUp' || event.key === 'k') {
      event.preventDefault();
      setCurrent(state.current - 1, true);
    } else if (event.key === 'Enter' && document.activeElement !== $('submit')) {
      event.preventDefault();
      if (!$('submit').disabled) submitHit();
    }
  }

  async function submitHit() {
    if (!state.hit || state.busy) return;
    const ratings = state.hit.items.map((item) => ({ item_id: item.item_id, typicality: state.ratings.get(item.item_id) }));
    if (ratings.some((rating) => !rating.typicality)) { say('Please rate every text first.'); return; }
    state.busy = true;
    updateCounts();
    try {
      const answer = await api('/api/ratings', { token: state.token, hit_id: state.hit.hit_id, ratings: ratings });
      dropDraft();
      say('Saved ' + answer.saved + ' ratings. Thank you!', true);
      state.busy = false;
      await loadHit();
    } catch (error) {
      state.busy = false;
      updateCounts();
      say('Could not save your ratings: ' + error.message + '. Please try again.');
    }
  }

  async function loadHit() {
    const data = await api('/api/hit?token=' + encodeURIComponent(state.token));
    renderScaleHelp(data.scale);
    state.progressData = data;
    if (data.hit_id === null) renderFinished(data); else renderHit(data);
    updateCounts();
  }

  async function start() {
    document.addEventListener('keydown', onKey);
    $('hit').addEventListener('submit', (event) => { event.preventDefault(); submitHit(); });
    const params = new URLSearchParams(window.location.search);
    let token = params.get('token');
    try {
      if (!token && params.get('study')) {
        const joined = await api('/api/prolific', { study: params.get('study'), participant: params.get('PROLIFIC_PID') || '' });
        token = joined.token;
      }
      if (!token) { say('This page needs your personal link (it ends in ?token=...).'); return; }
      state.token = token;
      await loadHit();
    } catch (error) {
      say('Could not load the texts: ' + error.message + '.');
    }
  }

  start();
}());
