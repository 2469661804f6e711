// The rating page. Texts are model output: they are only ever set with textContent, never as
// markup. The personal token comes from the link's fragment (#token=...; a fragment is never
// sent to a server), or from /api/prolific for a Prolific participant (?study=...&PROLIFIC_PID=...).
// It is moved into memory and sessionStorage (a reload of this tab resumes) and removed from
// the address bar, and sent to the API only in an Authorization header. Each rating is saved
// the moment it is made; one that could not be saved is kept in localStorage and sent again.
'use strict';

(function () {
  const state = { token: null, hit: null, current: 0, ratings: new Map(), unsaved: new Map(), busy: false,
                  saving: Promise.resolve() };
  const TOKEN_KEY = 'evalharness-token';
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
    const options = { cache: 'no-store', credentials: 'omit', headers: {} };
    if (state.token) options.headers.Authorization = 'Bearer ' + state.token;
    if (body !== undefined) {
      options.method = 'POST';
      options.headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    if (!response.ok) {
      const failure = new Error((data && data.error) || ('the server answered ' + response.status));
      failure.status = response.status;
      throw failure;
    }
    return data;
  }

  // -- drafts: ratings made but not saved yet (the server was unreachable) --
  const draftKey = () => 'evalharness-draft:' + state.hit.hit_id;
  function saveDraft() {
    try { localStorage.setItem(draftKey(), JSON.stringify(Array.from(state.unsaved))); } catch (ignored) { /* private mode */ }
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
    state.unsaved = new Map();
    for (const [itemId, value] of loadDraft()) {
      if (data.items.some((item) => item.item_id === itemId)) {
        state.ratings.set(itemId, value);
        state.unsaved.set(itemId, value);
      }
    }
    const box = $('items');
    box.replaceChildren(...data.items.map((item, index) => renderItem(item, index, data.scale)));
    $('hit').hidden = false;
    $('finished').hidden = true;
    if (state.unsaved.size) queueSave();  // made before a reload or an outage, not saved yet
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
    if (total && rated === total && state.unsaved.size) $('hit-count').textContent += ' (' + state.unsaved.size + ' not saved yet)';
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
    state.unsaved.set(item.item_id, value);
    saveDraft();
    queueSave();
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

  // -- saving: each rating as it is made, one request at a time, in order --
  function queueSave() {
    const hitId = state.hit.hit_id;
    state.saving = state.saving.then(() => saveUnsaved(hitId)).catch((error) => {
      say('Could not reach the server: ' + error.message + '. Your ratings are kept here; please try again.');
      return false;  // the chain goes on: the next rating is sent again
    });
    return state.saving;
  }

  async function saveUnsaved(hitId) {
    if (!state.hit || state.hit.hit_id !== hitId || !state.unsaved.size) return true;
    const sent = Array.from(state.unsaved);
    try {
      await api('/api/ratings', { hit_id: hitId, ratings: sent.map(([id, value]) => ({ item_id: id, typicality: value })) });
    } catch (error) {
      if (error.status === 409) { await lostHit(error.message); return false; }
      say('Could not save your rating: ' + error.message + '. It is kept here and sent again with your next rating.');
      return false;
    }
    for (const [itemId, value] of sent) if (state.unsaved.get(itemId) === value) state.unsaved.delete(itemId);
    saveDraft();
    if (state.hit && state.hit.hit_id === hitId) { say('Saved.', true); updateCounts(); }
    return true;
  }

  async function lostHit(message) {
    dropDraft();
    state.unsaved = new Map();
    await loadHit();
    say(message);
  }

  async function submitHit() {
    if (!state.hit || state.busy) return;
    if (state.hit.items.some((item) => !state.ratings.has(item.item_id))) { say('Please rate every text first.'); return; }
    state.busy = true;
    updateCounts();
    const count = state.hit.items.length;
    const hitId = state.hit.hit_id;
    await state.saving;
    const saved = state.hit && state.hit.hit_id === hitId && await queueSave();
    state.busy = false;
    if (!saved || !state.hit || state.hit.hit_id !== hitId) { updateCounts(); return; }  // failed, or passed on
    dropDraft();
    try {
      await loadHit();
      say('Saved ' + count + ' ratings. Thank you!', true);
    } catch (error) {
      say('Could not load the next texts: ' + error.message + '.');
    }
  }

  async function loadHit() {
    const data = await api('/api/hit');
    renderScaleHelp(data.scale);
    state.progressData = data;
    if (data.hit_id === null) renderFinished(data); else renderHit(data);
    updateCounts();
  }

  // The token leaves the address bar at once: it must not stay in the history or be copied
  // along with the address. sessionStorage keeps it for a reload of this tab only.
  function takeToken() {
    const fragment = new URLSearchParams(window.location.hash.slice(1));
    const query = new URLSearchParams(window.location.search);
    const fromLink = fragment.get('token');
    if (window.location.hash || query.get('study')) history.replaceState(null, '', window.location.pathname);
    if (fromLink) remember(fromLink);
    let kept = null;
    try { kept = sessionStorage.getItem(TOKEN_KEY); } catch (ignored) { kept = null; }
    return { token: fromLink || kept, study: query.get('study'), participant: query.get('PROLIFIC_PID') || '' };
  }

  function remember(token) {
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (ignored) { /* memory only: a reload needs the link */ }
  }

  // A study with no place left (or a place withdrawn): a page that says so, and nothing else.
  function renderClosed(message) {
    $('hit').hidden = true;
    $('finished').hidden = false;
    $('finished-title').textContent = 'This study is not open to you';
    $('finished-text').textContent = message.charAt(0).toUpperCase() + message.slice(1) + '.';
  }

  async function start() {
    document.addEventListener('keydown', onKey);
    $('hit').addEventListener('submit', (event) => { event.preventDefault(); submitHit(); });
    const link = takeToken();
    try {
      if (link.study) {
        state.token = null;
        const joined = await api('/api/prolific', { study: link.study, participant: link.participant });
        link.token = joined.token;
        remember(link.token);
      }
      if (!link.token) { say('This page needs your personal link (it ends in #token=...).'); return; }
      state.token = link.token;
      await loadHit();
    } catch (error) {
      if (error.status === 409 || error.status === 403) renderClosed(error.message);
      else say('Could not load the texts: ' + error.message + '.');
    }
  }

  start();
}());
