// The console's only script: live device list, confirmations, auto-submitting filters, copy button,
// and keeping a freshly created key's secret out of the browser history. Every page works without it.
(() => {
  'use strict';

  // Confirm destructive changes (forms marked data-confirm).
  document.addEventListener('submit', (event) => {
    const message = event.target.dataset?.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
    }
  });

  // Filters apply on change (the tailnet switcher has its own button).
  for (const form of document.querySelectorAll('form[data-autosubmit]')) {
    form.addEventListener('change', () => form.requestSubmit());
  }

  // The new key's secret: a reload must not show (or re-post) it.
  const secret = document.querySelector('[data-once-secret]');
  if (secret) {
    history.replaceState(null, '', secret.dataset.cleanUrl);
  }

  // Copy button.
  for (const button of document.querySelectorAll('button[data-copy]')) {
    button.addEventListener('click', async () => {
      const input = document.querySelector(button.dataset.copy);
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
      } catch {
        document.execCommand('copy');
      }
      const done = button.parentElement.querySelector('.copied');
      if (done) done.hidden = false;
    });
  }

  // The device list follows the fleet by server push: the gateway sends the list when the stream opens ("reset"),
  // then each changed device's row ("row"), removals ("remove") and the counts ("counts"). Updates wait while the
  // operator has something in the list focused (a confirmation open, a button about to be clicked): the click must
  // land on what they saw.
  const stream = document.querySelector('[data-stream]');
  if (stream && window.EventSource) {
    const source = new EventSource(stream.dataset.stream);
    const held = [];
    const row = (id) => stream.querySelector(`tr[data-node="${CSS.escape(id)}"]`);
    const showEmpty = () => {
      const table = stream.querySelector('table');
      const rows = table ? table.tBodies[0].rows.length : 0;
      if (table) table.hidden = rows === 0;
      const empty = stream.querySelector('.empty');
      if (empty) empty.hidden = rows > 0;
    };
    const apply = (type, data) => {
      if (type === 'reset') {
        stream.innerHTML = data.html;
      } else if (type === 'row') {
        const template = document.createElement('template');
        template.innerHTML = data.html.trim();
        const fresh = template.content.firstElementChild;
        const old = row(data.id);
        const table = stream.querySelector('table');
        if (old) {
          old.replaceWith(fresh);
        } else if (table) {
          const body = table.tBodies[0];
          body.prepend(fresh); // the newest device first, as the list is sorted
          while (body.rows.length > Number(table.dataset.maxRows || 500)) body.deleteRow(-1);
        }
        showEmpty();
      } else if (type === 'remove') {
        const old = row(data.id);
        if (old) old.remove();
        showEmpty();
      } else if (type === 'counts') {
        for (const [name, value] of Object.entries(data)) {
          const count = stream.querySelector(`[data-count="${name}"]`);
          if (count) count.textContent = value;
        }
        const awaiting = stream.querySelector('[data-awaiting]');
        if (awaiting) awaiting.hidden = data.awaiting === 0;
      }
    };
    const flush = () => {
      if (!stream.contains(document.activeElement)) held.splice(0).forEach(([type, data]) => apply(type, data));
    };
    for (const type of ['reset', 'row', 'remove', 'counts']) {
      source.addEventListener(type, (event) => {
        held.push([type, JSON.parse(event.data)]);
        flush();
      });
    }
    stream.addEventListener('focusout', () => setTimeout(flush, 0));
    // The session ended (signed out elsewhere, expired): the reload goes to the sign-in page. A gateway that is
    // restarting is retried by the browser itself, and the stream starts over with a reset.
    source.addEventListener('signedout', () => location.reload());
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) location.reload();
    };
  }

  // The event list follows the log: the live region is re-fetched every two seconds.
  const live = document.querySelector('[data-live]');
  if (live) {
    let last = live.innerHTML;
    const refresh = async () => {
      try {
        const response = await fetch(live.dataset.live, { credentials: 'same-origin', cache: 'no-store' });
        if (response.redirected) {
          location.reload(); // the session ended: go to the sign-in page
          return;
        }
        if (response.ok) {
          const html = await response.text();
          // Not while a confirmation is open or a button has focus: the operator's click must land on what they saw.
          if (html !== last && !live.contains(document.activeElement)) {
            live.innerHTML = html;
            last = html;
          }
        }
      } catch {
        // The gateway is restarting or unreachable: try again on the next tick.
      }
      setTimeout(refresh, 2000);
    };
    setTimeout(refresh, 2000);
  }
})();
