/* The page's language: annotate/i18n.py puts the catalogue of the language the page was written in
   into #annotate-messages (English: none). t("{n} layers", { n: 6 }) reads it, as the terminal's t() does. */
const t = (function () {
  const node = document.getElementById("annotate-messages");
  const messages = node ? JSON.parse(node.textContent) : {};
  return function t(message, values) {
    const text = Object.prototype.hasOwnProperty.call(messages, message) ? messages[message] : message;
    return values ? text.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole)) : text;
  };
})();
