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

  // The device list follows the fleet: the live region is re-fetched every two seconds.
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
