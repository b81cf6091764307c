/* Keyboard-first reading: one key per action (listed in the help dialog, ?). */

function typing(target) {
  if (!target || !target.tagName) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && !["radio", "checkbox", "button", "submit", "range"].includes(target.type);
}

/** actions: key (lower case) -> function; onOtherKey runs before any key but C. */
export function bindKeyboard({ actions, submit, help, onKey }) {
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      submit();
      return;
    }
    if (help.open || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const key = event.key.toLowerCase();
    onKey(key);
    const action = actions[key] || (key === "backspace" ? actions.delete : null) || (/^[0-6]$/.test(key) ? actions.digit : null);
    if (action) {
      event.preventDefault();
      action(key);
    }
  });
}
